// Ingest: the whole IngestPipeline (lines in, committed microblocks out) against the
// issue's baseline "canonical JSON + sha256 + native sign + batched bun:sqlite insert,
// no validation or parsing", plus a per-stage breakdown on the same data.
import { Database } from "bun:sqlite";
import * as path from "node:path";
import { canonicalize } from "../src/encoding/jcs.ts";
import { toHex } from "../src/encoding/hex.ts";
import { formatTime } from "../src/encoding/time.ts";
import { sha256Hex } from "../src/crypto/sha256.ts";
import { generateKeyPair, sign } from "../src/crypto/p256.ts";
import { type Microblock, type MicroblockBody, microblockIdBytes } from "../src/protocol/microblock.ts";
import { defaultConfig } from "../src/config/config.ts";
import { DSMNode } from "../src/node/node.ts";
import { IngestPipeline } from "../src/ingest/pipeline.ts";
import { parseIntelRules } from "../src/config/intel-rules.ts";
import { compileRules, RuleEngine } from "../src/intel/rules.ts";
import { LineSplitter } from "../src/ingest/lines.ts";
import { type EventPayload, parseJsonLine, toSecurityEvent } from "../src/ingest/records.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { chunkedStream, envInt, eveLines, fmtRate, fmtRatio, fmtUs, gc, joinLines, note, now, removeTempDir, Rng, say, table, tempDir } from "./lib.ts";

const BATCH = 1000;
const DOMAIN = "hookprobe-dsm/microblock/v1\n";

export interface IngestSummary {
  n: number;
  avgLineBytes: number;
  pipelineEps: number;
  singleThreadEps: number;
  baselineEps: number;
  ratio: number;
  /** The pipeline with BENCH_RULES (intel.rules) on, and its rate over the same pipeline without. */
  rulesEps: number;
  rulesRatio: number;
  advisories: number;
  stagesUs: Record<string, number>;
}

/**
 * intel.rules for the bench, as an edge might run them: severity-1 alerts advise their source
 * (about half the sources are local and skipped), a threshold over every alert, and a Zeek rule
 * that never matches these lines (the cost of a rule that is only checked).
 */
export const BENCH_RULES = parseIntelRules([
  { name: "critical", match: { event_type: "suricata.alert", severity: [1] }, category: "exploit", ttl: "4h" },
  { name: "noisy", match: { event_type: "suricata.alert" }, category: "scan", ttl: "1h", threshold: { count: 20, window: "1m" } },
  { name: "intel", match: { event_type: "zeek.intel" }, category: "malware", ttl: "1d" },
]);

// ---------------------------------------------------------------------------
// The pipeline, as `dsm ingest` runs it (minus process start and stdin).

export let lastAdvisories = 0;

export async function pipelineRun(buf: Uint8Array, expect: number, worker = true, tpm?: string, rules = false): Promise<number> {
  const dir = tempDir("ingest");
  try {
    const config = defaultConfig();
    await DSMNode.init({ dataDir: dir, config, tpm, force: tpm !== undefined });
    const node = DSMNode.open(dir, config);
    let errors = 0;
    const pipeline = new IngestPipeline(node, {
      format: config.ingest.format,
      maxLineBytes: config.ingest.max_line_bytes,
      batchMaxEvents: config.ledger.batch_max_events,
      batchMaxMs: config.ledger.batch_max_ms,
      json: false,
      out: () => undefined,
      err: () => void (errors += 1),
      worker,
      intel: rules ? { rules: compileRules(BENCH_RULES, config.intel.local_networks), engine: new RuleEngine(BENCH_RULES) } : undefined,
    });
    gc();
    const t0 = now();
    await pipeline.consume(chunkedStream(buf), "bench");
    const stats = await pipeline.finish();
    const ms = now() - t0;
    node.close();
    lastAdvisories = stats.advisories;
    if (stats.stored !== expect || errors !== 0) throw new Error(`pipeline stored ${stats.stored}/${expect} lines, ${errors} errors`);
    return ms;
  } finally {
    removeTempDir(dir);
  }
}

// ---------------------------------------------------------------------------
// The baseline: already-parsed payloads; JCS(payload) + JCS(body) with the general
// canonicalizer, Bun.SHA256, node:crypto sign, one row per event, 1000 per transaction.

interface BaselineInput {
  payloads: EventPayload[];
  eventTypes: string[];
}

