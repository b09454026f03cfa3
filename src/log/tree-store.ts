// The mesh log's Merkle tree (DESIGN.md section 6) kept in the ledger, so that
// appending k leaves costs O(k log n) writes and hashes, and a root or a proof for
// any size costs O(log n) reads. Nothing ever rebuilds the tree from all leaves.
//
// Tables (src/ledger/schema.ts, migration 2):
//   log_leaves (block, ids)        leaf ids, 16 to a row (leaf i in block i / 16)
//   log_nodes  (level, idx, hash)  root of the perfect subtree over leaves
//                                  [idx * 2^level, (idx + 1) * 2^level), level >= 1
// Leaf hashes (level 0) are not stored: leafHash(id) is one SHA-256 away.
//
// Only perfect subtrees are stored. Any range [lo, hi) whose start is aligned to
// its largest power-of-two piece (a "compact range") is the fold, right to left,
// of the perfect subtrees of its binary decomposition, which is exactly the
// RFC 6962 split-at-the-largest-power-of-two shape. Every range that the RFC 9162
// proof recursion asks for is of that kind, and at most one per proof is not a
// single perfect subtree, so a proof is O(log n) node reads.
import type { Ledger } from "../ledger/ledger.ts";
import { TreeRows } from "../ledger/tree-store.ts";
import { consistencyPath, EMPTY_ROOT, HASH_SIZE, inclusionPath, leafHash, nodeHash } from "./merkle.ts";


const LEAVES_PER_BLOCK = 16;

function pow2(level: number): number {
  return 2 ** level;
}

function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/**
 * The perfect subtrees (level, idx) that make up [lo, hi), largest first.
 * Requires every piece to be aligned: true for [0, n) and for every range the
 * RFC proof recursion produces.
 */
function decompose(lo: number, hi: number): { level: number; idx: number }[] {
  const out: { level: number; idx: number }[] = [];
  let level = 0;
  while (pow2(level + 1) <= hi - lo) level++;
  let pos = lo;
  for (; level >= 0 && pos < hi; level--) {
    const w = pow2(level);
    if (hi - pos < w) continue;
    if (pos % w !== 0) throw new Error(`tree-store: range [${lo}, ${hi}) is not a compact range`);
    out.push({ level, idx: pos / w });
    pos += w;
  }
  return out;
}

/**
 * Subtrees of fewer than 2^STORED_LEVEL leaves are not stored: recomputing one from at
 * most 8 leaves at read time is cheap, and it halves the rows an append writes.
 */
const STORED_LEVEL = 3;

export class TreeStore {
  readonly #rows: TreeRows;

  /** Over the ledger's log_leaves and log_nodes tables (src/ledger/tree-store.ts). */
  constructor(ledger: Ledger) {
    this.#rows = new TreeRows(ledger);
  }

  /** Number of leaves. */
  size(): number {
    const row = this.#rows.lastBlock();
    return row ? row.block * LEAVES_PER_BLOCK + row.len / HASH_SIZE : 0;
  }

