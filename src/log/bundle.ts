// Proof bundle assembly (DESIGN.md section 6): an inclusion or consistency bundle read
// from a ledger and its checkpoint log. Checking a bundle is verify-bundle.ts, which needs
// neither. A bundle whose checkpoint comes after validator-set changes carries their
// certificates (set_changes), the chain a light client follows from the genesis.
import { isHex, toHex } from "../encoding/hex.ts";
import { type Ledger, withoutLocalFields } from "../ledger/ledger.ts";
import { CheckpointStore } from "../ledger/checkpoint-store.ts";
import type { CheckpointBuilder } from "./builder.ts";
import type { NodeCard } from "../protocol/card.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import type { ConsistencyBundle, InclusionBundle } from "./verify-bundle.ts";

/** Assembly refused (unknown id, not yet checkpointed, unknown epoch). */
export class BundleUnavailable extends Error {}

/**
 * The inclusion bundle for microblock `id` (64 hex) in the checkpoint of `epoch`, or by
 * default in the latest checkpoint (every checkpoint is cumulative, so the latest one
 * contains every leaf that any checkpoint does). cardOf gives the node's card when the
 * maker holds it (its own, or an enrolled node's), so the bundle shows its trust links.
 */
export function inclusionBundle(ledger: Ledger, builder: CheckpointBuilder, id: string, epoch?: number, cardOf?: (nodeId: string) => NodeCard | null): InclusionBundle {
  if (!isHex(id, 32)) throw new BundleUnavailable(`"${id}" is not a full microblock id (64 lowercase hex)`);
  const stored = ledger.byId(id);
  if (!stored) throw new BundleUnavailable(`no microblock with id ${id}`);
  const certificate = epoch === undefined ? builder.latest() : builder.byEpoch(epoch);
  if (!certificate) throw new BundleUnavailable(epoch === undefined ? "not yet in a checkpoint: there is no checkpoint yet" : `no checkpoint for epoch ${epoch}`);
  const index = builder.leafIndexOf(id);
  const size = certificate.checkpoint.tree_size;
  if (index === null || index >= size) {
    throw new BundleUnavailable(`not yet in a checkpoint: microblock ${id.slice(0, 16)}… is not in the tree of checkpoint epoch ${certificate.checkpoint.epoch}`);
  }
  const keyCert = ledger.keyCert(stored.key);
  if (keyCert === null) throw new BundleUnavailable(`no key certificate for signing key ${stored.key.slice(0, 16)}…`);
  const payload = ledger.payload(stored.payload_hash);
  const card = cardOf?.(stored.node_id) ?? null;
  return {
    v: 1,
    type: "inclusion",
    microblock: withoutLocalFields(stored),
    key_certificate: JSON.parse(keyCert),
    payload: payload === null ? null : JSON.parse(payload),
    leaf_index: index,
    proof: builder.tree.inclusionProof(index, size).map(toHex),
    certificate,
    ...(card ? { node_card: card } : {}),
    ...setChangesField(builder, certificate.checkpoint.epoch),
  };
}

/** The consistency bundle from the checkpoint of epoch1 to that of epoch2. */
export function consistencyBundle(builder: CheckpointBuilder, epoch1: number, epoch2: number): ConsistencyBundle {
  const older = builder.byEpoch(epoch1);
  if (!older) throw new BundleUnavailable(`no checkpoint for epoch ${epoch1}`);
  const newer = builder.byEpoch(epoch2);
  if (!newer) throw new BundleUnavailable(`no checkpoint for epoch ${epoch2}`);
  const s1 = older.checkpoint.tree_size;
  const s2 = newer.checkpoint.tree_size;
  if (epoch1 > epoch2 || s1 > s2) throw new BundleUnavailable(`epoch ${epoch1} is not before epoch ${epoch2}`);
  return {
    v: 1,
    type: "consistency",
    older,
    newer,
    proof: s1 === s2 ? [] : builder.tree.consistencyProof(s1, s2).map(toHex),
    ...setChangesField(builder, epoch2),
  };
}

/**
 * The certificates of every stored checkpoint before `epoch` that finalized a set change,
 * oldest first: what a light client follows from the genesis to the set that signed the
 * checkpoint of `epoch`. Each is whole (its body's requests are what it checks the change by).
 */
export function setChangeCertificates(builder: CheckpointBuilder, epoch: number): FinalityCertificate[] {
  return new CheckpointStore(builder.ledger, builder.policy.mesh).setChangesBefore(epoch);
}

/** Left out when empty, so a bundle of a mesh that never changed its set keeps its bytes. */
function setChangesField(builder: CheckpointBuilder, epoch: number): { set_changes?: FinalityCertificate[] } {
  const certs = setChangeCertificates(builder, epoch);
  return certs.length > 0 ? { set_changes: certs } : {};
}
