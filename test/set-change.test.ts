// Validator-set changes (src/protocol/set-change.ts), pure: what a change makes of the cards
// in force and what it refuses, when a body's change may be taken (a quorum's identical,
// current, correctly signed requests and a valid set after it), which change pending
// requests make, and the sets a genesis and its finalized changes make, epoch by epoch.
// A 4-validator mesh (f = 1, q = 3) from the consensus simulation's fixed keys, and a 5th
// validator made the way simMesh makes its cards.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { toHex } from "../src/encoding/hex.ts";
import { blsKeygen, blsPopProve, blsPublicKey, blsSign } from "../src/crypto/bls.ts";
import { sha256 } from "../src/crypto/sha256.ts";
import { makeCard, type NodeCard } from "../src/protocol/card.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { createLibp2pKey } from "../src/identity/libp2p-key.ts";
import {
  applyChange,
  eligibleSetChange,
  makeSetChangeRequest,
  parseSetChangeRequest,
  type SetChange,
  type SetChangeDecision,
  type SetChangeRequest,
  setChangeProblem,
  SetHistory,
} from "../src/protocol/set-change.ts";
import { GENESIS_MS, type SimMesh, simMesh } from "./helpers/consensus-sim.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-set-change-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let m: SimMesh;
let cards: NodeCard[];
/** Validator 4 (not in the genesis), its secret, and a rotation of it: same identity, new BLS and libp2p keys. */
let fifth: NodeCard;
let fifthSecret: Uint8Array;
let fifthRotated: NodeCard;
/** A new node whose card carries validator 0's BLS key (and its valid PoP). */
let copycat: NodeCard;
/** A new node whose card's bls_pop proves another key than its bls_pub. */
let badPop: NodeCard;

/** A validator card made as simMesh makes them: seeded BLS key, fresh identity and libp2p keys. */
async function validatorCard(name: string, blsSecret: Uint8Array, identity = SoftwareIdentityKey.create(path.join(dir, `${name}.pem`), false)): Promise<NodeCard> {
  const p2p = createLibp2pKey(path.join(dir, `${name}.p2p`), false);
  return makeCard(identity, { role: "validator", peerId: p2p.peerId, nowMs: GENESIS_MS, blsPub: toHex(blsPublicKey(blsSecret)), blsPop: toHex(blsPopProve(blsSecret)) });
}

beforeAll(async () => {
  m = await simMesh(4);
  cards = m.genesis.validators;
  fifthSecret = blsKeygen(sha256("dsm simulation validator 4"));
  const identity = SoftwareIdentityKey.create(path.join(dir, "v4.pem"), false);
  fifth = await validatorCard("v4", fifthSecret, identity);
  fifthRotated = await validatorCard("v4-rotated", blsKeygen(sha256("dsm simulation validator 4, rotated")), identity);
  copycat = await validatorCard("copycat", m.secrets[0]!);
  const other = blsKeygen(sha256("another key"));
  const p2p = createLibp2pKey(path.join(dir, "bad-pop.p2p"), false);
  badPop = await makeCard(SoftwareIdentityKey.create(path.join(dir, "bad-pop.pem"), false), {
    role: "validator",
    peerId: p2p.peerId,
    nowMs: GENESIS_MS,
    blsPub: toHex(blsPublicKey(blsKeygen(sha256("a key")))),
    blsPop: toHex(blsPopProve(other)),
  });
});

function req(validator: number, change: SetChange, f: { basis?: number; secret?: Uint8Array; epoch?: number } = {}): SetChangeRequest {
  return makeSetChangeRequest({
    mesh: m.mesh,
    change,
    basis: f.basis ?? 0,
    epoch: f.epoch ?? 10,
    detail: `by ${validator}`,
    validator,
    sign: (d) => blsSign(f.secret ?? m.secrets[validator]!, d),
  });
}

const add = (): SetChange => ({ action: "add", card: fifth });
const decision = (change: SetChange, requests: SetChangeRequest[]): SetChangeDecision => ({ change, requests });

