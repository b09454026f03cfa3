// Quarantine records (type Q, DESIGN.md section 7): a validator's signed statement that a
// node's microblocks from a seq on stay out of checkpoints (a failed or missed attestation,
// fork evidence, an operator's decision), or that an operator lifted it. Any validator's
// valid record is honoured by every validator, so the set of quarantined nodes is the same
// everywhere the records travel. Pure: format, digest, parse, verify, and the state a list
// of records leaves a node in.
import { toHex } from "../encoding/hex.ts";
import { expectKeys, expectObject, hexField, intField, literalField, SchemaError, stringField, timeField } from "../encoding/schema.ts";
import { formatTime } from "../encoding/time.ts";
import { domainDigest } from "../crypto/sha256.ts";
import type { ValidatorSet } from "./validator-set.ts";

export type QuarantineReason = "attestation_failed" | "attestation_missed" | "fork" | "operator";

export interface QuarantineRecord {
  v: 1;
  type: "Q";
  mesh: string;
  node_id: string;
  action: "quarantine" | "lift";
  /** quarantine: the first seq kept out of checkpoints. lift: 0. */
  from_seq: number;
  reason: QuarantineReason;
  /** One line for operators: what failed. */
  detail: string;
  issued: string;
  /** Signer's index in genesis validator order. */
  validator: number;
  /** BLS signature over sha256("hookprobe-dsm/quarantine/v1\n" || JCS(record without sig)). */
  sig: string;
}

export type UnsignedQuarantine = Omit<QuarantineRecord, "sig">;

export function quarantineDigest(r: UnsignedQuarantine | QuarantineRecord): Uint8Array {
  const { sig: _sig, ...body } = r as QuarantineRecord;
  return domainDigest("quarantine", body);
}

export function makeQuarantine(fields: {
  mesh: string;
  nodeId: string;
  action: "quarantine" | "lift";
  fromSeq: number;
  reason: QuarantineReason;
  detail: string;
  validator: number;
  nowMs: number;
  sign: (digest: Uint8Array) => Uint8Array;
}): QuarantineRecord {
  const body: UnsignedQuarantine = {
    v: 1,
    type: "Q",
    mesh: fields.mesh,
    node_id: fields.nodeId,
    action: fields.action,
    from_seq: fields.action === "lift" ? 0 : fields.fromSeq,
    reason: fields.reason,
    detail: fields.detail.replace(/\s+/g, " ").slice(0, 256),
    issued: formatTime(fields.nowMs),
    validator: fields.validator,
  };
  return { ...body, sig: toHex(fields.sign(quarantineDigest(body))) };
}

/**
 * Parses an untrusted record and checks its signature against the genesis validators. With
 * `notAfterMs` (the receiver's clock plus the skew it allows), a record issued later is
 * refused: `issued` is the signer's own claim, and a record dated in the future would
 * otherwise outrank every honest record issued until then (quarantineState orders by it).
 */
export function parseQuarantine(value: unknown, mesh: string, validators: ValidatorSet, what = "quarantine record", opts: { notAfterMs?: number } = {}): QuarantineRecord {
  const o = expectObject(value, what);
  expectKeys(o, what, ["v", "type", "mesh", "node_id", "action", "from_seq", "reason", "detail", "issued", "validator", "sig"]);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "Q");
  hexField(o, "mesh", what, 32);
  if (o.mesh !== mesh) throw new SchemaError(`${what}: belongs to another mesh`);
  hexField(o, "node_id", what, 32);
  stringField(o, "action", what, /^(quarantine|lift)$/, `"quarantine" or "lift"`);
  intField(o, "from_seq", what, o.action === "lift" ? 0 : 1, o.action === "lift" ? 0 : Number.MAX_SAFE_INTEGER);
  stringField(o, "reason", what, /^(attestation_failed|attestation_missed|fork|operator)$/, "attestation_failed, attestation_missed, fork or operator");
  if (typeof o.detail !== "string" || o.detail.length > 256) throw new SchemaError(`${what}: "detail" must be a string of at most 256 characters`);
  const issued = timeField(o, "issued", what);
  if (opts.notAfterMs !== undefined && issued > opts.notAfterMs) throw new SchemaError(`${what}: issued ${String(o.issued)} is in the future (a record is refused until then)`);
  intField(o, "validator", what, 0, validators.n - 1);
  hexField(o, "sig", what, 96);
  const r = o as unknown as QuarantineRecord;
  if (!validators.verify(r.validator, quarantineDigest(r), r.sig)) throw new SchemaError(`${what}: signature of validator ${r.validator} does not verify`);
  return r;
}

/**
 * Where a node stands after its records (in any order): quarantined from a seq, or not.
 * Records apply in issue order; a lift clears every quarantine issued before it.
 */
export function quarantineState(records: readonly QuarantineRecord[]): { from: number; since: string } | null {
  let state: { from: number; since: string } | null = null;
  const ordered = [...records].sort((a, b) => (a.issued < b.issued ? -1 : a.issued > b.issued ? 1 : a.action === "lift" ? 1 : -1));
  for (const r of ordered) {
    if (r.action === "lift") state = null;
    else state = state === null ? { from: r.from_seq, since: r.issued } : { from: Math.min(state.from, r.from_seq), since: state.since };
  }
  return state;
}
