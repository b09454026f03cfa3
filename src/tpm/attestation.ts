// The attestation challenge of DESIGN.md section 7, transport-agnostic: a validator sends a
// fresh nonce, the node answers with a TPM2_Quote over the genesis policy's PCRs bound to
// itself, and the validator checks it, with no TPM of its own, against the AK it enrolled. The mesh
// daemon carries these objects over libp2p; `dsm attest` carries them in files.
import * as crypto from "node:crypto";
import { fromHex, isHex, toHex } from "../encoding/hex.ts";
import { boundedHex, expectKeys, expectObject, hexField, literalField, SchemaError } from "../encoding/schema.ts";
import type { NodeCard } from "../protocol/card.ts";
import { quoteQualifyingData } from "../protocol/enrollment.ts";
import { type Genesis, MeshPolicy } from "../protocol/genesis.ts";
import type { Enrollment } from "./enroll.ts";
import { parsePublicArea, pcrCompositeDigest, type QuoteCheck, verifyQuote } from "./quote.ts";
import type { TpmIdentityKey } from "./tpm-key.ts";

export interface AttestationBundle {
  v: 2;
  type: "attestation";
  mesh: string;
  /** The node answering: checked against the node challenged, never trusted on its own. */
  node_id: string;
  nonce: string;
  pcrs: number[];
  /** TPMS_ATTEST, hex: the message the TPM signed; its extraData is quoteQualifyingData. */
  attest: string;
  /** TPMT_SIGNATURE, hex. */
  signature: string;
}

export type AttestationCheck = QuoteCheck | "bundle" | "mesh" | "not_tpm" | "not_admitted" | "not_enrolled" | "wrong_node" | "stale_nonce";

export type AttestationResult =
  | { ok: true; nodeId: string; pcrDigest: string; akName: string }
  | { ok: false; nodeId: string | null; check: AttestationCheck; reason: string };

/** A fresh 32-byte challenge. */
export function newNonce(): string {
  return toHex(crypto.randomBytes(32));
}

/**
 * The node's answer: a quote of the policy's PCRs whose qualifyingData binds the
 * validator's nonce to the mesh, this node and its AK, so it answers this challenge of this
 * node and no other.
 */
export function answerChallenge(key: TpmIdentityKey, card: NodeCard, mesh: string, nonceHex: string, pcrs: readonly number[]): AttestationBundle {
  if (!isHex(nonceHex, 32)) throw new SchemaError("nonce must be 64 lowercase hex characters (32 bytes)");
  const akName = toHex(parsePublicArea(key.attestationPublic()).name);
  const q = key.quote(quoteQualifyingData(mesh, card.node_id, akName, nonceHex), pcrs);
  return {
    v: 2,
    type: "attestation",
    mesh,
    node_id: card.node_id,
    nonce: nonceHex,
    pcrs: [...pcrs].sort((a, b) => a - b),
    attest: toHex(q.attest),
    signature: toHex(q.signature),
  };
}

/** The current composite digest of `pcrs` on this TPM: what a reference node's policy accepts. */
export function goldenDigest(key: TpmIdentityKey, pcrs: readonly number[]): string {
  return toHex(pcrCompositeDigest(key.pcrRead([...pcrs].sort((a, b) => a - b))));
}

function hexBytes(o: Record<string, unknown>, k: string, max: number): Uint8Array {
  return fromHex(boundedHex(o[k], `attestation: "${k}"`, max));
}

/**
 * Checks an answer to the challenge this verifier sent `challenged` (its node id, the AK it
 * enrolled, the nonce it chose) against the genesis PCR policy. Only the verifier's own
 * record counts: the answer's node_id must be the node challenged, and the quote must be
 * made by the enrolled AK over the binding of exactly that node, AK and nonce. Never throws.
 */
export function verifyAttestation(value: unknown, genesis: Genesis, challenged: { nodeId: string; enrollment: Enrollment | null; nonce: string }): AttestationResult {
  const nodeId = challenged.nodeId;
  const fail = (check: AttestationCheck, reason: string): AttestationResult => ({ ok: false, nodeId, check, reason });
  let o: Record<string, unknown>;
  try {
    o = expectObject(value, "attestation");
    expectKeys(o, "attestation", ["v", "type", "mesh", "node_id", "nonce", "pcrs", "attest", "signature"]);
    literalField(o, "v", "attestation", 2);
    literalField(o, "type", "attestation", "attestation");
    hexField(o, "mesh", "attestation", 32);
    hexField(o, "node_id", "attestation", 32);
    hexField(o, "nonce", "attestation", 32);
    if (!Array.isArray(o.pcrs) || !o.pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23)) throw new SchemaError(`attestation: "pcrs" must list PCR indices 0-23`);
  } catch (e) {
    return fail("bundle", (e as Error).message);
  }
  const policy = new MeshPolicy(genesis);
  if (o.mesh !== policy.mesh) return fail("mesh", `attestation is for mesh ${String(o.mesh).slice(0, 16)}…, not this genesis's mesh ${policy.mesh.slice(0, 16)}…`);
  if (o.node_id !== nodeId) return fail("wrong_node", `the answer names node ${String(o.node_id).slice(0, 16)}…, not the node challenged (${nodeId.slice(0, 16)}…): a relayed answer`);
  if (!policy.isAdmitted(nodeId)) return fail("not_admitted", `node ${nodeId.slice(0, 16)}… is not admitted by this genesis`);
  const enrolled = challenged.enrollment;
  if (!enrolled || enrolled.node_id !== nodeId) return fail("not_enrolled", `node ${nodeId.slice(0, 16)}… has no verified enrollment here (EK, credential activation, certify): it is a software node, whatever its card says`);
  if (!timingSafeHexEqual(challenged.nonce, o.nonce as string)) return fail("stale_nonce", "the answer is not for this challenge's nonce (a replayed or stale attestation)");
  let attest: Uint8Array, signature: Uint8Array;
  try {
    attest = hexBytes(o, "attest", 2048);
    signature = hexBytes(o, "signature", 1024);
  } catch (e) {
    return fail("bundle", (e as Error).message);
  }
  const att = genesis.attestation;
  if (att.pcrs.length === 0) return fail("pcr-selection", "the genesis names no PCRs to attest: record a policy with dsm genesis --pcr-policy");
  const r = verifyQuote({
    attest,
    signature,
    akPublic: fromHex(enrolled.ak_public),
    nonce: quoteQualifyingData(policy.mesh, nodeId, enrolled.ak_name, challenged.nonce),
    pcrs: att.pcrs,
    acceptedDigests: att.digests,
  });
  if (!r.ok) {
    // The quote's own words for these two: what they mean for a bound quote.
    if (r.check === "qualified-signer") return fail(r.check, "the quote was not made by the AK enrolled for this node (another TPM's quote, relayed?)");
    if (r.check === "nonce") return fail(r.check, "the quote's qualifyingData does not bind this challenge's nonce to this node and its enrolled AK (relayed from another node, or replayed)");
    return fail(r.check, r.reason);
  }
  return { ok: true, nodeId, pcrDigest: r.pcrDigest, akName: r.akName };
}

function timingSafeHexEqual(a: string, b: string): boolean {
  if (!isHex(a, 32) || !isHex(b, 32)) return false;
  return crypto.timingSafeEqual(fromHex(a, 32), fromHex(b, 32));
}
