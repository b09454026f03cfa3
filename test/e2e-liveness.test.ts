// Liveness across processes (issue 14): fresh meshes of four validators and an edge, each
// node `dist/dsm run` in its own process on 127.0.0.1. In each mesh the edge ingests a first
// wave, one validator is killed (SIGKILL; which one, and when relative to the close of the
// first wave's epoch, varies from mesh to mesh: before its consensus, during it, after it),
// the edge ingests the last wave, and from then on nothing is sent to any node: every event
// of the edge must be in a certificate stored on the edge and on each of the three running
// validators within 3 epochs after the epoch of the last event closes, and the running
// validators must hold byte-identical certificates for every epoch. The bug this guards
// against (validators holding a quorum of S signatures that did not become a certificate
// until new input arrived) showed in about 1 mesh in 4.
//
// While waiting, the test only reads what the nodes store (the control socket's /checkpoint,
// /certificates and /status): nothing it does wakes a daemon's consensus, as
// /checkpoint/wait or `dsm checkpoint` would.
//
// Each mesh is fresh: a new genesis (another mesh id and genesis time), new data dirs and
// ledgers, new processes and ports. Only key material is reused: each of PARALLEL key sets
// (four validators and an edge, made once by dsm init) is copied without its ledger into
// the data dirs of one mesh at a time, so two meshes that run at once never share a peer id.
// The consensus under test does not depend on which keys sign; key generation was most of a
// mesh's setup time. Two meshes run at once, but a mesh's boot (five dsm run starting, about
// a second of CPU each) and its timed part never overlap another's timed part.
//
// Knobs: DSM_LIVENESS_MESHES (default 20), DSM_LIVENESS_PARALLEL (meshes at once, default
// 2), DSM_LIVENESS_EPOCH_S (default 2), DSM_LIVENESS_SEED (other victims and kill times;
// default 0), DSM_LIVENESS_KEEP=1 keeps a failed mesh's data dirs (=all: every mesh's; the
// path is printed) for `dsm log`, `dsm status` and sqlite3 (consensus_signed.signed_at,
// checkpoints.created_at), DSM_LIVENESS_VERBOSE=1 prints every daemon's log and CPU time.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { MeshClient, MeshClientError } from "../src/mesh/client.ts";
import { CONTROL_SOCKET } from "../src/mesh/control.ts";
import { fromHex, toHex } from "../src/encoding/hex.ts";
import { leafHash, rootOf } from "../src/log/merkle.ts";
import type { FinalityCertificate } from "../src/protocol/certificate.ts";
import { checkpointDigest, epochAt, epochBounds } from "../src/protocol/checkpoint.ts";
import { type Genesis, parseGenesis } from "../src/protocol/genesis.ts";
import type { Microblock } from "../src/protocol/microblock.ts";
import { signerIndices, validatorSetOf } from "../src/protocol/validator-set.ts";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { startDaemon } from "./helpers/daemons.ts";
import { freePort } from "./helpers/net.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { prng } from "./helpers/prng.ts";

const MESHES = Number(process.env.DSM_LIVENESS_MESHES ?? 20);
const PARALLEL = Math.max(1, Number(process.env.DSM_LIVENESS_PARALLEL ?? 2));
const EPOCH_S = Number(process.env.DSM_LIVENESS_EPOCH_S ?? 2);
const SEED = Number(process.env.DSM_LIVENESS_SEED ?? 0);
/** "1": keep a failed mesh's data dirs; "all": every mesh's. */
const KEEP = process.env.DSM_LIVENESS_KEEP ?? "";
const VERBOSE = process.env.DSM_LIVENESS_VERBOSE === "1";
const N = 4;
const EPOCH_MS = EPOCH_S * 1000;
const LIMIT_MS = 3 * EPOCH_MS;
/** consensus.signature_timeout_s, the shortest: round 0 lasts a third of it, the heartbeat all of it. */
const SIGNATURE_TIMEOUT_S = 1;
const WAVE = 20;
/** The victim is killed from KILL_FROM_MS to KILL_TO_MS after the first wave's epoch closes (as soon as it is ingested, if later). */
const KILL_FROM_MS = -500;
const KILL_TO_MS = 2000;
/**
 * The last wave is ingested this long before an epoch ends (the first end at least
 * LEAD_FROM_MS after the kill); an ingest takes a few hundred ms. Waiting for that outside
 * the timed part, not inside it, keeps the timed part short.
 */
