// The receive path: another node's key certificates and microblocks, placed against
// the stored chain (extend, duplicate, gap, fork), with real nodes and real ledgers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { KeyCertRejected, Receiver } from "../src/chain/accept.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { issueKeyCert } from "../src/protocol/keycert.ts";
import { generateKeyPair } from "../src/crypto/p256.ts";
import { type Microblock, MicroblockRejected } from "../src/protocol/microblock.ts";
import { defaultConfig, type DsmConfig } from "../src/config/config.ts";
import { DSMNode } from "../src/node/node.ts";
import { makeLocalGenesis, type Genesis } from "../src/protocol/genesis.ts";
import { verifyLedger } from "../src/ledger/verify.ts";
import { withoutLocalFields } from "../src/ledger/ledger.ts";
import { certificateLine, microblockLine, parseExchangeLine } from "../src/chain/exchange.ts";
import { fromHex } from "../src/encoding/hex.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import type { KeyCert } from "../src/protocol/keycert.ts";
import { useScratch } from "./helpers/scratch.ts";
import { makeTwinMesh, meshReceiver, storedKeyCert, storedPayloadOf, type TwinMesh } from "./helpers/twin-mesh.ts";

let root: string;
let config: DsmConfig;
let validator: DSMNode; // receives
let edge: DSMNode; // writes
let edgeTwin: DSMNode; // same identity, separate ledger: can fork the edge's chain

async function initNode(name: string): Promise<string> {
  const dir = path.join(root, name);
  await DSMNode.init({ dataDir: dir, config: defaultConfig() });
  return dir;
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-accept-"));
  const vDir = await initNode("validator");
  const eDir = await initNode("edge");
  // The twin is a byte copy of the edge's keys with an empty ledger of its own.
  const tDir = path.join(root, "twin");
  fs.cpSync(eDir, tDir, { recursive: true });
  fs.rmSync(path.join(tDir, "ledger.sqlite"), { force: true });
  // One shared mesh: the validator's card, open admission.
  const vCard = JSON.parse(fs.readFileSync(path.join(vDir, "card.json"), "utf8"));
  const genesis: Genesis = { ...makeLocalGenesis(vCard, Date.now()), name: "test-mesh", admission: { policy: "open" } };
  const genesisFile = path.join(root, "genesis.json");
  fs.writeFileSync(genesisFile, JSON.stringify(genesis));
  config = defaultConfig();
  config.mesh.genesis = genesisFile;
  validator = DSMNode.open(vDir, config);
  edge = DSMNode.open(eDir, config);
  edgeTwin = DSMNode.open(tDir, config);
});

