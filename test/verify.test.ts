// verifyLedger (src/ledger/verify.ts) on ledgers altered as an attacker would: altered,
// missing and deleted rows, swapped signatures and tampered key certificates, fork evidence that
// does not prove itself, and rows that belong to no chain. Real nodes, real keys, real SQLite
// files in temp dirs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import * as path from "node:path";
import { generateKeyPair, sign } from "../src/crypto/p256.ts";
import { sha256Hex } from "../src/crypto/sha256.ts";
import { fromHex, toHex, ZERO_HASH } from "../src/encoding/hex.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { formatTime } from "../src/encoding/time.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import type { Ledger } from "../src/ledger/ledger.ts";
import { type VerifyReport, verifyLedger } from "../src/ledger/verify.ts";
import type { DSMNode } from "../src/node/node.ts";
import { issueKeyCert, keyNameOf } from "../src/protocol/keycert.ts";
import { type Microblock, type MicroblockBody, microblockIdBytes } from "../src/protocol/microblock.ts";
import { cleanupTempDirs, closeQuietly, makeNode } from "./helpers/node.ts";
import { useScratch } from "./helpers/scratch.ts";
import { makeTwinMesh, meshReceiver, storedKeyCert, storedPayloadOf, type TwinMesh } from "./helpers/twin-mesh.ts";

const scratch = useScratch("dsm-verify-");
const { newNode, freshLedger } = scratch;

afterAll(cleanupTempDirs);

