// The mesh log's ledger-backed Merkle tree (src/log/tree-store.ts): append rate and
// proof latency, each next to a Bun.SHA256-only baseline measured in the same run.
// BENCH_LOG_N sets the big log (default 1,000,000); BENCH_LOG_10M=1 adds a 10M-leaf log.
import * as fs from "node:fs";
import * as path from "node:path";
import { defaultConfig } from "../src/config/config.ts";
import { DSMNode } from "../src/node/node.ts";
import { buildAlone } from "../src/consensus/alone.ts";
import { CheckpointBuilder } from "../src/log/builder.ts";
import { epochAt } from "../src/protocol/checkpoint.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { TreeStore } from "../src/log/tree-store.ts";
import { envInt, fmtRate, fmtRatio, fmtUs, gc, note, now, removeTempDir, say, table, tempDir } from "./lib.ts";

const BATCH = 10_000;
const PROOFS = 1000;

/** n pseudo-random 32-byte ids, as views into one buffer (fast to make, distinct with overwhelming odds). */
function makeIds(n: number, seed: number): Uint8Array[] {
  const buf = new Uint8Array(32 * n);
  for (let off = 0; off < buf.length; off += 65536) crypto.getRandomValues(buf.subarray(off, Math.min(buf.length, off + 65536)));
  buf[0] = seed & 0xff;
  const ids = new Array<Uint8Array>(n);
  for (let i = 0; i < n; i++) ids[i] = buf.subarray(32 * i, 32 * (i + 1));
  return ids;
}

/** Baseline: Bun.SHA256 of each 0x00 || id leaf, nothing else. */
function hashLeavesMs(ids: readonly Uint8Array[]): number {
  const buf = new Uint8Array(33);
  const out = new Uint8Array(32);
  const t = now();
  for (const id of ids) {
    buf.set(id, 1);
    Bun.SHA256.hash(buf, out);
  }
  return now() - t;
}

