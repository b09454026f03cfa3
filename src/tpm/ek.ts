// The endorsement key (EK) of a TPM as the TCG EK Credential Profile for TPM Family 2.0
// defines it: the default templates, the persistent handles and the NV indices where a
// manufacturer (or swtpm_setup --create-ek-cert) leaves the EK and its certificate, the EK's
// authPolicy, and which EK a dsm node presents. The EK is a primary key of the endorsement
// hierarchy: the same template always gives the same key on one TPM, so a TPM without a
// persistent EK derives it again (TPM2_CreatePrimary, about 20 ms for RSA 2048 on swtpm,
// seconds on some chips). A restricted decryption key: it never signs; it proves the TPM by
// decrypting (TPM2_ActivateCredential) and salts HMAC sessions.
import * as crypto from "node:crypto";
import { isHandleEmpty, type Tpm, TpmError } from "./tpm.ts";

/** The EKs dsm knows, in the order a node looks for a certificate. */
export type EkKind = "rsa2048" | "ecc-p256" | "ecc-p384";
export const EK_KINDS: readonly EkKind[] = ["rsa2048", "ecc-p256", "ecc-p384"];

/** NV index of each EK's certificate (TCG EK Credential Profile, 2.2.1.4; the P-384 one in the high range). */
export const EK_CERT_NV: Readonly<Record<EkKind, number>> = { rsa2048: 0x01c00002, "ecc-p256": 0x01c0000a, "ecc-p384": 0x01c00016 };

/**
 * The persistent handle of each EK in the TCG handle registry (RSA 0x81010001, ECC P-256
 * 0x81010002); the P-384 EK where swtpm_setup persists it (0x81010016, after its NV index).
 */
export const EK_HANDLE: Readonly<Record<EkKind, number>> = { rsa2048: 0x81010001, "ecc-p256": 0x81010002, "ecc-p384": 0x81010016 };

/** Every handle loadEk looks at, EK_HANDLE first: swtpm 0.8 and later persist the P-256 EK at 0x8101000a. */
export const EK_HANDLES: Readonly<Record<EkKind, readonly number[]>> = { rsa2048: [0x81010001], "ecc-p256": [0x81010002, 0x8101000a], "ecc-p384": [0x81010016] };

const TPM_ALG_RSA = 0x0001;
const TPM_ALG_AES = 0x0006;
const TPM_ALG_SHA256 = 0x000b;
const TPM_ALG_SHA384 = 0x000c;
const TPM_ALG_NULL = 0x0010;
const TPM_ALG_ECC = 0x0023;
const TPM_ALG_CFB = 0x0043;

/** PolicySecret(TPM_RH_ENDORSEMENT) in SHA-256: the low-range templates' authPolicy ("PolicyA"). */
export const POLICY_A_SHA256 = hex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa");
/** PolicySecret(TPM_RH_ENDORSEMENT) in SHA-384. */
export const POLICY_A_SHA384 = hex("8bbf2266537c171cb56e403c4dc1d4b64f432611dc386e6f532050c3278c930e143e8bb1133824ccb431053871c6db53");
/** PolicyAuthorizeNV(0x01c07f02) in SHA-384 ("PolicyC"). */
export const POLICY_C_SHA384 = hex("d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5b4947c2d73e63005eed2dc2b3593d165");
/** PolicyOR(PolicyA, PolicyC) in SHA-384 ("PolicyB"): the high-range templates' authPolicy. */
export const POLICY_B_SHA384 = hex("b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12");

// TPMA_OBJECT: fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt
const ATTRS_LOW = 0x000300b2;
// the same | userWithAuth: the high-range templates also take the (empty) authValue for USER
const ATTRS_HIGH = 0x000300f2;

interface Spec {
  nameAlg: number;
  /** Bytes of the `unique` field in the template, and in a key made from it. */
  uniqueTemplate: number;
  uniqueKey: number;
  template: Uint8Array;
}