describe("applyChange", () => {
  test("add appends the card; remove drops the node and keeps the others' order; rotate replaces the card in place", () => {
    const added = applyChange(m.genesis, cards, add());
    expect(added.map((c) => c.node_id)).toEqual([...cards.map((c) => c.node_id), fifth.node_id]);
    const removed = applyChange(m.genesis, added, { action: "remove", node_id: cards[1]!.node_id });
    expect(removed.map((c) => c.node_id)).toEqual([cards[0]!, cards[2]!, cards[3]!, fifth].map((c) => c.node_id));
    const rotated = applyChange(m.genesis, removed, { action: "rotate", card: fifthRotated });
    expect(rotated.map((c) => c.node_id)).toEqual(removed.map((c) => c.node_id));
    expect(rotated[3]!.bls_pub).toBe(fifthRotated.bls_pub);
    expect(rotated[3]!.bls_pub).not.toBe(fifth.bls_pub);
    // The input is not changed.
    expect(cards).toHaveLength(4);
  });

  test("refusals: adding a validator twice, removing or rotating a node not in the set, rotating to the same card", () => {
    expect(() => applyChange(m.genesis, cards, { action: "add", card: cards[2]! })).toThrow(/is a validator already \(rotate its keys instead\)/);
    expect(() => applyChange(m.genesis, cards, { action: "remove", node_id: fifth.node_id })).toThrow(/is not a validator of the set in force/);
    expect(() => applyChange(m.genesis, cards, { action: "rotate", card: fifthRotated })).toThrow(/is not a validator of the set in force/);
    const added = applyChange(m.genesis, cards, add());
    expect(() => applyChange(m.genesis, added, { action: "rotate", card: fifth })).toThrow(/the card is the one in force: nothing to rotate/);
  });

  test("a set the genesis's rules refuse: a BLS key that is another validator's, a card without a proof of possession, no validator left", async () => {
    expect(() => applyChange(m.genesis, cards, { action: "add", card: copycat })).toThrow(/the set after this change is not valid: .*bls_pub is already another validator's/);
    expect(() => applyChange(m.genesis, cards, { action: "add", card: badPop })).toThrow(/the set after this change is not valid: .*bls_pop is not a valid proof of possession/);
    const one = await simMesh(1);
    expect(() => applyChange(one.genesis, one.genesis.validators, { action: "remove", node_id: one.genesis.validators[0]!.node_id })).toThrow(/not valid: .*"validators" must list 1 to 1024/);
  });
});

describe("setChangeProblem", () => {
  test("a quorum's identical current requests make a valid change", () => {
    expect(setChangeProblem(decision(add(), [0, 1, 2].map((v) => req(v, add()))), m.genesis, cards, m.set, 0)).toBeNull();
    expect(setChangeProblem(decision(add(), [0, 1, 2, 3].map((v) => req(v, add()))), m.genesis, cards, m.set, 0)).toBeNull();
  });

  test("requests signed on another basis (before or after a change) do not count", () => {
    expect(setChangeProblem(decision(add(), [0, 1, 2].map((v) => req(v, add(), { basis: 1 }))), m.genesis, cards, m.set, 0)).toMatch(/the request of validator 0 was signed after 1 change\(s\), the set has had 0/);
    expect(setChangeProblem(decision(add(), [0, 1, 2].map((v) => req(v, add()))), m.genesis, cards, m.set, 1)).toMatch(/was signed after 0 change\(s\), the set has had 1/);
  });

  test("too few requests, repeated or out-of-order validators, an index outside the set", () => {
    expect(setChangeProblem(decision(add(), [0, 1].map((v) => req(v, add()))), m.genesis, cards, m.set, 0)).toBe("set change: 2 request(s), a quorum of 3 of the set in force is needed");
    expect(setChangeProblem(decision(add(), [0, 1, 1].map((v) => req(v, add()))), m.genesis, cards, m.set, 0)).toMatch(/distinct validators in index order/);
    expect(setChangeProblem(decision(add(), [2, 1, 0].map((v) => req(v, add()))), m.genesis, cards, m.set, 0)).toMatch(/distinct validators in index order/);
    expect(setChangeProblem(decision(add(), [0, 1, 4].map((v) => req(v, add(), { secret: v === 4 ? fifthSecret : undefined }))), m.genesis, cards, m.set, 0)).toMatch(/validator 4 is not in the set in force \(4\)/);
  });

  test("a forged signature: validator 2's request signed by validator 3's key", () => {
    const requests = [req(0, add()), req(1, add()), req(2, add(), { secret: m.secrets[3] })];
    expect(setChangeProblem(decision(add(), requests), m.genesis, cards, m.set, 0)).toBe("set change: the request of validator 2 has a signature that does not verify");
    // One altered field after signing, too.
    const altered = [req(0, add()), { ...req(1, add()), epoch: 9 }, req(2, add())];
    expect(setChangeProblem(decision(add(), altered), m.genesis, cards, m.set, 0)).toMatch(/validator 1 has a signature that does not verify/);
  });

  test("a request for a different change, and a decision whose change differs from its requests'", () => {
    const remove: SetChange = { action: "remove", node_id: cards[3]!.node_id };
    expect(setChangeProblem(decision(add(), [req(0, add()), req(1, remove), req(2, add())]), m.genesis, cards, m.set, 0)).toMatch(/the request of validator 1 is for another change/);
    expect(setChangeProblem(decision(remove, [0, 1, 2].map((v) => req(v, add()))), m.genesis, cards, m.set, 0)).toMatch(/validator 0 is for another change/);
  });

  test("a quorum cannot make an invalid set: a duplicate BLS key, a node already a validator", () => {
    const dup: SetChange = { action: "add", card: copycat };
    expect(setChangeProblem(decision(dup, [0, 1, 2].map((v) => req(v, dup))), m.genesis, cards, m.set, 0)).toMatch(/set change: the set after this change is not valid: .*bls_pub is already another validator's/);
    const again: SetChange = { action: "add", card: cards[0]! };
    expect(setChangeProblem(decision(again, [0, 1, 2].map((v) => req(v, again))), m.genesis, cards, m.set, 0)).toMatch(/is a validator already/);
  });

  test("a request parsed from the mesh: its signature under the set in force, and not from the future", () => {
    const r = req(1, add(), { epoch: 12 });
    expect(parseSetChangeRequest(r, m.mesh, m.set, { maxEpoch: 12 })).toEqual(r);
    expect(() => parseSetChangeRequest(r, m.mesh, m.set, { maxEpoch: 11 })).toThrow(/a request from the future is refused/);
    expect(() => parseSetChangeRequest({ ...r, validator: 2 }, m.mesh, m.set)).toThrow(/signature of validator 2 does not verify/);
    expect(() => parseSetChangeRequest(r, "cd".repeat(32), m.set)).toThrow(/another mesh/);
  });
});

describe("eligibleSetChange", () => {
  const remove = (): SetChange => ({ action: "remove", node_id: cards[3]!.node_id });

  test("a quorum of identical current requests by distinct validators, in validator order", () => {
    const pending = [req(2, add()), req(3, remove()), req(0, add()), req(0, add(), { epoch: 9 }), req(1, add())];
    const d = eligibleSetChange(pending, m.set, 0)!;
    expect(d.change).toEqual(add());
    expect(d.requests.map((r) => r.validator)).toEqual([0, 1, 2]);
    // Of one validator's two requests for a change, the later one is kept.
    expect(d.requests[0]!.epoch).toBe(10);
    expect(setChangeProblem(d, m.genesis, cards, m.set, 0)).toBeNull();
  });

  test("nothing below a quorum: one validator's requests count once, and stale bases and unknown indices not at all", () => {
    expect(eligibleSetChange([req(0, add()), req(0, add(), { epoch: 11 }), req(1, add())], m.set, 0)).toBeNull();
    expect(eligibleSetChange([req(0, add()), req(1, add()), req(2, add(), { basis: 1 })], m.set, 0)).toBeNull();
    expect(eligibleSetChange([req(0, add()), req(1, add()), { ...req(2, add()), validator: 7 }], m.set, 0)).toBeNull();
    expect(eligibleSetChange([0, 1, 2].map((v) => req(v, add())), m.set, 1)).toBeNull();
  });

  test("two changes with a quorum each: the same one whatever order they arrive in", () => {
    const both = [...[0, 1, 2].map((v) => req(v, add())), ...[1, 2, 3].map((v) => req(v, remove()))];
    const a = eligibleSetChange(both, m.set, 0)!;
    const b = eligibleSetChange([...both].reverse(), m.set, 0)!;
    expect(b).toEqual(a);
  });
});

describe("SetHistory", () => {
  test("two changes: each set in force from two epochs after its checkpoint, the genesis's before", () => {
    const h = new SetHistory(m.genesis);
    expect(h.version).toBe(0);
    h.apply({ epoch: 10, change: add() });
    h.apply({ epoch: 20, change: { action: "remove", node_id: cards[0]!.node_id } });
    expect(h.version).toBe(2);
    const ids = (e: number) => h.cardsAt(e).map((c) => c.node_id);
    const genesisIds = cards.map((c) => c.node_id);
    for (const e of [0, 10, 11]) expect(ids(e)).toEqual(genesisIds);
    for (const e of [12, 20, 21]) expect(ids(e)).toEqual([...genesisIds, fifth.node_id]);
    for (const e of [22, 1000]) expect(ids(e)).toEqual([...genesisIds.slice(1), fifth.node_id]);
    expect(h.latestCards().map((c) => c.node_id)).toEqual(ids(22));
    expect([h.setAt(11).n, h.setAt(11).quorum]).toEqual([4, 3]);
    expect([h.setAt(12).n, h.setAt(12).quorum]).toEqual([5, 4]);
    expect([h.setAt(22).n, h.setAt(22).quorum]).toEqual([4, 3]);
    // Validator 0 of the last set is the genesis's validator 1: indices follow the set in force.
    expect(h.setAt(22).keyHex[0]).toBe(cards[1]!.bls_pub!);
    expect(h.setAt(12).keyHex[4]).toBe(fifth.bls_pub!);
    // The constructor with the same changes makes the same sets.
    const same = new SetHistory(m.genesis, [
      { epoch: 10, change: add() },
      { epoch: 20, change: { action: "remove", node_id: cards[0]!.node_id } },
    ]);
    expect(same.eras.map((e) => [e.fromEpoch, e.cards.length])).toEqual([
      [0, 4],
      [12, 5],
      [22, 4],
    ]);
  });

  test("a change before the previous one takes effect, or one that is not valid in the set it follows, is refused", () => {
    const h = new SetHistory(m.genesis, [{ epoch: 10, change: add() }]);
    expect(() => h.apply({ epoch: 11, change: { action: "remove", node_id: cards[0]!.node_id } })).toThrow(/finalized at epoch 11 comes before the one in force from epoch 12/);
    expect(() => h.apply({ epoch: 12, change: add() })).toThrow(/is a validator already/);
    expect(h.version).toBe(1);
    h.apply({ epoch: 12, change: { action: "rotate", card: fifthRotated } });
    expect(h.setAt(14).keyHex[4]).toBe(fifthRotated.bls_pub!);
    expect(h.setAt(13).keyHex[4]).toBe(fifth.bls_pub!);
  });
});
