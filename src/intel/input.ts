// What decide() is given, read from one ledger: the finalized advisories that may still
// hold, and the finalized quarantine decisions, as of a checkpoint. The daemon and
// dsm decisions explain both use it, so both judge from the same inputs.
import type { CheckpointBuilder } from "../log/builder.ts";
import type { FinalizedIntelRow } from "../protocol/advisory.ts";
import { epochBounds } from "../protocol/checkpoint.ts";
import { type Genesis, intelPolicy } from "../protocol/genesis.ts";
import type { DecideInput } from "./decide.ts";

export function intelInput(builder: CheckpointBuilder, genesis: Genesis, epoch: number): Omit<DecideInput, "entries"> & { entries: FinalizedIntelRow[] } {
  const policy = intelPolicy(genesis);
  const endOf = (e: number) => epochBounds(genesis, e).endMs;
  // Advice older than max_ttl holds no more; retractions before it have nothing left to withdraw.
  const oldest = epoch - Math.ceil(policy.max_ttl / genesis.epoch_duration) - 1;
  const entries = builder.intel.sinceEpoch(Math.max(0, oldest)).filter((x) => x.epoch <= epoch);
  const last = new Map<string, string>();
  for (const d of builder.quarantine.decisions()) if (d.epoch <= epoch) last.set(d.node_id, d.action);
  return { policy, epoch, atMs: endOf(epoch), epochEndMs: endOf, entries, quarantined: (n) => last.get(n) === "quarantine" };
}
