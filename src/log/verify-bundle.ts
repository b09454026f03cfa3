// Proof bundles (DESIGN.md section 6): self-contained JSON that an offline light client
// checks against nothing but the genesis. An inclusion bundle proves that one microblock is
// a leaf of a finalized checkpoint; a consistency bundle proves that a later finalized
// checkpoint extends an earlier one. This is the pure half, all `dsm verify-proof` needs:
// no ledger, no node. Assembly from a ledger is in bundle.ts.
//
// After validator-set changes (src/protocol/set-change.ts) a checkpoint is signed by a later
// set than the genesis's. Then the bundle carries `set_changes`: the finality certificates
// of every checkpoint that finalized a change before its own, oldest first. The light
// client follows them from the genesis, each one signed by a quorum of the set it changes,
// as a light client follows committee handoffs, and checks the bundle's certificate(s)
// under the set in force at their epoch.
import { fromHex, isHex, toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { expectKeys, expectObject, intField, literalField } from "../encoding/schema.ts";
import { verify as p256Verify } from "../crypto/p256.ts";
import { checkKeyUse, type Microblock, microblockIdBytes, parseMicroblock, payloadMatches } from "../protocol/microblock.ts";
import { type KeyCert, keyNameOf, parseKeyCert, signingKeyInfo } from "../protocol/keycert.ts";
import { type NodeCard, parseCard } from "../protocol/card.ts";
import { type Genesis, MeshPolicy, meshIdOf, mustAttest } from "../protocol/genesis.ts";
import { ekTrustText, verifyEvidence } from "../tpm/evidence.ts";
import { BundleError, check, type FinalityCertificate, type FinalityInfo, oneLine, parseFinalityCertificate, verifyParsedFinality } from "../protocol/certificate.ts";
import { CHANGE_DELAY_EPOCHS, SetHistory, setChangeProblem } from "../protocol/set-change.ts";
import { type CheckpointBody, checkpointDigestHex } from "../protocol/checkpoint.ts";
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
  /** Certificates of the set changes before the checkpoint, oldest first; absent when there were none. */
  set_changes?: FinalityCertificate[];
}

export interface ConsistencyBundle {
  v: 1;
  type: "consistency";
  older: FinalityCertificate;
  newer: FinalityCertificate;
  proof: string[];
  /** Certificates of the set changes before the newer checkpoint, oldest first; absent when there were none. */
  set_changes?: FinalityCertificate[];
}

export type ProofBundle = InclusionBundle | ConsistencyBundle;

/** A certificate's check, and which set signed it: the one in force from set_from_epoch, after set_version changes (0, 0: the genesis's). */
export type SignedInfo = FinalityInfo & { set_from_epoch: number; set_version: number };