/** Runs SQL on the ledger file through a connection of our own, foreign keys off (altering the file as an attacker would). */
function tamper(file: string, ...sql: string[]): void {
  const db = new Database(file);
  try {
    db.exec("PRAGMA foreign_keys = OFF");
    for (const s of sql) db.exec(s);
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------
describe("verifyLedger", () => {
  async function nodeWith(n: number) {
    const { node } = await makeNode();
    for (let i = 0; i < n; i++) await node.createMicroblock({ eventType: "suricata.alert", payload: { i } });
    return node;
  }

  test("a clean ledger has no problems", async () => {
    const node = await nodeWith(5);
    try {
      const r = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
      expect(r).toMatchObject({ microblocks: 5, chains: 1, keyCerts: 1, payloadsChecked: 5, payloadsWithheld: 0, problemCount: 0 });
    } finally {
      closeQuietly(node);
    }
  });

  test("an altered row, an altered payload, a missing payload and a deleted row are each found", async () => {
    const node = await nodeWith(6);
    try {
      const mbs = node.ledger.list({});
      // An outside tamperer: its own connection to the ledger file.
      const db = new Database(node.ledger.path);
      db.query("UPDATE microblocks SET event_type = 'suricata.drop' WHERE id = ?").run(fromHex(mbs[1]!.id));
      db.query("UPDATE payloads SET body = ? WHERE hash = ?").run(Buffer.from('{"i":99}'), fromHex(mbs[2]!.payload_hash));
      db.query("DELETE FROM payloads WHERE hash = ?").run(fromHex(mbs[3]!.payload_hash));
      db.query("DELETE FROM microblocks WHERE id = ?").run(fromHex(mbs[4]!.id));
      const r = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
      const msgs = r.problems.map((p) => `${p.seq}: ${p.message}`);
      expect(r.problemCount).toBe(4);
      expect(msgs[0]).toMatch(/^2: .*id does not match its body/);
      expect(msgs[1]).toMatch(/^3: .*payload .* does not match payload_hash/);
      expect(msgs[2]).toMatch(/^4: .*payload is missing/);
      expect(msgs[3]).toMatch(/^6: .*chain gap: expected seq 5/);
      // a payload missing from another node's chain is "withheld", not a problem
      const r2 = await verifyLedger(node.ledger, { ownNodeId: "00".repeat(32) });
      expect(r2.payloadsWithheld).toBe(1);
      expect(r2.problemCount).toBe(3);
    } finally {
      closeQuietly(node);
    }
  });

  test("a swapped signature and a tampered key certificate are found", async () => {
    const node = await nodeWith(3);
    try {
      const mbs = node.ledger.list({});
      // An outside tamperer: its own connection to the ledger file.
      const db = new Database(node.ledger.path);
      db.query("UPDATE microblocks SET sig = ? WHERE id = ?").run(fromHex(mbs[0]!.sig), fromHex(mbs[1]!.id));
      let r = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
      expect(r.problems.map((p) => [p.seq, p.message.replace(/^.*: /, "")])).toEqual([[2, "signature does not verify"]]);
      const cert = JSON.parse(node.ledger.keyCert(mbs[0]!.key)!);
      cert.first_seq = 2;
      db.query("UPDATE key_certs SET body = ?").run(Buffer.from(canonicalize(cert)));
      r = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
      expect(r.problems[0]!.kind).toBe("key_certificate");
      expect(r.problems.filter((p) => p.kind === "microblock").length).toBe(3); // no valid key for any of them
    } finally {
      closeQuietly(node);
    }
  });
});

// ---------------------------------------------------------------------------
// The mesh of test/helpers/twin-mesh.ts: the edge and its twin fork seq 1, mallory is admitted too.
describe("verifyLedger: fork evidence must prove itself", () => {
  let mesh: TwinMesh;
  let edgeMb: Microblock;
  let twinMb: Microblock;

  beforeAll(async () => {
    mesh = await makeTwinMesh(scratch);
    edgeMb = mesh.edgeMb;
    twinMb = mesh.twinMb;
  });

  /** A ledger holding the genuine fork: the edge's seq 1 stored, the twin's seq 1 kept as evidence. */
  function ledgerWithGenuineFork(): Ledger {
    const l = freshLedger();
    const r = meshReceiver(mesh, l);
    r.acceptKeyCert(storedKeyCert(mesh.edge, edgeMb));
    expect(r.acceptMicroblock(edgeMb, storedPayloadOf(mesh.edge, edgeMb)).status).toBe("stored");
    r.acceptKeyCert(storedKeyCert(mesh.twin, twinMb));
    expect(r.acceptMicroblock(twinMb, storedPayloadOf(mesh.twin, twinMb)).status).toBe("fork");
    expect(l.counts().forkEvidence).toBe(1);
    return l;
  }
  function forkProblems(report: VerifyReport) {
    return report.problems.filter((p) => p.kind === "fork_evidence");
  }

  test("genuine evidence (two nodes sharing one identity) verifies clean", async () => {
    const l = ledgerWithGenuineFork();
    const report = await verifyLedger(l);
    expect(report.forkEvidence).toBe(1);
    expect(report.problems).toEqual([]);
    expect(report.problemCount).toBe(0);
  });

  test("evidence signed by mallory's certified key but claiming node A is reported", async () => {
    const l = freshLedger();
    const r = meshReceiver(mesh, l);
    // Node A is known and clean here.
    r.acceptKeyCert(storedKeyCert(mesh.edge, edgeMb));
    r.acceptMicroblock(edgeMb, storedPayloadOf(mesh.edge, edgeMb));
    // Mallory certifies a signing key of her own: a valid certificate, for node M.
    const malloryId = SoftwareIdentityKey.load(path.join(mesh.malloryDir, "identity.pem"));
    const kp = generateKeyPair();
    const cert = await issueKeyCert(malloryId, {
      mesh: mesh.validator.mesh,
      signingKey: kp.privateKey,
      firstSeq: 1,
      notAfterMs: Date.now() + 3_600_000,
    });
    r.acceptKeyCert(cert);
    // Two microblocks claiming node A, seq 1, validly signed by mallory's key.
    const forge = (payload: unknown): Microblock => {
      const body: MicroblockBody = {
        v: 1,
        type: "M",
        mesh: mesh.validator.mesh,
        node_id: mesh.edge.nodeId,
        seq: 1,
        prev: ZERO_HASH,
        timestamp: formatTime(Date.now()),
        event_type: "test.forged",
        payload_hash: sha256Hex(canonicalize(payload)),
        key: keyNameOf(kp.publicKey),
      };
      const id = microblockIdBytes(body);
      return { ...body, id: toHex(id), sig: toHex(sign(kp.privateKey, id)) };
    };
    const a = forge({ n: 1 });
    const b = forge({ n: 2 });
    l.immediate(() => l.insertForkEvidence(a, canonicalize(a), canonicalize(b), Date.now()));
    const report = await verifyLedger(l);
    const problems = forkProblems(report);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toMatch(/certified for another node/);
    expect(report.problemCount).toBeGreaterThan(0);
  });

  test("a genuine evidence row moved to another seq is reported", async () => {
    const l = ledgerWithGenuineFork();
    tamper(l.path, "UPDATE fork_evidence SET seq = seq + 7");
    const problems = forkProblems(await verifyLedger(l));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toMatch(/not for the chain and seq the row names/);
  });

  test("a genuine evidence row moved to another node's chain is reported", async () => {
    const l = ledgerWithGenuineFork();
    // Give the validator's own node a chain here, then pin the evidence on it.
    const own = await mesh.validator.createMicroblock({ eventType: "test.event", payload: { own: true } });
    const r = meshReceiver(mesh, l);
    r.acceptKeyCert(storedKeyCert(mesh.validator, own));
    r.acceptMicroblock(own, storedPayloadOf(mesh.validator, own));
    const target = l.chainOf(mesh.validator.mesh, mesh.validator.nodeId, false)!;
    const from = l.chainOf(mesh.edge.mesh, mesh.edge.nodeId, false)!;
    expect(target).not.toBe(from);
    tamper(l.path, `UPDATE fork_evidence SET chain = ${target}`);
    const report = await verifyLedger(l);
    const problems = forkProblems(report);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toMatch(/not for the chain and seq the row names/);
  });
});

// ---------------------------------------------------------------------------
describe("verifyLedger: rows that belong to no chain are reported", () => {
  async function nodeWithRows(n: number): Promise<DSMNode> {
    const { node } = await newNode("orphans");
    for (let i = 0; i < n; i++) await node.createMicroblock({ eventType: "test.event", payload: { i } });
    const clean = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
    expect(clean.problems).toEqual([]);
    return node;
  }

  test("the chains row deleted: microblocks and key certificates are reported, not passed as verified", async () => {
    const node = await nodeWithRows(3);
    tamper(node.ledger.path, "DELETE FROM chains");
    const report = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
    expect(report.problemCount).toBeGreaterThan(0);
    const messages = report.problems.map((p) => p.message);
    expect(messages).toContainEqual(expect.stringMatching(/^3 microblocks rows belong to no chain/));
    expect(messages).toContainEqual(expect.stringMatching(/^1 key_certs rows belong to no chain/));
  });

  test("one microblock pointed at chain 99 is reported", async () => {
    const node = await nodeWithRows(3);
    tamper(node.ledger.path, "UPDATE microblocks SET chain = 99 WHERE rowid = (SELECT max(rowid) FROM microblocks)");
    const report = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
    expect(report.problemCount).toBe(1);
    expect(report.problems[0]!.message).toMatch(/^1 microblocks rows belong to no chain/);
  });
});
