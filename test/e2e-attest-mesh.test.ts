// Attestation over the mesh, every node its own `dist/dsm run` process on 127.0.0.1: a
// genesis that makes EDGES attest (--attest-roles edge), one software-key validator, two
// edges with TPM identities (each its own swtpm, manufactured with an EK certificate under
// one shared local CA) and one software edge, all under open admission, 2 s epochs. The
// validator enrolls each TPM edge over /dsm/enroll/1 (credential activation) and its quote
// passes; the software edge is refused at the connection gater. The TPM edges' events,
// those written before the daemons started (offered once, when the daemon starts) as well
// as those written while they run, enter finalized checkpoints; nothing of the software
// edge ever reaches the validator's ledger or a checkpoint, and /metrics counts the passed
// attestations.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { MeshClient } from "../src/mesh/client.ts";
import { MeshNet } from "../src/mesh/p2p.ts";
import { signBody } from "../src/crypto/signed.ts";
import { certifyQualifyingData } from "../src/protocol/enrollment.ts";
import { TpmIdentityKey } from "../src/tpm/tpm-key.ts";
import { withSoftwareAk } from "./helpers/tpm-forge.ts";
import type { DaemonStatus } from "../src/mesh/api.ts";
import type { FinalityCertificate } from "../src/protocol/certificate.ts";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { freePort } from "./helpers/net.ts";
import { startDaemon } from "./helpers/daemons.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { type EkCa, haveSwtpm, startSwtpm, type Swtpm } from "./helpers/swtpm.ts";

let root: string;
let env: Record<string, string>;
let metricsPort = 0;
/** The mesh's epochs: 2 s, so that two edges' events emitted at an epoch's start share it even on a loaded machine. */
const EPOCH_MS = 2000;
let genesisMs = 0;
const tpms: (Swtpm & { ekCa?: EkCa })[] = [];
const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();
const dir = (n: string) => path.join(root, n);
/** Node ids and peer ids by data dir name: v (validator), t1 and t2 (TPM edges), s (software edge). */
const ids: Record<string, { node: string; peer: string }> = {};
/** Each edge daemon's dialable address (multiaddr with /p2p/). */
const addrs: Record<string, string> = {};
const TPM_EDGES = ["t1", "t2"];
const EDGES = [...TPM_EDGES, "s"];
/** Set when the validator ever lists the software edge among its admitted peers. */
let softwareEdgeAdmitted = false;
/** Events each edge wrote, by name. */
const emitted: Record<string, number> = { t1: 0, t2: 0, s: 0 };

async function ok(args: string[], extra: Record<string, string> = {}): Promise<string> {
  const r = await runDsm(args, env, { env: extra });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function emit(node: string, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await ok(["emit", "--data-dir", dir(node), "--event-type", "alert", "--payload", JSON.stringify({ tag, i, node })]);
    emitted[node]!++;
  }
}

/** What every daemon wrote on stderr so far, for failure messages. */
function allLogs(): string {
  return [...logs].map(([d, l]) => `--- ${path.basename(d)}\n${l}`).join("\n");
}

