// BLS12-381 signatures for validators (DESIGN.md section 4): Ethereum's ciphersuite,
// minimal-pubkey-size (public keys in G1, 48 bytes compressed; signatures in G2,
// 96 bytes compressed), proof-of-possession scheme of draft-irtf-cfrg-bls-signature.
//
// Built on @noble/curves `bls12_381.longSignatures`. noble's default hash-to-curve DST
// is the `_NUL_` suite, so every hash here passes SIG_DST or POP_DST explicitly.
//
// Validation rules (the IETF draft, as the Ethereum vectors expect):
// - a public key must be 48 bytes, compressed, on the curve, in the subgroup and not
//   the identity (KeyValidate); an aggregate of keys must not be the identity either;
// - a signature must be 96 bytes, compressed, on the curve and in the subgroup. The
//   identity is a well-formed signature (aggregation accepts it) but never verifies;
// - a secret key must be 32 bytes big-endian with 0 < sk < r (noble would silently
//   reduce larger values mod r).
// Verification functions never throw: malformed input is simply `false`.
//
// Decoding points is the expensive part in noble (about 0.85 ms a key, 2 ms a
// signature): parse fixed keys once with `parsePublicKey` and pass the points.
import { createHash, hkdfSync } from "node:crypto";
import { bls12_381 } from "@noble/curves/bls12-381.js";

const bls = bls12_381.longSignatures;
const G1 = bls12_381.G1.Point;
const G2 = bls12_381.G2.Point;
const Fp12 = bls12_381.fields.Fp12;
const R = bls12_381.fields.Fr.ORDER;

/** A validated public key (G1 point, never the identity). */
export type G1Point = ReturnType<typeof bls.getPublicKey>;
/** A validated signature (G2 point in the subgroup; may be the identity). */
export type G2Point = ReturnType<typeof bls.hash>;

export const SIG_DST = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
export const POP_DST = "BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

export const SECRET_KEY_BYTES = 32;
export const PUBLIC_KEY_BYTES = 48;
export const SIGNATURE_BYTES = 96;

const KEYGEN_SALT = new TextEncoder().encode("BLS-SIG-KEYGEN-SALT-");

/**
 * KeyGen of draft-irtf-cfrg-bls-signature-04+ with empty key_info, which is exactly
 * EIP-2333's HKDF_mod_r / derive_master_SK: salt = SHA-256 iterated over
 * "BLS-SIG-KEYGEN-SALT-", OKM = HKDF-SHA-256(IKM || 0x00, salt, info = I2OSP(48, 2), 48),
 * SK = OS2IP(OKM) mod r, retried with the next salt while SK == 0.
 * HKDF and SHA-256 come from node:crypto (Bun's BoringSSL), no extra dependency.
 * Returns the 32-byte big-endian secret key. Throws if ikm is shorter than 32 bytes.
 */
export function blsKeygen(ikm: Uint8Array): Uint8Array {
  if (!(ikm instanceof Uint8Array) || ikm.length < 32) throw new Error("BLS keygen: IKM must be at least 32 bytes");
  const ikmPrime = new Uint8Array(ikm.length + 1); // IKM || I2OSP(0, 1)
  ikmPrime.set(ikm);
  const info = new Uint8Array([0, 48]); // key_info (empty) || I2OSP(L, 2), L = 48
  let salt: Uint8Array = KEYGEN_SALT;
  for (;;) {
    salt = new Uint8Array(createHash("sha256").update(salt).digest());
    const okm = new Uint8Array(hkdfSync("sha256", ikmPrime, salt, info, 48));
    const sk = bytesToBigInt(okm) % R;
    if (sk !== 0n) return bigIntTo32Bytes(sk);
  }
}

/** SkToPk: the 48-byte compressed G1 public key. Throws on an invalid secret key. */
export function blsPublicKey(sk: Uint8Array): Uint8Array {
  checkSecretKey(sk);
  return bls.getPublicKey(sk).toBytes(true);
}

/** Sign under SIG_DST: the 96-byte compressed G2 signature. Throws on an invalid secret key. */
export function blsSign(sk: Uint8Array, message: Uint8Array): Uint8Array {
  return signWith(sk, message, SIG_DST);
}

/** CoreVerify under SIG_DST, with KeyValidate on the key. Never throws. */
export function blsVerify(pk: Uint8Array | G1Point, message: Uint8Array, sig: Uint8Array | G2Point): boolean {
  return verifyWith(asPublicKey(pk), message, asSignature(sig), SIG_DST);
}

