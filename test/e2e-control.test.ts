// control.port and metrics.port as a local user and a web page meet them, with the compiled
// binary and a real `dsm run` on 127.0.0.1: control.port answers only with the bearer token
// of control.token_file (made 0600 by dsm init, or by dsm run when missing), a payload
// withheld by privacy.withhold_payloads is served by neither the port nor the socket, and
// /metrics answers only requests that name the address it listens on. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { metricsHostAllowed } from "../src/mesh/control.ts";
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
  proc: Subprocess;
  stderr: () => string;
}

/** Starts dsm run on a data dir; resolves once run.json names this process. */
async function start(dir: string, extra: Record<string, string>): Promise<Daemon> {
  const proc = Bun.spawn([DSM, "run", "--data-dir", dir], { env: { ...env, ...extra }, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let err = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) err += dec.decode(chunk);
  })();
  for (let i = 0; i < 400; i++) {
    try {
      if ((JSON.parse(fs.readFileSync(path.join(dir, "run.json"), "utf8")) as { pid: number }).pid === proc.pid) return { proc, stderr: () => err };
    } catch {
      // not there yet
    }
    if (proc.exitCode !== null) break;
    await Bun.sleep(25);
  }
  proc.kill("SIGKILL");
  throw new Error(`dsm run in ${dir} did not start: ${err}`);
}

async function stop(d: Daemon): Promise<number> {
  d.proc.kill("SIGTERM");
  const killer = setTimeout(() => d.proc.kill("SIGKILL"), 15_000);
  const code = await d.proc.exited;
  clearTimeout(killer);
  return code;
}

const mode = (file: string): number => fs.statSync(file).mode & 0o777;

beforeAll(() => {
  requireBinary();
  root = tempDir("dsm-e2e-control-");
  env = cleanEnv(root);
});

afterAll(() => cleanupTempDirs());

