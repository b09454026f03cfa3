// `dsm run`'s life as an operator sees it, with the compiled binary: it stops within 3 s
// of SIGTERM or SIGINT in every role (systemd's TimeoutStopSec), also when started by a
// parent (DSM_RUN_PARENT_PID) and when that parent dies; 50 graceful stops of mesh daemons
// in a row all exit 0; a start that cannot bind says so in one line and leaves nothing
// behind; a node with no peers counts no gossip bytes out; dsm checkpoint answers the
// same with and without a daemon. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { cleanEnv, DSM, requireBinary, runDsm } from "./helpers/e2e.ts";
import { freePort } from "./helpers/net.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

let root: string;
let env: Record<string, string>;

async function ok(args: string[], extra: Record<string, string | undefined> = {}): Promise<string> {
  const r = await runDsm(args, env, { env: extra });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

interface Daemon {
  dir: string;
  proc: Subprocess;
  stderr: () => string;
  addr: string;
}

/** Starts dsm run on a data dir; resolves once run.json says it listens. */
async function start(dir: string, extra: Record<string, string> = {}): Promise<Daemon> {
  const proc = Bun.spawn([DSM, "run", "--data-dir", dir], { env: { ...env, ...extra }, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let err = "";
  const done = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) err += dec.decode(chunk);
  })();
  void done;
  for (let i = 0; i < 400; i++) {
    const f = path.join(dir, "run.json");
    if (fs.existsSync(f)) {
      try {
        const info = JSON.parse(fs.readFileSync(f, "utf8")) as { addrs: string[]; peer_id: string; pid: number };
        if (info.pid === proc.pid) return { dir, proc, stderr: () => err, addr: `${info.addrs[0]}/p2p/${info.peer_id}` };
      } catch {
        // written atomically, but a stale one may be there: wait for ours
      }
    }
    if (proc.exitCode !== null) break;
    await Bun.sleep(25);
  }
  proc.kill("SIGKILL");
  throw new Error(`dsm run in ${dir} did not start: ${err}`);
}

/** Sends the signal; resolves with the exit code and how long the exit took. */
async function stop(d: Daemon, signal: "SIGTERM" | "SIGINT" = "SIGTERM"): Promise<{ code: number; ms: number }> {
  const t0 = performance.now();
  d.proc.kill(signal);
  const killer = setTimeout(() => d.proc.kill("SIGKILL"), 15_000);
  const code = await d.proc.exited;
  clearTimeout(killer);
  return { code, ms: performance.now() - t0 };
}

/** What a clean stop leaves: no run.json, no control socket, a ledger SQLite closed cleanly. */
function expectCleanlyStopped(dir: string): void {
  expect(fs.existsSync(path.join(dir, "run.json"))).toBe(false);
  expect(fs.existsSync(path.join(dir, "control.sock"))).toBe(false);
  // The last connection to close a WAL database checkpoints and removes its -wal file.
  const wal = path.join(dir, "ledger.sqlite-wal");
  expect(fs.existsSync(wal) ? fs.statSync(wal).size : 0).toBe(0);
}

let validator: string;
let edge: string;
let genesisFile: string;

beforeAll(async () => {
  requireBinary();
  root = tempDir("dsm-run-");
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0" });
  validator = path.join(root, "v");
  await ok(["init", "--data-dir", validator, "--role", "validator"]);
  const card = path.join(root, "v.card");
  fs.writeFileSync(card, await ok(["card", "--data-dir", validator, "--json"]));
  genesisFile = path.join(root, "genesis.json");
  const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 3000).toISOString();
  await ok(["genesis", "--name", "run", "--validator", card, "--admission", "open", "--epoch-duration", "1", "--genesis-time", t0, "-o", genesisFile]);
  // The validator's config names the mesh; the edge joins it.
  fs.appendFileSync(path.join(validator, "dsm.yaml"), "");
  edge = path.join(root, "e");
  await ok(["init", "--data-dir", edge, "--genesis", genesisFile, "--role", "edge"]);
}, 60_000);

