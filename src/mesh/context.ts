// What a mesh service is given, instead of the Daemon: the network, the node, the receiver
// that checks and stores, the shared counters, the log, and accessors for what changes
// while the daemon runs (the consensus engine, whether it is stopping). Services depend on
// this and on each other's functions handed in, never on the Daemon class.
import type { Receiver } from "../chain/accept.ts";
import type { ConsensusEngine } from "../consensus/engine.ts";
import type { CheckpointBuilder } from "../log/builder.ts";
import type { DSMNode } from "../node/node.ts";
import type { DaemonLog } from "./daemon-log.ts";
import type { MeshNet } from "./p2p.ts";
import type { MeshStats } from "./stats.ts";

export interface MeshContext {
  readonly net: MeshNet;
  readonly node: DSMNode;
  readonly receiver: Receiver;
  readonly builder: CheckpointBuilder;
  readonly stats: MeshStats;
  readonly log: DaemonLog;
  /** The consensus engine on a validator once it runs; null on an edge. */
  engine(): ConsensusEngine | null;
  stopping(): boolean;
  /** A certificate with a validator-set change was stored: the node's role and its engine's set follow it. */
  setChanged(): void;
  /** dsm/<mesh[0:16]>/mb/1: batches of exchange lines. */
  readonly mbTopic: string;
  /** dsm/<mesh[0:16]>/cp/1: consensus messages, certificates and quarantine requests. */
  readonly cpTopic: string;
}

export const ENC = new TextEncoder();
export const DEC = new TextDecoder("utf-8", { fatal: true });

/** Admitted peers, in random order (validators first when `validatorsFirst`). */
export function peersToAsk(ctx: MeshContext, validatorsFirst: boolean): string[] {
  const validators = new Set(ctx.builder.history().latestCards().map((c) => c.peer_id));
  const peers = [...ctx.net.cards.keys()].sort(() => Math.random() - 0.5);
  return validatorsFirst ? [...peers.filter((p) => validators.has(p)), ...peers.filter((p) => !validators.has(p))] : peers;
}

/** Gossips a JSON value on a topic, counting its bytes times the peers it reached. */
export async function publishJson(ctx: MeshContext, topic: string, value: unknown): Promise<void> {
  const bytes = ENC.encode(JSON.stringify(value));
  const sent = await ctx.net.publish(topic, bytes).catch((e) => {
    ctx.log("warn", `gossip: ${(e as Error).message}`);
    return 0;
  });
  ctx.stats.bytesOut += bytes.length * sent;
}
