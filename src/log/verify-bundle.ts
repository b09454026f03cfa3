// Proof bundles (DESIGN.md section 6): self-contained JSON that an offline light client
// checks against nothing but the genesis. An inclusion bundle proves that one microblock is
// a leaf of a finalized checkpoint; a consistency bundle proves that a later finalized
// checkpoint extends an earlier one. This is the pure half, all `dsm verify-proof` needs:
// no ledger, no node. Assembly from a ledger is in bundle.ts.
import { fromHex, isHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { expectKeys, expectObject, intField, literalField } from "../encoding/schema.ts";
import { verify as p256Verify } from "../crypto/p256.ts";
import { checkKeyUse, type Microblock, microblockIdBytes, parseMicroblock, payloadMatches } from "../protocol/microblock.ts";
import { type KeyCert, keyNameOf, parseKeyCert, signingKeyInfo } from "../protocol/keycert.ts";
import { type NodeCard, parseCard } from "../protocol/card.ts";
import { type Genesis, MeshPolicy, mustAttest } from "../protocol/genesis.ts";
import { ekTrustText, verifyEvidence } from "../tpm/evidence.ts";
import { BundleError, check, type FinalityCertificate, type FinalityInfo, oneLine, parseFinalityCertificate, verifyFinality } from "../protocol/certificate.ts";
import type { CheckpointBody } from "../protocol/checkpoint.ts";
import { leafHash, verifyConsistency, verifyInclusion } from "./merkle.ts";

export interface InclusionBundle {
  v: 1;
  type: "inclusion";
  microblock: Microblock;
  key_certificate: KeyCert;
  /** The event's payload, or null when its node withheld it (then only the hash is proven). */
  payload: unknown | null;
  leaf_index: number;
  proof: string[];
  certificate: FinalityCertificate;
  /** The node's card, when the bundle's maker held it: what its trust links are read from. */
  node_card?: NodeCard;
}

export interface ConsistencyBundle {
  v: 1;
  type: "consistency";
  older: FinalityCertificate;
  newer: FinalityCertificate;
  proof: string[];
}

export type ProofBundle = InclusionBundle | ConsistencyBundle;

export type BundleSummary =
  | ({ type: "inclusion"; id: string; node_id: string; seq: number; leaf_index: number; payload: boolean; trust: BundleTrust } & FinalityInfo & { message: string })
  | { type: "consistency"; older: FinalityInfo; newer: FinalityInfo; message: string };

/** Which links of the node's chain of trust (DESIGN.md section 7) the bundle shows. */
export interface BundleTrust {
  level: "unknown" | "software" | "tpm-evidence" | "tpm-claimed";
  detail: string;
}

/**
 * Reads the node's trust links from its card, checked against the genesis: the card must be
 * the microblock's node's (its identity key is the one whose K certificate signs it). What a
 * light client cannot check is the credential activation: validators enrolled the AK.
 */
function bundleTrust(value: unknown, nodeId: string, genesis: Genesis): BundleTrust {
  if (value === undefined) return { level: "unknown", detail: "no node card in the bundle: its trust links are not shown" };
  const card = check("node card", () => parseCard(value, "node card", { checkPop: false }));
  if (card.node_id !== nodeId) throw new BundleError(`node card: is node ${card.node_id.slice(0, 12)}…'s, not the microblock's node ${nodeId.slice(0, 12)}…`);
  // A validator's card is fixed by the genesis: another one, however well signed, is not its.
  const listed = genesis.validators.find((c) => c.node_id === nodeId);
  if (listed && canonicalize(listed) !== canonicalize(card)) throw new BundleError(`node card: is not validator ${nodeId.slice(0, 12)}…'s card in the genesis`);
  if (!card.tpm) return { level: "software", detail: "software key" };
  const ev = verifyEvidence(card, genesis.attestation, Date.now());
  if (!ev.ok) return { level: "tpm-claimed", detail: `card says TPM, but its evidence does not verify against the genesis (${ev.check}): treated as a software key` };
  const ek = ekTrustText(ev.ek);
  // What a light client cannot check is the credential activation. Where the genesis makes
  // this role attest, honest validators take nothing of an unenrolled node, so a finalized
  // checkpoint stands for it; elsewhere a card with a copied EK certificate reads the same.
  if (mustAttest(genesis, nodeId)) {
    return { level: "tpm-evidence", detail: `TPM-rooted, ${ek} → AK (enrolled by the validators: the genesis requires it of this role) → identity key (certified by the AK) → signing key (K certificate) → this microblock` };
  }
  return { level: "tpm-claimed", detail: `its card shows TPM evidence (${ek} → AK → identity key), but the genesis does not require this role to attest, so nothing here shows the AK was enrolled: a copied EK certificate would read the same` };
}

function parseProof(value: unknown, what: string): Uint8Array[] {
  if (!Array.isArray(value) || value.length > 128) throw new BundleError(`${what}: "proof" must be a list of at most 128 hashes`);
  return value.map((h, i) => {
    if (!isHex(h, 32)) throw new BundleError(`${what}: proof[${i}] is not a 32-byte lowercase hex hash`);
    return fromHex(h, 32);
  });
}

/** Checks every hash and signature in a bundle against the genesis. Throws BundleError. */
export function verifyBundle(value: unknown, genesis: Genesis): BundleSummary {
  const o = check("bundle", () => expectObject(value, "bundle"));
  if (o.type === "inclusion") return verifyInclusionBundle(o, genesis);
  if (o.type === "consistency") return verifyConsistencyBundle(o, genesis);
  throw new BundleError(`bundle: "type" must be "inclusion" or "consistency"`);
}

function verifyInclusionBundle(o: Record<string, unknown>, genesis: Genesis): BundleSummary {
  check("bundle", () => {
    expectKeys(o, "inclusion bundle", ["v", "type", "microblock", "key_certificate", "payload", "leaf_index", "proof", "certificate"], ["node_card"]);
    literalField(o, "v", "inclusion bundle", 1);
    intField(o, "leaf_index", "inclusion bundle", 0);
  });
  const policy = new MeshPolicy(genesis);
  const mb = check("microblock", () => parseMicroblock(o.microblock));
  const where = `microblock ${mb.node_id.slice(0, 12)}…:${mb.seq}`;
  if (mb.mesh !== policy.mesh) throw new BundleError(`${where}: belongs to mesh ${mb.mesh.slice(0, 16)}…, not this genesis's mesh`);
  const idBytes = microblockIdBytes(mb);
  if (toHex(idBytes) !== mb.id) throw new BundleError(`${where}: id does not match its body`);
  const cert = check("key certificate", () => parseKeyCert(o.key_certificate));
  if (cert.mesh !== policy.mesh) throw new BundleError(`key certificate: is for mesh ${cert.mesh.slice(0, 16)}…, not this genesis's mesh`);
  if (cert.node_id !== mb.node_id) throw new BundleError(`key certificate: is for node ${cert.node_id.slice(0, 12)}…, not the microblock's node ${mb.node_id.slice(0, 12)}…`);
  if (keyNameOf(cert.signing_pub) !== mb.key) throw new BundleError(`key certificate: certifies key ${keyNameOf(cert.signing_pub).slice(0, 16)}…, but the microblock names key ${mb.key.slice(0, 16)}…`);
  const key = check("key certificate", () => signingKeyInfo(cert));
  check("key certificate", () => checkKeyUse(mb, key, where));
  if (!p256Verify(key.publicKey, idBytes, fromHex(mb.sig, 64))) throw new BundleError(`${where}: signature does not verify under the certified signing key`);
  if (o.payload !== null) {
    const canonical = check("payload", () => canonicalize(o.payload));
    if (!payloadMatches(mb.payload_hash, canonical)) throw new BundleError(`${where}: payload does not match payload_hash`);
  }
  if (!policy.isAdmitted(mb.node_id)) throw new BundleError(`${where}: node is not admitted to this mesh`);
  const fc = parseFinalityCertificate(o.certificate);
  const cp: CheckpointBody = fc.checkpoint;
  const index = o.leaf_index as number;
  const proof = parseProof(o.proof, "inclusion bundle");
  if (index >= cp.tree_size) throw new BundleError(`leaf index ${index} is not below the checkpoint's tree_size ${cp.tree_size}`);
  try {
    verifyInclusion(leafHash(idBytes), index, cp.tree_size, proof, fromHex(cp.root, 32));
  } catch (e) {
    throw new BundleError(`inclusion proof does not lead to the checkpoint root (leaf ${index}, tree_size ${cp.tree_size}): ${oneLine(e)}`);
  }
  const f = verifyFinality(fc, genesis);
  const payload = o.payload !== null;
  const trust = bundleTrust(o.node_card, mb.node_id, genesis);
  return {
    type: "inclusion",
    id: mb.id,
    node_id: mb.node_id,
    seq: mb.seq,
    leaf_index: index,
    payload,
    trust,
    ...f,
    message:
      `microblock ${mb.id} (node ${mb.node_id.slice(0, 12)}…, seq ${mb.seq}${payload ? "" : ", payload withheld"}) is leaf ${index} of checkpoint ` +
      `epoch ${f.epoch} (tree_size ${f.tree_size}), final with ${f.signed}/${f.validators} validators`,
  };
}

function verifyConsistencyBundle(o: Record<string, unknown>, genesis: Genesis): BundleSummary {
  check("bundle", () => {
    expectKeys(o, "consistency bundle", ["v", "type", "older", "newer", "proof"]);
    literalField(o, "v", "consistency bundle", 1);
  });
  const older = verifyFinality(o.older, genesis, "older finality certificate");
  const newer = verifyFinality(o.newer, genesis, "newer finality certificate");
  const c1 = (o.older as FinalityCertificate).checkpoint;
  const c2 = (o.newer as FinalityCertificate).checkpoint;
  if (c1.epoch > c2.epoch) throw new BundleError(`older checkpoint epoch ${c1.epoch} is after the newer one's ${c2.epoch}`);
  if (c1.tree_size > c2.tree_size) throw new BundleError(`older checkpoint tree_size ${c1.tree_size} is larger than the newer one's ${c2.tree_size}`);
  const proof = parseProof(o.proof, "consistency bundle");
  try {
    verifyConsistency(c1.tree_size, c2.tree_size, proof, fromHex(c1.root, 32), fromHex(c2.root, 32));
  } catch (e) {
    throw new BundleError(`consistency proof does not show tree_size ${c2.tree_size} extends tree_size ${c1.tree_size}: ${oneLine(e)}`);
  }
  return {
    type: "consistency",
    older,
    newer,
    message:
      `checkpoint epoch ${newer.epoch} (tree_size ${newer.tree_size}) extends checkpoint epoch ${older.epoch} (tree_size ${older.tree_size}), ` +
      `both final with ${older.signed}/${older.validators} and ${newer.signed}/${newer.validators} validators`,
  };
}
