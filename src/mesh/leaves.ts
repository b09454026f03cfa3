// /dsm/leaves/1: the log's leaf ids in a range. An edge keeps a certificate with the tree it
// commits to without holding the other nodes' microblocks: it asks for the leaf ids and
// keeps them only if they recompute the signed root.
import { fromHex, toHex } from "../encoding/hex.ts";
import { type MeshContext, peersToAsk } from "./context.ts";

export const LEAVES_PROTOCOL = "/dsm/leaves/1";
/** Leaf ids in one /dsm/leaves/1 answer (64 hex characters each: 512 KiB). */
const LEAVES_PER_ANSWER = 8192;

export class Leaves {
  constructor(private readonly ctx: MeshContext) {}

  serve(): Promise<void> {
    return this.ctx.net.serve(LEAVES_PROTOCOL, (req) => this.#answer(req), 4096);
  }

  /** Answers /dsm/leaves/1: the log's leaf ids [from, to), hex, at most LEAVES_PER_ANSWER. */
  #answer(req: unknown): unknown {
    const tree = this.ctx.builder.tree;
    const { from, to } = req as { from?: unknown; to?: unknown };
    if (typeof from !== "number" || typeof to !== "number" || !Number.isSafeInteger(from) || !Number.isSafeInteger(to)) return { error: "from and to must be leaf indices" };
    if (from < 0 || to <= from || to - from > LEAVES_PER_ANSWER) return { error: `need 0 <= from < to <= from + ${LEAVES_PER_ANSWER}` };
    if (to > tree.size()) return { error: `this node's log has ${tree.size()} leaves` };
    return { ids: tree.idsIn(from, to).map(toHex).join("") };
  }

  /** The log's leaf ids [from, to) from the first peer whose answer passes `fits`, or null. */
  async fetch(from: number, to: number, fits: (ids: Uint8Array[]) => boolean): Promise<Uint8Array[] | null> {
    for (const peer of peersToAsk(this.ctx, true)) {
      const ids: Uint8Array[] = [];
      try {
        while (from + ids.length < to) {
          const a = from + ids.length;
          const b = Math.min(to, a + LEAVES_PER_ANSWER);
          const answer = (await this.ctx.net.request(peer, LEAVES_PROTOCOL, { from: a, to: b }, 10_000, LEAVES_PER_ANSWER * 64 + 1024)) as { ids?: unknown };
          if (typeof answer.ids !== "string" || answer.ids.length !== (b - a) * 64) throw new Error("no such leaves");
          const bytes = fromHex(answer.ids, (b - a) * 32);
          for (let i = 0; i < b - a; i++) ids.push(bytes.subarray(i * 32, i * 32 + 32));
        }
        if (fits(ids)) return ids; // a peer that sent ids of another tree: the next one
        this.ctx.stats.count("leaves");
      } catch {
        // the next peer
      }
    }
    return null;
  }
}
