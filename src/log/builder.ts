// Builds, checks, stores and reads the checkpoints of this node's mesh: the ledger's
// microblocks in, an appended Merkle log and finality certificates out. It is the consensus
// engine's CheckpointSource over the ledger (propose, check, commit); in a one-validator mesh
// (every local mesh) src/consensus/alone.ts signs with it: the node's own signature is a quorum.
// Its rows are src/ledger/checkpoint-store.ts's.
import { fromHex, toHex, ZERO_HASH } from "../encoding/hex.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { CheckpointStore } from "../ledger/checkpoint-store.ts";
import type { MeshPolicy } from "../protocol/genesis.ts";
import { QuarantineStore } from "../ledger/quarantine-store.ts";
import { IntelStore } from "../ledger/intel-store.ts";
import {
  type ChainCandidates,
  type ChainView,
  type CheckpointBody,
  checkpointDigest,
  checkpointDigestHex,
  epochBounds,
  leavesOf,
  makeCheckpointBody,
  planCheckpoint,
} from "../protocol/checkpoint.ts";
import { TreeStore } from "./tree-store.ts";
import { betterCertificate, type FinalityCertificate } from "../protocol/certificate.ts";
import { decisionFromSeq, decisionProblem, MAX_DECISIONS_PER_CHECKPOINT, type QuarantineDecision } from "../protocol/quarantine.ts";
import type { ValidatorSet } from "../protocol/validator-set.ts";
import { SetChangeStore } from "../ledger/set-store.ts";
import { CHANGE_DELAY_EPOCHS, eligibleSetChange, type SetHistory, setChangeProblem } from "../protocol/set-change.ts";


/** What check() finds (the consensus port's CheckResult, src/consensus/ports.ts). */
export type CheckResult = { ok: true } | { ok: false; reason: string; missing?: Record<string, [number, number]> };

/** A certificate that cannot hold in this ledger whatever is fetched again: it contradicts what the ledger holds. */
export class CheckpointConflict extends Error {}

export type BuildResult =
  | { status: "created"; certificate: FinalityCertificate; leaves: number }
  | { status: "exists"; certificate: FinalityCertificate }
  | { status: "nothing-new"; epoch: number };

/** The consensus engine's CheckpointSource (src/consensus/ports.ts; src/consensus/alone.ts checks that it is one). */
export class CheckpointBuilder {
  readonly tree: TreeStore;
  readonly quarantine: QuarantineStore;
  /** Finalized advisories, recorded with the checkpoint that includes them. */
  readonly intel: IntelStore;
  readonly sets: SetChangeStore;
  readonly #rows: CheckpointStore;

  constructor(
    readonly ledger: Ledger,
    readonly policy: MeshPolicy,
  ) {
    this.tree = new TreeStore(ledger);
    this.quarantine = new QuarantineStore(ledger, policy.mesh);
    this.intel = new IntelStore(ledger, policy.mesh);
    this.sets = new SetChangeStore(ledger, policy.mesh);
    this.#rows = new CheckpointStore(ledger, policy.mesh);
  }

  /** The newest stored certificate, or null before the first checkpoint. */
  latest(): FinalityCertificate | null {
    return this.#rows.latest();
  }

  byEpoch(epoch: number): FinalityCertificate | null {
    return this.#rows.byEpoch(epoch);
  }

  /** Certificates after an epoch, oldest first (catch-up, /dsm/finality/1). */
  since(afterEpoch: number, limit = 64): FinalityCertificate[] {
    return this.#rows.since(afterEpoch, limit);
  }

