// TPM 2.0 quote verification in pure TypeScript (DESIGN.md section 7): the verifier needs no
// TPM. Every parser reads TPM wire format exactly as TPM 2.0 Part 2 defines it (big-endian,
// no padding, TPM2B = u16 size || bytes) and throws an Error naming what failed on anything
// truncated, trailing or unsupported. verifyQuote never throws: it answers { ok: false, reason }.
//
// Only what dsm uses is supported: an ECC NIST P-256 attestation key with a sha256 name, an
// ECDSA-SHA256 signature, and a quote over one sha256 PCR bank. TPM ECDSA signatures are not
// low-S normalised, so the signature is checked with plain ECDSA (BoringSSL), not with
// p256.verify, which insists on low S.
import * as crypto from "node:crypto";
import { p256 } from "@noble/curves/nist.js";
import { toHex } from "../encoding/hex.ts";
import { sha256 } from "../crypto/sha256.ts";
import { WireReader } from "./wire.ts";

export const TPM_ALG_SHA256 = 0x000b;
export const TPM_ALG_NULL = 0x0010;
export const TPM_ALG_ECDSA = 0x0018;
export const TPM_ALG_ECC = 0x0023;
export const TPM_ECC_NIST_P256 = 0x0003;
export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;
/** TPM_RH_ENDORSEMENT: the endorsement hierarchy handle, which is also its (qualified) name. */
export const TPM_RH_ENDORSEMENT = 0x4000000b;

// TPMA_OBJECT bits (Part 2, 8.3)
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

// TPMI_ST_ATTEST values other than the quote: parsed only far enough to report their type.
const OTHER_ATTEST_TYPES = new Set([0x8014, 0x8015, 0x8016, 0x8017, 0x8019, 0x801a, 0x801c]);
const PCR_SELECT_MAX = 4; // TPM2_PCR_SELECT_MAX: 32 PCRs
const NUM_PCR_BANKS = 16; // TPM2_NUM_PCR_BANKS
const N = p256.Point.CURVE().n;

function asBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new Error(`${what} must be a Uint8Array`);
  return v;
}

function hex16(n: number): string {
  return `0x${n.toString(16).padStart(4, "0")}`;
}

function leftPad32(b: Uint8Array, field: string): Uint8Array {
  if (b.length > 32) throw new Error(`${field} is ${b.length} bytes, P-256 allows at most 32`);
  const out = new Uint8Array(32);
  out.set(b, 32 - b.length);
  return out;
}

/**
 * Strips a TPM2B size prefix (u16 size || bytes) and checks the size covers the rest exactly.
 * tpm2-tools writes `tpm2_readpublic -f tss` as TPM2B_PUBLIC: this turns it into TPMT_PUBLIC.
 */
export function unwrapTpm2b(bytes: Uint8Array, what = "TPM2B"): Uint8Array {
  const r = new WireReader(asBytes(bytes, what), what);
  const inner = r.tpm2b("contents", 0xffff);
  r.end();
  return inner;
}

// ---------------------------------------------------------------------------------------------
// TPMT_PUBLIC (ECC P-256 only)

export interface EccPublicArea {
  type: number;
  nameAlg: number;
  objectAttributes: number;
  fixedTPM: boolean;
  fixedParent: boolean;
  sensitiveDataOrigin: boolean;
  userWithAuth: boolean;
  restricted: boolean;
  decrypt: boolean;
  sign: boolean;
  authPolicy: Uint8Array;
  /** TPMT_SYM_DEF_OBJECT.algorithm (TPM_ALG_NULL for a signing key). */
  symmetric: number;
  /** TPMT_ECC_SCHEME: scheme algorithm and its hash (hashAlg is TPM_ALG_NULL when the scheme is). */
  scheme: { alg: number; hashAlg: number };
  curve: number;
  kdf: { alg: number; hashAlg: number };
  x: Uint8Array;
  y: Uint8Array;
  sec1Compressed: Uint8Array;
  /** 0x000b || sha256(TPMT_PUBLIC wire bytes). */
  name: Uint8Array;
}

