// The attestation challenge of DESIGN.md section 7, transport-agnostic: a validator sends a
// fresh nonce, the node answers with a TPM2_Quote over the genesis policy's PCRs and its
// card, and anyone holding the genesis checks the answer with no TPM of its own. The mesh
// daemon carries these objects over libp2p; `dsm attest` carries them in files.
import * as crypto from "node:crypto";
import { fromHex, isHex, toHex } from "../encoding/hex.ts";
import { expectKeys, expectObject, hexField, literalField, SchemaError } from "../encoding/schema.ts";
import { type NodeCard, parseCard } from "../protocol/card.ts";
import { type Genesis, MeshPolicy } from "../protocol/genesis.ts";
import { pcrCompositeDigest, type QuoteCheck, verifyQuote } from "./quote.ts";
import type { TpmIdentityKey } from "./tpm-key.ts";

export interface AttestationBundle {
  v: 1;
  type: "attestation";
  mesh: string;
  /** The node's card: identity, tpm flag and the attestation key it names. */
  card: NodeCard;
  nonce: string;
  pcrs: number[];
  /** TPMT_PUBLIC of the attestation key, hex. */
  ak_public: string;
  /** TPMS_ATTEST, hex: the message the TPM signed. */
  attest: string;
  /** TPMT_SIGNATURE, hex. */
  signature: string;
}

export type AttestationCheck = QuoteCheck | "bundle" | "card" | "mesh" | "not_tpm" | "not_admitted" | "stale_nonce";

export type AttestationResult =
  | { ok: true; nodeId: string; pcrDigest: string; akName: string }
  | { ok: false; nodeId: string | null; check: AttestationCheck; reason: string };

/** A fresh 32-byte challenge. */
export function newNonce(): string {
  return toHex(crypto.randomBytes(32));
}

/** The node's answer: a quote of the policy's PCRs over the validator's nonce. */
export function answerChallenge(key: TpmIdentityKey, card: NodeCard, mesh: string, nonceHex: string, pcrs: readonly number[]): AttestationBundle {
  if (!isHex(nonceHex, 32)) throw new SchemaError("nonce must be 64 lowercase hex characters (32 bytes)");
  const q = key.quote(fromHex(nonceHex, 32), pcrs);
  return {
    v: 1,
    type: "attestation",
    mesh,
    card,
    nonce: nonceHex,
    pcrs: [...pcrs].sort((a, b) => a - b),
    ak_public: toHex(q.akPublic),
    attest: toHex(q.attest),
    signature: toHex(q.signature),
  };
}

/** The current composite digest of `pcrs` on this TPM: what a reference node's policy accepts. */
export function goldenDigest(key: TpmIdentityKey, pcrs: readonly number[]): string {
  return toHex(pcrCompositeDigest(key.pcrRead([...pcrs].sort((a, b) => a - b))));
}

function hexBytes(o: Record<string, unknown>, k: string, max: number): Uint8Array {
  const v = o[k];
  if (typeof v !== "string" || v.length === 0 || v.length > max * 2 || !/^(?:[0-9a-f]{2})+$/.test(v)) throw new SchemaError(`attestation: "${k}" must be lowercase hex of at most ${max} bytes`);
  return fromHex(v);
}

/**
 * Checks an attestation answer against the genesis: a well-formed bundle for this mesh, a
 * card signed by its identity key, a TPM node admitted to the mesh, the quote made by the
 * attestation key the card names, over exactly the policy's PCRs, with an accepted digest,
 * and, when the verifier issued the challenge, its nonce. Never throws.
 */
export function verifyAttestation(value: unknown, genesis: Genesis, expectedNonce?: string): AttestationResult {
  let nodeId: string | null = null;
  const fail = (check: AttestationCheck, reason: string): AttestationResult => ({ ok: false, nodeId, check, reason });
  let o: Record<string, unknown>;
  let card: NodeCard;
  try {
    o = expectObject(value, "attestation");
    expectKeys(o, "attestation", ["v", "type", "mesh", "card", "nonce", "pcrs", "ak_public", "attest", "signature"]);
    literalField(o, "v", "attestation", 1);
    literalField(o, "type", "attestation", "attestation");
    hexField(o, "mesh", "attestation", 32);
    hexField(o, "nonce", "attestation", 32);
    if (!Array.isArray(o.pcrs) || !o.pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23)) throw new SchemaError(`attestation: "pcrs" must list PCR indices 0-23`);
  } catch (e) {
    return fail("bundle", (e as Error).message);
  }
  try {
    card = parseCard(o.card, "attestation card", { checkPop: false });
  } catch (e) {
    return fail("card", (e as Error).message);
  }
  nodeId = card.node_id;
  const policy = new MeshPolicy(genesis);
  if (o.mesh !== policy.mesh) return fail("mesh", `attestation is for mesh ${String(o.mesh).slice(0, 16)}…, not this genesis's mesh ${policy.mesh.slice(0, 16)}…`);
  if (!card.tpm || !card.ak_pub) return fail("not_tpm", `node ${nodeId.slice(0, 16)}… has a software identity key: it has no TPM to attest with`);
  if (!policy.isAdmitted(nodeId)) return fail("not_admitted", `node ${nodeId.slice(0, 16)}… is not admitted by this genesis`);
  if (expectedNonce !== undefined && !timingSafeHexEqual(expectedNonce, o.nonce as string)) return fail("stale_nonce", "the answer is not for this challenge's nonce (a replayed or stale attestation)");
  let akPublic: Uint8Array, attest: Uint8Array, signature: Uint8Array;
  try {
    akPublic = hexBytes(o, "ak_public", 1024);
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
    akPublic,
    nonce: fromHex(o.nonce as string, 32),
    pcrs: att.pcrs,
    acceptedDigests: att.digests,
    expectedAkSec1: fromHex(card.ak_pub, 33),
  });
  if (!r.ok) return fail(r.check, r.reason);
  return { ok: true, nodeId, pcrDigest: r.pcrDigest, akName: r.akName };
}

function timingSafeHexEqual(a: string, b: string): boolean {
  if (!isHex(a, 32) || !isHex(b, 32)) return false;
  return crypto.timingSafeEqual(fromHex(a, 32), fromHex(b, 32));
}
