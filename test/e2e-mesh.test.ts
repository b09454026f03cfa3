// The mesh across processes: four validators and an edge, each `dist/dsm run` in its own
// process on 127.0.0.1 with ephemeral ports. Events piped into the edge's `dsm ingest`
// reach every validator by gossip; an epoch finalizes with one identical certificate
// everywhere; an inclusion proof verifies offline. Then one validator is killed and
// finality goes on with three of four.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { generateKeyPair, privateKeyToProtobuf } from "@libp2p/crypto/keys";
import { MeshClient } from "../src/mesh/client.ts";
import { MeshNet } from "../src/mesh/p2p.ts";
import { parseGenesis } from "../src/protocol/genesis.ts";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { freePort } from "./helpers/net.ts";
import { startDaemon } from "./helpers/daemons.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

const N = 4;
let root: string;
let env: Record<string, string>;
let genesisFile: string;
const V: string[] = [];
let E: string;
let metricsPort = 0;
let controlPort = 0;
const boot: string[] = [];
const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();

async function ok(args: string[], extra: Record<string, string | undefined> = {}): Promise<string> {
  const r = await runDsm(args, env, { env: extra });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Starts `dsm run` for a data dir, bootstrapped to the given peers; resolves once it listens. */
function start(dir: string, bootstrap: string[], extra: Record<string, string> = {}): Promise<string> {
  return startDaemon(dir, { ...env, ...extra }, bootstrap, procs, logs);
}

async function stop(dir: string, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<number | null> {
  const p = procs.get(dir);
  if (!p) return null;
  p.kill(signal);
  await p.exited;
  procs.delete(dir);
  return p.exitCode;
}

async function ingest(n: number, tag: string): Promise<void> {
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ event_type: "alert", src_ip: "10.1.2.3", alert: { signature: `${tag} ${i}` } })).join("\n") + "\n";
  const r = await runDsm(["ingest", "--data-dir", E, "--format", "json"], env, { stdin: lines });
  if (r.code !== 0) throw new Error(`ingest: ${r.stderr}`);
}

interface Cert {
  checkpoint: { epoch: number; tree_size: number };
  signers: string;
}

/** Polls until every listed validator's latest certificate covers `size` leaves. */
async function finalizedEverywhere(dirs: string[], size: number, timeoutMs: number): Promise<Cert[]> {
  const until = Date.now() + timeoutMs;
  let last: (Cert | null)[] = [];
  while (Date.now() < until) {
    last = await Promise.all(
      dirs.map(async (d) => {
        const r = await runDsm(["checkpoint", "show", "--data-dir", d, "--json"], env);
        return r.code === 0 ? (JSON.parse(r.stdout) as Cert) : null;
      }),
    );
    if (last.every((c) => c !== null && c.checkpoint.tree_size >= size)) return last as Cert[];
    await Bun.sleep(300);
  }
  throw new Error(`no finality over ${size} leaves in ${timeoutMs} ms: ${JSON.stringify(last.map((c) => c?.checkpoint))}\n${[...logs].map(([d, l]) => `--- ${path.basename(d)}\n${l}`).join("\n")}`);
}

beforeAll(async () => {
  requireBinary();
  root = tempDir();
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "2" });
  const cards: string[] = [];
  for (let i = 0; i < N; i++) {
    const d = path.join(root, `v${i}`);
    V.push(d);
    await ok(["init", "--data-dir", d, "--role", "validator"]);
    const card = path.join(root, `v${i}.card`);
    fs.writeFileSync(card, await ok(["card", "--data-dir", d, "--json"]));
    cards.push(card);
  }
  genesisFile = path.join(root, "genesis.json");
  const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 2000).toISOString();
  await ok(["genesis", "--name", "four", ...cards.flatMap((c) => ["--validator", c]), "--admission", "open", "--epoch-duration", "2", "--genesis-time", t0, "-o", genesisFile]);
  env.DSM_MESH_GENESIS = genesisFile;
  E = path.join(root, "edge");
  await ok(["init", "--data-dir", E, "--genesis", genesisFile, "--role", "edge"]);
  metricsPort = await freePort();
  controlPort = await freePort();
  for (const d of [...V, E]) boot.push(await start(d, [...boot], d === V[0] ? { DSM_METRICS_PORT: String(metricsPort), DSM_CONTROL_PORT: String(controlPort) } : {}));
}, 60_000);

