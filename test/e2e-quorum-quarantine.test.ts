// Quarantine by quorum across processes (issue 14): four validators (f = 1, q = 3) and two
// edges, each `dist/dsm run` on 127.0.0.1. One validator's request, gossiped to every
// validator, changes no checkpoint; a request signed for a future epoch is refused; three
// validators' requests make a decision that every validator takes from the same checkpoint
// (the edge's later microblocks stay out, the other edge's go in); one lift alone changes
// nothing; a quorum's lift readmits the edge, and its held-back and next microblocks are
// finalized. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { blsSign } from "../src/crypto/bls.ts";
import { makeQuarantine } from "../src/protocol/quarantine.ts";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { killDaemons, startDaemon } from "./helpers/daemons.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

let root: string;
let env: Record<string, string>;
const V: string[] = [];
const E: string[] = [];
const edgeIds: string[] = [];
let mesh: string;
const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();
let sent = 0;

async function ok(args: string[]): Promise<string> {
  const r = await runDsm(args, env);
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function ingest(edge: number, n: number, tag: string): Promise<void> {
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ event_type: "alert", src_ip: "10.1.2.3", alert: { signature: `${tag} ${i}` } })).join("\n") + "\n";
  const r = await runDsm(["ingest", "--data-dir", E[edge]!, "--format", "json"], env, { stdin: lines });
  if (r.code !== 0) throw new Error(`ingest: ${r.stderr}`);
  sent += n;
}

interface Listed {
  quarantined: { node_id: string; from_seq: number }[];
  decisions: { node_id: string; epoch: number; action: string; from_seq: number }[];
  pending: { node_id: string; action: string; validators: number[] }[];
}
/** quarantine list --json, without decided_at: when a node stored a decision is its own. */
const listed = async (d: string) => {
  const l = JSON.parse(await ok(["quarantine", "list", "--data-dir", d, "--json"])) as Listed & { decisions: { decided_at?: number }[] };
  for (const x of l.decisions) delete x.decided_at;
  return l as Listed;
};

interface Cert {
  checkpoint: { epoch: number; tree_size: number; ranges: Record<string, [number, number]>; decisions?: { node_id: string; action: string }[] };
}

/** Polls fn over the given data dirs until pass() holds for every result. */
async function until<T>(dirs: string[], fn: (d: string) => Promise<T>, pass: (t: T) => boolean, what: string, timeoutMs = 40_000): Promise<T[]> {
  const end = Date.now() + timeoutMs;
  let last: T[] = [];
  while (Date.now() < end) {
    last = await Promise.all(dirs.map(fn));
    if (last.every(pass)) return last;
    await Bun.sleep(300);
  }
  throw new Error(`${what} not reached in ${timeoutMs} ms: ${JSON.stringify(last)}\n${[...logs].map(([d, l]) => `--- ${path.basename(d)}\n${l.slice(-3000)}`).join("\n")}`);
}

const latest = async (d: string) => {
  const r = await runDsm(["checkpoint", "show", "--data-dir", d, "--json"], env);
  return r.code === 0 ? (JSON.parse(r.stdout) as Cert) : null;
};
const finalized = (size: number) => until(V, latest, (c) => c !== null && c.checkpoint.tree_size >= size, `finality over ${size} leaves`);

/** Every certificate a validator holds, oldest first. */
async function certificates(d: string): Promise<Cert[]> {
  const out: Cert[] = [];
  const top = (await latest(d))!.checkpoint.epoch;
  for (let e = 0; e <= top; e++) {
    const r = await runDsm(["checkpoint", "show", String(e), "--data-dir", d, "--json"], env);
    if (r.code === 0) out.push(JSON.parse(r.stdout) as Cert);
  }
  return out;
}

beforeAll(async () => {
  requireBinary();
  root = tempDir();
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "2" });
  const cards: string[] = [];
  for (let i = 0; i < 4; i++) {
    const d = path.join(root, `v${i}`);
    V.push(d);
    await ok(["init", "--data-dir", d, "--role", "validator"]);
    const card = path.join(root, `v${i}.card`);
    fs.writeFileSync(card, await ok(["card", "--data-dir", d, "--json"]));
    cards.push(card);
  }
  const genesisFile = path.join(root, "genesis.json");
  const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 2000).toISOString();
  await ok(["genesis", "--name", "quorum", ...cards.flatMap((c) => ["--validator", c]), "--admission", "open", "--epoch-duration", "2", "--genesis-time", t0, "-o", genesisFile]);
  env.DSM_MESH_GENESIS = genesisFile;
  for (let i = 0; i < 2; i++) {
    const d = path.join(root, `e${i}`);
    E.push(d);
    await ok(["init", "--data-dir", d, "--genesis", genesisFile, "--role", "edge"]);
    edgeIds.push((JSON.parse(await ok(["card", "--data-dir", d, "--json"])) as { node_id: string }).node_id);
  }
  const boot: string[] = [];
  for (const d of [...V, ...E]) boot.push(await startDaemon(d, env, [...boot], procs, logs));
  mesh = (JSON.parse(await ok(["status", "--data-dir", V[0]!, "--json"])) as { mesh: string }).mesh;
  await ingest(0, 4, "a");
  await ingest(1, 4, "a");
  await finalized(sent);
}, 90_000);

afterAll(async () => {
  await killDaemons(procs);
  cleanupTempDirs();
});

