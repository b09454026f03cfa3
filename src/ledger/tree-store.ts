// The rows of the mesh log's Merkle tree (tables log_leaves and log_nodes, migration 2):
// leaf ids in blocks of 16, stored interior hashes. The tree itself (what to hash, which
// nodes to keep) is src/log/tree-store.ts; this file only reads and writes the rows.
import type { Statement } from "bun:sqlite";
import { type Ledger, ledgerDatabase, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";

export class TreeRows {
  readonly #st: Record<"last" | "putBlock" | "putNode" | "node" | "block", Statement>;
  readonly #atomically: <T>(fn: () => T) => T;

  /** Prepares statements; the tables exist via the ledger's migrations. */
  constructor(ledger: Ledger) {
    this.#st = prepared(ledger, STATEMENTS.tree);
    const db = ledgerDatabase(ledger);
    this.#atomically = <T>(fn: () => T): T => db.transaction(fn)();
  }

  /** The highest leaf block and its length in bytes, or null when the log is empty. */
  lastBlock(): { block: number; len: number } | null {
    return this.#st.last.get() as { block: number; len: number } | null;
  }

  /** The concatenated leaf ids of one block, or null when it is not stored. */
  block(block: number): Uint8Array | null {
    const row = this.#st.block.get(block) as { ids: Uint8Array } | null;
    return row ? row.ids : null;
  }

  /** Writes (or rewrites) one leaf block. */
  putBlock(block: number, ids: Uint8Array): void {
    this.#st.putBlock.run(block, ids);
  }

  /** A stored interior hash, or null. */
  node(level: number, idx: number): Uint8Array | null {
    const row = this.#st.node.get(level, idx) as { hash: Uint8Array } | null;
    return row ? row.hash : null;
  }

  putNode(level: number, idx: number, hash: Uint8Array): void {
    this.#st.putNode.run(level, idx, hash);
  }

  /** Runs fn atomically: a transaction, or a savepoint inside the caller's. */
  atomically<T>(fn: () => T): T {
    return this.#atomically(fn);
  }

}
