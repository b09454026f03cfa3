// Restore safety (issue 14) with the compiled binary: an edge of a two-validator mesh, each
// node its own `dsm run` on 127.0.0.1, is backed up, signs on, and is restored from the
// backup (a dead SD card). Its next `dsm emit`, and `dsm run`, refuse to sign and name
// `dsm recover`; that brings the chain back through /dsm/sync/1; the next emit takes the next
// seq and the validators hold no fork evidence. A peer that claims a later head without the
// signed microblock to prove it does not stop a node from signing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { MeshNet } from "../src/mesh/p2p.ts";
import { checkHeadAnswer, HEAD_PROTOCOL } from "../src/mesh/head.ts";
import { judge } from "../src/mesh/restore-check.ts";
import { DSMNode } from "../src/node/node.ts";
import { bodyOfMicroblock, microblockId } from "../src/protocol/microblock.ts";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { killDaemons, startDaemon } from "./helpers/daemons.ts";
import { freePort } from "./helpers/net.ts";
import { cleanupTempDirs, tempDir, testConfig } from "./helpers/node.ts";

let root: string;
let env: Record<string, string>;
let genesisFile: string;
const V: string[] = [];
let E: string;
let edgeId: string;
const boot: string[] = [];
const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();
/** The edge's one-shot commands know the validators' addresses, as an operator's config would. */
const peersEnv = () => ({ DSM_GOSSIP_BOOTSTRAP_NODES: boot.join(",") });

async function dsm(args: string[], extra: Record<string, string | undefined> = {}) {
  return runDsm(args, env, { env: extra, timeoutMs: 30_000 });
}

async function ok(args: string[], extra: Record<string, string | undefined> = {}): Promise<string> {
  const r = await dsm(args, extra);
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function stop(dir: string): Promise<void> {
  const p = procs.get(dir);
  if (!p) return;
  p.kill("SIGTERM");
  await p.exited;
  procs.delete(dir);
}

const headSeq = async (dir: string): Promise<number> => (JSON.parse(await ok(["status", "--data-dir", dir, "--json"])).head?.seq ?? 0) as number;

async function emit(n: number): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = 0; i < n; i++) seqs.push(JSON.parse(await ok(["emit", "--data-dir", E, "--event-type", "alert", "--payload", JSON.stringify({ n: i, at: Date.now() }), "--json"], peersEnv())).seq);
  return seqs;
}

/** The edge's chain as a validator holds it: its highest seq. */
async function heldAt(dir: string): Promise<number> {
  const rows = (await ok(["log", "--data-dir", dir, "--node", edgeId, "--json", "--limit", "1"])).split("\n").filter((l) => l !== "");
  return rows.length === 0 ? 0 : (JSON.parse(rows[0]!).seq as number);
}

async function untilHeld(seq: number, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let have: number[] = [];
  while (Date.now() < until) {
    have = await Promise.all(V.map(heldAt));
    if (have.every((h) => h >= seq)) return;
    await Bun.sleep(200);
  }
  throw new Error(`validators hold the edge up to ${have.join(", ")}, not ${seq}\n${[...logs].map(([d, l]) => `--- ${path.basename(d)}\n${l}`).join("\n")}`);
}

/** A dead SD card: the data dir is gone, and the backup is copied into a new one. */
function restore(backup: string): void {
  fs.rmSync(E, { recursive: true, force: true });
  fs.mkdirSync(E, { mode: 0o700 });
  for (const f of fs.readdirSync(backup)) if (f !== "MANIFEST.json") fs.copyFileSync(path.join(backup, f), path.join(E, f));
}

beforeAll(async () => {
  requireBinary();
  root = tempDir("dsm-recover-");
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "2" });
  const cards: string[] = [];
  for (let i = 0; i < 2; i++) {
    const d = path.join(root, `v${i}`);
    V.push(d);
    await ok(["init", "--data-dir", d, "--role", "validator"]);
    const card = path.join(root, `v${i}.card`);
    fs.writeFileSync(card, await ok(["card", "--data-dir", d, "--json"]));
    cards.push(card);
  }
  genesisFile = path.join(root, "genesis.json");
  const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 2000).toISOString();
  await ok(["genesis", "--name", "restore", ...cards.flatMap((c) => ["--validator", c]), "--admission", "open", "--epoch-duration", "2", "--genesis-time", t0, "-o", genesisFile]);
  env.DSM_MESH_GENESIS = genesisFile;
  E = path.join(root, "edge");
  edgeId = JSON.parse(await ok(["init", "--data-dir", E, "--genesis", genesisFile, "--role", "edge", "--json"])).node_id;
  for (const d of V) boot.push(await startDaemon(d, env, [...boot], procs, logs));
}, 60_000);

afterAll(async () => {
  await killDaemons(procs);
  cleanupTempDirs();
});

