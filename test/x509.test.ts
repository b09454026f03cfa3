// X.509 path validation (src/crypto/x509.ts): real swtpm EK certificates read out of the TPM's
// NV indices with tpm2-tools, and chains made by the openssl CLI for every refusal. Every
// verifyChain verdict is cross-checked with `openssl verify` on the same files at the same
// instant (-attime); the few places where dsm is deliberately stricter than openssl say so.
//
// openssl runs with -auth_level 2: its `verify` command checks no algorithm strength by
// default (it accepts SHA-1 and MD5 signatures); level 2 refuses them, as dsm does.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { certificatePem, parseCertificate, pemCertificates, verifyChain, X509Error, type ChainCheck, type ChainResult } from "../src/crypto/x509.ts";
import { prng } from "./helpers/prng.ts";
import { haveSwtpm, manufacture, startSwtpm, type EkCa, type Swtpm } from "./helpers/swtpm.ts";

const DAY = 86_400_000;
let dir = "";
let fileCount = 0;

function run(cmd: string[], cwd = dir): { code: number; out: string } {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

function openssl(...args: string[]): void {
  const r = run(["openssl", ...args]);
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.out}`);
}

function writeTemp(name: string, text: string): string {
  const p = path.join(dir, `${++fileCount}-${name}`);
  fs.writeFileSync(p, text);
  return p;
}

const pemOf = (ders: readonly Uint8Array[]) => ders.map(certificatePem).join("");
const readPem = (file: string) => pemCertificates(fs.readFileSync(file, "utf8"))[0]!;

// ---- Making certificates with openssl ----

function key(name: string, kind: "rsa" | "P-256" | "P-384"): string {
  const file = path.join(dir, `${name}.key`);
  if (kind === "rsa") openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", file);
  else openssl("genpkey", "-algorithm", "EC", "-pkeyopt", `ec_paramgen_curve:${kind}`, "-out", file);
  return file;
}

interface Issued {
  cert: string; // PEM file
  key: string;
  der: Uint8Array;
}

let serial = 1;
/**
 * One certificate: subject (openssl -subj form, "/" for empty) and key, issued by `issuer`
 * (self-signed when null), with exactly the extensions in `ext` (an -extfile body).
 */
function issue(name: string, subj: string, keyFile: string, issuer: Issued | null, ext: string, o: { days?: number; digest?: string; sigopts?: string[] } = {}): Issued {
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`);
  const extFile = path.join(dir, `${name}.ext`);
  fs.writeFileSync(extFile, ext);
  openssl("req", "-new", "-key", keyFile, "-subj", subj, "-out", csr);
  const signer = issuer ? ["-CA", issuer.cert, "-CAkey", issuer.key] : ["-signkey", keyFile];
  const sigopts = (o.sigopts ?? []).flatMap((s) => ["-sigopt", s]);
  openssl("x509", "-req", "-in", csr, ...signer, "-set_serial", String(serial++), "-days", String(o.days ?? 3650), `-${o.digest ?? "sha256"}`, ...sigopts, "-extfile", extFile, "-out", cert);
  return { cert, key: keyFile, der: readPem(cert) };
}

const CA_EXT = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n";
/**
 * What an EK certificate carries (TCG EK Credential Profile): an empty subject, so a critical
 * subjectAltName holding a directoryName with the TPM manufacturer and model attributes
 * (written with openssl's ASN1 generator: its dirName sections cannot take numeric OIDs).
 */
function ekExt(keyUsage: string, extra = ""): string {
  return `basicConstraints=critical,CA:FALSE
keyUsage=critical,${keyUsage}
2.5.29.17=critical,ASN1:SEQUENCE:san
${extra}
[san]
dn=EXPLICIT:4C,SEQUENCE:tpmdn
[tpmdn]
manufacturer=SET:rdn1
model=SET:rdn2
[rdn1]
atv=SEQUENCE:atv1
[rdn2]
atv=SEQUENCE:atv2
[atv1]
oid=OID:2.23.133.2.1
val=UTF8:id:00001014
[atv2]
oid=OID:2.23.133.2.2
val=UTF8:dsm-test
`;
}

// ---- Running both verifiers ----

interface Case {
  leaf: Uint8Array;
  inters?: readonly Uint8Array[];
  anchors: readonly Uint8Array[];
  nowMs?: number;
  leafKeyUsage?: readonly string[];
  maxDepth?: number;
  /** Extra `openssl verify` options that express the same rule (e.g. -purpose). */
  osslArgs?: string[];
  /** Where openssl deliberately differs: its verdict must then be this (and why is documented here). */
  openssl?: { ok: boolean; why: string };
}