const LEAD_FROM_MS = 500;
const LEAD_TO_MS = 1200;
/** How long past the deadline a mesh is watched, to say how late a node finalized, or that it never did. */
const OVERTIME_MS = 10_000;

let root: string;
let env: Record<string, string>;
interface KeySet {
  validators: string[];
  edge: string;
  cards: string[];
}
const running = new Set<Mesh>();
/** Set by afterAll: no mesh starts any more. */
let closing = false;
/** One summary line per mesh that passed, printed at the end. */
const summary: string[] = [];
let quiet: Promise<void> = Promise.resolve();

/**
 * Runs fn while no other mesh is booting or being timed. A dsm run takes about a second of
 * CPU to start: five of them starting would take both cores from the other mesh's consensus
 * while its 3 epochs are being measured. What is left to run side by side (the first wave,
 * the wait for the kill, the checks) is light.
 */
async function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const previous = quiet;
  let done!: () => void;
  quiet = new Promise<void>((r) => (done = r));
  await previous;
  try {
    return await fn();
  } finally {
    done();
  }
}

async function ok(args: string[], extra: Record<string, string | undefined> = {}, stdin?: string): Promise<string> {
  const r = await runDsm(args, env, { env: extra, stdin });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** A fresh data dir with the key material of `from`: no ledger, nothing a run left. */
function freshCopy(from: string, to: string): void {
  fs.mkdirSync(to, { mode: 0o700 });
  for (const f of fs.readdirSync(from)) {
    if (f.startsWith("ledger.sqlite") || f === "run.json" || f === CONTROL_SOCKET) continue;
    fs.copyFileSync(path.join(from, f), path.join(to, f));
    fs.chmodSync(path.join(to, f), fs.statSync(path.join(from, f)).mode & 0o777);
  }
}

function events(n: number, tag: string): string {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ event_type: "alert", src_ip: "10.1.2.3", alert: { signature: `${tag} ${i}` } })).join("\n") + "\n";
}

function peerIdOf(dataDir: string): string {
  return (JSON.parse(fs.readFileSync(path.join(dataDir, "card.json"), "utf8")) as { peer_id: string }).peer_id;
}

async function latestCert(dir: string): Promise<FinalityCertificate | null> {
  try {
    return await MeshClient.forDataDir(dir)!.getCheckpoint();
  } catch (e) {
    if (e instanceof MeshClientError && /no checkpoint yet/.test(e.message)) return null;
    throw e;
  }
}

