// `bun run bench`: ingest and verify throughput, each as a ratio against a baseline
// measured in the same run, then the compiled binary for reference. Sizes scale with
// BENCH_N (ingest lines, default 50000); BENCH_M sets the verify ledger (default 2 x N);
// BENCH_REPS the interleaved ingest repetitions (default 2); BENCH_RECEIVE_N the gossiped
// microblocks for the receive path (default 20000); BENCH_DECISIONS_N the decisions served
// to bouncers (default 100000). Ends with one JSON line.
import * as os from "node:os";
import * as path from "node:path";
import { runBinary } from "./binary.ts";
import { runConsensus } from "./consensus.ts";
import { runIngest } from "./ingest.ts";
import { cleanupTempDirs, envInt, now, say } from "./lib.ts";
import { runVerify } from "./verify.ts";
import { runReceive } from "./receive.ts";
import { runLog } from "./log.ts";
import { runMesh } from "./mesh.ts";
import { runTpm } from "./tpm.ts";
import { runDecisions } from "./decisions.ts";
import { runDecide } from "./decide.ts";

const root = path.resolve(import.meta.dir, "..");
const n = envInt("BENCH_N", 50_000);
const m = envInt("BENCH_M", 2 * n);
const reps = envInt("BENCH_REPS", 2);
const t0 = now();

say(`dsm bench: Bun ${Bun.version}, ${os.cpus().length} CPUs, ${os.platform()}/${os.arch()}, temp dir ${os.tmpdir()}`);
say("Speeds are ratios against a baseline measured in this run; absolute figures vary with machine load.");

const r3 = (x: number) => Number(x.toPrecision(3));
try {
  const ingest = await runIngest(n, reps);
  const verify = await runVerify(m);
  const receive = await runReceive(envInt("BENCH_RECEIVE_N", 20_000));
  const binary = await runBinary(root, n);
  const log = await runLog();
  const consensus = await runConsensus();
  const tpm = await runTpm();
  const mesh = await runMesh();
  const decisions = await runDecisions();
  const decide = await runDecide();
  const totalS = (now() - t0) / 1000;
  say(`\ntotal ${totalS.toFixed(0)} s`);
  const summary = {
    bench: "dsm",
    bun: Bun.version,
    log,
    consensus,
    tpm,
    mesh,
    decisions,
    decide,
    ingest: {
      n,
      events_per_s: Math.round(ingest.pipelineEps),
      baseline_events_per_s: Math.round(ingest.baselineEps),
      ratio: r3(ingest.ratio),
      ratio_target: 0.7,
      events_per_s_target: 10_000,
      stages_us: ingest.stagesUs,
    },
    verify: {
      m,
      rows_per_s: Math.round(verify.verifyRps),
      baseline_rows_per_s: Math.round(verify.baselineRps),
      ratio: r3(verify.ratio),
      rows_per_s_half: Math.round(verify.verifyHalfRps),
      bytes_per_row: Math.round(verify.bytesPerRow),
      rss_peak_growth_mib: verify.rss.map((r) => ({ rows: r.rows, rss: r3(r.peakMiB - r.beforeMiB), heap: r3(r.heapGrowthMiB) })),
    },
    receive: {
      n: receive.n,
      events_per_s: Math.round(receive.receiveEps),
      baseline_verify_per_s: Math.round(receive.baselineVerifyEps),
      ratio: r3(receive.ratio),
      stages_us: receive.stagesUs,
    },
    binary: binary && { n: binary.n, events_per_s: Math.round(binary.eps), startup_ms: Math.round(binary.startupMs) },
    total_s: Math.round(totalS),
  };
  say(JSON.stringify(summary));
} finally {
  cleanupTempDirs();
}
