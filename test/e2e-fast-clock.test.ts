// An edge whose clock ran fast (issue 14): a validator allowing MAX_SKEW_S of skew and an
// edge, each `dist/dsm run` in its own process on 127.0.0.1. The edge's daemon and its
// `dsm ingest` run under libfaketime (Debian `faketime`) with the clock read from a file, so
// the clock is stepped back while the daemon keeps running, as NTP steps a host's clock:
// 100 events are signed FAST_S seconds ahead, the clock steps back to real time, 60 more are
// clamped to the head's timestamp (still ahead). The validator refuses them all as
// future_timestamp; without a restart, every acknowledged event must be finalized within 3
// epochs of its timestamp becoming valid (timestamp - MAX_SKEW_S on the validator's clock).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { MeshClient } from "../src/mesh/client.ts";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { killDaemons, startDaemon } from "./helpers/daemons.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

const EPOCH_S = 2;
const MAX_SKEW_S = 2;
const FAST_S = 12;
const LIBFAKETIME = ["x86_64-linux-gnu", "aarch64-linux-gnu"].map((a) => `/usr/lib/${a}/faketime/libfaketime.so.1`).find((f) => fs.existsSync(f));

let root: string;
let env: Record<string, string>;
let clockFile: string;
let fakeEnv: Record<string, string>;
let V: string;
let E: string;
const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();

async function ok(args: string[], extra: Record<string, string | undefined> = {}, stdin?: string): Promise<string> {
  const r = await runDsm(args, env, { env: extra, stdin });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function start(dir: string, bootstrap: string[], extra: Record<string, string> = {}): Promise<string> {
  return startDaemon(dir, { ...env, ...extra }, bootstrap, procs, logs);
}

function events(n: number, tag: string): string {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ event_type: "alert", src_ip: "10.1.2.3", alert: { signature: `${tag} ${i}` } })).join("\n") + "\n";
}

/** Polls until `cond` holds, every `everyMs`, or throws after `ms` with `what()`. */
async function until<T>(ms: number, everyMs: number, probe: () => Promise<T>, cond: (v: T) => boolean, what: (v: T | undefined) => string): Promise<T> {
  const end = Date.now() + ms;
  let v: T | undefined;
  while (Date.now() < end) {
    v = await probe();
    if (cond(v)) return v;
    await Bun.sleep(everyMs);
  }
  throw new Error(`${what(v)}\n${[...logs].map(([d, l]) => `--- ${path.basename(d)}\n${l}`).join("\n")}`);
}

async function treeSize(dir: string): Promise<number> {
  const r = await runDsm(["checkpoint", "show", "--data-dir", dir, "--json"], env);
  return r.code === 0 ? (JSON.parse(r.stdout) as { checkpoint: { tree_size: number } }).checkpoint.tree_size : 0;
}

beforeAll(async () => {
  if (!LIBFAKETIME) return;
  requireBinary();
  root = tempDir();
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0" });
  clockFile = path.join(root, "faketime");
  fs.writeFileSync(clockFile, "+0s\n");
  // The clock is read from the file on every call (no cache); the monotonic clock is left
  // alone, as a host's clock step leaves it.
  fakeEnv = { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: clockFile, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" };
  V = path.join(root, "v0");
  await ok(["init", "--data-dir", V, "--role", "validator"]);
  const card = path.join(root, "v0.card");
  fs.writeFileSync(card, await ok(["card", "--data-dir", V, "--json"]));
  const genesis = path.join(root, "genesis.json");
  const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 2000).toISOString();
  await ok(["genesis", "--name", "fast-clock", "--validator", card, "--admission", "open", "--epoch-duration", String(EPOCH_S), "--genesis-time", t0, "-o", genesis]);
  env.DSM_MESH_GENESIS = genesis;
  E = path.join(root, "edge");
  await ok(["init", "--data-dir", E, "--genesis", genesis, "--role", "edge"]);
  const boot = await start(V, [], { DSM_MESH_MAX_CLOCK_SKEW_S: String(MAX_SKEW_S) });
  await start(E, [boot], fakeEnv);
  // The edge is connected before anything is ingested.
  await until(20_000, 200, async () => (await MeshClient.forDataDir(V)!.status()).peers, (n) => n >= 1, () => "the edge never connected");
}, 60_000);

afterAll(async () => {
  await killDaemons(procs);
  cleanupTempDirs();
});

describe("an edge whose clock ran fast", () => {
  test.skipIf(!LIBFAKETIME)("gets every acknowledged event finalized within 3 epochs of its timestamps becoming valid, without a restart", async () => {
    const validator = MeshClient.forDataDir(V)!;
    const refused = async () => (await validator.status()).rejected.future_timestamp ?? 0;
    // Fast: the daemon and the ingest both read a clock FAST_S ahead.
    fs.writeFileSync(clockFile, `+${FAST_S}s\n`);
    const fastFrom = Date.now();
    await ok(["ingest", "--data-dir", E, "--format", "json"], fakeEnv, events(100, "fast"));
    await until(10_000, 100, refused, (n) => n >= 1, () => "the validator never refused a batch as future_timestamp");
    // Stepped back to real time: the daemon runs on; new events are clamped to the head's time.
    fs.writeFileSync(clockFile, "+0s\n");
    const before = await refused();
    await ok(["ingest", "--data-dir", E, "--format", "json"], fakeEnv, events(60, "after"));
    await until(10_000, 100, refused, (n) => n > before, () => "the validator never refused the batch after the step");

    const exported = (await ok(["export", "--data-dir", E]))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { kind: string; microblock?: { seq: number; timestamp: string } })
      .filter((r) => r.kind === "microblock")
      .map((r) => r.microblock!);
    expect(exported.length).toBe(160);
    const ts = exported.sort((a, b) => a.seq - b.seq).map((m) => Date.parse(m.timestamp));
    // Every one was dated FAST_S ahead (the last 60 clamped to the head's time).
    expect(ts[0]!).toBeGreaterThanOrEqual(fastFrom + (FAST_S - 1) * 1000);
    expect((await validator.status()).received).toBe(0);

    // When the validator's tree first covered each size (one chain: leaf i is seq i).
    const firstAt: number[] = [];
    const validFrom = (i: number) => ts[i]! - MAX_SKEW_S * 1000;
    const deadline = (i: number) => validFrom(i) + 3 * EPOCH_S * 1000;
    await until(
      deadline(159) - Date.now() + 5_000,
      200,
      async () => {
        const size = await treeSize(V);
        const at = Date.now();
        for (let i = firstAt.length; i < size; i++) firstAt.push(at);
        return size;
      },
      (size) => size >= 160,
      (size) => `${size ?? 0} of 160 events finalized ${Math.round((Date.now() - validFrom(159)) / 1000)} s after the newest timestamp became valid`,
    );
    const late = firstAt.map((at, i) => ({ seq: i + 1, over_ms: at - deadline(i) })).filter((x) => x.over_ms > 0);
    const worst = Math.max(...firstAt.map((at, i) => at - validFrom(i)));
    console.log(`fast-clock: all 160 finalized; the slowest ${worst} ms after its timestamp became valid (limit ${3 * EPOCH_S * 1000} ms)`);
    expect(late).toEqual([]);
    // Without a restart: the edge's daemon is the one started before the clock ran fast.
    expect(procs.get(E)!.exitCode).toBeNull();
    // The edge keeps the certificate too (catch-up), and the validator holds every event.
    await until(15_000, 300, () => treeSize(E), (n) => n >= 160, (n) => `the edge's certificates cover ${n ?? 0} of 160`);
    expect((await validator.status()).received).toBe(160);
  }, 90_000);
});