function baselineRun(input: BaselineInput): { ms: number; rowBytes: number } {
  const dir = tempDir("baseline");
  try {
    const db = new Database(path.join(dir, "baseline.sqlite"), { create: true, readwrite: true });
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("CREATE TABLE rows (seq INTEGER PRIMARY KEY, id BLOB NOT NULL, sig BLOB NOT NULL, body TEXT NOT NULL)");
    const insert = db.prepare("INSERT INTO rows (seq, id, sig, body) VALUES (?, ?, ?, ?)");
    const { privateKey } = generateKeyPair();
    const r = new Rng(7);
    const mesh = r.hex(64);
    const nodeId = r.hex(64);
    const key = r.hex(64);
    const timestamp = formatTime(Date.now());
    const n = input.payloads.length;
    let prev = "0".repeat(64);
    let rowBytes = 0;
    gc();
    const t0 = now();
    for (let start = 0; start < n; start += BATCH) {
      db.exec("BEGIN IMMEDIATE");
      const end = Math.min(n, start + BATCH);
      for (let i = start; i < end; i++) {
        const payloadHash = Bun.SHA256.hash(canonicalize(input.payloads[i]), "hex");
        const body = {
          v: 1,
          type: "M",
          mesh,
          node_id: nodeId,
          seq: i + 1,
          prev,
          timestamp,
          event_type: input.eventTypes[i],
          payload_hash: payloadHash,
          key,
        };
        const bodyJson = canonicalize(body);
        const id = Bun.SHA256.hash(DOMAIN + bodyJson) as Uint8Array;
        const sig = sign(privateKey, id);
        insert.run(i + 1, id, sig, bodyJson);
        if (i === 0) rowBytes = 8 + id.length + sig.length + bodyJson.length;
        prev = toHex(id);
      }
      db.exec("COMMIT");
    }
    const ms = now() - t0;
    db.close();
    return { ms, rowBytes };
  } finally {
    removeTempDir(dir);
  }
}

// ---------------------------------------------------------------------------
// Per-stage breakdown: each stage alone over all N events, fed the previous stage's output.

interface Stage {
  key: string;
  name: string;
  us: number;
  sub?: boolean;
}

function perEventUs(ms: number, n: number): number {
  return (ms * 1000) / n;
}

function loop<T>(n: number, fn: (i: number) => T): [T[], number] {
  const out = new Array<T>(n);
  gc();
  const t0 = now();
  for (let i = 0; i < n; i++) out[i] = fn(i);
  return [out, now() - t0];
}