/** TPMT_PUBLIC wire bytes (no TPM2B size prefix) of an ECC NIST P-256 key with a sha256 nameAlg. */
export function parsePublicArea(tpmtPublic: Uint8Array): EccPublicArea {
  const buf = asBytes(tpmtPublic, "TPMT_PUBLIC");
  const r = new WireReader(buf, "TPMT_PUBLIC");
  const type = r.u16("type");
  if (type !== TPM_ALG_ECC) throw new Error(`TPMT_PUBLIC: key type ${hex16(type)} is not ECC (0x0023)`);
  const nameAlg = r.u16("nameAlg");
  if (nameAlg !== TPM_ALG_SHA256) throw new Error(`TPMT_PUBLIC: nameAlg ${hex16(nameAlg)} is not sha256 (0x000b)`);
  const objectAttributes = r.u32("objectAttributes");
  const authPolicy = r.tpm2b("authPolicy", 64);
  // TPMS_ECC_PARMS
  const symmetric = r.u16("symmetric.algorithm");
  if (symmetric !== TPM_ALG_NULL) {
    r.u16("symmetric.keyBits");
    r.u16("symmetric.mode");
  }
  const schemeAlg = r.u16("scheme.scheme");
  let schemeHash = TPM_ALG_NULL;
  if (schemeAlg !== TPM_ALG_NULL) {
    schemeHash = r.u16("scheme.hashAlg");
    if (schemeAlg === 0x001a) r.u16("scheme.count"); // TPM_ALG_ECDAA: TPMS_SCHEME_ECDAA has a count
  }
  const curve = r.u16("curveID");
  if (curve !== TPM_ECC_NIST_P256) throw new Error(`TPMT_PUBLIC: curve ${hex16(curve)} is not NIST P-256 (0x0003)`);
  const kdfAlg = r.u16("kdf.scheme");
  const kdfHash = kdfAlg === TPM_ALG_NULL ? TPM_ALG_NULL : r.u16("kdf.hashAlg");
  // TPMS_ECC_POINT
  const x = leftPad32(r.tpm2b("unique.x", 32), "unique.x");
  const y = leftPad32(r.tpm2b("unique.y", 32), "unique.y");
  r.end();

  const uncompressed = new Uint8Array(65);
  uncompressed[0] = 0x04;
  uncompressed.set(x, 1);
  uncompressed.set(y, 33);
  try {
    p256.Point.fromBytes(uncompressed).assertValidity();
  } catch {
    throw new Error("TPMT_PUBLIC: unique (x, y) is not a point on P-256");
  }
  const sec1Compressed = new Uint8Array(33);
  sec1Compressed[0] = 0x02 | (y[31]! & 1);
  sec1Compressed.set(x, 1);

  const name = new Uint8Array(34);
  name[1] = TPM_ALG_SHA256;
  name.set(sha256(buf), 2);

  const has = (bit: number) => (objectAttributes & bit) !== 0;
  return {
    type,
    nameAlg,
    objectAttributes,
    fixedTPM: has(TPMA_OBJECT.fixedTPM),
    fixedParent: has(TPMA_OBJECT.fixedParent),
    sensitiveDataOrigin: has(TPMA_OBJECT.sensitiveDataOrigin),
    userWithAuth: has(TPMA_OBJECT.userWithAuth),
    restricted: has(TPMA_OBJECT.restricted),
    decrypt: has(TPMA_OBJECT.decrypt),
    sign: has(TPMA_OBJECT.sign),
    authPolicy,
    symmetric,
    scheme: { alg: schemeAlg, hashAlg: schemeHash },
    curve,
    kdf: { alg: kdfAlg, hashAlg: kdfHash },
    x,
    y,
    sec1Compressed,
    name,
  };
}

