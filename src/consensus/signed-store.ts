// The SignedStore in the ledger's SQLite file: a message is committed (synchronous=FULL)
// before the engine sends it, so a validator that crashes after signing and restarts finds
// its signature and never signs a different body for that slot.
import { fromHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import type { Ledger } from "../ledger/ledger.ts";
import type { Evidence, Signed } from "../protocol/consensus-messages.ts";
import type { SignedStore } from "./ports.ts";

export class LedgerSignedStore implements SignedStore {
  readonly #mesh: Uint8Array;

  constructor(
    private readonly ledger: Ledger,
    mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
  }

  claim(slots: readonly string[], msg: Signed): Signed {
    return this.ledger.immediate(() => {
      const get = this.ledger.db.query("SELECT message FROM consensus_signed WHERE mesh = ? AND slot = ?");
      for (const slot of slots) {
        const row = get.get(this.#mesh, slot) as { message: Uint8Array } | null;
        if (row) return JSON.parse(Buffer.from(row.message).toString("utf8")) as Signed;
      }
      const bytes = Buffer.from(canonicalize(msg));
      const put = this.ledger.db.query("INSERT INTO consensus_signed (mesh, slot, message, signed_at) VALUES (?, ?, ?, ?)");
      for (const slot of slots) put.run(this.#mesh, slot, bytes, Date.now());
      return msg;
    });
  }

  ofHeight(prev: string): Signed[] {
    const rows = this.ledger.db
      .query("SELECT DISTINCT message FROM consensus_signed WHERE mesh = ? AND (slot GLOB ? OR slot GLOB ? OR slot GLOB ? OR slot = ?)")
      .all(this.#mesh, `P/${prev}/*`, `V/${prev}/*`, `L/${prev}/*`, `S@${prev}`) as { message: Uint8Array }[];
    return rows.map((r) => JSON.parse(Buffer.from(r.message).toString("utf8")) as Signed);
  }

  addEvidence(e: Evidence, slot: string): boolean {
    return this.ledger.immediate(() => {
      // One piece per validator proves it equivocated; more would only let it grow our disk.
      if (this.ledger.db.query("SELECT 1 FROM consensus_evidence WHERE mesh = ? AND validator = ?").get(this.#mesh, e.validator)) return false;
      const r = this.ledger.db
        .query("INSERT INTO consensus_evidence (mesh, validator, slot, evidence, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
        .run(this.#mesh, e.validator, slot, Buffer.from(canonicalize(e)), Date.now());
      return r.changes > 0;
    });
  }
}
