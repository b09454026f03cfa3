// Quarantine requests (type Q, DESIGN.md section 7, docs/PROTOCOL.md "Quarantine by
// quorum"): one validator's signed request that a node be quarantined (a failed or missed
// attestation it observed itself, or its operator's decision) or lifted. A request alone
// changes nothing. A checkpoint's `decisions` carry the requests that justify each decision
// (f + 1 observations of an attestation failure, or a quorum for anything else), and a
// decision takes effect from the checkpoint that finalizes it, so the quorum that signs
// checkpoints is also the one that decides who is in them. Fork evidence proves itself and
// needs no request (src/ledger/quarantine-store.ts).
//
// Pure: the request format and digest, parsing, and the rules a decision must meet.
import { toHex } from "../encoding/hex.ts";
import { expectKeys, expectObject, hexField, intField, literalField, SchemaError, stringField } from "../encoding/schema.ts";
import { domainDigest } from "../crypto/sha256.ts";
import type { ValidatorSet } from "./validator-set.ts";

export type QuarantineReason = "attestation_failed" | "attestation_missed" | "operator";
export type QuarantineAction = "quarantine" | "lift";

export interface QuarantineRecord {
  v: 2;
  type: "Q";
  mesh: string;
  node_id: string;
  action: QuarantineAction;
  /**
   * A quarantine: the first seq the signer would keep out (the one after the node's head
   * when it observed the failure or its operator decided). A lift: 0.
   */
  from_seq: number;
  /** A lift's reason is always "operator". */
  reason: QuarantineReason;
  /**
   * How many decisions about this node were finalized when the request was signed. A
   * request counts only while that is still the number, so a lift signed for one
   * quarantine can never be replayed to lift a later one.
   */
  basis: number;
  /** The mesh epoch in which it was signed (never a signer's clock): requests from a later epoch are refused. */
  epoch: number;
  /** One line for operators: what failed, or why. */
  detail: string;
  /** Signer's index in genesis validator order. */
  validator: number;
  /** BLS signature over sha256("hookprobe-dsm/quarantine/v1\n" || JCS(request without sig)). */
  sig: string;
}

export type UnsignedQuarantine = Omit<QuarantineRecord, "sig">;

/** A decision in a checkpoint body: the requests that justify it, by distinct validators. */
export interface QuarantineDecision {
  node_id: string;
  action: QuarantineAction;
  requests: QuarantineRecord[];
}

/** At most this many decisions in one checkpoint: a body stays small whatever is pending. */
export const MAX_DECISIONS_PER_CHECKPOINT = 16;

export function quarantineDigest(r: UnsignedQuarantine | QuarantineRecord): Uint8Array {
  const { sig: _sig, ...body } = r as QuarantineRecord;
  return domainDigest("quarantine", body);
}

export function makeQuarantine(fields: {
  mesh: string;
  nodeId: string;
  action: QuarantineAction;
  fromSeq: number;
  reason: QuarantineReason;
  basis: number;
  epoch: number;
  detail: string;
  validator: number;
  sign: (digest: Uint8Array) => Uint8Array;
}): QuarantineRecord {
  const body: UnsignedQuarantine = {
    v: 2,
    type: "Q",
    mesh: fields.mesh,
    node_id: fields.nodeId,
    action: fields.action,
    from_seq: fields.action === "lift" ? 0 : fields.fromSeq,
    reason: fields.action === "lift" ? "operator" : fields.reason,
    basis: fields.basis,
    epoch: fields.epoch,
    detail: fields.detail.replace(/\s+/g, " ").slice(0, 256),
    validator: fields.validator,
  };
  return { ...body, sig: toHex(fields.sign(quarantineDigest(body))) };
}

const REQUEST_KEYS = ["v", "type", "mesh", "node_id", "action", "from_seq", "reason", "basis", "epoch", "detail", "validator", "sig"] as const;

/** The form of a request, without its signature checked (a checkpoint body's shape; the checkpoint's quorum covers it). */
export function parseQuarantineShape(value: unknown, mesh: string | null, n: number, what = "quarantine request"): QuarantineRecord {
  const o = expectObject(value, what);
  if (o.v === 1) throw new SchemaError(`${what}: a version 1 record (one validator's word, dated by its clock) is no longer accepted: a quarantine or lift now needs a quorum (docs/PROTOCOL.md)`);
  expectKeys(o, what, [...REQUEST_KEYS]);
  literalField(o, "v", what, 2);
  literalField(o, "type", what, "Q");
  hexField(o, "mesh", what, 32);
  if (mesh !== null && o.mesh !== mesh) throw new SchemaError(`${what}: belongs to another mesh`);
  hexField(o, "node_id", what, 32);
  stringField(o, "action", what, /^(quarantine|lift)$/, `"quarantine" or "lift"`);
  intField(o, "from_seq", what, o.action === "lift" ? 0 : 1, o.action === "lift" ? 0 : Number.MAX_SAFE_INTEGER);
  stringField(o, "reason", what, o.action === "lift" ? /^operator$/ : /^(attestation_failed|attestation_missed|operator)$/, o.action === "lift" ? "operator (a lift is an operator's decision)" : "attestation_failed, attestation_missed or operator");
  intField(o, "basis", what, 0);
  intField(o, "epoch", what, 0);
  if (typeof o.detail !== "string" || o.detail.length > 256) throw new SchemaError(`${what}: "detail" must be a string of at most 256 characters`);
  intField(o, "validator", what, 0, n - 1);
  hexField(o, "sig", what, 96);
  return o as unknown as QuarantineRecord;
}

