/**
 * RFC 6962 / RFC 9162 (section 2.1) Merkle tree hashing, inclusion and
 * consistency proofs. Pure functions over in-memory data: no I/O.
 *
 * Hashes are 32-byte Uint8Arrays (SHA-256, via Bun's native hasher).
 *   leaf hash  = SHA-256(0x00 || data)
 *   node hash  = SHA-256(0x01 || left || right)
 *   empty tree = SHA-256("")
 * The tree over n > 1 leaves splits at k, the largest power of two < n.
 *
 * Generators (`inclusionProof`, `consistencyProof`) take the full list of
 * leaf hashes and cost O(n) hashes; storage-backed O(log n) versions are
 * meant to live elsewhere. Verifiers follow RFC 9162 sections 2.1.3.2 and
 * 2.1.4.2 and throw `ProofError` with a one-line reason on any failure.
 *
 * Tree sizes and indices are plain numbers (non-negative safe integers, so
 * up to 2^53 - 1); all bit arithmetic is done with division, never with
 * 32-bit operators.
 */

export const HASH_SIZE = 32;

/** Thrown by the verifiers when a proof does not check out. */
export class ProofError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProofError";
  }
}

// ---------------------------------------------------------------------------
// Hashing

/** Scratch buffer for node hashes: 0x01 || left || right. */
const nodeBuf = new Uint8Array(1 + 2 * HASH_SIZE);
nodeBuf[0] = 0x01;

function sha256(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(HASH_SIZE);
  Bun.SHA256.hash(data, out);
  return out;
}

/** Root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

/** RFC 6962 leaf hash: SHA-256(0x00 || data). */
export function leafHash(data: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + data.length);
  buf[0] = 0x00;
  buf.set(data, 1);
  return sha256(buf);
}

/** RFC 6962 interior node hash: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    throw new RangeError(
      `nodeHash: children must be ${HASH_SIZE} bytes (got ${left.length} and ${right.length})`,
    );
  }
  nodeBuf.set(left, 1);
  nodeBuf.set(right, 1 + HASH_SIZE);
  return sha256(nodeBuf);
}

/** Bytewise equality. */
export function hashEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

// ---------------------------------------------------------------------------
// Integer helpers (safe for values up to 2^53 - 1)

function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isOdd(n: number): boolean {
  return n % 2 === 1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

/** Largest power of two strictly less than n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

// ---------------------------------------------------------------------------
// Tree hash

/**
 * Merkle tree hash (MTH) over a list of leaf hashes, or over
 * `leafHashes[start, end)`. Iterative: keeps a stack of perfect-subtree
 * roots (at most log2(n) + 1 of them), so n - 1 node hashes and O(log n)
 * extra memory; folding the stack right to left gives exactly the RFC 6962
 * split-at-largest-power-of-two shape.
 */
export function rootOf(leafHashes: readonly Uint8Array[], start = 0, end = leafHashes.length): Uint8Array {
  if (!isSize(start) || !isSize(end) || start > end || end > leafHashes.length) {
    throw new RangeError(`rootOf: bad range [${start}, ${end}) of ${leafHashes.length} leaves`);
  }
  if (start === end) return EMPTY_ROOT;
  const hashes: Uint8Array[] = [];
  const sizes: number[] = [];
  for (let i = start; i < end; i++) {
    const leaf = leafHashes[i]!;
    if (leaf.length !== HASH_SIZE) {
      throw new RangeError(`rootOf: leaf hash ${i} is ${leaf.length} bytes, want ${HASH_SIZE}`);
    }
    let h = leaf;
    let size = 1;
    // Merge equal-sized perfect subtrees (binary carry).
    while (sizes.length > 0 && sizes[sizes.length - 1] === size) {
      h = nodeHash(hashes.pop()!, h);
      sizes.pop();
      size *= 2;
    }
    hashes.push(h);
    sizes.push(size);
  }
  let root = hashes[hashes.length - 1]!;
  for (let i = hashes.length - 2; i >= 0; i--) root = nodeHash(hashes[i]!, root);
  return root;
}

// ---------------------------------------------------------------------------
// Proof generation (RFC 9162 2.1.3.1 and 2.1.4.1, over an in-memory list)

/**
 * Inclusion proof (audit path) for leaf `index` in the tree of the first
 * `size` leaf hashes (default: all of them). Ordered leaf-to-root.
 */
export function inclusionProof(
  leafHashes: readonly Uint8Array[],
  index: number,
  size: number = leafHashes.length,
): Uint8Array[] {
  if (!isSize(size) || size > leafHashes.length) {
    throw new RangeError(`inclusionProof: size ${size} out of range (have ${leafHashes.length} leaves)`);
  }
  if (!isSize(index) || index >= size) {
    throw new RangeError(`inclusionProof: index ${index} out of range for tree size ${size}`);
  }
  return inclusionPath((lo, hi) => rootOf(leafHashes, lo, hi), index, size);
}

/**
 * Consistency proof that the tree of the first `size1` leaves is a prefix of
 * the tree of the first `size2` leaves. Requires 1 <= size1 <= size2 <= n;
 * size1 == size2 gives the empty proof. (A proof from size 0 does not exist:
 * the verifier rejects it, so the generator refuses to make one.)
 */
export function consistencyProof(
  leafHashes: readonly Uint8Array[],
  size1: number,
  size2: number = leafHashes.length,
): Uint8Array[] {
  if (!isSize(size2) || size2 > leafHashes.length) {
    throw new RangeError(`consistencyProof: size2 ${size2} out of range (have ${leafHashes.length} leaves)`);
  }
  if (!isSize(size1) || size1 < 1 || size1 > size2) {
    throw new RangeError(`consistencyProof: size1 ${size1} must be in [1, size2=${size2}]`);
  }
  if (size1 === size2) return [];
  return consistencyPath((lo, hi) => rootOf(leafHashes, lo, hi), size1, size2);
}

/** The hash of leaves [lo, hi): from memory here, from the ledger in tree-store.ts. */
export type RangeHash = (lo: number, hi: number) => Uint8Array;

/**
 * PATH(index, D[0:size]) of RFC 6962 2.1.1, unrolled: walk from the root to the leaf
 * collecting sibling subtree hashes, emit them bottom-up. Arguments already checked.
 */
export function inclusionPath(rangeHash: RangeHash, index: number, size: number): Uint8Array[] {
  const topDown: Uint8Array[] = [];
  let lo = 0;
  let hi = size;
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      topDown.push(rangeHash(lo + k, hi));
      hi = lo + k;
    } else {
      topDown.push(rangeHash(lo, lo + k));
      lo = lo + k;
    }
  }
  return topDown.reverse();
}

