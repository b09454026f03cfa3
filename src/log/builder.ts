// Builds, checks, stores and reads the checkpoints of this node's mesh: the ledger's
// microblocks in, an appended Merkle log and finality certificates out. It is the consensus
// engine's CheckpointSource over the ledger (propose, check, commit); in a one-validator mesh
// (every local mesh) build() is the whole agreement: the node's own signature is a quorum.
import { fromHex, toHex, ZERO_HASH } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { blsSign } from "../crypto/bls.ts";
import type { CheckpointSource, CheckResult } from "../consensus/ports.ts";
import { LedgerSignedStore } from "../consensus/signed-store.ts";
import { signOnce } from "../consensus/sign-once.ts";
import { signingDigest } from "../protocol/consensus-messages.ts";
import { signersBitfield } from "../protocol/validator-set.ts";
import type { Ledger } from "../ledger/ledger.ts";
import type { MeshPolicy } from "../protocol/genesis.ts";
import { QuarantineStore } from "../mesh/quarantine-store.ts";
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
import type { FinalityCertificate } from "../protocol/certificate.ts";


/** A certificate that cannot hold in this ledger whatever is fetched again: it contradicts what the ledger holds. */
export class CheckpointConflict extends Error {}

export type BuildResult =
  | { status: "created"; certificate: FinalityCertificate; leaves: number }
  | { status: "exists"; certificate: FinalityCertificate }
  | { status: "nothing-new"; epoch: number };

export class CheckpointBuilder implements CheckpointSource {
  readonly tree: TreeStore;
  readonly quarantine: QuarantineStore;

  constructor(
    private readonly ledger: Ledger,
    private readonly policy: MeshPolicy,
  ) {
    this.tree = new TreeStore(ledger.db);
    this.quarantine = new QuarantineStore(ledger, policy.mesh);
  }

  /** The newest stored certificate, or null before the first checkpoint. */
  latest(): FinalityCertificate | null {
    const row = this.ledger.db
      .query("SELECT certificate FROM checkpoints WHERE mesh = ? ORDER BY epoch DESC LIMIT 1")
      .get(fromHex(this.policy.mesh, 32)) as { certificate: Uint8Array } | null;
    return row ? JSON.parse(Buffer.from(row.certificate).toString("utf8")) : null;
  }

  byEpoch(epoch: number): FinalityCertificate | null {
    const row = this.ledger.db
      .query("SELECT certificate FROM checkpoints WHERE mesh = ? AND epoch = ?")
      .get(fromHex(this.policy.mesh, 32), epoch) as { certificate: Uint8Array } | null;
    return row ? JSON.parse(Buffer.from(row.certificate).toString("utf8")) : null;
  }

  /** Certificates after an epoch, oldest first (catch-up, /dsm/finality/1). */
  since(afterEpoch: number, limit = 64): FinalityCertificate[] {
    const rows = this.ledger.db
      .query("SELECT certificate FROM checkpoints WHERE mesh = ? AND epoch > ? ORDER BY epoch LIMIT ?")
      .all(fromHex(this.policy.mesh, 32), afterEpoch, limit) as { certificate: Uint8Array }[];
    return rows.map((r) => JSON.parse(Buffer.from(r.certificate).toString("utf8")));
  }