/**
 * Qualified name of an object: nameAlg || sha256(parent's qualified name || name). A hierarchy's
 * qualified name is its 4-byte handle, so a primary key in the endorsement hierarchy has
 * qualifiedName(name) with the default parent. Checked against swtpm: it is what TPM2_Quote
 * puts in qualifiedSigner and what `tpm2_readpublic -q` prints.
 */
export function qualifiedName(name: Uint8Array, parentQualifiedName: Uint8Array = handleBytes(TPM_RH_ENDORSEMENT)): Uint8Array {
  const h = new Bun.CryptoHasher("sha256");
  h.update(parentQualifiedName);
  h.update(name);
  const out = new Uint8Array(34);
  out[1] = TPM_ALG_SHA256;
  out.set(h.digest() as Uint8Array, 2);
  return out;
}

function handleBytes(handle: number): Uint8Array {
  return new Uint8Array([handle >>> 24, (handle >>> 16) & 0xff, (handle >>> 8) & 0xff, handle & 0xff]);
}

// ---------------------------------------------------------------------------------------------
// TPMS_ATTEST

export interface PcrSelection {
  hash: number;
  /** Selected PCR indices, ascending. */
  pcrs: number[];
}

export interface ParsedAttest {
  magic: number;
  type: number;
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clockInfo: { clock: bigint; resetCount: number; restartCount: number; safe: boolean };
  firmwareVersion: bigint;
  /** Present when type is TPM_ST_ATTEST_QUOTE. */
  quote?: { pcrSelect: PcrSelection[]; pcrDigest: Uint8Array };
  /** The raw attested union for the other (known) attestation types, which are not parsed further. */
  attested?: Uint8Array;
}

/** TPMS_ATTEST wire bytes. Magic is returned, not checked (verifyQuote checks it). */
export function parseAttest(tpmsAttest: Uint8Array): ParsedAttest {
  const r = new WireReader(asBytes(tpmsAttest, "TPMS_ATTEST"), "TPMS_ATTEST");
  const magic = r.u32("magic");
  const type = r.u16("type");
  const qualifiedSigner = r.tpm2b("qualifiedSigner", 2 + 64); // TPM2B_NAME: alg || digest, or a 4-byte handle
  const extraData = r.tpm2b("extraData", 64); // TPM2B_DATA: sizeof(TPMT_HA)
  const clock = r.u64("clockInfo.clock");
  const resetCount = r.u32("clockInfo.resetCount");
  const restartCount = r.u32("clockInfo.restartCount");
  const safeByte = r.u8("clockInfo.safe");
  if (safeByte > 1) throw new Error(`TPMS_ATTEST: clockInfo.safe is ${safeByte}, must be 0 or 1`);
  const firmwareVersion = r.u64("firmwareVersion");
  const base = {
    magic,
    type,
    qualifiedSigner,
    extraData,
    clockInfo: { clock, resetCount, restartCount, safe: safeByte === 1 },
    firmwareVersion,
  };
  if (type === TPM_ST_ATTEST_QUOTE) {
    const count = r.u32("pcrSelect.count");
    if (count > NUM_PCR_BANKS) throw new Error(`TPMS_ATTEST: pcrSelect.count ${count} exceeds ${NUM_PCR_BANKS} banks`);
    const pcrSelect: PcrSelection[] = [];
    for (let i = 0; i < count; i++) {
      const hash = r.u16(`pcrSelect[${i}].hash`);
      const sizeofSelect = r.u8(`pcrSelect[${i}].sizeofSelect`);
      if (sizeofSelect > PCR_SELECT_MAX) {
        throw new Error(`TPMS_ATTEST: pcrSelect[${i}].sizeofSelect ${sizeofSelect} exceeds ${PCR_SELECT_MAX}`);
      }
      const bitmap = r.bytes(sizeofSelect, `pcrSelect[${i}].pcrSelect`);
      const pcrs: number[] = [];
      for (let p = 0; p < sizeofSelect * 8; p++) if (bitmap[p >> 3]! & (1 << (p & 7))) pcrs.push(p);
      pcrSelect.push({ hash, pcrs });
    }
    const pcrDigest = r.tpm2b("pcrDigest", 64);
    r.end();
    return { ...base, quote: { pcrSelect, pcrDigest } };
  }
  if (OTHER_ATTEST_TYPES.has(type)) return { ...base, attested: r.rest() };
  throw new Error(`TPMS_ATTEST: unknown attestation type ${hex16(type)}`);
}

