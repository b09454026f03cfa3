// dsm verify: verifyLedger over a ledger of M microblocks against the raw cost of
// "iterate the same rows with bun:sqlite + one P-256 verify + one sha256 per row",
// a per-check breakdown, and RSS at M/2 and M rows to show memory stays flat.
import { Database } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import * as fs from "node:fs";
import { fromHex, toHex } from "../src/encoding/hex.ts";
import { importPublicKey, verify } from "../src/crypto/p256.ts";
import { type Microblock, microblockIdBytes, parseMicroblock } from "../src/protocol/microblock.ts";
import { defaultConfig } from "../src/config/config.ts";
import { parseKeyCert } from "../src/protocol/keycert.ts";
import { toSecurityEvent } from "../src/ingest/records.ts";
import { verifyLedger } from "../src/ledger/verify.ts";
import { DSMNode } from "../src/node/node.ts";
import { eveAlert, fmtRate, fmtRatio, fmtUs, gc, note, now, removeTempDir, Rng, rssMiB, say, table, tempDir } from "./lib.ts";

const BATCH = 1000;

export interface VerifySummary {
  m: number;
  verifyRps: number;
  baselineRps: number;
  ratio: number;
  verifyHalfRps: number;
  buildEps: number;
  bytesPerRow: number;
  rss: { rows: number; beforeMiB: number; peakMiB: number; afterMiB: number; heapGrowthMiB: number }[];
}

/** Appends `count` microblocks (realistic EVE payloads) through DSMNode.append, 1000 per batch. */
async function grow(node: DSMNode, rng: Rng, from: number, count: number): Promise<number> {
  const base = Date.UTC(2026, 10, 25, 18, 0, 0);
  const t0 = now();
  for (let done = 0; done < count; done += BATCH) {
    const k = Math.min(BATCH, count - done);
    const batch = new Array(k);
    for (let j = 0; j < k; j++) {
      const ev = toSecurityEvent(eveAlert(rng, from + done + j, base), "suricata");
      batch[j] = node.prepare(ev.eventType, ev.payload);
    }
    await node.append(batch);
  }
  return now() - t0;
}

interface VerifyRun {
  ms: number;
  beforeMiB: number;
  peakMiB: number;
  afterMiB: number;
  heapBeforeMiB: number;
  heapPeakMiB: number;
}

async function timedVerify(node: DSMNode, expect: number): Promise<VerifyRun> {
  gc();
  const beforeMiB = rssMiB();
  const heapBeforeMiB = heapMiB();
  let peakMiB = beforeMiB;
  let heapPeakMiB = heapBeforeMiB;
  const sample = () => {
    peakMiB = Math.max(peakMiB, rssMiB());
    heapPeakMiB = Math.max(heapPeakMiB, heapMiB());
  };
  const t0 = now();
  const report = await verifyLedger(node.ledger, { ownNodeId: node.nodeId, onProgress: sample, worker: true });
  const ms = now() - t0;
  sample();
  gc();
  const afterMiB = rssMiB();
  if (report.microblocks !== expect || report.problemCount !== 0 || report.payloadsChecked !== expect) {
    throw new Error(`verify saw ${report.microblocks}/${expect} rows, ${report.payloadsChecked} payloads, problems: ${JSON.stringify(report.problems.slice(0, 3))}`);
  }
  return { ms, beforeMiB, peakMiB, afterMiB, heapBeforeMiB, heapPeakMiB };
}

const raws = new Map<string, Database>();
/** The benchmark's own connection to the ledger file: the floor reads rows bare, past the ledger's API. */
function rawDb(node: DSMNode): Database {
  let db = raws.get(node.ledger.path);
  if (!db) raws.set(node.ledger.path, (db = new Database(node.ledger.path)));
  return db;
}

function heapMiB(): number {
  return process.memoryUsage().heapUsed / (1024 * 1024);
}

function signingKey(node: DSMNode): KeyObject {
  const row = rawDb(node).query("SELECT body FROM key_certs ORDER BY rowid LIMIT 1").get() as { body: Uint8Array };
  const cert = parseKeyCert(JSON.parse(Buffer.from(row.body).toString("utf8")));
  return importPublicKey(fromHex(cert.signing_pub, 33));
}