afterAll(async () => {
  for (const d of [...procs.keys()]) await stop(d, "SIGKILL");
  cleanupTempDirs();
});

describe("four validators and an edge, each its own dsm run process", () => {
  test("the edge's events reach every validator and finalize with one identical certificate", async () => {
    await ingest(40, "first");
    const certs = await finalizedEverywhere(V, 40, 30_000);
    // One certificate everywhere, byte for byte: the quorums two validators aggregated may
    // differ when both finalize at once, and every node then keeps the better certificate
    // (most signers, then bytes) as it travels.
    const epoch = String(certs[0]!.checkpoint.epoch);
    let shown: string[] = [];
    for (let i = 0; i < 40; i++) {
      shown = await Promise.all([...V, E].map((d) => ok(["checkpoint", "show", epoch, "--data-dir", d, "--json"])));
      if (shown.every((s) => s === shown[0])) break;
      await Bun.sleep(250);
    }
    for (const s of shown) expect(JSON.parse(s)).toEqual(JSON.parse(shown[0]!));
    // Every validator stored all forty microblocks, each verified.
    for (const d of V) {
      const status = JSON.parse(await ok(["status", "--data-dir", d, "--json"]));
      expect(status.ledger.microblocks).toBe(40);
    }
  }, 60_000);

  test("the daemon answers: dsm peers, dsm status, dsm checkpoint --wait, the client class, /metrics, control.port", async () => {
    const peers = JSON.parse(await ok(["peers", "--data-dir", V[0]!, "--json"]));
    expect(peers.validators.map((v: { connected: boolean }) => v.connected)).toEqual([true, true, true, true]);
    expect(peers.peers.length).toBeGreaterThanOrEqual(3);
    const status = JSON.parse(await ok(["status", "--data-dir", V[2]!, "--json"]));
    expect(status.daemon).toMatchObject({ role: "validator", last_finalized_epoch: expect.any(Number) });
    expect(status.daemon.received).toBe(40);
    const cert = JSON.parse(await ok(["checkpoint", "--wait", "20", "--data-dir", V[1]!, "--json"]));
    expect(cert.checkpoint.tree_size).toBeGreaterThanOrEqual(40);
    // The seed's query interface, over the control socket.
    const client = MeshClient.forDataDir(V[1]!)!;
    const edgeId = (JSON.parse(await ok(["card", "--data-dir", E, "--json"])) as { node_id: string }).node_id;
    const mbs = await client.getMicroblocks(edgeId, 3, 7);
    expect(mbs.map((m) => m.seq)).toEqual([3, 4, 5, 6, 7]);
    expect((await client.getCheckpoint()).checkpoint.tree_size).toBeGreaterThanOrEqual(40);
    const summary = await client.verifyBlockInCheckpoint(mbs[0]!.id, parseGenesis(JSON.parse(fs.readFileSync(genesisFile, "utf8"))));
    expect(summary.type).toBe("inclusion");
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^dsm_microblocks_received_total 40$/m);
    expect(metrics).toMatch(/^dsm_peers [1-9]/m);
    expect(metrics).toMatch(/^dsm_last_finalized_epoch \d+$/m);
    expect(metrics).toMatch(/^dsm_build_info\{version="[^"]+",role="validator"\} 1$/m);
    // control.port: the same API on 127.0.0.1 behind the bearer token of control.token_file,
    // errors as JSON with a 4xx status.
    const auth = { authorization: `Bearer ${fs.readFileSync(path.join(V[0]!, "control.token"), "utf8").trim()}` };
    expect((await fetch(`http://127.0.0.1:${controlPort}/status`)).status).toBe(401);
    const overTcp = (await (await fetch(`http://127.0.0.1:${controlPort}/status`, { headers: auth })).json()) as { node_id: string; role: string };
    expect(overTcp).toMatchObject({ node_id: JSON.parse(await ok(["card", "--data-dir", V[0]!, "--json"])).node_id, role: "validator" });
    const bad = await fetch(`http://127.0.0.1:${controlPort}/microblocks?node=zz`, { headers: auth });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: "node must be a 64-hex node id" });
    // What a web page could make a browser send: another Host name (DNS rebinding), an Origin.
    expect((await fetch(`http://127.0.0.1:${controlPort}/status`, { headers: { ...auth, host: `evil.example:${controlPort}` } })).status).toBe(403);
    expect((await fetch(`http://127.0.0.1:${controlPort}/status`, { headers: { ...auth, origin: "http://evil.example" } })).status).toBe(403);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { headers: { host: `evil.example:${metricsPort}` } })).status).toBe(403);
  }, 40_000);

  test("forged gossip is rejected while honest traffic goes on", async () => {
    // A rogue node, admitted (open admission, a valid card), publishes an edge's microblock
    // with a changed seq: its id no longer recomputes.
    const R = path.join(root, "rogue");
    await ok(["init", "--data-dir", R, "--genesis", genesisFile, "--role", "edge"]);
    const rogue = await MeshNet.start({
      privateKey: new Uint8Array(fs.readFileSync(path.join(R, "libp2p.key"))),
      listen: ["/ip4/127.0.0.1/tcp/0"],
      bootstrap: [boot[0]!],
      maxMessageBytes: 1 << 20,
      cards: { own: JSON.parse(fs.readFileSync(path.join(R, "card.json"), "utf8")), admit: () => null, timeoutMs: 5000 },
    });
    try {
      const mesh = (JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])) as { mesh: string }).mesh;
      const topic = `dsm/${mesh.slice(0, 16)}/mb/1`;
      rogue.subscribe(topic, () => "accept", () => {});
      const exported = path.join(root, "edge-export.ndjson");
      fs.rmSync(exported, { force: true });
      await ok(["export", "--data-dir", E, "-o", exported]);
      const [cert, first] = fs.readFileSync(exported, "utf8").split("\n");
      const forged = JSON.parse(first!);
      forged.microblock.seq = 999;
      const before = JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])).daemon;
      const rejectedTotal = (d: { rejected: Record<string, number> }) => Object.values(d.rejected).reduce((a, b) => a + b, 0);
      for (let i = 0; i < 20 && rejectedTotal(JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])).daemon) === rejectedTotal(before); i++) {
        await rogue.publish(topic, new TextEncoder().encode(`${cert}\n${JSON.stringify(forged)}\n`));
        await Bun.sleep(250);
      }
      // And microblocks of another mesh (a node's own local mesh): refused as such.
      const X = path.join(root, "elsewhere");
      await ok(["init", "--data-dir", X, "--role", "edge"], { DSM_MESH_GENESIS: "" });
      await ok(["emit", "--data-dir", X, "--event-type", "alert", "--payload", "{}"], { DSM_MESH_GENESIS: "" });
      const foreign = path.join(root, "foreign.ndjson");
      await ok(["export", "--data-dir", X, "-o", foreign], { DSM_MESH_GENESIS: "" });
      for (let i = 0; i < 20 && JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])).daemon.rejected.mesh === undefined; i++) {
        await rogue.publish(topic, fs.readFileSync(foreign));
        await Bun.sleep(250);
      }
      const after = JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])).daemon;
      expect(after.rejected.mesh).toBeGreaterThanOrEqual(1);
      expect(Object.values(after.rejected as Record<string, number>).reduce((a, b) => a + b, 0)).toBeGreaterThan(Object.values(before.rejected as Record<string, number>).reduce((a, b) => a + b, 0));
      expect(after.received).toBe(before.received);
    } finally {
      await rogue.stop();
    }
  }, 30_000);

  test("a peer with no node card is disconnected and refused", async () => {
    const stranger = await MeshNet.start({ privateKey: privateKeyToProtobuf(await generateKeyPair("Ed25519")), listen: ["/ip4/127.0.0.1/tcp/0"], bootstrap: [boot[0]!], maxMessageBytes: 1 << 20 });
    try {
      let daemon = JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])).daemon;
      for (let i = 0; i < 40 && (daemon.rejected.peer ?? 0) === 0; i++) {
        await Bun.sleep(250);
        daemon = JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])).daemon;
      }
      expect(daemon.rejected.peer).toBeGreaterThanOrEqual(1);
      const peers = JSON.parse(await ok(["peers", "--data-dir", V[0]!, "--json"])).peers as string[];
      expect(peers).not.toContain(stranger.peerId);
      expect(logs.get(V[0]!)).toContain(`peer ${stranger.peerId} refused: no node card`);
    } finally {
      await stranger.stop();
    }
  }, 30_000);

  test("an inclusion proof from a validator verifies offline against the genesis", async () => {
    const last = JSON.parse((await ok(["log", "--data-dir", E, "--json", "--limit", "0"])).trim().split("\n").at(-1)!) as { id: string };
    const bundle = path.join(root, "proof.json");
    await ok(["proof", "inclusion", last.id, "--data-dir", V[1]!, "-o", bundle]);
    const r = await runDsm(["verify-proof", bundle, "--genesis", genesisFile], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^OK: /);
    // The edge keeps the certificates too, so it proves its own event without a validator.
    await finalizedEverywhere([E], 40, 20_000);
    const own = path.join(root, "proof-from-edge.json");
    await ok(["proof", "inclusion", last.id, "--data-dir", E, "-o", own]);
    const r2 = await runDsm(["verify-proof", own, "--genesis", genesisFile], env);
    expect(r2.code).toBe(0);
  }, 30_000);

  test("a validator is killed: the other three go on finalizing", async () => {
    expect(await stop(V[3]!, "SIGKILL")).not.toBe(0);
    await ingest(10, "second");
    const certs = await finalizedEverywhere(V.slice(0, 3), 50, 40_000);
    expect(new Set(certs.map((c) => c.signers)).size).toBe(1);
    expect(certs[0]!.signers).toBe("e0"); // validators 0, 1 and 2
  }, 60_000);

  test("the killed validator restarts and catches up from the mesh alone", async () => {
    await start(V[3]!, boot.slice(0, 3));
    const certs = await finalizedEverywhere([V[3]!], 50, 40_000);
    const shown = await ok(["checkpoint", "show", String(certs[0]!.checkpoint.epoch), "--data-dir", V[0]!, "--json"]);
    expect(JSON.parse(shown).checkpoint).toEqual(certs[0]!.checkpoint);
  }, 60_000);

  test("an edge offline for two epochs comes back, and what it stored meanwhile is finalized", async () => {
    expect(await stop(E)).toBe(0);
    await ingest(5, "offline");
    await Bun.sleep(4200); // two 2 s epochs go by without the edge's daemon
    boot[4] = await start(E, boot.slice(0, 4));
    await finalizedEverywhere(V, 55, 40_000);
  }, 60_000);

  test("an edge with privacy.withhold_payloads: validators check and finalize its microblocks without ever getting the payloads", async () => {
    expect(await stop(E)).toBe(0);
    boot[4] = await start(E, boot.slice(0, 4), { DSM_PRIVACY_WITHHOLD_PAYLOADS: "true" });
    await ingest(3, "private");
    await finalizedEverywhere(V, 58, 40_000);
    const edgeId = (JSON.parse(await ok(["card", "--data-dir", E, "--json"])) as { node_id: string }).node_id;
    const head = (JSON.parse(await ok(["status", "--data-dir", E, "--json"])) as { head: { seq: number } }).head.seq;
    const shown = async (seq: number) => JSON.parse(await ok(["show", `${edgeId}:${seq}`, "--data-dir", V[1]!, "--json"])) as { microblock: { seq: number }; payload: unknown };
    for (const seq of [head - 2, head - 1, head]) {
      const s = await shown(seq);
      expect(s.microblock.seq).toBe(seq);
      expect(s.payload).toBeNull();
    }
    // Sent before the setting: its payload came along. And the edge still holds its own.
    expect((await shown(head - 3)).payload).not.toBeNull();
    expect((JSON.parse(await ok(["show", `${edgeId}:${head}`, "--data-dir", E, "--json"])) as { payload: unknown }).payload).not.toBeNull();
  }, 60_000);

  test("SIGTERM stops a daemon gracefully: exit 0, run.json removed", async () => {
    expect(await stop(E)).toBe(0);
    expect(fs.existsSync(path.join(E, "run.json"))).toBe(false);
  }, 20_000);
});

