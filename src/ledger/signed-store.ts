// The SignedStore in the ledger's SQLite file: a message is committed (synchronous=FULL)
// before the engine sends it, so a validator that crashes after signing and restarts finds
// its signature and never signs a different body for that slot.
import type { Statement } from "bun:sqlite";
import { fromHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";
import type { Evidence, Signed } from "../protocol/consensus-messages.ts";

/**
 * Durable record of every message this validator signed: the guard against signing twice.
 * The consensus engine's port (src/consensus/ports.ts re-exports it); declared here, below
 * consensus, because this store implements it.
 */
export interface SignedStore {
  /**
   * Atomically: when no message holds any of `slots`, stores msg under all of them and
   * returns it; otherwise stores nothing and returns the message already there. Durable
   * (fsynced) before it returns, so a message is only ever sent after it is on disk.
   */
  claim(slots: readonly string[], msg: Signed): Signed;
  /** This validator's messages for the height that follows `prev`, and the ones kept to justify its lock. */
  ofHeight(prev: string): Signed[];
  /** Keeps verified evidence, one piece per validator (one proves it); false when it adds nothing. */
  addEvidence(e: Evidence, slot: string): boolean;
}

export class LedgerSignedStore implements SignedStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<"get" | "put" | "ofHeight" | "hasEvidence" | "putEvidence", Statement>;

  constructor(
    private readonly ledger: Ledger,
    mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.signed);
  }

  claim(slots: readonly string[], msg: Signed): Signed {
    return this.ledger.immediate(() => {
      for (const slot of slots) {
        const row = this.#st.get.get(this.#mesh, slot) as { message: Uint8Array } | null;
        if (row) return JSON.parse(Buffer.from(row.message).toString("utf8")) as Signed;
      }
      const bytes = Buffer.from(canonicalize(msg));
      for (const slot of slots) this.#st.put.run(this.#mesh, slot, bytes, Date.now());
      return msg;
    });
  }

  ofHeight(prev: string): Signed[] {
    const rows = this.#st.ofHeight.all(this.#mesh, `P/${prev}/*`, `V/${prev}/*`, `L/${prev}/*`, `S@${prev}`) as { message: Uint8Array }[];
    return rows.map((r) => JSON.parse(Buffer.from(r.message).toString("utf8")) as Signed);
  }

  addEvidence(e: Evidence, slot: string): boolean {
    return this.ledger.immediate(() => {
      // One piece per validator proves it equivocated; more would only let it grow our disk.
      if (this.#st.hasEvidence.get(this.#mesh, e.validator)) return false;
      const r = this.#st.putEvidence.run(this.#mesh, e.validator, slot, Buffer.from(canonicalize(e)), Date.now());
      return r.changes > 0;
    });
  }
}
