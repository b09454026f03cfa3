// Attestation and quarantine end to end, with the compiled binary and real software TPMs
// manufactured with EK certificates (swtpm_setup + swtpm_localca): a validator and two
// edges with TPM identities, a genesis that requires attestation with a PCR policy from a
// reference node and the local CA's root as ek_root, enrollment by credential activation
// with files, a bound quote that verifies, then PCR 7 extended on one edge: its next
// answer fails, the validator signs a quarantine request, and the next checkpoint decides
// it (one validator is the whole quorum here) and leaves out that edge's later microblocks
// while including the other edge's. An operator's lift brings them back. The refusals of the forged and borrowed answers are in
// e2e-attest-forgery.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { cleanEnv, DSM, requireBinary, runDsm } from "./helpers/e2e.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { type EkCa, haveSwtpm, startSwtpm, type Swtpm } from "./helpers/swtpm.ts";

let root: string;
let env: Record<string, string>;
const tpms: (Swtpm & { ekCa?: EkCa })[] = [];
const dir = (n: string) => path.join(root, n);
let genesisFile: string;

async function ok(args: string[], extra: Record<string, string> = {}): Promise<string> {
  const r = await runDsm(args, { ...env, ...extra });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const inMesh = () => ({ DSM_MESH_GENESIS: genesisFile });

async function emit(node: string, k: number): Promise<void> {
  await ok(["emit", "--data-dir", dir(node), "--event-type", "alert", "--payload", JSON.stringify({ k, node })], inMesh());
}

/** Everything the edges hold, imported into the validator (what the mesh will gossip). */
async function sync(): Promise<void> {
  for (const e of ["e1", "e2"]) {
    const file = path.join(root, `${e}.ndjson`);
    fs.rmSync(file, { force: true });
    await ok(["export", "--data-dir", dir(e), "-o", file], inMesh());
    await ok(["import", "--data-dir", dir("v"), file], inMesh());
  }
}

async function nodeId(node: string): Promise<string> {
  return (JSON.parse(await ok(["card", "--data-dir", dir(node), "--json"], inMesh())) as { node_id: string }).node_id;
}

async function checkpoint(): Promise<{ ranges: Record<string, [number, number]>; epoch: number; decisions?: { node_id: string; action: string }[] }> {
  // 1 s epochs: wait for the one holding the newest microblocks to close.
  await Bun.sleep(1100);
  const r = await runDsm(["checkpoint", "--data-dir", dir("v"), "--json"], { ...env, ...inMesh() });
  if (r.code !== 0) throw new Error(`dsm checkpoint exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { checkpoint: { ranges: Record<string, [number, number]>; epoch: number; decisions?: { node_id: string; action: string }[] } }).checkpoint;
}

async function pcrExtend(t: Swtpm, pcr: number): Promise<void> {
  const p = Bun.spawn(["tpm2_pcrextend", `${pcr}:sha256=${"ab".repeat(32)}`], { env: { ...process.env, TPM2TOOLS_TCTI: t.tcti }, stderr: "pipe" });
  if ((await p.exited) !== 0) throw new Error(`tpm2_pcrextend failed: ${await new Response(p.stderr).text()}`);
}

beforeAll(async () => {
  requireBinary();
  if (!haveSwtpm()) throw new Error("swtpm is not installed (apt-get install swtpm swtpm-tools tpm2-tools; .ci/run does)");
  root = tempDir();
  env = cleanEnv(root);
  const ca = path.join(root, "ek-ca");
  for (let i = 0; i < 3; i++) tpms.push(await startSwtpm({ ekCa: ca }));
  fs.writeFileSync(path.join(root, "ek-root.pem"), tpms[0]!.ekCa!.root);
  fs.writeFileSync(path.join(root, "ek-inter.pem"), tpms[0]!.ekCa!.intermediate);
  const chain = ["--ek-chain", path.join(root, "ek-inter.pem")];
  await ok(["init", "--data-dir", dir("v"), "--role", "validator", "--tpm", tpms[0]!.tcti, ...chain]);
  fs.writeFileSync(path.join(root, "v.card"), await ok(["card", "--data-dir", dir("v"), "--json"]));
  // The validator is the reference node: every fresh swtpm boots to the same PCRs.
  fs.writeFileSync(path.join(root, "policy.json"), await ok(["attest", "--golden", "--data-dir", dir("v"), "--json"]));
  genesisFile = path.join(root, "genesis.json");
  const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000).toISOString();
  await ok(["genesis", "--name", "attested", "--validator", path.join(root, "v.card"), "--pcr-policy", path.join(root, "policy.json"), "--ek-root", path.join(root, "ek-root.pem"), "--admission", "open", "--epoch-duration", "1", "--genesis-time", t0, "-o", genesisFile]);
  await ok(["init", "--data-dir", dir("e1"), "--role", "edge", "--tpm", tpms[1]!.tcti, ...chain, "--genesis", genesisFile]);
  await ok(["init", "--data-dir", dir("e2"), "--role", "edge", "--tpm", tpms[2]!.tcti, ...chain, "--genesis", genesisFile]);
}, 60_000);

/** Enrollment with files: challenge on the validator, activation on the edge, proof checked on the validator. */
async function enroll(edge: string): Promise<string> {
  const card = path.join(root, `${edge}.card`);
  fs.writeFileSync(card, await ok(["card", "--data-dir", dir(edge), "--json"], inMesh()));
  const c = path.join(root, `${edge}-enroll-c.json`);
  const a = path.join(root, `${edge}-enroll-a.json`);
  await ok(["attest", "enroll-challenge", card, "--data-dir", dir("v"), "-o", c], inMesh());
  await ok(["attest", "enroll-answer", c, "--data-dir", dir(edge), "-o", a], inMesh());
  return ok(["attest", "enroll-verify", a, "--data-dir", dir("v")], inMesh());
}

afterAll(async () => {
  for (const t of tpms) {
    await t.stop();
    fs.rmSync(t.stateDir, { recursive: true, force: true });
  }
  cleanupTempDirs();
});

describe("attestation and quarantine with real TPMs", () => {
  test("the genesis records the policy and refuses a software-key validator", async () => {
    const g = JSON.parse(fs.readFileSync(genesisFile, "utf8"));
    expect(g.attestation.required).toBe(true);
    expect(g.attestation.pcrs).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(g.attestation.digests).toHaveLength(1);
    await ok(["init", "--data-dir", dir("soft"), "--role", "validator"]);
    fs.writeFileSync(path.join(root, "soft.card"), await ok(["card", "--data-dir", dir("soft"), "--json"]));
    const r = await runDsm(["genesis", "--name", "x", "--validator", path.join(root, "soft.card"), "--pcr-policy", path.join(root, "policy.json"), "--ek-root", path.join(root, "ek-root.pem")], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/software identity key, but this genesis requires TPM attestation/);
    expect(g.attestation.ek_roots).toEqual([fs.readFileSync(path.join(root, "ek-root.pem"), "utf8")]);
    // Required attestation with no EK trusted would lock everyone out.
    const none = await runDsm(["genesis", "--name", "x", "--validator", path.join(root, "v.card"), "--pcr-policy", path.join(root, "policy.json")], env);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/--ek-root FILE .*--ek-allow DIGEST/);
  });

  test("the card carries the EK certificate chain; enrollment by credential activation with files", async () => {
    const card = JSON.parse(await ok(["card", "--data-dir", dir("e1"), "--json"], inMesh()));
    expect(card.tpm).toBe(true);
    expect(card.tpm_evidence.ek_certificates).toHaveLength(2); // the EK certificate from NV, then --ek-chain's intermediate
    // openssl agrees the chain is good.
    const leaf = path.join(root, "e1-ek.der");
    fs.writeFileSync(leaf, Buffer.from(card.tpm_evidence.ek_certificates[0], "hex"));
    const pem = Bun.spawnSync(["openssl", "x509", "-inform", "DER", "-in", leaf, "-out", `${leaf}.pem`]);
    expect(pem.exitCode).toBe(0);
    const v = Bun.spawnSync(["openssl", "verify", "-CAfile", path.join(root, "ek-root.pem"), "-untrusted", path.join(root, "ek-inter.pem"), `${leaf}.pem`], { stderr: "pipe" });
    expect(v.stdout.toString()).toContain(": OK");
    // Before enrollment the validator imports nothing of e1: the mesh requires edges to attest.
    await emit("e1", 100);
    const file = path.join(root, "e1-early.ndjson");
    await ok(["export", "--data-dir", dir("e1"), "-o", file], inMesh());
    const early = await runDsm(["import", "--data-dir", dir("v"), file, "--json"], { ...env, ...inMesh() });
    expect(early.stderr).toMatch(/no verified enrollment/);
    expect(JSON.parse(early.stdout).stored).toBe(0);
    for (const e of ["e1", "e2"]) expect(await enroll(e)).toMatch(/enrolled: TPM-rooted, EK certificate from swtpm-localca/);
    // A challenge is answered once: the same answer again is refused.
    const again = await runDsm(["attest", "enroll-verify", path.join(root, "e1-enroll-a.json"), "--data-dir", dir("v")], { ...env, ...inMesh() });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/answers no challenge this data dir sent and still waits on/);
  }, 60_000);

  test("a healthy edge's answer verifies; the wrong nonce does not", async () => {
    const nonce = "11".repeat(32);
    const answer = path.join(root, "e1-ok.json");
    const e1 = await nodeId("e1");
    await ok(["attest", "--data-dir", dir("e1"), "--nonce", nonce, "-o", answer], inMesh());
    const good = await runDsm(["attest", "verify", answer, "--node", e1, "--genesis", genesisFile, "--nonce", nonce, "--json", "--data-dir", dir("v")], { ...env, ...inMesh() });
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout).ok).toBe(true);
    // tpm2_checkquote accepts the same quote dsm accepts.
    const a = JSON.parse(fs.readFileSync(answer, "utf8"));
    const card = JSON.parse(await ok(["card", "--data-dir", dir("e1"), "--json"], inMesh()));
    const akPem = path.join(root, "e1-ak.pem");
    const { tpmPublicKeyObject, parseTpmPublic } = await import("../src/tpm/public-area.ts");
    fs.writeFileSync(akPem, tpmPublicKeyObject(parseTpmPublic(Buffer.from(card.tpm_evidence.ak_public, "hex"))).export({ type: "spki", format: "pem" }) as string);
    fs.writeFileSync(path.join(root, "q.msg"), Buffer.from(a.attest, "hex"));
    fs.writeFileSync(path.join(root, "q.sig"), Buffer.from(a.signature, "hex"));
    const { quoteQualifyingData } = await import("../src/protocol/enrollment.ts");
    const { parsePublicArea } = await import("../src/tpm/quote.ts");
    const akName = Buffer.from(parsePublicArea(Buffer.from(card.tpm_evidence.ak_public, "hex")).name).toString("hex");
    const q = Buffer.from(quoteQualifyingData(a.mesh, e1, akName, nonce)).toString("hex");
    const check = Bun.spawnSync(["tpm2_checkquote", "-u", akPem, "-m", path.join(root, "q.msg"), "-s", path.join(root, "q.sig"), "-g", "sha256", "-q", q], { stderr: "pipe" });
    expect(check.exitCode).toBe(0);
    const stale = await runDsm(["attest", "verify", answer, "--node", e1, "--genesis", genesisFile, "--nonce", "22".repeat(32), "--data-dir", dir("v")], { ...env, ...inMesh() });
    expect(stale.code).toBe(2);
    expect(stale.stderr).toMatch(/FAILED \(stale_nonce\)/);
    // A software-key node has nothing to attest with.
    const soft = await runDsm(["attest", "--data-dir", dir("soft"), "--nonce", nonce], env);
    expect(soft.code).toBe(1);
    expect(soft.stderr).toMatch(/software key: it has no TPM/);
  });

  test("PCR 7 changes on one edge: its answer fails, it is quarantined, and only its later microblocks stay out", async () => {
    const e1 = await nodeId("e1");
    const e2 = await nodeId("e2");
    for (let k = 0; k < 2; k++) {
      await emit("e1", k);
      await emit("e2", k);
    }
    await sync();
    await pcrExtend(tpms[1]!, 7);
    const nonce = "33".repeat(32);
    const answer = path.join(root, "e1-bad.json");
    await ok(["attest", "--data-dir", dir("e1"), "--nonce", nonce, "-o", answer], inMesh());
    const bad = await runDsm(["attest", "verify", answer, "--node", e1, "--nonce", nonce, "--quarantine", "--data-dir", dir("v"), "--json"], { ...env, ...inMesh() });
    expect(bad.code).toBe(2);
    const out = JSON.parse(bad.stdout);
    expect(out.check).toBe("pcr-digest");
    expect(out.quarantine).toMatchObject({ type: "Q", node_id: e1, action: "quarantine", from_seq: 4, reason: "attestation_failed", validator: 0 });
    // Both edges go on producing; the validator receives everything.
    for (let k = 2; k < 4; k++) {
      await emit("e1", k);
      await emit("e2", k);
    }
    await sync();
    const cp = await checkpoint();
    expect(cp.ranges[e2]).toEqual([1, 4]);
    expect(cp.ranges[e1]).toEqual([1, 3]); // seq 1 was emitted before enrollment, imported after
    expect(cp.decisions!.map((d) => [d.node_id, d.action])).toEqual([[e1, "quarantine"]]);

    const list = JSON.parse(await ok(["quarantine", "list", "--data-dir", dir("v"), "--json"], inMesh()));
    expect(list.quarantined).toEqual([{ node_id: e1, from_seq: 4, reason: expect.stringContaining("attestation_failed") }]);
  }, 60_000);

  test("records travel: another node imports the validator's record; a forged one is refused", async () => {
    const list = JSON.parse(await ok(["quarantine", "list", "--data-dir", dir("v"), "--json"], inMesh()));
    const file = path.join(root, "records.json");
    fs.writeFileSync(file, JSON.stringify(list.records));
    const imported = JSON.parse(await ok(["quarantine", "import", file, "--data-dir", dir("e2"), "--json"], inMesh()));
    expect(imported).toEqual({ records: 1, added: 1 });
    const forged = { ...list.records[0], from_seq: 1 };
    fs.writeFileSync(file, JSON.stringify([forged]));
    const r = await runDsm(["quarantine", "import", file, "--data-dir", dir("e2")], { ...env, ...inMesh() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/signature of validator 0 does not verify/);
    // An edge cannot sign records.
    const e1 = await nodeId("e1");
    const notValidator = await runDsm(["quarantine", "add", e1, "--detail", "x", "--data-dir", dir("e2")], { ...env, ...inMesh() });
    expect(notValidator.code).toBe(1);
    expect(notValidator.stderr).toMatch(/only a validator signs quarantine requests/);
  }, 30_000);

  test("an operator's lift on the validator brings the held-back microblocks into the next checkpoint", async () => {
    const e1 = await nodeId("e1");
    await ok(["quarantine", "lift", e1.slice(0, 12), "--detail", "PCR 7 change was a planned firmware update", "--data-dir", dir("v")], inMesh());
    // A request until a checkpoint decides it.
    const before = JSON.parse(await ok(["quarantine", "list", "--data-dir", dir("v"), "--json"], inMesh()));
    expect(before.quarantined.map((q: { node_id: string }) => q.node_id)).toEqual([e1]);
    expect(before.pending).toEqual([expect.objectContaining({ node_id: e1, action: "lift", validators: [0], needed: 0 })]);
    await emit("e2", 4);
    await sync();
    const cp = await checkpoint();
    expect(cp.decisions!.map((d) => [d.node_id, d.action])).toEqual([[e1, "lift"]]);
    expect(cp.ranges[e1]).toEqual([4, 5]);
    const list = JSON.parse(await ok(["quarantine", "list", "--data-dir", dir("v"), "--json"], inMesh()));
    expect(list.quarantined).toEqual([]);
  }, 30_000);

  test("verify and verify-proof say which links of the chain of trust each node has", async () => {
    const e2 = await nodeId("e2");
    const v = JSON.parse(await ok(["verify", "--data-dir", dir("v"), "--json"], inMesh()));
    expect(v.ok).toBe(true);
    expect(v.trust.find((t: { node_id: string }) => t.node_id === e2)).toMatchObject({ trust: "tpm-enrolled", detail: expect.stringContaining("EK certificate from swtpm-localca") });
    const first = JSON.parse((await ok(["log", "--data-dir", dir("v"), "--node", e2.slice(0, 12), "--json", "--limit", "1"], inMesh())).split("\n")[0]!);
    const proof = path.join(root, "e2-proof.json");
    await ok(["proof", "inclusion", first.id, "--data-dir", dir("v"), "-o", proof], inMesh());
    const r = await runDsm(["verify-proof", proof, "--genesis", genesisFile], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/node key: TPM-rooted, EK certificate from swtpm-localca → AK \(enrolled by the validators: the genesis requires it of this role\) → identity key \(certified by the AK\) → signing key/);
    // A card swapped for another node's is refused, not believed.
    const b = JSON.parse(fs.readFileSync(proof, "utf8"));
    b.node_card = JSON.parse(await ok(["card", "--data-dir", dir("e1"), "--json"], inMesh()));
    fs.writeFileSync(proof, JSON.stringify(b));
    const swapped = await runDsm(["verify-proof", proof, "--genesis", genesisFile], env);
    expect(swapped.code).toBe(2);
    expect(swapped.stderr).toMatch(/node card: is node .* not the microblock's node/);
  }, 30_000);

  test("over the mesh: the validator's daemon challenges each node as it connects; the changed edge is quarantined, the healthy one passes", async () => {
    const e1 = await nodeId("e1");
    const procs: ReturnType<typeof Bun.spawn>[] = [];
    const start = async (d: string, bootstrap: string[]) => {
      fs.rmSync(path.join(d, "run.json"), { force: true });
      const p = Bun.spawn([DSM, "run", "--data-dir", d], {
        env: { ...env, ...inMesh(), DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_GOSSIP_BOOTSTRAP_NODES: bootstrap.join(","), DSM_ATTESTATION_INTERVAL_EPOCHS: "2" },
        stdout: "ignore",
        stderr: "ignore",
      });
      procs.push(p);
      for (let i = 0; i < 200 && !fs.existsSync(path.join(d, "run.json")); i++) await Bun.sleep(50);
      const info = JSON.parse(fs.readFileSync(path.join(d, "run.json"), "utf8")) as { addrs: string[]; peer_id: string };
      return `${info.addrs[0]}/p2p/${info.peer_id}`;
    };
    try {
      const v = await start(dir("v"), []);
      await start(dir("e1"), [v]);
      await start(dir("e2"), [v]);
      let status: { attestation: { passed: number; failed: number } } | null = null;
      for (let i = 0; i < 80; i++) {
        status = JSON.parse(await ok(["status", "--data-dir", dir("v"), "--json"], inMesh())).daemon;
        if (status!.attestation.failed >= 1 && status!.attestation.passed >= 1) break;
        await Bun.sleep(250);
      }
      expect(status!.attestation.failed).toBeGreaterThanOrEqual(1); // e1: PCR 7 still extended
      expect(status!.attestation.passed).toBeGreaterThanOrEqual(1); // e2
      // The validator's request; its daemon's next checkpoint decides it (it alone is the quorum).
      let list: { quarantined: { node_id: string }[]; records: { node_id: string; action: string; reason: string; detail: string }[] } = { quarantined: [], records: [] };
      for (let i = 0; i < 60 && list.quarantined.length === 0; i++) {
        list = JSON.parse(await ok(["quarantine", "list", "--data-dir", dir("v"), "--json"], inMesh()));
        await Bun.sleep(250);
      }
      expect(list.quarantined.map((q) => q.node_id)).toEqual([e1]);
      expect(list.records.at(-1)).toMatchObject({ node_id: e1, action: "quarantine", reason: "attestation_failed", detail: expect.stringContaining("pcr-digest") });
      // The decision reaches the edges with the checkpoint's certificate.
      let onEdge: { quarantined: { node_id: string }[] } = { quarantined: [] };
      for (let i = 0; i < 40 && onEdge.quarantined.length === 0; i++) {
        onEdge = JSON.parse(await ok(["quarantine", "list", "--data-dir", dir("e2"), "--json"], inMesh()));
        await Bun.sleep(250);
      }
      expect(onEdge.quarantined.map((q) => q.node_id)).toEqual([e1]);
    } finally {
      for (const p of procs) p.kill("SIGTERM");
      await Promise.all(procs.map((p) => p.exited));
    }
  }, 60_000);
});