  /**
   * The checkpoint body this validator would propose for a closed epoch, from the
   * microblocks in its ledger; null when nothing is new or the epoch is not after the
   * latest checkpoint. Writes nothing.
   */
  propose(epoch: number): CheckpointBody | null {
    const latest = this.latest();
    if (latest && latest.checkpoint.epoch >= epoch) return null;
    const { endMs } = epochBounds(this.policy.genesis, epoch);
    const plan = planCheckpoint(this.#candidates(endMs), endMs);
    if (plan.ids.length === 0) return null;
    const next = this.tree.rootAfter(plan.ids.map((id) => fromHex(id, 32)));
    return makeCheckpointBody({
      mesh: this.policy.mesh,
      epoch,
      prev: latest ? checkpointDigestHex(latest.checkpoint) : null,
      treeSize: next.size,
      root: next.root,
      ranges: plan.ranges,
    });
  }

  /** Recomputes a proposed body from this ledger: prev, ranges, tree_size and root. */
  check(body: CheckpointBody): CheckResult {
    return this.#leaves(body).result;
  }

  #leaves(body: CheckpointBody): { result: CheckResult; ids: string[] } {
    const fail = (reason: string) => ({ result: { ok: false as const, reason }, ids: [] });
    const problem = this.successorProblem(body);
    if (problem) return fail(problem);
    const r = leavesOf(body, this.#view(), epochBounds(this.policy.genesis, body.epoch).endMs);
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
        for (const r of this.#view().rows(nodeId, from, to)) {
          if (toHex(ids[leaf + r.seq - from]!) !== r.id) throw new CheckpointConflict(`checkpoint epoch ${body.epoch}: leaf for ${nodeId.slice(0, 12)}…:${r.seq} is not the microblock this ledger holds`);
        }
        leaf += to - from + 1;
      }
      this.#store(cert, ids.map(toHex));
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
    return null;
  }

  #store(cert: FinalityCertificate, ids: string[]): void {
    const before = this.tree.size();
    this.tree.append(ids.map((id) => fromHex(id, 32)));
    const body = cert.checkpoint;
    this.ledger.db
      .query("INSERT INTO checkpoints (mesh, epoch, digest, certificate, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(fromHex(this.policy.mesh, 32), body.epoch, checkpointDigest(body), Buffer.from(canonicalize(cert)), Date.now());
    // Leaves follow the ranges in node_id order (the order planCheckpoint appended them).
    let firstLeaf = before;
    for (const nodeId of Object.keys(body.ranges).sort()) {
      const [from, to] = body.ranges[nodeId]!;
      // A node whose microblocks this ledger does not hold (an edge's view) still gets a chain row.
      const chain = this.ledger.chainOf(this.policy.mesh, nodeId, true)!;
      this.ledger.db.query("INSERT INTO log_included (chain, last_seq) VALUES (?, ?) ON CONFLICT (chain) DO UPDATE SET last_seq = excluded.last_seq").run(chain, to);
      this.ledger.db.query("INSERT INTO log_spans (first_leaf, chain, from_seq, to_seq) VALUES (?, ?, ?, ?)").run(firstLeaf, chain, from, to);
      firstLeaf += to - from + 1;
    }
  }

  /**
   * The checkpoint for a closed epoch in a mesh where this validator alone is a quorum
   * (n = 1). Its signature is recorded durably before use, like every consensus signature,
   * so a crash between signing and storing can never lead to a second body for the epoch:
   * the run after it finishes the first. Idempotent: an epoch already checkpointed, or one
   * at or before the latest checkpoint, changes nothing.
   */
  build(epoch: number, blsSecret: Uint8Array, validatorIndex: number): BuildResult {
    const genesis = this.policy.genesis;
    return this.ledger.immediate((): BuildResult => {
      const existing = this.byEpoch(epoch);
      if (existing) return { status: "exists", certificate: existing };
      const latest = this.latest();
      if (latest && latest.checkpoint.epoch > epoch) return { status: "nothing-new", epoch };
      let body = this.propose(epoch);
      const store = new LedgerSignedStore(this.ledger, this.policy.mesh);
      // A signature made by an earlier run that did not get to store its certificate.
      const earlier = store.ofHeight(latest ? checkpointDigestHex(latest.checkpoint) : "0".repeat(64)).find((m) => m.type === "S");
      if (earlier && earlier.type === "S" && this.check(earlier.checkpoint).ok) body = earlier.checkpoint;
      if (body === null) return { status: "nothing-new", epoch };
      const signed = signOnce(store, { v: 1, type: "S", mesh: this.policy.mesh, checkpoint: body, validator: validatorIndex }, (m) => blsSign(blsSecret, signingDigest(m)));
      if (!signed.ok) throw new Error(`this validator already signed another checkpoint (${signed.slot}); refusing to sign a second`);
      const certificate: FinalityCertificate = {
        v: 1,
        type: "F",
        checkpoint: body,
        signers: signersBitfield([validatorIndex], genesis.validators.length),
        agg_sig: signed.message.sig,
      };
      const { result, ids } = this.#leaves(body);
      if (!result.ok) throw new Error(`checkpoint epoch ${body.epoch} does not check against this ledger: ${result.reason}`);
      this.#store(certificate, ids);
      return { status: "created", certificate, leaves: ids.length };
    });
  }

