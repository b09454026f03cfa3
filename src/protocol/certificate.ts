// The finality certificate (type F, DESIGN.md section 6): a checkpoint body with the
// aggregate BLS signature of a quorum of the validators in force at its epoch (the genesis's
// until a set change, src/protocol/set-change.ts). Its type, its parser and
// its check against a genesis, in one place: every node that stores one, the consensus
// engine that makes one and the light client that is handed one use these.
import { canonicalize } from "../encoding/jcs.ts";
import { expectKeys, expectObject, hexField, literalField, SchemaError } from "../encoding/schema.ts";
import { type CheckpointBody, checkpointDigest, parseCheckpoint } from "./checkpoint.ts";
import { type Genesis, meshIdOf } from "./genesis.ts";
import { signerIndices, type ValidatorSet, validatorSetOf } from "./validator-set.ts";

export interface FinalityCertificate {
  v: 1;
  type: "F";
  checkpoint: CheckpointBody;
  /** Bitfield over genesis validator order, hex; validator i is bit (7 - i % 8) of byte i / 8. */
  signers: string;
  agg_sig: string;
}

/**
 * Of two valid certificates for one checkpoint body, the one every node keeps: the most
 * signers, then the smaller JCS bytes. A deterministic rule, so nodes that saw different
 * quorums converge on one certificate per epoch (byte-identical everywhere) as the better
 * one travels. True when `a` should replace `b`.
 */
export function betterCertificate(a: FinalityCertificate, b: FinalityCertificate): boolean {
  const na = signerIndices(a.signers).length;
  const nb = signerIndices(b.signers).length;
  if (na !== nb) return na > nb;
  const ca = canonicalize(a);
  const cb = canonicalize(b);
  return ca < cb;
}

/** A bundle does not prove what it claims; the message is one line saying what failed. */
export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BundleError";
  }
}

export interface FinalityInfo {
  epoch: number;
  tree_size: number;
  signed: number;
  validators: number;
  quorum: number;
}

export function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
}

/** Runs fn; any exception becomes a BundleError prefixed with what was being checked. */
export function check<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof BundleError) throw e;
    throw new BundleError(`${what}: ${oneLine(e)}`);
  }
}

export function parseFinalityCertificate(value: unknown, what = "finality certificate"): FinalityCertificate {
  return check(what, () => {
    const o = expectObject(value, what);
    expectKeys(o, what, ["v", "type", "checkpoint", "signers", "agg_sig"]);
    literalField(o, "v", what, 1);
    literalField(o, "type", what, "F");
    parseCheckpoint(o.checkpoint, `${what} checkpoint`);
    if (typeof o.signers !== "string" || !/^(?:[0-9a-f]{2})+$/.test(o.signers)) throw new SchemaError(`${what}: "signers" must be a non-empty hex bitfield`);
    hexField(o, "agg_sig", what, 96);
    return o as unknown as FinalityCertificate;
  });
}

/**
 * The certificate's checkpoint belongs to this genesis's mesh and carries the aggregate
 * BLS signature of at least a quorum of its validators (or of `threshold`, a configured
 * quorum_threshold, when higher). Throws BundleError.
 */
export function verifyFinality(value: unknown, genesis: Genesis, what = "finality certificate", threshold = 0): FinalityInfo {
  const set = check(what, () => validatorSetOf(genesis, threshold));
  return verifyFinalityWith(value, meshIdOf(genesis), set, what);
}

/**
 * verifyFinality against a given set instead of the genesis's: after a validator-set change
 * (src/protocol/set-change.ts) a checkpoint is signed by the set in force at its epoch,
 * which its caller knows from the changes it followed (SetHistory.setAt). The signers
 * bitfield is over that set's order. Throws BundleError.
 */
export function verifyFinalityWith(value: unknown, mesh: string, set: ValidatorSet, what = "finality certificate"): FinalityInfo {
  return verifyParsedFinality(parseFinalityCertificate(value, what), mesh, set, what);
}

/**
 * verifyFinalityWith on a certificate parseFinalityCertificate returned: parsing a body
 * with a set change checks node cards' proofs of possession, which is worth doing once.
 */
export function verifyParsedFinality(cert: FinalityCertificate, mesh: string, set: ValidatorSet, what = "finality certificate"): FinalityInfo {
  const cp = cert.checkpoint;
  if (cp.mesh !== mesh) throw new BundleError(`${what}: checkpoint is for mesh ${cp.mesh.slice(0, 16)}…, not this genesis's mesh ${mesh.slice(0, 16)}…`);
  const problem = set.quorumProblem(cert.signers, checkpointDigest(cp), cert.agg_sig);
  if (problem !== null) throw new BundleError(`${what}: ${problem}${problem.startsWith("aggregate") ? ` over checkpoint epoch ${cp.epoch}` : ""}`);
  return { epoch: cp.epoch, tree_size: cp.tree_size, signed: signerIndices(cert.signers).length, validators: set.n, quorum: set.quorum };
}