/** The floor: same rows, bun:sqlite iterate, one P-256 verify, one sha256. */
function baselineVerify(node: DSMNode, key: KeyObject, expect: number): number {
  const q = rawDb(node).query(
    `SELECT m.rowid, c.mesh, c.node_id, m.seq, m.id, m.prev, m.timestamp, m.event_type, m.payload_hash, m.key, m.sig
     FROM microblocks m JOIN chains c ON c.chain = m.chain ORDER BY m.rowid`,
  );
  type R = { id: Uint8Array; prev: Uint8Array; payload_hash: Uint8Array; key: Uint8Array; sig: Uint8Array; timestamp: string };
  gc();
  const t0 = now();
  let rows = 0;
  let bad = 0;
  for (const r of q.iterate() as IterableIterator<R>) {
    rows += 1;
    const h = new Bun.CryptoHasher("sha256");
    h.update(r.prev);
    h.update(r.payload_hash);
    h.update(r.key);
    h.update(r.timestamp);
    h.digest();
    if (!verify(key, r.id, r.sig)) bad += 1;
  }
  const ms = now() - t0;
  if (rows !== expect || bad !== 0) throw new Error(`baseline saw ${rows}/${expect} rows, ${bad} bad signatures`);
  return ms;
}

interface Check {
  name: string;
  us: number;
}

/** What verifyLedger does per row, each check alone over the first K rows. */
function checks(node: DSMNode, key: KeyObject, k: number): Check[] {
  const out: Check[] = [];
  const per = (ms: number, n: number) => (ms * 1000) / n;
  gc();
  let t0 = now();
  const mbs: (Microblock & { rowid: number; received_at: number })[] = [];
  for (const mb of node.ledger.iterateMicroblocks()) {
    mbs.push(mb);
    if (mbs.length >= k) break;
  }
  const n = mbs.length;
  out.push({ name: "row fetch + toMicroblock (7 x toHex)", us: per(now() - t0, n) });
  t0 = now();
  for (const mb of mbs) {
    const { rowid: _r, received_at: _a, ...rest } = mb;
    parseMicroblock(rest);
  }
  out.push({ name: "schema: stripRow + parseMicroblock", us: per(now() - t0, n) });
  const ids: Uint8Array[] = new Array(n);
  t0 = now();
  for (let i = 0; i < n; i++) {
    ids[i] = microblockIdBytes(mbs[i]!);
    if (toHex(ids[i]!) !== mbs[i]!.id) throw new Error("id mismatch");
  }
  out.push({ name: "id recompute (bodyCanonical + sha256) + compare", us: per(now() - t0, n) });
  t0 = now();
  for (let i = 0; i < n; i++) if (!verify(key, ids[i]!, fromHex(mbs[i]!.sig))) throw new Error("bad sig");
  out.push({ name: "P-256 verify (p256.verify + fromHex(sig))", us: per(now() - t0, n) });
  const paylookup = rawDb(node).query("SELECT body FROM payloads WHERE hash = ?");
  const bodies: Uint8Array[] = new Array(n);
  t0 = now();
  for (let i = 0; i < n; i++) bodies[i] = (paylookup.get(fromHex(mbs[i]!.payload_hash)) as { body: Uint8Array }).body;
  out.push({ name: "payload lookup by hash (SQLite)", us: per(now() - t0, n) });
  t0 = now();
  for (let i = 0; i < n; i++) {
    if (new Bun.CryptoHasher("sha256").update(bodies[i]!).digest("hex") !== mbs[i]!.payload_hash) throw new Error("payload mismatch");
  }
  out.push({ name: "payload sha256 + compare", us: per(now() - t0, n) });
  return out;
}

async function warmUp(): Promise<void> {
  const dir = tempDir("verify-warm");
  const config = defaultConfig();
  try {
    await DSMNode.init({ dataDir: dir, config });
    const node = DSMNode.open(dir, config);
    try {
      await grow(node, new Rng(1), 0, 2000);
      await timedVerify(node, 2000);
      baselineVerify(node, signingKey(node), 2000);
    } finally {
      node.close();
    }
  } finally {
    removeTempDir(dir);
  }
}

function ledgerBytes(file: string): number {
  let total = 0;
  for (const f of [file, `${file}-wal`]) if (fs.existsSync(f)) total += fs.statSync(f).size;
  return total;
}