afterAll(() => cleanupTempDirs());

describe("dsm run stops within 3 s, exit 0, ledger closed", () => {
  test("an idle node of its own local mesh (defaults): SIGTERM and SIGINT", async () => {
    const dir = path.join(root, "idle");
    await ok(["init", "--data-dir", dir]);
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      const d = await start(dir);
      // Long enough for the consensus heartbeat and the epoch timers to be armed.
      await Bun.sleep(1500);
      const r = await stop(d, sig);
      expect({ sig, code: r.code, stderr: d.stderr().includes("Error") ? d.stderr() : "" }).toEqual({ sig, code: 0, stderr: "" });
      expect(r.ms).toBeLessThan(3000);
      expectCleanlyStopped(dir);
    }
  }, 30_000);

  test("a validator and an edge of one mesh, connected", async () => {
    const v = await start(validator, { DSM_MESH_GENESIS: genesisFile });
    const e = await start(edge, { DSM_GOSSIP_BOOTSTRAP_NODES: v.addr });
    await ok(["ingest", "--data-dir", edge, "--format", "json"].concat([]), {}).catch(() => "");
    await Bun.sleep(2500);
    for (const d of [e, v]) {
      const r = await stop(d);
      expect(r.code).toBe(0);
      expect(r.ms).toBeLessThan(3000);
      expect(d.stderr()).not.toMatch(/AbortError|Error:|\n\s+at /);
      expectCleanlyStopped(d.dir);
    }
  }, 30_000);

  test("started with DSM_RUN_PARENT_PID (as dsm demo starts it): SIGTERM still exits, and so does the parent's death", async () => {
    const d = await start(validator, { DSM_MESH_GENESIS: genesisFile, DSM_RUN_PARENT_PID: String(process.pid) });
    await Bun.sleep(1200);
    const r = await stop(d);
    expect(r.code).toBe(0);
    expect(r.ms).toBeLessThan(3000);
    expectCleanlyStopped(validator);

    const parent = Bun.spawn(["sleep", "60"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    const child = await start(validator, { DSM_MESH_GENESIS: genesisFile, DSM_RUN_PARENT_PID: String(parent.pid) });
    await Bun.sleep(500);
    const t0 = performance.now();
    parent.kill("SIGKILL");
    await parent.exited;
    const killer = setTimeout(() => child.proc.kill("SIGKILL"), 15_000);
    const code = await child.proc.exited;
    clearTimeout(killer);
    expect(code).toBe(0);
    // The parent is polled every second; the stop itself then has the same 3 s.
    expect(performance.now() - t0).toBeLessThan(4000);
    expect(child.stderr()).toContain("parent exited: stopping");
    expectCleanlyStopped(validator);
  }, 30_000);
});

/** Rounds of three daemons stopped (DSM_STOP_ROUNDS; the README's test command runs fewer). */
const STOP_ROUNDS = Number(process.env.DSM_STOP_ROUNDS ?? 17);

describe(`${STOP_ROUNDS * 3} graceful stops of mesh daemons in a row`, () => {
  test(`a validator and two edges, started connected and stopped, ${STOP_ROUNDS} times: every exit is 0`, async () => {
    const edges = [edge, path.join(root, "e2")];
    if (!fs.existsSync(edges[1]!)) await ok(["init", "--data-dir", edges[1]!, "--genesis", genesisFile, "--role", "edge"]);
    const codes: number[] = [];
    const slow: number[] = [];
    const noisy: string[] = [];
    for (let round = 0; round < STOP_ROUNDS; round++) {
      const v = await start(validator, { DSM_MESH_GENESIS: genesisFile });
      const es = await Promise.all(edges.map((e) => start(e, { DSM_GOSSIP_BOOTSTRAP_NODES: v.addr })));
      // Varying how long they run varies where the stop catches them (dials, handshakes, gossip).
      await Bun.sleep(200 + (round % 5) * 250);
      // Stopped together, as systemd stops a host's units: each sees its peers go mid-stop.
      const results = await Promise.all([v, ...es].map((d) => stop(d)));
      for (const [i, r] of results.entries()) {
        codes.push(r.code);
        if (r.ms >= 3000) slow.push(r.ms);
        const err = [v, ...es][i]!.stderr();
        if (r.code !== 0 || /AbortError|Error:|\n\s+at /.test(err)) noisy.push(`exit ${r.code}: ${err}`);
      }
    }
    expect(codes).toHaveLength(STOP_ROUNDS * 3);
    expect(noisy).toEqual([]);
    expect(codes.filter((c) => c !== 0)).toEqual([]);
    expect(slow).toEqual([]);
  }, 180_000);
});

describe("a start that fails says where, in one line, and leaves nothing behind", () => {
  async function failing(extra: Record<string, string>): Promise<{ code: number; stderr: string; lines: string[] }> {
    const dir = validator;
    const r = await runDsm(["run", "--data-dir", dir], env, { env: { DSM_MESH_GENESIS: genesisFile, ...extra }, timeoutMs: 20_000 });
    expect(fs.existsSync(path.join(dir, "run.json"))).toBe(false);
    expect(fs.existsSync(path.join(dir, "control.sock"))).toBe(false);
    return { code: r.code, stderr: r.stderr, lines: r.errLines };
  }

  async function occupied(fn: (port: number) => Promise<void>): Promise<void> {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    try {
      await fn((srv.address() as net.AddressInfo).port);
    } finally {
      srv.close();
    }
  }

  test("the gossip port in use", async () => {
    await occupied(async (port) => {
      const r = await failing({ DSM_GOSSIP_PORT: String(port) });
      expect(r.code).toBe(1);
      expect(r.lines).toEqual([`dsm run: cannot listen on 127.0.0.1:${port} (gossip.host, gossip.port): address already in use`]);
    });
  }, 30_000);

  test("the metrics port in use: the gossip node it had started is stopped, no closed-database trace", async () => {
    await occupied(async (port) => {
      const r = await failing({ DSM_METRICS_PORT: String(port) });
      expect(r.code).toBe(1);
      expect(r.lines).toEqual([`dsm run: cannot listen on 127.0.0.1:${port} (metrics.listen, metrics.port): address already in use`]);
      expect(r.stderr).not.toContain("closed database");
    });
  }, 30_000);

  test("an address this host does not have", async () => {
    // TEST-NET-2 (RFC 5737): never assigned to a host, so binding it fails; nothing is sent.
    const r = await failing({ DSM_GOSSIP_HOST: "198.51.100.7" });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual(["dsm run: cannot listen on 198.51.100.7:0 (gossip.host, gossip.port): this host has no such address"]);
  }, 30_000);

  test("a second dsm run on the same data dir is refused and leaves the first one's files alone", async () => {
    const first = await start(validator, { DSM_MESH_GENESIS: genesisFile });
    try {
      const r = await runDsm(["run", "--data-dir", validator], env, { env: { DSM_MESH_GENESIS: genesisFile }, timeoutMs: 20_000 });
      expect(r.code).toBe(1);
      expect(r.errLines).toEqual([`dsm run: another dsm run (pid ${first.proc.pid}) is using this data dir`]);
      expect(fs.existsSync(path.join(validator, "run.json"))).toBe(true);
      expect(fs.existsSync(path.join(validator, "control.sock"))).toBe(true);
      expect(JSON.parse(await ok(["status", "--data-dir", validator, "--json"], { DSM_MESH_GENESIS: genesisFile })).daemon).toBeTruthy();
    } finally {
      expect((await stop(first)).code).toBe(0);
    }
  }, 30_000);
});

describe("gossip bytes with no peers", () => {
  test("a node alone counts nothing sent, however long it has events to offer", async () => {
    const dir = path.join(root, "alone");
    await ok(["init", "--data-dir", dir]);
    const lines = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ event_type: "alert", src_ip: "10.0.0.1", n: i })).join("\n") + "\n";
    const ing = await runDsm(["ingest", "--data-dir", dir, "--format", "json", "--quiet"], env, { stdin: lines });
    expect(ing.code).toBe(0);
    const port = await freePort();
    const d = await start(dir, { DSM_METRICS_PORT: String(port) });
    try {
      const out = async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const m = /^dsm_gossip_bytes_total\{direction="out"\} (\d+)$/m.exec(text);
        if (!m) throw new Error(`no gossip byte counter in:\n${text}`);
        return Number(m[1]);
      };
      await Bun.sleep(1000);
      const a = await out();
      await Bun.sleep(2500);
      const b = await out();
      expect({ a, b }).toEqual({ a: 0, b: 0 });
      const peers = JSON.parse(await ok(["status", "--data-dir", dir, "--json"])).daemon;
      expect(peers.gossip_bytes_out).toBe(0);
    } finally {
      expect((await stop(d)).code).toBe(0);
    }
  }, 30_000);
});