/** KeyValidate: 48 bytes, compressed, on the curve, in the subgroup, not the identity. */
export function blsKeyValidate(pk: Uint8Array): boolean {
  return parsePublicKey(pk) !== null;
}

/** PopProve: a signature under POP_DST over the 48-byte compressed public key. */
export function blsPopProve(sk: Uint8Array): Uint8Array {
  return signWith(sk, blsPublicKey(sk), POP_DST);
}

/** PopVerify: KeyValidate(pk) and the proof verifies under POP_DST over pk's bytes. Never throws. */
export function blsPopVerify(pk: Uint8Array, proof: Uint8Array | G2Point): boolean {
  if (!(pk instanceof Uint8Array)) return false;
  return verifyWith(parsePublicKey(pk), pk, asSignature(proof), POP_DST);
}

/**
 * Aggregate: the sum of the signatures, 96 bytes compressed. Each one must be a valid
 * signature encoding (on curve, in subgroup; the identity is allowed, as in the
 * Ethereum vectors). Throws on an empty list or an invalid signature.
 */
export function blsAggregateSignatures(sigs: (Uint8Array | G2Point)[]): Uint8Array {
  if (!Array.isArray(sigs) || sigs.length === 0) throw new Error("BLS aggregate: no signatures");
  let acc = G2.ZERO;
  for (const s of sigs) {
    const p = asSignature(s);
    if (p === null) throw new Error("BLS aggregate: invalid signature");
    acc = acc.add(p);
  }
  return bls.Signature.toBytes(acc);
}

/**
 * FastAggregateVerify under SIG_DST: every key passes KeyValidate, their sum is not the
 * identity, and sig verifies over message under that sum. False on an empty key list
 * (this is the IETF function, not Ethereum's eth_fast_aggregate_verify). Keys may be
 * bytes or points from `parsePublicKey` (pass points for a fixed validator set: decoding
 * dominates noble's cost). Only safe with keys whose PoP was checked. Never throws.
 */
export function blsFastAggregateVerify(
  pks: readonly (Uint8Array | G1Point)[],
  message: Uint8Array,
  sig: Uint8Array | G2Point,
): boolean {
  if (!Array.isArray(pks) || pks.length === 0) return false;
  let acc = G1.ZERO;
  for (const pk of pks) {
    const p = asPublicKey(pk);
    if (p === null) return false;
    acc = acc.add(p);
  }
  if (acc.is0()) return false;
  return verifyWith(acc, message, asSignature(sig), SIG_DST);
}

/**
 * Ethereum's eth_fast_aggregate_verify (altair): like blsFastAggregateVerify, except that an
 * empty key list with the identity signature (0xc0 followed by 95 zero bytes, or the parsed
 * identity point) is true. Any other empty-list input is false. Never throws.
 */
export function ethFastAggregateVerify(
  pks: readonly (Uint8Array | G1Point)[],
  message: Uint8Array,
  sig: Uint8Array | G2Point,
): boolean {
  if (Array.isArray(pks) && pks.length === 0) {
    if (sig instanceof Uint8Array) return isIdentitySignatureBytes(sig);
    return sig instanceof G2 && sig.is0();
  }
  return blsFastAggregateVerify(pks, message, sig);
}

/**
 * AggregateVerify of the proof-of-possession scheme under SIG_DST (Ethereum's
 * bls.AggregateVerify): pks[i] signed messages[i], sig is the sum. Same length, non-empty,
 * every key passes KeyValidate, sig is a valid non-identity signature. Messages need NOT be
 * distinct (the PoP scheme drops the Basic scheme's distinct-message rule; keys must have
 * had their PoP checked). Never throws.
 */
export function blsAggregateVerify(
  pks: readonly (Uint8Array | G1Point)[],
  messages: readonly Uint8Array[],
  sig: Uint8Array | G2Point,
): boolean {
  return blsCoreAggregateVerify(pks, messages, sig, SIG_DST);
}

/**
 * CoreAggregateVerify of draft-irtf-cfrg-bls-signature with an explicit hash-to-curve DST
 * (for test vectors of other suites). It does not enforce distinct messages: a caller of the
 * Basic (`_NUL_`) scheme must check that itself. Never throws.
 */