  /**
   * Appends microblock ids (32-byte Uint8Array each) as leaves, in order, and
   * returns the new size. The caller runs it inside its own transaction
   * (Ledger.immediate); the append is also atomic on its own (a savepoint), so
   * an error leaves nothing of this call written. Ids are not checked for
   * uniqueness here: the checkpoint builder appends each chain's seqs once, in order.
   */
  append(ids: readonly Uint8Array[]): number {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(id instanceof Uint8Array) || id.length !== HASH_SIZE) {
        throw new RangeError(`TreeStore.append: id ${i} must be a ${HASH_SIZE}-byte Uint8Array`);
      }
    }
    return this.#rows.atomically(() => this.#append(ids));
  }

  #append(ids: readonly Uint8Array[]): number {
    const n = this.size();
    if (ids.length === 0) return n;
    this.#writeLeaves(n, ids);
    const rows = this.#rows;
    return this.#extend(n, ids, (level, idx, h) => {
      if (level >= STORED_LEVEL) rows.putNode(level, idx, h);
    }).size;
  }

  /**
   * Size and root the tree would have after appending ids, without writing anything:
   * what a validator needs to check a proposed checkpoint before it is final.
   */
  rootAfter(ids: readonly Uint8Array[]): { size: number; root: Uint8Array } {
    const r = this.#extend(this.size(), ids, () => {});
    if (r.size === 0) return { size: 0, root: EMPTY_ROOT };
    let h = r.hashes[r.hashes.length - 1]!;
    for (let i = r.hashes.length - 2; i >= 0; i--) h = nodeHash(r.hashes[i]!, h);
    return { size: r.size, root: h };
  }

  /** Appends leaves to the frontier of [0, n) in memory; each new perfect subtree goes to `made`. */
  #extend(n: number, ids: readonly Uint8Array[], made: (level: number, idx: number, h: Uint8Array) => void): { size: number; hashes: Uint8Array[] } {
    // The frontier: perfect subtree roots of [0, n), largest (leftmost) first.
    const hashes: Uint8Array[] = [];
    const levels: number[] = [];
    for (const p of decompose(0, n)) {
      hashes.push(this.#perfect(p.level, p.idx));
      levels.push(p.level);
    }
    for (const id of ids) {
      let h = leafHash(id);
      let level = 0;
      // Binary carry: merge equal-height perfect subtrees.
      while (levels.length > 0 && levels[levels.length - 1] === level) {
        h = nodeHash(hashes.pop()!, h);
        levels.pop();
        level++;
        made(level, (n + 1) / pow2(level) - 1, h);
      }
      hashes.push(h);
      levels.push(level);
      n++;
    }
    return { size: n, hashes };
  }

  /** Root of the tree of the first `size` leaves (default: all); EMPTY_ROOT for 0. */
  root(size: number = this.size()): Uint8Array {
    this.#checkSize("root", size);
    return this.#rangeHash(0, size);
  }

  /** Microblock id at a leaf index, or null. */
  idAt(index: number): Uint8Array | null {
    if (!isSize(index)) return null;
    const ids = this.#rows.block(Math.floor(index / LEAVES_PER_BLOCK));
    const off = (index % LEAVES_PER_BLOCK) * HASH_SIZE;
    return ids && ids.length >= off + HASH_SIZE ? new Uint8Array(ids.subarray(off, off + HASH_SIZE)) : null;
  }

  /** Leaf ids [from, to), read a block of 16 at a time; throws unless 0 <= from <= to <= size. */
  idsIn(from: number, to: number): Uint8Array[] {
    if (!isSize(from) || !isSize(to) || from > to || to > this.size()) throw new RangeError(`tree-store: leaves [${from}, ${to}) are not in the tree`);
    const out: Uint8Array[] = [];
    for (let block = Math.floor(from / LEAVES_PER_BLOCK); block * LEAVES_PER_BLOCK < to; block++) {
      const ids = this.#rows.block(block)!;
      for (let i = Math.max(from, block * LEAVES_PER_BLOCK); i < Math.min(to, (block + 1) * LEAVES_PER_BLOCK); i++) {
        const off = (i % LEAVES_PER_BLOCK) * HASH_SIZE;
        out.push(new Uint8Array(ids.subarray(off, off + HASH_SIZE)));
      }
    }
    return out;
  }

  /** RFC 9162 2.1.3.1 inclusion proof for leaf `index` in the tree of `size` leaves; leaf-to-root. */
  inclusionProof(index: number, size: number): Uint8Array[] {
    this.#checkSize("inclusionProof", size);
    if (!isSize(index) || index >= size) {
      throw new RangeError(`inclusionProof: index ${index} out of range for tree size ${size}`);
    }
    return inclusionPath((lo, hi) => this.#rangeHash(lo, hi), index, size);
  }

  /** RFC 9162 2.1.4.1 consistency proof from size1 to size2 (1 <= size1 <= size2 <= size()). */
  consistencyProof(size1: number, size2: number): Uint8Array[] {
    this.#checkSize("consistencyProof", size2);
    if (!isSize(size1) || size1 < 1 || size1 > size2) {
      throw new RangeError(`consistencyProof: size1 ${size1} must be in [1, size2=${size2}]`);
    }
    if (size1 === size2) return [];
    return consistencyPath((lo, hi) => this.#rangeHash(lo, hi), size1, size2);
  }

  #checkSize(what: string, size: number): void {
    if (!isSize(size)) throw new RangeError(`${what}: size ${size} is not a non-negative integer`);
    const n = this.size();
    if (size > n) throw new RangeError(`${what}: size ${size} out of range (log has ${n} leaves)`);
  }

  /** Root of a compact range [lo, hi): O(log(hi - lo)) reads. */
  #rangeHash(lo: number, hi: number): Uint8Array {
    if (lo === hi) return EMPTY_ROOT;
    const parts = decompose(lo, hi);
    let h = this.#perfect(parts[parts.length - 1]!.level, parts[parts.length - 1]!.idx);
    for (let i = parts.length - 2; i >= 0; i--) h = nodeHash(this.#perfect(parts[i]!.level, parts[i]!.idx), h);
    return h;
  }

  /** Writes ids as leaves start.., filling the last partial block first. */
  #writeLeaves(start: number, ids: readonly Uint8Array[]): void {
    let block = Math.floor(start / LEAVES_PER_BLOCK);
    let fill = start % LEAVES_PER_BLOCK;
    let buf = new Uint8Array(LEAVES_PER_BLOCK * HASH_SIZE);
    if (fill > 0) {
      const row = this.#rows.block(block);
      if (!row || row.length !== fill * HASH_SIZE) throw new Error(`tree-store: leaf block ${block} is malformed`);
      buf.set(row);
    }
    for (const id of ids) {
      buf.set(id, fill * HASH_SIZE);
      if (++fill === LEAVES_PER_BLOCK) {
        this.#rows.putBlock(block++, buf);
        buf = new Uint8Array(LEAVES_PER_BLOCK * HASH_SIZE);
        fill = 0;
      }
    }
    if (fill > 0) this.#rows.putBlock(block, buf.subarray(0, fill * HASH_SIZE));
  }

  /** Root of the perfect subtree (level, idx): one read, or below STORED_LEVEL a hash of at most 8 leaves. */
  #perfect(level: number, idx: number): Uint8Array {
    if (level === 0) {
      const id = this.idAt(idx);
      if (!id) throw new Error(`tree-store: leaf ${idx} is missing`);
      return leafHash(id);
    }
    if (level < STORED_LEVEL) {
      return nodeHash(this.#perfect(level - 1, idx * 2), this.#perfect(level - 1, idx * 2 + 1));
    }
    const hash = this.#rows.node(level, idx);
    if (!hash || hash.length !== HASH_SIZE) throw new Error(`tree-store: node (${level}, ${idx}) is missing or malformed`);
    return new Uint8Array(hash);
  }
}
