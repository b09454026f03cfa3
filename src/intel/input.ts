// What decide() is given, read from one ledger: the finalized advisories that may still
// hold, and the finalized quarantine decisions, as of a checkpoint. The daemon and
// dsm decisions explain both use it, so both judge from the same inputs.
import type { CheckpointBuilder } from "../log/builder.ts";
import type { FinalizedIntelRow } from "../protocol/advisory.ts";
import { epochBounds } from "../protocol/checkpoint.ts";
import { type Genesis, intelPolicy } from "../protocol/genesis.ts";
import { canonicalIp } from "../encoding/ip.ts";
import type { DecideInput } from "./decide.ts";

/** "/ip4/203.0.113.5/tcp/7946/p2p/..." → ["203.0.113.5/32"]; names (dns4) and the unspecified address give nothing. */
export function hostOfMultiaddr(addr: string): string[] {
  const m = /^\/(ip4|ip6)\/([^/]+)/.exec(addr);
  const ip = m ? canonicalIp(m[2]!) : null;
  if (!ip || ip === "0.0.0.0" || ip === "::") return [];
  return [`${ip}/${m![1] === "ip4" ? 32 : 128}`];
}

export function intelInput(builder: CheckpointBuilder, genesis: Genesis, epoch: number): Omit<DecideInput, "entries"> & { entries: FinalizedIntelRow[] } {
  const base = intelPolicy(genesis);
  // The mesh's own validators are never blocked: their cards' addresses (the genesis's and
  // those set changes brought), which every node holds alike.
  const cards = [...genesis.validators, ...builder.history().latestCards()];
  const policy = { ...base, never_block: [...new Set([...base.never_block, ...cards.flatMap((c) => c.addrs).flatMap(hostOfMultiaddr)])] };
  const endOf = (e: number) => epochBounds(genesis, e).endMs;
  // Advice older than max_ttl holds no more; retractions before it have nothing left to withdraw.
  const oldest = epoch - Math.ceil(policy.max_ttl / genesis.epoch_duration) - 1;
  const entries = builder.intel.sinceEpoch(Math.max(0, oldest)).filter((x) => x.epoch <= epoch);
  const last = new Map<string, string>();
  for (const d of builder.quarantine.decisions()) if (d.epoch <= epoch) last.set(d.node_id, d.action);
  return { policy, epoch, atMs: endOf(epoch), epochEndMs: endOf, entries, quarantined: (n) => last.get(n) === "quarantine" };
}
