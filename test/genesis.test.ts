// The genesis document (src/protocol/genesis.ts): what parseGenesis refuses, and the genesis /
// mesh policy built from cards, with real keys made in temp dirs.
import { beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { blsKeygen, blsPopProve, blsPublicKey } from "../src/crypto/bls.ts";
import { generateKeyPair } from "../src/crypto/p256.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { toHex } from "../src/encoding/hex.ts";
import { formatTime } from "../src/encoding/time.ts";
import { nodeIdOf, SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { createLibp2pKey } from "../src/identity/libp2p-key.ts";
import { makeCard, type NodeCard, parseCard } from "../src/protocol/card.ts";
import { buildGenesis, type Genesis, makeLocalGenesis, MeshPolicy, meshIdOf, parseGenesis } from "../src/protocol/genesis.ts";
import { blsA, blsB, clone, dir, idA, idB, NOW, peerA, sha256Hex, useIdentityFixtures } from "./helpers/identity-fixtures.ts";
import { useScratch } from "./helpers/scratch.ts";

const { freshDir } = useScratch("dsm-genesis-");
useIdentityFixtures();

// ---------------------------------------------------------------------------
describe("parseGenesis: one BLS key may not count twice", () => {
  async function cardWith(bls: { pub: string; pop: string }): Promise<NodeCard> {
    const dir = freshDir("card");
    fs.mkdirSync(dir, { mode: 0o700 });
    const identity = SoftwareIdentityKey.create(path.join(dir, "identity.pem"), false);
    const p2p = createLibp2pKey(path.join(dir, "libp2p.key"), false);
    return makeCard(identity, { role: "validator", peerId: p2p.peerId, nowMs: Date.now(), blsPub: bls.pub, blsPop: bls.pop });
  }
  function blsKey(): { pub: string; pop: string } {
    const sk = blsKeygen(crypto.randomBytes(32));
    return { pub: toHex(blsPublicKey(sk)), pop: toHex(blsPopProve(sk)) };
  }
  function genesisOf(cards: NodeCard[]): Genesis {
    return { ...makeLocalGenesis(cards[0]!, Date.now()), name: "bls-mesh", validators: cards, admission: { policy: "open" } };
  }

  test("two validators (different identities) with the same bls_pub are rejected; distinct keys pass", async () => {
    const shared = blsKey();
    const a = await cardWith(shared);
    const b = await cardWith(shared);
    expect(a.node_id).not.toBe(b.node_id);
    expect(() => parseGenesis(genesisOf([a, b]))).toThrow(/genesis validator 1: bls_pub is already another validator's/);
    expect(() => parseGenesis(genesisOf([a, b]), { checkPop: false })).toThrow(/bls_pub is already another validator's/);
    const c = await cardWith(blsKey());
    expect(parseGenesis(genesisOf([a, c])).validators).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe("genesis and mesh policy", () => {
  let cardA: NodeCard;
  let cardB: NodeCard;
  let genesis: Genesis;

  beforeAll(async () => {
    cardA = await makeCard(idA, { role: "both", peerId: peerA, nowMs: NOW, blsPub: blsA.pub, blsPop: blsA.pop });
    cardB = await makeCard(idB, { role: "validator", peerId: createLibp2pKey(path.join(dir, "b.p2p"), true).peerId, nowMs: NOW, blsPub: blsB.pub, blsPop: blsB.pop });
    genesis = makeLocalGenesis(cardA, NOW);
  });

  test("the intel policy: written only where it differs from the defaults, so older meshes keep their id; malformed values refused", () => {
    const plain = buildGenesis({ name: "m", validators: [cardA], admission: "open", nowMs: NOW });
    const same = buildGenesis({ name: "m", validators: [cardA], admission: "open", nowMs: NOW, intel: { min_reporters: 2, max_ttl: 7 * 86400, trusted: [], never_block: [] } });
    expect("intel" in same).toBe(false);
    expect(meshIdOf(same)).toBe(meshIdOf(plain));
    const g = buildGenesis({ name: "m", validators: [cardA], admission: "open", nowMs: NOW, intel: { min_reporters: 3, never_block: ["198.51.100.0/24"], trusted: [cardA.node_id] } });
    expect(g.intel).toEqual({ min_reporters: 3, trusted: [cardA.node_id], never_block: ["198.51.100.0/24"] });
    expect(meshIdOf(g)).not.toBe(meshIdOf(plain));
    for (const [intel, why] of [
      [{}, /leave "intel" out/],
      [{ min_reporters: 0 }, /min_reporters/],
      [{ never_block: ["198.51.100.1/24"] }, /never_block\[0\] must be a canonical CIDR/],
      [{ never_block: ["010.0.0.0/8"] }, /never_block\[0\]/],
      [{ trusted: ["xyz"] }, /"trusted" must list node ids/],
      [{ max_ttl: 10 }, /max_ttl/],
      [{ quorum: 1 }, /unexpected field "quorum"/],
    ] as const) {
      expect(() => parseGenesis({ ...clone(plain), intel })).toThrow(why);
    }
  });

  test("validators' peer ids must name Ed25519 keys, one each: votes are checked under them", async () => {
    const sharing = await makeCard(idB, { role: "validator", peerId: peerA, nowMs: NOW, blsPub: blsB.pub, blsPop: blsB.pop });
    expect(() => buildGenesis({ name: "shared", validators: [cardA, sharing], admission: "open", nowMs: NOW })).toThrow(/card 2: peer_id 12D3KooW\w+ is already another validator's/);
    const twoGood = buildGenesis({ name: "two", validators: [cardA, cardB], admission: "open", nowMs: NOW });
    const forged = clone(twoGood);
    forged.validators[1] = sharing;
    expect(() => parseGenesis(forged)).toThrow(/genesis validator 1: peer_id 12D3KooW\w+ is already another validator's/);
    const rsa = await makeCard(idB, { role: "validator", peerId: "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", nowMs: NOW, blsPub: blsB.pub, blsPop: blsB.pop });
    expect(() => buildGenesis({ name: "rsa", validators: [cardA, rsa], admission: "open", nowMs: NOW })).toThrow(/does not name an Ed25519 key/);
  });

  test("makeLocalGenesis → JSON → parseGenesis round trip", () => {
    expect(genesis.name).toBe(`local-${cardA.node_id.slice(0, 12)}`);
    expect(genesis.genesis_time).toBe(formatTime(Math.floor(NOW / 1000) * 1000));
    expect(genesis.epoch_duration).toBe(300);
    expect(genesis.validators).toEqual([cardA]);
    expect(genesis.admission).toEqual({ policy: "allowlist", keys: [cardA.identity_pub] });
    const parsed = parseGenesis(JSON.parse(JSON.stringify(genesis, null, 2)));
    expect(parsed).toEqual(genesis);
    expect(meshIdOf(parsed)).toBe(meshIdOf(genesis));
  });

  test("meshIdOf is sha256(JCS(genesis)), stable under key order, and changes with anything", () => {
    const id = meshIdOf(genesis);
    expect(id).toBe(sha256Hex(canonicalize(genesis)));
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(meshIdOf(clone(genesis))).toBe(id);
    const reordered = Object.fromEntries(Object.entries(genesis).reverse()) as unknown as Genesis;
    expect(meshIdOf(reordered)).toBe(id);
    const variants: ((g: Genesis) => void)[] = [
      (g) => (g.name = g.name + "x"),
      (g) => (g.genesis_time = formatTime(Date.parse(g.genesis_time) + 1000)),
      (g) => (g.epoch_duration = 301),
      (g) => g.validators.push(cardB),
      (g) => (g.admission = { policy: "open" }),
      (g) => g.admission.policy === "allowlist" && g.admission.keys.push(cardB.identity_pub),
      (g) => (g.attestation.required = true),
      (g) => g.attestation.pcrs.push(7),
      (g) => g.attestation.digests.push("00".repeat(32)),
      (g) => (g.validators[0]!.addrs = ["/ip4/1.2.3.4/tcp/1"]),
    ];
    const seen = new Set([id]);
    for (const change of variants) {
      const g = clone(genesis);
      change(g);
      const m = meshIdOf(g);
      expect(seen.has(m)).toBe(false);
      seen.add(m);
    }
  });

  test("MeshPolicy: validators, allowlisted and unknown nodes", () => {
    const third = nodeIdOf(generateKeyPair().publicKey);
    const edgeKey = generateKeyPair().publicKey;
    const g: Genesis = { ...clone(genesis), validators: [cardA, cardB], admission: { policy: "allowlist", keys: [toHex(edgeKey)] } };
    const policy = new MeshPolicy(parseGenesis(g));
    expect(policy.mesh).toBe(meshIdOf(g));
    expect(policy.isAdmitted(cardA.node_id)).toBe(true); // validator, not on the allowlist
    expect(policy.isAdmitted(cardB.node_id)).toBe(true);
    expect(policy.isAdmitted(nodeIdOf(edgeKey))).toBe(true); // allowlisted edge
    expect(policy.isAdmitted(toHex(edgeKey).slice(2))).toBe(false); // the key itself is not a node id
    expect(policy.isAdmitted(third)).toBe(false);

    const local = new MeshPolicy(genesis);
    expect(local.isAdmitted(cardA.node_id)).toBe(true);
    expect(local.isAdmitted(cardB.node_id)).toBe(false);
  });

  test('MeshPolicy: "open" admits everyone', () => {
    const g: Genesis = { ...clone(genesis), admission: { policy: "open" } };
    const policy = new MeshPolicy(parseGenesis(g));
    expect(policy.isAdmitted(cardB.node_id)).toBe(true);
    expect(policy.isAdmitted(nodeIdOf(generateKeyPair().publicKey))).toBe(true);
    expect(policy.mesh).not.toBe(meshIdOf(genesis));
  });

  test("rejects a validator listed twice", () => {
    const g = { ...clone(genesis), validators: [cardA, cardB, clone(cardA)] };
    expect(() => parseGenesis(g)).toThrow(/listed twice/);
    expect(parseGenesis({ ...clone(genesis), validators: [cardA, cardB] }).validators.length).toBe(2);
  });

  test("rejects a bad admission policy", () => {
    const bad: unknown[] = [
      { policy: "closed" },
      { policy: "open", keys: [] },
      { policy: "allowlist" },
      { policy: "allowlist", keys: "x" },
      { policy: "allowlist", keys: [cardA.identity_pub.toUpperCase()] },
      { policy: "allowlist", keys: [cardA.node_id] }, // a node id is not a key
      null,
    ];
    for (const admission of bad) expect(() => parseGenesis({ ...clone(genesis), admission })).toThrow(/admission/);
  });

  test("rejects bad pcrs and attestation", () => {
    for (const pcrs of [[24], [-1], [1.5], ["0"], "0-7"]) {
      expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs, digests: [] } })).toThrow(/pcrs/);
    }
    expect(parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [0, 7, 23], digests: ["0f".repeat(32)], ek_allowlist: ["ab".repeat(32)] } })).toBeTruthy();
    // A sha384 EK's digest (swtpm's and the TCG high-range P-384 EK) is 48 bytes.
    expect(parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: ["0f".repeat(32)], ek_allowlist: ["ab".repeat(48)] } })).toBeTruthy();
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: ["0f".repeat(32)], ek_allowlist: ["ab".repeat(40)] } })).toThrow(/ek_allowlist/);
    // Required, but no EK trusted: nobody could ever enroll.
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [0, 7, 23], digests: ["0f".repeat(32)] } })).toThrow(/ek_roots.*ek_allowlist/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: ["0f".repeat(32)], ek_allowlist: ["AB".repeat(32)] } })).toThrow(/ek_allowlist/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: ["0f".repeat(32)], ek_roots: ["not a certificate"] } })).toThrow(/ek_roots\[0\] is not one PEM certificate/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: ["0f".repeat(32)], ek_allowlist: ["ab".repeat(32)], roles: ["edge", "edge"] } })).toThrow(/roles/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: ["0f".repeat(32)], ek_allowlist: ["ab".repeat(32)], roles: ["admin"] } })).toThrow(/roles/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: "yes", pcrs: [], digests: [] } })).toThrow(/required/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [], digests: ["0F".repeat(32)] } })).toThrow(/digests/);
  });

  test("allowlist keys must be real P-256 points, listed once; required attestation must accept something", () => {
    const notAPoint = "02" + "ff".repeat(32); // x >= p: no such point
    for (const keys of [[notAPoint], ["04" + cardA.identity_pub.slice(2)], [cardA.identity_pub, cardA.identity_pub]]) {
      expect(() => parseGenesis({ ...clone(genesis), admission: { policy: "allowlist", keys } })).toThrow(/admission/);
    }
    expect(parseGenesis({ ...clone(genesis), admission: { policy: "allowlist", keys: [cardA.identity_pub, cardB.identity_pub] } })).toBeTruthy();
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: [] } })).toThrow(/required/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [], digests: ["0f".repeat(32)] } })).toThrow(/required/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: false, pcrs: [7, 7], digests: [] } })).toThrow(/twice/);
  });

  test("parseGenesis returns a copy: later changes to the input do not reach it", () => {
    const input = clone(genesis);
    const parsed = parseGenesis(input);
    input.name = "changed";
    expect(parsed.name).toBe(genesis.name);
  });

  test("rejects other malformed genesis files", () => {
    expect(() => parseGenesis({ ...clone(genesis), validators: [] })).toThrow(/validators/);
    expect(() => parseGenesis({ ...clone(genesis), epoch_duration: 0 })).toThrow(/epoch_duration/);
    expect(() => parseGenesis({ ...clone(genesis), name: "has space" })).toThrow(/name/);
    expect(() => parseGenesis({ ...clone(genesis), extra: 1 })).toThrow(/unexpected field/);
    const tampered = clone(genesis);
    tampered.validators[0]!.role = "edge";
    expect(() => parseGenesis(tampered)).toThrow(/genesis validator 0: signature does not verify/);
  });

  test("rejects a validator whose BLS proof of possession does not verify (DESIGN.md section 4)", async () => {
    // Validly signed by the identity key, but the PoP belongs to another BLS key.
    const rogue = await makeCard(idB, { role: "validator", peerId: peerA, nowMs: NOW, blsPub: blsB.pub, blsPop: blsA.pop });
    expect(() => parseCard(rogue, "card", { checkPop: false })).not.toThrow(); // the card's own signature is fine
    expect(() => parseCard(rogue)).toThrow(/bls_pop is not a valid proof of possession/);
    expect(() => parseGenesis({ ...clone(genesis), validators: [cardA, rogue] })).toThrow(/genesis validator 1: bls_pop/);
  });

  test("rejects a validator without a BLS key (DESIGN.md section 3: each validator card includes it)", async () => {
    const noBls = await makeCard(idB, { role: "validator", peerId: peerA, nowMs: NOW });
    expect(() => parseGenesis({ ...clone(genesis), validators: [cardA, noBls] })).toThrow();
  });
});
