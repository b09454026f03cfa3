// Consensus messages (DESIGN.md section 6, refined in docs/PROTOCOL.md "Consensus"): what a
// validator signs and sends while the validators agree on a checkpoint, and the evidence
// that one of them signed two conflicting things. Pure formats: parse, digest, compare.
//
// One agreement instance ("height") decides the checkpoint that follows the last
// finalized one, so a height is named by that checkpoint's digest: `prev`.
//   P  proposal   the round's proposer offers a checkpoint body
//   V  vote       prevote or precommit for a checkpoint digest (or null: none) in a round
//   S  signature  the one BLS signature per epoch over the decided checkpoint's digest;
//                 a quorum of them aggregates into the finality certificate (type F)
//   E  evidence   two conflicting signed messages from one validator
import { expectKeys, expectObject, hexField, intField, literalField, type Obj, SchemaError } from "../encoding/schema.ts";
import { domainDigest } from "../crypto/sha256.ts";
import { type CheckpointBody, checkpointDigest, checkpointDigestHex, parseCheckpoint } from "./checkpoint.ts";
import type { KeyObject } from "node:crypto";
import { blsSign } from "../crypto/bls.ts";
import { ed25519Sign } from "../crypto/ed25519.ts";
import type { ValidatorSet } from "./validator-set.ts";

export type Phase = "prevote" | "precommit";

export interface Proposal {
  v: 1;
  type: "P";
  mesh: string;
  round: number;
  /** The round in which this body had a quorum of prevotes, or -1 (a fresh proposal). */
  valid_round: number;
  checkpoint: CheckpointBody;
  validator: number;
  sig: string;
}

export interface Vote {
  v: 1;
  type: "V";
  mesh: string;
  prev: string;
  round: number;
  phase: Phase;
  /** Checkpoint digest voted for; null votes for nothing (timeout or invalid proposal). */
  checkpoint: string | null;
  validator: number;
  sig: string;
}

export interface Signature {
  v: 1;
  type: "S";
  mesh: string;
  checkpoint: CheckpointBody;
  validator: number;
  sig: string;
}

export type Signed = Proposal | Vote | Signature;

/** A message before its signature: what signingDigest covers. */
export type Unsigned = Omit<Proposal, "sig"> | Omit<Vote, "sig"> | Omit<Signature, "sig">;

export interface Evidence {
  v: 1;
  type: "E";
  mesh: string;
  validator: number;
  first: Signed;
  second: Signed;
}

/** The bytes a signed message's signature covers. A signature (S) covers the checkpoint digest itself, so S signatures aggregate into F. */
export function signingDigest(m: Unsigned): Uint8Array {
  switch (m.type) {
    case "P": {
      const p = m;
      return domainDigest("proposal", { v: 1, type: "P", mesh: p.mesh, round: p.round, valid_round: p.valid_round, checkpoint: checkpointDigestHex(p.checkpoint), validator: p.validator });
    }
    case "V": {
      // Without the validator: every vote for one value in one round signs the same
      // digest, so a quorum of them can be checked as one aggregate.
      const v = m;
      return domainDigest("vote", { v: 1, type: "V", mesh: v.mesh, prev: v.prev, round: v.round, phase: v.phase, checkpoint: v.checkpoint });
    }
    case "S":
      return checkpointDigest(m.checkpoint);
  }
}

/** Height (prev) a message belongs to. */
export function heightOf(m: Signed): string {
  return m.type === "V" ? m.prev : m.checkpoint.prev;
}

/** What a message commits its signer to, for equivocation: one value per slot. */
export function slotOf(m: Signed): { slot: string; value: string } {
  switch (m.type) {
    case "P":
      return { slot: `P/${m.checkpoint.prev}/${m.round}`, value: `${checkpointDigestHex(m.checkpoint)}/${m.valid_round}` };
    case "V":
      return { slot: `V/${m.prev}/${m.round}/${m.phase}`, value: m.checkpoint ?? "null" };
    case "S":
      return { slot: `S/${m.checkpoint.epoch}`, value: checkpointDigestHex(m.checkpoint) };
  }
}

/**
 * The slots a new signature would occupy. An S occupies both its epoch (at most one
 * checkpoint signed per epoch, DESIGN.md section 6) and its height (at most one successor
 * of a checkpoint), so neither a re-proposal under another epoch nor a fork of the log can
 * collect an honest signature twice.
 */
export function slotsOf(m: Signed): { slot: string; value: string }[] {
  const main = slotOf(m);
  if (m.type !== "S") return [main];
  return [main, { slot: `S@${m.checkpoint.prev}`, value: main.value }];
}

