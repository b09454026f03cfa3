// Validator-set changes (DESIGN.md section 11, docs/PROTOCOL.md "Validator-set changes"):
// a validator is added (its card), removed, or has its keys rotated (a new card of the same
// node: new BLS and libp2p keys, signed by the same identity key) by a decision of a quorum
// of the set in force. Like a quarantine decision, it rides a checkpoint body with the
// requests that justify it, and takes effect two epochs after the checkpoint that
// finalizes it: the next checkpoint after a change is never for the very next epoch, so
// every height has one set, known when the height begins.
//
// Pure: the request (type R) and its digest, parsing, the decision rule, and the history of
// sets a genesis and its finalized changes make (what a light client follows).
import { toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { expectKeys, expectObject, hexField, intField, literalField, SchemaError } from "../encoding/schema.ts";
import { domainDigest } from "../crypto/sha256.ts";
import { type NodeCard, parseCard } from "./card.ts";
import { type Genesis, parseGenesis } from "./genesis.ts";
import { ValidatorSet } from "./validator-set.ts";

export type SetChange = { action: "add"; card: NodeCard } | { action: "remove"; node_id: string } | { action: "rotate"; card: NodeCard };

export interface SetChangeRequest {
  v: 1;
  type: "R";
  mesh: string;
  change: SetChange;
  /** Set changes finalized when it was signed: a request counts only in that set (no replay into a later one). */
  basis: number;
  /** Mesh epoch when it was signed; one from a later epoch is refused. */
  epoch: number;
  detail: string;
  /** Signer's index in the set in force. */
  validator: number;
  /** BLS, over sha256("hookprobe-dsm/set-change/v1\n" || JCS(request without sig)). */
  sig: string;
}

/** What a checkpoint body carries: one change, with the requests of a quorum of the set in force. */
export interface SetChangeDecision {
  change: SetChange;
  requests: SetChangeRequest[];
}

export function setChangeDigest(r: Omit<SetChangeRequest, "sig"> | SetChangeRequest): Uint8Array {
  const { sig: _sig, ...body } = r as SetChangeRequest;
  return domainDigest("set-change", body);
}

export function makeSetChangeRequest(f: { mesh: string; change: SetChange; basis: number; epoch: number; detail: string; validator: number; sign: (d: Uint8Array) => Uint8Array }): SetChangeRequest {
  const body: Omit<SetChangeRequest, "sig"> = {
    v: 1,
    type: "R",
    mesh: f.mesh,
    change: f.change,
    basis: f.basis,
    epoch: f.epoch,
    detail: f.detail.replace(/\s+/g, " ").slice(0, 256),
    validator: f.validator,
  };
  return { ...body, sig: toHex(f.sign(setChangeDigest(body))) };
}

export function parseSetChange(value: unknown, what: string): SetChange {
  const o = expectObject(value, what);
  if (o.action === "remove") {
    expectKeys(o, what, ["action", "node_id"]);
    hexField(o, "node_id", what, 32);
    return o as unknown as SetChange;
  }
  if (o.action !== "add" && o.action !== "rotate") throw new SchemaError(`${what}: "action" must be "add", "remove" or "rotate"`);
  expectKeys(o, what, ["action", "card"]);
  // Its form and its identity signature only: the proof of possession costs two pairings,
  // and a peer could make every node pay them for a request nobody signed. It is checked
  // once the requests' signatures hold (setChangeProblem, through applyChange).
  const card = parseCard(o.card, `${what} card`, { checkPop: false });
  if (!card.bls_pub) throw new SchemaError(`${what}: the card has no bls_pub/bls_pop, so it could not vote`);
  return o as unknown as SetChange;
}

/** The form of a request, without its signature checked. */
export function parseSetChangeShape(value: unknown, mesh: string | null, what = "set-change request"): SetChangeRequest {
  const o = expectObject(value, what);
  expectKeys(o, what, ["v", "type", "mesh", "change", "basis", "epoch", "detail", "validator", "sig"]);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "R");
  hexField(o, "mesh", what, 32);
  if (mesh !== null && o.mesh !== mesh) throw new SchemaError(`${what}: belongs to another mesh`);
  parseSetChange(o.change, `${what} change`);
  intField(o, "basis", what, 0);
  intField(o, "epoch", what, 0);
  if (typeof o.detail !== "string" || o.detail.length > 256) throw new SchemaError(`${what}: "detail" must be a string of at most 256 characters`);
  intField(o, "validator", what, 0, 1023);
  hexField(o, "sig", what, 96);
  return o as unknown as SetChangeRequest;
}

