// Enrollments a verifier holds (DESIGN.md section 7): the AK it enrolled for each node, and
// the challenges it sent and still waits on. All SQL stays in src/ledger/sql.ts.
import type { Statement } from "bun:sqlite";
import { fromHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { challengeDigest } from "../protocol/enrollment.ts";
import type { Enrollment, PendingEnrollment } from "../tpm/enroll.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";

export interface EnrollmentState extends Enrollment {
  /** Last attestation: when, its PCR digest, and "passed" or "failed: <check>". */
  quoted_at: number | null;
  pcr_digest: string | null;
  result: string | null;
}

/** A pending challenge older than this is dropped: its answer would be stale anyway. */
export const PENDING_TTL_MS = 7 * 24 * 3600 * 1000;

type Row = { record: Uint8Array; quoted_at: number | null; pcr_digest: string | null; result: string | null };

export class EnrollmentStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<keyof typeof STATEMENTS.enrollment, Statement>;

  constructor(
    private readonly ledger: Ledger,
    mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.enrollment);
  }

  /**
   * Records a verified enrollment, replacing an earlier one of the node. One TPM is one
   * enrolled node: an enrollment of another node with the same EK (the TPM re-initialised for
   * a new identity, or one chip behind many node ids) is dropped; their ids are returned.
   */
  put(e: Enrollment): string[] {
    return this.ledger.immediate(() => {
      const others = this.all().filter((o) => o.node_id !== e.node_id && o.ek.digest === e.ek.digest).map((o) => o.node_id);
      for (const id of others) this.#st.drop.run(this.#mesh, fromHex(id, 32));
      this.#st.put.run(this.#mesh, fromHex(e.node_id, 32), Buffer.from(canonicalize(e)), e.enrolled_at);
      return others;
    });
  }

  /** Whether the node is enrolled: asked for every microblock received, so no record is read. */
  has(nodeId: string): boolean {
    return this.#st.has.get(this.#mesh, fromHex(nodeId, 32)) !== null;
  }

  get(nodeId: string): EnrollmentState | null {
    const row = this.#st.get.get(this.#mesh, fromHex(nodeId, 32)) as Row | null;
    return row ? stateOf(row) : null;
  }

  all(): EnrollmentState[] {
    return (this.#st.all.all(this.#mesh) as Row[]).map(stateOf);
  }

  /** The outcome of an attestation of an enrolled node. */
  quoted(nodeId: string, atMs: number, pcrDigest: string | null, result: string): void {
    this.ledger.immediate(() => this.#st.quoted.run(atMs, pcrDigest, result, this.#mesh, fromHex(nodeId, 32)));
  }

  drop(nodeId: string): void {
    this.ledger.immediate(() => this.#st.drop.run(this.#mesh, fromHex(nodeId, 32)));
  }

  addPending(p: PendingEnrollment, nowMs: number): string {
    const digest = challengeDigest(p.challenge);
    const json = canonicalize({ ...p, credential: toHex(p.credential) });
    this.ledger.immediate(() => {
      this.#st.expirePending.run(nowMs - PENDING_TTL_MS);
      this.#st.addPending.run(this.#mesh, fromHex(digest, 32), fromHex(p.challenge.node_id, 32), Buffer.from(json), nowMs);
    });
    return digest;
  }

  /** The pending challenge an answer names, or null (never sent here, already answered, or expired). */
  pending(challenge: string, nowMs = Date.now()): PendingEnrollment | null {
    const row = this.#st.getPending.get(this.#mesh, fromHex(challenge, 32), nowMs - PENDING_TTL_MS) as { pending: Uint8Array } | null;
    if (!row) return null;
    const p = JSON.parse(Buffer.from(row.pending).toString("utf8")) as PendingEnrollment & { credential: string };
    return { ...p, credential: fromHex(p.credential, 32) };
  }

  /** A challenge is answered once: its secret goes when the answer is checked, pass or fail. */
  dropPending(challenge: string): void {
    this.ledger.immediate(() => this.#st.dropPending.run(this.#mesh, fromHex(challenge, 32)));
  }
}

function stateOf(row: Row): EnrollmentState {
  const e = JSON.parse(Buffer.from(row.record).toString("utf8")) as Enrollment;
  return { ...e, quoted_at: row.quoted_at, pcr_digest: row.pcr_digest, result: row.result };
}