describe("control.port: a bearer token, and no withheld payload anywhere", () => {
  let dir: string;
  let cpEnv: Record<string, string>;
  let d: Daemon;
  let controlPort: number;
  let metricsPort: number;
  let token: string;
  let id: string;

  beforeAll(async () => {
    dir = path.join(root, "node");
    await ok(["init", "--data-dir", dir, "--role", "validator"]);
    const tokenFile = path.join(dir, "control.token");
    expect(mode(tokenFile)).toBe(0o600);
    token = fs.readFileSync(tokenFile, "utf8").trim();
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const card = path.join(root, "node.card");
    fs.writeFileSync(card, await ok(["card", "--data-dir", dir, "--json"]));
    const g = path.join(root, "genesis.json");
    const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 3000).toISOString();
    await ok(["genesis", "--name", "ctl", "--validator", card, "--epoch-duration", "1", "--genesis-time", t0, "-o", g]);
    controlPort = await freePort();
    metricsPort = await freePort();
    cpEnv = { DSM_MESH_GENESIS: g, DSM_PRIVACY_WITHHOLD_PAYLOADS: "true", DSM_CONTROL_PORT: String(controlPort), DSM_METRICS_PORT: String(metricsPort) };
    await ok(["emit", "--data-dir", dir, "--event-type", "test.secret", "--payload", '{"secret":"s3cr3t"}'], cpEnv);
    id = (JSON.parse(await ok(["log", "--data-dir", dir, "--json"], cpEnv).then((t) => t.trim().split("\n")[0]!)) as { id: string }).id;
    await Bun.sleep(1100);
    d = await start(dir, cpEnv);
    const cp = await runDsm(["checkpoint", "--data-dir", dir, "--wait", "15", "--json"], env, { env: cpEnv, timeoutMs: 25_000 });
    expect(cp.code).toBe(0);
  }, 60_000);

  afterAll(async () => {
    if (d) expect(await stop(d)).toBe(0);
  });

  const url = (p: string) => `http://127.0.0.1:${controlPort}${p}`;

  test("without the token 401, with a wrong one 401, with the right one 200", async () => {
    const none = await fetch(url("/status"));
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toStartWith("Bearer");
    expect(((await none.json()) as { error: string }).error).toContain("Authorization: Bearer");
    for (const authorization of [`Bearer ${"0".repeat(64)}`, `Bearer ${token.slice(0, 63)}`, `Bearer ${token}x`, `Basic ${btoa(`dsm:${token}`)}`, token, "Bearer"]) {
      const r = await fetch(url("/status"), { headers: { authorization } });
      expect({ authorization, status: r.status }).toEqual({ authorization, status: 401 });
      expect(r.headers.get("www-authenticate")).toStartWith("Bearer");
    }
    // Every route is behind the token, the unknown ones too.
    for (const p of ["/peers", `/microblocks`, "/checkpoint", "/certificates", `/proof?id=${id}`, "/checkpoint/wait", "/nothing"]) {
      expect({ p, status: (await fetch(url(p))).status }).toEqual({ p, status: 401 });
    }
    const good = await fetch(url("/status"), { headers: { authorization: `Bearer ${token}` } });
    expect(good.status).toBe(200);
    expect(((await good.json()) as { role: string }).role).toBe("validator");
    // The scheme is case-insensitive (RFC 9110); a browser's request is refused before the token counts.
    expect((await fetch(url("/status"), { headers: { authorization: `bearer ${token}` } })).status).toBe(200);
    expect((await fetch(url("/status"), { headers: { authorization: `Bearer ${token}`, origin: "http://evil.example" } })).status).toBe(403);
    expect((await fetch(url("/status"), { headers: { authorization: `Bearer ${token}`, host: `evil.example:${controlPort}` } })).status).toBe(403);
    // The token is never logged.
    expect(d.stderr()).not.toContain(token);
  });

  test("a payload withheld by privacy.withhold_payloads: not on control.port, not on the socket; the operator's dsm proof has it", async () => {
    const auth = { authorization: `Bearer ${token}` };
    const overTcp = (await (await fetch(url(`/proof?id=${id}`), { headers: auth })).json()) as { microblock: { id: string; payload_hash: string }; payload: unknown };
    expect(overTcp.microblock.id).toBe(id);
    expect(overTcp.payload).toBeNull();
    const overSocket = (await (await fetch(`http://dsm/proof?id=${id}`, { unix: path.join(dir, "control.sock") } as RequestInit)).json()) as { payload: unknown };
    expect(overSocket.payload).toBeNull();
    // The bundle still proves the event by its hash: verify-proof accepts it.
    const bundle = path.join(root, "withheld.json");
    fs.writeFileSync(bundle, JSON.stringify(overTcp));
    const verified = await runDsm(["verify-proof", bundle, "--genesis", cpEnv.DSM_MESH_GENESIS!], env);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain("payload withheld");
    // No other route carries it either.
    for (const p of ["/status", "/peers", "/microblocks", "/checkpoint", "/certificates"]) {
      const text = await (await fetch(url(p), { headers: auth })).text();
      expect({ p, leaked: text.includes("s3cr3t") }).toEqual({ p, leaked: false });
    }
    // The data dir's owner reads the ledger itself.
    expect(JSON.parse(await ok(["proof", "inclusion", id, "--data-dir", dir, "--json"], cpEnv)).payload).toEqual({ secret: "s3cr3t" });
  });

  test("metrics: a foreign Host or an Origin is refused (403); 127.0.0.1 and localhost get the counters", async () => {
    const m = (headers: Record<string, string> = {}) => fetch(`http://127.0.0.1:${metricsPort}/metrics`, { headers });
    expect((await m({ host: `evil.example:${metricsPort}` })).status).toBe(403);
    expect((await m({ host: `127.0.0.1:${metricsPort + 1}` })).status).toBe(403);
    expect((await m({ origin: "http://evil.example" })).status).toBe(403);
    const good = await m();
    expect(good.status).toBe(200);
    expect(await good.text()).toMatch(/^dsm_build_info\{/m);
    expect((await m({ host: `localhost:${metricsPort}` })).status).toBe(200);
  });
});

