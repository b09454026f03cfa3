// End to end: every event `dsm ingest` has acknowledged (its id printed) survives a crash.
// A real dist/dsm process is fed Suricata alerts as fast as it takes them and SIGKILLed
// at a random moment, again and again on one data dir; after each kill every printed id
// must be in the ledger, the chain must continue where it stopped, and verify must pass.
// Replay a failure with DSM_E2E_SEED=<seed printed below>.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  chainProblem,
  DSM,
  dsmEnv,
  hexToBlob,
  initNode,
  inspect,
  type InitInfo,
  logAll,
  parseTag,
  prng,
  removeDir,
  requireBinary,
  runDsm,
  sleep,
  suricataLine,
  tempDir,
} from "./helpers/spawn-dsm.ts";

const SEED = Number(process.env.DSM_E2E_SEED ?? Date.now() % 2 ** 31);
// DSM_DURABILITY_KILLS / _PARTIAL: the README's test command runs fewer (its time budget).
const PLAIN_KILLS = Number(process.env.DSM_DURABILITY_KILLS ?? 16);
const PARTIAL_KILLS = Number(process.env.DSM_DURABILITY_PARTIAL ?? 3);
const LINES_PER_CHUNK = 40;

interface Ack {
  source: string;
  line: number;
  id: string;
  seq: number;
}

interface CrashRun {
  tag: string;
  acks: Ack[];
  /** Complete lines handed to the child's stdin (an upper bound on what it can have read). */
  sent: number;
  partialTag: string | null;
  stderr: string;
  signal: string;
}

/**
 * One ingest process: fed until killed with SIGKILL delayMs after it was spawned (from
 * "spawn": the kill may land during startup or the first commit) or after its first
 * acknowledgement (from "first-ack": the kill lands mid-stream). With partial, the feeder
 * then stops at a line boundary, writes half of the next line, waits until every complete
 * line is acknowledged (so the half line sits in dsm's line buffer), and only then kills.
 */
async function crashRun(dataDir: string, tag: string, delayMs: number, from: "spawn" | "first-ack", partial: boolean): Promise<CrashRun> {
  const enc = new TextEncoder();
  let sent = 0;
  let stopping = false;
  let partialWritten = false;
  const partialTag = partial ? `${tag}-partial` : null;
  const stdin = new ReadableStream<Uint8Array>(
    {
      pull(c) {
        if (stopping) {
          if (partial && !partialWritten) {
            const whole = suricataLine(partialTag!, sent);
            c.enqueue(enc.encode(whole.slice(0, Math.floor(whole.length / 2))));
            partialWritten = true;
          }
          return new Promise<void>(() => {}); // nothing more, but keep stdin open
        }
        let chunk = "";
        for (let k = 0; k < LINES_PER_CHUNK; k++) chunk += suricataLine(tag, sent + k) + "\n";
        c.enqueue(enc.encode(chunk));
        sent += LINES_PER_CHUNK;
      },
    },
    { highWaterMark: 0 },
  );
  const proc = Bun.spawn([DSM, "ingest", "--json", "--data-dir", dataDir], {
    stdin,
    stdout: "pipe",
    stderr: "pipe",
    env: dsmEnv(),
  });
  const acks: Ack[] = [];
  const reading = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        acks.push(JSON.parse(buf.slice(0, nl)) as Ack);
        buf = buf.slice(nl + 1);
      }
    }
    // A line cut off by the kill was never acknowledged: it is not counted.
  })();
  const stderr = new Response(proc.stderr).text();

  if (from === "first-ack") {
    const deadline = Date.now() + 10_000;
    while (acks.length === 0 && Date.now() < deadline && proc.exitCode === null) await sleep(2);
    if (acks.length === 0) {
      proc.kill("SIGKILL");
      throw new Error(`${tag}: dsm ingest acknowledged nothing within 10 s of a continuous stream: ${await stderr}`);
    }
  }
  await sleep(delayMs);
  if (partial) {
    stopping = true;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !(partialWritten && acks.length === sent)) await sleep(5);
    await sleep(20);
  }
  proc.kill("SIGKILL");
  await proc.exited;
  await reading;
  return { tag, acks, sent, partialTag, stderr: await stderr, signal: String(proc.signalCode) };
}

