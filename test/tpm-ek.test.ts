// The TPM side of EK-rooted enrollment against real software TPMs, no mocks:
// - `mfg`: swtpm manufactured by swtpm_setup --create-ek-cert (RSA 2048 EK at 0x81010001 with
//   its certificate in NV 0x01c00002, ECC P-384 EK at 0x81010016 with NV 0x01c00016, under a
//   swtpm_localca root and intermediate);
// - `plain`: swtpm with no EK and no certificate (as tpm.test.ts uses it).
// Cross-checked with tpm2-tools (nvread, readpublic, createek, makecredential -T none,
// checkquote) and openssl. A TCP proxy in a child process between ESYS and swtpm records the
// bytes on the "bus" to show what the EK-salted sessions encrypt.
//
// Only one TPM client at a time per swtpm, and swtpm has 3 object slots with no resource
// manager: every tool that loads an object is followed by tpm2_flushcontext -t, every FFI
// connection is closed before a tool runs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { TPMA_SESSION_CONTINUESESSION, TPMA_SESSION_DECRYPT, TPMA_SESSION_ENCRYPT } from "../ffi/tss2.ts";
import { p256 } from "@noble/curves/nist.js";
import { importPublicKey, verify as p256Verify } from "../src/crypto/p256.ts";
import { toHex } from "../src/encoding/hex.ts";
import { sha256 } from "../src/crypto/sha256.ts";
import {
  derSequence,
  EK_CERT_NV,
  EK_HANDLE,
  EK_KINDS,
  EkCertificateMismatch,
  type EkKind,
  ekPolicySession,
  ekPublicKey,
  ekTemplate,
  endorsementOf,
  findEkCertificate,
  isEkOfTemplate,
  loadEk,
  POLICY_A_SHA256,
  POLICY_B_SHA384,
  readEkCertificate,
} from "../src/tpm/ek.ts";
import { parseAttest, parsePublicArea, parseSignatureEcdsa, pcrCompositeDigest, qualifiedName, unwrapTpm2b, verifyQuote } from "../src/tpm/quote.ts";
import { TpmIdentityKey, withTpm } from "../src/tpm/tpm-key.ts";
import { eccSigningTemplate, isHandleEmpty, Tpm } from "../src/tpm/tpm.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { startSwtpm, tpmError, type EkCa, type Swtpm } from "./helpers/swtpm.ts";

const KEY_HANDLE = 0x81000100;
const PCRS = [0, 1, 2, 3, 4, 5, 6, 7];
const TPM_CC_SIGN = Uint8Array.of(0x00, 0x00, 0x01, 0x5d);
const TPM_CC_QUOTE = Uint8Array.of(0x00, 0x00, 0x01, 0x58);
const TPM_CC_ACTIVATE_CREDENTIAL = Uint8Array.of(0x00, 0x00, 0x01, 0x47);
const TPM_RH_OWNER = Uint8Array.of(0x40, 0x00, 0x00, 0x01);

let mfg: Swtpm & { ekCa?: EkCa };
let plain: Swtpm;
let work = "";
let mfgKey: TpmIdentityKey;
let plainKey: TpmIdentityKey;

const random = (n: number) => new Uint8Array(crypto.randomBytes(n));
const file = (name: string) => new Uint8Array(fs.readFileSync(path.join(work, name)));
const put = (name: string, b: Uint8Array | string) => fs.writeFileSync(path.join(work, name), b);
const tpm2b = (b: Uint8Array) => Uint8Array.from([b.length >> 8, b.length & 0xff, ...b]);

// tpm2-tools that leave a transient object loaded (no resource manager here)
const LOADS_OBJECTS = new Set(["tpm2_createek", "tpm2_readpublic", "tpm2_createprimary"]);

function tools(t: Swtpm, args: string[]): string {
  const out = run(t, args);
  if (LOADS_OBJECTS.has(args[0]!)) run(t, ["tpm2_flushcontext", "-t"]);
  return out;
}

