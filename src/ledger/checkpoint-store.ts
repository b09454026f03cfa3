// The checkpoints of one mesh as the ledger keeps them (DESIGN.md section 6): finality
// certificates by epoch, and which microblocks the log includes (log_included, the last seq
// of each chain in the log; log_spans, where each chain's seqs sit among the leaves).
// Rows only: what a checkpoint contains and whether it checks is src/log/builder.ts's.
import type { Statement } from "bun:sqlite";
import { fromHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";

/** A microblock as the checkpoint planner sees it. */
export interface LogCandidateRow {
  seq: number;
  id: string;
  timestampMs: number;
}

/** A chain of the mesh and the last seq of it the log includes (0: none yet). */
export interface LogChainRow {
  chain: number;
  nodeId: string;
  lastIncluded: number;
}

type CertRow = { certificate: Uint8Array };
type MbRow = { seq: number; id: Uint8Array; timestamp: string };

const certOf = (r: CertRow): FinalityCertificate => JSON.parse(Buffer.from(r.certificate).toString("utf8"));
const candidateOf = (r: MbRow): LogCandidateRow => ({ seq: r.seq, id: toHex(r.id), timestampMs: Date.parse(r.timestamp) });

export class CheckpointStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<keyof typeof STATEMENTS.checkpoints, Statement>;

  constructor(ledger: Ledger, mesh: string) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.checkpoints);
  }

  /** The newest stored certificate, or null before the first checkpoint. */
  latest(): FinalityCertificate | null {
    const row = this.#st.latest.get(this.#mesh) as CertRow | null;
    return row ? certOf(row) : null;
  }

  byEpoch(epoch: number): FinalityCertificate | null {
    const row = this.#st.byEpoch.get(this.#mesh, epoch) as CertRow | null;
    return row ? certOf(row) : null;
  }

  /** Certificates after an epoch, oldest first. */
  since(afterEpoch: number, limit: number): FinalityCertificate[] {
    return (this.#st.since.all(this.#mesh, afterEpoch, limit) as CertRow[]).map(certOf);
  }

  /** Certificates of the checkpoints before an epoch that took a validator-set change, oldest first (proof bundles carry them). */
  setChangesBefore(epoch: number): FinalityCertificate[] {
    return (this.#st.setChangesBefore.all(this.#mesh, epoch) as CertRow[]).map(certOf).filter((c) => c.checkpoint.set_change !== undefined);
  }

  /** Stores a certificate under its epoch (the caller has checked it). */
  insertCertificate(epoch: number, digest: Uint8Array, cert: FinalityCertificate, createdAt: number): void {
    this.#st.insert.run(this.#mesh, epoch, digest, Buffer.from(canonicalize(cert)), createdAt);
  }

  /** Replaces the stored certificate of an epoch by another one for the same body (digest); false when none matched. */
  replaceCertificate(epoch: number, digest: Uint8Array, cert: FinalityCertificate): boolean {
    return this.#st.replace.run(Buffer.from(canonicalize(cert)), this.#mesh, epoch, digest).changes > 0;
  }

  /** Records that the log includes seqs [from, to] of a chain, as leaves from firstLeaf on. */
  addSpan(chain: number, firstLeaf: number, from: number, to: number): void {
    this.#st.setIncluded.run(chain, to);
    this.#st.addSpan.run(firstLeaf, chain, from, to);
  }

  /** The last seq of a chain the log includes, 0 when none. */
  lastIncluded(chain: number): number {
    const row = this.#st.included.get(chain) as { last_seq: number } | null;
    return row?.last_seq ?? 0;
  }

  /** A chain's microblocks with seq in [from, to], in seq order. */
  rows(chain: number, from: number, to: number): LogCandidateRow[] {
    return (this.#st.rows.all(chain, from, to) as MbRow[]).map(candidateOf);
  }

  /** Every chain of the mesh with its last included seq. */
  chains(): LogChainRow[] {
    return (this.#st.chains.all(this.#mesh) as { chain: number; node_id: Uint8Array; last_seq: number }[]).map((c) => ({
      chain: c.chain,
      nodeId: toHex(c.node_id),
      lastIncluded: c.last_seq,
    }));
  }

  /** A chain's microblocks after seq `after` stamped before `endIso`, in seq order. */
  rowsBefore(chain: number, after: number, endIso: string): LogCandidateRow[] {
    return (this.#st.before.all(chain, after, endIso) as MbRow[]).map(candidateOf);
  }

  /** Leaf index of a microblock in the log, or null when no checkpoint includes it yet. */
  leafIndexOf(id: string): number | null {
    const row = this.#st.leafIndex.get(this.#mesh, fromHex(id, 32)) as { leaf: number } | null;
    return row ? row.leaf : null;
  }
}
