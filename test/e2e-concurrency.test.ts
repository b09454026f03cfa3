// End to end: several `dsm ingest` processes on one data dir at once (DESIGN.md section 9:
// writes that assign seq run in BEGIN IMMEDIATE). However their batches interleave, the
// node's chain must stay one gapless, linked sequence, each process signing with its own
// certified key, and every acknowledged line stored exactly once.
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  chainProblem,
  DSM,
  dsmEnv,
  hexToBlob,
  initNode,
  type InitInfo,
  inspect,
  logAll,
  parseTag,
  removeDir,
  requireBinary,
  runDsm,
  sleep,
  suricataLine,
  tempDir,
} from "./helpers/spawn-dsm.ts";

const LINES = 2000;

interface Ack {
  source: string;
  line: number;
  id: string;
  seq: number;
}

interface Finished {
  tag: string;
  code: number;
  stderr: string;
  acks: Ack[];
}

let root: string | undefined;
afterEach(() => {
  removeDir(root);
  root = undefined;
});
beforeAll(() => requireBinary());

function readAcks(file: string): Ack[] {
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Ack);
}

/** Starts one `dsm ingest --json` per input together; stdin is a file path or a stream. */
async function ingestTogether(
  dataDir: string,
  inputs: { tag: string; file?: string; stream?: ReadableStream<Uint8Array> }[],
  env: Record<string, string> = {},
): Promise<Finished[]> {
  const procs = inputs.map((inp) => {
    const out = path.join(root!, `${inp.tag}.out`);
    const args = [DSM, "ingest", "--json", "--data-dir", dataDir, ...(inp.file ? [inp.file] : [])];
    const proc = Bun.spawn(args, {
      stdin: inp.stream ?? "ignore",
      // A file, not a pipe: these checks are about the ledger (see the slow-reader test for stdout).
      stdout: Bun.file(out),
      stderr: "pipe",
      env: dsmEnv(env),
    });
    return { inp, out, proc, stderr: new Response(proc.stderr).text() };
  });
  const timer = setTimeout(() => procs.forEach((p) => p.proc.kill("SIGKILL")), 90_000);
  const done = await Promise.all(
    procs.map(async (p) => ({ tag: p.inp.tag, code: await p.proc.exited, stderr: await p.stderr, acks: readAcks(p.out) })),
  );
  clearTimeout(timer);
  return done;
}

/** Everything the ledger must look like after the processes are done; returns the log's keys in seq order. */
async function checkMerged(dataDir: string, node: InitInfo, done: Finished[]): Promise<string[]> {
  const total = done.length * LINES;
  for (const d of done) {
    expect(d.code, `${d.tag} exit code; stderr: ${d.stderr}`).toBe(0);
    expect(d.stderr).toContain(`${LINES} lines: ${LINES} stored, 0 rejected`);
    expect(d.acks.length, `${d.tag}: acknowledgements`).toBe(LINES);
    d.acks.forEach((a, k) => {
      if (a.line !== k + 1 || (k > 0 && a.seq <= d.acks[k - 1]!.seq)) {
        throw new Error(`${d.tag}: ack ${k} is ${JSON.stringify(a)}: expected line ${k + 1} with a seq above the previous`);
      }
    });
  }

  // One chain, seq 1..total, each prev the id before it.
  const rows = await logAll(dataDir, root!);
  expect(rows.length).toBe(total);
  expect(chainProblem(rows)).toBeNull();
  expect(rows.every((r) => r.node_id === node.node_id && r.mesh === node.mesh)).toBe(true);
  const byId = new Map(rows.map((r) => [r.id, r]));

  // Each process: every ack stored at its seq, all signed by one key of its own.
  const keyOf = new Map<string, string>();
  for (const d of done) {
    const keys = new Set<string>();
    for (const a of d.acks) {
      const r = byId.get(a.id);
      if (!r || r.seq !== a.seq) throw new Error(`${d.tag}: acknowledged ${a.id} (seq ${a.seq}) is ${r ? `at seq ${r.seq}` : "not in dsm log"}`);
      keys.add(r.key);
    }
    expect(keys.size, `${d.tag}: signing keys`).toBe(1);
    keyOf.set(d.tag, [...keys][0]!);
  }
  expect(new Set(keyOf.values()).size, "one key per process").toBe(done.length);

  inspect(dataDir, (db) => {
    // One key certificate per process, covering every seq that process signed. (The node
    // certifies a key before taking the write lock, so first_seq may be below the seq the key
    // ends up signing first when another process got the lock in between.)
    const certs = db.query("SELECT lower(hex(key)) AS key, first_seq FROM key_certs").all() as { key: string; first_seq: number }[];
    expect(certs.length, "key certificates").toBe(done.length);
    for (const d of done) {
      const cert = certs.find((c) => c.key === keyOf.get(d.tag));
      expect(cert, `${d.tag}: key certificate of its key`).toBeDefined();
      expect(cert!.first_seq, `${d.tag}: key certificate first_seq`).toBeGreaterThanOrEqual(1);
      expect(cert!.first_seq, `${d.tag}: key certificate first_seq`).toBeLessThanOrEqual(d.acks[0]!.seq);
    }
    // Each stored payload is the line its process acknowledged.
    const sigs = new Map(
      (
        db
          .query(
            `SELECT lower(hex(m.id)) AS id, json_extract(CAST(p.body AS TEXT), '$.original.alert.signature') AS sig
             FROM microblocks m JOIN payloads p ON p.hash = m.payload_hash`,
          )
          .all() as { id: string; sig: string }[]
      ).map((r) => [r.id, r.sig]),
    );
    expect(sigs.size).toBe(total);
    for (const d of done) {
      for (const a of d.acks) {
        const t = parseTag(sigs.get(a.id));
        if (!t || t.tag !== d.tag || t.i !== a.line - 1) throw new Error(`${d.tag}: line ${a.line} stored as ${sigs.get(a.id)}`);
      }
    }
    const one = db.query("SELECT count(*) AS n FROM microblocks WHERE id = ?").get(hexToBlob(rows[0]!.id)) as { n: number };
    expect(one.n).toBe(1);
  });

  const v = await runDsm(["verify", "--json", "--data-dir", dataDir]);
  expect(v.code, `dsm verify: ${v.stdout} ${v.stderr}`).toBe(0);
  expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, microblocks: total, chains: 1, key_certificates: done.length, payloads_checked: total });
  return rows.map((r) => r.key);
}