  /**
   * The checkpoint body this validator would propose for a closed epoch, from the
   * microblocks in its ledger; null when nothing is new or the epoch is not after the
   * latest checkpoint. Writes nothing.
   */
  propose(epoch: number): CheckpointBody | null {
    const latest = this.latest();
    if (latest && latest.checkpoint.epoch >= epoch) return null;
    if (latest?.checkpoint.set_change && epoch < latest.checkpoint.epoch + CHANGE_DELAY_EPOCHS) return null; // the new set's first epoch has not come
    const { endMs } = epochBounds(this.policy.genesis, epoch);
    const set = this.setAt(epoch);
    // Proposed only what every honest voter will accept (the same checks as check()).
    const decisions = this.quarantine.eligible(set, MAX_DECISIONS_PER_CHECKPOINT).filter((d) => decisionProblem(d, this.quarantine.standing(d.node_id), set, epoch) === null);
    const history = this.history();
    let setChange = eligibleSetChange(this.sets.pending(), set, history.version);
    if (setChange && setChangeProblem(setChange, this.policy.genesis, history.cardsAt(epoch), set, history.version, epoch) !== null) setChange = null;
    const plan = planCheckpoint(this.#candidates(endMs, decisions), endMs);
    if (plan.ids.length === 0 && decisions.length === 0 && !setChange) return null;
    const next = this.tree.rootAfter(plan.ids.map((id) => fromHex(id, 32)));
    return makeCheckpointBody({
      mesh: this.policy.mesh,
      epoch,
      prev: latest ? checkpointDigestHex(latest.checkpoint) : null,
      treeSize: next.size,
      root: next.root,
      ranges: plan.ranges,
      decisions,
      setChange,
    });
  }

  /** The sets the genesis and the finalized set changes make. */
  history(): SetHistory {
    return this.sets.history(this.policy.genesis);
  }

  /**
   * The validators in force at an epoch, with the BFT quorum: what a body's signatures and
   * its decisions' requests are checked against. Not a configured quorum_threshold, which is
   * local: every validator must judge a body alike.
   */
  setAt(epoch: number): ValidatorSet {
    return this.history().setAt(epoch);
  }

  /** Why a body's decisions and set change cannot be taken on this ledger, or null. */
  #decisionsProblem(body: CheckpointBody): string | null {
    const set = this.setAt(body.epoch);
    for (const d of body.decisions ?? []) {
      const p = decisionProblem(d, this.quarantine.standing(d.node_id), set, body.epoch);
      if (p) return p;
    }
    if (body.set_change) {
      const h = this.history();
      return setChangeProblem(body.set_change, this.policy.genesis, h.cardsAt(body.epoch), set, h.version, body.epoch);
    }
    return null;
  }

  /** Recomputes a proposed body from this ledger: prev, ranges, tree_size and root. */
  check(body: CheckpointBody): CheckResult {
    return this.#leaves(body).result;
  }

  #leaves(body: CheckpointBody): { result: CheckResult; ids: string[] } {
    const fail = (reason: string) => ({ result: { ok: false as const, reason }, ids: [] });
    const problem = this.successorProblem(body) ?? this.#decisionsProblem(body);
    if (problem) return fail(problem);
    const r = leavesOf(body, this.#view(body.decisions), epochBounds(this.policy.genesis, body.epoch).endMs);
    if (!r.ok) return { result: r, ids: [] };
    const next = this.tree.rootAfter(r.ids.map((id) => fromHex(id, 32)));
    if (next.size !== body.tree_size) return fail(`tree_size ${body.tree_size} does not recompute (${next.size})`);
    if (toHex(next.root) !== body.root) return fail(`root ${body.root.slice(0, 12)}… does not recompute (${toHex(next.root).slice(0, 12)}…)`);
    return { result: { ok: true }, ids: r.ids };
  }