/**
 * The templates (TPMT_PUBLIC wire bytes):
 * - rsa2048: template L-1 (RSA 2048, SHA-256, AES-128-CFB, PolicyA, unique 256 zero bytes);
 * - ecc-p256: template L-2 (NIST P-256, SHA-256, AES-128-CFB, PolicyA, unique x and y 32 zero bytes each);
 * - ecc-p384: the high-range NIST P-384 template as swtpm_setup 0.7 creates it at 0x81010016 and
 *   tpm2_createek -G ecc384 does (SHA-384, AES-256-CFB, userWithAuth, PolicyB, empty unique).
 */
const SPECS: Readonly<Record<EkKind, Spec>> = {
  rsa2048: {
    nameAlg: TPM_ALG_SHA256,
    uniqueTemplate: 2 + 256,
    uniqueKey: 2 + 256,
    template: concat(u16(TPM_ALG_RSA), u16(TPM_ALG_SHA256), u32(ATTRS_LOW), sized(POLICY_A_SHA256), u16(TPM_ALG_AES), u16(128), u16(TPM_ALG_CFB), u16(TPM_ALG_NULL), u16(2048), u32(0), sized(new Uint8Array(256))),
  },
  "ecc-p256": {
    nameAlg: TPM_ALG_SHA256,
    uniqueTemplate: 2 + 32 + 2 + 32,
    uniqueKey: 2 + 32 + 2 + 32,
    template: concat(u16(TPM_ALG_ECC), u16(TPM_ALG_SHA256), u32(ATTRS_LOW), sized(POLICY_A_SHA256), u16(TPM_ALG_AES), u16(128), u16(TPM_ALG_CFB), u16(TPM_ALG_NULL), u16(0x0003), u16(TPM_ALG_NULL), sized(new Uint8Array(32)), sized(new Uint8Array(32))),
  },
  "ecc-p384": {
    nameAlg: TPM_ALG_SHA384,
    uniqueTemplate: 2 + 2,
    uniqueKey: 2 + 48 + 2 + 48,
    template: concat(u16(TPM_ALG_ECC), u16(TPM_ALG_SHA384), u32(ATTRS_HIGH), sized(POLICY_B_SHA384), u16(TPM_ALG_AES), u16(256), u16(TPM_ALG_CFB), u16(TPM_ALG_NULL), u16(0x0004), u16(TPM_ALG_NULL), sized(new Uint8Array(0)), sized(new Uint8Array(0))),
  },
};

/** The EK template of a kind (TPMT_PUBLIC wire bytes, a fresh copy). */
export function ekTemplate(kind: EkKind): Uint8Array {
  return Uint8Array.from(spec(kind).template);
}

/** The EK's nameAlg (TPM_ALG_SHA256 or TPM_ALG_SHA384): also the hash of its policy session. */
export function ekNameAlg(kind: EkKind): number {
  return spec(kind).nameAlg;
}

/** True when `publicArea` (TPMT_PUBLIC) is a key made from the kind's template: every field but `unique` equal, `unique` of the key's size. */
export function isEkOfTemplate(kind: EkKind, publicArea: Uint8Array): boolean {
  const s = spec(kind);
  const prefix = s.template.length - s.uniqueTemplate;
  if (publicArea.length !== prefix + s.uniqueKey) return false;
  for (let i = 0; i < prefix; i++) if (publicArea[i] !== s.template[i]) return false;
  const u = publicArea.subarray(prefix);
  if (kind === "rsa2048") return ((u[0]! << 8) | u[1]!) === 256;
  const n = (s.uniqueKey - 4) / 2;
  return ((u[0]! << 8) | u[1]!) === n && ((u[2 + n]! << 8) | u[3 + n]!) === n;
}