/** Every certificate a node stores, oldest first (the control socket's /certificates). */
async function allCerts(dir: string): Promise<FinalityCertificate[]> {
  const res = await fetch("http://dsm/certificates", { unix: path.join(dir, CONTROL_SOCKET), signal: AbortSignal.timeout(5000) } as RequestInit);
  if (!res.ok) throw new Error(`/certificates on ${path.basename(dir)}: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { certificates: FinalityCertificate[] }).certificates;
}

/** One fresh mesh: its data dirs, its dsm run processes, what they logged. */
class Mesh {
  readonly dir: string;
  readonly V: string[];
  readonly E: string;
  readonly procs = new Map<string, Subprocess>();
  readonly logs = new Map<string, string>();
  genesis!: Genesis;
  env!: Record<string, string>;
  /** How long the five daemons took to listen, and to be connected to every validator. */
  listeningMs = 0;
  connectedMs = 0;

  constructor(
    readonly k: number,
    readonly keys: KeySet,
  ) {
    this.dir = path.join(root, `mesh${k}`);
    this.V = keys.validators.map((_, i) => path.join(this.dir, `v${i}`));
    this.E = path.join(this.dir, "edge");
  }

  get all(): string[] {
    return [...this.V, this.E];
  }

  async create(): Promise<void> {
    fs.mkdirSync(this.dir);
    this.keys.validators.forEach((d, i) => freshCopy(d, this.V[i]!));
    freshCopy(this.keys.edge, this.E);
    const file = path.join(this.dir, "genesis.json");
    const startS = Math.floor(Date.now() / 1000) - 1;
    const name = `liveness-${this.k}-${startS}`;
    const validators = this.keys.cards.flatMap((c) => ["--validator", c]);
    const t0 = new Date(startS * 1000).toISOString();
    await ok(["genesis", "--name", name, ...validators, "--admission", "open", "--epoch-duration", String(EPOCH_S), "--genesis-time", t0, "-o", file]);
    this.genesis = parseGenesis(JSON.parse(fs.readFileSync(file, "utf8")));
    this.env = { ...env, DSM_MESH_GENESIS: file };
  }

  /** Starts all five daemons at once, each bootstrapped to the four others; resolves when everyone is connected to every validator. */
  async start(): Promise<void> {
    const t0 = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (closing) throw new Error("the test file is finishing");
      const ports = await Promise.all(this.all.map(() => freePort()));
      const addrs = this.all.map((d, i) => `/ip4/127.0.0.1/tcp/${ports[i]}/p2p/${peerIdOf(d)}`);
      try {
        await Promise.all(this.all.map((d, i) => startDaemon(d, { ...this.env, DSM_GOSSIP_PORT: String(ports[i]) }, addrs.filter((_, j) => j !== i), this.procs, this.logs)));
        break;
      } catch (e) {
        // A port freePort found was taken by someone else before the daemon bound it: once more.
        await this.stop();
        if (attempt >= 2 || !/EADDRINUSE|address already in use/i.test((e as Error).message)) throw e;
      }
    }
    this.listeningMs = Date.now() - t0;
    const by = Date.now() + 20_000;
    for (;;) {
      const st = await Promise.all(this.all.map((d) => MeshClient.forDataDir(d)!.status()));
      if (st.every((s) => s.validators.every((v) => v.connected))) {
        this.connectedMs = Date.now() - t0;
        return;
      }
      if (Date.now() > by) throw new Error(`mesh ${this.k} never connected\n${await this.diagnose()}`);
      await Bun.sleep(100);
    }
  }

  async ingest(tag: string): Promise<void> {
    await ok(["ingest", "--data-dir", this.E, "--format", "json"], this.env, events(WAVE, tag));
  }

  async kill(dir: string): Promise<void> {
    const p = this.procs.get(dir)!;
    p.kill("SIGKILL");
    await p.exited;
  }

  async stop(): Promise<void> {
    for (const p of this.procs.values()) p.kill("SIGKILL");
    await Promise.all([...this.procs.values()].map((p) => p.exited));
    this.procs.clear();
  }

  /** CPU time each running daemon used so far (Linux /proc), for DSM_LIVENESS_VERBOSE. */
  cpuMs(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [d, p] of this.procs) {
      try {
        const f = fs.readFileSync(`/proc/${p.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
        out[path.basename(d)] = (Number(f[11]) + Number(f[12])) * 10;
      } catch {
        // exited
      }
    }
    return out;
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** What each node says of itself, for a failure message: its consensus state, its peers, the tail of its log. */
  async diagnose(): Promise<string> {
    const out: string[] = [];
    for (const d of this.all) {
      const p = this.procs.get(d);
      let st = "not running";
      if (p && p.exitCode === null) {
        try {
          const s = await MeshClient.forDataDir(d)!.status();
          const { last_finalized_epoch, lag_epochs, consensus, peers, rejected } = s;
          st = JSON.stringify({ last_finalized_epoch, lag_epochs, consensus, peers, connected: s.validators.map((v) => v.connected), rejected });
        } catch (e) {
          st = `status failed: ${(e as Error).message}`;
        }
      }
      out.push(`--- ${path.basename(d)}: ${st}\n${(this.logs.get(d) ?? "").split("\n").slice(-40).join("\n")}`);
    }
    return out.join("\n");
  }
}

