// Quarantine records kept in the ledger, and the one answer checkpoint building needs:
// from which seq a node's microblocks stay out of the log. Both sources of quarantine meet
// here: signed Q records, and fork evidence this node holds (a fork quarantines at once,
// before any validator has signed anything; a lift issued after it clears it).
import { fromHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { type QuarantineRecord, quarantineDigest, quarantineState } from "../protocol/quarantine.ts";

export class QuarantineStore {
  readonly #mesh: Uint8Array;

  constructor(
    private readonly ledger: Ledger,
    private readonly mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
  }

  /** Stores a record that parseQuarantine accepted; false when it was already there. */
  add(record: QuarantineRecord, nowMs = Date.now()): boolean {
    return this.ledger.immediate(() => {
      const r = this.ledger.db
        .query("INSERT INTO quarantine_records (mesh, digest, node_id, record, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
        .run(this.#mesh, quarantineDigest(record), fromHex(record.node_id, 32), Buffer.from(canonicalize(record)), nowMs);
      return r.changes > 0;
    });
  }

  /** Records about one node, or all of them, oldest issued first. */
  records(nodeId?: string): QuarantineRecord[] {
    const rows = (
      nodeId === undefined
        ? this.ledger.db.query("SELECT record FROM quarantine_records WHERE mesh = ?").all(this.#mesh)
        : this.ledger.db.query("SELECT record FROM quarantine_records WHERE mesh = ? AND node_id = ?").all(this.#mesh, fromHex(nodeId, 32))
    ) as { record: Uint8Array }[];
    return rows.map((r) => JSON.parse(Buffer.from(r.record).toString("utf8")) as QuarantineRecord).sort((a, b) => (a.issued < b.issued ? -1 : a.issued > b.issued ? 1 : 0));
  }

  /** First seq of the node kept out of checkpoints, or undefined when it is not quarantined. */
  quarantinedFrom(nodeId: string): number | undefined {
    const records = this.records(nodeId);
    let from = quarantineState(records)?.from;
    const chain = this.ledger.chainOf(this.mesh, nodeId, false);
    if (chain !== undefined) {
      const fork = this.ledger.db.query("SELECT min(seq) AS seq, max(detected_at) AS at FROM fork_evidence WHERE chain = ?").get(chain) as { seq: number | null; at: number | null };
      if (fork.seq !== null) {
        const lastLift = records.filter((r) => r.action === "lift").map((r) => Date.parse(r.issued)).reduce((a, b) => Math.max(a, b), -Infinity);
        if (!(lastLift > fork.at!)) from = Math.min(from ?? Infinity, fork.seq);
      }
    }
    return from;
  }
}
