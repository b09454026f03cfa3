// Quarantine records kept in the ledger, and the one answer checkpoint building needs:
// from which seq a node's microblocks stay out of the log. Both sources of quarantine meet
// here: signed Q records, and fork evidence this node holds (a fork quarantines at once,
// before any validator has signed anything; a lift issued after it clears it).
import type { Statement } from "bun:sqlite";
import { fromHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";
import { type QuarantineRecord, quarantineDigest, quarantineState } from "../protocol/quarantine.ts";

export class QuarantineStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<keyof typeof STATEMENTS.quarantine, Statement>;

  constructor(
    private readonly ledger: Ledger,
    private readonly mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.quarantine);
  }

  /** Stores a record that parseQuarantine accepted; false when it was already there. */
  add(record: QuarantineRecord, nowMs = Date.now()): boolean {
    return this.ledger.immediate(() => {
      const r = this.#st.add.run(this.#mesh, quarantineDigest(record), fromHex(record.node_id, 32), Buffer.from(canonicalize(record)), nowMs);
      return r.changes > 0;
    });
  }

  /** Whether this very record is stored. */
  has(record: QuarantineRecord): boolean {
    return this.#st.has.get(this.#mesh, quarantineDigest(record)) !== null;
  }

  /** How many records of one validator are stored (what a byzantine one could pile up). */
  countOf(validator: number): number {
    return (this.#st.countOf.get(this.#mesh, validator) as { n: number }).n;
  }

  /** Records about one node, or all of them, oldest issued first. */
  records(nodeId?: string): QuarantineRecord[] {
    const rows = (
      nodeId === undefined
        ? this.#st.all.all(this.#mesh)
        : this.#st.ofNode.all(this.#mesh, fromHex(nodeId, 32))
    ) as { record: Uint8Array }[];
    return rows.map((r) => JSON.parse(Buffer.from(r.record).toString("utf8")) as QuarantineRecord).sort((a, b) => (a.issued < b.issued ? -1 : a.issued > b.issued ? 1 : 0));
  }

  /** First seq of the node kept out of checkpoints, or undefined when it is not quarantined. */
  quarantinedFrom(nodeId: string): number | undefined {
    const records = this.records(nodeId);
    let from = quarantineState(records)?.from;
    const chain = this.ledger.chainOf(this.mesh, nodeId, false);
    if (chain !== undefined) {
      const fork = this.#st.fork.get(chain) as { seq: number | null; at: number | null };
      if (fork.seq !== null) {
        const lastLift = records.filter((r) => r.action === "lift").map((r) => Date.parse(r.issued)).reduce((a, b) => Math.max(a, b), -Infinity);
        if (!(lastLift > fork.at!)) from = Math.min(from ?? Infinity, fork.seq);
      }
    }
    return from;
  }

  /** Nodes of this mesh with fork evidence in this ledger (hex node ids). */
  forkedNodes(): string[] {
    return (this.#st.forked.all(this.#mesh) as { node_id: Uint8Array }[]).map((r) => toHex(r.node_id));
  }
}
