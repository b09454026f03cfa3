// TPMT_PUBLIC for RSA and ECC keys in pure TypeScript (TPM 2.0 Part 2, 12.2): what a verifier
// needs to read an endorsement key (EK) or an attestation key (AK) without a TPM, to compare it
// with the key of an X.509 EK certificate, and to name it. Wire format as Part 2 defines it
// (big-endian, no padding, TPM2B = u16 size || bytes); every error names the field that failed.
//
// Supported: RSA (1024-4096 bits) and ECC NIST P-256 / P-384 keys with a sha256 or sha384
// nameAlg, which covers the TCG EK templates (L-1 RSA 2048, L-2 ECC P-256, the high-range
// RSA/ECC templates with sha384) and dsm's P-256 AK. quote.ts keeps its own P-256-only reader
// (parsePublicArea) for quote verification.
import * as crypto from "node:crypto";
import { p256, p384 } from "@noble/curves/nist.js";
import { toHex } from "../encoding/hex.ts";
import { WireReader } from "./wire.ts";

export const TPM_ALG_RSA = 0x0001;
export const TPM_ALG_SHA256 = 0x000b;
export const TPM_ALG_SHA384 = 0x000c;
export const TPM_ALG_AES = 0x0006;
export const TPM_ALG_NULL = 0x0010;
export const TPM_ALG_SM4 = 0x0013;
export const TPM_ALG_ECC = 0x0023;
export const TPM_ALG_CAMELLIA = 0x0026;
export const TPM_ALG_CFB = 0x0043;
export const TPM_ECC_NIST_P256 = 0x0003;
export const TPM_ECC_NIST_P384 = 0x0004;

/** TPM2B_DIGEST's buffer: sizeof(TPMU_HA), the largest digest (sha512). */
const MAX_DIGEST = 64;
/** TPM2B_PUBLIC_KEY_RSA's buffer: TPM2_MAX_RSA_KEY_BYTES on a 4096-bit TPM. */
const MAX_RSA_KEY_BYTES = 512;
const RSA_KEY_BITS = new Set([1024, 2048, 3072, 4096]);
/** Symmetric algorithms whose TPMT_SYM_DEF_OBJECT is algorithm || keyBits || mode. */
const BLOCK_CIPHERS = new Set([TPM_ALG_AES, TPM_ALG_SM4, TPM_ALG_CAMELLIA]);
/** TPMI_ALG_RSA_SCHEME values whose details are a TPMS_SCHEME_HASH (RSASSA, RSAPSS, OAEP). */
const RSA_HASH_SCHEMES = new Set([0x0014, 0x0016, 0x0017]);
const TPM_ALG_RSAES = 0x0015; // TPMS_ENC_SCHEME_RSAES is empty
/** TPMI_ALG_ECC_SCHEME values whose details are a TPMS_SCHEME_HASH (ECDSA, SM2, ECSCHNORR, ECDH, ECMQV). */
const ECC_HASH_SCHEMES = new Set([0x0018, 0x001b, 0x001c, 0x0019, 0x001d]);
const TPM_ALG_ECDAA = 0x001a; // TPMS_SCHEME_ECDAA: hashAlg || count

export type NameHash = "sha256" | "sha384";
export type EcCurve = "P-256" | "P-384";

const NAME_HASHES: ReadonlyMap<number, { hash: NameHash; size: number }> = new Map([
  [TPM_ALG_SHA256, { hash: "sha256", size: 32 }],
  [TPM_ALG_SHA384, { hash: "sha384", size: 48 }],
]);

const CURVES: ReadonlyMap<number, { curve: EcCurve; size: number; assertOnCurve: (sec1: Uint8Array) => void }> = new Map([
  [TPM_ECC_NIST_P256, { curve: "P-256" as const, size: 32, assertOnCurve: (b: Uint8Array) => p256.Point.fromBytes(b).assertValidity() }],
  [TPM_ECC_NIST_P384, { curve: "P-384" as const, size: 48, assertOnCurve: (b: Uint8Array) => p384.Point.fromBytes(b).assertValidity() }],
]);