/**
 * Parses an untrusted request and checks its signature against the genesis validators.
 * With `maxEpoch` (the receiver's current epoch, its clock skew allowed for), a request
 * signed in a later epoch is refused: the mesh's time is the epoch, and no signer may
 * claim one that has not begun.
 */
export function parseQuarantine(value: unknown, mesh: string, validators: ValidatorSet, what = "quarantine request", opts: { maxEpoch?: number } = {}): QuarantineRecord {
  const r = parseQuarantineShape(value, mesh, validators.n, what);
  if (opts.maxEpoch !== undefined && r.epoch > opts.maxEpoch) throw new SchemaError(`${what}: signed for epoch ${r.epoch}, but epoch ${opts.maxEpoch} is the mesh's current one (a request from the future is refused)`);
  if (!validators.verify(r.validator, quarantineDigest(r), r.sig)) throw new SchemaError(`${what}: signature of validator ${r.validator} does not verify`);
  return r;
}

/** f: the validators that may be faulty, for n validators. */
export function faultyOf(n: number): number {
  return Math.floor((n - 1) / 3);
}

/**
 * How many requests a decision needs: a quarantine observed as an attestation failure by
 * f + 1 validators (at least one honest one saw it), anything else a quorum.
 */
export function decisionMet(action: QuarantineAction, requests: readonly QuarantineRecord[], set: { n: number; quorum: number }): boolean {
  if (requests.length >= set.quorum) return true;
  if (action === "lift") return false;
  return requests.filter((r) => r.reason !== "operator").length >= faultyOf(set.n) + 1;
}

/** Where a node stands, as far as deciding about it needs. */
export interface NodeStanding {
  /** Decisions about the node finalized so far (what a request's basis must equal). */
  decisions: number;
  /** Quarantined now, by a decision or by fork evidence. */
  quarantined: boolean;
  /** Quarantined by a decision (what a lift lifts; fork evidence is never lifted). */
  decided: boolean;
}

/**
 * Why one decision of a proposed checkpoint cannot be taken, or null when it can: its
 * requests are for this node and action, signed by distinct validators (signatures checked
 * here, in one batch), current (their basis is the node's decision count), and enough;
 * a quarantine is for a node not quarantined, a lift for one that is.
 */
export function decisionProblem(d: QuarantineDecision, standing: NodeStanding, set: ValidatorSet, bodyEpoch = Number.MAX_SAFE_INTEGER): string | null {
  const short = d.node_id.slice(0, 12);
  if (d.action === "quarantine" && standing.quarantined) return `decision to quarantine ${short}…: it is quarantined already`;
  if (d.action === "lift" && !standing.decided) return `decision to lift ${short}…: it is not quarantined by a decision (fork evidence is never lifted)`;
  let last = -1;
  for (const r of d.requests) {
    if (r.epoch > bodyEpoch) return `decision about ${short}…: the request of validator ${r.validator} is signed for epoch ${r.epoch}, after the checkpoint's`;
    if (r.node_id !== d.node_id || r.action !== d.action) return `decision about ${short}…: a request of validator ${r.validator} is about another node or action`;
    if (r.validator <= last) return `decision about ${short}…: requests must be by distinct validators in index order`;
    last = r.validator;
    if (r.basis !== standing.decisions) return `decision about ${short}…: the request of validator ${r.validator} was signed after ${r.basis} decision(s), the node has ${standing.decisions}`;
  }
  if (!decisionMet(d.action, d.requests, set)) return `decision to ${d.action} ${short}…: ${d.requests.length} request(s) are not enough (a quorum of ${set.quorum}, or ${faultyOf(set.n) + 1} observed attestation failures)`;
  const ok = set.verifyMany(d.requests.map((r) => ({ i: r.validator, message: quarantineDigest(r), sigHex: r.sig })));
  const bad = ok.findIndex((x) => !x);
  if (bad >= 0) return `decision about ${short}…: the request of validator ${d.requests[bad]!.validator} has a signature that does not verify`;
  return null;
}

/**
 * A quarantine decision's first seq kept out: the earliest its requests name, but never one
 * already in the log (lastIncluded + 1 at the earliest). Every voter computes the same from
 * the finalized log; a byzantine requester can only move the cut earlier among microblocks
 * not yet checkpointed, which a lift readmits.
 */
export function decisionFromSeq(d: QuarantineDecision, lastIncluded: number): number {
  return Math.max(lastIncluded + 1, Math.min(...d.requests.map((r) => r.from_seq)));
}

/**
 * The decision a node's current requests make, or null: requests of one action with the
 * node's current basis, one per validator (its latest epoch), if they are enough.
 */
export function eligibleDecision(nodeId: string, requests: readonly QuarantineRecord[], standing: NodeStanding, set: { n: number; quorum: number }): QuarantineDecision | null {
  // A lift lifts a decision; a node held by fork evidence alone has nothing to decide.
  const action: QuarantineAction | null = standing.decided ? "lift" : standing.quarantined ? null : "quarantine";
  if (action === null) return null;
  const byValidator = new Map<number, QuarantineRecord>();
  for (const r of requests) {
    if (r.node_id !== nodeId || r.action !== action || r.basis !== standing.decisions) continue;
    const held = byValidator.get(r.validator);
    if (!held || r.epoch > held.epoch || (r.epoch === held.epoch && r.sig < held.sig)) byValidator.set(r.validator, r);
  }
  const chosen = [...byValidator.values()].sort((a, b) => a.validator - b.validator);
  return decisionMet(action, chosen, set) ? { node_id: nodeId, action, requests: chosen } : null;
}