// ---------------------------------------------------------------------------------------------
// TPMT_SIGNATURE (ECDSA)

export interface EcdsaSignature {
  hashAlg: number;
  /** 32 bytes, left-padded. */
  r: Uint8Array;
  /** 32 bytes, left-padded. */
  s: Uint8Array;
}

export function parseSignatureEcdsa(tpmtSignature: Uint8Array): EcdsaSignature {
  const rd = new WireReader(asBytes(tpmtSignature, "TPMT_SIGNATURE"), "TPMT_SIGNATURE");
  const sigAlg = rd.u16("sigAlg");
  if (sigAlg !== TPM_ALG_ECDSA) throw new Error(`TPMT_SIGNATURE: sigAlg ${hex16(sigAlg)} is not ECDSA (0x0018)`);
  const hashAlg = rd.u16("hash");
  const r = leftPad32(rd.tpm2b("signatureR", 32), "signatureR");
  const s = leftPad32(rd.tpm2b("signatureS", 32), "signatureS");
  rd.end();
  return { hashAlg, r, s };
}

// ---------------------------------------------------------------------------------------------
// PCR digest and quote verification

/** sha256 of the selected PCR values concatenated, in ascending PCR order (what TPM2_Quote signs). */
export function pcrCompositeDigest(values: Uint8Array[]): Uint8Array {
  const h = new Bun.CryptoHasher("sha256");
  for (const v of values) h.update(v);
  return h.digest() as Uint8Array;
}

export interface VerifyQuoteInput {
  /** TPMS_ATTEST wire bytes: the signed message (tpm2_quote -m). */
  attest: Uint8Array;
  /** TPMT_SIGNATURE wire bytes (tpm2_quote -s, tss format). */
  signature: Uint8Array;
  /** The AK's TPMT_PUBLIC wire bytes (no TPM2B size prefix). */
  akPublic: Uint8Array;
  /** The challenge; must equal the quote's extraData. */
  nonce: Uint8Array;
  /** The policy's PCR indices (sha256 bank); the quote must select exactly these. */
  pcrs: readonly number[];
  /** Accepted PCR composite digests, lowercase hex. */
  acceptedDigests: readonly string[];
  /** The AK named on the node's card (SEC1 compressed, 33 bytes); when given the AK must be this key. */
  expectedAkSec1?: Uint8Array;
  /**
   * Qualified name of the AK's parent; the quote's qualifiedSigner must be the AK's qualified
   * name under it. Default: the endorsement hierarchy handle 0x4000000B (a primary AK there).
   */
  akParentQualifiedName?: Uint8Array;
}

/** Which check failed, in the order verifyQuote runs them. */
export type QuoteCheck =
  | "input"
  | "ak"
  | "ak-attributes"
  | "ak-mismatch"
  | "attest"
  | "magic"
  | "type"
  | "qualified-signer"
  | "nonce"
  | "pcr-selection"
  | "pcr-digest"
  | "signature";

export type VerifyQuoteResult =
  | {
      ok: true;
      /** The quoted PCR composite digest, lowercase hex. */
      pcrDigest: string;
      clock: bigint;
      resetCount: number;
      restartCount: number;
      safe: boolean;
      firmwareVersion: bigint;
      /** The AK's name (0x000b || sha256(TPMT_PUBLIC)), lowercase hex. */
      akName: string;
    }
  | { ok: false; check: QuoteCheck; reason: string };