describe("a validator whose disk fills up", () => {
  // Its data dir on a real 3 MiB tmpfs (mounting needs root, as CI and this workplace run;
  // elsewhere the test says why it cannot run). One validator, one edge, their own mesh.
  let mnt = "";
  let mounted = false;
  let VF = "";
  let EF = "";
  let meshEnv: Record<string, string> = {};

  beforeAll(async () => {
    mnt = path.join(root, "full");
    fs.mkdirSync(mnt, { recursive: true });
    const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", mnt], { stderr: "pipe" });
    mounted = r.exitCode === 0;
    if (!mounted) console.warn(`full-disk mesh test needs root to mount a tmpfs: ${r.stderr.toString().trim()}`);
  });

  afterAll(async () => {
    for (const d of [VF, EF]) if (d) await stop(d, "SIGKILL");
    if (mounted) Bun.spawnSync(["umount", "-l", mnt]);
  });

  test("it keeps running, blames no peer, keeps nothing half-stored, and its ledger still verifies", async () => {
    expect(mounted).toBe(true);
    VF = path.join(mnt, "v");
    EF = path.join(root, "edge-full");
    await ok(["init", "--data-dir", VF, "--role", "validator"], { DSM_MESH_GENESIS: "" });
    const card = path.join(root, "vf.card");
    fs.writeFileSync(card, await ok(["card", "--data-dir", VF, "--json"], { DSM_MESH_GENESIS: "" }));
    const genesis = path.join(root, "genesis-full.json");
    await ok(["genesis", "--name", "full", "--validator", card, "--admission", "open", "--epoch-duration", "2", "-o", genesis]);
    meshEnv = { DSM_MESH_GENESIS: genesis };
    await ok(["init", "--data-dir", EF, "--genesis", genesis, "--role", "edge"], meshEnv);
    const vAddr = await start(VF, [], meshEnv);
    await start(EF, [vAddr], meshEnv);
    // About 2 KB per event: 3000 of them cannot fit in 3 MiB.
    const pad = "x".repeat(1500);
    const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ event_type: "alert", src_ip: "10.9.8.7", alert: { signature: `fill ${i} ${pad}` } })).join("\n") + "\n";
    const r = await runDsm(["ingest", "--data-dir", EF, "--format", "json"], env, { stdin: lines, env: meshEnv });
    expect(r.code).toBe(0);
    let daemon: { rejected: Record<string, number>; received: number } | null = null;
    for (let i = 0; i < 120 && !(daemon && (daemon.rejected.storage ?? 0) > 0); i++) {
      await Bun.sleep(250);
      daemon = JSON.parse(await ok(["status", "--data-dir", VF, "--json"], meshEnv)).daemon;
    }
    expect(daemon!.rejected.storage).toBeGreaterThanOrEqual(1);
    expect(daemon!.received).toBeGreaterThan(0);
    // Only storage counts: nothing the edge sent was judged invalid.
    expect(Object.keys(daemon!.rejected).filter((k) => k !== "storage")).toEqual([]);
    expect(logs.get(VF)).toContain("could not store a gossip batch, nothing of it kept");
    // Still up and answering a while later; the edge still connected to it.
    await Bun.sleep(2500);
    expect(JSON.parse(await ok(["status", "--data-dir", VF, "--json"], meshEnv)).daemon).not.toBeNull();
    const vPeer = vAddr.split("/p2p/")[1]!;
    expect(JSON.parse(await ok(["peers", "--data-dir", EF, "--json"], meshEnv)).peers).toContain(vPeer);
    // Nothing thrown out of a handler or a timer (a checkpoint it could not store included).
    expect(logs.get(VF)).not.toContain("SQLiteError");
    expect(await stop(VF)).toBe(0);
    const verify = await runDsm(["verify", "--data-dir", VF], env, { env: meshEnv });
    expect(verify.code).toBe(0);
  }, 90_000);
});

