// The node card (type N, DESIGN.md section 4): who a node is, signed by its identity
// key. Cards are made before any mesh exists (a genesis is built from them), so they
// name no mesh; their digest kind keeps them apart from every other signed object.
import { fromHex } from "../encoding/hex.ts";
import { boolField, boundedHex, expectKeys, expectObject, hexField, literalField, SchemaError, stringField, timeField } from "../encoding/schema.ts";
import { formatTime } from "../encoding/time.ts";
import { type Signed, signBody, verifyBody } from "../crypto/signed.ts";
import { type IdentityKey, nodeIdOf } from "./node-id.ts";
import { blsKeyValidate, blsPopVerify } from "../crypto/bls.ts";

export type Role = "edge" | "validator" | "both";

/**
 * What a TPM node shows so a verifier can check its chain of trust link by link (DESIGN.md
 * section 7): the EK and its certificate chain (vendor), the AK, and the identity key with
 * the AK's TPM2_Certify over it. All TPM wire bytes in hex; certificates DER in hex. The
 * card's own word (tpm: true) counts for nothing until these verify and the AK is enrolled.
 */
export interface TpmEvidence {
  /** TPMT_PUBLIC of the endorsement key. */
  ek_public: string;
  /** The EK certificate (DER) then the intermediates it needs; empty for a TPM without one. */
  ek_certificates: string[];
  /** TPMT_PUBLIC of the attestation key. */
  ak_public: string;
  /** TPMT_PUBLIC of the identity key. */
  identity_public: string;
  /** TPM2_Certify of the identity key by the AK: TPMS_ATTEST and TPMT_SIGNATURE. */
  certify_attest: string;
  certify_signature: string;
}

export interface NodeCardBody {
  v: 1;
  type: "N";
  node_id: string;
  role: Role;
  identity_pub: string;
  tpm: boolean;
  ak_pub?: string;
  tpm_evidence?: TpmEvidence;
  peer_id: string;
  addrs: string[];
  bls_pub?: string;
  bls_pop?: string;
  created: string;
}
export type NodeCard = Signed<NodeCardBody>;

const REQUIRED = ["v", "type", "node_id", "role", "identity_pub", "tpm", "peer_id", "addrs", "created", "sig"] as const;
const OPTIONAL = ["ak_pub", "tpm_evidence", "bls_pub", "bls_pop"] as const;
const EVIDENCE_KEYS = ["ek_public", "ek_certificates", "ak_public", "identity_public", "certify_attest", "certify_signature"] as const;
/** Bounds that keep a card small (it travels in every handshake and in the genesis). */
const MAX_TPM_OBJECT = 1024;
const MAX_CERT = 4096;
const MAX_CERTS = 4;

export async function makeCard(
  identity: IdentityKey,
  fields: { role: Role; peerId: string; addrs?: string[]; nowMs: number; akPub?: string; tpmEvidence?: TpmEvidence; blsPub?: string; blsPop?: string },
): Promise<NodeCard> {
  const body: NodeCardBody = {
    v: 1,
    type: "N",
    node_id: nodeIdOf(identity.publicKey),
    role: fields.role,
    identity_pub: Buffer.from(identity.publicKey).toString("hex"),
    tpm: identity.kind === "tpm",
    peer_id: fields.peerId,
    addrs: fields.addrs ?? [],
    created: formatTime(fields.nowMs),
  };
  if (fields.akPub) body.ak_pub = fields.akPub;
  if (fields.tpmEvidence) body.tpm_evidence = fields.tpmEvidence;
  if (fields.blsPub) body.bls_pub = fields.blsPub;
  if (fields.blsPop) body.bls_pop = fields.blsPop;
  return signBody("card", body, identity);
}

/**
 * Parses and verifies a node card. checkPop (default on) also checks the BLS proof of
 * possession, about 30 ms with noble: done whenever a card enters (genesis, join), and
 * skipped only when re-reading a genesis this node already verified.
 */
