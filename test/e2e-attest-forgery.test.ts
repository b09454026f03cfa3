// The attacks of issue 13, tried from outside against the compiled binary with real swtpm
// TPMs manufactured with EK certificates: each is refused, with its own named check.
//   - a software node that re-signs its card with tpm: true, a software "AK" and forged
//     evidence (a real EK certificate copied from another node), then makes its own quote;
//   - an AK that is not in the EK's TPM (another TPM's AK beside a copied EK);
//   - an EK certificate from a CA the genesis does not trust, expired, or tampered with;
//   - a quote relayed from another enrolled node, and a replayed one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { p256 } from "@noble/curves/nist.js";
import { signBody } from "../src/crypto/signed.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { type NodeCard, type NodeCardBody } from "../src/protocol/card.ts";
import { certifyQualifyingData, quoteQualifyingData } from "../src/protocol/enrollment.ts";
import { parseGenesis } from "../src/protocol/genesis.ts";
import { ekTemplate } from "../src/tpm/ek.ts";
import { verifyEvidence } from "../src/tpm/evidence.ts";
import { qualifiedName } from "../src/tpm/quote.ts";
import { TpmIdentityKey } from "../src/tpm/tpm-key.ts";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { attestHeader, fakePublicArea, softSign, tpmName, wire } from "./helpers/tpm-forge.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { type EkCa, haveSwtpm, startSwtpm, type Swtpm } from "./helpers/swtpm.ts";

let root: string;
let env: Record<string, string>;
let genesisFile: string;
const tpm: Record<string, Swtpm & { ekCa?: EkCa }> = {};
const dir = (n: string) => path.join(root, n);
const file = (n: string) => path.join(root, n);
const inMesh = () => ({ DSM_MESH_GENESIS: genesisFile });
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

async function dsm(args: string[]) {
  return runDsm(args, { ...env, ...inMesh() });
}