export type TpmPublic = {
  type: "rsa" | "ecc";
  /** TPMI_ALG_HASH: 0x000b sha256 or 0x000c sha384. */
  nameAlg: number;
  /** TPMA_OBJECT bits (quote.ts exports the bit names as TPMA_OBJECT). */
  attributes: number;
  authPolicy: Uint8Array;
  /** TPMT_SYM_DEF_OBJECT; null when TPM_ALG_NULL (a signing key). */
  symmetric: { alg: number; keyBits: number; mode: number } | null;
  /** The key's scheme; hashAlg is TPM_ALG_NULL (0x0010) when the scheme has none (NULL, RSAES). */
  scheme: { alg: number; hashAlg: number };
  rsa?: {
    keyBits: number;
    /** As on the wire: 0 means the default exponent 65537. */
    exponent: number;
    /** unique.rsa exactly as on the wire: keyBits/8 bytes, big-endian. */
    modulus: Uint8Array;
  };
  ecc?: {
    curve: EcCurve;
    curveId: number;
    kdf: { alg: number; hashAlg: number };
    /** unique.x and unique.y left-padded to the curve size (32 or 48 bytes). */
    x: Uint8Array;
    y: Uint8Array;
    /**
     * unique.x exactly as on the wire (a TPM may drop leading zero bytes): KDFe's partyVInfo in
     * credential and secret sharing is this TPM2B's contents, not the padded coordinate.
     */
    uniqueX: Uint8Array;
  };
  /** nameAlg (2 bytes) || H_nameAlg(TPMT_PUBLIC wire bytes): the key's TPM2B_NAME contents. */
  name: Uint8Array;
  /** The TPMT_PUBLIC bytes that were parsed (a copy). */
  wire: Uint8Array;
};

function hex16(n: number): string {
  return `0x${n.toString(16).padStart(4, "0")}`;
}

function leftPad(b: Uint8Array, size: number, field: string): Uint8Array {
  if (b.length > size) throw new Error(`TPMT_PUBLIC: ${field} is ${b.length} bytes, the curve allows at most ${size}`);
  const out = new Uint8Array(size);
  out.set(b, size - b.length);
  return out;
}