describe("restore safety", () => {
  test("a restored edge refuses to sign until dsm recover brings its chain back; then it goes on with no fork", async () => {
    await startDaemon(E, env, boot, procs, logs);
    expect(await emit(3)).toEqual([1, 2, 3]);
    await untilHeld(3);
    const backup = path.join(root, "backup");
    expect(JSON.parse(await ok(["backup", backup, "--data-dir", E, "--json"])).head.seq).toBe(3);
    expect(await emit(4)).toEqual([4, 5, 6, 7]);
    await untilHeld(7);
    await stop(E);

    // dsm run on the restored dir: it asks the mesh, refuses, says so in one line, and
    // one-shot commands beside it refuse with the same words.
    restore(backup);
    expect(await headSeq(E)).toBe(3);
    await startDaemon(E, env, boot, procs, logs);
    const refusedLine = /restored from an older copy: its chain of this node ends at seq 3, but the mesh holds seq 7.*Run dsm recover/;
    for (const until = Date.now() + 15_000; !refusedLine.test(logs.get(E)!) && Date.now() < until; ) await Bun.sleep(100);
    expect(logs.get(E)!).toMatch(refusedLine);
    const besideDaemon = await dsm(["emit", "--data-dir", E, "--event-type", "alert", "--payload", "{}"], peersEnv());
    expect(besideDaemon.code).toBe(1);
    expect(besideDaemon.errLines).toHaveLength(1);
    expect(besideDaemon.stderr).toMatch(refusedLine);
    const ingest = await dsm(["ingest", "--data-dir", E, "--format", "json"], { ...peersEnv(), DSM_QUIET: "1" });
    expect(ingest.code).toBe(1);
    expect(ingest.stderr).toMatch(refusedLine);
    // dsm recover leaves a running daemon alone: it holds the node's libp2p identity.
    const busy = await dsm(["recover", "--data-dir", E], peersEnv());
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/dsm run \(pid \d+\) is using this data dir: stop it first/);
    await stop(E);
    // The refusal outlives the daemon, even where no peer is known or reachable.
    const noPeers = await dsm(["mitigation", "--data-dir", E, "--action", "block", "--target", "203.0.113.9"]);
    expect(noPeers.code).toBe(1);
    expect(noPeers.stderr).toMatch(refusedLine);

    // A one-shot command with no daemon and no record of a refusal asks the mesh itself.
    restore(backup);
    const oneShot = await dsm(["emit", "--data-dir", E, "--event-type", "alert", "--payload", "{}"], peersEnv());
    expect(oneShot.code, oneShot.stderr).toBe(1);
    expect(oneShot.errLines).toHaveLength(1);
    expect(oneShot.stderr).toMatch(refusedLine);
    expect(oneShot.stdout).toBe("");
    expect(await headSeq(E)).toBe(3); // nothing stored on refusal

    // dsm recover: seq 4..7 back from the validators, each checked; then seq 8 is next.
    const r = JSON.parse(await ok(["recover", "--data-dir", E, "--json"], peersEnv()));
    expect(r).toMatchObject({ node_id: edgeId, local_seq_before: 3, head: { seq: 7 }, mesh_head: { seq: 7 }, recovered: 4, payloads_missing: 0 });
    expect(r.fetched_from.length).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(await ok(["verify", "--data-dir", E, "--json"])).ok).toBe(true);
    // The chain is whole again: the recovered events have their payloads.
    expect(JSON.parse(await ok(["show", `${edgeId}:5`, "--data-dir", E, "--json"])).payload).toMatchObject({ n: 1 });
    const again = await ok(["recover", "--data-dir", E], peersEnv());
    expect(again).toMatch(/^nothing to recover: .* seq 7 .*from seq 8/);
    expect(await emit(1)).toEqual([8]);

    // The edge's daemon offers seq 8; the validators take it as the next link, and none of
    // them holds fork evidence or quarantines the edge.
    await startDaemon(E, env, boot, procs, logs);
    await untilHeld(8);
    for (const v of V) {
      expect(JSON.parse(await ok(["quarantine", "list", "--data-dir", v, "--json"])).quarantined).toEqual([]);
      const chain = (await ok(["log", "--data-dir", v, "--node", edgeId, "--json", "--limit", "0", "--oldest-first"])).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
      expect(chain.map((m: { seq: number }) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    }
    await stop(E);
  }, 90_000);

  test("a peer claiming a later head without the signed microblock at that seq does not stop signing", async () => {
    await stop(E); // one-shot commands beside a daemon trust its check: here they must ask
    const before = await headSeq(E);
    // What the edge's head proof looks like (export lines of its head, payload null), and forgeries of it.
    const exported = path.join(root, "head.ndjson");
    await ok(["export", "--data-dir", E, "--from-seq", String(before), "--no-payloads", "-o", exported]);
    const [certLine, mbLine] = fs.readFileSync(exported, "utf8").split("\n").filter((l) => l !== "") as [string, string];
    const mb = JSON.parse(mbLine);
    const withSeq = (seq: number) => JSON.stringify({ ...mb, microblock: { ...mb.microblock, seq } });
    // The strongest forgery: a later seq with its id recomputed, so only the signature fails.
    const later = { ...mb.microblock, seq: 1_000_000_000 };
    const reId = JSON.stringify({ ...mb, microblock: { ...later, id: microblockId(bodyOfMicroblock(later)) } });
    const badSig = JSON.stringify({ ...mb, microblock: { ...mb.microblock, sig: mb.microblock.sig.replace(/^../, mb.microblock.sig.startsWith("00") ? "11" : "00") } });
    // Another admitted node's real head: a valid proof, of the wrong chain.
    const R = path.join(root, "rogue");
    await ok(["init", "--data-dir", R, "--genesis", genesisFile, "--role", "edge"]);
    await ok(["emit", "--data-dir", R, "--event-type", "alert", "--payload", "{}"]);
    const rogueLines = path.join(root, "rogue.ndjson");
    await ok(["export", "--data-dir", R, "--no-payloads", "-o", rogueLines]);
    const lies = [
      { seq: 1_000_000_000, lines: "" },
      { seq: 1_000_000_000, lines: `${certLine}\n${mbLine}\n` }, // a real microblock, not at the claimed seq
      { seq: 1_000_000_000, lines: `${certLine}\n${withSeq(1_000_000_000)}\n` }, // its id no longer recomputes
      { seq: 1_000_000_000, lines: `${certLine}\n${reId}\n` }, // the signature no longer verifies
      { seq: before, lines: `${certLine}\n${badSig}\n` },
      { seq: 1, lines: fs.readFileSync(rogueLines, "utf8") },
      { error: "no" },
    ];

    // The check itself, on the edge's node in this process: only the real proof counts.
    const node = DSMNode.open(E, testConfig(), { readonly: true });
    try {
      expect(checkHeadAnswer(node, { seq: before, lines: `${certLine}\n${mbLine}\n` })).toEqual({ ok: true, seq: before, id: mb.microblock.id });
      for (const lie of lies) expect(checkHeadAnswer(node, lie).ok).toBe(false);
      expect(checkHeadAnswer(node, { seq: 1_000_000_000, lines: `${certLine}\n${reId}\n` })).toEqual({ ok: false, reason: expect.stringMatching(/signature does not verify/) });
      expect(checkHeadAnswer(node, { seq: 0, lines: "" })).toEqual({ ok: true, seq: 0, id: null });
      // A verified later head refuses; the same seq with another id is a divergence.
      expect(judge(node, [{ peer: "p", seq: before + 1, id: "ab".repeat(32) }]).refusal).toMatch(/restored from an older copy/);
      expect(judge(node, [{ peer: "p", seq: before, id: "ab".repeat(32) }]).refusal).toMatch(/differs from the mesh's/);
      expect(judge(node, [{ peer: "p", seq: before, id: mb.microblock.id }]).refusal).toBeNull();
    } finally {
      node.close();
    }

    // Over the mesh: a rogue peer (admitted: open admission, a valid card) answers
    // /dsm/head/1 with each lie in turn; the edge's emit signs the next seq every time.
    const rogueCard = JSON.parse(fs.readFileSync(path.join(R, "card.json"), "utf8"));
    const port = await freePort();
    const rogue = await MeshNet.start({
      privateKey: new Uint8Array(fs.readFileSync(path.join(R, "libp2p.key"))),
      listen: [`/ip4/127.0.0.1/tcp/${port}`],
      bootstrap: [],
      maxMessageBytes: 1 << 20,
      cards: { own: rogueCard, admit: () => null, timeoutMs: 5000 },
    });
    let asked = 0;
    await rogue.serve(HEAD_PROTOCOL, () => lies[asked++ % lies.length]);
    try {
      const addr = `/ip4/127.0.0.1/tcp/${port}/p2p/${rogue.peerId}`;
      for (let i = 0; i < lies.length; i++) {
        const r = await dsm(["emit", "--data-dir", E, "--event-type", "alert", "--payload", JSON.stringify({ lie: i }), "--json"], { DSM_GOSSIP_BOOTSTRAP_NODES: addr });
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout).seq).toBe(before + 1 + i);
      }
      expect(asked).toBe(lies.length);
    } finally {
      await rogue.stop();
    }
    // And with no peer reachable at all (a port nothing listens on): the emit goes on.
    const dead = `/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${rogueCard.peer_id}`;
    const t = Date.now();
    const r = await dsm(["emit", "--data-dir", E, "--event-type", "alert", "--payload", "{}", "--json"], { DSM_GOSSIP_BOOTSTRAP_NODES: dead });
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - t).toBeLessThan(5000);
  }, 60_000);
});