/** SUBPROOF(size1, D[0:size2], true) of RFC 6962 2.1.2, unrolled; 1 <= size1 < size2. */
export function consistencyPath(rangeHash: RangeHash, size1: number, size2: number): Uint8Array[] {
  const topDown: Uint8Array[] = [];
  let m = size1;
  let lo = 0;
  let hi = size2;
  let complete = true; // b: is the old tree's root this very subtree?
  while (m !== hi - lo) {
    const k = splitPoint(hi - lo);
    if (m <= k) {
      topDown.push(rangeHash(lo + k, hi));
      hi = lo + k;
    } else {
      topDown.push(rangeHash(lo, lo + k));
      lo = lo + k;
      m -= k;
      complete = false;
    }
  }
  if (!complete) topDown.push(rangeHash(lo, hi));
  return topDown.reverse();
}

// ---------------------------------------------------------------------------
// Verification (RFC 9162 2.1.3.2 and 2.1.4.2)

function checkHash(what: string, h: Uint8Array): void {
  if (!(h instanceof Uint8Array)) throw new ProofError(`${what} is not a byte array`);
  if (h.length !== HASH_SIZE) {
    throw new ProofError(`${what} is ${h.length} bytes, want ${HASH_SIZE}`);
  }
}

function checkProofHashes(proof: readonly Uint8Array[]): void {
  for (let i = 0; i < proof.length; i++) checkHash(`proof element ${i}`, proof[i]!);
}

function hex(h: Uint8Array): string {
  return Buffer.from(h).toString("hex");
}

/** Number of hashes in a valid inclusion proof for (index, size), index < size. */
export function inclusionProofLength(index: number, size: number): number {
  let fn = index;
  let sn = size - 1;
  let count = 0;
  while (sn !== 0) {
    if (fn === sn && !isOdd(fn)) {
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    }
    fn = half(fn);
    sn = half(sn);
    count++;
  }
  return count;
}

/** Number of hashes in a valid consistency proof for 1 <= size1 < size2. */
export function consistencyProofLength(size1: number, size2: number): number {
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let count = 0;
  while (sn !== 0) {
    if (fn === sn && !isOdd(fn)) {
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    }
    fn = half(fn);
    sn = half(sn);
    count++;
  }
  // The RFC loop runs over path[1:]; path[0] is root1 itself when size1 is a
  // power of two and is the first proof element otherwise.
  return isPowerOfTwo(size1) ? count : count + 1;
}