export function blsCoreAggregateVerify(
  pks: readonly (Uint8Array | G1Point)[],
  messages: readonly Uint8Array[],
  sig: Uint8Array | G2Point,
  dst: string,
): boolean {
  if (!Array.isArray(pks) || !Array.isArray(messages) || typeof dst !== "string") return false;
  if (pks.length === 0 || pks.length !== messages.length) return false;
  const s = asSignature(sig);
  if (s === null || s.is0()) return false;
  try {
    const pairs: { g1: G1Point; g2: G2Point }[] = [];
    for (let i = 0; i < pks.length; i++) {
      const p = asPublicKey(pks[i]!);
      const m = messages[i];
      if (p === null || !(m instanceof Uint8Array)) return false;
      pairs.push({ g1: p, g2: bls.hash(m, dst) });
    }
    pairs.push({ g1: G1.BASE.negate(), g2: s });
    return Fp12.eql(bls12_381.pairingBatch(pairs), Fp12.ONE);
  } catch {
    return false;
  }
}

/**
 * Ethereum's eth_aggregate_pubkeys: the sum of the keys, 48 bytes compressed. Throws on an
 * empty list or on any key failing KeyValidate (identity, bad encoding, off curve / subgroup),
 * matching the altair vectors' `null`. As in the spec, the sum itself is not re-validated
 * (keys with checked PoPs cannot sum to the identity except with negligible probability).
 */
export function blsAggregatePublicKeys(pks: readonly (Uint8Array | G1Point)[]): Uint8Array {
  return blsAggregatePublicKeyPoint(pks).toBytes(true);
}

/** blsAggregatePublicKeys, returning the point (for repeated verification). Same throws. */
export function blsAggregatePublicKeyPoint(pks: readonly (Uint8Array | G1Point)[]): G1Point {
  if (!Array.isArray(pks) || pks.length === 0) throw new Error("BLS aggregate pubkeys: no keys");
  let acc = G1.ZERO;
  for (const pk of pks) {
    const p = asPublicKey(pk);
    if (p === null) throw new Error("BLS aggregate pubkeys: invalid public key");
    acc = acc.add(p);
  }
  return acc;
}

/** One (public key, message, signature) triple for blsBatchVerify. */
export interface BlsSignatureSet {
  pk: Uint8Array | G1Point;
  message: Uint8Array;
  sig: Uint8Array | G2Point;
}

/**
 * Batch verification (bls12-381-tests batch_verify): true iff every set verifies on its own
 * (blsVerify semantics: identity keys and signatures fail). Uses a random linear combination
 * with 64-bit nonzero coefficients r_i, checking
 *   e(-G1, sum r_i*sig_i) * prod e(r_i*pk_i, H(m_i)) == 1
 * in one multi-pairing: a forged set whose errors cancel in the plain sum (the "forged"
 * vector) is caught except with probability about 2^-64. False on an empty list. Never throws.
 */
export function blsBatchVerify(sets: readonly BlsSignatureSet[]): boolean {
  if (!Array.isArray(sets) || sets.length === 0) return false;
  try {
    const rnd = new BigUint64Array(sets.length);
    crypto.getRandomValues(rnd);
    // Sets over one message share its pairing: e(r1*pk1, H(m)) * e(r2*pk2, H(m)) = e(r1*pk1 + r2*pk2, H(m)).
    const byMessage = new Map<string, { g1: G1Point; message: Uint8Array }>();
    let sigAcc = G2.ZERO;
    for (let i = 0; i < sets.length; i++) {
      const set = sets[i];
      if (set === null || typeof set !== "object") return false;
      const p = asPublicKey(set.pk);
      const s = asSignature(set.sig);
      if (p === null || s === null || p.is0() || s.is0() || !(set.message instanceof Uint8Array)) return false;
      const r = rnd[i]! | 1n; // nonzero
      const k = Buffer.from(set.message).toString("hex");
      const acc = byMessage.get(k);
      if (acc) acc.g1 = acc.g1.add(p.multiply(r));
      else byMessage.set(k, { g1: p.multiply(r), message: set.message });
      sigAcc = sigAcc.add(s.multiply(r));
    }
    const pairs = [...byMessage.values()].map(({ g1, message }) => ({ g1, g2: hashCached(message, SIG_DST) }));
    pairs.push({ g1: G1.BASE.negate(), g2: sigAcc });
    return Fp12.eql(bls12_381.pairingBatch(pairs), Fp12.ONE);
  } catch {
    return false;
  }
}

