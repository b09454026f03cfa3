// /dsm/sync/1: a node's microblocks from a seq, asked of one peer and answered as exchange
// lines. Asking is how a node fills a gap gossip left (a batch that came before the one it
// follows, a node that was down); what comes back goes through the same checks as gossip.
import { exchangeChunks } from "../chain/exchange.ts";
import { isIntelEvent } from "../protocol/advisory.ts";
import type { DSMNode } from "../node/node.ts";
import { type MeshContext, peersToAsk } from "./context.ts";
import type { Verdict } from "./p2p.ts";

export const SYNC_PROTOCOL = "/dsm/sync/1";
/** Bytes of exchange lines in one /dsm/sync/1 answer, and answers fetched per peer per want. */
const SYNC_CHUNK_BYTES = 512 * 1024;
const SYNC_ROUNDS = 8;

/** Checks and stores exchange lines (microblock-gossip.ts): the verdict, how many were new, the last seq. */
export type StoreLines = (lines: string[]) => { verdict: Verdict; stored: number; last: number };

/** A node's microblocks from a seq as exchange lines: gossip batches and /dsm/sync/1 answers. */
export function chunks(node: DSMNode, nodeId: string, fromSeq: number, maxBytes: number): Generator<{ text: string; lastSeq: number; count: number }> {
  // privacy.withhold_payloads keeps this node's own payloads home; others' go on as held.
  // Threat advisories always go with theirs: sharing them is their purpose (DESIGN.md 12).
  const payloads = node.config.privacy.withhold_payloads && nodeId === node.nodeId ? isIntelEvent : true;
  return exchangeChunks(node.ledger, node.mesh, nodeId, fromSeq, maxBytes, { payloads });
}

export class Sync {
  #wants = new Map<string, number>();

  constructor(
    private readonly ctx: MeshContext,
    private readonly store: StoreLines,
  ) {}

  serve(): Promise<void> {
    return this.ctx.net.serve(SYNC_PROTOCOL, (req) => this.#answer(req), 4096);
  }

  /** Answers /dsm/sync/1: a node's microblocks from a seq, one bounded chunk. */
  #answer(req: unknown): unknown {
    const r = req as { node_id?: unknown; from_seq?: unknown };
    if (typeof r.node_id !== "string" || !/^[0-9a-f]{64}$/.test(r.node_id)) return { error: "node_id must be a 64-hex node id" };
    if (typeof r.from_seq !== "number" || !Number.isSafeInteger(r.from_seq) || r.from_seq < 1) return { error: "from_seq must be an integer >= 1" };
    const first = chunks(this.ctx.node, r.node_id, r.from_seq, SYNC_CHUNK_BYTES).next();
    return { lines: first.done ? "" : first.value.text };
  }

  /**
   * Fetches a node's microblocks from a seq with /dsm/sync/1 (at most once a second per
   * node), from the first peer that has them, chunk after chunk, through the same checks as
   * gossip.
   */
  async want(nodeId: string, fromSeq: number): Promise<void> {
    const now = Date.now();
    if ((this.#wants.get(nodeId) ?? 0) > now - 1000) return;
    this.#wants.set(nodeId, now);
    let from = fromSeq;
    for (const peer of peersToAsk(this.ctx, true)) {
      for (let round = 0; round < SYNC_ROUNDS; round++) {
        let answer: { lines?: unknown };
        try {
          answer = (await this.ctx.net.request(peer, SYNC_PROTOCOL, { node_id: nodeId, from_seq: from }, 10_000, SYNC_CHUNK_BYTES * 2)) as { lines?: unknown };
        } catch {
          break;
        }
        if (typeof answer.lines !== "string" || answer.lines === "") break;
        const { verdict, stored, last } = this.store(answer.lines.split("\n").filter((l) => l !== ""));
        if (verdict !== "accept" || stored === 0) break;
        from = last + 1;
      }
      if (from > fromSeq) return;
    }
  }
}