describe("the token file", () => {
  test("dsm run makes a missing one (0600) and says where, never what; one others can read is refused", async () => {
    const dir = path.join(root, "again");
    await ok(["init", "--data-dir", dir]);
    const file = path.join(dir, "control.token");
    fs.rmSync(file);
    const port = await freePort();
    const d = await start(dir, { DSM_CONTROL_PORT: String(port) });
    let token: string;
    try {
      expect(mode(file)).toBe(0o600);
      token = fs.readFileSync(file, "utf8").trim();
      expect(token).toMatch(/^[0-9a-f]{64}$/);
      expect(d.stderr()).toContain(`made a new bearer token in ${file}`);
      expect(d.stderr()).not.toContain(token);
      expect((await fetch(`http://127.0.0.1:${port}/status`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    } finally {
      expect(await stop(d)).toBe(0);
    }
    // Without control.port nothing reads or makes it; with it, a readable token stops the start.
    fs.chmodSync(file, 0o644);
    const r = await runDsm(["run", "--data-dir", dir], env, { env: { DSM_CONTROL_PORT: String(port) }, timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.errLines).toEqual([`dsm run: control.token_file: ${file} is readable by other users (mode 644); run: chmod 600 ${file}`]);
    expect(r.stderr).not.toContain(token);
  }, 40_000);

  test("control.token_file names another file; dsm init keeps one already there", async () => {
    const dir = path.join(root, "elsewhere");
    const file = path.join(root, "secrets", "dsm.token");
    fs.mkdirSync(path.dirname(file), { mode: 0o700 });
    fs.writeFileSync(file, "x".repeat(40) + "\n", { mode: 0o600 });
    await ok(["init", "--data-dir", dir], { DSM_CONTROL_TOKEN_FILE: file });
    expect(fs.readFileSync(file, "utf8")).toBe("x".repeat(40) + "\n");
    expect(fs.existsSync(path.join(dir, "control.token"))).toBe(false);
  });
});

describe("metrics.listen: the Host names each address accepts", () => {
  test("loopback: the address and localhost names; another address: it and this host's name; all addresses: this host's", () => {
    expect(metricsHostAllowed("127.0.0.1:9100", "127.0.0.1", 9100)).toBe(true);
    expect(metricsHostAllowed("localhost:9100", "127.0.0.1", 9100)).toBe(true);
    expect(metricsHostAllowed("LOCALHOST:9100", "127.0.0.1", 9100)).toBe(true);
    expect(metricsHostAllowed("[::1]:9100", "::1", 9100)).toBe(true);
    expect(metricsHostAllowed("evil.example:9100", "127.0.0.1", 9100)).toBe(false);
    expect(metricsHostAllowed("127.0.0.1:9101", "127.0.0.1", 9100)).toBe(false);
    expect(metricsHostAllowed("127.0.0.1", "127.0.0.1", 9100)).toBe(false);
    expect(metricsHostAllowed(null, "127.0.0.1", 9100)).toBe(false);
    // Bound to 10.0.0.5 for a central Prometheus: scraped by that address (or this host's name).
    expect(metricsHostAllowed("10.0.0.5:9100", "10.0.0.5", 9100)).toBe(true);
    expect(metricsHostAllowed(`${os.hostname()}:9100`, "10.0.0.5", 9100)).toBe(true);
    expect(metricsHostAllowed("localhost:9100", "10.0.0.5", 9100)).toBe(false);
    expect(metricsHostAllowed("10.0.0.6:9100", "10.0.0.5", 9100)).toBe(false);
    expect(metricsHostAllowed("evil.example:9100", "10.0.0.5", 9100)).toBe(false);
    // On every address: this host's own addresses and names, still no other name.
    expect(metricsHostAllowed("127.0.0.1:9100", "0.0.0.0", 9100)).toBe(true);
    expect(metricsHostAllowed("evil.example:9100", "0.0.0.0", 9100)).toBe(false);
    expect(metricsHostAllowed("evil.example:9100", "::", 9100)).toBe(false);
  });

  test("dsm run with metrics.listen 0.0.0.0 still refuses a foreign Host; a name that is no address is refused at start", async () => {
    const dir = path.join(root, "metrics");
    await ok(["init", "--data-dir", dir]);
    const port = await freePort();
    const d = await start(dir, { DSM_METRICS_PORT: String(port), DSM_METRICS_LISTEN: "0.0.0.0" });
    try {
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { host: `evil.example:${port}` } })).status).toBe(403);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    } finally {
      expect(await stop(d)).toBe(0);
    }
    const r = await runDsm(["run", "--data-dir", dir], env, { env: { DSM_METRICS_PORT: String(port), DSM_METRICS_LISTEN: "metrics.example" }, timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.errLines).toEqual([`dsm run: cannot listen on metrics.example:${port} (metrics.listen, metrics.port): metrics.listen must be an IP address (127.0.0.1, an address of this host, 0.0.0.0 or ::), got "metrics.example"`]);
  }, 40_000);
});