export async function runVerify(m: number): Promise<VerifySummary> {
  const dir = tempDir("verify");
  const config = defaultConfig();
  await DSMNode.init({ dataDir: dir, config });
  const node = DSMNode.open(dir, config);
  const rng = new Rng(0xbeef);
  const half = Math.floor(m / 2);
  try {
    // verifyLedger always reads every row: warm its JIT on a small ledger of its own.
    await warmUp();

    // Memory: verify at M/2 rows, then at M rows; the peak growth must not double.
    note(`verify: building a ledger of ${half} microblocks (DSMNode.append, batches of ${BATCH})`);
    let buildMs = await grow(node, rng, 0, half);
    note(`verify: verifyLedger over ${half} rows`);
    const vHalf = await timedVerify(node, half);
    note(`verify: growing the ledger to ${m} microblocks`);
    buildMs += await grow(node, rng, half, m - half);
    const buildEps = (m * 1000) / buildMs;
    rawDb(node).exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const bytesPerRow = ledgerBytes(node.layout.ledger) / m;
    const key = signingKey(node);

    note(`verify: verifyLedger over ${m} rows`);
    const v1 = await timedVerify(node, m);
    note("verify: baseline (iterate + P-256 verify + sha256)");
    const baseMs = baselineVerify(node, key, m);
    const verifyRps = (m * 1000) / v1.ms;
    const baselineRps = (m * 1000) / baseMs;
    const ratio = verifyRps / baselineRps;
    const halfRps = (half * 1000) / vHalf.ms;

    const k = Math.min(m, 20_000);
    note(`verify: per-check breakdown on ${k} rows`);
    const parts = checks(node, key, k);

    const verifyUs = 1e6 / verifyRps;
    say(
      table(
        `2. dsm verify: ledger of ${m} microblocks (built at ${fmtRate(buildEps)} through DSMNode.append; ${(bytesPerRow / 1024).toFixed(2)} KiB/row on disk)`,
        ["path", "rows/s", "us/row", "vs baseline"],
        [
          [`verifyLedger, ${m} rows`, fmtRate(verifyRps), fmtUs(verifyUs), fmtRatio(ratio)],
          ["baseline: bun:sqlite iterate + P-256 verify + sha256", fmtRate(baselineRps), fmtUs(1e6 / baselineRps), "1.00x"],
          [`(verifyLedger, ${half} rows, earlier)`, fmtRate(halfRps), fmtUs(1e6 / halfRps), fmtRatio(halfRps / baselineRps)],
        ],
      ),
    );
    const sum = parts.reduce((a, p) => a + p.us, 0);
    say(
      table(
        `   verifyLedger per-row checks, each measured alone on the first ${k} rows`,
        ["check", "us/row", "share of verify"],
        [
          ...parts.map((p) => [p.name, fmtUs(p.us), `${((100 * p.us) / verifyUs).toFixed(0)}%`]),
          ["sum of checks", fmtUs(sum), `${((100 * sum) / verifyUs).toFixed(0)}%`],
          ["verifyLedger, measured", fmtUs(verifyUs), "100%"],
        ],
      ),
    );
    const rss = [
      { rows: half, ...vHalf },
      { rows: m, ...v1 },
    ];
    say(
      table(
        "   Memory during verifyLedger (MiB, sampled every 4096 rows)",
        ["ledger rows", "RSS before", "RSS peak", "RSS after (gc)", "RSS peak growth", "JS heap peak growth (incl. garbage)"],
        rss.map((r) => [
          String(r.rows),
          r.beforeMiB.toFixed(0),
          r.peakMiB.toFixed(0),
          r.afterMiB.toFixed(0),
          `+${(r.peakMiB - r.beforeMiB).toFixed(1)}`,
          `+${(r.heapPeakMiB - r.heapBeforeMiB).toFixed(1)}`,
        ]),
      ),
    );
    return {
      m,
      verifyRps,
      baselineRps,
      ratio,
      verifyHalfRps: halfRps,
      buildEps,
      bytesPerRow,
      rss: rss.map((r) => ({ rows: r.rows, beforeMiB: r.beforeMiB, peakMiB: r.peakMiB, afterMiB: r.afterMiB, heapGrowthMiB: r.heapPeakMiB - r.heapBeforeMiB })),
    };
  } finally {
    node.close();
    removeTempDir(dir);
  }
}