/** Number of maximal runs of one value: [a,a,b,a] has 3. */
function runsOf(keys: string[]): number {
  let n = 0;
  keys.forEach((k, i) => {
    if (i === 0 || k !== keys[i - 1]) n += 1;
  });
  return n;
}

describe("concurrent dsm ingest on one data dir", () => {
  test("two processes, 2,000 lines each from files, started together", async () => {
    root = tempDir("concurrency2");
    const dataDir = path.join(root, "node");
    const node = await initNode(dataDir);
    const inputs = ["c2-a", "c2-b"].map((tag) => {
      const file = path.join(root!, `${tag}.ndjson`);
      fs.writeFileSync(file, Array.from({ length: LINES }, (_, i) => suricataLine(tag, i)).join("\n") + "\n");
      return { tag, file };
    });
    const done = await ingestTogether(dataDir, inputs);
    const keys = await checkMerged(dataDir, node, done);
    console.log(`e2e-concurrency: 2 processes, ${keys.length} microblocks in ${runsOf(keys)} runs of one key`);
  }, 120_000);

  test("three processes, small batches (DSM_LEDGER_BATCH_MAX_EVENTS=7), paced stdin: batches interleave", async () => {
    root = tempDir("concurrency3");
    const dataDir = path.join(root, "node");
    const node = await initNode(dataDir);
    const enc = new TextEncoder();
    const CHUNK = 7;
    // Each stdin delivers CHUNK lines at a time with a short pause, so all three processes
    // keep committing small batches for the whole run and must take turns on the write lock.
    const paced = (tag: string) => {
      let next = 0;
      return new ReadableStream<Uint8Array>(
        {
          async pull(c) {
            if (next >= LINES) return c.close();
            if (next > 0) await sleep(2);
            let chunk = "";
            for (let k = 0; k < CHUNK && next < LINES; k++, next++) chunk += suricataLine(tag, next) + "\n";
            c.enqueue(enc.encode(chunk));
          },
        },
        { highWaterMark: 0 },
      );
    };
    const inputs = ["c3-a", "c3-b", "c3-c"].map((tag) => ({ tag, stream: paced(tag) }));
    const done = await ingestTogether(dataDir, inputs, { DSM_LEDGER_BATCH_MAX_EVENTS: "7" });
    const keys = await checkMerged(dataDir, node, done);
    const runs = runsOf(keys);
    console.log(`e2e-concurrency: 3 processes, ${keys.length} microblocks in ${runs} runs of one key`);
    // Three processes one after the other would give exactly 3 runs.
    expect(runs, "the key field alternates between processes along the chain").toBeGreaterThan(3);
  }, 120_000);
});