/** The plan of mesh k: which validator is killed, and how long after the first wave's epoch closes. */
function planOf(k: number): { victim: number; killAfterMs: number; leadMs: number } {
  const rand = prng(SEED * 7919 + 1000 + k);
  return {
    victim: (k + SEED) % N,
    killAfterMs: KILL_FROM_MS + Math.floor(rand() * (KILL_TO_MS - KILL_FROM_MS)),
    leadMs: LEAD_FROM_MS + Math.floor(rand() * (LEAD_TO_MS - LEAD_FROM_MS)),
  };
}

/** "300 ms after" or "300 ms before" the first wave's epoch closed. */
function relative(ms: number): string {
  return `${Math.abs(ms)} ms ${ms < 0 ? "before" : "after"} the first wave's epoch closed`;
}

/** Runs mesh k from start to finish; resolves to its summary line or rejects with what went wrong. */
async function runMesh(k: number, keys: KeySet): Promise<string> {
  const { victim, killAfterMs, leadMs } = planOf(k);
  const t0 = Date.now();
  const mesh = new Mesh(k, keys);
  running.add(mesh);
  let passed = false;
  try {
    await mesh.create();
    await exclusive(() => mesh.start());
    const startedMs = Date.now() - t0;
    const { V, E, genesis } = mesh;
    const edge = MeshClient.forDataDir(E)!;
    const edgeId = (JSON.parse(fs.readFileSync(path.join(E, "card.json"), "utf8")) as { node_id: string }).node_id;

    await mesh.ingest(`first-${k}`);
    const first = await edge.getMicroblocks(edgeId, 1);
    expect(first.length).toBe(WAVE);
    const firstEnd = epochBounds(genesis, epochAt(genesis, Date.parse(first.at(-1)!.timestamp))).endMs;
    await Bun.sleep(Math.max(0, firstEnd + killAfterMs - Date.now()));
    const killedAfter = Date.now() - firstEnd;
    await mesh.kill(V[victim]!);
    const firstFinal = (await latestCert(V[(victim + 1) % N]!))?.checkpoint.tree_size ?? 0;
    let end = epochBounds(genesis, epochAt(genesis, Date.now())).endMs;
    if (end - Date.now() < LEAD_FROM_MS) end += EPOCH_MS;
    await Bun.sleep(Math.max(0, end - leadMs - Date.now()));

    // The last wave, then nothing sent to any node: the test only reads what they store.
    const live = [...V.filter((_, i) => i !== victim), E];
    const { all, lastEpoch, lastEnd, finalAt } = await exclusive(async () => {
      await mesh.ingest(`last-${k}`);
      const all: Microblock[] = await edge.getMicroblocks(edgeId, 1);
      const lastEpoch = epochAt(genesis, Date.parse(all.at(-1)!.timestamp));
      const lastEnd = epochBounds(genesis, lastEpoch).endMs;
      const finalAt = new Map<string, number>();
      while (finalAt.size < live.length && Date.now() < lastEnd + LIMIT_MS + OVERTIME_MS) {
        await Promise.all(
          live
            .filter((d) => !finalAt.has(d))
            .map(async (d) => {
              const c = await latestCert(d);
              if (c !== null && c.checkpoint.tree_size >= all.length) finalAt.set(d, Date.now());
            }),
        );
        await Bun.sleep(100);
      }
      return { all, lastEpoch, lastEnd, finalAt };
    });
    expect(all.map((m) => m.seq)).toEqual(Array.from({ length: 2 * WAVE }, (_, i) => i + 1));
    const after = (d: string) => (finalAt.has(d) ? finalAt.get(d)! - lastEnd : null);
    const late = live.filter((d) => after(d) === null || after(d)! > LIMIT_MS).map((d) => ({ node: path.basename(d), final_ms_after_close: after(d) }));
    if (late.length > 0) {
      throw new Error(
        `mesh ${k}: not every event finalized within 3 epochs (${LIMIT_MS} ms) after epoch ${lastEpoch} closed; ` +
          `v${victim} killed ${relative(killedAfter)} (${firstFinal} of ${WAVE} final then): ${JSON.stringify(late)}\n${await mesh.diagnose()}`,
      );
    }

    // Every event is in the stored certificate: its root is the tree of the edge's
    // microblocks in seq order (one chain, so leaf i is seq i + 1), and a quorum signed it.
    const expectedRoot = toHex(rootOf(all.map((m) => leafHash(fromHex(m.id, 32)))));
    const set = validatorSetOf(genesis);
    for (const d of live) {
      const c = (await latestCert(d))!;
      expect(c.checkpoint.tree_size, `${path.basename(d)}'s tree size`).toBe(all.length);
      expect(c.checkpoint.root, `${path.basename(d)}'s root`).toBe(expectedRoot);
      expect(set.quorumProblem(c.signers, checkpointDigest(c.checkpoint), c.agg_sig)).toBeNull();
      expect(signerIndices(c.signers)).not.toContain(victim);
    }

    // One certificate per epoch, byte for byte (the API's JSON is the stored JCS), on every
    // running validator. Of two valid certificates for a body the better travels and
    // replaces the other: an epoch's worth of time to converge. The edge holds the same
    // bodies and, once the better of two has travelled, the same certificates.
    const validators = live.filter((d) => d !== E);
    const texts = (cs: FinalityCertificate[]) => cs.map((c) => JSON.stringify(c));
    let held: FinalityCertificate[][] = [];
    const convergeBy = Date.now() + EPOCH_MS;
    for (;;) {
      held = await Promise.all(live.map(allCerts));
      const vs = held.slice(0, validators.length).map(texts);
      if (vs.every((t) => Bun.deepEquals(t, vs[0])) && texts(held.at(-1)!).every((t) => vs[0]!.includes(t))) break;
      if (Date.now() > convergeBy) break;
      await Bun.sleep(100);
    }
    const byEpoch = (cs: FinalityCertificate[]) => Object.fromEntries(cs.map((c) => [c.checkpoint.epoch, JSON.stringify(c)]));
    const reference = byEpoch(held[0]!);
    for (const [i, cs] of held.slice(0, validators.length).entries()) {
      expect(byEpoch(cs), `${path.basename(validators[i]!)}'s certificates against ${path.basename(validators[0]!)}'s`).toEqual(reference);
    }
    const edgeDiffers: string[] = [];
    for (const c of held.at(-1)!) {
      const mine = JSON.parse(reference[c.checkpoint.epoch] ?? "null") as FinalityCertificate | null;
      expect(mine, `the validators' certificate of epoch ${c.checkpoint.epoch}, which the edge holds`).not.toBeNull();
      expect(c.checkpoint, `the edge's checkpoint of epoch ${c.checkpoint.epoch}`).toEqual(mine!.checkpoint);
      expect(set.quorumProblem(c.signers, checkpointDigest(c.checkpoint), c.agg_sig)).toBeNull();
      if (JSON.stringify(c) !== reference[c.checkpoint.epoch]) edgeDiffers.push(`epoch ${c.checkpoint.epoch}: edge ${c.signers}, validators ${mine!.signers}`);
    }
    // And the edge the same certificates, byte for byte: a better one that came while the
    // edge was still storing a body is kept for after it (src/mesh/finality.ts).
    expect(edgeDiffers, "certificates the edge kept that the validators replaced").toEqual([]);
    {
    }
    // Each event in exactly one certificate's range, in order.
    const ranges = held[0]!.map((c) => c.checkpoint.ranges[edgeId]).filter((r) => r !== undefined);
    expect(ranges.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i))).toEqual(all.map((m) => m.seq));

    if (VERBOSE) console.log(`mesh ${k}: CPU ms ${JSON.stringify(mesh.cpuMs())}\n${[...mesh.logs].map(([d, l]) => `--- ${path.basename(d)}\n${l}`).join("\n")}`);
    passed = true;
    const worst = Math.max(...live.map((d) => after(d)!));
    return [
      `mesh ${String(k).padStart(2)}: v${victim} killed ${relative(killedAfter).padStart(41)} (${String(firstFinal).padStart(2)}/${WAVE} final then)`,
      `all final ${String(worst).padStart(4)} ms after epoch ${lastEpoch} closed (limit ${LIMIT_MS})`,
      `${held[0]!.length} certificates, signers ${held[0]!.map((c) => c.signers).join(" ")}`,
      `booted in ${mesh.listeningMs}+${mesh.connectedMs - mesh.listeningMs} ms, up ${startedMs} ms after its start, ${Date.now() - t0} ms in all`,
      ...(edgeDiffers.length > 0 ? [`THE EDGE KEPT ANOTHER CERTIFICATE (${edgeDiffers.join("; ")})`] : []),
    ].join("; ");
  } finally {
    await mesh.stop();
    running.delete(mesh);
    if ((!passed && KEEP === "1") || KEEP === "all") console.log(`liveness: mesh ${k}'s data dirs are kept in ${mesh.dir}`);
    else mesh.remove();
  }
}

