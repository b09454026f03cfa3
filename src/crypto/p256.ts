// ECDSA P-256 for dsm: the message is always a 32-byte domain digest, hashed once more
// with SHA-256 by the ECDSA-SHA256 scheme (see docs/PROTOCOL.md, "Signatures"), and
// signatures are 64-byte r||s with s normalised to the low half of the group order.
//
// Signing and verifying run on Bun's BoringSSL (node:crypto), about 15x faster than
// pure JS; @noble/curves does what BoringSSL does not expose: point compression and
// decompression. Tests cross-check both implementations.
import * as crypto from "node:crypto";
import { p256 } from "@noble/curves/nist.js";

const N = p256.Point.CURVE().n;
const HALF_N = N >> 1n;

export interface SigningKeyPair {
  privateKey: crypto.KeyObject;
  /** SEC1 compressed, 33 bytes. */
  publicKey: Uint8Array;
}

export function generateKeyPair(): SigningKeyPair {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateKey, publicKey: compressPublicKey(publicKey) };
}

export function compressPublicKey(key: crypto.KeyObject): Uint8Array {
  const jwk = key.export({ format: "jwk" });
  if (jwk.crv !== "P-256" || !jwk.x || !jwk.y) throw new Error("not a P-256 key");
  const x = Buffer.from(jwk.x, "base64url");
  const yLast = Buffer.from(jwk.y, "base64url")[31]!;
  const out = new Uint8Array(33);
  out[0] = 0x02 | (yLast & 1);
  out.set(x, 1);
  return out;
}

/** Parses a SEC1 public key (compressed or not); throws if it is not a valid P-256 point. */
export function importPublicKey(sec1: Uint8Array): crypto.KeyObject {
  const point = p256.Point.fromBytes(sec1); // validates on-curve, rejects infinity
  const raw = point.toBytes(false);
  return crypto.createPublicKey({
    key: {
      kty: "EC",
      crv: "P-256",
      x: Buffer.from(raw.subarray(1, 33)).toString("base64url"),
      y: Buffer.from(raw.subarray(33, 65)).toString("base64url"),
    },
    format: "jwk",
  });
}

export function privateKeyFromPem(pem: string): crypto.KeyObject {
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey({ key: pem, format: "pem" });
  } catch {
    throw new Error("not a PEM private key this build can read (dsm needs an ECDSA P-256 key)");
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new Error("key is not an ECDSA P-256 private key");
  }
  return key;
}

export function privateKeyToPem(key: crypto.KeyObject): string {
  return key.export({ format: "pem", type: "pkcs8" }).toString();
}

export function publicKeyOf(privateKey: crypto.KeyObject): Uint8Array {
  return compressPublicKey(crypto.createPublicKey(privateKey));
}

export function sign(privateKey: crypto.KeyObject, message: Uint8Array): Uint8Array {
  const sig = crypto.sign("sha256", message, { key: privateKey, dsaEncoding: "ieee-p1363" });
  return normaliseLowS(new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength));
}

/** Strict verify: 64 bytes, 0 < r,s < n, s in the low half. Never throws. */
export function verify(publicKey: crypto.KeyObject, message: Uint8Array, sig: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  const r = sig.subarray(0, 32);
  const s = sig.subarray(32, 64);
  if (isZero(r) || compare(r, N_BYTES) >= 0 || isZero(s) || compare(s, HALF_N_BYTES) > 0) return false;
  try {
    return crypto.verify("sha256", message, { key: publicKey, dsaEncoding: "ieee-p1363" }, sig);
  } catch {
    return false;
  }
}

export function isLowS(sig: Uint8Array): boolean {
  return sig.length === 64 && compare(sig.subarray(32, 64), HALF_N_BYTES) <= 0;
}

/** BoringSSL returns either half; dsm signatures are unique, so s is folded into [1, n/2]. Returns a new array. */
export function normaliseLowS(sig: Uint8Array): Uint8Array {
  const out = Uint8Array.from(sig);
  if (compare(sig.subarray(32, 64), HALF_N_BYTES) <= 0) return out;
  // s := n - s, big-endian byte subtraction (this runs for half of all signatures: no BigInt)
  let borrow = 0;
  for (let i = 31; i >= 0; i--) {
    const d = N_BYTES[i]! - sig[32 + i]! - borrow;
    out[32 + i] = d & 0xff;
    borrow = d < 0 ? 1 : 0;
  }
  return out;
}

const N_BYTES = bigIntToBytes32(N);
const HALF_N_BYTES = bigIntToBytes32(HALF_N);

/** Big-endian unsigned comparison of two 32-byte values. */
function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function isZero(a: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) return false;
  return true;
}

function bigIntToBytes32(n: bigint): Uint8Array {
  return new Uint8Array(Buffer.from(n.toString(16).padStart(64, "0"), "hex"));
}