/** openssl's verdict on the same inputs; true when it verifies. */
function opensslVerifies(c: Case, nowMs: number): { ok: boolean; out: string } {
  const anchors = writeTemp("anchors.pem", pemOf(c.anchors));
  const args = ["verify", "-auth_level", "2", "-attime", String(Math.floor(nowMs / 1000)), "-CAfile", anchors];
  if (c.inters && c.inters.length > 0) args.push("-untrusted", writeTemp("inters.pem", pemOf(c.inters)));
  // A trust anchor that is not self-issued (an intermediate the policy lists) needs -partial_chain.
  const selfIssued = (der: Uint8Array) => {
    const x = parseCertificate(der);
    return Buffer.compare(x.issuer.der, x.subject.der) === 0;
  };
  if (!c.anchors.every(selfIssued)) args.push("-partial_chain");
  if (c.maxDepth !== undefined) args.push("-verify_depth", String(c.maxDepth - 2)); // openssl counts neither leaf nor anchor
  args.push(...(c.osslArgs ?? []), writeTemp("leaf.pem", certificatePem(c.leaf)));
  const r = run(["openssl", ...args]);
  return { ok: r.code === 0, out: r.out };
}

/** verifyChain must give `expected` ("ok" or a check), and openssl must agree on ok / not ok. */
function expectVerdict(c: Case, expected: "ok" | ChainCheck): ChainResult {
  const nowMs = c.nowMs ?? Date.now();
  const r = verifyChain(c.leaf, c.inters ?? [], c.anchors, { nowMs, leafKeyUsage: c.leafKeyUsage, maxDepth: c.maxDepth });
  expect(r.ok ? "ok" : `${r.check}: ${r.reason}`).toStartWith(expected);
  const ossl = opensslVerifies(c, nowMs);
  const opensslShould = c.openssl ? c.openssl.ok : expected === "ok";
  if (ossl.ok !== opensslShould) throw new Error(`openssl verify ${ossl.ok ? "accepted" : "refused"} where dsm says ${expected}: ${ossl.out}`);
  return r;
}

function flip(der: Uint8Array, at: number): Uint8Array {
  const out = Uint8Array.from(der);
  out[at]! ^= 0x01;
  return out;
}

function indexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(hay).indexOf(Buffer.from(needle));
}

function x509Error(fn: () => unknown): X509Error {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof X509Error)) throw new Error(`expected an X509Error, got ${String(e)}`);
    return e;
  }
  throw new Error("expected an X509Error, nothing was thrown");
}

// ---- The openssl-made PKI ----