// Meshes run ahead of the tests, PARALLEL at a time (one key set each): test k starts mesh k
// if it is not running yet, and the next PARALLEL - 1 too, then waits for mesh k's result.
const results = new Map<number, Promise<string>>();
const freeKeys: KeySet[] = [];
const keyWaiters: ((keys: KeySet) => void)[] = [];

function launch(k: number): Promise<string> {
  let p = results.get(k);
  if (!p) {
    p = (async () => {
      const keys = freeKeys.pop() ?? (await new Promise<KeySet>((r) => keyWaiters.push(r)));
      try {
        if (closing) throw new Error("the test file is finishing");
        return await runMesh(k, keys);
      } finally {
        const next = keyWaiters.shift();
        if (next) next(keys);
        else freeKeys.push(keys);
      }
    })();
    p.catch(() => {}); // reported by test k
    results.set(k, p);
  }
  return p;
}

beforeAll(async () => {
  requireBinary();
  root = tempDir("dsm-liveness-");
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: String(SIGNATURE_TIMEOUT_S) });
  for (let w = 0; w < Math.min(PARALLEL, MESHES); w++) {
    const dir = path.join(root, `keys${w}`);
    fs.mkdirSync(dir);
    const validators = Array.from({ length: N }, (_, i) => path.join(dir, `v${i}`));
    const edge = path.join(dir, "edge");
    await Promise.all([...validators.map((d) => ok(["init", "--data-dir", d, "--role", "validator"])), ok(["init", "--data-dir", edge, "--role", "edge"])]);
    const cards = await Promise.all(
      validators.map(async (d, i) => {
        const card = path.join(dir, `v${i}.card`);
        fs.writeFileSync(card, await ok(["card", "--data-dir", d, "--json"]));
        return card;
      }),
    );
    freeKeys.push({ validators, edge, cards });
  }
}, 60_000);

afterAll(async () => {
  // Nothing starts any more; what still runs (a test that timed out) is stopped and awaited.
  closing = true;
  await Promise.all([...running].map((m) => m.stop()));
  await Promise.allSettled(results.values());
  if (summary.length > 0) console.log(`liveness: ${summary.length} of ${MESHES} meshes passed (epoch ${EPOCH_S} s, ${PARALLEL} at a time):\n${summary.join("\n")}`);
  if (KEEP === "") cleanupTempDirs();
}, 60_000);

describe(`${MESHES} fresh meshes of dsm run (4 validators, 1 edge), one validator killed before the last wave`, () => {
  for (let k = 0; k < MESHES; k++) {
    const { victim, killAfterMs } = planOf(k);
    test(`mesh ${k}: v${victim} killed ~${relative(killAfterMs)}; every event finalized everywhere within 3 epochs, with no new input`, async () => {
      for (let j = k; j < Math.min(MESHES, k + PARALLEL); j++) void launch(j);
      summary.push(await launch(k));
    }, 90_000);
  }
});
