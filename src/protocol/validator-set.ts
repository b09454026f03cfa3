// The validator set of a mesh: the genesis's BLS keys decoded once (decoding is noble's
// expensive part), the quorum, and signature checks with a memo. A verification result is
// a pure function of (key, message, signature), so remembering it is exact; gossip delivers
// the same vote many times, and every validator of an in-process simulation checks the same
// signatures.
import { fromHex, toHex } from "../encoding/hex.ts";
import { blsAggregateSignatures, blsBatchVerify, blsFastAggregateVerify, blsVerify, type G1Point, type G2Point, parsePublicKey, parseSignature } from "../crypto/bls.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import { ed25519PublicKey, ed25519Verify } from "../crypto/ed25519.ts";
import { ed25519OfPeerId } from "./peer-id.ts";
import type { KeyObject } from "node:crypto";
import type { Genesis } from "./genesis.ts";

/** q = n - floor((n - 1) / 3): the BFT quorum of DESIGN.md section 6. */
export function quorumOf(n: number): number {
  return n - Math.floor((n - 1) / 3);
}

/** Indices of the set bits of a signers bitfield; validator i is bit 0x80 >> (i % 8) of byte i / 8. */
export function signerIndices(signers: string): number[] {
  const bytes = fromHex(signers);
  const out: number[] = [];
  for (let i = 0; i < bytes.length * 8; i++) if (bytes[i >> 3]! & (0x80 >> (i & 7))) out.push(i);
  return out;
}

export function signersBitfield(indices: readonly number[], n: number): string {
  const bytes = new Uint8Array(Math.ceil(n / 8));
  for (const i of indices) bytes[i >> 3]! |= 0x80 >> (i & 7);
  return toHex(bytes);
}

const MEMO_LIMIT = 1 << 16;

/** A bounded memo: the oldest entries go first once it is full. */
class Memo {
  readonly #m = new Map<string, boolean>();
  get(k: string): boolean | undefined {
    return this.#m.get(k);
  }
  set(k: string, v: boolean): void {
    if (this.#m.size >= MEMO_LIMIT) this.#m.delete(this.#m.keys().next().value!);
    this.#m.set(k, v);
  }
}

const sharedMemo = new Memo();
const sigPoints = new Map<string, G2Point>();

/** Decoding a G2 point costs a few ms in noble; every validator decodes the same ones. */
function signaturePoint(hex: string): G2Point {
  let p = sigPoints.get(hex);
  if (!p) {
    const parsed = parseSignature(fromHex(hex, 96));
    if (parsed === null) throw new RangeError("not a valid BLS signature encoding");
    p = parsed;
    if (sigPoints.size >= 4096) sigPoints.delete(sigPoints.keys().next().value!);
    sigPoints.set(hex, p);
  }
  return p;
}

export class ValidatorSet {
  readonly n: number;
  readonly quorum: number;
  readonly keys: readonly G1Point[];
  readonly keyHex: readonly string[];
  readonly nodeIds: readonly string[];
  /** Vote keys: the Ed25519 keys the genesis cards' peer ids name, decoded on first use (a light client checking F needs none). */
  readonly peerIds: readonly string[];
  #voteKeys = new Map<number, KeyObject | null>();

  /**
   * threshold: a configured quorum_threshold; it may raise the BFT quorum, never lower it.
   * The genesis must already be parsed (keys validated, PoPs checked by parseGenesis).
   */
  constructor(genesis: Genesis, threshold = 0) {
    this.n = genesis.validators.length;
    const q = quorumOf(this.n);
    if (!Number.isInteger(threshold) || threshold < 0 || threshold > this.n) {
      throw new RangeError(`quorum_threshold ${threshold} is not between 0 and the ${this.n} validators of the genesis`);
    }
    // Lowering the quorum would let two certificates for one epoch both be valid.
    if (threshold !== 0 && threshold < q) throw new RangeError(`quorum_threshold ${threshold} is below the Byzantine quorum ${q} of ${this.n} validators; it may only raise it`);
    this.quorum = Math.max(q, threshold);
    this.keyHex = genesis.validators.map((c) => c.bls_pub!);
    this.peerIds = genesis.validators.map((c) => c.peer_id);
    this.nodeIds = genesis.validators.map((c) => c.node_id);
    this.keys = this.keyHex.map((hex, i) => {
      const p = parsePublicKey(fromHex(hex, 48));
      if (p === null) throw new RangeError(`genesis validator ${i}: bls_pub is not a valid BLS12-381 public key`);
      return p;
    });
  }