async function breakdown(buf: Uint8Array, lines: string[]): Promise<Stage[]> {
  const n = lines.length;
  const stages: Stage[] = [];

  // Line splitting + strict UTF-8 decoding, in the pipeline's 64 KiB chunks.
  {
    const splitter = new LineSplitter(defaultConfig().ingest.max_line_bytes);
    let count = 0;
    const emit = () => void (count += 1);
    gc();
    const t0 = now();
    for (let off = 0; off < buf.length; off += 64 * 1024) splitter.push(buf.subarray(off, Math.min(buf.length, off + 64 * 1024)), emit);
    splitter.end(emit);
    const ms = now() - t0;
    if (count !== n) throw new Error(`splitter produced ${count} lines, expected ${n}`);
    stages.push({ key: "split", name: "split lines + UTF-8 decode", us: perEventUs(ms, n) });
  }

  const [records, parseMs] = loop(n, (i) => parseJsonLine(lines[i]!));
  // toSecurityEvent's own event_id: JCS of the whole record, hashed. Measured before
  // toSecurityEvent runs, so no cache it might fill can flatter this row.
  const [, eventIdMs] = loop(n, (i) => Bun.SHA256.hash(canonicalize(records[i]), "hex"));
  const [events, mapMs] = loop(n, (i) => toSecurityEvent(records[i]!, "auto"));
  stages.push({ key: "parse_map", name: "JSON.parse + toSecurityEvent", us: perEventUs(parseMs + mapMs, n) });
  stages.push({ key: "json_parse", name: "  of which JSON.parse (parseJsonLine)", us: perEventUs(parseMs, n), sub: true });
  stages.push({ key: "event_id", name: "  of which event_id = sha256(JCS(record))", us: perEventUs(eventIdMs, n), sub: true });

  const [canon, canonMs] = loop(n, (i) => canonicalize(events[i]!.payload));
  stages.push({ key: "jcs_payload", name: "canonicalize payload (JCS)", us: perEventUs(canonMs, n) });
  const [hashes, hashMs] = loop(n, (i) => sha256Hex(canon[i]!));
  stages.push({ key: "payload_sha256", name: "payload sha256 (+hex)", us: perEventUs(hashMs, n) });

  const r = new Rng(11);
  const mesh = r.hex(64);
  const nodeId = r.hex(64);
  const key = r.hex(64);
  const timestamp = formatTime(Date.now());
  const bodies: MicroblockBody[] = events.map((ev, i) => ({
    v: 1,
    type: "M",
    mesh,
    node_id: nodeId,
    seq: i + 1,
    prev: r.hex(64),
    timestamp,
    event_type: ev.eventType,
    payload_hash: hashes[i]!,
    key,
  }));
  const [ids, idMs] = loop(n, (i) => microblockIdBytes(bodies[i]!));
  const [idHex, idHexMs] = loop(n, (i) => toHex(ids[i]!));
  stages.push({ key: "id_hash", name: "body id hash (bodyCanonical + sha256 + hex)", us: perEventUs(idMs + idHexMs, n) });

  const { privateKey } = generateKeyPair();
  const [sigs, signMs] = loop(n, (i) => toHex(sign(privateKey, ids[i]!)));
  stages.push({ key: "sign", name: "sign (node:crypto P-256 + low-S + hex)", us: perEventUs(signMs, n) });

  const mbs: Microblock[] = bodies.map((b, i) => ({ ...b, id: idHex[i]!, sig: sigs[i]! }));
  const insert = async (what: "both" | "payloads" | "microblocks"): Promise<number> => {
    const dir = tempDir("stage-sql");
    try {
      const ledger = Ledger.open(path.join(dir, "ledger.sqlite"));
      gc();
      const t0 = now();
      for (let start = 0; start < n; start += BATCH) {
        await ledger.immediate(() => {
          const end = Math.min(n, start + BATCH);
          for (let i = start; i < end; i++) {
            if (what !== "microblocks") ledger.insertPayload(hashes[i]!, canon[i]!);
            if (what !== "payloads") ledger.insertMicroblock(mbs[i]!, 0);
          }
        });
      }
      const ms = now() - t0;
      ledger.close();
      return ms;
    } finally {
      removeTempDir(dir);
    }
  };
  const bothMs = await insert("both");
  const payMs = await insert("payloads");
  const mbMs = await insert("microblocks");
  stages.push({ key: "sqlite", name: "SQLite insert + commit (Ledger, 1000/txn)", us: perEventUs(bothMs, n) });
  stages.push({ key: "sqlite_payloads", name: "  payloads table alone (~1 KB rows, hash key)", us: perEventUs(payMs, n), sub: true });
  stages.push({ key: "sqlite_microblocks", name: "  microblocks table alone (+2 unique indexes)", us: perEventUs(mbMs, n), sub: true });
  return stages;
}

// ---------------------------------------------------------------------------

