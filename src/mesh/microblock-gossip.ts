// Microblocks on dsm/<mesh[0:16]>/mb/1. Out: this node's own chain (written by `dsm ingest`
// in another process, same SQLite file) in batches bounded by max_message_bytes, everything
// offered once at start, peers keep what they lack. In (validators only): each batch is
// checked and stored as the gossip validator, so a sender of an invalid one is penalised.
import { KeyCertRejected } from "../chain/accept.ts";
import { ExchangeLineError, parseExchangeLine } from "../chain/exchange.ts";
import { MicroblockRejected } from "../protocol/microblock.ts";
import { DEC, ENC, type MeshContext } from "./context.ts";
import type { Verdict } from "./p2p.ts";
import { chunks } from "./sync.ts";

/** The longest wait before this node's chain is offered again after a batch reached no peer. */
const PUBLISH_BACKOFF_MAX_MS = 2000;

export class MicroblockGossip {
  #timer: ReturnType<typeof setInterval> | null = null;
  #lastSeq = 0;
  #publishing = false;
  #publishRetryAt = 0;
  #publishBackoffMs = 0;

  constructor(
    private readonly ctx: MeshContext,
    /** Fetches a node's microblocks from a seq (sync.ts), when a batch shows a gap. */
    private readonly want: (nodeId: string, fromSeq: number) => Promise<void>,
  ) {}

  /** Takes every microblock of the mesh in: a validator's part, not an edge's. */
  subscribe(): void {
    this.ctx.net.subscribe(this.ctx.mbTopic, (data) => this.#onBatch(data), () => {});
  }

  /** Offers this node's chain every gossip.batch_max_ms, from its start. */
  start(): void {
    this.#lastSeq = 0;
    this.#timer = setInterval(() => void this.publishNew(), this.ctx.node.config.gossip.batch_max_ms);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** New microblocks of this node's own chain, in batches bounded by max_message_bytes. */
  async publishNew(): Promise<void> {
    const { node, net, stats } = this.ctx;
    if (this.#publishing) return;
    // The common case on a validator (no chain of its own) and between batches: one lookup.
    if ((node.ledger.head(node.mesh, node.nodeId)?.seq ?? 0) <= this.#lastSeq) return;
    if (Date.now() < this.#publishRetryAt) return;
    this.#publishing = true;
    try {
      for (const chunk of chunks(node, node.nodeId, this.#lastSeq + 1, node.config.gossip.max_message_bytes - 1024)) {
        const bytes = ENC.encode(chunk.text);
        let sent = 0;
        try {
          sent = await net.publish(this.ctx.mbTopic, bytes);
        } catch (e) {
          this.ctx.log("warn", `gossip: ${(e as Error).message}`);
        }
        // Nobody got it (no peer subscribed yet): offered again later, backing off up to
        // PUBLISH_BACKOFF_MAX_MS, so a node alone neither re-reads its chain every tick nor
        // counts bytes that went nowhere.
        if (sent === 0) {
          this.#publishBackoffMs = Math.min(PUBLISH_BACKOFF_MAX_MS, Math.max(node.config.gossip.batch_max_ms, this.#publishBackoffMs * 2));
          this.#publishRetryAt = Date.now() + this.#publishBackoffMs;
          return;
        }
        this.#publishBackoffMs = 0;
        this.#publishRetryAt = 0;
        stats.bytesOut += bytes.length * sent;
        this.#lastSeq = Math.max(this.#lastSeq, chunk.lastSeq);
        stats.published += chunk.count;
      }
    } finally {
      this.#publishing = false;
    }
  }

  /** Validates and stores a batch as the gossip validator: a batch with an invalid item is rejected. */
  #onBatch(data: Uint8Array): Verdict {
    this.ctx.stats.bytesIn += data.length;
    let text: string;
    try {
      text = DEC.decode(data);
    } catch {
      return this.ctx.stats.reject("encoding");
    }
    return this.store(text.split("\n").filter((l) => l !== "")).verdict;
  }

  /**
   * Validates and stores exchange lines in one transaction; an invalid line ends the batch
   * (what came before it is kept). When this node cannot store (disk full, a damaged or
   * locked database), nothing of the batch is kept and the sender is not blamed: the
   * verdict is "ignore", and a later gap fetch brings the microblocks again.
   */
  store(lines: string[]): { verdict: Verdict; stored: number; last: number } {
    const { receiver, stats } = this.ctx;
    let stored = 0;
    let last = 0;
    let verdict: Verdict = "accept";
    try {
      receiver.batch(() => {
        for (const [i, line] of lines.entries()) {
          try {
            const rec = parseExchangeLine(line, `gossip line ${i + 1}`);
            if (rec.kind === "key_certificate") receiver.acceptKeyCert(rec.certificate);
            else {
              const out = receiver.acceptMicroblock(rec.microblock, rec.payload ?? undefined);
              if (out.status === "stored") stored++;
              else if (out.status === "gap") void this.want(out.microblock.node_id, out.have + 1);
              last = out.microblock.seq;
            }
          } catch (e) {
            if (e instanceof MicroblockRejected) verdict = stats.reject(e.reason);
            else if (e instanceof KeyCertRejected) verdict = stats.reject(e.reason);
            else if (e instanceof ExchangeLineError) verdict = stats.reject("malformed");
            else throw e; // ours, not the sender's: the whole batch is undone below
            return;
          }
        }
      });
    } catch (e) {
      stats.storageFailed(`could not store a gossip batch, nothing of it kept (${(e as Error).message}); it will be fetched again`);
      return { verdict: "ignore", stored: 0, last: 0 };
    }
    if (stored > 0) {
      stats.received += stored;
      this.ctx.engine()?.logChanged();
    }
    return { verdict, stored, last };
  }
}