export type BundleSummary =
  | ({ type: "inclusion"; id: string; node_id: string; seq: number; leaf_index: number; payload: boolean; trust: BundleTrust } & SignedInfo & { message: string })
  | { type: "consistency"; older: SignedInfo; newer: SignedInfo; message: string };

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
function bundleTrust(value: unknown, nodeId: string, genesis: Genesis, history: SetHistory): BundleTrust {
  if (value === undefined) return { level: "unknown", detail: "no node card in the bundle: its trust links are not shown" };
  const card = check("node card", () => parseCard(value, "node card", { checkPop: false }));
  if (card.node_id !== nodeId) throw new BundleError(`node card: is node ${card.node_id.slice(0, 12)}…'s, not the microblock's node ${nodeId.slice(0, 12)}…`);
  // A validator's card is fixed by the genesis, or by the set change that added or rotated
  // it: another one, however well signed, is not its.
  const listed = history.eras.flatMap((e) => e.cards).filter((c) => c.node_id === nodeId);
  if (listed.length > 0 && !listed.some((c) => canonicalize(c) === canonicalize(card))) {
    throw new BundleError(`node card: is not validator ${nodeId.slice(0, 12)}…'s card in the genesis${history.version > 0 ? " or its set changes" : ""}`);
  }
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

/**
 * Follows a bundle's set_changes from the genesis: each certificate signed by a quorum of the
 * set in force at its epoch, its body's change taken by that set's rules (setChangeProblem:
 * a quorum's requests on the current basis, a valid set after it), epochs in order, every
 * one before `before` (the epoch of the checkpoint they lead to). Absent: the genesis's set.
 * A change left out cannot be seen here (the bundle is then checked against an older set);
 * one left out of the middle can, as the next change's requests name a later basis.
 */
export function followSetChanges(value: unknown, genesis: Genesis, mesh: string, before: number): SetChain {
  const history = new SetHistory(genesis);
  const digests = new Map<number, string>();
  if (value === undefined) return { history, digests };
  if (!Array.isArray(value) || value.length === 0) throw new BundleError(`bundle: "set_changes" must be a non-empty list of finality certificates (left out when there are none)`);
  let last: number | null = null;
  value.forEach((v, i) => {
    const what = `set change ${i + 1}`;
    const cert = parseFinalityCertificate(v, what);
    const epoch = cert.checkpoint.epoch;
    const at = `${what} (epoch ${epoch})`;
    const sc = cert.checkpoint.set_change;
    if (!sc) throw new BundleError(`${at}: its checkpoint finalizes no set change`);
    if (epoch >= before) throw new BundleError(`${at}: is not before the checkpoint epoch ${before} it leads to`);
    if (last !== null && epoch < last + CHANGE_DELAY_EPOCHS) {
      throw new BundleError(`${at}: comes before epoch ${last + CHANGE_DELAY_EPOCHS}, when the change before it (epoch ${last}) takes effect: changes are listed oldest first`);
    }
    verifyParsedFinality(cert, mesh, history.setAt(epoch), at);
    const problem = setChangeProblem(sc, genesis, history.cardsAt(epoch), history.setAt(epoch), history.version, epoch);
    if (problem !== null) throw new BundleError(`${at}: ${problem}`);
    check(at, () => history.apply({ epoch, change: sc.change }));
    digests.set(epoch, checkpointDigestHex(cert.checkpoint));
    last = epoch;
  });
  return { history, digests };
}

/** The sets a bundle's chain makes, and the digest of each checkpoint in it by epoch. */
export interface SetChain {
  history: SetHistory;
  digests: Map<number, string>;
}

/** A bundle's own certificate (parsed), under the set in force at its epoch. */
function verifySigned(cert: FinalityCertificate, mesh: string, { history, digests }: SetChain, what: string): SignedInfo {
  const epoch = cert.checkpoint.epoch;
  // A consistency bundle's older checkpoint may be one of the chain's: then it is that one.
  const inChain = digests.get(epoch);
  if (inChain !== undefined && inChain !== checkpointDigestHex(cert.checkpoint)) {
    throw new BundleError(`${what}: epoch ${epoch} has another finalized checkpoint in set_changes (two bodies for one epoch: the set that signed them is faulty)`);
  }
  // The epoch right after a change has no checkpoint (the new set's first epoch is two
  // later): one would be signed by a set that has already handed over.
  const change = history.eras.slice(1).find((e) => e.fromEpoch - CHANGE_DELAY_EPOCHS < epoch && epoch < e.fromEpoch);
  if (change) {
    const at = change.fromEpoch - CHANGE_DELAY_EPOCHS;
    throw new BundleError(`${what}: epoch ${epoch} comes right after the set change of epoch ${at}; no checkpoint exists before epoch ${change.fromEpoch}`);
  }
  const f = verifyParsedFinality(cert, mesh, history.setAt(epoch), what);
  const era = history.eras.findLastIndex((e) => e.fromEpoch <= epoch);
  return { ...f, set_from_epoch: history.eras[era]!.fromEpoch, set_version: era };
}

/** "final with 4/5 validators", and which set they are when it is not the genesis's. */
function finalWith(f: SignedInfo): string {
  const base = `${f.signed}/${f.validators} validators`;
  if (f.set_version === 0) return base;
  return `${base} of the set in force from epoch ${f.set_from_epoch} (${f.set_version} change${f.set_version === 1 ? "" : "s"} since genesis)`;
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
    expectKeys(o, "inclusion bundle", ["v", "type", "microblock", "key_certificate", "payload", "leaf_index", "proof", "certificate"], ["node_card", "set_changes"]);
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
  const chain = followSetChanges(o.set_changes, genesis, policy.mesh, cp.epoch);
  const f = verifySigned(fc, policy.mesh, chain, "finality certificate");
  const payload = o.payload !== null;
  const trust = bundleTrust(o.node_card, mb.node_id, genesis, chain.history);
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
      `epoch ${f.epoch} (tree_size ${f.tree_size}), final with ${finalWith(f)}`,
  };
}

function verifyConsistencyBundle(o: Record<string, unknown>, genesis: Genesis): BundleSummary {
  check("bundle", () => {
    expectKeys(o, "consistency bundle", ["v", "type", "older", "newer", "proof"], ["set_changes"]);
    literalField(o, "v", "consistency bundle", 1);
  });
  const f1 = parseFinalityCertificate(o.older, "older finality certificate");
  const f2 = parseFinalityCertificate(o.newer, "newer finality certificate");
  const c1 = f1.checkpoint;
  const c2 = f2.checkpoint;
  if (c1.epoch > c2.epoch) throw new BundleError(`older checkpoint epoch ${c1.epoch} is after the newer one's ${c2.epoch}`);
  // One chain of changes up to the newer checkpoint; each certificate under its own epoch's set.
  const mesh = meshIdOf(genesis);
  const chain = followSetChanges(o.set_changes, genesis, mesh, c2.epoch);
  const older = verifySigned(f1, mesh, chain, "older finality certificate");
  const newer = verifySigned(f2, mesh, chain, "newer finality certificate");
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
      (older.set_version === 0 && newer.set_version === 0
        ? `both final with ${older.signed}/${older.validators} and ${newer.signed}/${newer.validators} validators`
        : `both final with ${finalWith(older)} and ${finalWith(newer)}`),
  };
}
