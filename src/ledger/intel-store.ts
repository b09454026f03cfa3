// Finalized threat advisories and retractions (docs/PROTOCOL.md "Threat intelligence"),
// with their payloads, by leaf index. A validator records them from its own ledger in the
// transaction that stores a checkpoint (scan); an edge records those /dsm/intel/1 brings,
// each one checked by the caller against a leaf of its own verified tree (put). Decisions
// are computed from what is here (src/intel/decide.ts).
import type { Statement } from "bun:sqlite";
import { fromHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { type Ledger, prepared, withoutLocalFields } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";
import type { Microblock } from "../protocol/microblock.ts";
import type { FinalizedIntelRow } from "../protocol/advisory.ts";

interface Row {
  leaf: number;
  id: Uint8Array;
  node_id: Uint8Array;
  seq: number;
  epoch: number;
  event_type: string;
  microblock: Uint8Array;
  payload: Uint8Array;
}

export class IntelStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<keyof typeof STATEMENTS.intel, Statement>;

  constructor(
    private readonly ledger: Ledger,
    private readonly mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.intel);
  }

  /**
   * Inside the checkpoint's transaction: the intel microblocks among a span of leaves this
   * ledger holds (chain's seqs from..to are leaves firstLeaf..), finalized by the checkpoint
   * of `epoch`. One whose payload this node lacks is kept with an empty one, to be filled
   * from a peer (put), and counts for nothing until then. Returns how many it found.
   */
  scan(nodeId: string, firstLeaf: number, from: number, to: number, epoch: number, nowMs = Date.now()): number {
    const seqs = this.intelSeqs(nodeId, from, to);
    for (const seq of seqs) {
      const mb = this.ledger.bySeq(this.mesh, nodeId, seq)!;
      const payload = this.ledger.payload(mb.payload_hash) ?? "";
      this.#put(firstLeaf + seq - from, withoutLocalFields(mb), payload, epoch, nowMs);
    }
    return seqs.length;
  }

  /** Seqs of a node's intel microblocks from..to that this ledger holds, finalized or not (through the partial index). */
  intelSeqs(nodeId: string, from: number, to: number): number[] {
    const chain = this.ledger.chainOf(this.mesh, nodeId, false);
    if (chain === undefined) return [];
    return (this.#st.inSpan.all(chain, from, to) as { seq: number }[]).map((r) => r.seq);
  }

  /** One the caller has checked (leaf of its tree, payload_hash, schema); false when it was held already. */
  put(leaf: number, mb: Microblock, payloadCanonical: string, epoch: number, nowMs = Date.now()): boolean {
    return this.ledger.immediate(() => this.#put(leaf, mb, payloadCanonical, epoch, nowMs));
  }

  #put(leaf: number, mb: Microblock, payload: string, epoch: number, nowMs: number): boolean {
    const r = this.#st.put.run(this.#mesh, leaf, fromHex(mb.id, 32), fromHex(mb.node_id, 32), mb.seq, epoch, mb.event_type, Buffer.from(canonicalize(mb)), Buffer.from(payload), nowMs);
    return r.changes > 0;
  }

  /** Held ones from a leaf on, in leaf order, at most `limit` (those still without a payload left out). */
  from(leaf: number, limit: number): FinalizedIntelRow[] {
    return (this.#st.from.all(this.#mesh, leaf, limit) as Row[]).filter((r) => r.payload.length > 0).map(toEntry);
  }

  /** Every one finalized at or after an epoch, in leaf order (payload-less ones left out). */
  sinceEpoch(epoch: number): FinalizedIntelRow[] {
    return (this.#st.sinceEpoch.all(this.#mesh, epoch) as Row[]).filter((r) => r.payload.length > 0).map(toEntry);
  }

  /** Leaves of intel microblocks whose payload this node still lacks. */
  missingPayloads(limit: number): number[] {
    return (this.#st.missing.all(this.#mesh, limit) as { leaf: number }[]).map((r) => r.leaf);
  }

  /** Advisories and retractions a node signed, finalized or not, as this ledger holds them. */
  madeBy(nodeId: string): number {
    const chain = this.ledger.chainOf(this.mesh, nodeId, false);
    return chain === undefined ? 0 : (this.#st.made.get(chain) as { n: number }).n;
  }

  count(): number {
    return (this.#st.count.get(this.#mesh) as { n: number }).n;
  }

  /** Every leaf below it has been looked at for intel (an edge's sync cursor); 0 at first. */
  cursor(): number {
    return (this.#st.cursor.get(this.#mesh) as { next_leaf: number } | null)?.next_leaf ?? 0;
  }

  /** Moves the cursor forward (never back). */
  advance(nextLeaf: number): void {
    this.#st.setCursor.run(this.#mesh, nextLeaf);
  }
}

function toEntry(r: Row): FinalizedIntelRow {
  return {
    leaf: r.leaf,
    id: toHex(r.id),
    node_id: toHex(r.node_id),
    seq: r.seq,
    epoch: r.epoch,
    event_type: r.event_type,
    microblock: JSON.parse(Buffer.from(r.microblock).toString("utf8")) as Microblock,
    payload: JSON.parse(Buffer.from(r.payload).toString("utf8")) as unknown,
    payloadCanonical: Buffer.from(r.payload).toString("utf8"),
  };
}