/** Polls `probe` until it returns a value (not undefined), or fails after timeoutMs saying what it waited for. */
async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, last: () => unknown = () => ""): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await probe();
    if (v !== undefined) return v;
    await Bun.sleep(300);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last())}\n${allLogs()}`);
}

/** Starts `dsm run` on a data dir, bootstrapped to the given peers; resolves to its address once it listens. */
function start(name: string, bootstrap: string[], extra: Record<string, string> = {}): Promise<string> {
  return startDaemon(dir(name), { ...env, ...extra }, bootstrap, procs, logs);
}

/** A libp2p node in this process with a data dir's libp2p key, showing `card`, dialling `bootstrap`. */
function peerAs(name: string, card: unknown, bootstrap: string): Promise<MeshNet> {
  return MeshNet.start({
    privateKey: new Uint8Array(fs.readFileSync(path.join(dir(name), "libp2p.key"))),
    listen: ["/ip4/127.0.0.1/tcp/0"],
    bootstrap: [bootstrap],
    maxMessageBytes: 1 << 20,
    cards: { own: card, admit: () => null, timeoutMs: 5000 },
  });
}

async function stopAll(): Promise<void> {
  const running = [...procs.values()];
  procs.clear();
  for (const p of running) p.kill("SIGTERM");
  // A daemon that does not stop within 15 s is killed: the test must not hang on it.
  const timer = setTimeout(() => running.forEach((p) => p.exitCode === null && p.kill("SIGKILL")), 15_000);
  await Promise.all(running.map((p) => p.exited));
  clearTimeout(timer);
}

/** The validator daemon's status; every call also checks the software edge is not among its admitted peers. */
async function validatorStatus(): Promise<DaemonStatus> {
  const st = (JSON.parse(await ok(["status", "--data-dir", dir("v"), "--json"])) as { daemon: DaemonStatus }).daemon;
  if (st.attestation.nodes.some((n) => n.node_id === ids.s!.node)) softwareEdgeAdmitted = true;
  return st;
}

/** Every finality certificate the validator's daemon holds, oldest first (/certificates, 64 a page). */
async function certificates(): Promise<FinalityCertificate[]> {
  const socket = path.join(dir("v"), "control.sock");
  const out: FinalityCertificate[] = [];
  for (;;) {
    const q = out.length === 0 ? "" : `?after=${out.at(-1)!.checkpoint.epoch}`;
    const res = await fetch(`http://dsm/certificates${q}`, { unix: socket, signal: AbortSignal.timeout(10_000) } as RequestInit);
    const page = ((await res.json()) as { certificates: FinalityCertificate[] }).certificates;
    out.push(...page);
    if (page.length < 64) return out;
  }
}

/** Per node, the seqs the given certificates include, in order (ranges are inclusive [from, to]). */
function finalizedSeqs(certs: FinalityCertificate[]): Map<string, number[]> {
  const seqs = new Map<string, number[]>();
  for (const c of certs) {
    for (const [node, [from, to]] of Object.entries(c.checkpoint.ranges as Record<string, [number, number]>)) {
      const list = seqs.get(node) ?? [];
      for (let s = from; s <= to; s++) list.push(s);
      seqs.set(node, list);
    }
  }
  return seqs;
}

/** Sleeps until just after the next epoch starts. */
async function epochStart(): Promise<void> {
  await Bun.sleep(EPOCH_MS - ((Date.now() - genesisMs) % EPOCH_MS) + 50);
}

const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** Waits until each TPM edge's every event is in a finalized checkpoint, seqs 1..n once each. */
async function tpmEdgesFinalized(what: string): Promise<FinalityCertificate[]> {
  let seen: Record<string, number[] | undefined> = {};
  return until(
    what,
    45_000,
    async () => {
      const certs = await certificates();
      const seqs = finalizedSeqs(certs);
      seen = Object.fromEntries(TPM_EDGES.map((e) => [e, seqs.get(ids[e]!.node)]));
      await validatorStatus(); // notes a software edge admitted meanwhile
      return TPM_EDGES.every((e) => JSON.stringify(seqs.get(ids[e]!.node)) === JSON.stringify(oneTo(emitted[e]!))) ? certs : undefined;
    },
    () => ({ emitted, finalized: seen }),
  );
}