async function ok(args: string[]): Promise<string> {
  const r = await dsm(args);
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function card(node: string): Promise<NodeCard> {
  return JSON.parse(await ok(["card", "--data-dir", dir(node), "--json"])) as NodeCard;
}

function writeJson(name: string, value: unknown): string {
  fs.writeFileSync(file(name), JSON.stringify(value));
  return file(name);
}

beforeAll(async () => {
  requireBinary();
  if (!haveSwtpm()) throw new Error("swtpm is not installed (apt-get install swtpm swtpm-tools tpm2-tools; .ci/run does)");
  root = tempDir();
  env = cleanEnv(root);
  tpm.e1 = await startSwtpm({ ekCa: file("ca-a") });
  tpm.e2 = await startSwtpm({ ekCa: file("ca-a") });
  tpm.e3 = await startSwtpm({ ekCa: file("ca-b") }); // a CA the genesis does not trust
  fs.writeFileSync(file("root-a.pem"), tpm.e1.ekCa!.root);
  fs.writeFileSync(file("inter-a.pem"), tpm.e1.ekCa!.intermediate);
  fs.writeFileSync(file("inter-b.pem"), tpm.e3.ekCa!.intermediate);
  await ok(["init", "--data-dir", dir("v"), "--role", "validator"]);
  fs.writeFileSync(file("v.card"), await ok(["card", "--data-dir", dir("v"), "--json"]));
  // Fresh swtpms boot to the same PCRs: the policy of one is the policy of all.
  await ok(["init", "--data-dir", dir("ref"), "--tpm", tpm.e1.tcti, "--tpm-handle", "0x810001ff"]);
  fs.writeFileSync(file("policy.json"), await ok(["attest", "--golden", "--data-dir", dir("ref"), "--json"]));
  genesisFile = file("genesis.json");
  await ok(["genesis", "--name", "forgery", "--validator", file("v.card"), "--pcr-policy", file("policy.json"), "--ek-root", file("root-a.pem"), "--attest-roles", "edge", "--admission", "open", "-o", genesisFile]);
  await ok(["init", "--data-dir", dir("v"), "--role", "validator", "--genesis", genesisFile, "--force"]);
  for (const [n, chain] of [["e1", "inter-a.pem"], ["e2", "inter-a.pem"], ["e3", "inter-b.pem"]] as const) {
    await ok(["init", "--data-dir", dir(n), "--tpm", tpm[n]!.tcti, "--ek-chain", file(chain), "--genesis", genesisFile]);
  }
  await ok(["init", "--data-dir", dir("soft"), "--genesis", genesisFile]);
}, 90_000);

afterAll(async () => {
  for (const t of Object.values(tpm)) {
    await t.stop();
    fs.rmSync(t.stateDir, { recursive: true, force: true });
  }
  cleanupTempDirs();
});

async function enroll(node: string): Promise<void> {
  const c = writeJson(`${node}.card.json`, await card(node));
  await ok(["attest", "enroll-challenge", c, "--data-dir", dir("v"), "-o", file(`${node}.c.json`)]);
  await ok(["attest", "enroll-answer", file(`${node}.c.json`), "--data-dir", dir(node), "-o", file(`${node}.a.json`)]);
  await ok(["attest", "enroll-verify", file(`${node}.a.json`), "--data-dir", dir("v")]);
}

describe("forged and borrowed TPM trust is refused, each by its own check", () => {
  test("a software node re-signing its card with tpm: true and a software AK: no evidence, then forged evidence, then a self-made quote", async () => {
    const soft = await card("soft");
    const identity = SoftwareIdentityKey.load(path.join(dir("soft"), "identity.pem"));
    const ak = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    const akSec1 = new Uint8Array(p256.Point.fromBytes(new Uint8Array(ak.publicKey.export({ type: "spki", format: "der" }).subarray(-65))).toBytes(true));
    const { sig: _s, ...body } = soft;
    // 1. tpm: true and an ak_pub, nothing else: no evidence, a software node.
    const bare = await signBody("card", { ...body, tpm: true, ak_pub: hex(akSec1) } as NodeCardBody, identity);
    const r1 = await dsm(["attest", "enroll-challenge", writeJson("forged1.json", bare), "--data-dir", dir("v")]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/\(no_evidence\)/);
    // 2. Evidence that hangs together, around a real EK certificate copied from e1.
    const e1 = await card("e1");
    const akPublic = fakePublicArea(akSec1, true);
    const idPublic = fakePublicArea(identity.publicKey, false);
    const certify = wire(attestHeader(0x8017, akPublic, certifyQualifyingData(soft.node_id, soft.identity_pub)), { b2: tpmName(idPublic) }, { b2: qualifiedName(tpmName(idPublic)) });
    const evidence = {
      ek_public: e1.tpm_evidence!.ek_public,
      ek_certificates: e1.tpm_evidence!.ek_certificates,
      ak_public: hex(akPublic),
      identity_public: hex(idPublic),
      certify_attest: hex(certify),
      certify_signature: hex(softSign(ak.privateKey, certify)),
    };
    const forged = await signBody("card", { ...body, tpm: true, ak_pub: hex(akSec1), tpm_evidence: evidence } as NodeCardBody, identity);
    const genesis = parseGenesis(JSON.parse(fs.readFileSync(genesisFile, "utf8")), { checkPop: false });
    // Every link that needs no TPM holds: only credential activation can tell.
    expect(verifyEvidence(forged, genesis.attestation, Date.now()).ok).toBe(true);
    await ok(["attest", "enroll-challenge", writeJson("forged2.json", forged), "--data-dir", dir("v"), "-o", file("forged2.c.json")]);
    const noTpm = await dsm(["attest", "enroll-answer", file("forged2.c.json"), "--data-dir", dir("soft")]);
    expect(noTpm.code).toBe(1);
    expect(noTpm.stderr).toMatch(/software key: it has no TPM/);
    // Guessing the proof does not help.
    const challenge = JSON.parse(fs.readFileSync(file("forged2.c.json"), "utf8"));
    const { challengeDigest } = await import("../src/protocol/enrollment.ts");
    const guess = { v: 1, type: "enroll-answer", mesh: challenge.mesh, node_id: soft.node_id, challenge: challengeDigest(challenge), proof: hex(crypto.randomBytes(32)) };
    const r2 = await dsm(["attest", "enroll-verify", writeJson("forged2.a.json", guess), "--data-dir", dir("v")]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/FAILED \(activation\).*could not activate the credential/);
    // 3. Its own "quote" over the nonce and the golden digest: not enrolled, so not attested.
    const nonce = hex(crypto.randomBytes(32));
    const policy = JSON.parse(fs.readFileSync(file("policy.json"), "utf8"));
    const quote = wire(attestHeader(0x8018, akPublic, quoteQualifyingData(challenge.mesh, soft.node_id, hex(tpmName(akPublic)), nonce)), [1, 4], [0x000b, 2], 3, 0xff, 0, 0, { b2: bytes(policy.digests[0]) });
    const answer = { v: 2, type: "attestation", mesh: challenge.mesh, node_id: soft.node_id, nonce, pcrs: policy.pcrs, attest: hex(quote), signature: hex(softSign(ak.privateKey, quote)) };
    const r3 = await dsm(["attest", "verify", writeJson("self-quote.json", answer), "--node", soft.node_id, "--nonce", nonce, "--data-dir", dir("v")]);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(/FAILED \(not_enrolled\)/);
  }, 60_000);

  test("an AK that is not in the EK's TPM: e2's AK and identity beside e1's EK certificate fail credential activation", async () => {
    const e1 = await card("e1");
    const e2 = await card("e2");
    const marker = JSON.parse(fs.readFileSync(path.join(dir("e2"), "identity.tpm.json"), "utf8")) as { handle: string };
    const key = TpmIdentityKey.load(tpm.e2!.tcti, Number(marker.handle));
    const { sig: _s, ...body } = e2;
    const borrowed = await signBody("card", { ...body, tpm_evidence: { ...e2.tpm_evidence!, ek_public: e1.tpm_evidence!.ek_public, ek_certificates: e1.tpm_evidence!.ek_certificates } }, key);
    await ok(["attest", "enroll-challenge", writeJson("borrowed.json", borrowed), "--data-dir", dir("v"), "-o", file("borrowed.c.json")]);
    const r = await dsm(["attest", "enroll-answer", file("borrowed.c.json"), "--data-dir", dir("e2")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot answer .*ActivateCredential/);
    // And e1's TPM, which holds that EK, does not hold e2's AK: it is not e1's challenge either.
    const r2 = await dsm(["attest", "enroll-answer", file("borrowed.c.json"), "--data-dir", dir("e1")]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/the challenge is for node/);
  }, 30_000);

  test("EK certificates: from an untrusted CA, expired, or with a tampered signature", async () => {
    // e3's CA has the same names as the trusted one (every swtpm_localca does) but its own
    // keys: its intermediate does not verify under the genesis root.
    const e3 = await card("e3");
    const r = await dsm(["attest", "enroll-challenge", writeJson("e3.card.json", e3), "--data-dir", dir("v")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\(ek_chain\): EK certificate: CN=swtpm-localca: .*signature does not verify with the key of CN=swtpm-localca-rootca/);
    const genesis = parseGenesis(JSON.parse(fs.readFileSync(genesisFile, "utf8")), { checkPop: false });
    // Without its intermediate, no path reaches a root the genesis trusts.
    const alone = { ...e3, tpm_evidence: { ...e3.tpm_evidence!, ek_certificates: e3.tpm_evidence!.ek_certificates.slice(0, 1) } };
    expect(verifyEvidence(alone, genesis.attestation, Date.now())).toMatchObject({ ok: false, check: "ek_untrusted" });
    const e1 = await card("e1");
    expect(verifyEvidence(e1, genesis.attestation, Date.now())).toMatchObject({ ok: true, ek: { method: "certificate", issuer: "swtpm-localca" } });
    // swtpm_localca certificates run to 9999-12-31.
    const late = verifyEvidence(e1, genesis.attestation, Date.UTC(10000, 0, 2));
    expect(late).toMatchObject({ ok: false, check: "ek_chain" });
    expect((late as { reason: string }).reason).toMatch(/expired/);
    // One byte of the EK certificate's signature changed: refused here, and by openssl.
    const leaf = bytes(e1.tpm_evidence!.ek_certificates[0]!);
    leaf[leaf.length - 5]! ^= 0x01;
    const tampered = { ...e1, tpm_evidence: { ...e1.tpm_evidence!, ek_certificates: [hex(leaf), ...e1.tpm_evidence!.ek_certificates.slice(1)] } };
    const bad = verifyEvidence(tampered, genesis.attestation, Date.now());
    expect(bad).toMatchObject({ ok: false, check: "ek_chain" });
    expect((bad as { reason: string }).reason).toMatch(/signature/);
    fs.writeFileSync(file("tampered.der"), leaf);
    expect(Bun.spawnSync(["openssl", "x509", "-inform", "DER", "-in", file("tampered.der"), "-out", file("tampered.pem")]).exitCode).toBe(0);
    const o = Bun.spawnSync(["openssl", "verify", "-CAfile", file("root-a.pem"), "-untrusted", file("inter-a.pem"), file("tampered.pem")], { stderr: "pipe" });
    expect(o.exitCode).not.toBe(0);
    // A TLS server certificate from the same CA, its key in software, passed off as an EK
    // (the TCG RSA template around its modulus): refused, as no EK certificate.
    const caKey = fs.readFileSync(path.join(file("ca-a"), "signkey.pem"), "utf8").match(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/)![0];
    fs.writeFileSync(file("ca-a.key"), caKey + "\n");
    fs.writeFileSync(file("tls.ext"), "keyUsage=critical,keyEncipherment,digitalSignature\nextendedKeyUsage=serverAuth\n");
    const sh = (cmd: string[]) => expect(Bun.spawnSync(cmd, { stderr: "pipe" }).exitCode).toBe(0);
    sh(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", file("tls.key"), "-subj", "/CN=router.example", "-out", file("tls.csr")]);
    sh(["openssl", "x509", "-req", "-in", file("tls.csr"), "-CA", file("inter-a.pem"), "-CAkey", file("ca-a.key"), "-CAcreateserial", "-days", "30", "-extfile", file("tls.ext"), "-out", file("tls.pem")]);
    const tlsDer = new Uint8Array(Buffer.from(fs.readFileSync(file("tls.pem"), "utf8").replace(/-----[A-Z ]+-----|\s/g, ""), "base64"));
    const modulus = new Uint8Array(Buffer.from((crypto.createPrivateKey(fs.readFileSync(file("tls.key"))).export({ format: "jwk" }) as { n: string }).n, "base64url"));
    const template = ekTemplate("rsa2048");
    const fakeEk = Uint8Array.from([...template.subarray(0, template.length - 256), ...modulus]);
    const tlsAsEk = { ...e1, tpm_evidence: { ...e1.tpm_evidence!, ek_public: hex(fakeEk), ek_certificates: [hex(tlsDer), e1.tpm_evidence!.ek_certificates[1]!] } };
    const tls = verifyEvidence(tlsAsEk, genesis.attestation, Date.now());
    expect(tls).toMatchObject({ ok: false, check: "ek_chain" });
    expect((tls as { reason: string }).reason).toMatch(/does not include tcg-kp-EKCertificate .*not an EK certificate/);
    const good = Bun.spawnSync(["openssl", "x509", "-inform", "DER", "-out", file("e1-ek.pem")], { stdin: bytes(e1.tpm_evidence!.ek_certificates[0]!) });
    expect(good.exitCode).toBe(0);
    expect(Bun.spawnSync(["openssl", "verify", "-CAfile", file("root-a.pem"), "-untrusted", file("inter-a.pem"), file("e1-ek.pem")]).exitCode).toBe(0);
  }, 30_000);

  test("a quote relayed from another enrolled node, and a replayed one, fail with the check named", async () => {
    await enroll("e1");
    await enroll("e2");
    const e1 = (await card("e1")).node_id;
    // The validator challenges e1; e1 (compromised) relays the nonce to e2, a clean TPM node.
    const nonce = hex(crypto.randomBytes(32));
    await ok(["attest", "--nonce", nonce, "--data-dir", dir("e2"), "-o", file("relayed.json")]);
    const asIs = await dsm(["attest", "verify", file("relayed.json"), "--node", e1, "--nonce", nonce, "--data-dir", dir("v")]);
    expect(asIs.code).toBe(2);
    expect(asIs.stderr).toMatch(/FAILED \(wrong_node\)/);
    const relabelled = { ...JSON.parse(fs.readFileSync(file("relayed.json"), "utf8")), node_id: e1 };
    const r = await dsm(["attest", "verify", writeJson("relabelled.json", relabelled), "--node", e1, "--nonce", nonce, "--data-dir", dir("v")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/FAILED \(qualified-signer\).*not made by the AK enrolled for this node/);
    // e1's own answer passes; the same answer to a later challenge does not, nor with its nonce rewritten.
    await ok(["attest", "--nonce", nonce, "--data-dir", dir("e1"), "-o", file("e1-answer.json")]);
    await ok(["attest", "verify", file("e1-answer.json"), "--node", e1, "--nonce", nonce, "--data-dir", dir("v")]);
    const later = hex(crypto.randomBytes(32));
    const replay = await dsm(["attest", "verify", file("e1-answer.json"), "--node", e1, "--nonce", later, "--data-dir", dir("v")]);
    expect(replay.code).toBe(2);
    expect(replay.stderr).toMatch(/FAILED \(stale_nonce\)/);
    const rewritten = { ...JSON.parse(fs.readFileSync(file("e1-answer.json"), "utf8")), nonce: later };
    const r2 = await dsm(["attest", "verify", writeJson("rewritten.json", rewritten), "--node", e1, "--nonce", later, "--data-dir", dir("v")]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/FAILED \(nonce\).*relayed from another node, or replayed/);
  }, 60_000);
});