afterAll(() => {
  for (const n of [validator, edge, edgeTwin]) n?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function expectRejected(fn: () => unknown, reason: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(MicroblockRejected);
  expect((caught as MicroblockRejected).reason).toBe(reason as MicroblockRejected["reason"]);
}

function receiver(): Receiver {
  return new Receiver(validator.ledger, validator.policy, { maxClockSkewMs: 60_000 });
}

function certOf(node: DSMNode, mb: Microblock): unknown {
  return JSON.parse(node.ledger.keyCert(mb.key)!);
}

function payloadOf(node: DSMNode, mb: Microblock): unknown {
  return JSON.parse(node.ledger.payload(mb.payload_hash)!);
}

describe("Receiver", () => {
  test("all nodes name the shared mesh", () => {
    expect(edge.mesh).toBe(validator.mesh);
    expect(edgeTwin.nodeId).toBe(edge.nodeId);
  });

  test("extends, duplicates, gaps, then fills the gap", async () => {
    const mbs: Microblock[] = [];
    for (let i = 0; i < 4; i++) mbs.push(await edge.createMicroblock({ eventType: "test.event", payload: { i } }));
    const r = receiver();
    // Unknown signing key until its certificate arrives.
    expectRejected(() => r.acceptMicroblock(mbs[0], payloadOf(edge, mbs[0]!)), "unknown_key");
    r.acceptKeyCert(certOf(edge, mbs[0]!));
    expect((r.acceptMicroblock(mbs[0], payloadOf(edge, mbs[0]!))).status).toBe("stored");
    expect((r.acceptMicroblock(mbs[0])).status).toBe("duplicate");
    const gap = r.acceptMicroblock(mbs[2], payloadOf(edge, mbs[2]!));
    expect(gap).toMatchObject({ status: "gap", have: 1 });
    expect(validator.ledger.byId(mbs[2]!.id)).toBeNull();
    for (const i of [1, 2, 3]) expect((r.acceptMicroblock(mbs[i], payloadOf(edge, mbs[i]!))).status).toBe("stored");
    expect(validator.ledger.head(edge.mesh, edge.nodeId)?.seq).toBe(4);
    // A withheld payload is accepted (payload separation) and reported as withheld by verify.
    const more = await edge.createMicroblock({ eventType: "test.event", payload: { i: 4 } });
    expect((r.acceptMicroblock(more)).status).toBe("stored");
    const report = await verifyLedger(validator.ledger, { ownNodeId: validator.nodeId });
    expect(report.problems).toEqual([]);
    expect(report.payloadsWithheld).toBe(1);
  });

  test("verify flags a stored chain whose node the mesh does not admit", async () => {
    const admitted = await verifyLedger(validator.ledger, { ownNodeId: validator.nodeId, policy: validator.policy });
    expect(admitted.problems).toEqual([]);
    // The same ledger judged under a policy that does not admit the edge.
    const strict = { mesh: validator.mesh, isAdmitted: (id: string) => id !== edge.nodeId };
    const r = await verifyLedger(validator.ledger, { ownNodeId: validator.nodeId, policy: strict });
    expect(r.problemCount).toBe(1);
    expect(r.problems[0]!.message).toMatch(/not admitted/);
    expect(r.problems[0]!.node_id).toBe(edge.nodeId);
  });

  test("a payload that does not match payload_hash is refused and nothing is stored", async () => {
    const mb = await edge.createMicroblock({ eventType: "test.event", payload: { i: 5 } });
    const before = validator.ledger.counts();
    expectRejected(() => receiver().acceptMicroblock(mb, { i: 999 }), "payload_hash");
    expect(validator.ledger.counts()).toEqual(before);
  });

  test("a microblock whose prev does not link is refused", async () => {
    const mb = await edge.createMicroblock({ eventType: "test.event", payload: { i: 6 } });
    // Re-sign nothing: just claim another prev; the id no longer matches, so it fails on id first.
    const forged = { ...mb, prev: "ab".repeat(32) };
    expectRejected(() => receiver().acceptMicroblock(forged), "id");
  });

  test("a second, different certificate for one signing key is a conflict; reasons are codes", async () => {
    const identity = SoftwareIdentityKey.load(edge.layout.identityKey);
    const kp = generateKeyPair();
    const issue = (firstSeq: number) =>
      issueKeyCert(identity, { mesh: edge.mesh, signingKey: kp.privateKey, firstSeq, notAfterMs: Date.now() + 3_600_000 });
    const r = receiver();
    r.acceptKeyCert(await issue(100));
    let caught: unknown;
    try {
      r.acceptKeyCert(await issue(200));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(KeyCertRejected);
    expect((caught as KeyCertRejected).reason).toBe("conflict");
    let malformed: unknown;
    try {
      r.acceptKeyCert({ nonsense: true });
    } catch (e) {
      malformed = e;
    }
    expect((malformed as KeyCertRejected).reason).toBe("key_certificate");
  });

  test("a key certificate from another mesh is refused (reason mesh)", async () => {
    const dir = await initNode("stranger");
    const stranger = DSMNode.open(dir, defaultConfig());
    try {
      const mb = await stranger.createMicroblock({ eventType: "x", payload: {} });
      expect(() => receiver().acceptKeyCert(certOf(stranger, mb))).toThrow(/another mesh/);
      try {
        receiver().acceptKeyCert(certOf(stranger, mb));
      } catch (e) {
        expect((e as KeyCertRejected).reason).toBe("mesh");
      }
      expectRejected(() => receiver().acceptMicroblock(mb), "mesh");
    } finally {
      stranger.close();
    }
  });

  test("two valid microblocks for one seq are kept as fork evidence and quarantine the node", async () => {
    const r = receiver();
    const head = validator.ledger.head(edge.mesh, edge.nodeId)!;
    // Catch the validator up with the edge first.
    for (const mb of edge.ledger.list({ nodeId: edge.nodeId, fromSeq: head.seq + 1, descending: false })) {
      const { rowid: _r, received_at: _a, ...plain } = mb;
      r.acceptMicroblock(plain);
    }
    const twinFirst = await edgeTwin.createMicroblock({ eventType: "test.fork", payload: { other: true } });
    r.acceptKeyCert(certOf(edgeTwin, twinFirst));
    const out = r.acceptMicroblock(twinFirst);
    expect(out.status).toBe("fork");
    expect(validator.ledger.counts().forkEvidence).toBe(1);
    // Now quarantined: nothing more from this node is accepted.
    const next = await edge.createMicroblock({ eventType: "test.event", payload: { after: "fork" } });
    expectRejected(() => r.acceptMicroblock(next), "quarantined");
    // What is already stored stays a duplicate after the quarantine, not a rejection.
    const storedFirst = withoutLocalFields(validator.ledger.bySeq(edge.mesh, edge.nodeId, 1)!);
    expect(r.acceptMicroblock(storedFirst).status).toBe("duplicate");
    // The evidence proves itself.
    expect((await verifyLedger(validator.ledger, { ownNodeId: validator.nodeId })).problems).toEqual([]);
  });
});

describe("gossip lines through Receiver.batch", () => {
  test("a payload is stored in its canonical form whatever text carried it; a payload member that does not hash is refused", async () => {
    const dir = await initNode("edge-lines");
    const e2 = DSMNode.open(dir, config);
    try {
      const mbs: Microblock[] = [];
      // Keys out of order and a non-ASCII string: the canonical text differs from a naive one.
      for (let i = 0; i < 4; i++) mbs.push(await e2.createMicroblock({ eventType: "test.event", payload: { z: i, a: "é\u2028", n: [1.5, -0, 1e21] } }));
      const canonical = (mb: Microblock) => e2.ledger.payload(mb.payload_hash)!;
      const lines = [certificateLine(e2.ledger.keyCert(mbs[0]!.key)!), ...mbs.map((mb) => microblockLine(mb, canonical(mb)))].map((l) => l.trimEnd());
      const rec = (line: string, where: string) => {
        const r = parseExchangeLine(line, where);
        if (r.kind !== "microblock") throw new Error("not a microblock line");
        return r;
      };
      const first = rec(lines[1]!, "first");
      // Keys reordered, and the payload's text spaced out: same values.
      const reordered = rec(JSON.stringify({ payload: JSON.parse(canonical(mbs[1]!)), microblock: withoutLocalFields(mbs[1]!), kind: "microblock" }), "reordered");
      const spaced = rec(lines[3]!.replace(canonical(mbs[2]!), JSON.stringify(JSON.parse(canonical(mbs[2]!)), null, 1)), "spaced");
      const r = receiver();
      const outs = r.batch(() => {
        r.acceptKeyCert((parseExchangeLine(lines[0]!, "cert") as { certificate: unknown }).certificate);
        return [first, reordered, spaced].map((x) => r.acceptMicroblock(x.microblock, x.payload).status);
      });
      expect(outs).toEqual(["stored", "stored", "stored"]);
      for (const mb of mbs.slice(0, 3)) expect(validator.ledger.payload(mb.payload_hash)).toBe(canonical(mb));
      // A second "payload" member (JSON.parse would keep the last), or a second "sig" in the
      // microblock: the line is refused before anything reads it (I-JSON, RFC 7493).
      expect(() => parseExchangeLine(lines[4]!.slice(0, -1) + `,"payload":{"z":3}}`, "doubled")).toThrow(/member name "payload" appears twice/);
      expect(() => parseExchangeLine(lines[4]!.replace('"sig":', '"sig":"00","sig":'), "doubled sig")).toThrow(/member name "sig" appears twice/);
      // Another value in the payload's place: refused, nothing stored.
      const tampered = rec(lines[4]!.replace('"z":3', '"z":4'), "tampered");
      const before = validator.ledger.counts();
      for (const x of [tampered]) expectRejected(() => r.batch(() => r.acceptMicroblock(x.microblock, x.payload)), "payload_hash");
      expect(validator.ledger.counts()).toEqual(before);
      expect(validator.ledger.head(e2.mesh, e2.nodeId)?.seq).toBe(3);
    } finally {
      e2.close();
    }
  });
});

// ---------------------------------------------------------------------------
// A mesh of its own (test/helpers/twin-mesh.ts), with mallory, a second admitted node, and
// a fresh ledger per test (meshReceiver, storedKeyCert and storedPayloadOf read that mesh).
describe("Receiver.acceptKeyCert: one signing key, one certificate", () => {
  const scratch = useScratch("dsm-accept-cert-");
  const { freshLedger } = scratch;
  let mesh: TwinMesh;
  let edgeMb: Microblock;

  beforeAll(async () => {
    mesh = await makeTwinMesh(scratch);
    edgeMb = mesh.edgeMb;
  });


  /** Mallory certifies the edge's signing key (she does not hold it, so signing_pop cannot be right). */
  const stealCert = (genuine: KeyCert) =>
    issueKeyCert(SoftwareIdentityKey.load(path.join(mesh.malloryDir, "identity.pem")), {
      mesh: mesh.validator.mesh,
      signingKey: generateKeyPair().privateKey,
      signingPub: fromHex(genuine.signing_pub, 33),
      firstSeq: 1,
      notAfterMs: Date.parse(genuine.not_after),
    });

  test("a second, different certificate for a known signing_pub is refused; the identical one is fine", async () => {
    const l = freshLedger();
    const r = meshReceiver(mesh, l);
    const genuine = storedKeyCert(mesh.edge, edgeMb);
    r.acceptKeyCert(genuine);
    // Mallory (an admitted node) certifies the edge's signing key as her own.
    const stolen = await stealCert(genuine);
    expect(stolen.node_id).toBe(mesh.mallory.nodeId);
    let caught: unknown;
    try {
      r.acceptKeyCert(stolen);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(KeyCertRejected);
    // The signing key's proof of possession (signing_pop) is what stops it.
    expect((caught as Error).message).toMatch(/signing_pop does not verify/);
    // Also from a fresh receiver on the same ledger (nothing cached in memory).
    expect(() => meshReceiver(mesh, l).acceptKeyCert(stolen)).toThrow(KeyCertRejected);
    // The stored certificate is still the edge's, and the edge's microblock still fits it.
    expect(l.keyCert(edgeMb.key)).toBe(canonicalize(genuine));
    expect(r.acceptMicroblock(edgeMb, storedPayloadOf(mesh.edge, edgeMb)).status).toBe("stored");
    // The identical certificate again: accepted, nothing changes.
    const before = l.counts();
    expect(r.acceptKeyCert(structuredClone(genuine)).signing_pub).toBe(genuine.signing_pub);
    expect(meshReceiver(mesh, l).acceptKeyCert(structuredClone(genuine)).node_id).toBe(mesh.edge.nodeId);
    expect(l.counts()).toEqual(before);
  });

  test("front-running: a stolen certificate that arrives first changes nothing", async () => {
    const l = freshLedger();
    const r = meshReceiver(mesh, l);
    const genuine = storedKeyCert(mesh.edge, edgeMb);
    const stolen = await stealCert(genuine);
    expect(() => r.acceptKeyCert(stolen)).toThrow(KeyCertRejected);
    expect(l.keyCert(edgeMb.key)).toBeNull();
    r.acceptKeyCert(genuine);
    expect(r.acceptMicroblock(edgeMb, storedPayloadOf(mesh.edge, edgeMb)).status).toBe("stored");
  });
});