/** root -> inter (pathlen 0) -> leaf is the good chain; every other certificate breaks one rule. */
function makePki() {
  const rootKey = key("root", "rsa");
  const interKey = key("inter", "rsa");
  const leafKey = key("leaf", "rsa");
  const otherKey = key("other", "rsa");
  const ekRsa = ekExt("keyEncipherment");
  const leafUnder = (name: string, issuer: Issued, ext = ekRsa, o?: Parameters<typeof issue>[5]) => issue(name, "/", leafKey, issuer, ext, o);

  const root = issue("root", "/O=dsm tests/CN=dsm test root", rootKey, null, CA_EXT);
  const inter = issue("inter", "/CN=dsm test intermediate", interKey, root, CA_EXT.replace("CA:TRUE", "CA:TRUE,pathlen:0"));
  const otherRoot = issue("otherroot", "/CN=another root", otherKey, null, CA_EXT);
  // An impostor: the real intermediate's name, another key, under another root.
  const fakeInter = issue("fake-inter", "/CN=dsm test intermediate", otherKey, otherRoot, CA_EXT);
  const interNotCa = issue("inter-notca", "/CN=not a CA", interKey, root, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyCertSign\n");
  const interNoBc = issue("inter-nobc", "/CN=no basicConstraints", interKey, root, "keyUsage=critical,keyCertSign\n");
  const interNoKcs = issue("inter-nokcs", "/CN=no keyCertSign", interKey, root, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,cRLSign\n");
  const interNc = issue("inter-nc", "/CN=name constrained", interKey, root, CA_EXT + "nameConstraints=critical,permitted;DNS:example.com\n");
  // pathlen: inter allows no CA below it; inter2 is one.
  const inter2 = issue("inter2", "/CN=below pathlen 0", interKey, inter, CA_EXT);
  // A root that expires long before what it issued.
  const shortRoot = issue("short-root", "/CN=short-lived root", rootKey, null, CA_EXT, { days: 10 });
  const shortInter = issue("short-inter", "/CN=under a short-lived root", interKey, shortRoot, CA_EXT);
  // ECDSA issuers: a P-384 root (ECDSA-SHA384) and a P-256 intermediate.
  const ecRoot = issue("ecroot", "/CN=dsm test ec root", key("ecroot", "P-384"), null, CA_EXT, { digest: "sha384" });
  const ecInter = issue("ecinter", "/CN=dsm test ec intermediate", key("ecinter", "P-256"), ecRoot, CA_EXT, { digest: "sha384" });
  // A cycle: A issued by B, B issued by A (B first self-signed to bootstrap A).
  const cycA = issue("cyc-a", "/CN=cycle A", interKey, issue("boot-b", "/CN=cycle B", otherKey, null, CA_EXT), CA_EXT);
  const cycB = issue("cyc-b", "/CN=cycle B", otherKey, cycA, CA_EXT);
  return {
    root, inter, otherRoot, fakeInter, interNotCa, interNoBc, interNoKcs, interNc, inter2, shortRoot, shortInter, ecRoot, ecInter, cycA, cycB,
    leaf: leafUnder("leaf", inter),
    leafDs: leafUnder("leaf-ds", inter, ekExt("digitalSignature")),
    leafCa: leafUnder("leaf-ca", inter, ekRsa.replace("CA:FALSE", "CA:TRUE")),
    leafCrit: leafUnder("leaf-crit", inter, ekExt("keyEncipherment", "1.3.6.1.4.1.55555.1=critical,ASN1:UTF8String:must understand")),
    leafSha1: leafUnder("leaf-sha1", inter, ekRsa, { digest: "sha1" }),
    leafMd5: leafUnder("leaf-md5", inter, ekRsa, { digest: "md5" }),
    leafPss256: leafUnder("leaf-pss256", inter, ekRsa, { sigopts: ["rsa_padding_mode:pss", "rsa_pss_saltlen:32"] }),
    leafPss384: leafUnder("leaf-pss384", inter, ekRsa, { digest: "sha384", sigopts: ["rsa_padding_mode:pss", "rsa_pss_saltlen:48"] }),
    leafPast: leafUnder("leaf-past", inter, ekRsa, { days: -1 }), // notAfter a day before notBefore
    leafShort: leafUnder("leaf-short", inter, ekRsa, { days: 1 }),
    leafByFake: leafUnder("leaf-byfake", fakeInter),
    leafNotCa: leafUnder("leaf-notca", interNotCa),
    leafNoBc: leafUnder("leaf-nobc", interNoBc),
    leafNoKcs: leafUnder("leaf-nokcs", interNoKcs),
    leafNc: leafUnder("leaf-nc", interNc),
    leafDeep: leafUnder("leaf-deep", inter2),
    leafShortRoot: leafUnder("leaf-shortroot", shortInter),
    ecLeaf: issue("ecleaf", "/", key("ecleaf", "P-384"), ecInter, ekExt("keyAgreement")), // like an ECC EK
    rsaUnderEc: leafUnder("rsa-under-ec", ecInter, ekRsa, { digest: "sha512" }),
    leafCyc: leafUnder("leaf-cyc", cycA),
  };
}
let pki: ReturnType<typeof makePki>;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-x509-"));
  pki = makePki();
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// ---- Tests ----

describe("parseCertificate", () => {
  test("reads an EK-style certificate: empty subject, critical subjectAltName, keyUsage", () => {
    const c = parseCertificate(pki.leaf.der);
    expect(c.version).toBe(3);
    expect(c.subject).toMatchObject({ text: "", cn: null });
    expect(c.subject.der).toEqual(new Uint8Array([0x30, 0x00]));
    expect(c.issuer).toMatchObject({ text: "CN=dsm test intermediate", cn: "dsm test intermediate" });
    expect(c.basicConstraints).toEqual({ ca: false, pathLen: null });
    expect([...c.keyUsage!]).toEqual(["keyEncipherment"]);
    expect(c.unknownCritical).toEqual([]);
    expect(c.sigAlgOid).toBe("1.2.840.113549.1.1.11");
    expect(c.publicKey.kind).toBe("rsa");
    if (c.publicKey.kind === "rsa") {
      expect(c.publicKey.n.length).toBe(256);
      expect(c.publicKey.n[0]).not.toBe(0);
      expect(Buffer.from(c.publicKey.e).toString("hex")).toBe("010001");
    }
    // The serial and dates as openssl reads them.
    const text = run(["openssl", "x509", "-in", pki.leaf.cert, "-noout", "-serial", "-startdate", "-enddate", "-dateopt", "iso_8601"]).out;
    expect(text).toContain(`serial=${c.serialHex.toUpperCase()}`);
    expect(text).toContain(`notBefore=${new Date(c.notBefore).toISOString().replace("T", " ").replace(".000", "")}`);
    expect(text).toContain(`notAfter=${new Date(c.notAfter).toISOString().replace("T", " ").replace(".000", "")}`);
  });

  test("reads names, CA constraints, EC keys and the critical unknown extension", () => {
    const root = parseCertificate(pki.root.der);
    expect(root.subject).toMatchObject({ text: "O=dsm tests, CN=dsm test root", cn: "dsm test root" });
    expect(root.issuer.der).toEqual(root.subject.der);
    expect(root.basicConstraints).toEqual({ ca: true, pathLen: null });
    expect(new Set(root.keyUsage)).toEqual(new Set(["keyCertSign", "cRLSign"]));
    expect(parseCertificate(pki.inter.der).basicConstraints).toEqual({ ca: true, pathLen: 0 });
    const ec = parseCertificate(pki.ecLeaf.der);
    expect(ec.publicKey).toMatchObject({ kind: "ec", curve: "P-384" });
    if (ec.publicKey.kind === "ec") expect([ec.publicKey.x.length, ec.publicKey.y.length]).toEqual([48, 48]);
    expect(parseCertificate(pki.ecInter.der).publicKey).toMatchObject({ kind: "ec", curve: "P-256" });
    expect(parseCertificate(pki.ecInter.der).sigAlgOid).toBe("1.2.840.10045.4.3.3");
    expect(parseCertificate(pki.leafCrit.der).unknownCritical).toEqual(["1.3.6.1.4.1.55555.1"]);
    // nameConstraints is parsed as known but not enforced, so a critical one counts as unknown.
    expect(parseCertificate(pki.interNc.der).unknownCritical).toEqual(["2.5.29.30"]);
    expect(parseCertificate(pki.leafPss256.der).sigAlgOid).toBe("1.2.840.113549.1.1.10");
  });

  test("truncated at every offset: X509Error", () => {
    const der = pki.leaf.der;
    for (let n = 0; n < der.length; n++) x509Error(() => parseCertificate(der.subarray(0, n)));
  });

  test("malformed outer encodings name what is wrong", () => {
    const der = pki.leaf.der;
    const withTail = new Uint8Array([...der, 0x00]);
    expect(x509Error(() => parseCertificate(withTail)).message).toContain("trailing");
    const wrongTag = Uint8Array.from(der);
    wrongTag[0] = 0x31;
    expect(x509Error(() => parseCertificate(wrongTag)).message).toContain("wrong tag");
    // der starts 30 82 HH LL: a length one past the end, a 5-byte length, indefinite length.
    const long = Uint8Array.from(der);
    long[3]! += 1;
    expect(x509Error(() => parseCertificate(long)).message).toMatch(/truncated|bad length/);
    expect(x509Error(() => parseCertificate(new Uint8Array([0x30, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff]))).message).toContain("bad length");
    expect(x509Error(() => parseCertificate(new Uint8Array([0x30, 0x80, 0x00, 0x00]))).message).toContain("indefinite");
    // The same length in a non-minimal form (30 83 00 HH LL) is BER, not DER.
    const nonMinimal = new Uint8Array([0x30, 0x83, 0x00, der[2]!, der[3]!, ...der.subarray(4)]);
    expect(x509Error(() => parseCertificate(nonMinimal)).message).toContain("non-minimal");
    expect(x509Error(() => parseCertificate(new Uint8Array(0))).message).toContain("truncated");
  });

  test("unsupported version and a signatureAlgorithm that differs from the signed one", () => {
    // tbs begins 30 82 xx xx a0 03 02 01 02: the version INTEGER is at offset 4 + 4 + 4.
    const der = Uint8Array.from(pki.leaf.der);
    expect([...der.subarray(8, 13)]).toEqual([0xa0, 0x03, 0x02, 0x01, 0x02]);
    der[12] = 0x05;
    expect(x509Error(() => parseCertificate(der)).message).toContain("unsupported version 6");
    // The outer AlgorithmIdentifier follows tbs; change its last OID byte (sha256 -> sha384 WithRSA).
    const c = parseCertificate(pki.leaf.der);
    const at = 4 + c.tbs.length + 2 + 2 + 8; // outer 30 82 LL LL, tbs, 30 0d, 06 09, 8 OID bytes
    const outer = Uint8Array.from(pki.leaf.der);
    expect(outer[at]).toBe(0x0b);
    outer[at] = 0x0c;
    expect(x509Error(() => parseCertificate(outer)).message).toContain("differs");
  });

  test("every single-byte change either fails to parse with X509Error or fails verification", () => {
    const der = pki.leaf.der;
    const rand = prng(509);
    for (let i = 0; i < der.length; i++) {
      const bad = Uint8Array.from(der);
      bad[i]! ^= 1 + Math.floor(rand() * 255);
      try {
        parseCertificate(bad);
      } catch (e) {
        if (!(e instanceof X509Error)) throw new Error(`offset ${i}: ${String(e)}`);
      }
      const r = verifyChain(bad, [pki.inter.der], [pki.root.der], { nowMs: Date.now() });
      if (r.ok) throw new Error(`offset ${i}: a changed certificate verified`);
    }
  });
});

describe("PEM", () => {
  test("every CERTIFICATE block, in order; certificatePem round-trips and openssl reads it", () => {
    const text = `junk\n${fs.readFileSync(pki.leaf.cert, "utf8")}\nmore junk\n${fs.readFileSync(pki.root.cert, "utf8")}`;
    expect(pemCertificates(text)).toEqual([pki.leaf.der, pki.root.der]);
    const ours = certificatePem(pki.root.der);
    expect(ours).toBe(fs.readFileSync(pki.root.cert, "utf8")); // openssl writes the same 64-column form
    expect(ours.split("\n").every((l) => l.length <= 64)).toBe(true);
  });

  test("no block, bad base64 or a missing END line: X509Error", () => {
    x509Error(() => pemCertificates(""));
    x509Error(() => pemCertificates("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"));
    x509Error(() => pemCertificates("-----BEGIN CERTIFICATE-----\nMII*BAD\n-----END CERTIFICATE-----\n"));
    x509Error(() => pemCertificates("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"));
    x509Error(() => pemCertificates("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n"));
    const good = fs.readFileSync(pki.root.cert, "utf8");
    x509Error(() => pemCertificates(good + "-----BEGIN CERTIFICATE-----\nAAAA\n"));
  });
});

describe("verifyChain on openssl-made chains (openssl verify agrees)", () => {
  test("RSA leaf -> intermediate -> root", () => {
    const r = expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [pki.root.der], leafKeyUsage: ["keyEncipherment"] }, "ok");
    if (!r.ok) return;
    expect(r.chain.map((c) => c.subject.text)).toEqual(["", "CN=dsm test intermediate", "O=dsm tests, CN=dsm test root"]);
    expect(r.anchor.der).toEqual(pki.root.der);
    expect(r.issuerCn).toBe("dsm test intermediate");
  });

  test("the intermediate as the trust anchor (partial chain), given or not among the intermediates", () => {
    for (const inters of [[], [pki.inter.der]]) {
      const r = expectVerdict({ leaf: pki.leaf.der, inters, anchors: [pki.inter.der] }, "ok");
      if (r.ok) expect(r.chain.length).toBe(2);
    }
    // Both anchors listed: the path ends at the first anchor reached.
    const r = expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [pki.root.der, pki.inter.der] }, "ok");
    if (r.ok) expect(r.anchor.der).toEqual(pki.inter.der);
  });

  test("ECDSA issuers: P-384 root, P-256 intermediate; ECC leaf (keyAgreement) and RSA leaf (ECDSA-SHA512)", () => {
    const r = expectVerdict({ leaf: pki.ecLeaf.der, inters: [pki.ecInter.der], anchors: [pki.ecRoot.der], leafKeyUsage: ["keyAgreement"] }, "ok");
    if (r.ok) expect(r.chain[0]!.publicKey).toMatchObject({ kind: "ec", curve: "P-384" });
    expect(parseCertificate(pki.rsaUnderEc.der).sigAlgOid).toBe("1.2.840.10045.4.3.4");
    expectVerdict({ leaf: pki.rsaUnderEc.der, inters: [pki.ecInter.der], anchors: [pki.ecRoot.der], leafKeyUsage: ["keyEncipherment"] }, "ok");
  });

  test("RSA-PSS signatures (SHA-256, salt 32; SHA-384, salt 48)", () => {
    expectVerdict({ leaf: pki.leafPss256.der, inters: [pki.inter.der], anchors: [pki.root.der] }, "ok");
    expectVerdict({ leaf: pki.leafPss384.der, inters: [pki.inter.der], anchors: [pki.root.der] }, "ok");
  });

  test("untrusted: another root, or the intermediate missing", () => {
    const r = expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [pki.otherRoot.der] }, "untrusted");
    if (!r.ok) expect(r.reason).toContain("O=dsm tests, CN=dsm test root");
    const r2 = expectVerdict({ leaf: pki.leaf.der, inters: [], anchors: [pki.root.der] }, "untrusted");
    if (!r2.ok) expect(r2.reason).toContain("CN=dsm test intermediate");
    expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [] }, "untrusted");
  });

  test("an impostor intermediate with the real one's name: signature; with the real one too, the path backtracks to it", () => {
    expectVerdict({ leaf: pki.leaf.der, inters: [pki.fakeInter.der], anchors: [pki.otherRoot.der] }, "signature");
    expectVerdict({ leaf: pki.leaf.der, inters: [pki.fakeInter.der], anchors: [pki.root.der, pki.otherRoot.der] }, "signature");
    const r = expectVerdict({ leaf: pki.leaf.der, inters: [pki.fakeInter.der, pki.inter.der], anchors: [pki.otherRoot.der, pki.root.der] }, "ok");
    if (r.ok) expect(r.chain[1]!.der).toEqual(pki.inter.der);
  });

  test("an anchor is matched by its whole DER, not its name: a same-named certificate with another key is no anchor", () => {
    const r = expectVerdict({ leaf: pki.leafByFake.der, inters: [pki.fakeInter.der], anchors: [pki.inter.der] }, "untrusted");
    if (!r.ok) expect(r.reason).toContain("CN=another root");
  });

  test("tampered signature BIT STRING, tampered tbs: signature", () => {
    const der = pki.leaf.der;
    expectVerdict({ leaf: flip(der, der.length - 1), inters: [pki.inter.der], anchors: [pki.root.der] }, "signature");
    const c = parseCertificate(der);
    if (c.publicKey.kind !== "rsa") throw new Error("RSA leaf expected");
    const inModulus = indexOfBytes(der, c.publicKey.n) + 100;
    expectVerdict({ leaf: flip(der, inModulus), inters: [pki.inter.der], anchors: [pki.root.der] }, "signature");
    // An ECDSA signature (DER inside the BIT STRING): its last byte is s's last byte.
    const ec = pki.ecLeaf.der;
    expectVerdict({ leaf: flip(ec, ec.length - 1), inters: [pki.ecInter.der], anchors: [pki.ecRoot.der] }, "signature");
    // A tampered intermediate fails at its own signature, checked with the root's key.
    const inter = pki.inter.der;
    expectVerdict({ leaf: der, inters: [flip(inter, inter.length - 1)], anchors: [pki.root.der] }, "signature");
  });

  test("SHA-1 and MD5 signatures: signature, naming the algorithm", () => {
    const r = expectVerdict({ leaf: pki.leafSha1.der, inters: [pki.inter.der], anchors: [pki.root.der] }, "signature");
    if (!r.ok) expect(r.reason).toContain("SHA-1");
    const r2 = expectVerdict({ leaf: pki.leafMd5.der, inters: [pki.inter.der], anchors: [pki.root.der] }, "signature");
    if (!r2.ok) expect(r2.reason).toContain("MD5");
  });

  test("expired: a leaf issued with a past end date, a leaf after its notAfter, an expired root", () => {
    expectVerdict({ leaf: pki.leafPast.der, inters: [pki.inter.der], anchors: [pki.root.der] }, "expired");
    const short = parseCertificate(pki.leafShort.der);
    // RFC 5280 4.1.2.5: valid "through notAfter, inclusive"; openssl counts notAfter's own second as expired.
    const atNotAfter = { ok: false, why: "openssl: expired when notAfter <= now" };
    expectVerdict({ leaf: pki.leafShort.der, inters: [pki.inter.der], anchors: [pki.root.der], nowMs: short.notAfter + 999, openssl: atNotAfter }, "ok");
    expectVerdict({ leaf: pki.leafShort.der, inters: [pki.inter.der], anchors: [pki.root.der], nowMs: short.notAfter + 1000 }, "expired");
    expectVerdict({ leaf: pki.leafShort.der, inters: [pki.inter.der], anchors: [pki.root.der], nowMs: Date.now() + 2 * DAY }, "expired");
    const root = parseCertificate(pki.shortRoot.der);
    const r = expectVerdict({ leaf: pki.leafShortRoot.der, inters: [pki.shortInter.der], anchors: [pki.shortRoot.der], nowMs: root.notAfter + 5 * DAY }, "expired");
    if (!r.ok) expect(r.reason).toContain("anchor CN=short-lived root");
  });

  test("not yet valid", () => {
    const leaf = parseCertificate(pki.leaf.der);
    expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [pki.root.der], nowMs: leaf.notBefore - 1000 }, "not_yet_valid");
    expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [pki.root.der], nowMs: leaf.notBefore }, "ok");
  });

  test("an intermediate with CA false or without basicConstraints: not_ca", () => {
    expectVerdict({ leaf: pki.leafNotCa.der, inters: [pki.interNotCa.der], anchors: [pki.root.der] }, "not_ca");
    expectVerdict({ leaf: pki.leafNoBc.der, inters: [pki.interNoBc.der], anchors: [pki.root.der] }, "not_ca");
    // As the anchor too: an anchor must be a CA.
    expectVerdict({ leaf: pki.leafNotCa.der, inters: [], anchors: [pki.interNotCa.der] }, "not_ca");
  });

  test("an intermediate whose keyUsage lacks keyCertSign: key_usage", () => {
    expectVerdict({ leaf: pki.leafNoKcs.der, inters: [pki.interNoKcs.der], anchors: [pki.root.der] }, "key_usage");
  });

  test("a leaf keyUsage that is not allowed: key_usage (openssl: -purpose smimeencrypt wants keyEncipherment too)", () => {
    const c = { leaf: pki.leafDs.der, inters: [pki.inter.der], anchors: [pki.root.der], leafKeyUsage: ["keyEncipherment"], osslArgs: ["-purpose", "smimeencrypt"] };
    const r = expectVerdict(c, "key_usage");
    if (!r.ok) expect(r.reason).toContain("digitalSignature");
    expectVerdict({ ...c, leaf: pki.leaf.der }, "ok");
    // Without a leafKeyUsage rule the same leaf passes.
    expectVerdict({ leaf: pki.leafDs.der, inters: [pki.inter.der], anchors: [pki.root.der] }, "ok");
  });

  test("pathLen 0 with a CA below it: path_length", () => {
    const r = expectVerdict({ leaf: pki.leafDeep.der, inters: [pki.inter2.der, pki.inter.der], anchors: [pki.root.der] }, "path_length");
    if (!r.ok) expect(r.reason).toContain("CN=dsm test intermediate");
    // An impostor of inter tried first fails its signature; the failure reported is the real inter's.
    expectVerdict({ leaf: pki.leafDeep.der, inters: [pki.inter2.der, pki.fakeInter.der, pki.inter.der], anchors: [pki.otherRoot.der, pki.root.der] }, "path_length");
    // The same path ending at inter2 as the anchor holds no CA below a pathLen 0.
    expectVerdict({ leaf: pki.leafDeep.der, inters: [], anchors: [pki.inter2.der] }, "ok");
  });

  test("an unknown critical extension: critical_extension", () => {
    const r = expectVerdict({ leaf: pki.leafCrit.der, inters: [pki.inter.der], anchors: [pki.root.der] }, "critical_extension");
    if (!r.ok) expect(r.reason).toContain("1.3.6.1.4.1.55555.1");
  });

  test("stricter than openssl: a critical nameConstraints (not enforced here), a CA certificate as the leaf", () => {
    expectVerdict({ leaf: pki.leafNc.der, inters: [pki.interNc.der], anchors: [pki.root.der], openssl: { ok: true, why: "openssl enforces nameConstraints" } }, "critical_extension");
    expectVerdict({ leaf: pki.leafCa.der, inters: [pki.inter.der], anchors: [pki.root.der], openssl: { ok: true, why: "openssl verify accepts a CA as the end entity" } }, "not_ca");
  });

  test("paths longer than maxDepth and cycles: too_long", () => {
    expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [pki.root.der], maxDepth: 3 }, "ok");
    expectVerdict({ leaf: pki.leaf.der, inters: [pki.inter.der], anchors: [pki.root.der], maxDepth: 2 }, "too_long");
    const r = expectVerdict({ leaf: pki.leafCyc.der, inters: [pki.cycA.der, pki.cycB.der], anchors: [pki.root.der] }, "too_long");
    if (!r.ok) expect(r.reason).toContain("cycle");
  });

  test("truncated or trailing DER: parse", () => {
    const der = pki.leaf.der;
    expectVerdict({ leaf: der.subarray(0, der.length - 10), inters: [pki.inter.der], anchors: [pki.root.der] }, "parse");
    expectVerdict({ leaf: der, inters: [pki.inter.der.subarray(0, 50)], anchors: [pki.root.der] }, "parse");
    // openssl reads the first DER object of a PEM block and ignores what follows it.
    expectVerdict({ leaf: new Uint8Array([...der, 0]), inters: [pki.inter.der], anchors: [pki.root.der], openssl: { ok: true, why: "openssl ignores bytes after the certificate" } }, "parse");
  });

  test("never throws on garbage arguments", () => {
    const bad = [new Uint8Array([1, 2, 3]), new Uint8Array(0)];
    for (const b of bad) expect(verifyChain(b, [b], [b], { nowMs: Date.now() })).toMatchObject({ ok: false, check: "parse" });
    expect(verifyChain(pki.leaf.der, [pki.inter.der], [pki.root.der], { nowMs: Number.NaN })).toMatchObject({ ok: false });
    expect(verifyChain(null as unknown as Uint8Array, [], [], { nowMs: 0 })).toMatchObject({ ok: false, check: "parse" });
  });
});