/** The EK's public key (RSA modulus with exponent 65537, or the ECC point) as a node:crypto key. */
export function ekPublicKey(kind: EkKind, publicArea: Uint8Array): crypto.KeyObject {
  if (!isEkOfTemplate(kind, publicArea)) throw new TpmError(`the public area is not a ${kind} EK of the TCG template`);
  const s = spec(kind);
  const u = publicArea.subarray(s.template.length - s.uniqueTemplate);
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64url");
  if (kind === "rsa2048") return crypto.createPublicKey({ key: { kty: "RSA", n: b64(u.subarray(2)), e: "AQAB" }, format: "jwk" });
  const n = (s.uniqueKey - 4) / 2;
  const x = u.subarray(2, 2 + n);
  const y = u.subarray(4 + n);
  return crypto.createPublicKey({ key: { kty: "EC", crv: kind === "ecc-p256" ? "P-256" : "P-384", x: b64(x), y: b64(y) }, format: "jwk" });
}

/** An EK loaded for use: release() when done (flushes a key made by CreatePrimary; nothing for a persistent one). */
export interface LoadedEk {
  kind: EkKind;
  /** ESYS_TR of the key. */
  handle: number;
  /** TPMT_PUBLIC wire bytes. */
  publicArea: Uint8Array;
  /** Where it was found, or null when made from the template. */
  persistentHandle: number | null;
  release(): void;
}

/**
 * The EK of a kind: the persistent key at its TCG handle (EK_HANDLES) when there is one made
 * from the template, else TPM2_CreatePrimary from the template in the endorsement hierarchy
 * (flushed by release()). A key at the handle that is not of the template (another program's
 * key, another template) is left alone and the template's key is made instead. Its `unique`
 * is not checked against a fresh CreatePrimary (that would cost what persisting saves): the
 * certificate check in findEndorsement, and a verifier's, catch a key that is not the EK.
 */
export function loadEk(tpm: Tpm, kind: EkKind, opts: { persistent?: boolean } = {}): LoadedEk {
  if (opts.persistent !== false) {
    for (const h of EK_HANDLES[kind]) {
      let handle: number;
      try {
        handle = tpm.loadPersistent(h);
      } catch (e) {
        if (isHandleEmpty(e)) continue;
        throw e;
      }
      const publicArea = tpm.readPublic(handle);
      if (isEkOfTemplate(kind, publicArea)) return { kind, handle, publicArea, persistentHandle: h, release: () => {} };
    }
  }
  const made = tpm.createPrimary("endorsement", spec(kind).template);
  return { kind, handle: made.handle, publicArea: made.publicArea, persistentHandle: null, release: () => tpm.flush(made.handle) };
}

/**
 * A policy session that satisfies the EK's authPolicy (its USER role, which
 * TPM2_ActivateCredential needs): PolicySecret(TPM_RH_ENDORSEMENT) with the endorsement
 * hierarchy's empty auth, then for the high-range template PolicyOR(PolicyA, PolicyC).
 * In the EK's nameAlg; flush it when done.
 */
export function ekPolicySession(tpm: Tpm, kind: EkKind): number {
  const session = tpm.startPolicySession(ekNameAlg(kind));
  try {
    tpm.policySecret(session);
    if (kind === "ecc-p384") tpm.policyOr(session, [POLICY_A_SHA384, POLICY_C_SHA384]);
    return session;
  } catch (e) {
    tpm.flush(session);
    throw e;
  }
}

/**
 * The DER certificate of the kind's EK from its NV index, trailing padding after the
 * SEQUENCE cut off (indices are often defined larger than the certificate); null when the
 * index is not defined: this TPM has no certificate for that EK.
 */
export function readEkCertificate(tpm: Tpm, kind: EkKind): Uint8Array | null {
  let raw: Uint8Array;
  try {
    raw = tpm.nvRead(EK_CERT_NV[kind]);
  } catch (e) {
    if (isHandleEmpty(e)) return null;
    throw e;
  }
  return derSequence(raw, `the ${kind} EK certificate in NV ${nvHex(EK_CERT_NV[kind])}`);
}

