// Validator-set changes in the ledger: the requests validators signed (type R, pending
// until a checkpoint decides), the changes finalized checkpoints took, and the history of
// sets they make from the genesis (src/protocol/set-change.ts). Written with the
// checkpoint that finalizes a change, in its transaction (src/log/builder.ts).
import type { Statement } from "bun:sqlite";
import { fromHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";
import type { Genesis } from "../protocol/genesis.ts";
import { type FinalizedChange, type SetChange, type SetChangeDecision, type SetChangeRequest, setChangeDigest, SetHistory } from "../protocol/set-change.ts";

export class SetChangeStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<keyof typeof STATEMENTS.sets, Statement>;
  #history: { n: number; h: SetHistory } | null = null;

  constructor(
    private readonly ledger: Ledger,
    mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.sets);
  }

  /** Stores a request that parseSetChangeRequest accepted; false when it was already there. */
  add(r: SetChangeRequest, nowMs = Date.now()): boolean {
    return this.ledger.immediate(() => this.#st.add.run(this.#mesh, setChangeDigest(r), Buffer.from(canonicalize(r)), nowMs).changes > 0);
  }

  has(r: SetChangeRequest): boolean {
    return this.#st.has.get(this.#mesh, setChangeDigest(r)) !== null;
  }

  countOf(validator: number): number {
    return (this.#st.countOf.get(this.#mesh, validator) as { n: number }).n;
  }

  /** Every stored request, oldest epoch first. */
  requests(): SetChangeRequest[] {
    return (this.#st.all.all(this.#mesh) as { request: Uint8Array }[])
      .map((r) => JSON.parse(Buffer.from(r.request).toString("utf8")) as SetChangeRequest)
      .sort((a, b) => a.epoch - b.epoch || a.validator - b.validator);
  }

  /** Requests that still count: signed in the set in force now (their basis is the number of changes). */
  pending(): SetChangeRequest[] {
    const n = this.count();
    return this.requests().filter((r) => r.basis === n);
  }

  count(): number {
    return (this.#st.count.get(this.#mesh) as { n: number }).n;
  }

  changes(): (FinalizedChange & { decided_at: number })[] {
    return (this.#st.changes.all(this.#mesh) as { epoch: number; change: Uint8Array; decided_at: number }[]).map((r) => ({
      epoch: r.epoch,
      change: JSON.parse(Buffer.from(r.change).toString("utf8")) as SetChange,
      decided_at: r.decided_at,
    }));
  }

  /** Inside the caller's transaction (the checkpoint's commit): the change its checkpoint took, with its requests. */
  record(d: SetChangeDecision, epoch: number, nowMs = Date.now()): void {
    this.#st.record.run(this.#mesh, epoch, Buffer.from(canonicalize(d.change)), nowMs);
    for (const r of d.requests) this.#st.add.run(this.#mesh, setChangeDigest(r), Buffer.from(canonicalize(r)), nowMs);
    this.#history = null;
  }

  /** The sets the genesis and the finalized changes make; rebuilt only when a change was added. */
  history(genesis: Genesis): SetHistory {
    const n = this.count();
    if (this.#history?.n !== n) this.#history = { n, h: new SetHistory(genesis, this.changes()) };
    return this.#history.h;
  }
}