  /** Leaf index of a microblock in the log, or null when no checkpoint includes it yet. */
  leafIndexOf(id: string): number | null {
    const row = this.ledger.db
      .query(
        `SELECT s.first_leaf + (m.seq - s.from_seq) AS leaf FROM microblocks m
         JOIN chains c ON c.chain = m.chain AND c.mesh = ?
         JOIN log_spans s ON s.chain = m.chain AND s.from_seq <= m.seq AND s.to_seq >= m.seq
         WHERE m.id = ?`,
      )
      .get(fromHex(this.policy.mesh, 32), fromHex(id, 32)) as { leaf: number } | null;
    return row ? row.leaf : null;
  }

  #view(): ChainView {
    const db = this.ledger.db;
    const mesh = this.policy.mesh;
    const chainOf = (node: string) => this.ledger.chainOf(mesh, node, false);
    return {
      lastIncluded: (node) => {
        const chain = chainOf(node);
        if (chain === undefined) return 0;
        const row = db.query("SELECT last_seq FROM log_included WHERE chain = ?").get(chain) as { last_seq: number } | null;
        return row?.last_seq ?? 0;
      },
      rows: (node, from, to) => {
        const chain = chainOf(node);
        if (chain === undefined) return [];
        const rows = db.query("SELECT seq, id, timestamp FROM microblocks WHERE chain = ? AND seq >= ? AND seq <= ? ORDER BY seq").all(chain, from, to) as { seq: number; id: Uint8Array; timestamp: string }[];
        return rows.map((r) => ({ seq: r.seq, id: toHex(r.id), timestampMs: Date.parse(r.timestamp) }));
      },
      quarantinedFrom: (node) => this.quarantine.quarantinedFrom(node),
    };
  }

  #candidates(endMs: number): ChainCandidates[] {
    const chains = this.ledger.db
      .query(
        `SELECT c.chain, c.node_id, coalesce(i.last_seq, 0) AS last_seq
         FROM chains c LEFT JOIN log_included i ON i.chain = c.chain WHERE c.mesh = ?`,
      )
      .all(fromHex(this.policy.mesh, 32)) as { chain: number; node_id: Uint8Array; last_seq: number }[];
    // Timestamps never decrease along a chain, so the rows before the epoch end are a prefix.
    const rowsOf = this.ledger.db.query("SELECT seq, id, timestamp FROM microblocks WHERE chain = ? AND seq > ? AND timestamp < ? ORDER BY seq");
    const endIso = new Date(endMs).toISOString();
    return chains.map((c) => {
      const rows = (rowsOf.all(c.chain, c.last_seq, endIso) as { seq: number; id: Uint8Array; timestamp: string }[]).map((r) => ({
        seq: r.seq,
        id: toHex(r.id),
        timestampMs: Date.parse(r.timestamp),
      }));
      const nodeId = toHex(c.node_id);
      const out: ChainCandidates = { nodeId, lastIncluded: c.last_seq, rows };
      const q = this.quarantine.quarantinedFrom(nodeId);
      if (q !== undefined) out.quarantinedFrom = q;
      return out;
    });
  }
}

