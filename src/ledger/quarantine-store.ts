// Quarantine in the ledger: the requests validators signed (type Q, pending until a
// checkpoint decides), the decisions finalized checkpoints took, and the one answer
// checkpoint building needs: from which seq a node's microblocks stay out of the log. Two
// sources of quarantine meet here: decisions (a quorum's, docs/PROTOCOL.md "Quarantine by
// quorum"), and fork evidence this node holds (a fork proves itself and quarantines at
// once; a lift decided after the evidence arrived clears it).
import type { Statement } from "bun:sqlite";
import { fromHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";
import type { ValidatorSet } from "../protocol/validator-set.ts";
import { eligibleDecision, type NodeStanding, type QuarantineAction, type QuarantineDecision, type QuarantineRecord, quarantineDigest } from "../protocol/quarantine.ts";

export interface DecisionRow {
  node_id: string;
  /** Epoch of the checkpoint that took it. */
  epoch: number;
  action: QuarantineAction;
  /** A quarantine's first seq kept out of the log; 0 for a lift. */
  from_seq: number;
  /** When this ledger stored it (ms): fork evidence found before a lift no longer holds. */
  decided_at: number;
}

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

  /** Stores a request that parseQuarantine accepted; false when it was already there. */
  add(record: QuarantineRecord, nowMs = Date.now()): boolean {
    return this.ledger.immediate(() => {
      const r = this.#st.add.run(this.#mesh, quarantineDigest(record), fromHex(record.node_id, 32), Buffer.from(canonicalize(record)), nowMs);
      return r.changes > 0;
    });
  }

  /** Whether this very request is stored. */
  has(record: QuarantineRecord): boolean {
    return this.#st.has.get(this.#mesh, quarantineDigest(record)) !== null;
  }

  /** How many requests of one validator are stored (what a byzantine one could pile up). */
  countOf(validator: number): number {
    return (this.#st.countOf.get(this.#mesh, validator) as { n: number }).n;
  }

  /** Requests about one node, or all of them, oldest epoch first. Version 1 records (no longer in force) are left out. */
  records(nodeId?: string): QuarantineRecord[] {
    const rows = (nodeId === undefined ? this.#st.all.all(this.#mesh) : this.#st.ofNode.all(this.#mesh, fromHex(nodeId, 32))) as { record: Uint8Array }[];
    return rows
      .map((r) => JSON.parse(Buffer.from(r.record).toString("utf8")) as QuarantineRecord)
      .filter((r) => r.v === 2)
      .sort((a, b) => a.epoch - b.epoch || a.validator - b.validator);
  }

  /** Requests that still count: their basis is the node's current number of decisions. */
  pending(nodeId?: string): QuarantineRecord[] {
    const counts = new Map<string, number>();
    return this.records(nodeId).filter((r) => {
      let n = counts.get(r.node_id);
      if (n === undefined) counts.set(r.node_id, (n = this.decisions(r.node_id).length));
      return r.basis === n;
    });
  }

  /** Decisions finalized about one node, or about all, oldest first. */
  decisions(nodeId?: string): DecisionRow[] {
    if (nodeId === undefined) {
      return (this.#st.decisions.all(this.#mesh) as (Omit<DecisionRow, "node_id"> & { node_id: Uint8Array })[]).map((r) => ({ ...r, node_id: toHex(r.node_id) }));
    }
    return (this.#st.decisionsOf.all(this.#mesh, fromHex(nodeId, 32)) as Omit<DecisionRow, "node_id">[]).map((r) => ({ ...r, node_id: nodeId }));
  }

  /**
   * Inside the caller's transaction (the checkpoint's commit): records a decision the
   * checkpoint of `epoch` took, and stores its requests (they may not have come by gossip).
   */
  decide(d: QuarantineDecision, epoch: number, fromSeq: number, nowMs = Date.now()): void {
    this.#st.decide.run(this.#mesh, fromHex(d.node_id, 32), epoch, d.action, d.action === "lift" ? 0 : fromSeq, nowMs);
    for (const r of d.requests) this.#st.add.run(this.#mesh, quarantineDigest(r), fromHex(r.node_id, 32), Buffer.from(canonicalize(r)), nowMs);
  }

  /** The first seq a finalized decision keeps out, or undefined (no decision, or lifted). */
  #decidedFrom(nodeId: string): number | undefined {
    const last = this.decisions(nodeId).at(-1);
    return last?.action === "quarantine" ? last.from_seq : undefined;
  }

  /**
   * First seq of the node kept out of checkpoints, or undefined when it is not quarantined:
   * by a decision, or by fork evidence, which proves itself and is never lifted (a lift
   * judged against when each node happened to receive the evidence would let validators
   * disagree about the node, and which branch would continue is for no one to choose).
   */
  quarantinedFrom(nodeId: string): number | undefined {
    let from = this.#decidedFrom(nodeId);
    const chain = this.ledger.chainOf(this.mesh, nodeId, false);
    if (chain !== undefined) {
      const fork = this.#st.fork.get(chain) as { seq: number | null; at: number | null };
      if (fork.seq !== null) from = Math.min(from ?? Infinity, fork.seq);
    }
    return from;
  }

  /** What deciding about a node needs to know of it. */
  standing(nodeId: string): NodeStanding {
    return { decisions: this.decisions(nodeId).length, quarantined: this.quarantinedFrom(nodeId) !== undefined, decided: this.#decidedFrom(nodeId) !== undefined };
  }

  /**
   * The decisions the pending requests make now, for a proposal (at most `limit`, by
   * node_id). Only requests that verify under the set in force count: one signed by a
   * validator since removed, or with a key since rotated, would make every voter refuse
   * the body, and every proposer would build it again.
   */
  eligible(set: ValidatorSet, limit: number): QuarantineDecision[] {
    const byNode = new Map<string, QuarantineRecord[]>();
    const held = this.records().filter((r) => r.validator < set.n);
    const ok = set.verifyMany(held.map((r) => ({ i: r.validator, message: quarantineDigest(r), sigHex: r.sig })));
    for (const r of held.filter((_, i) => ok[i])) {
      const list = byNode.get(r.node_id);
      if (list) list.push(r);
      else byNode.set(r.node_id, [r]);
    }
    const out: QuarantineDecision[] = [];
    for (const nodeId of [...byNode.keys()].sort()) {
      const d = eligibleDecision(nodeId, byNode.get(nodeId)!, this.standing(nodeId), set);
      if (d) out.push(d);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Nodes of this mesh with fork evidence in this ledger (hex node ids). */
  forkedNodes(): string[] {
    return (this.#st.forked.all(this.#mesh) as { node_id: Uint8Array }[]).map((r) => toHex(r.node_id));
  }
}
