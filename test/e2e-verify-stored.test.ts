// End to end: `dsm verify` covers everything the ledger stores, not only microblocks (issue 14).
// A one-validator mesh (1 s epochs) ingests events, finalizes three checkpoints, and
// quarantines and lifts a node (two more checkpoints, one per decision); each case gets a fresh copy of that data dir, changes ONE
// thing with bun:sqlite, and runs dist/dsm verify, which must exit 2 naming what changed.
// Run `bun run build` first.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { canonicalize } from "../src/encoding/jcs.ts";
import { quarantineDigest, type QuarantineRecord } from "../src/protocol/quarantine.ts";
import { makeNode, runDsm, type TempNode } from "./helpers/e2e.ts";
import { checkpoint, ledgerFile, suricataLine } from "./helpers/spawn-dsm.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let node: TempNode;
let env: Record<string, string>;
let nodeId: string;
let caseNo = 0;

async function dsm(args: string[], dataDir = node.dataDir) {
  return runDsm([...args, "--data-dir", dataDir], env, { timeoutMs: 60_000 });
}

async function ok(args: string[]) {
  const r = await dsm(args);
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r;
}

/** Ingests `n` events, waits for their epoch to close, and checkpoints it. */
async function epochWith(n: number, tag: string) {
  const input = path.join(node.root, `${tag}.ndjson`);
  fs.writeFileSync(input, Array.from({ length: n }, (_, i) => suricataLine(tag, i)).join("\n") + "\n");
  await ok(["ingest", input]);
  await sleep(1100);
  await ok(["checkpoint"]);
}

/** A copy of the pristine data dir with its ledger tampered by fn (foreign keys off, as an attacker would). */
function tamperedCopy(fn: ((db: Database) => void) | null): string {
  const dir = path.join(node.root, `case-${++caseNo}`);
  fs.cpSync(node.dataDir, dir, { recursive: true, filter: (src) => !/-(wal|shm)$/.test(src) });
  if (fn) {
    const db = new Database(ledgerFile(dir));
    try {
      db.exec("PRAGMA foreign_keys = OFF");
      fn(db);
    } finally {
      db.close();
    }
  }
  return dir;
}

const records = (db: Database) =>
  (db.query("SELECT digest, record FROM quarantine_records").all() as { digest: Uint8Array; record: Uint8Array }[]).map((r) => ({
    digest: r.digest,
    record: JSON.parse(Buffer.from(r.record).toString("utf8")) as QuarantineRecord,
  }));

beforeAll(async () => {
  node = await makeNode({ init: false });
  await node.ok(["init", "--role", "validator"]);
  const card = await node.ok(["card", "--json"]);
  nodeId = JSON.parse(card.stdout).node_id;
  const cardFile = path.join(node.root, "card.json");
  fs.writeFileSync(cardFile, card.stdout);
  const genesisFile = path.join(node.root, "g.json");
  const t0 = new Date(Math.floor((Date.now() - 10_000) / 1000) * 1000).toISOString();
  await node.ok(["genesis", "--name", "t", "--validator", cardFile, "--epoch-duration", "1", "--genesis-time", t0, "-o", genesisFile]);
  env = { ...node.env, DSM_MESH_GENESIS: genesisFile };
  // 21 + 13 + 9 leaves: complete subtrees of 8, 16 and 32 leaves are stored as log nodes.
  await epochWith(21, "a");
  await epochWith(13, "b");
  await epochWith(9, "c");
  // One validator is the quorum here: each request is decided by the next checkpoint.
  await ok(["quarantine", "add", nodeId, "--detail", "operator test"]);
  await sleep(1100);
  await ok(["checkpoint"]);
  await ok(["quarantine", "lift", nodeId, "--detail", "lifted again"]);
  await sleep(1100);
  await ok(["checkpoint"]);
  checkpoint(ledgerFile(node.dataDir));
}, 90_000);

afterAll(() => node?.cleanup());

async function expectFailure(dir: string, kind: string, message: RegExp) {
  const j = await dsm(["verify", "--json"], dir);
  expect(j.code, `verify --json; stderr: ${j.stderr}`).toBe(2);
  const report = JSON.parse(j.stdout);
  expect(report.ok).toBe(false);
  expect(report.problem_kinds[kind], JSON.stringify(report.problems)).toBeGreaterThanOrEqual(1);
  const named = report.problems.filter((p: { kind: string }) => p.kind === kind);
  expect(named.some((p: { message: string }) => message.test(p.message)), JSON.stringify(named)).toBe(true);
  const h = await dsm(["verify"], dir);
  expect(h.code).toBe(2);
  expect(h.stdout).toStartWith("FAILED");
  expect(h.stdout).toMatch(message);
  return report;
}