  /** Ed25519 verification of validator i's vote signature (64 bytes hex) under the key its card's peer id names. Never throws. */
  verifyVote(i: number, message: Uint8Array, sigHex: string): boolean {
    if (!this.#isIndex(i) || typeof sigHex !== "string" || !/^[0-9a-f]{128}$/.test(sigHex)) return false;
    const k = `vote|${this.peerIds[i]}${toHex(message)}${sigHex}`;
    const hit = sharedMemo.get(k);
    if (hit !== undefined) return hit;
    let key = this.#voteKeys.get(i);
    if (key === undefined) {
      const raw = ed25519OfPeerId(this.peerIds[i]!);
      key = raw === null ? null : ed25519PublicKey(raw); // not an Ed25519 peer id: its votes never verify
      this.#voteKeys.set(i, key);
    }
    const ok = key !== null && ed25519Verify(key, message, fromHex(sigHex, 64));
    sharedMemo.set(k, ok);
    return ok;
  }

  /** BLS verification of validator i's signature (96 bytes hex) over a 32-byte message. Never throws. */
  verify(i: number, message: Uint8Array, sigHex: string): boolean {
    const k = this.#blsMemoKey(i, message, sigHex);
    if (k === null) return false;
    const hit = sharedMemo.get(k);
    if (hit !== undefined) return hit;
    let ok: boolean;
    try {
      ok = blsVerify(this.keys[i]!, message, signaturePoint(sigHex));
    } catch {
      ok = false;
    }
    sharedMemo.set(k, ok);
    return ok;
  }

  /**
   * verify() for many (validator, message, signature) at once: what the memo does not know
   * is checked in one random-linear-combination batch (one pairing per distinct message,
   * not two per signature), and only when the batch fails, one by one. Exactly verify()'s
   * answers, except with probability about 2^-64.
   */
  verifyMany(items: readonly { i: number; message: Uint8Array; sigHex: string }[]): boolean[] {
    const keys = items.map(({ i, message, sigHex }) => this.#blsMemoKey(i, message, sigHex));
    const out: (boolean | undefined)[] = keys.map((k) => (k === null ? false : sharedMemo.get(k)));
    const open = items.map((_, j) => j).filter((j) => out[j] === undefined);
    if (open.length >= 2) {
      let sets: { pk: G1Point; message: Uint8Array; sig: G2Point }[] | null = [];
      try {
        sets = open.map((j) => ({ pk: this.keys[items[j]!.i]!, message: items[j]!.message, sig: signaturePoint(items[j]!.sigHex) }));
      } catch {
        sets = null; // a signature that does not decode: the one-by-one path names it
      }
      if (sets && blsBatchVerify(sets)) {
        for (const j of open) {
          out[j] = true;
          sharedMemo.set(keys[j]!, true);
        }
      }
    }
    return items.map((it, j) => out[j] ?? this.verify(it.i, it.message, it.sigHex));
  }

  /** The memo key of a BLS check, or null when the index or the signature's form is wrong. */
  #blsMemoKey(i: number, message: Uint8Array, sigHex: string): string | null {
    if (!this.#isIndex(i) || typeof sigHex !== "string" || !/^[0-9a-f]{192}$/.test(sigHex)) return null;
    return `${this.keyHex[i]}${toHex(message)}${sigHex}`;
  }

  #isIndex(i: number): boolean {
    return Number.isInteger(i) && i >= 0 && i < this.n;
  }

  /** The aggregate of signatures that were each verified, as hex. */
  aggregate(sigs: readonly string[]): string {
    return toHex(blsAggregateSignatures(sigs.map((s) => signaturePoint(s))));
  }

  /**
   * Why a (signers, agg_sig) pair does not prove a quorum over message, or null when it
   * does. Pure, memoised by the exact inputs.
   */
  quorumProblem(signers: string, message: Uint8Array, aggSig: string): string | null {
    if (typeof signers !== "string" || !/^(?:[0-9a-f]{2})+$/.test(signers)) return `"signers" must be a non-empty hex bitfield`;
    const bytes = signers.length / 2;
    if (bytes !== Math.ceil(this.n / 8)) return `signers bitfield has ${bytes} bytes, want ${Math.ceil(this.n / 8)} for ${this.n} validators`;
    const idx = signerIndices(signers);
    const beyond = idx.find((i) => i >= this.n);
    if (beyond !== undefined) return `signers bitfield sets bit ${beyond}, but there are only ${this.n} validators`;
    if (idx.length < this.quorum) return `${idx.length} of ${this.n} validators signed, quorum is ${this.quorum}`;
    if (typeof aggSig !== "string" || !/^[0-9a-f]{192}$/.test(aggSig)) return `"agg_sig" must be 192 lowercase hex characters`;
    const k = sha256Hex(`agg|${this.keyHex.join("")}|${signers}|${toHex(message)}|${aggSig}`);
    let ok = sharedMemo.get(k);
    if (ok === undefined) {
      ok = blsFastAggregateVerify(idx.map((i) => this.keys[i]!), message, fromHex(aggSig, 96));
      sharedMemo.set(k, ok);
    }
    return ok ? null : `aggregate BLS signature of ${idx.length} validators does not verify`;
  }
}

const sets = new Map<string, ValidatorSet>();

/** One ValidatorSet per (genesis, threshold) per process: the keys are decoded once. */
export function validatorSetOf(genesis: Genesis, threshold = 0): ValidatorSet {
  const k = `${genesis.validators.map((c) => c.bls_pub).join(",")}|${threshold}`;
  let set = sets.get(k);
  if (!set) {
    set = new ValidatorSet(genesis, threshold);
    if (sets.size > 64) sets.clear();
    sets.set(k, set);
  }
  return set;
}