/** Append ids in BATCH-sized transactions; returns elapsed ms. */
function appendAll(ledger: Ledger, store: TreeStore, ids: readonly Uint8Array[]): number {
  const t = now();
  for (let i = 0; i < ids.length; i += BATCH) {
    const batch = ids.slice(i, i + BATCH);
    ledger.immediate(() => store.append(batch));
  }
  return now() - t;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median µs of PROOFS random inclusion proofs at the full size. */
function proofUs(store: TreeStore, n: number): number {
  const times: number[] = [];
  for (let i = 0; i < PROOFS; i++) {
    const idx = Math.floor(Math.random() * n);
    const t = now();
    store.inclusionProof(idx, n);
    times.push((now() - t) * 1000);
  }
  return median(times);
}

/** Baseline: median µs of hashing ceil(log2 n) 65-byte nodes with Bun.SHA256. */
function hashPathUs(n: number): number {
  const depth = Math.ceil(Math.log2(n));
  const buf = crypto.getRandomValues(new Uint8Array(65));
  const out = new Uint8Array(32);
  const times: number[] = [];
  for (let i = 0; i < PROOFS; i++) {
    const t = now();
    for (let d = 0; d < depth; d++) {
      Bun.SHA256.hash(buf, out);
      buf.set(out, 1);
    }
    times.push((now() - t) * 1000);
  }
  return median(times);
}

export async function runLog(): Promise<Record<string, number>> {
  const n = envInt("BENCH_LOG_N", 1_000_000);
  const big = process.env.BENCH_LOG_10M === "1";
  const figures: Record<string, number> = {};
  const rows: (string | number)[][] = [];

  const dir = tempDir("log");
  try {
    note(`log: appending ${n} leaves in batches of ${BATCH}`);
    const ids = makeIds(n, 1);
    const ledger = Ledger.open(path.join(dir, "ledger.sqlite"));
    const store = new TreeStore(ledger);
    gc();
    const baseMs = hashLeavesMs(ids);
    const appendMs = appendAll(ledger, store, ids);
    if (store.size() !== n) throw new Error(`log bench: size ${store.size()}, want ${n}`);
    figures.append_leaves_per_s = (n / appendMs) * 1000;
    figures.append_ms = appendMs;
    figures.sha256_leaves_per_s = (n / baseMs) * 1000;
    figures.append_ratio = baseMs / appendMs;
    rows.push([`append ${n} leaves (batches of ${BATCH})`, fmtRate(figures.append_leaves_per_s), `${appendMs.toFixed(0)} ms`, fmtRate(figures.sha256_leaves_per_s), fmtRatio(figures.append_ratio)]);

    // One 100k append (one transaction) on top of the big log: a large epoch's checkpoint delta.
    const delta = makeIds(100_000, 2);
    const deltaBaseMs = hashLeavesMs(delta);
    const t = now();
    ledger.immediate(() => store.append(delta));
    const deltaMs = now() - t;
    figures.append_100k_ms = deltaMs;
    figures.append_100k_sha256_ms = deltaBaseMs;
    rows.push([`append 100k leaves at ${n} (one tx)`, fmtRate((1e5 / deltaMs) * 1000), `${deltaMs.toFixed(0)} ms`, `${deltaBaseMs.toFixed(1)} ms`, fmtRatio(deltaBaseMs / deltaMs)]);

    const size = store.size();
    store.root(); // warm
    const pUs = proofUs(store, size);
    const hUs = hashPathUs(size);
    figures.proof_us_1m = pUs;
    figures.proof_hash_path_us_1m = hUs;
    rows.push([`inclusion proof at ${size} (median of ${PROOFS})`, `${fmtUs(pUs)} µs`, "", `${fmtUs(hUs)} µs`, fmtRatio(hUs / pUs)]);
    ledger.close();
  } finally {
    removeTempDir(dir);
  }

  // A checkpoint over 100k new microblocks: candidate queries, the tree append and the BLS signature.
  const cpN = envInt("BENCH_CP_N", 100_000);
  const cpDir = tempDir("checkpoint");
  try {
    note(`log: writing ${cpN} microblocks for a checkpoint build`);
    const config = defaultConfig();
    await DSMNode.init({ dataDir: cpDir, config });
    const node = DSMNode.open(cpDir, config);
    try {
      for (let done = 0; done < cpN; done += 1000) {
        const batch = [];
        for (let i = done; i < Math.min(cpN, done + 1000); i++) batch.push(node.prepare("bench.event", { i, pad: "x".repeat(200) }));
        await node.append(batch);
      }
      const blsSecret = new Uint8Array(fs.readFileSync(path.join(cpDir, "bls.key")));
      const ids = node.ledger.list({ limit: cpN, descending: false }).map((m) => Buffer.from(m.id, "hex"));
      const baseMs = hashLeavesMs(ids);
      gc();
      const t = now();
      const r = buildAlone(new CheckpointBuilder(node.ledger, node.policy), epochAt(node.genesis, Date.now()), blsSecret, 0);
      const ms = now() - t;
      if (r.status !== "created" || r.certificate.checkpoint.tree_size !== cpN) throw new Error(`log bench: checkpoint ${r.status}`);
      figures.checkpoint_100k_ms = ms;
      figures.checkpoint_100k_sha256_ms = baseMs;
      rows.push([`checkpoint over ${cpN} new microblocks`, fmtRate((cpN / ms) * 1000), `${ms.toFixed(0)} ms`, `${baseMs.toFixed(1)} ms`, fmtRatio(baseMs / ms)]);
    } finally {
      node.close();
    }
  } finally {
    removeTempDir(cpDir);
  }

  if (big) {
    const n10 = 10_000_000;
    const dir10 = tempDir("log10m");
    try {
      note(`log: building a ${n10}-leaf log (BENCH_LOG_10M=1)`);
      const ledger = Ledger.open(path.join(dir10, "ledger.sqlite"));
      const store = new TreeStore(ledger);
      let appendMs = 0;
      for (let done = 0; done < n10; done += 1_000_000) {
        appendMs += appendAll(ledger, store, makeIds(1_000_000, 3 + done / 1_000_000));
        gc();
      }
      const pUs = proofUs(store, n10);
      const hUs = hashPathUs(n10);
      figures.append_10m_ms = appendMs;
      figures.proof_us_10m = pUs;
      figures.proof_hash_path_us_10m = hUs;
      rows.push([`append ${n10} leaves (batches of ${BATCH})`, fmtRate((n10 / appendMs) * 1000), `${(appendMs / 1000).toFixed(1)} s`, "", ""]);
      rows.push([`inclusion proof at ${n10} (median of ${PROOFS})`, `${fmtUs(pUs)} µs`, "", `${fmtUs(hUs)} µs`, fmtRatio(hUs / pUs)]);
      ledger.close();
    } finally {
      removeTempDir(dir10);
    }
  }

  say(table("mesh log (ledger-backed Merkle tree)", ["operation", "rate / time", "elapsed", "baseline (Bun.SHA256 only)", "baseline/dsm"], rows));
  say("targets: 1M leaves appended in under 2 s; an inclusion proof at 10M leaves in under 1 ms");
  return figures;
}

if (import.meta.main) await runLog();