describe("dsm checkpoint: the same exit codes with and without a daemon", () => {
  test("0 and the certificate once; then 4 with nothing on stdout, whoever made it", async () => {
    const dir = path.join(root, "cp");
    await ok(["init", "--data-dir", dir, "--role", "validator"]);
    const card = path.join(root, "cp.card");
    fs.writeFileSync(card, await ok(["card", "--data-dir", dir, "--json"]));
    const g = path.join(root, "cp-genesis.json");
    const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 3000).toISOString();
    await ok(["genesis", "--name", "cp", "--validator", card, "--epoch-duration", "1", "--genesis-time", t0, "-o", g]);
    const cpEnv = { DSM_MESH_GENESIS: g };
    await ok(["emit", "--data-dir", dir, "--event-type", "test.one", "--payload", '{"n":1}'], cpEnv);
    await Bun.sleep(1100);

    // With the daemon: it finalizes on its own; the first ask reports that certificate.
    const d = await start(dir, cpEnv);
    let first;
    try {
      first = await runDsm(["checkpoint", "--data-dir", dir, "--wait", "15", "--json"], env, { env: cpEnv, timeoutMs: 25_000 });
      expect(first.code).toBe(0);
      expect(JSON.parse(first.stdout).checkpoint.tree_size).toBe(1);
      const again = await runDsm(["checkpoint", "--data-dir", dir, "--json"], env, { env: cpEnv });
      expect({ code: again.code, stdout: again.stdout }).toEqual({ code: 4, stdout: "" });
    } finally {
      expect((await stop(d)).code).toBe(0);
    }
    // Without it: still nothing new, the same answer.
    const without = await runDsm(["checkpoint", "--data-dir", dir, "--json"], env, { env: cpEnv });
    expect({ code: without.code, stdout: without.stdout }).toEqual({ code: 4, stdout: "" });
    // A new event: the next closed epoch is new, made here this time (0, printed once).
    await ok(["emit", "--data-dir", dir, "--event-type", "test.two", "--payload", '{"n":2}'], cpEnv);
    await Bun.sleep(1100);
    const made = await runDsm(["checkpoint", "--data-dir", dir, "--json"], env, { env: cpEnv });
    expect(made.code).toBe(0);
    expect(JSON.parse(made.stdout).checkpoint.tree_size).toBe(2);
    const cron = path.join(root, "checkpoints.ndjson");
    // The documented cron line, twice: the file holds each certificate once.
    for (let i = 0; i < 2; i++) {
      const r = await runDsm(["checkpoint", "--data-dir", dir, "--json"], env, { env: cpEnv });
      fs.appendFileSync(cron, r.stdout);
    }
    expect(fs.existsSync(cron) ? fs.readFileSync(cron, "utf8") : "").toBe("");
  }, 60_000);
});