/** Checks a TPM2_Quote answer against a challenge and a PCR policy. Never throws. */
export function verifyQuote(input: VerifyQuoteInput): VerifyQuoteResult {
  try {
    return verifyQuoteUnsafe(input);
  } catch (e) {
    return fail("input", `quote verification failed on malformed input: ${(e as Error).message}`);
  }
}

function fail(check: QuoteCheck, reason: string): VerifyQuoteResult {
  return { ok: false, check, reason };
}

function verifyQuoteUnsafe(input: VerifyQuoteInput): VerifyQuoteResult {
  const { attest, signature, akPublic, nonce, pcrs, acceptedDigests, expectedAkSec1, akParentQualifiedName } = input;
  for (const [v, what] of [[attest, "attest"], [signature, "signature"], [akPublic, "akPublic"], [nonce, "nonce"]] as const) {
    if (!(v instanceof Uint8Array)) return fail("input", `${what} is not a Uint8Array`);
  }
  const policyPcrs = normalisePcrList(pcrs);
  if (typeof policyPcrs === "string") return fail("input", policyPcrs);
  if (!Array.isArray(acceptedDigests)) return fail("input", "acceptedDigests is not an array");

  // 1. the AK
  let ak: EccPublicArea;
  try {
    ak = parsePublicArea(akPublic);
  } catch (e) {
    return fail("ak", `AK public area does not parse: ${(e as Error).message}`);
  }
  if (!ak.restricted || !ak.sign) {
    return fail("ak-attributes", `AK is not a restricted signing key (restricted=${ak.restricted}, sign=${ak.sign})`);
  }
  if (ak.decrypt) return fail("ak-attributes", "AK has the decrypt attribute: an attestation key must only sign");
  if (!ak.fixedTPM) return fail("ak-attributes", "AK is not fixedTPM: it could have been duplicated out of the TPM");
  if (ak.scheme.alg !== TPM_ALG_ECDSA || ak.scheme.hashAlg !== TPM_ALG_SHA256) {
    return fail("ak-attributes", `AK scheme is ${hex16(ak.scheme.alg)}/${hex16(ak.scheme.hashAlg)}, not ECDSA-SHA256`);
  }
  if (expectedAkSec1 !== undefined) {
    if (!(expectedAkSec1 instanceof Uint8Array) || expectedAkSec1.length !== 33) {
      return fail("input", "expectedAkSec1 is not a 33-byte SEC1 compressed key");
    }
    if (!crypto.timingSafeEqual(expectedAkSec1, ak.sec1Compressed)) {
      return fail("ak-mismatch", "AK is not the attestation key named for this node");
    }
  }

  // 2. the attest structure
  let a: ParsedAttest;
  try {
    a = parseAttest(attest);
  } catch (e) {
    return fail("attest", `attest does not parse: ${(e as Error).message}`);
  }
  if (a.magic !== TPM_GENERATED_VALUE) {
    return fail("magic", `attest magic is 0x${a.magic.toString(16).padStart(8, "0")}, not TPM_GENERATED_VALUE 0xff544347`);
  }
  if (a.type !== TPM_ST_ATTEST_QUOTE || !a.quote) {
    return fail("type", `attest type is ${hex16(a.type)}, not TPM_ST_ATTEST_QUOTE 0x8018`);
  }
  const parentQn = akParentQualifiedName ?? handleBytes(TPM_RH_ENDORSEMENT);
  if (!(parentQn instanceof Uint8Array)) return fail("input", "akParentQualifiedName is not a Uint8Array");
  const expectedQn = qualifiedName(ak.name, parentQn);
  if (a.qualifiedSigner.length !== expectedQn.length || !crypto.timingSafeEqual(a.qualifiedSigner, expectedQn)) {
    return fail("qualified-signer", "quote qualifiedSigner is not the AK's qualified name in the expected hierarchy");
  }
  if (nonce.length === 0) return fail("input", "nonce is empty");
  if (a.extraData.length !== nonce.length || !crypto.timingSafeEqual(a.extraData, nonce)) {
    return fail("nonce", "quote extraData does not equal the challenge nonce");
  }

  // 3. PCR selection and digest
  const sel = a.quote.pcrSelect;
  if (sel.length !== 1) return fail("pcr-selection", `quote selects ${sel.length} PCR banks, the policy wants exactly one (sha256)`);
  const bank = sel[0]!;
  if (bank.hash !== TPM_ALG_SHA256) return fail("pcr-selection", `quote PCR bank is ${hex16(bank.hash)}, not sha256 (0x000b)`);
  if (bank.pcrs.length !== policyPcrs.length || bank.pcrs.some((p, i) => p !== policyPcrs[i])) {
    return fail("pcr-selection", `quote selects PCRs [${bank.pcrs.join(",")}], the policy wants [${policyPcrs.join(",")}]`);
  }
  const digest = a.quote.pcrDigest;
  if (digest.length !== 32) return fail("pcr-digest", `quote pcrDigest is ${digest.length} bytes, not a sha256 digest`);
  const digestHex = toHex(digest);
  if (!acceptedDigests.some((d) => typeof d === "string" && d.toLowerCase() === digestHex)) {
    return fail("pcr-digest", `quote PCR digest ${digestHex} is not one the policy accepts`);
  }

  // 4. the signature over the attest bytes
  const bad = akSignatureProblem(ak, attest, signature);
  if (bad !== null) return fail("signature", bad);

  return {
    ok: true,
    pcrDigest: digestHex,
    clock: a.clockInfo.clock,
    resetCount: a.clockInfo.resetCount,
    restartCount: a.clockInfo.restartCount,
    safe: a.clockInfo.safe,
    firmwareVersion: a.firmwareVersion,
    akName: toHex(ak.name),
  };
}

