// Builds, stores and reads the checkpoints of this node's mesh: the ledger's microblocks
// in, an appended Merkle log and a finality certificate out. In a one-validator mesh
// (every local mesh) the certificate carries that validator's own BLS signature; the
// consensus issue fills `signers` and `agg_sig` from a quorum instead, same shape.
import { fromHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { blsSign } from "../crypto/bls.ts";
import { signersBitfield } from "../consensus/validators.ts";
import type { Ledger } from "../ledger/ledger.ts";
import type { MeshPolicy } from "../mesh/genesis.ts";
import {
  type ChainCandidates,
  type CheckpointBody,
  checkpointDigest,
  epochBounds,
  makeCheckpointBody,
  planCheckpoint,
} from "./checkpoint.ts";
import { TreeStore } from "./tree-store.ts";

/** Finality certificate (type F, DESIGN.md section 6). */
export interface FinalityCertificate {
  v: 1;
  type: "F";
  checkpoint: CheckpointBody;
  /** Bitfield over genesis validator order, hex; validator i is bit (7 - i % 8) of byte i / 8. */
  signers: string;
  agg_sig: string;
}

export type BuildResult =
  | { status: "created"; certificate: FinalityCertificate; leaves: number }
  | { status: "exists"; certificate: FinalityCertificate }
  | { status: "nothing-new"; epoch: number };

export class CheckpointBuilder {
  readonly tree: TreeStore;

  constructor(
    private readonly ledger: Ledger,
    private readonly policy: MeshPolicy,
  ) {
    this.tree = new TreeStore(ledger.db);
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

  /**
   * The checkpoint for a closed epoch, as the sole validator of this mesh. Idempotent: an
   * epoch already checkpointed, or one at or before the latest checkpoint, changes nothing.
   */
  build(epoch: number, blsSecret: Uint8Array, validatorIndex: number): BuildResult {
    const genesis = this.policy.genesis;
    return this.ledger.immediate((): BuildResult => {
      const existing = this.byEpoch(epoch);
      if (existing) return { status: "exists", certificate: existing };
      const latest = this.latest();
      if (latest && latest.checkpoint.epoch > epoch) return { status: "nothing-new", epoch };
      const { endMs } = epochBounds(genesis, epoch);
      const plan = planCheckpoint(this.#candidates(endMs), endMs);
      if (plan.ids.length === 0) return { status: "nothing-new", epoch };
      const before = this.tree.size();
      const size = this.tree.append(plan.ids.map((id) => fromHex(id, 32)));
      const body = makeCheckpointBody({
        mesh: this.policy.mesh,
        epoch,
        prev: latest ? toHex(checkpointDigest(latest.checkpoint)) : null,
        treeSize: size,
        root: this.tree.root(size),
        ranges: plan.ranges,
      });
      const digest = checkpointDigest(body);
      const certificate: FinalityCertificate = {
        v: 1,
        type: "F",
        checkpoint: body,
        signers: signersBitfield([validatorIndex], genesis.validators.length),
        agg_sig: toHex(blsSign(blsSecret, digest)),
      };
      this.ledger.db
        .query("INSERT INTO checkpoints (mesh, epoch, digest, certificate, created_at) VALUES (?, ?, ?, ?, ?)")
        .run(fromHex(this.policy.mesh, 32), epoch, digest, Buffer.from(canonicalize(certificate)), Date.now());
      // Leaves follow the ranges in node_id order (the order planCheckpoint appended them).
      let firstLeaf = before;
      for (const nodeId of Object.keys(plan.ranges).sort()) {
        const [from, to] = plan.ranges[nodeId]!;
        const chain = this.ledger.chainOf(this.policy.mesh, nodeId, false)!;
        this.ledger.db.query("INSERT INTO log_included (chain, last_seq) VALUES (?, ?) ON CONFLICT (chain) DO UPDATE SET last_seq = excluded.last_seq").run(chain, to);
        this.ledger.db.query("INSERT INTO log_spans (first_leaf, chain, from_seq, to_seq) VALUES (?, ?, ?, ?)").run(firstLeaf, chain, from, to);
        firstLeaf += to - from + 1;
      }
      return { status: "created", certificate, leaves: plan.ids.length };
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

  #candidates(endMs: number): ChainCandidates[] {
    const chains = this.ledger.db
      .query(
        `SELECT c.chain, c.node_id, coalesce(i.last_seq, 0) AS last_seq,
           (SELECT min(seq) FROM fork_evidence f WHERE f.chain = c.chain) AS fork_seq
         FROM chains c LEFT JOIN log_included i ON i.chain = c.chain WHERE c.mesh = ?`,
      )
      .all(fromHex(this.policy.mesh, 32)) as { chain: number; node_id: Uint8Array; last_seq: number; fork_seq: number | null }[];
    // Timestamps never decrease along a chain, so the rows before the epoch end are a prefix.
    const rowsOf = this.ledger.db.query("SELECT seq, id, timestamp FROM microblocks WHERE chain = ? AND seq > ? AND timestamp < ? ORDER BY seq");
    const endIso = new Date(endMs).toISOString();
    return chains.map((c) => {
      const rows = (rowsOf.all(c.chain, c.last_seq, endIso) as { seq: number; id: Uint8Array; timestamp: string }[]).map((r) => ({
        seq: r.seq,
        id: toHex(r.id),
        timestampMs: Date.parse(r.timestamp),
      }));
      const out: ChainCandidates = { nodeId: toHex(c.node_id), lastIncluded: c.last_seq, rows };
      if (c.fork_seq !== null) out.quarantinedFrom = c.fork_seq;
      return out;
    });
  }
}

