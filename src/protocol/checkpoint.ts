// Checkpoints (type C, DESIGN.md section 6): the formats and the pure rules. Which
// microblocks an epoch's checkpoint includes is decided here from plain inputs, so two
// builds from the same ledger contents agree byte for byte on any machine.
import { isHex, toHex, ZERO_HASH } from "../encoding/hex.ts";
import { expectKeys, expectObject, hexField, intField, literalField, SchemaError } from "../encoding/schema.ts";
import { domainDigest } from "../crypto/sha256.ts";
import type { Genesis } from "./genesis.ts";
import { MAX_DECISIONS_PER_CHECKPOINT, parseQuarantineShape, type QuarantineDecision } from "./quarantine.ts";
import { parseSetChange, parseSetChangeShape, type SetChangeDecision } from "./set-change.ts";

export interface CheckpointBody {
  v: 1;
  type: "C";
  mesh: string;
  epoch: number;
  /** Digest of the previous finalized checkpoint; 64 zeros for the first. */
  prev: string;
  tree_size: number;
  root: string;
  /** node_id → [from_seq, to_seq] for every node with new microblocks. */
  ranges: Record<string, [number, number]>;
  /**
   * Quarantine decisions this checkpoint takes (docs/PROTOCOL.md "Quarantine by quorum"),
   * by node_id, each with the requests that justify it; absent when there are none, so a
   * body without decisions is the same bytes as before they existed.
   */
  decisions?: QuarantineDecision[];
  /**
   * A change of the validator set this checkpoint finalizes (docs/PROTOCOL.md "Validator-set
   * changes"), with the requests of a quorum of the set in force; absent when there is none.
   * It takes effect two epochs later, and no checkpoint comes for the epoch in between.
   */
  set_change?: SetChangeDecision;
}

export function checkpointDigest(body: CheckpointBody): Uint8Array {
  return domainDigest("checkpoint", body);
}

export function checkpointDigestHex(body: CheckpointBody): string {
  return toHex(checkpointDigest(body));
}

/** Epoch e is [genesis_time + e*D, genesis_time + (e+1)*D). */
export function epochBounds(genesis: Genesis, epoch: number): { startMs: number; endMs: number } {
  const t0 = Date.parse(genesis.genesis_time);
  const d = genesis.epoch_duration * 1000;
  return { startMs: t0 + epoch * d, endMs: t0 + (epoch + 1) * d };
}

/** The epoch that contains time ms (-1 before genesis). */
export function epochAt(genesis: Genesis, ms: number): number {
  const t0 = Date.parse(genesis.genesis_time);
  return ms < t0 ? -1 : Math.floor((ms - t0) / (genesis.epoch_duration * 1000));
}

/** What the ledger says about one chain, as far as one checkpoint needs. */
export interface ChainCandidates {
  nodeId: string;
  /** Last seq already in the log (0 for none). */
  lastIncluded: number;
  /** Microblocks with seq > lastIncluded, in seq order, as stored (a contiguous chain). */
  rows: { seq: number; id: string; timestampMs: number }[];
  /** First seq at which the node is quarantined (fork evidence), if any. */
  quarantinedFrom?: number;
}

export interface CheckpointPlan {
  ranges: Record<string, [number, number]>;
  /** New leaves, in log order: nodes by node_id (bytewise), each node's microblocks by seq. */
  ids: string[];
}

/**
 * DESIGN.md section 6: for each node, from_seq = last included + 1, to_seq = the highest seq
 * of a contiguous chain whose timestamp is before the end of the epoch, and nothing at or
 * after a quarantine point. Nodes in bytewise node_id order (lowercase hex sorts the same).
 */
export function planCheckpoint(chains: ChainCandidates[], epochEndMs: number): CheckpointPlan {
  const ranges: Record<string, [number, number]> = {};
  const ids: string[] = [];
  const ordered = [...chains].sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  for (const c of ordered) {
    let expect = c.lastIncluded + 1;
    let to = c.lastIncluded;
    for (const r of c.rows) {
      if (r.seq !== expect) break; // a gap: only a contiguous chain counts
      if (r.timestampMs >= epochEndMs) break; // timestamps never decrease along a chain
      if (c.quarantinedFrom !== undefined && r.seq >= c.quarantinedFrom) break;
      ids.push(r.id);
      to = r.seq;
      expect += 1;
    }
    if (to > c.lastIncluded) ranges[c.nodeId] = [c.lastIncluded + 1, to];
  }
  return { ranges, ids };
}

export function makeCheckpointBody(fields: {
  mesh: string;
  epoch: number;
  prev: string | null;
  treeSize: number;
  root: Uint8Array;
  ranges: Record<string, [number, number]>;
  decisions?: QuarantineDecision[];
  setChange?: SetChangeDecision | null;
}): CheckpointBody {
  const body: CheckpointBody = {
    v: 1,
    type: "C",
    mesh: fields.mesh,
    epoch: fields.epoch,
    prev: fields.prev ?? ZERO_HASH,
    tree_size: fields.treeSize,
    root: toHex(fields.root),
    ranges: fields.ranges,
  };
  if (fields.decisions && fields.decisions.length > 0) body.decisions = fields.decisions;
  if (fields.setChange) body.set_change = fields.setChange;
  return body;
}