export async function runIngest(n: number, reps: number): Promise<IngestSummary> {
  note(`ingest: generating ${n} EVE alert lines`);
  const lines = eveLines(n);
  const buf = joinLines(lines);
  const avgLineBytes = buf.length / n - 1;

  // Already-parsed payloads for the baseline: the objects the pipeline canonicalises, cloned
  // so that nothing toSecurityEvent may have cached about them spares the baseline its work.
  const payloads: EventPayload[] = new Array(n);
  const eventTypes: string[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const ev = toSecurityEvent(parseJsonLine(lines[i]!), "auto");
    payloads[i] = structuredClone(ev.payload);
    eventTypes[i] = ev.eventType;
  }

  // Warm up the JIT on both paths so the first timed rep is not penalised.
  const w = Math.min(n, 2000);
  await pipelineRun(joinLines(lines.slice(0, w)), w);
  await pipelineRun(joinLines(lines.slice(0, w)), w, true, undefined, true);
  baselineRun({ payloads: payloads.slice(0, w), eventTypes: eventTypes.slice(0, w) });

  // Interleaved reps (A B A B ...); the best of each, as the machine is shared and noisy.
  const pipeMs: number[] = [];
  const rulesMs: number[] = [];
  let advisories = 0;
  const singleMs: number[] = [];
  const baseMs: number[] = [];
  let rowBytes = 0;
  for (let rep = 0; rep < reps; rep++) {
    note(`ingest: pipeline rep ${rep + 1}/${reps}`);
    pipeMs.push(await pipelineRun(buf, n));
    note(`ingest: pipeline with intel.rules rep ${rep + 1}/${reps}`);
    rulesMs.push(await pipelineRun(buf, n, true, undefined, true));
    advisories = lastAdvisories;
    note(`ingest: single-thread pipeline rep ${rep + 1}/${reps}`);
    singleMs.push(await pipelineRun(buf, n, false));
    note(`ingest: baseline rep ${rep + 1}/${reps}`);
    const b = baselineRun({ payloads, eventTypes });
    baseMs.push(b.ms);
    rowBytes = b.rowBytes;
  }
  const pipelineEps = (n * 1000) / Math.min(...pipeMs);
  const baselineEps = (n * 1000) / Math.min(...baseMs);
  const ratio = pipelineEps / baselineEps;
  const rulesEps = (n * 1000) / Math.min(...rulesMs);
  const rulesRatio = rulesEps / pipelineEps;

  // On all N lines by default, so the SQLite stage sees a ledger as large as the pipeline's;
  // BENCH_STAGES_N limits it to a prefix.
  const k = Math.min(n, envInt("BENCH_STAGES_N", n));
  note(`ingest: per-stage breakdown on ${k} lines`);
  const stages = await breakdown(k === n ? buf : joinLines(lines.slice(0, k)), lines.slice(0, k));
  const pipeUs = 1e6 / pipelineEps;
  // Stages are shares of the one-thread pipeline: with the worker, parse/map/JCS/hash run
  // on a second thread, overlapping sign + SQLite, so they add up to more than its wall time.
  const singleUs = (Math.min(...singleMs) * 1000) / n;
  const topLevel = stages.filter((s) => !s.sub).reduce((a, s) => a + s.us, 0);

  const rate = (ms: number[]) => ms.map((m) => fmtRate((n * 1000) / m)).join(" / ");
  say(
    table(
      `1. Ingest: ${n} Suricata EVE alerts (avg ${avgLineBytes.toFixed(0)} B/line), default config (batch 1000 / 50 ms, WAL, synchronous=FULL); best of ${reps}`,
      ["path", "events/s", "us/event", "each rep", "vs baseline"],
      [
        ["IngestPipeline, as dsm ingest runs it (prepare worker)", fmtRate(pipelineEps), fmtUs(pipeUs), rate(pipeMs), fmtRatio(ratio)],
        [`  the same with ${BENCH_RULES.length} intel.rules (${advisories} advisories written)`, fmtRate(rulesEps), fmtUs(1e6 / rulesEps), rate(rulesMs), fmtRatio(rulesEps / baselineEps)],
        [
          "IngestPipeline, one thread (worker: false)",
          fmtRate((n * 1000) / Math.min(...singleMs)),
          fmtUs(Math.min(...singleMs) * 1000 / n),
          rate(singleMs),
          fmtRatio((n * 1000) / Math.min(...singleMs) / baselineEps),
        ],
        [`baseline: JCS + sha256 + sign + insert (${rowBytes} B rows)`, fmtRate(baselineEps), fmtUs(1e6 / baselineEps), rate(baseMs), "1.00x"],
      ],
    ),
  );
  say(`   ratio pipeline/baseline ${fmtRatio(ratio)} (target >= 0.70x); pipeline ${fmtRate(pipelineEps)} vs target 10.0k/s (${fmtRatio(pipelineEps / 10_000)})`);
  say(`   intel.rules on/off ${fmtRatio(rulesRatio)} (input lines per second, advisories written besides)`);

  say(
    table(
      `   Pipeline stages, each measured alone on the same data${k === n ? "" : ` (first ${k} lines)`}; with the worker the first four run beside the last three`,
      ["stage", "us/event", "share of one-thread pipeline"],
      [
        ...stages.map((s) => [s.name, fmtUs(s.us), `${((100 * s.us) / singleUs).toFixed(0)}%`]),
        ["sum of stages", fmtUs(topLevel), `${((100 * topLevel) / singleUs).toFixed(0)}%`],
        ["one-thread pipeline, measured", fmtUs(singleUs), "100%"],
        ["unaccounted (stream, batching, promises, GC)", fmtUs(singleUs - topLevel), `${((100 * (singleUs - topLevel)) / singleUs).toFixed(0)}%`],
      ],
    ),
  );

  const stagesUs: Record<string, number> = {};
  for (const s of stages) stagesUs[s.key] = Number(s.us.toFixed(2));
  return { n, avgLineBytes, pipelineEps, singleThreadEps: (n * 1000) / Math.min(...singleMs), baselineEps, ratio, rulesEps, rulesRatio, advisories, stagesUs };
}