beforeAll(async () => {
  requireBinary();
  if (!haveSwtpm()) throw new Error("swtpm is not installed (apt-get install swtpm swtpm-tools tpm2-tools; .ci/run does)");
  root = tempDir();
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0" });
  // Two TPMs manufactured under one EK CA: their EK certificates share the intermediate.
  const ca = path.join(root, "ek-ca");
  for (let i = 0; i < 2; i++) tpms.push(await startSwtpm({ ekCa: ca }));
  const ekCa = tpms[0]!.ekCa!;
  fs.writeFileSync(dir("ek-root.pem"), ekCa.root);
  fs.writeFileSync(dir("ek-inter.pem"), ekCa.intermediate);
  const tpmInit = (name: string, i: number) => ["init", "--data-dir", dir(name), "--role", "edge", "--tpm", tpms[i]!.tcti, "--ek-chain", dir("ek-inter.pem")];

  // The validator needs no TPM: only edges attest here.
  await ok(["init", "--data-dir", dir("v"), "--role", "validator"]);
  fs.writeFileSync(dir("v.card"), await ok(["card", "--data-dir", dir("v"), "--json"]));
  // The PCR policy from one TPM edge (every fresh swtpm boots to the same PCRs): initialised
  // in its local mesh first, then again (--force: its own TPM key replaced) in the real one.
  await ok(tpmInit("t1", 0));
  fs.writeFileSync(dir("policy.json"), await ok(["attest", "--golden", "--data-dir", dir("t1"), "--json"]));
  const genesis = dir("genesis.json");
  genesisMs = Math.floor(Date.now() / 1000) * 1000 - 2 * EPOCH_MS;
  const t0 = new Date(genesisMs).toISOString();
  await ok(["genesis", "--name", "edges-attest", "--validator", dir("v.card"), "--pcr-policy", dir("policy.json"), "--ek-root", dir("ek-root.pem"), "--attest-roles", "edge", "--admission", "open", "--epoch-duration", String(EPOCH_MS / 1000), "--genesis-time", t0, "-o", genesis]);
  env.DSM_MESH_GENESIS = genesis;
  await ok([...tpmInit("t1", 0), "--force", "--genesis", genesis]);
  await ok([...tpmInit("t2", 1), "--genesis", genesis]);
  await ok(["init", "--data-dir", dir("s"), "--role", "edge", "--genesis", genesis]);
  for (const n of ["v", ...EDGES]) ids[n] = { node: (JSON.parse(await ok(["card", "--data-dir", dir(n), "--json"])) as { node_id: string }).node_id, peer: "" };

  // Each edge has events before any daemon runs: offered once, when its daemon starts.
  for (const e of EDGES) await emit(e, 2, "before");

  metricsPort = await freePort();
  const v = (addrs.v = await start("v", [], { DSM_METRICS_PORT: String(metricsPort) }));
  ids.v!.peer = v.split("/p2p/")[1]!;
  for (const e of EDGES) {
    addrs[e] = await start(e, [v]);
    ids[e]!.peer = addrs[e]!.split("/p2p/")[1]!;
  }
}, 90_000);

afterAll(async () => {
  await stopAll();
  for (const t of tpms) {
    await t.stop();
    fs.rmSync(t.stateDir, { recursive: true, force: true });
  }
  cleanupTempDirs();
});