/**
 * Why a TPMT_SIGNATURE is not the AK's ECDSA-SHA256 signature over `message` (a TPMS_ATTEST),
 * or null when it is. Plain ECDSA: TPM signatures may have s in the high half.
 */
export function akSignatureProblem(ak: EccPublicArea, message: Uint8Array, signature: Uint8Array): string | null {
  let sig: EcdsaSignature;
  try {
    sig = parseSignatureEcdsa(signature);
  } catch (e) {
    return `signature does not parse: ${(e as Error).message}`;
  }
  if (sig.hashAlg !== TPM_ALG_SHA256) return `signature hash is ${hex16(sig.hashAlg)}, not sha256`;
  const rN = BigInt("0x" + toHex(sig.r));
  const sN = BigInt("0x" + toHex(sig.s));
  if (rN === 0n || rN >= N || sN === 0n || sN >= N) return "signature r or s is out of range";
  const rs = new Uint8Array(64);
  rs.set(sig.r, 0);
  rs.set(sig.s, 32);
  let good = false;
  try {
    good = crypto.verify("sha256", message, { key: akKeyObject(ak), dsaEncoding: "ieee-p1363" }, rs);
  } catch {
    good = false;
  }
  return good ? null : "ECDSA signature over the attest does not verify under the AK";
}

function akKeyObject(ak: EccPublicArea): crypto.KeyObject {
  return crypto.createPublicKey({
    key: {
      kty: "EC",
      crv: "P-256",
      x: Buffer.from(ak.x).toString("base64url"),
      y: Buffer.from(ak.y).toString("base64url"),
    },
    format: "jwk",
  });
}

/** Sorted, deduplicated-checked PCR indices, or a reason string. */
function normalisePcrList(pcrs: unknown): number[] | string {
  if (!Array.isArray(pcrs) || pcrs.length === 0) return "policy PCR list is empty or not an array";
  const out: number[] = [];
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p >= PCR_SELECT_MAX * 8) return `policy PCR ${String(p)} is not an index 0..31`;
    out.push(p);
  }
  out.sort((x, y) => x - y);
  for (let i = 1; i < out.length; i++) if (out[i] === out[i - 1]) return `policy PCR ${out[i]} is listed twice`;
  return out;
}