export function parseCheckpoint(value: unknown, what = "checkpoint"): CheckpointBody {
  const o = expectObject(value, what);
  expectKeys(o, what, ["v", "type", "mesh", "epoch", "prev", "tree_size", "root", "ranges"], ["decisions", "set_change"]);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "C");
  hexField(o, "mesh", what, 32);
  intField(o, "epoch", what, 0);
  hexField(o, "prev", what, 32);
  intField(o, "tree_size", what, 0);
  hexField(o, "root", what, 32);
  const ranges = expectObject(o.ranges, `${what} ranges`);
  for (const [node, r] of Object.entries(ranges)) {
    if (!isHex(node, 32)) throw new SchemaError(`${what}: ranges key "${node}" is not a node id`);
    if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => Number.isSafeInteger(x) && x >= 1) || r[0] > r[1]) {
      throw new SchemaError(`${what}: ranges[${node.slice(0, 12)}…] must be [from_seq, to_seq] with 1 <= from <= to`);
    }
  }
  if (o.decisions !== undefined) parseDecisions(o.decisions, o.mesh as string, what);
  if (o.set_change !== undefined) {
    const sc = expectObject(o.set_change, `${what} set_change`);
    expectKeys(sc, `${what} set_change`, ["change", "requests"]);
    parseSetChange(sc.change, `${what} set_change change`);
    if (!Array.isArray(sc.requests) || sc.requests.length === 0 || sc.requests.length > 1024) throw new SchemaError(`${what}: set_change "requests" must be a non-empty array`);
    sc.requests.forEach((r, j) => parseSetChangeShape(r, o.mesh as string, `${what} set_change request ${j + 1}`));
  }
  return o as unknown as CheckpointBody;
}

/** The form of a body's decisions; their signatures and rules are the validator's to check (decisionProblem). */
function parseDecisions(value: unknown, mesh: string, what: string): void {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_DECISIONS_PER_CHECKPOINT) {
    throw new SchemaError(`${what}: "decisions" must be a non-empty array of at most ${MAX_DECISIONS_PER_CHECKPOINT} (left out when there are none)`);
  }
  let last = "";
  for (const [i, d] of value.entries()) {
    const w = `${what} decision ${i + 1}`;
    const o = expectObject(d, w);
    expectKeys(o, w, ["node_id", "action", "requests"]);
    hexField(o, "node_id", w, 32);
    if ((o.node_id as string) <= last) throw new SchemaError(`${what}: decisions must be in node_id order, one per node`);
    last = o.node_id as string;
    if (o.action !== "quarantine" && o.action !== "lift") throw new SchemaError(`${w}: "action" must be "quarantine" or "lift"`);
    if (!Array.isArray(o.requests) || o.requests.length === 0 || o.requests.length > 1024) throw new SchemaError(`${w}: "requests" must be a non-empty array`);
    o.requests.forEach((r, j) => parseQuarantineShape(r, mesh, 1 << 16, `${w} request ${j + 1}`));
  }
}

/** What a validator's own store knows about the chains a checkpoint body names. */
export interface ChainView {
  /** Last seq of the node already in the log (0 for none). */
  lastIncluded(nodeId: string): number;
  /** The node's verified microblocks with from <= seq <= to that this store holds, in seq order. */
  rows(nodeId: string, from: number, to: number): { seq: number; id: string; timestampMs: number }[];
  /** First seq at which the node is quarantined, if it is. */
  quarantinedFrom(nodeId: string): number | undefined;
}

export type LeavesResult =
  | { ok: true; ids: string[] }
  | { ok: false; reason: string; missing?: Record<string, [number, number]> };

/**
 * The new leaves a proposed body's ranges stand for, checked against the rules of
 * DESIGN.md section 6 on this validator's own verified microblocks: each range starts right
 * after the node's last included seq, every seq in it is held (else `missing` says what to
 * fetch), timestamped before the epoch's end, and before any quarantine point. A range
 * need not reach the last seq this validator holds: the proposer may have seen less, and
 * whatever is left out goes into the next checkpoint.
 */
export function leavesOf(body: CheckpointBody, view: ChainView, epochEndMs: number): LeavesResult {
  const nodes = Object.keys(body.ranges).sort();
  if (nodes.length === 0 && !body.decisions && !body.set_change) return { ok: false, reason: "empty: the checkpoint adds no microblock and takes no decision" };
  const ids: string[] = [];
  const missing: Record<string, [number, number]> = {};
  for (const node of nodes) {
    const [from, to] = body.ranges[node]!;
    const short = node.slice(0, 12);
    const last = view.lastIncluded(node);
    if (from !== last + 1) return { ok: false, reason: `range of ${short}… starts at seq ${from}, but seq ${last} is its last in the log` };
    const q = view.quarantinedFrom(node);
    if (q !== undefined && to >= q) return { ok: false, reason: `range of ${short}… reaches seq ${to}, but the node is quarantined from seq ${q}` };
    const rows = view.rows(node, from, to);
    let expect = from;
    for (const r of rows) {
      if (r.seq !== expect) break;
      if (r.timestampMs >= epochEndMs) return { ok: false, reason: `microblock ${short}…:${r.seq} is timestamped after the end of epoch ${body.epoch}` };
      ids.push(r.id);
      expect++;
    }
    if (expect <= to) missing[node] = [expect, to];
  }
  if (Object.keys(missing).length > 0) return { ok: false, reason: "missing microblocks", missing };
  return { ok: true, ids };
}