describe("a mesh where edges must attest: a software validator, two TPM edges, one software edge", () => {
  test("the genesis makes edges attest, and only edges", () => {
    const g = JSON.parse(fs.readFileSync(env.DSM_MESH_GENESIS!, "utf8"));
    expect(g.attestation).toMatchObject({ required: true, roles: ["edge"], ek_roots: [fs.readFileSync(dir("ek-root.pem"), "utf8")] });
    expect(g.attestation.digests).toHaveLength(1);
    expect(g.validators[0].tpm).toBeFalsy();
  });

  test("the validator enrolls both TPM edges over /dsm/enroll/1 and their quotes pass", async () => {
    type Node = DaemonStatus["attestation"]["nodes"][number];
    let nodes: Node[] = [];
    await until(
      "both TPM edges enrolled and attested",
      45_000,
      async () => {
        nodes = (await validatorStatus()).attestation.nodes;
        return TPM_EDGES.every((e) => nodes.some((n) => n.node_id === ids[e]!.node && n.trust === "tpm-enrolled" && n.result === "passed")) ? true : undefined;
      },
      () => nodes,
    );
    for (const e of TPM_EDGES) {
      const n = nodes.find((x) => x.node_id === ids[e]!.node)!;
      expect(n).toMatchObject({ peer_id: ids[e]!.peer, trust: "tpm-enrolled", result: "passed", ek: expect.stringContaining("swtpm-localca") });
      // The PCR digest of its quote is the genesis' golden one (taken from t1's TPM).
      expect(n.pcr_digest).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.parse(fs.readFileSync(env.DSM_MESH_GENESIS!, "utf8")).attestation.digests).toContain(n.pcr_digest);
      expect(n.quoted_at).toBeGreaterThan(0);
    }
    // Enrolled by credential activation over the mesh, as the validator logged.
    for (const e of TPM_EDGES) expect(logs.get(dir("v"))).toContain(`node ${ids[e]!.node.slice(0, 16)}… enrolled: its AK is in the TPM of its EK (certificate from swtpm-localca)`);
    const st = await validatorStatus();
    expect(st.attestation.challenging).toBe(true);
    expect(st.attestation.passed).toBeGreaterThanOrEqual(2);
    expect(st.attestation.failed).toBe(0);
  }, 60_000);

  test("the software edge is refused at the gater: never admitted, the reason logged and counted", async () => {
    const s = ids.s!;
    const refusal = `peer ${s.peer} refused: node ${s.node.slice(0, 16)}… has no TPM, and the mesh requires attestation of its role`;
    await until("the validator's refusal of the software edge", 30_000, async () => (logs.get(dir("v"))!.includes(refusal) ? true : undefined));
    const st = await validatorStatus();
    expect(st.rejected.peer).toBeGreaterThanOrEqual(1);
    expect(st.attestation.nodes.map((n) => n.node_id)).not.toContain(s.node);
    expect(softwareEdgeAdmitted).toBe(false);
    expect(JSON.parse(await ok(["peers", "--data-dir", dir("v"), "--json"])).peers).not.toContain(s.peer);
    // Neither TPM edge was refused.
    for (const e of TPM_EDGES) expect(logs.get(dir("v"))).not.toContain(`peer ${ids[e]!.peer} refused`);
  }, 40_000);

  test("the TPM edges' events written before their daemons started are finalized, with no newer event to show a gap", async () => {
    await tpmEdgesFinalized("the TPM edges' pre-enrollment events in finalized checkpoints");
  }, 60_000);

  test("events emitted while the daemons run: the TPM edges' are finalized, the software edge's never reach the validator", async () => {
    // Rounds of one event per edge, the TPM edges' at once at an epoch's start, until some
    // finalized checkpoint includes both TPM edges (the first round's, unless the machine is
    // so slow that their events straddle an epoch's end or reach the validator after the
    // epoch's checkpoint was made: then a later round's).
    const together = (cs: FinalityCertificate[]) => cs.some((c) => TPM_EDGES.every((e) => ids[e]!.node in c.checkpoint.ranges));
    let certs: FinalityCertificate[] = [];
    for (let round = 0; round < 5; round++) {
      await epochStart();
      await Promise.all(TPM_EDGES.map((e) => emit(e, 1, `running-${round}`)));
      await emit("s", 1, `running-${round}`);
      certs = await tpmEdgesFinalized(`every TPM edge event in finalized checkpoints (round ${round})`);
      if (round >= 1 && together(certs)) break; // at least two rounds
    }
    // Some checkpoint includes both TPM edges; none includes the software edge.
    expect(together(certs)).toBe(true);
    for (const c of certs) expect(Object.keys(c.checkpoint.ranges)).not.toContain(ids.s!.node);
    // The validator's ledger holds the TPM edges' chains and nothing of the software edge.
    const client = MeshClient.forDataDir(dir("v"))!;
    for (const e of TPM_EDGES) expect((await client.getMicroblocks(ids[e]!.node)).map((m) => m.seq)).toEqual(oneTo(emitted[e]!));
    expect(await client.getMicroblocks(ids.s!.node)).toEqual([]);
    // The software edge did write its events: they stayed home.
    const sHead = (JSON.parse(await ok(["status", "--data-dir", dir("s"), "--json"])) as { head: { seq: number } }).head.seq;
    expect(sHead).toBe(emitted.s!);
    const st = await validatorStatus();
    expect(st.received).toBe(emitted.t1! + emitted.t2!);
    expect(softwareEdgeAdmitted).toBe(false);
  }, 150_000);

  test("/metrics counts the passed attestations", async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    const m = /^dsm_attestations_total\{result="passed"\} (\d+)$/m.exec(text);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(2);
    expect(text).not.toMatch(/^dsm_attestations_total\{result="failed"/m);
  }, 20_000);

  test("a TPM node does TPM work only for the mesh's validators: another admitted TPM edge asking gets an error", async () => {
    // A third TPM edge, admitted by t1's gater (its evidence verifies), talks to t1 directly.
    tpms.push(await startSwtpm({ ekCa: path.join(root, "ek-ca") }));
    await ok(["init", "--data-dir", dir("t3"), "--role", "edge", "--tpm", tpms[2]!.tcti, "--ek-chain", dir("ek-inter.pem"), "--genesis", env.DSM_MESH_GENESIS!]);
    const card = JSON.parse(fs.readFileSync(path.join(dir("t3"), "card.json"), "utf8"));
    const rogue = await peerAs("t3", card, addrs.t1!);
    try {
      const mesh = (JSON.parse(await ok(["status", "--data-dir", dir("v"), "--json"])) as { mesh: string }).mesh;
      const challenge = { v: 1, type: "enroll-challenge", mesh, node_id: ids.t1!.node, ak_name: "000b" + "11".repeat(32), credential_blob: "22".repeat(68), secret: "33".repeat(256), verifier: card.node_id, created: new Date().toISOString() };
      const enroll = await until("t1 to admit t3 and answer", 20_000, async () => {
        const r = (await rogue.request(ids.t1!.peer, "/dsm/enroll/1", challenge, 5000).catch(() => undefined)) as { error?: string } | undefined;
        return r?.error !== undefined ? r : undefined;
      });
      expect(enroll.error).toMatch(/only the mesh's validators enroll and challenge this node/);
      const attest = (await rogue.request(ids.t1!.peer, "/dsm/attest/1", { nonce: "44".repeat(32), pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }, 5000)) as { error?: string };
      expect(attest.error).toMatch(/only the mesh's validators/);
    } finally {
      await rogue.stop();
    }
  }, 60_000);

  test("an enrolled TPM edge that shows a validator a card with another AK, then never answers enrollment, loses its enrollment", async () => {
    // t1 (enrolled) goes rogue: its daemon stops, and in its place, with its libp2p key, a
    // node shows t1's card re-signed by t1's TPM identity key with a software AK beside the
    // real EK certificate, and serves no /dsm/enroll/1. The old enrollment must not stand.
    const before = JSON.parse(await ok(["status", "--data-dir", dir("v"), "--json"])) as { enrollments: { node_id: string }[] };
    expect(before.enrollments.map((e) => e.node_id)).toContain(ids.t1!.node);
    // A validator keeps the card a peer showed when it was admitted, so the new card is seen
    // by a validator that meets the peer afresh: here, the validator's daemon restarted.
    for (const n of ["t1", "v"]) {
      const p = procs.get(dir(n))!;
      procs.delete(dir(n));
      p.kill("SIGTERM");
      expect(await p.exited).toBe(0);
    }
    addrs.v = await start("v", []);
    const card = JSON.parse(fs.readFileSync(path.join(dir("t1"), "card.json"), "utf8"));
    const marker = JSON.parse(fs.readFileSync(path.join(dir("t1"), "identity.tpm.json"), "utf8")) as { handle: string };
    const key = TpmIdentityKey.load(tpms[0]!.tcti, Number(marker.handle));
    const forged = withSoftwareAk(card.tpm_evidence, certifyQualifyingData(card.node_id, card.identity_pub));
    const { sig: _s, ...body } = card;
    const rogueCard = await signBody("card", { ...body, ak_pub: Buffer.from(forged.akSec1).toString("hex"), tpm_evidence: forged.evidence }, key);
    const rogue = await peerAs("t1", rogueCard, addrs.v!);
    try {
      await until("the validator to drop t1's enrollment", 30_000, async () => {
        const st = JSON.parse(await ok(["status", "--data-dir", dir("v"), "--json"])) as { enrollments: { node_id: string }[] };
        return st.enrollments.some((e) => e.node_id === ids.t1!.node) ? undefined : st;
      });
      const st = await validatorStatus();
      expect(st.attestation.nodes.find((n) => n.node_id === ids.t1!.node)?.trust).not.toBe("tpm-enrolled");
    } finally {
      await rogue.stop();
    }
  }, 60_000);

  test("SIGTERM stops every daemon: exit 0", async () => {
    const running = [...procs.values()];
    await stopAll();
    expect(running.map((p) => p.exitCode)).toEqual(running.map(() => 0));
  }, 30_000);
});