function stripLeadingZeros(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  return b.subarray(i);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The hash a TPMI_ALG_HASH names, for the algorithms dsm computes names with. */
export function nameHash(alg: number): { hash: NameHash; size: number } {
  const h = NAME_HASHES.get(alg);
  if (!h) throw new Error(`hash algorithm ${hex16(alg)} is not supported (sha256 0x000b, sha384 0x000c)`);
  return h;
}

// ---------------------------------------------------------------------------------------------
// TPMT_PUBLIC

/** TPMT_PUBLIC wire bytes (no TPM2B size prefix) of an RSA or ECC (P-256, P-384) key. */
export function parseTpmPublic(tpmtPublic: Uint8Array): TpmPublic {
  if (!(tpmtPublic instanceof Uint8Array)) throw new Error("TPMT_PUBLIC must be a Uint8Array");
  const wire = tpmtPublic.slice();
  const r = new WireReader(wire, "TPMT_PUBLIC");
  const typeAlg = r.u16("type");
  if (typeAlg !== TPM_ALG_RSA && typeAlg !== TPM_ALG_ECC) {
    throw new Error(`TPMT_PUBLIC: type ${hex16(typeAlg)} is not supported (RSA 0x0001, ECC 0x0023)`);
  }
  const nameAlg = r.u16("nameAlg");
  if (!NAME_HASHES.has(nameAlg)) {
    throw new Error(`TPMT_PUBLIC: nameAlg ${hex16(nameAlg)} is not supported (sha256 0x000b, sha384 0x000c)`);
  }
  const attributes = r.u32("objectAttributes");
  const authPolicy = r.tpm2b("authPolicy", MAX_DIGEST);

  // TPMT_SYM_DEF_OBJECT
  const symAlg = r.u16("symmetric.algorithm");
  let symmetric: TpmPublic["symmetric"] = null;
  if (symAlg !== TPM_ALG_NULL) {
    if (!BLOCK_CIPHERS.has(symAlg)) throw new Error(`TPMT_PUBLIC: symmetric.algorithm ${hex16(symAlg)} is not supported`);
    const keyBits = r.u16("symmetric.keyBits");
    const mode = r.u16("symmetric.mode");
    symmetric = { alg: symAlg, keyBits, mode };
  }

  // TPMT_RSA_SCHEME / TPMT_ECC_SCHEME
  const schemeAlg = r.u16("scheme.scheme");
  let schemeHash = TPM_ALG_NULL;
  if (schemeAlg !== TPM_ALG_NULL) {
    const hashSchemes = typeAlg === TPM_ALG_RSA ? RSA_HASH_SCHEMES : ECC_HASH_SCHEMES;
    if (hashSchemes.has(schemeAlg)) {
      schemeHash = r.u16("scheme.hashAlg");
    } else if (typeAlg === TPM_ALG_ECC && schemeAlg === TPM_ALG_ECDAA) {
      schemeHash = r.u16("scheme.hashAlg");
      r.u16("scheme.count");
    } else if (typeAlg !== TPM_ALG_RSA || schemeAlg !== TPM_ALG_RSAES) {
      throw new Error(`TPMT_PUBLIC: scheme.scheme ${hex16(schemeAlg)} is not supported for this key type`);
    }
  }
  const scheme = { alg: schemeAlg, hashAlg: schemeHash };

  let rsa: TpmPublic["rsa"];
  let ecc: TpmPublic["ecc"];
  if (typeAlg === TPM_ALG_RSA) {
    const keyBits = r.u16("keyBits");
    if (!RSA_KEY_BITS.has(keyBits)) throw new Error(`TPMT_PUBLIC: keyBits ${keyBits} is not supported (1024, 2048, 3072, 4096)`);
    const exponent = r.u32("exponent");
    if (exponent !== 0 && (exponent < 3 || exponent % 2 === 0)) throw new Error(`TPMT_PUBLIC: exponent ${exponent} is not an odd number of at least 3`);
    const modulus = r.tpm2b("unique.rsa", MAX_RSA_KEY_BYTES);
    if (modulus.length !== keyBits / 8) {
      throw new Error(`TPMT_PUBLIC: unique.rsa is ${modulus.length} bytes, keyBits ${keyBits} needs ${keyBits / 8}`);
    }
    if ((modulus[0]! & 0x80) === 0) throw new Error(`TPMT_PUBLIC: unique.rsa is not a ${keyBits}-bit modulus (top bit clear)`);
    rsa = { keyBits, exponent, modulus };
  } else {
    const curveId = r.u16("curveID");
    const c = CURVES.get(curveId);
    if (!c) throw new Error(`TPMT_PUBLIC: curveID ${hex16(curveId)} is not supported (NIST P-256 0x0003, P-384 0x0004)`);
    const kdfAlg = r.u16("kdf.scheme");
    const kdfHash = kdfAlg === TPM_ALG_NULL ? TPM_ALG_NULL : r.u16("kdf.hashAlg");
    const uniqueX = r.tpm2b("unique.x", c.size);
    const uniqueY = r.tpm2b("unique.y", c.size);
    const x = leftPad(uniqueX, c.size, "unique.x");
    const y = leftPad(uniqueY, c.size, "unique.y");
    const sec1 = new Uint8Array(1 + 2 * c.size);
    sec1[0] = 0x04;
    sec1.set(x, 1);
    sec1.set(y, 1 + c.size);
    try {
      c.assertOnCurve(sec1);
    } catch {
      throw new Error(`TPMT_PUBLIC: unique (x, y) is not a point on ${c.curve}`);
    }
    ecc = { curve: c.curve, curveId, kdf: { alg: kdfAlg, hashAlg: kdfHash }, x, y, uniqueX };
  }
  r.end();

  const h = nameHash(nameAlg);
  const name = new Uint8Array(2 + h.size);
  name[0] = nameAlg >> 8;
  name[1] = nameAlg & 0xff;
  name.set(crypto.createHash(h.hash).update(wire).digest(), 2);

  const out: TpmPublic = {
    type: typeAlg === TPM_ALG_RSA ? "rsa" : "ecc",
    nameAlg,
    attributes,
    authPolicy,
    symmetric,
    scheme,
    name,
    wire,
  };
  if (rsa) out.rsa = rsa;
  if (ecc) out.ecc = ecc;
  return out;
}

/** The RSA public exponent as unsigned big-endian bytes without leading zeros (0 on the wire is 65537). */
function exponentBytes(exponent: number): Uint8Array {
  const e = exponent === 0 ? 65537 : exponent;
  return stripLeadingZeros(new Uint8Array([e >>> 24, (e >>> 16) & 0xff, (e >>> 8) & 0xff, e & 0xff]));
}

const b64url = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");

/** The key as a node:crypto public KeyObject (RSA or EC). */
export function tpmPublicKeyObject(p: TpmPublic): crypto.KeyObject {
  if (p.type === "rsa" && p.rsa) {
    return crypto.createPublicKey({
      key: { kty: "RSA", n: b64url(stripLeadingZeros(p.rsa.modulus)), e: b64url(exponentBytes(p.rsa.exponent)) },
      format: "jwk",
    });
  }
  if (p.type === "ecc" && p.ecc) {
    return crypto.createPublicKey({
      key: { kty: "EC", crv: p.ecc.curve, x: b64url(p.ecc.x), y: b64url(p.ecc.y) },
      format: "jwk",
    });
  }
  throw new Error(`TPM public area of type ${p.type} has no ${p.type} parameters`);
}

export type CertPublicKey =
  | { kind: "rsa"; n: Uint8Array; e: Uint8Array }
  | { kind: "ec"; curve: string; x: Uint8Array; y: Uint8Array };

const CURVE_ALIASES: ReadonlyMap<string, EcCurve> = new Map([
  ["p-256", "P-256"],
  ["p256", "P-256"],
  ["prime256v1", "P-256"],
  ["secp256r1", "P-256"],
  ["p-384", "P-384"],
  ["p384", "P-384"],
  ["secp384r1", "P-384"],
]);

/**
 * True when the TPM public area holds the same public key as an X.509 certificate's key:
 * RSA n and e compared as unsigned integers (leading zero bytes ignored on both sides), EC by
 * curve (JWK or OpenSSL name) and x, y as integers of the curve size.
 */
export function samePublicKey(p: TpmPublic, k: CertPublicKey): boolean {
  if (k.kind === "rsa") {
    if (p.type !== "rsa" || !p.rsa) return false;
    return (
      bytesEqual(stripLeadingZeros(p.rsa.modulus), stripLeadingZeros(k.n)) &&
      bytesEqual(exponentBytes(p.rsa.exponent), stripLeadingZeros(k.e))
    );
  }
  if (k.kind === "ec") {
    if (p.type !== "ecc" || !p.ecc) return false;
    if (typeof k.curve !== "string" || CURVE_ALIASES.get(k.curve.toLowerCase()) !== p.ecc.curve) return false;
    return (
      bytesEqual(stripLeadingZeros(p.ecc.x), stripLeadingZeros(k.x)) &&
      bytesEqual(stripLeadingZeros(p.ecc.y), stripLeadingZeros(k.y))
    );
  }
  return false;
}

/**
 * Lowercase hex of the key's name digest, without the 2-byte nameAlg prefix: the form an EK
 * allowlist lists (`tpm2_readpublic` prints the whole name, nameAlg first).
 */
export function ekDigest(p: TpmPublic): string {
  return toHex(p.name.subarray(2));
}
