// A checkpoint in a mesh where this validator alone is a quorum (n = 1, every local mesh):
// the one-validator signing path of `dsm checkpoint`, DSMValidator.buildAlone and the
// checkpoint builder's tests. No agreement to run: the node's own signature is the quorum.
import { checkpointDigestHex } from "../protocol/checkpoint.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { signingDigest } from "../protocol/consensus-messages.ts";
import { signersBitfield } from "../protocol/validator-set.ts";
import { blsSign } from "../crypto/bls.ts";
import { LedgerSignedStore } from "../ledger/signed-store.ts";
import type { BuildResult, CheckpointBuilder } from "../log/builder.ts";
import type { CheckpointSource } from "./ports.ts";
import { signOnce } from "./sign-once.ts";

/** The builder is the engine's CheckpointSource (checked here, where both are in scope). */
export const asCheckpointSource = (builder: CheckpointBuilder): CheckpointSource => builder;

/**
 * The checkpoint for a closed epoch in a mesh where this validator alone is a quorum
 * (n = 1). Its signature is recorded durably before use, like every consensus signature,
 * so a crash between signing and storing can never lead to a second body for the epoch:
 * the run after it finishes the first. Idempotent: an epoch already checkpointed, or one
 * at or before the latest checkpoint, changes nothing.
 */
export function buildAlone(builder: CheckpointBuilder, epoch: number, blsSecret: Uint8Array, validatorIndex: number): BuildResult {
  const { ledger, policy } = builder;
  const genesis = policy.genesis;
  return ledger.immediate((): BuildResult => {
    const existing = builder.byEpoch(epoch);
    if (existing) return { status: "exists", certificate: existing };
    const latest = builder.latest();
    if (latest && latest.checkpoint.epoch > epoch) return { status: "nothing-new", epoch };
    let body = builder.propose(epoch);
    const store = new LedgerSignedStore(ledger, policy.mesh);
    // A signature made by an earlier run that did not get to store its certificate.
    const earlier = store.ofHeight(latest ? checkpointDigestHex(latest.checkpoint) : "0".repeat(64)).find((m) => m.type === "S");
    if (earlier && earlier.type === "S" && builder.check(earlier.checkpoint).ok) body = earlier.checkpoint;
    if (body === null) return { status: "nothing-new", epoch };
    const signed = signOnce(store, { v: 1, type: "S", mesh: policy.mesh, checkpoint: body, validator: validatorIndex }, (m) => blsSign(blsSecret, signingDigest(m)));
    if (!signed.ok) throw new Error(`this validator already signed another checkpoint (${signed.slot}); refusing to sign a second`);
    const certificate: FinalityCertificate = {
      v: 1,
      type: "F",
      checkpoint: body,
      signers: signersBitfield([validatorIndex], genesis.validators.length),
      agg_sig: signed.message.sig,
    };
    const leaves = builder.storeChecked(certificate);
    return { status: "created", certificate, leaves };
  });
}