/** The leading DER SEQUENCE of `bytes` (what follows it, zero padding in an NV index, is cut off). */
export function derSequence(bytes: Uint8Array, what = "DER"): Uint8Array {
  if (bytes.length < 2 || bytes[0] !== 0x30) throw new TpmError(`${what} is not a DER SEQUENCE (first byte 0x${(bytes[0] ?? 0).toString(16)})`);
  const b1 = bytes[1]!;
  let len: number;
  let header: number;
  if (b1 < 0x80) {
    len = b1;
    header = 2;
  } else {
    const n = b1 & 0x7f;
    if (n === 0 || n > 3 || bytes.length < 2 + n) throw new TpmError(`${what}: DER length of ${n} bytes is not supported`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + bytes[2 + i]!;
    header = 2 + n;
  }
  const total = header + len;
  if (total > bytes.length) throw new TpmError(`${what} is truncated: the SEQUENCE needs ${total} bytes, ${bytes.length} stored`);
  return bytes.slice(0, total);
}

/** The certificate does not certify the EK this TPM derives from the TCG template. */
export class EkCertificateMismatch extends TpmError {
  constructor(message: string) {
    super(message);
    this.name = "EkCertificateMismatch";
  }
}

/** The EK a node presents: its kind, TPMT_PUBLIC, and DER certificate from NV (null: none). */
export interface Endorsement {
  kind: EkKind;
  publicArea: Uint8Array;
  certificate: Uint8Array | null;
}

/** The first EK, in EK_KINDS order, whose certificate NV index exists (with the certificate); null when none does. */
export function findEkCertificate(tpm: Tpm): { kind: EkKind; certificate: Uint8Array } | null {
  for (const kind of EK_KINDS) {
    const certificate = readEkCertificate(tpm, kind);
    if (certificate !== null) return { kind, certificate };
  }
  return null;
}

/**
 * The EK this TPM presents: the first kind with a certificate (checked to certify that very
 * EK: the key in the certificate equals the EK's public key, else EkCertificateMismatch), or
 * with no certificate at all the RSA 2048 template EK, certificate null.
 */
export function endorsementOf(tpm: Tpm, found: { kind: EkKind; certificate: Uint8Array } | null = findEkCertificate(tpm)): Endorsement {
  const kind = found?.kind ?? "rsa2048";
  const ek = loadEk(tpm, kind);
  try {
    if (found !== null) checkCertificateKey(kind, ek, found.certificate);
    return { kind, publicArea: ek.publicArea, certificate: found?.certificate ?? null };
  } finally {
    ek.release();
  }
}

function checkCertificateKey(kind: EkKind, ek: LoadedEk, der: Uint8Array): void {
  const where = `NV ${nvHex(EK_CERT_NV[kind])}`;
  let certKey: crypto.KeyObject;
  try {
    certKey = new crypto.X509Certificate(der).publicKey;
  } catch (e) {
    throw new TpmError(`the ${kind} EK certificate in ${where} does not parse as X.509: ${(e as Error).message}`);
  }
  if (!certKey.equals(ekPublicKey(kind, ek.publicArea))) {
    const from = ek.persistentHandle !== null ? `the key at ${handleHex(ek.persistentHandle)}` : "the key of the TCG template";
    throw new EkCertificateMismatch(
      `the ${kind} EK certificate in ${where} certifies another key than this TPM's ${kind} EK (${from}): the EK may come from a vendor template (NV 0x01c00004 / 0x01c0000c), or the persistent EK was replaced`,
    );
  }
}

function spec(kind: EkKind): Spec {
  const s = SPECS[kind];
  if (s === undefined) throw new TpmError(`unknown EK kind ${JSON.stringify(kind)} (one of ${EK_KINDS.join(", ")})`);
  return s;
}

function nvHex(i: number): string {
  return `0x${i.toString(16).padStart(8, "0")}`;
}

function handleHex(h: number): string {
  return `0x${h.toString(16)}`;
}

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, "hex"));
}

function u16(v: number): Uint8Array {
  return new Uint8Array([v >> 8, v & 0xff]);
}

function u32(v: number): Uint8Array {
  return new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}

function sized(b: Uint8Array): Uint8Array {
  return concat(u16(b.length), b);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