/** P and V carry an Ed25519 signature (64 bytes), S a BLS one (96 bytes): see signMessage. */
function baseFields(o: Obj, what: string, n: number): void {
  literalField(o, "v", what, 1);
  hexField(o, "mesh", what, 32);
  intField(o, "validator", what, 0, n - 1);
  hexField(o, "sig", what, o.type === "S" ? 96 : 64);
}

/** Parses an untrusted consensus message of type P, V or S (schema only; no signature check). */
export function parseSigned(value: unknown, n: number, what = "consensus message"): Signed {
  const o = expectObject(value, what);
  switch (o.type) {
    case "P":
      expectKeys(o, what, ["v", "type", "mesh", "round", "valid_round", "checkpoint", "validator", "sig"]);
      baseFields(o, what, n);
      intField(o, "round", what, 0, 1_000_000);
      intField(o, "valid_round", what, -1, (o.round as number) - 1);
      parseCheckpoint(o.checkpoint, `${what} checkpoint`);
      return o as unknown as Proposal;
    case "V":
      expectKeys(o, what, ["v", "type", "mesh", "prev", "round", "phase", "checkpoint", "validator", "sig"]);
      baseFields(o, what, n);
      hexField(o, "prev", what, 32);
      intField(o, "round", what, 0, 1_000_000);
      if (o.phase !== "prevote" && o.phase !== "precommit") throw new SchemaError(`${what}: "phase" must be "prevote" or "precommit"`);
      if (o.checkpoint !== null) hexField(o, "checkpoint", what, 32);
      return o as unknown as Vote;
    case "S":
      expectKeys(o, what, ["v", "type", "mesh", "checkpoint", "validator", "sig"]);
      baseFields(o, what, n);
      parseCheckpoint(o.checkpoint, `${what} checkpoint`);
      return o as unknown as Signature;
    default:
      throw new SchemaError(`${what}: "type" must be "P", "V" or "S"`);
  }
}

/** Mesh, validator index and signature all check out. */
/** The message, and the checkpoint it carries, are of this mesh. */
export function ofMesh(m: Signed, mesh: string): boolean {
  return m.mesh === mesh && (m.type === "V" || m.checkpoint.mesh === mesh);
}

export function signatureValid(m: Signed, mesh: string, set: ValidatorSet): boolean {
  if (!ofMesh(m, mesh)) return false;
  return m.type === "S" ? set.verify(m.validator, signingDigest(m), m.sig) : set.verifyVote(m.validator, signingDigest(m), m.sig);
}

/** A validator's two signing keys: BLS for S, Ed25519 (its libp2p key) for P and V. */
export interface ConsensusKeys {
  bls: Uint8Array;
  vote: KeyObject;
}

/**
 * The signature a message carries. S is BLS over the checkpoint digest, so a quorum of them
 * aggregates into the finality certificate. P and V only steer the agreement: they are
 * Ed25519, under the key the peer id of the validator's genesis card names, which costs
 * microseconds where a BLS signature and its check cost tens of milliseconds in pure JS.
 */
export function signMessage(m: Unsigned, keys: ConsensusKeys): Uint8Array {
  return m.type === "S" ? blsSign(keys.bls, signingDigest(m)) : ed25519Sign(keys.vote, signingDigest(m));
}

/** Two messages from one validator that no honest validator would both sign. */
export function conflicting(a: Signed, b: Signed): boolean {
  if (a.validator !== b.validator || a.mesh !== b.mesh) return false;
  const sa = slotsOf(a);
  const sb = slotsOf(b);
  return sa.some((x) => sb.some((y) => x.slot === y.slot && x.value !== y.value));
}

export function makeEvidence(a: Signed, b: Signed): Evidence {
  return { v: 1, type: "E", mesh: a.mesh, validator: a.validator, first: a, second: b };
}

/**
 * Checks evidence from the two signed messages alone: both well formed, for this mesh,
 * signed by the named validator, and in conflict. Returns the reason it fails, or null.
 */
export function evidenceProblem(value: unknown, mesh: string, set: ValidatorSet): string | null {
  try {
    const o = expectObject(value, "evidence");
    expectKeys(o, "evidence", ["v", "type", "mesh", "validator", "first", "second"]);
    literalField(o, "v", "evidence", 1);
    literalField(o, "type", "evidence", "E");
    if (o.mesh !== mesh) return "evidence is for another mesh";
    const v = intField(o, "validator", "evidence", 0, set.n - 1);
    const a = parseSigned(o.first, set.n, "evidence first");
    const b = parseSigned(o.second, set.n, "evidence second");
    if (a.validator !== v || b.validator !== v) return `evidence names validator ${v} but its messages are signed as ${a.validator} and ${b.validator}`;
    if (!conflicting(a, b)) return "the two messages do not conflict";
    if (!signatureValid(a, mesh, set)) return "the first message's signature does not verify";
    if (!signatureValid(b, mesh, set)) return "the second message's signature does not verify";
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