export function parseCard(value: unknown, what = "node card", opts: { checkPop?: boolean } = {}): NodeCard {
  const o = expectObject(value, what);
  expectKeys(o, what, REQUIRED, OPTIONAL);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "N");
  const nodeId = hexField(o, "node_id", what, 32);
  stringField(o, "role", what, /^(edge|validator|both)$/, "edge, validator or both");
  const identityPub = hexField(o, "identity_pub", what, 33);
  const tpm = boolField(o, "tpm", what);
  if (tpm) hexField(o, "ak_pub", what, 33);
  else if ("ak_pub" in o) throw new SchemaError(`${what}: "ak_pub" is only for TPM nodes`);
  if ("tpm_evidence" in o) {
    if (!tpm) throw new SchemaError(`${what}: "tpm_evidence" is only for TPM nodes`);
    parseTpmEvidence(o.tpm_evidence, `${what} tpm_evidence`);
  }
  stringField(o, "peer_id", what, /^[1-9A-HJ-NP-Za-km-z]{32,64}$/, "a base58 libp2p peer id");
  const addrs = o.addrs;
  if (!Array.isArray(addrs) || addrs.length > 16 || !addrs.every((a) => typeof a === "string" && a.length <= 256)) {
    throw new SchemaError(`${what}: "addrs" must be a list of at most 16 multiaddr strings`);
  }
  if ("bls_pub" in o) hexField(o, "bls_pub", what, 48);
  if ("bls_pop" in o) hexField(o, "bls_pop", what, 96);
  if ("bls_pub" in o !== "bls_pop" in o) throw new SchemaError(`${what}: "bls_pub" and "bls_pop" come together`);
  timeField(o, "created", what);
  hexField(o, "sig", what, 64);
  const card = o as unknown as NodeCard;
  if (nodeIdOf(fromHex(identityPub)) !== nodeId) throw new SchemaError(`${what}: node_id is not the hash of identity_pub`);
  if (!verifyBody("card", card, fromHex(identityPub))) throw new SchemaError(`${what}: signature does not verify under identity_pub`);
  if (card.bls_pub && (opts.checkPop ?? true)) {
    const pk = fromHex(card.bls_pub);
    if (!blsKeyValidate(pk)) throw new SchemaError(`${what}: bls_pub is not a valid BLS12-381 public key`);
    if (!popHolds(card.bls_pub, card.bls_pop!, pk)) throw new SchemaError(`${what}: bls_pop is not a valid proof of possession for bls_pub`);
  }
  return card;
}

/**
 * PopVerify (two pairings, ~50 ms in noble) remembered by its exact inputs: a pure check, so
 * the memo is exact. A set change's card comes once in each of its q requests and again
 * in every bundle that follows the chain.
 */
const pops = new Map<string, boolean>();
function popHolds(pubHex: string, popHex: string, pk: Uint8Array): boolean {
  const k = `${pubHex}|${popHex}`;
  let ok = pops.get(k);
  if (ok === undefined) {
    ok = blsPopVerify(pk, fromHex(popHex));
    if (pops.size >= 4096) pops.delete(pops.keys().next().value!);
    pops.set(k, ok);
  }
  return ok;
}

/** The shape of a card's TPM evidence; what it proves is checked in src/tpm/evidence.ts. */
export function parseTpmEvidence(value: unknown, what: string): TpmEvidence {
  const o = expectObject(value, what);
  expectKeys(o, what, EVIDENCE_KEYS);
  for (const k of ["ek_public", "ak_public", "identity_public", "certify_attest", "certify_signature"] as const) boundedHex(o[k], `${what}: "${k}"`, MAX_TPM_OBJECT);
  const certs = o.ek_certificates;
  if (!Array.isArray(certs) || certs.length > MAX_CERTS) throw new SchemaError(`${what}: "ek_certificates" must list at most ${MAX_CERTS} certificates`);
  certs.forEach((c, i) => boundedHex(c, `${what}: ek_certificates[${i}]`, MAX_CERT));
  return o as unknown as TpmEvidence;
}
