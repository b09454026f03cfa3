// MerkleTree: an RFC 6962 tree over leaves held in memory. DESIGN.md names this class as
// the library's API, and tests use it as a reference; the mesh log itself lives in the
// ledger (its tree store) and gives the same roots and proofs.
import { consistencyProof, inclusionProof, leafHash, rootOf } from "./merkle.ts";

export class MerkleTree {
  readonly #leaves: Uint8Array[] = [];

  /** Leaves are raw entries (microblock ids); they are hashed as RFC 6962 leaves. */
  constructor(entries: Iterable<Uint8Array> = []) {
    for (const e of entries) this.append(e);
  }

  append(entry: Uint8Array): number {
    this.#leaves.push(leafHash(entry));
    return this.#leaves.length;
  }

  get size(): number {
    return this.#leaves.length;
  }

  root(size = this.#leaves.length): Uint8Array {
    return rootOf(this.#leaves, 0, size);
  }

  inclusionProof(index: number, size = this.#leaves.length): Uint8Array[] {
    return inclusionProof(this.#leaves, index, size);
  }

  consistencyProof(size1: number, size2 = this.#leaves.length): Uint8Array[] {
    return consistencyProof(this.#leaves, size1, size2);
  }
}
