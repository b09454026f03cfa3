// The mesh across processes: 4 validators and 4 edges, each `dist/dsm run` on 127.0.0.1
// with 2 s epochs, and sustained `dsm ingest` at the 4 edges at once. End to end: events
// piped into the edges until every validator has validated and stored all of them (polled
// over each daemon's control socket, the `daemon` block of `dsm status --json`); finality
// after the end of the last event's epoch; CPU and RSS of every process. Baselines in the
// same run: the same 4 x N lines into 4 `dsm ingest` processes with no mesh at all, and one
// `dsm ingest` alone. BENCH_MESH_N sets the lines per edge (default 2000), BENCH_MESH_EPOCH_S
// the epoch (default 2 s: a consensus height every 2 s, 150 times the default epoch's rate).
import { Database } from "bun:sqlite";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { envWithoutDsm } from "../src/runtime/env.ts";
import { freePort } from "../test/helpers/net.ts";
import { MeshClient } from "../src/mesh/client.ts";
import type { DaemonStatus } from "../src/mesh/daemon.ts";
import { envInt, eveLines, fmtRate, fmtRatio, note, now, removeTempDir, say, table, tempDir } from "./lib.ts";

const VALIDATORS = 4;
const EDGES = 4;
const EPOCH_S = envInt("BENCH_MESH_EPOCH_S", 2);
const POLL_MS = 250;
/** The sustained phase: below the mesh's capacity, so finality is the protocol's, not a backlog's. */
const PACED_RATE = envInt("BENCH_MESH_PACED_RATE", 400);
const PACED_S = envInt("BENCH_MESH_PACED_S", 10); // each poll asks all 8 daemons for their status: kept light

export interface MeshProcessFigures {
  name: string;
  role: "validator" | "edge" | "ingest";
  cpu_s: number;
  /** CPU % over 2 s with the mesh idle (before the run). */
  idle_cpu_pct: number;
  rss_mib: number;
  rss_peak_mib: number;
}

export interface MeshSummary {
  n_per_edge: number;
  events: number;
  complete: boolean;
  events_per_s: number;
  events_per_s_target: number;
  edges_ingest_events_per_s: number;
  baseline_events_per_s: number;
  baseline_one_events_per_s: number;
  ratio: number;
  finality_after_epoch_end_ms: number | null;
  finality_latency_ms: (number | null)[];
  finality_latency_max_ms_under_load: number | null;
  finality_target_ms: number;
  validator_cpu_us_per_event: number;
  sustained: { events_per_s: number; seconds: number; finality_median_ms: number | null; finality_max_ms: number | null; certificates: number };
  processes: MeshProcessFigures[];
  setup_s: number;
  total_s: number;
}

// ---------------------------------------------------------------------------
// Processes

/** The caller's environment minus DSM_*, HOME in the bench dir (never a real ~/.dsm). */
function baseEnv(home: string, extra: Record<string, string>): Record<string, string> {
  return envWithoutDsm({ HOME: home, ...extra });
}

