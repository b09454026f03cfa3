// The decision set brought up to a node's latest checkpoint: by dsm run after each
// checkpoint, and by dsm decisions list/export when no daemon did it (a node checkpointed
// from cron). Only once the node holds every advisory up to that checkpoint: a set judged
// from part of the log would differ from the other nodes'.
import type { CheckpointBuilder } from "../log/builder.ts";
import type { DecisionStore } from "../ledger/decision-store.ts";
import type { FinalizedIntelRow } from "../protocol/advisory.ts";
import type { Decision } from "../protocol/decision.ts";
import type { Genesis } from "../protocol/genesis.ts";
import { decide } from "./decide.ts";
import { intelInput } from "./input.ts";

export interface Refreshed {
  epoch: number;
  added: Decision[];
  removed: Decision[];
  /** The finalized advisories judged, by id (for the latency of a new decision). */
  entries: Map<string, FinalizedIntelRow>;
}

/**
 * complete: the leaves below it have all been scanned for advisories (a validator's whole
 * tree; an edge's /dsm/intel/1 cursor). Null when there is nothing to do: no checkpoint,
 * the set already as of it (unless force), or advisories still missing.
 */
export function refreshDecisions(builder: CheckpointBuilder, genesis: Genesis, store: DecisionStore, complete: number, nowMs: number, force = false): Refreshed | null {
  const latest = builder.latest();
  if (!latest) return null;
  const epoch = latest.checkpoint.epoch;
  if ((!force && store.asOf() === epoch) || complete < latest.checkpoint.tree_size) return null;
  const input = intelInput(builder, genesis, epoch);
  const { added, removed } = store.replace(decide(input), epoch, nowMs);
  return { epoch, added, removed, entries: new Map(input.entries.map((x) => [x.id, x])) };
}

/** How far a node without dsm run has scanned: a validator of the set in force holds every microblock; an edge, its cursor. */
export function scannedWithoutDaemon(builder: CheckpointBuilder, nodeId: string): number {
  const validator = builder.history().latestCards().some((c) => c.node_id === nodeId);
  return validator ? builder.tree.size() : Math.min(builder.tree.size(), builder.intel.cursor());
}