// ---- Real swtpm EK certificates ----

const haveTools = haveSwtpm() && Bun.which("tpm2_nvread") !== null && Bun.which("swtpm_localca") !== null;
if (!haveTools) console.warn("x509.test.ts: swtpm, swtpm_localca or tpm2-tools not installed: skipping the EK certificate tests");

const RSA_EK_CERT = "0x01c00002";
const ECC_EK_CERT = "0x01c00016";

describe.skipIf(!haveTools)("verifyChain on swtpm EK certificates (openssl verify agrees)", () => {
  let tpm: Swtpm & { ekCa?: EkCa };
  let ekCa: EkCa;
  let otherCa: EkCa;
  const ek: Record<string, Uint8Array> = {};
  const nvSize: Record<string, number> = {};
  const root = () => pemCertificates(ekCa.root)[0]!;
  const inter = () => pemCertificates(ekCa.intermediate)[0]!;

  /** The DER certificate at the start of an NV index's contents; the rest must be padding. */
  function derPrefix(nv: Uint8Array): Uint8Array {
    const lenBytes = nv[1]! & 0x80 ? nv[1]! & 0x7f : 0;
    let len = lenBytes === 0 ? nv[1]! : 0;
    for (let i = 0; i < lenBytes; i++) len = len * 256 + nv[2 + i]!;
    const total = 2 + lenBytes + len;
    expect(nv.length).toBeGreaterThanOrEqual(total);
    expect(nv.subarray(total).every((b) => b === 0 || b === 0xff)).toBe(true);
    return nv.subarray(0, total);
  }

  beforeAll(async () => {
    const caDir = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-x509-ekca-"));
    tpm = await startSwtpm({ ekCa: caDir });
    ekCa = tpm.ekCa!;
    for (const index of [RSA_EK_CERT, ECC_EK_CERT]) {
      const env = { ...process.env, TPM2TOOLS_TCTI: tpm.tcti };
      const pub = Bun.spawnSync(["tpm2_nvreadpublic", index], { env, stdout: "pipe", stderr: "pipe" });
      const size = /size:\s*(\d+)/.exec(pub.stdout.toString());
      if (pub.exitCode !== 0 || !size) throw new Error(`tpm2_nvreadpublic ${index}: ${pub.stderr.toString()}`);
      nvSize[index] = Number(size[1]);
      const file = path.join(caDir, `${index}.bin`);
      const r = Bun.spawnSync(["tpm2_nvread", "-T", tpm.tcti, "-C", "o", "-s", String(nvSize[index]), "-o", file, index], { stdout: "pipe", stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`tpm2_nvread ${index}: ${r.stderr.toString()}`);
      ek[index] = new Uint8Array(fs.readFileSync(file));
    }
    // A second, unrelated swtpm_localca CA: same names (CN=swtpm-localca under
    // CN=swtpm-localca-rootca), different keys.
    const otherState = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-x509-swtpm2-"));
    otherCa = manufacture(otherState, fs.mkdtempSync(path.join(os.tmpdir(), "dsm-x509-ekca2-")));
    fs.rmSync(otherState, { recursive: true, force: true });
  }, 60_000);

  afterAll(async () => {
    await tpm?.stop();
    for (const d of [tpm?.stateDir, ekCa?.dir, otherCa?.dir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  test("the NV indices hold the DER certificates (no padding from swtpm)", () => {
    for (const index of [RSA_EK_CERT, ECC_EK_CERT]) {
      expect(ek[index]!.length).toBe(nvSize[index]!);
      expect(derPrefix(ek[index]!).length).toBe(ek[index]!.length);
    }
  });

  test("RSA 2048 EK certificate verifies to the root through swtpm-localca", () => {
    const leaf = derPrefix(ek[RSA_EK_CERT]!);
    const r = expectVerdict({ leaf, inters: [inter()], anchors: [root()], leafKeyUsage: ["keyEncipherment"] }, "ok");
    if (!r.ok) return;
    expect(r.issuerCn).toBe("swtpm-localca");
    expect(r.chain.length).toBe(3);
    expect(r.anchor.subject.cn).toBe("swtpm-localca-rootca");
    const c = r.chain[0]!;
    expect(c.publicKey.kind).toBe("rsa");
    if (c.publicKey.kind === "rsa") expect(c.publicKey.n.length).toBe(256);
    expect([...c.keyUsage!]).toEqual(["keyEncipherment"]);
    expect(c.extKeyUsage).toEqual(["2.23.133.8.1"]); // tcg-kp-EKCertificate
    expect(c.basicConstraints).toEqual({ ca: false, pathLen: null });
  });

  test("ECC P-384 EK certificate verifies to the root through swtpm-localca", () => {
    const leaf = derPrefix(ek[ECC_EK_CERT]!);
    const r = expectVerdict({ leaf, inters: [inter()], anchors: [root()], leafKeyUsage: ["keyAgreement"] }, "ok");
    if (!r.ok) return;
    expect(r.issuerCn).toBe("swtpm-localca");
    expect(r.chain[0]!.publicKey).toMatchObject({ kind: "ec", curve: "P-384" });
    expect([...r.chain[0]!.keyUsage!]).toEqual(["keyAgreement"]);
  });

  test("with the intermediate as the trust anchor", () => {
    for (const index of [RSA_EK_CERT, ECC_EK_CERT]) {
      const r = expectVerdict({ leaf: derPrefix(ek[index]!), anchors: [inter()] }, "ok");
      if (r.ok) {
        expect(r.chain.length).toBe(2);
        expect(r.issuerCn).toBe("swtpm-localca");
      }
    }
  });

  test("what swtpm writes: critical subjectAltName with the TPM attributes, subjectDirectoryAttributes, RSA-SHA256 from a 3072-bit CA", () => {
    for (const index of [RSA_EK_CERT, ECC_EK_CERT]) {
      const c = parseCertificate(derPrefix(ek[index]!));
      expect(c.sigAlgOid).toBe("1.2.840.113549.1.1.11");
      expect(c.unknownCritical).toEqual([]);
      const text = run(["openssl", "x509", "-noout", "-text", "-in", writeTemp("ek.pem", certificatePem(c.der))]).out;
      expect(text).toMatch(/Subject Alternative Name: critical\s+DirName:\/2\.23\.133\.2\.1=/);
      expect(text).toContain("Subject Directory Attributes");
    }
    const i = parseCertificate(inter());
    expect(i.publicKey.kind === "rsa" && i.publicKey.n.length).toBe(384);
  });

  test("refusals: another swtpm_localca CA, the wrong key usage, tampering", () => {
    const leaf = derPrefix(ek[RSA_EK_CERT]!);
    const other = { root: pemCertificates(otherCa.root)[0]!, inter: pemCertificates(otherCa.intermediate)[0]! };
    // Same issuer name, other key: the signature decides.
    expectVerdict({ leaf, inters: [other.inter], anchors: [other.root] }, "signature");
    expectVerdict({ leaf, inters: [inter()], anchors: [other.root] }, "signature"); // the real intermediate is not signed by the other root
    const r = expectVerdict({ leaf, inters: [], anchors: [other.root] }, "untrusted");
    if (!r.ok) expect(r.reason).toContain("CN=swtpm-localca");
    expectVerdict({ leaf, inters: [inter()], anchors: [root()], leafKeyUsage: ["keyAgreement"], openssl: { ok: true, why: "openssl has no EK key-usage purpose" } }, "key_usage");
    expectVerdict({ leaf: flip(leaf, leaf.length - 1), inters: [inter()], anchors: [root()] }, "signature");
    const c = parseCertificate(leaf);
    expectVerdict({ leaf: flip(leaf, indexOfBytes(leaf, c.spki) + 40), inters: [inter()], anchors: [root()] }, "signature");
    expectVerdict({ leaf, inters: [inter()], anchors: [root()], nowMs: c.notBefore - DAY }, "not_yet_valid");
  });
});