/** A request from the mesh: its form, its epoch not in the future, its signature under the set in force. */
export function parseSetChangeRequest(value: unknown, mesh: string, set: ValidatorSet, opts: { maxEpoch?: number } = {}, what = "set-change request"): SetChangeRequest {
  const r = parseSetChangeShape(value, mesh, what);
  if (opts.maxEpoch !== undefined && r.epoch > opts.maxEpoch) throw new SchemaError(`${what}: signed for epoch ${r.epoch}, but epoch ${opts.maxEpoch} is the mesh's current one (a request from the future is refused)`);
  if (r.validator >= set.n || !set.verify(r.validator, setChangeDigest(r), r.sig)) throw new SchemaError(`${what}: signature of validator ${r.validator} does not verify under the set in force`);
  return r;
}

/** The set a change makes from the cards in force; throws SchemaError when it is not a valid set. */
export function applyChange(genesis: Genesis, cards: readonly NodeCard[], change: SetChange): NodeCard[] {
  let next: NodeCard[];
  if (change.action === "add") {
    if (cards.some((c) => c.node_id === change.card.node_id)) throw new SchemaError(`node ${change.card.node_id.slice(0, 12)}… is a validator already (rotate its keys instead)`);
    next = [...cards, change.card];
  } else {
    const id = change.action === "remove" ? change.node_id : change.card.node_id;
    const i = cards.findIndex((c) => c.node_id === id);
    if (i < 0) throw new SchemaError(`node ${id.slice(0, 12)}… is not a validator of the set in force`);
    if (change.action === "remove") next = cards.filter((_, j) => j !== i);
    else {
      if (change.card.identity_pub !== cards[i]!.identity_pub) throw new SchemaError(`a rotation keeps the node's identity key; this card has another`);
      if (canonicalize(change.card) === canonicalize(cards[i]!)) throw new SchemaError(`the card is the one in force: nothing to rotate`);
      next = cards.map((c, j) => (j === i ? change.card : c));
    }
  }
  // The genesis's rules for a validator list (cards, distinct keys and vote keys), on the new
  // list. Proofs of possession (~50 ms each) only for the card coming in: the others were
  // checked when they entered, and rechecking n of them per change made following a chain
  // of changes cost changes × n pairings.
  try {
    if (change.action !== "remove") parseCard(change.card, "the new card");
    parseGenesis({ ...genesis, validators: next }, { checkPop: false });
  } catch (e) {
    throw new SchemaError(`the set after this change is not valid: ${(e as Error).message.replace(/^genesis:? ?/, "")}`);
  }
  return next;
}

/**
 * Why a body's set change cannot be taken, or null: identical changes requested by distinct
 * validators of the set in force (signatures checked in one batch), current for its basis,
 * a quorum of that set, and a valid set after it.
 */
export function setChangeProblem(d: SetChangeDecision, genesis: Genesis, cards: readonly NodeCard[], set: ValidatorSet, basis: number, bodyEpoch = Number.MAX_SAFE_INTEGER): string | null {
  const want = canonicalize(d.change);
  let last = -1;
  for (const r of d.requests) {
    if (r.epoch > bodyEpoch) return `set change: the request of validator ${r.validator} is signed for epoch ${r.epoch}, after the checkpoint's`;
    if (canonicalize(r.change) !== want) return `set change: the request of validator ${r.validator} is for another change`;
    if (r.validator <= last) return "set change: requests must be by distinct validators in index order";
    last = r.validator;
    if (r.validator >= set.n) return `set change: validator ${r.validator} is not in the set in force (${set.n})`;
    if (r.basis !== basis) return `set change: the request of validator ${r.validator} was signed after ${r.basis} change(s), the set has had ${basis}`;
  }
  if (d.requests.length < set.quorum) return `set change: ${d.requests.length} request(s), a quorum of ${set.quorum} of the set in force is needed`;
  // Signatures before the new card's proof of possession: only a change a quorum signed costs pairings.
  const ok = set.verifyMany(d.requests.map((r) => ({ i: r.validator, message: setChangeDigest(r), sigHex: r.sig })));
  const bad = ok.findIndex((x) => !x);
  if (bad >= 0) return `set change: the request of validator ${d.requests[bad]!.validator} has a signature that does not verify`;
  try {
    applyChange(genesis, cards, d.change);
  } catch (e) {
    return `set change: ${(e as Error).message}`;
  }
  return null;
}