/**
 * hash_to_curve for G2 (BLS12381G2_XMD:SHA-256_SSWU_RO_) with the given DST (default
 * SIG_DST), as 96 bytes compressed. Throws if message is not bytes or dst is empty.
 */
export function blsHashToG2(message: Uint8Array, dst: string = SIG_DST): Uint8Array {
  if (!(message instanceof Uint8Array)) throw new Error("BLS hash_to_G2: message must be bytes");
  if (typeof dst !== "string" || dst.length === 0) throw new Error("BLS hash_to_G2: empty DST");
  return bls.Signature.toBytes(bls.hash(message, dst));
}

/** Decode and KeyValidate a public key once; null if invalid. Never throws. */
export function parsePublicKey(pk: Uint8Array): G1Point | null {
  if (!(pk instanceof Uint8Array) || pk.length !== PUBLIC_KEY_BYTES || (pk[0]! & 0x80) === 0) return null;
  try {
    const p = G1.fromBytes(pk); // checks on-curve and subgroup; accepts the identity
    return p.is0() ? null : p;
  } catch {
    return null;
  }
}

/** Decode a signature once (compressed, on curve, in subgroup; identity allowed); null if invalid. */
export function parseSignature(sig: Uint8Array): G2Point | null {
  if (!(sig instanceof Uint8Array) || sig.length !== SIGNATURE_BYTES) return null;
  try {
    return bls.Signature.fromBytes(sig);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------

function asPublicKey(pk: Uint8Array | G1Point): G1Point | null {
  if (pk instanceof Uint8Array) return parsePublicKey(pk);
  if (!(pk instanceof G1) || pk.is0()) return null;
  try {
    pk.assertValidity(); // cached by noble for points that came from fromBytes
    return pk;
  } catch {
    return null;
  }
}

function asSignature(sig: Uint8Array | G2Point): G2Point | null {
  if (sig instanceof Uint8Array) return parseSignature(sig);
  if (!(sig instanceof G2)) return null;
  try {
    sig.assertValidity();
    return sig;
  } catch {
    return null;
  }
}

function isIdentitySignatureBytes(sig: Uint8Array): boolean {
  if (sig.length !== SIGNATURE_BYTES || sig[0] !== 0xc0) return false;
  for (let i = 1; i < sig.length; i++) if (sig[i] !== 0) return false;
  return true;
}

function verifyWith(pk: G1Point | null, message: Uint8Array, sig: G2Point | null, dst: string): boolean {
  if (pk === null || sig === null || !(message instanceof Uint8Array)) return false;
  // e(pk, H(m)) is never 1 for pk != identity, so the identity signature never verifies
  // (noble's pairing would throw on it anyway).
  if (pk.is0() || sig.is0()) return false;
  try {
    return bls.verify(sig, hashCached(message, dst), pk);
  } catch {
    return false;
  }
}

// hash_to_G2 costs about as much as the pairing check itself, and one message is verified
// many times over: a checkpoint digest under each validator's signature, then under the
// aggregate. The map is a pure function's memo, bounded, oldest out first.
const hashMemo = new Map<string, G2Point>();

function hashCached(message: Uint8Array, dst: string): G2Point {
  const k = `${dst}|${Buffer.from(message).toString("hex")}`;
  let h = hashMemo.get(k);
  if (!h) {
    h = bls.hash(message, dst);
    if (hashMemo.size >= 512) hashMemo.delete(hashMemo.keys().next().value!);
    hashMemo.set(k, h);
  }
  return h;
}

function signWith(sk: Uint8Array, message: Uint8Array, dst: string): Uint8Array {
  checkSecretKey(sk);
  if (!(message instanceof Uint8Array)) throw new Error("BLS sign: message must be bytes");
  return bls.Signature.toBytes(bls.sign(hashCached(message, dst), sk));
}

function checkSecretKey(sk: Uint8Array): void {
  if (!(sk instanceof Uint8Array) || sk.length !== SECRET_KEY_BYTES) throw new Error("BLS secret key must be 32 bytes");
  const n = bytesToBigInt(sk);
  if (n === 0n || n >= R) throw new Error("BLS secret key out of range");
}

function bytesToBigInt(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt("0x" + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex"));
}

function bigIntTo32Bytes(n: bigint): Uint8Array {
  return new Uint8Array(Buffer.from(n.toString(16).padStart(64, "0"), "hex"));
}