  /**
   * Stores a finalized certificate and appends its leaves, after checking its body against
   * this ledger once more inside the write transaction. The certificate's signatures are
   * the caller's to verify. Committing the stored certificate again is a no-op.
   */
  commit(cert: FinalityCertificate): void {
    this.ledger.immediate(() => {
      if (this.#alreadyFinal(cert.checkpoint)) return;
      const { result, ids } = this.#leaves(cert.checkpoint);
      if (!result.ok) throw new Error(`checkpoint epoch ${cert.checkpoint.epoch} does not check against this ledger: ${result.reason}`);
      this.#store(cert, ids);
    });
  }

  /**
   * Inside the caller's Ledger.immediate: checks a certificate's body against this ledger
   * and stores it with its leaves, returning how many it appended. For a certificate made
   * in that same transaction (src/consensus/alone.ts), whose epoch holds none yet.
   */
  storeChecked(cert: FinalityCertificate): number {
    const { result, ids } = this.#leaves(cert.checkpoint);
    if (!result.ok) throw new Error(`checkpoint epoch ${cert.checkpoint.epoch} does not check against this ledger: ${result.reason}`);
    this.#store(cert, ids);
    return ids.length;
  }

  /**
   * Stores a certificate whose leaves this node does not all hold (an edge keeps only its own
   * chain): the leaf ids come from a peer, and are trusted only as far as they recompute the
   * certificate's tree_size and root on top of this node's tree. Every leaf of a chain this
   * ledger holds must be that chain's microblock at that seq. The caller has checked the
   * certificate's quorum against the genesis; committing the stored certificate again is a no-op.
   */
  commitLeaves(cert: FinalityCertificate, ids: readonly Uint8Array[]): void {
    this.ledger.immediate(() => {
      const body = cert.checkpoint;
      if (this.#alreadyFinal(body)) return;
      const problem = this.successorProblem(body);
      if (problem) throw new Error(problem);
      const next = this.tree.rootAfter(ids);
      if (next.size !== body.tree_size || toHex(next.root) !== body.root) {
        throw new Error(`checkpoint epoch ${body.epoch}: the ${ids.length} leaf ids given do not recompute its tree_size and root`);
      }
      const named = Object.values(body.ranges).reduce((n, [from, to]) => n + to - from + 1, 0);
      if (named !== ids.length) throw new CheckpointConflict(`checkpoint epoch ${body.epoch}: its ranges name ${named} leaves, not ${ids.length}`);
      let leaf = 0;
      for (const nodeId of Object.keys(body.ranges).sort()) {
        const [from, to] = body.ranges[nodeId]!;
        for (const r of this.#view(body.decisions).rows(nodeId, from, to)) {
          if (toHex(ids[leaf + r.seq - from]!) !== r.id) throw new CheckpointConflict(`checkpoint epoch ${body.epoch}: leaf for ${nodeId.slice(0, 12)}…:${r.seq} is not the microblock this ledger holds`);
        }
        leaf += to - from + 1;
      }
      this.#store(cert, ids.map(toHex));
    });
  }

  /**
   * A certificate (checked by the caller: a quorum of the validators) for a body already
   * finalized here: kept instead of the stored one when it is the better one by
   * betterCertificate, so every node ends with the same certificate per epoch. True when
   * it replaced the stored one.
   */
  improveCertificate(cert: FinalityCertificate): boolean {
    return this.ledger.immediate(() => {
      const stored = this.byEpoch(cert.checkpoint.epoch);
      if (!stored || checkpointDigestHex(stored.checkpoint) !== checkpointDigestHex(cert.checkpoint)) return false;
      if (!betterCertificate(cert, stored)) return false;
      return this.#rows.replaceCertificate(cert.checkpoint.epoch, checkpointDigest(cert.checkpoint), cert);
    });
  }

  /** True when this very body is stored for its epoch; throws when another one is. */
  #alreadyFinal(body: CheckpointBody): boolean {
    const existing = this.byEpoch(body.epoch);
    if (!existing) return false;
    if (checkpointDigestHex(existing.checkpoint) === checkpointDigestHex(body)) return true;
    throw new Error(`epoch ${body.epoch} already has a different finalized checkpoint`);
  }

  /** Why a body cannot follow the latest stored certificate, or null when it can. */
  successorProblem(body: CheckpointBody): string | null {
    if (body.mesh !== this.policy.mesh) return "checkpoint of another mesh";
    const latest = this.latest();
    const prev = latest ? checkpointDigestHex(latest.checkpoint) : ZERO_HASH;
    if (body.prev !== prev) return `prev ${body.prev.slice(0, 12)}… is not the latest finalized checkpoint ${prev.slice(0, 12)}…`;
    if (latest && body.epoch <= latest.checkpoint.epoch) return `epoch ${body.epoch} is not after the latest checkpoint's epoch ${latest.checkpoint.epoch}`;
    if (latest?.checkpoint.set_change && body.epoch < latest.checkpoint.epoch + CHANGE_DELAY_EPOCHS) {
      return `epoch ${body.epoch} comes right after the set change of epoch ${latest.checkpoint.epoch}: the next checkpoint is for epoch ${latest.checkpoint.epoch + CHANGE_DELAY_EPOCHS} or later`;
    }
    return null;
  }

  #store(cert: FinalityCertificate, ids: string[]): void {
    const cut = (cert.checkpoint.decisions ?? []).map((d) => [d, decisionFromSeq(d, this.#lastIncluded(d.node_id))] as const);
    const before = this.tree.size();
    this.tree.append(ids.map((id) => fromHex(id, 32)));
    const body = cert.checkpoint;
    this.#rows.insertCertificate(body.epoch, checkpointDigest(body), cert, Date.now());
    // Leaves follow the ranges in node_id order (the order planCheckpoint appended them).
    let firstLeaf = before;
    for (const nodeId of Object.keys(body.ranges).sort()) {
      const [from, to] = body.ranges[nodeId]!;
      // A node whose microblocks this ledger does not hold (an edge's view) still gets a chain row.
      const chain = this.ledger.chainOf(this.policy.mesh, nodeId, true)!;
      this.#rows.addSpan(chain, firstLeaf, from, to);
      this.intel.scan(nodeId, firstLeaf, from, to, body.epoch);
      firstLeaf += to - from + 1;
    }
    // Decided against the log before this checkpoint's ranges: they may reach the cut, never pass it.
    for (const [d, from] of cut) this.quarantine.decide(d, body.epoch, from);
    if (body.set_change) this.sets.record(body.set_change, body.epoch);
  }

  #lastIncluded(nodeId: string): number {
    const chain = this.ledger.chainOf(this.policy.mesh, nodeId, false);
    return chain === undefined ? 0 : this.#rows.lastIncluded(chain);
  }

  /** Leaf index of a microblock in the log, or null when no checkpoint includes it yet. */
  leafIndexOf(id: string): number | null {
    return this.#rows.leafIndexOf(id);
  }

  /** The ledger's chains as a body sees them: a decision the body takes applies to its own ranges. */
  #view(decisions: readonly QuarantineDecision[] = []): ChainView {
    const rows = this.#rows;
    const mesh = this.policy.mesh;
    const chainOf = (node: string) => this.ledger.chainOf(mesh, node, false);
    return {
      lastIncluded: (node) => this.#lastIncluded(node),
      rows: (node, from, to) => {
        const chain = chainOf(node);
        if (chain === undefined) return [];
        return rows.rows(chain, from, to);
      },
      quarantinedFrom: (node) => this.#quarantinedFrom(node, decisions),
    };
  }

  #quarantinedFrom(nodeId: string, decisions: readonly QuarantineDecision[]): number | undefined {
    const d = decisions.find((x) => x.node_id === nodeId);
    if (d) return d.action === "lift" ? undefined : decisionFromSeq(d, this.#lastIncluded(nodeId));
    return this.quarantine.quarantinedFrom(nodeId);
  }

  #candidates(endMs: number, decisions: readonly QuarantineDecision[]): ChainCandidates[] {
    const endIso = new Date(endMs).toISOString();
    return this.#rows.chains().map((c) => {
      const rows = this.#rows.rowsBefore(c.chain, c.lastIncluded, endIso);
      const nodeId = c.nodeId;
      const out: ChainCandidates = { nodeId, lastIncluded: c.lastIncluded, rows };
      const q = this.#quarantinedFrom(nodeId, decisions);
      if (q !== undefined) out.quarantinedFrom = q;
      return out;
    });
  }
}