/**
 * Root implied by an inclusion proof. Checks sizes, hash lengths and proof
 * length; throws ProofError on any of them. Does not compare with a root.
 */
export function rootFromInclusionProof(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
): Uint8Array {
  if (!isSize(size)) throw new ProofError(`tree size ${size} is not a non-negative integer`);
  if (!isSize(index)) throw new ProofError(`leaf index ${index} is not a non-negative integer`);
  if (index >= size) throw new ProofError(`leaf index ${index} is out of range for tree size ${size}`);
  checkHash("leaf hash", leaf);
  checkProofHashes(proof);
  const want = inclusionProofLength(index, size);
  if (proof.length !== want) {
    throw new ProofError(`wrong inclusion proof length ${proof.length}, want ${want} for leaf ${index} of ${size}`);
  }
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new ProofError("inclusion proof is too long"); // unreachable after the length check
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError("inclusion proof is too short"); // unreachable after the length check
  return r;
}

/**
 * Verify that `leaf` is the leaf hash at `index` in the tree of `size`
 * leaves with root `root`. Returns on success, throws ProofError otherwise.
 */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  checkHash("root", root);
  const got = rootFromInclusionProof(leaf, index, size, proof);
  if (!hashEquals(got, root)) {
    throw new ProofError(`inclusion proof gives root ${hex(got)}, want ${hex(root)}`);
  }
}

/**
 * Roots implied by a consistency proof for 1 <= size1 < size2, given root1
 * (needed when size1 is a power of two, where root1 is the proof's seed).
 * Checks sizes, hash lengths and proof length; throws ProofError.
 */
export function rootsFromConsistencyProof(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
): { root1: Uint8Array; root2: Uint8Array } {
  if (!isSize(size1) || !isSize(size2)) {
    throw new ProofError(`tree sizes ${size1}, ${size2} are not non-negative integers`);
  }
  if (size1 > size2) throw new ProofError(`size1 ${size1} is greater than size2 ${size2}`);
  if (size1 === 0) throw new ProofError("consistency proof from the empty tree (size1 = 0) is not defined");
  if (size1 === size2) throw new ProofError("sizes are equal: there is nothing to prove");
  checkHash("root1", root1);
  checkProofHashes(proof);
  const want = consistencyProofLength(size1, size2);
  if (proof.length !== want) {
    throw new ProofError(`wrong consistency proof length ${proof.length}, want ${want} for ${size1} -> ${size2}`);
  }
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) throw new ProofError("consistency proof is too long"); // unreachable after the length check
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError("consistency proof is too short"); // unreachable after the length check
  return { root1: fr, root2: sr };
}

/**
 * Verify that the tree of `size1` leaves with root `root1` is a prefix of the
 * tree of `size2` leaves with root `root2`. Returns on success, throws
 * ProofError otherwise.
 *
 * Rules: size1 > size2 and size1 == 0 are errors (even 0 -> 0); when
 * size1 == size2 the proof must be empty and the roots identical. In that
 * equal-size case the roots are compared as opaque byte strings without a
 * length check, because the transparency-dev vector
 * consistency/additional/sizes-are-equal-one-and-proof-is-empty.json
 * requires that two identical 12-byte roots pass.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): void {
  if (!isSize(size1) || !isSize(size2)) {
    throw new ProofError(`tree sizes ${size1}, ${size2} are not non-negative integers`);
  }
  if (size1 > size2) throw new ProofError(`size1 ${size1} is greater than size2 ${size2}`);
  if (size1 === 0) throw new ProofError("consistency proof from the empty tree (size1 = 0) is not defined");
  if (size1 === size2) {
    if (proof.length !== 0) {
      throw new ProofError(`sizes are equal (${size1}) but the proof has ${proof.length} elements, want 0`);
    }
    if (!hashEquals(root1, root2)) throw new ProofError(`sizes are equal (${size1}) but the roots differ`);
    return;
  }
  checkHash("root2", root2);
  const got = rootsFromConsistencyProof(size1, size2, proof, root1);
  if (!hashEquals(got.root1, root1)) {
    throw new ProofError(`consistency proof gives root1 ${hex(got.root1)}, want ${hex(root1)}`);
  }
  if (!hashEquals(got.root2, root2)) {
    throw new ProofError(`consistency proof gives root2 ${hex(got.root2)}, want ${hex(root2)}`);
  }
}