describe("quarantine by quorum, four validators and two edges as processes", () => {
  test("one validator's request reaches every validator and changes no checkpoint", async () => {
    await ok(["quarantine", "add", edgeIds[0]!, "--detail", "e2e: one validator alone", "--data-dir", V[0]!]);
    await until(V, listed, (l) => l.pending.some((p) => p.node_id === edgeIds[0] && p.validators.join() === "0"), "the request on every validator");
    await ingest(0, 3, "b");
    await ingest(1, 3, "b");
    const certs = await finalized(sent);
    for (const c of certs) expect(c!.checkpoint.decisions).toBeUndefined();
    for (const l of await Promise.all(V.map(listed))) expect(l.quarantined).toEqual([]);
  }, 60_000);

  test("a request signed for an epoch that has not begun is refused", async () => {
    const future = makeQuarantine({
      mesh,
      nodeId: edgeIds[0]!,
      action: "quarantine",
      fromSeq: 1,
      reason: "operator",
      basis: 0,
      epoch: 1_000_000_000,
      detail: "e2e: from the future",
      validator: 1,
      sign: (d) => blsSign(new Uint8Array(fs.readFileSync(path.join(V[1]!, "bls.key"))), d),
    });
    const file = path.join(root, "future.json");
    fs.writeFileSync(file, JSON.stringify(future));
    const r = await runDsm(["quarantine", "import", file, "--data-dir", V[2]!], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/signed for epoch 1000000000, but epoch \d+ is the mesh's current one \(a request from the future is refused\)/);
    expect((await listed(V[2]!)).pending.map((p) => p.validators)).toEqual([[0]]);
  }, 30_000);

  test("a quorum's requests make one decision, taken by every validator from the same checkpoint", async () => {
    for (const v of [1, 2]) await ok(["quarantine", "add", edgeIds[0]!, "--detail", `e2e: validator ${v} agrees`, "--data-dir", V[v]!]);
    const lists = await until(V, listed, (l) => l.quarantined.some((q) => q.node_id === edgeIds[0]), "the decision on every validator");
    const decision = lists[0]!.decisions;
    expect(decision).toHaveLength(1);
    for (const l of lists) expect(l.decisions).toEqual(decision);
    expect(decision[0]).toMatchObject({ node_id: edgeIds[0], action: "quarantine", from_seq: 8 });
    // The checkpoint of that epoch carries it, the same on every validator.
    const shown = await Promise.all(V.map((d) => ok(["checkpoint", "show", String(decision[0]!.epoch), "--data-dir", d, "--json"])));
    for (const s of shown) expect((JSON.parse(s) as Cert).checkpoint).toEqual((JSON.parse(shown[0]!) as Cert).checkpoint);
    expect((JSON.parse(shown[0]!) as Cert).checkpoint.decisions!.map((d) => d.node_id)).toEqual([edgeIds[0]!]);
    // The edges hear of it with the certificate.
    await until(E, listed, (l) => l.quarantined.some((q) => q.node_id === edgeIds[0]), "the decision on the edges");
    // From then on only the other edge's microblocks go in.
    const before = (await latest(V[0]!))!.checkpoint.tree_size;
    await ingest(0, 2, "c");
    await ingest(1, 2, "c");
    const certs = await until(V, latest, (c) => c !== null && c.checkpoint.tree_size >= before + 2, "the other edge's microblocks");
    await Bun.sleep(4500); // two more epochs: the quarantined edge's microblocks must stay out
    for (const c of await Promise.all(V.map(latest))) {
      expect(c!.checkpoint.tree_size).toBe(before + 2);
      expect(c!.checkpoint.ranges[edgeIds[0]!]).toBeUndefined();
    }
    expect(certs.length).toBe(4);
  }, 90_000);

  test("one validator's lift changes nothing; a quorum's lift readmits the edge and all its microblocks are finalized", async () => {
    await ok(["quarantine", "lift", edgeIds[0]!, "--detail", "e2e: one validator alone", "--data-dir", V[3]!]);
    await until(V, listed, (l) => l.pending.some((p) => p.action === "lift" && p.validators.join() === "3"), "the lift request on every validator");
    const before = (await latest(V[0]!))!.checkpoint.tree_size;
    await ingest(1, 2, "d");
    await finalized(before + 2);
    for (const l of await Promise.all(V.map(listed))) expect(l.quarantined.map((q) => q.node_id)).toEqual([edgeIds[0]!]);

    for (const v of [0, 2]) await ok(["quarantine", "lift", edgeIds[0]!, "--detail", `e2e: validator ${v} lifts`, "--data-dir", V[v]!]);
    const lists = await until(V, listed, (l) => l.quarantined.length === 0, "the lift on every validator");
    for (const l of lists) expect(l.decisions).toEqual(lists[0]!.decisions);
    expect(lists[0]!.decisions.map((d) => d.action)).toEqual(["quarantine", "lift"]);
    await ingest(0, 2, "e");
    // Every event of both edges: the ones held back while quarantined, and the new ones.
    await finalized(sent);
    const all = await certificates(V[1]!);
    const upTo = Math.max(...all.map((c) => c.checkpoint.ranges[edgeIds[0]!]?.[1] ?? 0));
    expect(upTo).toBe(4 + 3 + 2 + 2);
  }, 90_000);
});