function run(t: Swtpm | null, args: string[]): string {
  const env = t ? { ...process.env, TPM2TOOLS_TCTI: t.tcti } : process.env;
  const p = Bun.spawnSync(args, { cwd: work, env, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")} failed (${p.exitCode}): ${p.stderr.toString()}`);
  return p.stdout.toString();
}

/** tpm2-tools' credential file (lib/files.c, tpm2_makecredential): u32 0xBADCC0DE, u32 version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET. */
function readCredentialFile(b: Uint8Array): { blob: Uint8Array; secret: Uint8Array } {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  expect(dv.getUint32(0)).toBe(0xbadcc0de);
  expect(dv.getUint32(4)).toBe(1);
  const n = dv.getUint16(8);
  const blob = b.slice(10, 10 + n);
  const m = dv.getUint16(10 + n);
  const secret = b.slice(12 + n, 12 + n + m);
  expect(12 + n + m).toBe(b.length);
  return { blob, secret };
}

/** tpm2_makecredential -T none: a credential for `name` that only the holder of `ekPublic` (TPMT_PUBLIC) can activate. */
function makeCredential(ekPublic: Uint8Array, name: Uint8Array, secret: Uint8Array): { blob: Uint8Array; secret: Uint8Array } {
  put("ek.pub", tpm2b(ekPublic));
  put("cred.secret", secret);
  fs.rmSync(path.join(work, "cred.out"), { force: true });
  run(null, ["tpm2_makecredential", "-T", "none", "-e", "ek.pub", "-s", "cred.secret", "-n", toHex(name), "-o", "cred.out"]);
  return readCredentialFile(file("cred.out"));
}

/** TPMS_CERTIFY_INFO of a TPMS_ATTEST of type TPM_ST_ATTEST_CERTIFY: the certified object's name and qualified name. */
function certifyInfo(attest: Uint8Array): { name: Uint8Array; qualifiedName: Uint8Array; extraData: Uint8Array; qualifiedSigner: Uint8Array } {
  const a = parseAttest(attest);
  expect(a.magic).toBe(0xff544347);
  expect(a.type).toBe(0x8017);
  const b = a.attested!;
  const n = (b[0]! << 8) | b[1]!;
  const name = b.slice(2, 2 + n);
  const m = (b[2 + n]! << 8) | b[3 + n]!;
  const qn = b.slice(4 + n, 4 + n + m);
  expect(4 + n + m).toBe(b.length);
  return { name, qualifiedName: qn, extraData: a.extraData, qualifiedSigner: a.qualifiedSigner };
}

/** ECDSA-SHA256 of a TPMT_SIGNATURE over `message` under a P-256 TPMT_PUBLIC (no low-S rule: TPMs do not normalise). */
function verifiesUnder(publicArea: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const pub = parsePublicArea(publicArea);
  const sig = parseSignatureEcdsa(signature);
  const key = crypto.createPublicKey({ key: { kty: "EC", crv: "P-256", x: Buffer.from(pub.x).toString("base64url"), y: Buffer.from(pub.y).toString("base64url") }, format: "jwk" });
  return crypto.verify("sha256", message, { key, dsaEncoding: "ieee-p1363" }, Buffer.concat([sig.r, sig.s]));
}

function includes(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay).indexOf(Buffer.from(needle)) >= 0;
}

beforeAll(async () => {
  work = tempDir("dsm-tpm-ek-");
  mfg = await startSwtpm({ ekCa: tempDir("dsm-ekca-") });
  plain = await startSwtpm(tempDir("dsm-swtpm-plain-"));
  mfgKey = TpmIdentityKey.create(mfg.tcti, { handle: KEY_HANDLE, explicit: true }).key;
  plainKey = TpmIdentityKey.create(plain.tcti, { handle: KEY_HANDLE, explicit: true }).key;
});

afterAll(async () => {
  await mfg?.stop();
  await plain?.stop();
  cleanupTempDirs();
});

// ---------------------------------------------------------------------------------------------
describe("EK certificates from NV", () => {
  test("nvRead gives the bytes tpm2_nvread -C o gives, for the RSA and the P-384 certificate", () => {
    for (const index of [EK_CERT_NV.rsa2048, EK_CERT_NV["ecc-p384"]]) {
      const ours = withTpm(mfg.tcti, (tpm) => tpm.nvRead(index));
      const hex = `0x${index.toString(16).padStart(8, "0")}`;
      tools(mfg, ["tpm2_nvread", "-C", "o", hex, "-o", "nv.bin"]);
      expect(toHex(ours)).toBe(toHex(file("nv.bin")));
      expect(ours[0]).toBe(0x30);
      // swtpm defines each index at the certificate's size: nothing to trim.
      expect(toHex(withTpm(mfg.tcti, (tpm) => readEkCertificate(tpm, index === EK_CERT_NV.rsa2048 ? "rsa2048" : "ecc-p384"))!)).toBe(toHex(ours));
    }
  });

  test("an absent index is a TpmError with rc 0x18b, and 'no EK certificate' (null) for the EK", () => {
    withTpm(mfg.tcti, (tpm) => {
      const e = tpmError(() => tpm.nvRead(EK_CERT_NV["ecc-p256"]));
      expect(isHandleEmpty(e)).toBe(true);
      expect(e.message).toBe("NV index 0x01c0000a is not defined on this TPM");
      expect(readEkCertificate(tpm, "ecc-p256")).toBeNull();
      expect(tpmError(() => tpm.nvRead(0x81010001)).message).toContain("is not an NV index handle");
    });
    withTpm(plain.tcti, (tpm) => {
      for (const kind of EK_KINDS) expect(readEkCertificate(tpm, kind)).toBeNull();
      expect(findEkCertificate(tpm)).toBeNull();
    });
  });

  test("an index larger than one NV_Read: default chunks, 100-byte chunks, and 4096 asked (halved until the TPM takes it) all read the same", () => {
    const data = random(2000);
    put("big.bin", data);
    tools(plain, ["tpm2_nvdefine", "0x01500020", "-C", "o", "-s", "2000", "-a", "ownerread|ownerwrite|authread|authwrite"]);
    try {
      tools(plain, ["tpm2_nvwrite", "0x01500020", "-C", "o", "-i", "big.bin"]);
      withTpm(plain.tcti, (tpm) => {
        expect(tpm.nvBufferMax()).toBe(1024);
        expect(toHex(tpm.nvRead(0x01500020))).toBe(toHex(data));
        expect(toHex(tpm.nvRead(0x01500020, { chunk: 100 }))).toBe(toHex(data));
        expect(toHex(tpm.nvRead(0x01500020, { chunk: 4096 }))).toBe(toHex(data));
        expect(tpmError(() => tpm.nvRead(0x01500020, { chunk: 0 })).message).toContain("chunk size 0");
      });
    } finally {
      tools(plain, ["tpm2_nvundefine", "0x01500020", "-C", "o"]);
    }
  });

  test("trailing zero padding after the DER SEQUENCE is cut; a non-SEQUENCE or a truncated one is refused", () => {
    const cert = withTpm(mfg.tcti, (tpm) => readEkCertificate(tpm, "rsa2048")!);
    const padded = new Uint8Array(cert.length + 500);
    padded.set(cert);
    expect(toHex(derSequence(padded))).toBe(toHex(cert));
    expect(toHex(derSequence(Uint8Array.of(0x30, 0x02, 0x05, 0x00, 0, 0, 0)))).toBe("30020500");
    expect(() => derSequence(Uint8Array.of(0x04, 0x01, 0x00))).toThrow("is not a DER SEQUENCE");
    expect(() => derSequence(cert.subarray(0, cert.length - 1))).toThrow("is truncated");
  });

  test("openssl parses each certificate; it chains to the swtpm_localca root and certifies the EK (RSA modulus = TPMT_PUBLIC unique, P-384 point equal)", () => {
    put("root.pem", mfg.ekCa!.root);
    put("intermediate.pem", mfg.ekCa!.intermediate);
    for (const kind of ["rsa2048", "ecc-p384"] as const) {
      const { cert, ek } = withTpm(mfg.tcti, (tpm) => {
        const e = loadEk(tpm, kind);
        e.release();
        return { cert: readEkCertificate(tpm, kind)!, ek: e };
      });
      expect(ek.persistentHandle).toBe(EK_HANDLE[kind]);
      put(`${kind}.der`, cert);
      const text = run(null, ["openssl", "x509", "-inform", "DER", "-in", `${kind}.der`, "-noout", "-text"]);
      expect(text).toContain("Certificate:");
      run(null, ["openssl", "x509", "-inform", "DER", "-in", `${kind}.der`, "-out", `${kind}.pem`]);
      expect(run(null, ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", `${kind}.pem`])).toContain(": OK");
      if (kind === "rsa2048") {
        const modulus = run(null, ["openssl", "x509", "-inform", "DER", "-in", `${kind}.der`, "-noout", "-modulus"]).trim();
        // TPMT_PUBLIC of the L-1 template: the modulus is the last 256 bytes (unique, after its u16 size).
        expect(modulus).toBe(`Modulus=${toHex(ek.publicArea.subarray(ek.publicArea.length - 256)).toUpperCase()}`);
      }
      const pem = run(null, ["openssl", "x509", "-inform", "DER", "-in", `${kind}.der`, "-noout", "-pubkey"]);
      expect(crypto.createPublicKey(pem).equals(ekPublicKey(kind, ek.publicArea))).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("EK templates and loadEk", () => {
  test("the template-derived EK is the persistent one (same public area and name, as tpm2_readpublic names it)", () => {
    for (const kind of ["rsa2048", "ecc-p384"] as const) {
      const { persisted, derived, names } = withTpm(mfg.tcti, (tpm) => {
        const p = loadEk(tpm, kind);
        const d = loadEk(tpm, kind, { persistent: false });
        try {
          return { persisted: p, derived: d, names: [tpm.trName(p.handle), tpm.trName(d.handle)] };
        } finally {
          d.release();
          p.release();
        }
      });
      expect(persisted.persistentHandle).toBe(EK_HANDLE[kind]);
      expect(derived.persistentHandle).toBeNull();
      expect(toHex(derived.publicArea)).toBe(toHex(persisted.publicArea));
      expect(toHex(names[0]!)).toBe(toHex(names[1]!));
      tools(mfg, ["tpm2_readpublic", "-c", `0x${EK_HANDLE[kind].toString(16)}`, "-n", "ek.name"]);
      expect(toHex(names[0]!)).toBe(toHex(file("ek.name")));
      expect(isEkOfTemplate(kind, persisted.publicArea)).toBe(true);
    }
  });

  test("each template gives the key tpm2_createek gives (rsa, ecc, ecc384); authPolicy PolicyA / PolicyB", () => {
    for (const [kind, alg] of [["rsa2048", "rsa"], ["ecc-p256", "ecc"], ["ecc-p384", "ecc384"]] as const) {
      const ours = withTpm(plain.tcti, (tpm) => {
        const ek = loadEk(tpm, kind);
        ek.release();
        expect(ek.persistentHandle).toBeNull(); // the plain TPM persists no EK
        return ek.publicArea;
      });
      tools(plain, ["tpm2_createek", "-G", alg, "-c", "ek.ctx", "-u", `createek-${alg}.pub`, "-f", "tss"]);
      expect(toHex(unwrapTpm2b(file(`createek-${alg}.pub`)))).toBe(toHex(ours));
      expect(toHex(ours)).toContain(toHex(kind === "ecc-p384" ? POLICY_B_SHA384 : POLICY_A_SHA256));
    }
    // A key of another template is not taken for the EK (its unique is not compared: see the last describe).
    expect(isEkOfTemplate("ecc-p256", ekTemplate("rsa2048"))).toBe(false);
    expect(isEkOfTemplate("ecc-p384", ekTemplate("ecc-p384"))).toBe(false); // the template's empty unique is no key
    expect(isEkOfTemplate("rsa2048", eccSigningTemplate(true))).toBe(false);
  });

  test("the PolicySecret session reaches each template's authPolicy: PolicyA, and PolicyOR(PolicyA, PolicyC) = PolicyB for P-384", () => {
    withTpm(plain.tcti, (tpm) => {
      for (const kind of EK_KINDS) {
        const s = ekPolicySession(tpm, kind);
        try {
          expect(toHex(tpm.policyDigest(s))).toBe(toHex(kind === "ecc-p384" ? POLICY_B_SHA384 : POLICY_A_SHA256));
        } finally {
          tpm.flush(s);
        }
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe("TpmIdentityKey.endorsement", () => {
  test("manufactured TPM: the RSA 2048 EK with its certificate (the first kind with one); read once, then cached", async () => {
    const key = TpmIdentityKey.load(mfg.tcti, KEY_HANDLE);
    const e = key.endorsement();
    expect(e.kind).toBe("rsa2048");
    const { cert, pub } = withTpm(mfg.tcti, (tpm) => ({ cert: tpm.nvRead(EK_CERT_NV.rsa2048), pub: tpm.readPublic(tpm.loadPersistent(0x81010001)) }));
    expect(toHex(e.certificate!)).toBe(toHex(cert));
    expect(toHex(e.publicArea)).toBe(toHex(pub));
    // Cached in the key object: no TPM needed the second time.
    await mfg.stop();
    try {
      expect(toHex(key.endorsement().publicArea)).toBe(toHex(pub));
    } finally {
      await mfg.start();
    }
  });

  test("plain TPM: no certificate → the RSA 2048 template EK, certificate null", () => {
    const e = plainKey.endorsement();
    expect(e.kind).toBe("rsa2048");
    expect(e.certificate).toBeNull();
    tools(plain, ["tpm2_createek", "-G", "rsa", "-c", "ek.ctx", "-u", "plain-ek.pub", "-f", "tss"]);
    expect(toHex(e.publicArea)).toBe(toHex(unwrapTpm2b(file("plain-ek.pub"))));
  });
});

// ---------------------------------------------------------------------------------------------
describe("HMAC sessions salted with the EK", () => {
  test("a salted session has continueSession | decrypt | encrypt, and sign, quote, certify work through it", () => {
    withTpm(mfg.tcti, (tpm) => {
      const ek = loadEk(tpm, "rsa2048");
      const s = tpm.startSaltedSession(ek.handle);
      try {
        expect(tpm.sessionAttributes(s)).toBe(TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT);
        const key = tpm.loadPersistent(KEY_HANDLE);
        const d = random(32);
        const sig = parseSignatureEcdsa(tpm.sign(key, d, s));
        // The TPM signs the digest it is given: verify it as the hash, not hashed again.
        const pub = parsePublicArea(tpm.readPublic(key));
        expect(p256.verify(Buffer.concat([sig.r, sig.s]), d, pub.sec1Compressed, { prehash: false, lowS: false })).toBe(true);
        // ESYS drops encrypt for Sign (no TPM2B in its response) and puts it back afterwards.
        expect(tpm.sessionAttributes(s)).toBe(0x61);
      } finally {
        tpm.flush(s);
        ek.release();
      }
    });
  });

  test("on the bus (a recording proxy): with the password session the digest and qualifyingData travel in clear, with the salted session neither does", async () => {
    const proxy = await startProxy(mfg.port);
    try {
      const tcti = `swtpm:host=127.0.0.1,port=${proxy.port}`;
      withTpm(tcti, (tpm) => {
        const key = tpm.loadPersistent(KEY_HANDLE);
        const ek = loadEk(tpm, "rsa2048");
        const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
        const s = tpm.startSaltedSession(ek.handle);
        try {
          // TPM2_Sign: the digest is the command's first parameter.
          const d1 = random(32);
          let m = proxy.mark();
          tpm.sign(key, d1);
          expect(includes(proxy.sent(m), TPM_CC_SIGN)).toBe(true);
          expect(includes(proxy.sent(m), d1)).toBe(true);
          const d2 = random(32);
          m = proxy.mark();
          tpm.sign(key, d2, s);
          expect(includes(proxy.sent(m), TPM_CC_SIGN)).toBe(true);
          expect(includes(proxy.sent(m), d2)).toBe(false);
          // TPM2_Quote: qualifyingData goes out as the first parameter and comes back inside the attest.
          const q1 = random(32);
          m = proxy.mark();
          tpm.quote(ak.handle, q1, PCRS);
          expect(includes(proxy.sent(m), q1)).toBe(true);
          expect(includes(proxy.received(m), q1)).toBe(true);
          const q2 = random(32);
          m = proxy.mark();
          const q = tpm.quote(ak.handle, q2, PCRS, s);
          expect(includes(proxy.sent(m), TPM_CC_QUOTE)).toBe(true);
          expect(includes(proxy.sent(m), q2)).toBe(false);
          expect(includes(proxy.received(m), q2)).toBe(false);
          expect(toHex(parseAttest(q.attest).extraData)).toBe(toHex(q2)); // ESYS decrypted it
        } finally {
          tpm.flush(s);
          tpm.flush(ak.handle);
          ek.release();
        }
      });
      // The key object's own operations: digest, qualifyingData and the activated secret never in clear.
      const key = TpmIdentityKey.load(tcti, KEY_HANDLE);
      const d = random(32);
      let m = proxy.mark();
      await key.sign(d);
      expect(includes(proxy.sent(m), TPM_CC_SIGN)).toBe(true);
      expect(includes(proxy.sent(m), sha256(d))).toBe(false);
      const qd = random(32);
      m = proxy.mark();
      key.quote(qd, PCRS);
      key.certifyIdentity(qd);
      expect(includes(proxy.sent(m), qd)).toBe(false);
      expect(includes(proxy.received(m), qd)).toBe(false);
      const secret = random(32);
      const cred = makeCredential(key.endorsement().publicArea, parsePublicArea(key.attestationPublic()).name, secret);
      m = proxy.mark();
      expect(toHex(key.activateCredential(cred.blob, cred.secret))).toBe(toHex(secret));
      expect(includes(proxy.sent(m), TPM_CC_ACTIVATE_CREDENTIAL)).toBe(true);
      expect(includes(proxy.received(m), secret)).toBe(false);
      // The same activation through the password session shows the secret: the check above can see it.
      m = proxy.mark();
      withTpm(tcti, (tpm) => {
        const ek = loadEk(tpm, "rsa2048");
        const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
        try {
          expect(toHex(tpm.activateCredential(ak.handle, ek.handle, cred.blob, cred.secret))).toBe(toHex(secret));
        } finally {
          tpm.flush(ak.handle);
          ek.release();
        }
      });
      expect(includes(proxy.received(m), secret)).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  test("on a TPM without an EK certificate the key salts with the P-256 template EK and still signs, quotes, certifies", async () => {
    const d = random(32);
    expect(p256Verify(importPublicKey(plainKey.publicKey), d, await plainKey.sign(d))).toBe(true);
    const qd = sha256(new TextEncoder().encode("binding"));
    const q = plainKey.quote(qd, PCRS);
    expect(toHex(parseAttest(q.attest).extraData)).toBe(toHex(qd));
    const c = plainKey.certifyIdentity(qd);
    expect(verifiesUnder(c.akPublic, c.attest, c.signature)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
describe("certifyIdentity: the AK certifies the identity key", () => {
  test("TPMS_ATTEST type 0x8017 names the identity key (0x000b || sha256(TPMT_PUBLIC)); signed by the AK; extraData is the qualifyingData", () => {
    for (const key of [mfgKey, plainKey]) {
      const qd = random(32);
      const c = key.certifyIdentity(qd);
      const info = certifyInfo(c.attest);
      const idPub = key.identityPublicArea();
      const name = Uint8Array.from([0x00, 0x0b, ...sha256(idPub)]);
      expect(toHex(info.name)).toBe(toHex(name));
      expect(toHex(parsePublicArea(idPub).sec1Compressed)).toBe(toHex(key.publicKey));
      expect(toHex(info.qualifiedName)).toBe(toHex(qualifiedName(name, TPM_RH_OWNER))); // a primary key of the owner hierarchy
      expect(toHex(info.extraData)).toBe(toHex(qd));
      expect(toHex(c.akPublic)).toBe(toHex(key.attestationPublic()));
      expect(toHex(info.qualifiedSigner)).toBe(toHex(qualifiedName(parsePublicArea(c.akPublic).name)));
      expect(verifiesUnder(c.akPublic, c.attest, c.signature)).toBe(true);
      const tampered = Uint8Array.from(c.attest);
      tampered[tampered.length - 1]! ^= 1;
      expect(verifiesUnder(c.akPublic, tampered, c.signature)).toBe(false);
      expect(() => key.certifyIdentity(random(65))).toThrow("at most 64 bytes");
    }
    tools(mfg, ["tpm2_readpublic", "-c", `0x${KEY_HANDLE.toString(16)}`, "-n", "id.name"]);
    expect(toHex(certifyInfo(mfgKey.certifyIdentity(random(8)).attest).name)).toBe(toHex(file("id.name")));
  });
});

// ---------------------------------------------------------------------------------------------
describe("ActivateCredential against tpm2_makecredential", () => {
  test("TpmIdentityKey.activateCredential recovers the secret: the certified RSA EK, and the plain TPM's template EK", () => {
    for (const key of [mfgKey, plainKey]) {
      const secret = random(32);
      const akName = parsePublicArea(key.attestationPublic()).name;
      const cred = makeCredential(key.endorsement().publicArea, akName, secret);
      expect(toHex(key.activateCredential(cred.blob, cred.secret))).toBe(toHex(secret));
    }
  });

  test("the ECC EKs: P-384 (persistent, PolicyB) and P-256 (template), with a salted AK session and the EK's policy session", () => {
    for (const [t, kind] of [[mfg, "ecc-p384"], [plain, "ecc-p256"], [mfg, "rsa2048"]] as const) {
      const { ekPublic, akName } = withTpm(t.tcti, (tpm) => {
        const ek = loadEk(tpm, kind);
        const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
        try {
          return { ekPublic: ek.publicArea, akName: tpm.trName(ak.handle) };
        } finally {
          tpm.flush(ak.handle);
          ek.release();
        }
      });
      const secret = random(kind === "ecc-p384" ? 48 : 32);
      const cred = makeCredential(ekPublic, akName, secret);
      const out = withTpm(t.tcti, (tpm) => activate(tpm, kind, cred));
      expect(toHex(out)).toBe(toHex(secret));
    }
  });

  test("PolicySecret alone (Tpm.activateCredential's default) satisfies the RSA EK but not the P-384 EK's PolicyB", () => {
    withTpm(mfg.tcti, (tpm) => {
      const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
      try {
        const akName = tpm.trName(ak.handle);
        const rsa = loadEk(tpm, "rsa2048");
        const p384 = loadEk(tpm, "ecc-p384");
        const secret = random(16);
        const c1 = makeCredential(rsa.publicArea, akName, secret);
        expect(toHex(tpm.activateCredential(ak.handle, rsa.handle, c1.blob, c1.secret))).toBe(toHex(secret));
        const c2 = makeCredential(p384.publicArea, akName, secret);
        const e = tpmError(() => tpm.activateCredential(ak.handle, p384.handle, c2.blob, c2.secret));
        expect(e.message).toStartWith("Esys_ActivateCredential: ");
        expect(e.message).toContain("policy");
      } finally {
        tpm.flush(ak.handle);
      }
    });
  });

  test("a credential for another name, or made against another TPM's EK, fails with a TpmError naming the call", () => {
    const secret = random(32);
    // For the identity key's name instead of the AK's.
    const wrongName = makeCredential(mfgKey.endorsement().publicArea, parsePublicArea(mfgKey.identityPublicArea()).name, secret);
    const e1 = tpmError(() => mfgKey.activateCredential(wrongName.blob, wrongName.secret));
    expect(e1.message).toStartWith("Esys_ActivateCredential: ");
    // Against the plain TPM's EK, for the manufactured TPM's AK name.
    const otherEk = makeCredential(plainKey.endorsement().publicArea, parsePublicArea(mfgKey.attestationPublic()).name, secret);
    const e2 = tpmError(() => mfgKey.activateCredential(otherEk.blob, otherEk.secret));
    expect(e2.message).toStartWith("Esys_ActivateCredential: ");
    // Garbage.
    expect(tpmError(() => mfgKey.activateCredential(random(20), random(256))).message).toStartWith("Esys_ActivateCredential: ");
    // And the good one still works after the failures (nothing left loaded).
    const good = makeCredential(mfgKey.endorsement().publicArea, parsePublicArea(mfgKey.attestationPublic()).name, secret);
    expect(toHex(mfgKey.activateCredential(good.blob, good.secret))).toBe(toHex(secret));
  });
});

// ---------------------------------------------------------------------------------------------
describe("quote with qualifyingData in the salted session", () => {
  test("verifyQuote and tpm2_checkquote accept it; qualifyingData up to 64 bytes", () => {
    for (const key of [mfgKey, plainKey]) {
      const qd = sha256(new TextEncoder().encode("an enrollment binding"));
      const q = key.quote(qd, PCRS);
      const digest = toHex(pcrCompositeDigest(key.pcrRead(PCRS)));
      const r = verifyQuote({ ...q, nonce: qd, pcrs: PCRS, acceptedDigests: [digest], expectedAkSec1: key.attestationKeySec1() });
      expect(r).toMatchObject({ ok: true, pcrDigest: digest });
      const ak = parsePublicArea(q.akPublic);
      const pem = crypto.createPublicKey({ key: { kty: "EC", crv: "P-256", x: Buffer.from(ak.x).toString("base64url"), y: Buffer.from(ak.y).toString("base64url") }, format: "jwk" }).export({ type: "spki", format: "pem" });
      put("ak.pem", pem);
      put("quote.msg", q.attest);
      put("quote.sig", q.signature);
      run(null, ["tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig", "-q", toHex(qd), "-g", "sha256"]);
      expect(() => run(null, ["tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig", "-q", toHex(random(32)), "-g", "sha256"])).toThrow();
      const q64 = random(64);
      expect(toHex(parseAttest(key.quote(q64, PCRS).attest).extraData)).toBe(toHex(q64));
      expect(() => key.quote(random(65), PCRS)).toThrow("at most 64 bytes");
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("an EK that its certificate does not certify", () => {
  test("endorsementOf refuses it (EkCertificateMismatch); the key still signs, salting with the P-256 template EK; restored, all is well", async () => {
    const certified = withTpm(mfg.tcti, (tpm) => endorsementOf(tpm));
    // Another RSA key of the same template fields, in place of the EK at 0x81010001.
    withTpm(mfg.tcti, (tpm) => {
      tpm.persist(tpm.loadPersistent(0x81010001), 0x81010001); // evict
      const other = ekTemplate("rsa2048");
      other[other.length - 1] = 1;
      const impostor = tpm.createPrimary("endorsement", other);
      try {
        tpm.persist(impostor.handle, 0x81010001);
      } finally {
        tpm.flush(impostor.handle);
      }
      const e = tpmError(() => endorsementOf(tpm));
      expect(e).toBeInstanceOf(EkCertificateMismatch);
      expect(e.message).toContain("certifies another key than this TPM's rsa2048 EK (the key at 0x81010001)");
    });
    const fresh = TpmIdentityKey.load(mfg.tcti, KEY_HANDLE);
    const d = random(32);
    expect((await fresh.sign(d)).length).toBe(64);
    expect(() => fresh.endorsement()).toThrow(EkCertificateMismatch);
    // The key object that had read the certified EK refuses to salt with a changed one.
    await expect(mfgKey.sign(d)).rejects.toThrow("EK is not the one read before");
    // Restore: the template EK again, the same key as before (a primary key is deterministic).
    withTpm(mfg.tcti, (tpm) => {
      tpm.persist(tpm.loadPersistent(0x81010001), 0x81010001);
      const ek = tpm.createPrimary("endorsement", ekTemplate("rsa2048"));
      try {
        tpm.persist(ek.handle, 0x81010001);
      } finally {
        tpm.flush(ek.handle);
      }
      expect(toHex(endorsementOf(tpm).publicArea)).toBe(toHex(certified.publicArea));
    });
    expect((await mfgKey.sign(d)).length).toBe(64);
  });
});

// ---------------------------------------------------------------------------------------------
// helpers needing the TPM

function activate(tpm: Tpm, kind: EkKind, cred: { blob: Uint8Array; secret: Uint8Array }): Uint8Array {
  const ek = loadEk(tpm, kind);
  const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
  const s = tpm.startSaltedSession(ek.handle);
  const policy = ekPolicySession(tpm, kind);
  try {
    return tpm.activateCredential(ak.handle, ek.handle, cred.blob, cred.secret, { activate: s, key: policy });
  } finally {
    tpm.flush(policy);
    tpm.flush(s);
    tpm.flush(ak.handle);
    ek.release();
  }
}

interface Proxy {
  port: number;
  /** Offsets into the recorded streams, to look at what came after. */
  mark(): { sent: number; received: number };
  sent(from: { sent: number }): Uint8Array;
  received(from: { received: number }): Uint8Array;
  stop(): Promise<void>;
}

/**
 * A TCP proxy in a child process (the FFI calls block this one's event loop) in front of
 * swtpm's server and control ports, recording every byte to and from the server port.
 */
async function startProxy(target: number): Promise<Proxy> {
  const dir = tempDir("dsm-tpm-proxy-");
  const script = path.join(dir, "proxy.ts");
  const sentFile = path.join(dir, "sent.bin");
  const receivedFile = path.join(dir, "received.bin");
  fs.writeFileSync(sentFile, "");
  fs.writeFileSync(receivedFile, "");
  fs.writeFileSync(
    script,
    `import * as fs from "node:fs";
import * as net from "node:net";
const [target, sent, received] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
function serve(port: number, to: number, record: boolean): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((c) => {
      const up = net.connect(to, "127.0.0.1");
      c.on("data", (d) => { if (record) fs.appendFileSync(sent, d); up.write(d); });
      up.on("data", (d) => { if (record) fs.appendFileSync(received, d); c.write(d); });
      c.on("close", () => up.destroy());
      up.on("close", () => c.destroy());
      c.on("error", () => up.destroy());
      up.on("error", () => c.destroy());
    });
    srv.once("error", reject);
    srv.listen(port, "127.0.0.1", () => resolve(srv));
  });
}
for (let i = 0; i < 50; i++) {
  const data = await serve(0, target, true);
  const port = (data.address() as net.AddressInfo).port;
  try {
    await serve(port + 1, target + 1, false);
    console.log(port);
    break;
  } catch {
    data.close();
  }
}
`,
  );
  const proc = Bun.spawn([process.execPath, script, String(target), sentFile, receivedFile], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the proxy exited before listening");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = Number(text.trim());
  const read = (f: string) => new Uint8Array(fs.readFileSync(f));
  return {
    port,
    mark: () => ({ sent: fs.statSync(sentFile).size, received: fs.statSync(receivedFile).size }),
    sent: (from) => read(sentFile).subarray(from.sent),
    received: (from) => read(receivedFile).subarray(from.received),
    async stop() {
      proc.kill();
      await proc.exited;
    },
  };
}