describe("dsm ingest: every acknowledged event survives SIGKILL", () => {
  let root: string;
  let dataDir: string;
  let node: InitInfo;

  beforeAll(async () => {
    requireBinary();
    console.log(`e2e-durability: seed ${SEED} (replay with DSM_E2E_SEED=${SEED})`);
    root = tempDir("durability");
    dataDir = path.join(root, "node");
    node = await initNode(dataDir);
  });
  afterAll(() => removeDir(root));

  test(
    `${PLAIN_KILLS} kills mid-stream and ${PARTIAL_KILLS} with a partial line, one growing chain`,
    async () => {
      // Delays draw from their own stream, so a seed replays the same kill schedule whatever was acknowledged.
      const rand = prng(SEED);
      const pick = prng(SEED ^ 0x5eed);
      const allAcked = new Map<string, number>(); // id -> seq
      let runsWithAcks = 0;
      const total = PLAIN_KILLS + PARTIAL_KILLS;
      for (let iter = 0; iter < total; iter++) {
        const partial = iter % 6 === 5; // iterations 5, 11, 17
        // Even runs count the delay from spawn, odd ones from the first acknowledgement: under a
        // continuous stream dsm's first commit comes ~200-400 ms after spawn (its first batch
        // closes at batch_max_events, not batch_max_ms), so delays from spawn alone would mostly
        // kill it before it acknowledges anything.
        const from = iter % 2 === 0 ? "spawn" : "first-ack";
        const delayMs = 50 + Math.floor(rand() * 351);
        const ctx = `seed ${SEED}, run ${iter} (kill ${delayMs} ms after ${from}${partial ? ", partial line" : ""})`;
        const before = inspect(dataDir, (db) => (db.query("SELECT count(*) AS n FROM microblocks").get() as { n: number }).n);
        const run = await crashRun(dataDir, `s${SEED}-r${iter}`, delayMs, from, partial);
        if (run.signal !== "SIGKILL") throw new Error(`${ctx}: dsm ingest ended on its own (${run.signal}): ${run.stderr}`);
        if (run.acks.length > 0) runsWithAcks += 1;

        // Acks come in input order, one per line, and continue the chain where it stopped.
        run.acks.forEach((a, k) => {
          if (a.line !== k + 1 || a.source !== "stdin" || !/^[0-9a-f]{64}$/.test(a.id) || a.seq !== before + k + 1) {
            throw new Error(`${ctx}: ack #${k} is ${JSON.stringify(a)}, expected stdin line ${k + 1} as seq ${before + k + 1}`);
          }
        });
        if (partial) expect(run.acks.length, `${ctx}: every complete line is acknowledged before the kill`).toBe(run.sent);

        // dsm itself is the first to open the ledger after the crash.
        const v = await runDsm(["verify", "--data-dir", dataDir]);
        expect(v.code, `${ctx}: dsm verify after the kill: ${v.stdout}${v.stderr}`).toBe(0);

        // dsm show, for a sample of the acknowledged ids.
        const samples = new Set<number>();
        if (run.acks.length > 0) {
          samples.add(run.acks.length - 1); // the last acknowledged one is the most at risk
          for (let k = 0; k < 2; k++) samples.add(Math.floor(pick() * run.acks.length));
        }
        for (const k of samples) {
          const a = run.acks[k]!;
          const s = await runDsm(["show", a.id, "--json", "--data-dir", dataDir]);
          expect(s.code, `${ctx}: dsm show ${a.id}: ${s.stderr}`).toBe(0);
          const shown = JSON.parse(s.stdout);
          expect(shown.microblock.id).toBe(a.id);
          expect(shown.microblock.seq).toBe(a.seq);
          expect(shown.microblock.node_id).toBe(node.node_id);
          expect(shown.payload.original.alert.signature, `${ctx}: payload of line ${a.line}`).toBe(`DSM-E2E ${run.tag} ${a.line - 1}`);
        }

        // SQL: every acknowledged id is stored, at the seq it was acknowledged with; what was
        // stored after `before` is exactly a prefix of the lines sent, in order.
        inspect(dataDir, (db) => {
          for (let off = 0; off < run.acks.length; off += 500) {
            const part = run.acks.slice(off, off + 500);
            const rows = db
              .query(`SELECT lower(hex(id)) AS id, seq FROM microblocks WHERE id IN (${part.map(() => "?").join(",")})`)
              .all(...part.map((a) => hexToBlob(a.id))) as { id: string; seq: number }[];
            const got = new Map(rows.map((r) => [r.id, r.seq]));
            for (const a of part) {
              if (got.get(a.id) !== a.seq) throw new Error(`${ctx}: acknowledged id ${a.id} (seq ${a.seq}) is ${got.has(a.id) ? `at seq ${got.get(a.id)}` : "missing"} after the crash`);
            }
          }
          const fresh = db
            .query(
              `SELECT m.seq, lower(hex(m.key)) AS key, json_extract(CAST(p.body AS TEXT), '$.original.alert.signature') AS sig
               FROM microblocks m LEFT JOIN payloads p ON p.hash = m.payload_hash WHERE m.seq > ? ORDER BY m.seq`,
            )
            .all(before) as { seq: number; key: string; sig: string | null }[];
          expect(fresh.length, `${ctx}: stored rows vs acknowledged`).toBeGreaterThanOrEqual(run.acks.length);
          expect(fresh.length, `${ctx}: stored rows vs lines sent`).toBeLessThanOrEqual(run.sent);
          fresh.forEach((r, k) => {
            const t = parseTag(r.sig);
            if (r.seq !== before + k + 1 || !t || t.tag !== run.tag || t.i !== k) {
              throw new Error(`${ctx}: stored row ${k} after the crash is seq ${r.seq} with payload ${r.sig}, expected seq ${before + k + 1}, line ${k}`);
            }
          });
          if (fresh.length > 0) {
            // A new process signs with a new key, certified from exactly where the chain stood.
            const keys = new Set(fresh.map((r) => r.key));
            expect(keys.size, `${ctx}: one signing key per process`).toBe(1);
            const cert = db.query("SELECT first_seq FROM key_certs WHERE key = ?").get(hexToBlob([...keys][0]!)) as { first_seq: number } | null;
            expect(cert?.first_seq, `${ctx}: key certificate first_seq`).toBe(before + 1);
          }
          if (run.partialTag) {
            const n = (db.query("SELECT count(*) AS n FROM payloads WHERE CAST(body AS TEXT) LIKE ?").get(`%${run.partialTag}%`) as { n: number }).n;
            expect(n, `${ctx}: the half-written line must not be stored`).toBe(0);
          }
          const { n, mx } = db.query("SELECT count(*) AS n, coalesce(max(seq), 0) AS mx FROM microblocks").get() as { n: number; mx: number };
          expect(n, `${ctx}: seq has no holes`).toBe(mx);
        });
        for (const a of run.acks) allAcked.set(a.id, a.seq);
      }

      // Every run timed from its first acknowledgement acknowledged something, by construction.
      expect(runsWithAcks, `seed ${SEED}: runs that acknowledged events`).toBeGreaterThanOrEqual(Math.floor(total / 2));

      // The whole chain, through dsm log: seq 1..N, each prev the id before it.
      const rows = await logAll(dataDir, root);
      expect(chainProblem(rows), `seed ${SEED}: chain`).toBeNull();
      expect(rows.every((r) => r.node_id === node.node_id && r.mesh === node.mesh)).toBe(true);
      const bySeq = new Map(rows.map((r) => [r.id, r.seq]));
      for (const [id, seq] of allAcked) if (bySeq.get(id) !== seq) throw new Error(`seed ${SEED}: acknowledged ${id} (seq ${seq}) not in dsm log`);
      inspect(dataDir, (db) => {
        expect((db.query("SELECT count(*) AS n FROM microblocks").get() as { n: number }).n).toBe(rows.length);
        expect((db.query("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check).toBe("ok");
      });
      const v = await runDsm(["verify", "--json", "--data-dir", dataDir]);
      expect(v.code, v.stderr).toBe(0);
      const report = JSON.parse(v.stdout);
      expect(report.ok).toBe(true);
      expect(report.microblocks).toBe(rows.length);
      expect(report.payloads_checked).toBe(rows.length);
      console.log(`e2e-durability: ${total} kills (${runsWithAcks} acknowledged something), ${allAcked.size} acknowledged, ${rows.length} stored, ${report.key_certificates} key certificates`);
    },
    170_000,
  );
});

// An acknowledgement is a line on stdout. If dsm exits before stdout is drained, a reader
// slower than dsm (any real pipeline: `dsm ingest --json | ...`) silently loses output.
describe("stdout is complete when the reader is slow", () => {
  let root: string;
  let dataDir: string;
  const N = 3000;

  beforeAll(async () => {
    requireBinary();
    root = tempDir("slowreader");
    dataDir = path.join(root, "node");
    await initNode(dataDir);
    const lines = Array.from({ length: N }, (_, i) => suricataLine("slow", i)).join("\n") + "\n";
    fs.writeFileSync(path.join(root, "in.ndjson"), lines);
    // Setup for the dsm log test, with stdout to a file: N microblocks in dataDir.
    const r = await runDsm(["ingest", "--data-dir", dataDir, path.join(root, "in.ndjson")], { stdoutFile: path.join(root, "setup.out") });
    if (r.code !== 0) throw new Error(`setup ingest failed (${r.code}): ${r.stderr}`);
  });
  afterAll(() => removeDir(root));

  // The consumer sleeps before reading: dsm's output (> the 64 KiB pipe buffer) must still all arrive.
  async function throughSlowReader(args: string[]): Promise<{ code: number; lines: string[]; stderr: string }> {
    const proc = Bun.spawn(["bash", "-c", '"$0" "$@" | { sleep 1; cat; }; exit "${PIPESTATUS[0]}"', DSM, ...args], {
      stdout: "pipe",
      stderr: "pipe",
      env: dsmEnv(),
    });
    const [out, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, lines: out.split("\n").filter((l) => l !== ""), stderr };
  }

  test("dsm ingest --json prints one result per line", async () => {
    const fresh = path.join(root, "fresh");
    await initNode(fresh);
    const r = await throughSlowReader(["ingest", "--json", "--data-dir", fresh, path.join(root, "in.ndjson")]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${N} stored`);
    expect(r.lines.length, "acknowledgement lines on stdout").toBe(N);
    expect(JSON.parse(r.lines[N - 1]!).seq).toBe(N);
  });

  test("dsm log --json --limit 0 prints every microblock", async () => {
    const r = await throughSlowReader(["log", "--json", "--limit", "0", "--oldest-first", "--data-dir", dataDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.lines.length, "microblock lines on stdout").toBe(N);
    expect(JSON.parse(r.lines[N - 1]!).seq).toBe(N);
  });
});