async function dsm(bin: string, args: string[], env: Record<string, string>): Promise<string> {
  const p = Bun.spawn([bin, ...args], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`);
  return out;
}

/** utime + stime of a live process, seconds (Linux /proc; 0 elsewhere). */
function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // fields 14 and 15; USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

/** VmRSS and VmHWM (peak) of a live process, MiB. */
function rss(pid: number): { now: number; peak: number } {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
    return { now: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
  } catch {
    return { now: NaN, peak: NaN };
  }
}

interface Daemon {
  name: string;
  role: "validator" | "edge";
  dir: string;
  proc: Subprocess;
  log: string;
  addr: string;
  client: MeshClient;
  peakMiB: number;
}

/** Every process this bench started and has not yet seen exit. */
const live = new Set<Subprocess>();

function killAllNow(): void {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
}

async function stopProc(p: Subprocess): Promise<void> {
  if (p.exitCode === null && p.signalCode === null) {
    p.kill("SIGTERM");
    const done = await Promise.race([p.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!done) {
      p.kill("SIGKILL");
      await p.exited;
    }
  }
  live.delete(p);
}

async function startDaemon(bin: string, name: string, role: Daemon["role"], dir: string, env: Record<string, string>): Promise<Daemon> {
  fs.rmSync(path.join(dir, "run.json"), { force: true });
  const log = path.join(path.dirname(dir), `${name}.log`);
  // BENCH_MESH_PROFILE=DIR: validator 0 and edge 0 run from source under Bun's CPU profiler.
  const prof = process.env.BENCH_MESH_PROFILE;
  const cmd = prof && (name === "validator 0" || name === "edge 0")
    ? [process.execPath, "--cpu-prof-md", `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${name.replace(" ", "-")}.md`, path.resolve(import.meta.dir, "../bin/dsm.ts"), "run", "--data-dir", dir]
    : [bin, "run", "--data-dir", dir];
  const proc = Bun.spawn(cmd, { env, stdin: "ignore", stdout: "ignore", stderr: Bun.file(log) });
  live.add(proc);
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    const runJson = path.join(dir, "run.json");
    if (fs.existsSync(runJson)) {
      const info = JSON.parse(fs.readFileSync(runJson, "utf8")) as { addrs: string[]; peer_id: string };
      const client = MeshClient.forDataDir(dir);
      if (client) return { name, role, dir, proc, log, addr: `${info.addrs[0]}/p2p/${info.peer_id}`, client, peakMiB: 0 };
    }
    if (proc.exitCode !== null) break;
    await Bun.sleep(25);
  }
  throw new Error(`dsm run (${name}) did not start: ${fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim() : "(no log)"}`);
}

interface IngestRun {
  ms: number;
  cpuS: number;
  maxRssMiB: number;
  said: string;
}

/** `dsm ingest` with a file on stdin; resolves when it exits, timed from `t0`. */
async function ingest(bin: string, dir: string, file: string, env: Record<string, string>, t0: number): Promise<IngestRun> {
  const p = Bun.spawn([bin, "ingest", "--data-dir", dir], { env, stdin: Bun.file(file), stdout: "ignore", stderr: "pipe" });
  live.add(p);
  // The child's own peak (VmHWM), sampled while it runs: resourceUsage() after exit can
  // report the largest of the bench's earlier children instead.
  let peak = rss(p.pid).peak;
  const sampler = setInterval(() => {
    const r = rss(p.pid).peak;
    if (Number.isFinite(r)) peak = Math.max(Number.isFinite(peak) ? peak : 0, r);
  }, 25);
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  clearInterval(sampler);
  const ms = now() - t0;
  live.delete(p);
  if (code !== 0) throw new Error(`dsm ingest (${path.basename(dir)}) exited ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`);
  const ru = p.resourceUsage();
  return { ms, cpuS: ru ? Number(ru.cpuTime.total) / 1e6 : NaN, maxRssMiB: peak, said: err.trim().split("\n").pop() ?? "" };
}

/**
 * Sustained ingest below capacity: `rate` events/s in all, spread over the edges' `dsm
 * ingest` processes fed through pipes every 100 ms for `seconds`, then until every
 * validator's certificate covers it all. Finality is read per certificate from the daemons
 * (finality_latency_ms: from its epoch's end to the certificate on that validator).
 */
async function paced(bin: string, edges: Daemon[], vals: Daemon[], env: Record<string, string>, rate: number, seconds: number, have: number): Promise<{ events: number; latencies: number[]; lastEpochMs: number | null; coveredAfterMs: number | null }> {
  const perEdge = Math.round((rate * seconds) / edges.length);
  const lines = edges.map((_, e) => eveLines(perEdge, 0x9a0 + e));
  const procs = edges.map((d) => Bun.spawn([bin, "ingest", "--data-dir", d.dir], { env, stdin: "pipe", stdout: "ignore", stderr: "pipe" }));
  for (const p of procs) live.add(p);
  const latencies = new Map<string, number>();
  const before = (await statuses(vals)).map((st) => st?.last_finalized_epoch ?? -1);
  const record = async () => {
    for (const [i, st] of (await statuses(vals)).entries()) {
      if (st && st.last_finalized_epoch !== null && st.last_finalized_epoch > before[i]! && st.finality_latency_ms !== null) latencies.set(`${i}/${st.last_finalized_epoch}`, st.finality_latency_ms);
    }
  };
  const ticks = seconds * 10;
  const t0 = now();
  let lastWrite = 0;
  for (let tick = 0; tick < ticks; tick++) {
    for (const [e, p] of procs.entries()) {
      const from = Math.round((perEdge * tick) / ticks);
      const to = Math.round((perEdge * (tick + 1)) / ticks);
      if (to > from) p.stdin.write(lines[e]!.slice(from, to).join("\n") + "\n");
      p.stdin.flush();
    }
    lastWrite = Date.now();
    if (tick % 3 === 0) await record();
    const wait = t0 + (tick + 1) * 100 - now();
    if (wait > 0) await Bun.sleep(wait);
  }
  for (const p of procs) p.stdin.end();
  await Promise.all(procs.map(async (p) => {
    await p.exited;
    live.delete(p);
  }));
  const target = have + perEdge * edges.length;
  let coveredAt: number | null = null;
  const until = now() + 30_000;
  while (now() < until) {
    await record();
    const certs = await Promise.all(vals.map((d) => Promise.race([d.client.getCheckpoint().catch(() => null), Bun.sleep(1000).then(() => null)])));
    if (certs.every((c) => c !== null && c.checkpoint.tree_size >= target)) {
      coveredAt = Date.now();
      break;
    }
    await Bun.sleep(POLL_MS);
  }
  await record();
  return { events: perEdge * edges.length, latencies: [...latencies.values()], lastEpochMs: lastWrite, coveredAfterMs: coveredAt === null ? null : coveredAt - lastWrite };
}

// ---------------------------------------------------------------------------

/** Each daemon's status over its control socket; null for one that does not answer within 1 s. */
async function statuses(ds: Daemon[]): Promise<(DaemonStatus | null)[]> {
  return Promise.all(ds.map((d) => Promise.race([d.client.status().catch(() => null), Bun.sleep(1000).then(() => null)])));
}

/** Microblocks in a node's ledger, read directly (WAL: a reader never blocks the daemon). */
function ledgerCount(dir: string): number {
  const db = new Database(path.join(dir, "ledger.sqlite"), { readonly: true });
  try {
    return (db.query("SELECT count(*) AS n FROM microblocks").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

function sampleRss(ds: Daemon[]): void {
  for (const d of ds) {
    const r = rss(d.proc.pid);
    if (r.peak > d.peakMiB) d.peakMiB = r.peak;
  }
}

export async function runMesh(root = path.resolve(import.meta.dir, "..")): Promise<MeshSummary | null> {
  const bin = path.join(root, "dist", "dsm");
  if (!fs.existsSync(bin)) {
    say("\n7. Mesh: dist/dsm not found: skipped (bun run build to include it)");
    return null;
  }
  const n = envInt("BENCH_MESH_N", 2_000);
  const total = EDGES * n;
  const tStart = now();
  const dir = tempDir("mesh");
  const onExit = () => killAllNow();
  process.on("exit", onExit);
  const daemons: Daemon[] = [];
  try {
    // Data: one file per edge (distinct seeds, so no two edges hold the same event).
    note(`mesh: generating ${EDGES} x ${n} EVE alert lines`);
    const files: string[] = [];
    const warm: string[] = [];
    for (let e = 0; e < EDGES; e++) {
      files.push(path.join(dir, `eve-${e}.json`));
      fs.writeFileSync(files[e]!, eveLines(n, 0x3e5 + e).join("\n") + "\n");
      warm.push(path.join(dir, `warm-${e}.json`));
      fs.writeFileSync(warm[e]!, eveLines(1, 0x3a1 + e).join("\n") + "\n");
    }
    const plainEnv = baseEnv(dir, {});

    // Baselines, before any daemon runs: 4 `dsm ingest` at once on 4 standalone nodes with
    // the same files, then one alone.
    note("mesh: baseline, 4 x dsm ingest with no mesh");
    const solo: string[] = [];
    for (let e = 0; e < EDGES; e++) solo.push(path.join(dir, `solo-${e}`));
    await Promise.all(solo.map((d) => dsm(bin, ["init", "--data-dir", d], plainEnv)));
    const tb = now();
    const base4 = await Promise.all(solo.map((d, e) => ingest(bin, d, files[e]!, plainEnv, tb)));
    const base4Eps = (total * 1000) / Math.max(...base4.map((r) => r.ms));
    for (const d of solo) fs.rmSync(d, { recursive: true, force: true });
    note("mesh: baseline, 1 x dsm ingest alone");
    const one = path.join(dir, "solo-one");
    await dsm(bin, ["init", "--data-dir", one], plainEnv);
    const base1 = await ingest(bin, one, files[0]!, plainEnv, now());
    const base1Eps = (n * 1000) / base1.ms;
    fs.rmSync(one, { recursive: true, force: true });

    // The mesh: validators, cards, genesis (2 s epochs, open admission), edges.
    note(`mesh: init ${VALIDATORS} validators + ${EDGES} edges, genesis`);
    const meshEnv = baseEnv(dir, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "2" });
    const vDirs = Array.from({ length: VALIDATORS }, (_, i) => path.join(dir, `v${i}`));
    const eDirs = Array.from({ length: EDGES }, (_, i) => path.join(dir, `e${i}`));
    await Promise.all(vDirs.map((d) => dsm(bin, ["init", "--data-dir", d, "--role", "validator"], meshEnv)));
    const cards = await Promise.all(
      vDirs.map(async (d, i) => {
        const card = path.join(dir, `v${i}.card`);
        fs.writeFileSync(card, await dsm(bin, ["card", "--data-dir", d, "--json"], meshEnv));
        return card;
      }),
    );
    const genesisFile = path.join(dir, "genesis.json");
    const genesisMs = Math.floor(Date.now() / 1000) * 1000 - 2000;
    await dsm(
      bin,
      ["genesis", "--name", "bench", ...cards.flatMap((c) => ["--validator", c]), "--admission", "open", "--epoch-duration", String(EPOCH_S), "--genesis-time", new Date(genesisMs).toISOString(), "-o", genesisFile],
      meshEnv,
    );
    meshEnv.DSM_MESH_GENESIS = genesisFile;
    await Promise.all(eDirs.map((d) => dsm(bin, ["init", "--data-dir", d, "--genesis", genesisFile, "--role", "edge"], meshEnv)));

    note("mesh: starting 8 dsm run processes");
    const metricsPort = await freePort();
    const boot: string[] = [];
    for (const [i, d] of [...vDirs, ...eDirs].entries()) {
      const role = i < VALIDATORS ? "validator" : "edge";
      const name = role === "validator" ? `validator ${i}` : `edge ${i - VALIDATORS}`;
      const env = { ...meshEnv, DSM_GOSSIP_BOOTSTRAP_NODES: boot.join(","), ...(i === 0 ? { DSM_METRICS_PORT: String(metricsPort) } : {}) };
      const dm = await startDaemon(bin, name, role, d, env);
      daemons.push(dm);
      boot.push(dm.addr);
    }
    const vals = daemons.filter((d) => d.role === "validator");
    const edges = daemons.filter((d) => d.role === "edge");

    // Warm-up: one event per edge, until every validator holds all four (connections,
    // gossipsub meshes and key certificates in place before the clock starts).
    // Every daemon connected to the 7 others, then one gossipsub heartbeat (1 s) so that
    // subscriptions are known: a microblock published to no topic peer is not re-sent.
    const peersUntil = Date.now() + 20_000;
    while (Date.now() < peersUntil) {
      const st = await statuses(daemons);
      if (st.every((x) => x !== null && x.peers >= daemons.length - 1)) break;
      await Bun.sleep(POLL_MS);
    }
    await Bun.sleep(1500);
    note("mesh: warm-up, one event per edge");
    await Promise.all(edges.map((d, e) => ingest(bin, d.dir, warm[e]!, meshEnv, now())));
    const warmUntil = Date.now() + 30_000;
    for (;;) {
      const st = await statuses(vals);
      if (st.every((s) => s !== null && s.received >= EDGES)) break;
      if (Date.now() > warmUntil) throw new Error(`mesh warm-up: validators received ${st.map((s) => s?.received ?? "?").join("/")} of ${EDGES} in 30 s; logs in ${dir}`);
      await Bun.sleep(POLL_MS);
    }
    const setupS = (now() - tStart) / 1000;
    const base = EDGES;
    const target = base + total;

    // The measured run.
    note(`mesh: ${EDGES} x dsm ingest of ${n} lines at the edges, polling the validators`);
    sampleRss(daemons);
    const cpu0 = daemons.map((d) => cpuSeconds(d.proc.pid));
    const t0 = now();
    const ingests = Promise.all(edges.map((d, e) => ingest(bin, d.dir, files[e]!, meshEnv, t0)));
    ingests.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
    let tAll = NaN;
    let last: (DaemonStatus | null)[] = [];
    let pollFailures = 0;
    let counts: number[] = vals.map(() => 0);
    const latencies = new Map<string, number>(); // "validator/epoch" -> finality_latency_ms
    const timeoutMs = 60_000 + total / 2; // 0.5 ms/event beyond a minute: anything slower is broken
    // A status request can fail while a daemon is busy: keep each validator's last answer
    // (received only grows).
    const good: (DaemonStatus | null)[] = vals.map(() => null);
    while (now() - t0 < timeoutMs) {
      for (const [i, st] of (await statuses(vals)).entries()) {
        if (st) good[i] = st;
        else pollFailures++;
      }
      last = good;
      sampleRss(daemons);
      for (const [i, s] of last.entries()) if (s && s.last_finalized_epoch !== null && s.finality_latency_ms !== null) latencies.set(`${i}/${s.last_finalized_epoch}`, s.finality_latency_ms);
      counts = vals.map((d) => ledgerCount(d.dir));
      if (process.env.BENCH_MESH_TRACE) note(`t=${((now() - t0) / 1000).toFixed(2)} s validators hold ${counts.join("/")}; edges published ${(await statuses(edges)).map((st) => st?.published ?? "?").join("/")}`);
      if (counts.every((c) => c >= target)) {
        tAll = now();
        break;
      }
      await Bun.sleep(POLL_MS);
    }
    const tAllWall = Date.now();
    const cpu1 = daemons.map((d) => cpuSeconds(d.proc.pid));
    const ingestRuns = await ingests;
    const complete = Number.isFinite(tAll);
    const windowMs = complete ? tAll - t0 : now() - t0;
    const stored = Math.min(...counts) - base;
    const meshEps = (Math.max(0, stored) * 1000) / windowMs;
    const edgesEps = (total * 1000) / Math.max(...ingestRuns.map((r) => r.ms));
    if (!complete) note(`mesh: not every validator stored all ${total} events within ${(timeoutMs / 1000).toFixed(0)} s: ${counts.map((c) => c - base).join("/")}`);

    // Finality: until every validator's latest certificate covers every event.
    note("mesh: waiting for finality over every event");
    let tFinal = NaN;
    let certs: ({ checkpoint: { epoch: number; tree_size: number } } | null)[] = [];
    const finalUntil = now() + 30_000;
    while (complete && now() < finalUntil) {
      const got = await Promise.all(vals.map((d) => Promise.race([d.client.getCheckpoint().catch(() => null), Bun.sleep(1000).then(() => null)])));
      certs = got.map((c, i) => c ?? certs[i] ?? null);
      if (certs.every((c) => c !== null && c.checkpoint.tree_size >= target)) {
        tFinal = now();
        break;
      }
      await Bun.sleep(POLL_MS);
    }
    const tFinalWall = Date.now() - (now() - tFinal);
    const allStatus = await statuses(daemons);
    const finalStatus = allStatus.slice(0, VALIDATORS);
    for (const [i, s] of finalStatus.entries()) if (s && s.last_finalized_epoch !== null && s.finality_latency_ms !== null) latencies.set(`${i}/${s.last_finalized_epoch}`, s.finality_latency_ms);

    // The last event's epoch, from the edges' chain heads (microblock timestamps).
    const heads = await Promise.all(edges.map(async (d) => JSON.parse(await dsm(bin, ["status", "--data-dir", d.dir, "--json"], meshEnv)) as { head: { timestamp: string } | null; ledger: { microblocks: number } }));
    const lastTs = Math.max(...heads.map((h) => (h.head ? Date.parse(h.head.timestamp) : 0)));
    const lastEpoch = Math.floor((lastTs - genesisMs) / (EPOCH_S * 1000));
    const lastEpochEnd = genesisMs + (lastEpoch + 1) * EPOCH_S * 1000;
    const finalityAfterEnd = Number.isFinite(tFinal) ? tFinalWall - lastEpochEnd : null;
    // `dsm status` and `dsm checkpoint show` of each validator, as an operator would check.
    const vStatus = await Promise.all(vals.map(async (d) => JSON.parse(await dsm(bin, ["status", "--data-dir", d.dir, "--json"], meshEnv)) as { ledger: { microblocks: number }; daemon: DaemonStatus | null }));
    const vShow = await Promise.all(vals.map(async (d) => JSON.parse(await dsm(bin, ["checkpoint", "show", "--data-dir", d.dir, "--json"], meshEnv)) as { checkpoint: { epoch: number; tree_size: number } }));
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()).catch(() => "");
    const metric = (name: string) => /^(\S+) (\S+)$/m.exec(metrics.split("\n").filter((l) => l.startsWith(name)).join("\n"))?.[2] ?? "?";

    // Idle cost: the 8 daemons once every event is final and nothing new comes, over 3 s.
    const idleMs = 3000;
    const idle0 = daemons.map((d) => cpuSeconds(d.proc.pid));
    await Bun.sleep(idleMs);
    const idleCpu = daemons.map((d, i) => cpuSeconds(d.proc.pid) - idle0[i]!);
    note(`mesh: sustained ${PACED_RATE} events/s at the edges for ${PACED_S} s, finality per certificate`);
    const steady = await paced(bin, edges, vals, meshEnv, PACED_RATE, PACED_S, target);

    // Processes: CPU in the measured window, RSS now and peak.
    const procs: MeshProcessFigures[] = daemons.map((d, i) => {
      const r = rss(d.proc.pid);
      return { name: `dsm run, ${d.name}`, role: d.role, cpu_s: cpu1[i]! - cpu0[i]!, idle_cpu_pct: (100 * idleCpu[i]! * 1000) / idleMs, rss_mib: r.now, rss_peak_mib: Math.max(r.peak, d.peakMiB) };
    });
    for (const [e, r] of ingestRuns.entries()) procs.push({ name: `dsm ingest, edge ${e}`, role: "ingest", cpu_s: r.cpuS, idle_cpu_pct: NaN, rss_mib: NaN, rss_peak_mib: r.maxRssMiB });
    const busiest = procs.reduce((a, b) => (b.cpu_s > a.cpu_s ? b : a));
    const latencyValues = [...latencies.values()];
    const finalityLatency = finalStatus.map((s) => s?.finality_latency_ms ?? null);
    const ratio = meshEps / base4Eps;

    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    say(
      table(
        `7. Mesh: ${VALIDATORS} validators + ${EDGES} edges, each dist/dsm run on 127.0.0.1 (${EPOCH_S} s epochs); ${EDGES} x ${n} EVE alerts piped into dsm ingest at the edges at once`,
        ["path", "events", "wall", "events/s", "vs baseline"],
        [
          [`mesh end to end: ingest start until all ${VALIDATORS} validators stored every event${complete ? "" : " (INCOMPLETE)"}`, Math.max(0, stored), s(windowMs), fmtRate(meshEps), fmtRatio(ratio)],
          [`  the edges' ${EDGES} dsm ingest, mesh running (last one done)`, total, s(Math.max(...ingestRuns.map((r) => r.ms))), fmtRate(edgesEps), fmtRatio(edgesEps / base4Eps)],
          [`baseline: ${EDGES} x dsm ingest at once, no mesh`, total, s(Math.max(...base4.map((r) => r.ms))), fmtRate(base4Eps), "1.00x"],
          [`  1 x dsm ingest alone, no mesh`, n, s(base1.ms), fmtRate(base1Eps), fmtRatio(base1Eps / base4Eps)],
        ],
      ),
    );
    say(`   mesh ${fmtRate(meshEps)} vs target 10.0k/s (${fmtRatio(meshEps / 10_000)}); mesh/single-process ${fmtRatio(ratio)} (vs ${EDGES} x ingest), ${fmtRatio(meshEps / base1Eps)} (vs 1 x ingest)`);
    // Every validator checks and stores every event: their CPU per event bounds the mesh on this machine.
    const vCpuUs = (1e6 * procs.filter((p) => p.role === "validator").reduce((a, p) => a + p.cpu_s, 0)) / VALIDATORS / Math.max(1, total);
    const cores = navigator.hardwareConcurrency;
    say(`   validator CPU per event: ${vCpuUs.toFixed(0)} us (all of it: receive, gossip, consensus); ${VALIDATORS} validators on ${cores} CPUs can take at most ${fmtRate((cores * 1e6) / (VALIDATORS * vCpuUs))} with nothing else running`);
    say(
      `   finality: last event in epoch ${lastEpoch} (ends ${new Date(lastEpochEnd).toISOString().slice(11, 23)}); stored everywhere ${((tAllWall - lastEpochEnd) / 1000).toFixed(2)} s after its end; ` +
        (finalityAfterEnd === null ? "no certificate covering every event within 30 s" : `every validator's certificate covers all ${target} leaves ${(finalityAfterEnd / 1000).toFixed(2)} s after it (target <= 2 s)`),
    );
    say(
      `   daemon.finality_latency_ms, last certificate per validator: ${finalityLatency.map((x) => (x === null ? "-" : x)).join(" / ")}; ` +
        `max over ${latencyValues.length} epoch certificates seen under load ${latencyValues.length ? Math.max(...latencyValues) : "-"} ms`,
    );
    const sorted = [...steady.latencies].sort((a, b) => a - b);
    const pct = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : NaN);
    say(
      `   sustained ${PACED_RATE}/s for ${PACED_S} s (${steady.events} events): finality after each epoch's end, ${sorted.length} certificates on the validators: ` +
        (sorted.length ? `median ${pct(0.5)} ms, max ${sorted.at(-1)} ms (target <= 2000 ms)` : "none seen") +
        `; every event covered ${steady.coveredAfterMs === null ? "not within 30 s" : `${(steady.coveredAfterMs / 1000).toFixed(2)} s after the last write`}`,
    );
    say(
      `   dsm status: validators' ledgers ${vStatus.map((v) => v.ledger.microblocks).join(" / ")} microblocks; dsm checkpoint show: epoch ${vShow.map((v) => v.checkpoint.epoch).join("/")}, tree_size ${vShow.map((v) => v.checkpoint.tree_size).join("/")}; ` +
        `validator 0 /metrics: received ${metric("dsm_microblocks_received_total")}, gossip in ${(Number(metric('dsm_gossip_bytes_total{direction="in"}')) / 1048576).toFixed(1)} MiB`,
    );
    say(
      table(
        `   Processes: CPU seconds in the measured ${s(windowMs)} (${navigator.hardwareConcurrency} CPUs: ${((navigator.hardwareConcurrency * windowMs) / 1000).toFixed(0)} CPU s available), RSS at the end and peak (VmHWM)`,
        ["process", "CPU s", "CPU %", "idle CPU % (after)", "RSS MiB", "peak MiB", "received / published"],
        procs.map((p, i) => {
          const st = allStatus[i] ?? null;
          return [
            p.name + (p === busiest ? "  <- busiest" : ""),
            p.cpu_s.toFixed(1),
            `${((100 * p.cpu_s * 1000) / windowMs).toFixed(0)}%`,
            Number.isFinite(p.idle_cpu_pct) ? `${p.idle_cpu_pct.toFixed(0)}%` : "-",
            Number.isFinite(p.rss_mib) ? p.rss_mib.toFixed(0) : "-",
            Number.isFinite(p.rss_peak_mib) ? p.rss_peak_mib.toFixed(0) : "-",
            st ? `${p.role === "edge" ? "-" : st.received - base} / ${st.published}` : "-",
          ];
        }),
      ),
    );
    say(`   edges said: ${ingestRuns[0]!.said}; control-socket status requests that failed while polling: ${pollFailures}`);
    const totalS = (now() - tStart) / 1000;
    say(`   setup ${setupS.toFixed(1)} s, mesh section ${totalS.toFixed(1)} s in all`);
    const r3 = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(3)) : 0);
    return {
      n_per_edge: n,
      events: total,
      complete,
      events_per_s: Math.round(meshEps),
      events_per_s_target: 10_000,
      edges_ingest_events_per_s: Math.round(edgesEps),
      baseline_events_per_s: Math.round(base4Eps),
      baseline_one_events_per_s: Math.round(base1Eps),
      ratio: r3(ratio),
      finality_after_epoch_end_ms: finalityAfterEnd === null ? null : Math.round(finalityAfterEnd),
      finality_latency_ms: finalityLatency,
      finality_latency_max_ms_under_load: latencyValues.length ? Math.max(...latencyValues) : null,
      finality_target_ms: 2000,
      validator_cpu_us_per_event: r3(vCpuUs),
      sustained: { events_per_s: PACED_RATE, seconds: PACED_S, finality_median_ms: sorted.length ? pct(0.5) : null, finality_max_ms: sorted.at(-1) ?? null, certificates: sorted.length },
      processes: procs.map((p) => ({ ...p, cpu_s: r3(p.cpu_s), idle_cpu_pct: r3(p.idle_cpu_pct), rss_mib: r3(p.rss_mib), rss_peak_mib: r3(p.rss_peak_mib) })),
      setup_s: r3(setupS),
      total_s: r3(totalS),
    };
  } finally {
    await Promise.all(daemons.map((d) => stopProc(d.proc)));
    for (const p of [...live]) await stopProc(p);
    process.off("exit", onExit);
    removeTempDir(dir);
  }
}

if (import.meta.main) await runMesh();