/** The decision the pending requests make, or null: identical changes by a quorum of distinct current validators. */
export function eligibleSetChange(requests: readonly SetChangeRequest[], set: { n: number; quorum: number }, basis: number): SetChangeDecision | null {
  const groups = new Map<string, Map<number, SetChangeRequest>>();
  for (const r of requests) {
    if (r.basis !== basis || r.validator >= set.n) continue;
    const k = canonicalize(r.change);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = new Map()));
    const held = g.get(r.validator);
    if (!held || r.epoch > held.epoch || (r.epoch === held.epoch && r.sig < held.sig)) g.set(r.validator, r);
  }
  for (const k of [...groups.keys()].sort()) {
    const chosen = [...groups.get(k)!.values()].sort((a, b) => a.validator - b.validator);
    if (chosen.length >= set.quorum) return { change: chosen[0]!.change, requests: chosen };
  }
  return null;
}

/** A change finalized at an epoch, in order. */
export interface FinalizedChange {
  epoch: number;
  change: SetChange;
}

/** Epochs a change waits after the checkpoint that finalizes it. */
export const CHANGE_DELAY_EPOCHS = 2;

/**
 * The sets a genesis and its finalized changes make, each from the epoch it takes effect:
 * the genesis's from epoch 0, each change's from the epoch of its checkpoint + 2. Changes
 * must come in epoch order, each at least two epochs after the one before (no checkpoint
 * comes sooner after a change, so a valid log never breaks this).
 */
export class SetHistory {
  readonly eras: { fromEpoch: number; cards: NodeCard[] }[];

  constructor(
    readonly genesis: Genesis,
    changes: readonly FinalizedChange[] = [],
  ) {
    this.eras = [{ fromEpoch: 0, cards: [...genesis.validators] }];
    for (const c of changes) this.apply(c);
  }

  /** Set changes finalized so far: what a request's basis must equal. */
  get version(): number {
    return this.eras.length - 1;
  }

  apply(c: FinalizedChange): void {
    const last = this.eras.at(-1)!;
    if (c.epoch < last.fromEpoch) {
      throw new SchemaError(`set change finalized at epoch ${c.epoch} comes before the one in force from epoch ${last.fromEpoch}`);
    }
    this.eras.push({ fromEpoch: c.epoch + CHANGE_DELAY_EPOCHS, cards: applyChange(this.genesis, last.cards, c.change) });
  }

  /** The cards in force at an epoch, in validator order. */
  cardsAt(epoch: number): NodeCard[] {
    let cards = this.eras[0]!.cards;
    for (const e of this.eras) if (e.fromEpoch <= epoch) cards = e.cards;
    return cards;
  }

  /** The newest set, whatever epoch it starts from. */
  latestCards(): NodeCard[] {
    return this.eras.at(-1)!.cards;
  }

  setAt(epoch: number, threshold = 0): ValidatorSet {
    return validatorSetOfCards(this.genesis, this.cardsAt(epoch), threshold);
  }
}

const sets = new Map<string, ValidatorSet>();

/** One ValidatorSet per (cards, threshold) per process: BLS keys are decoded once. */
export function validatorSetOfCards(genesis: Genesis, cards: readonly NodeCard[], threshold = 0): ValidatorSet {
  const k = `${cards.map((c) => `${c.bls_pub}/${c.peer_id}`).join(",")}|${threshold}`;
  let set = sets.get(k);
  if (!set) {
    set = new ValidatorSet({ ...genesis, validators: [...cards] }, threshold);
    if (sets.size > 64) sets.clear();
    sets.set(k, set);
  }
  return set;
}