describe("dsm verify covers everything stored", () => {
  test("the untampered ledger verifies, and says what it walked", async () => {
    const dir = tamperedCopy(null);
    const j = await dsm(["verify", "--json"], dir);
    expect(j.code, j.stderr).toBe(0);
    const r = JSON.parse(j.stdout);
    expect(r).toMatchObject({
      ok: true,
      problem_count: 0,
      problem_kinds: {},
      certificates: 5,
      log_leaves: 43,
      quarantine_records: 2,
      quarantine_decisions: 2,
      enrollments: 0,
      consensus_evidence: 0,
    });
    // 32 leaves make nodes at levels 3, 4 and 5 (4 + 2 + 1); 40 add one more of 8.
    expect(r.log_nodes).toBe(8);
    // An S per checkpoint (three of events, one for each decision), under its epoch slot and its height slot.
    expect(r.consensus_messages).toBe(10);
    const h = await dsm(["verify"], dir);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^OK: .*5 checkpoints \(log of 43 leaves, 8 nodes\), 2 quarantine requests, 2 quarantine decisions, 10 consensus messages/);
  }, 30_000);

  test("a quarantine request's basis", async () => {
    const dir = tamperedCopy((db) => {
      const q = records(db).find((r) => r.record.action === "quarantine")!;
      const text = canonicalize({ ...q.record, basis: 7 });
      db.query("UPDATE quarantine_records SET record = ? WHERE digest = ?").run(Buffer.from(text), q.digest);
    });
    await expectFailure(dir, "quarantine_record", /quarantine record .*signature of validator 0 does not verify/);
  }, 30_000);

  test("a forged, unsigned lift row", async () => {
    const dir = tamperedCopy((db) => {
      const q = records(db).find((r) => r.record.action === "quarantine")!;
      // A lift for the node's current standing, stored under its own digest, with no valid signature.
      const lift: QuarantineRecord = { ...q.record, action: "lift", from_seq: 0, basis: 2, detail: "forged", sig: "00".repeat(96) };
      const row = db.query("SELECT mesh, node_id FROM quarantine_records WHERE digest = ?").get(q.digest) as { mesh: Uint8Array; node_id: Uint8Array };
      db.query("INSERT INTO quarantine_records (mesh, digest, node_id, record, received_at) VALUES (?, ?, ?, ?, ?)").run(
        row.mesh,
        quarantineDigest(lift),
        row.node_id,
        Buffer.from(canonicalize(lift)),
        Date.now(),
      );
    });
    const r = await expectFailure(dir, "quarantine_record", /quarantine record .*signature of validator 0 does not verify/);
    expect(r.problem_count).toBe(1);
  }, 30_000);

  test("a quarantine decision row no checkpoint took", async () => {
    const dir = tamperedCopy((db) => {
      // The lift deleted: the node would stand quarantined though its checkpoint lifted it.
      db.exec("DELETE FROM quarantine_decisions WHERE action = 'lift'");
    });
    const r = await expectFailure(dir, "quarantine_record", /quarantine decision about node .* taken by its checkpoint but missing from the ledger/);
    expect(r.problem_count).toBe(1);
  }, 30_000);

  test("a byte of a Merkle leaf", async () => {
    const dir = tamperedCopy((db) => {
      const b = db.query("SELECT ids FROM log_leaves WHERE block = 0").get() as { ids: Uint8Array };
      const ids = Uint8Array.from(b.ids);
      ids[3 * 32 + 5]! ^= 0x01;
      db.query("UPDATE log_leaves SET ids = ? WHERE block = 0").run(ids);
    });
    const r = await expectFailure(dir, "log_leaf", /log leaf 3 is not microblock .* seq 4\b.*checkpoint epoch \d+ names/);
    // The stored subtree over it no longer hashes from its leaves, and no checkpoint's root recomputes.
    expect(r.problem_kinds.log_node).toBe(3);
    expect(r.problem_kinds.checkpoint).toBe(5);
    expect(r.problems.find((p: { kind: string }) => p.kind === "checkpoint").message).toMatch(/root .* does not match the log's leaves/);
  }, 30_000);

  test("a stored certificate's agg_sig", async () => {
    const dir = tamperedCopy((db) => {
      // Another valid signature in place of the aggregate: the second certificate's, on the first.
      const rows = db.query("SELECT epoch, certificate FROM checkpoints ORDER BY epoch").all() as { epoch: number; certificate: Uint8Array }[];
      const [a, b] = rows.map((r) => JSON.parse(Buffer.from(r.certificate).toString("utf8")));
      db.query("UPDATE checkpoints SET certificate = ? WHERE epoch = ?").run(Buffer.from(canonicalize({ ...a, agg_sig: b.agg_sig })), rows[0]!.epoch);
    });
    const r = await expectFailure(dir, "certificate", /checkpoint epoch \d+: certificate: aggregate BLS signature of 1 validators does not verify/);
    expect(r.problem_count).toBe(1);
  }, 30_000);

  test("a log node, a checkpoint's root and a consensus message's signature", async () => {
    const dir = tamperedCopy((db) => {
      const n = db.query("SELECT level, idx, hash FROM log_nodes ORDER BY level DESC LIMIT 1").get() as { level: number; idx: number; hash: Uint8Array };
      const h = Uint8Array.from(n.hash);
      h[0]! ^= 0x80;
      db.query("UPDATE log_nodes SET hash = ? WHERE level = ? AND idx = ?").run(h, n.level, n.idx);
      const s = db.query("SELECT slot, message FROM consensus_signed ORDER BY slot LIMIT 1").get() as { slot: string; message: Uint8Array };
      const m = JSON.parse(Buffer.from(s.message).toString("utf8"));
      m.sig = (m.sig[0] === "a" ? "b" : "a") + m.sig.slice(1);
      db.query("UPDATE consensus_signed SET message = ? WHERE slot = ?").run(Buffer.from(canonicalize(m)), s.slot);
    });
    const r = await expectFailure(dir, "log_node", /log node \(level 5, index 0\) over leaves \[0, 32\): does not match the hash of its leaves/);
    expect(r.problem_kinds.consensus_message).toBe(1);
    expect(r.problem_kinds.checkpoint ?? 0).toBe(0);
  }, 30_000);
});
