// Microblocks on dsm/<mesh[0:16]>/mb/1. Out: this node's own chain (written by `dsm ingest`
// in another process, same SQLite file) in batches bounded by max_message_bytes, everything
// offered once at start, peers keep what they lack; what no certificate includes an epoch
// after its epoch closed is offered again (with backoff). In (validators only): each batch
// is checked and stored as the gossip validator, so a sender of an invalid one is penalised;
// a microblock refused only for a timestamp ahead of this node's clock is fetched from the
// mesh (/dsm/sync/1) once this clock has reached it.
import { KeyCertRejected } from "../chain/accept.ts";
import { ExchangeLineError, parseExchangeLine } from "../chain/exchange.ts";
import { epochAt, epochBounds } from "../protocol/checkpoint.ts";
import { MicroblockRejected } from "../protocol/microblock.ts";
import { DEC, ENC, type MeshContext } from "./context.ts";
import type { Verdict } from "./p2p.ts";
import { chunks } from "./sync.ts";

/** The longest wait before this node's chain is offered again after a batch reached no peer. */
const PUBLISH_BACKOFF_MAX_MS = 2000;
/** Own microblocks no certificate includes are offered again at most every this many epochs (doubling from 1). */
const REOFFER_BACKOFF_MAX_EPOCHS = 16;
/** How often this node looks at what of its chain is finalized, and at microblocks refused as ahead of its clock. */
const CHECK_EVERY_MS = 1000;
/** A microblock refused as ahead of this clock is fetched for at most this long after it stopped being ahead. */
const AHEAD_FETCH_FOR_MS = 5 * 60_000;
/** Nodes whose refused-as-ahead microblocks are remembered at once (a validator's memory stays bounded). */
const AHEAD_MAX_NODES = 4096;

export class MicroblockGossip {
  #timer: ReturnType<typeof setInterval> | null = null;
  #lastSeq = 0;
  #publishing = false;
  #publishRetryAt = 0;
  #publishBackoffMs = 0;
  /** The highest seq of this node's chain known to be in a certificate (a prefix of the chain). */
  #acked = 0;
  #reofferAt = 0;
  #reofferEpochs = 0;
  #checkAt = 0;
  /** The newest timestamp of this node's chain seen ahead of this clock (stepped back, say), until reached. */
  #aheadOfClock = 0;
  /**
   * Per node, the lowest seq this validator refused only because its timestamp was ahead of
   * this clock by more than max_clock_skew_s, and when it no longer is: fetched then.
   */
  #ahead = new Map<string, { seq: number; validAtMs: number }>();

  constructor(
    private readonly ctx: MeshContext,
    /** Fetches a node's microblocks from a seq (sync.ts), when a batch shows a gap. */
    private readonly want: (nodeId: string, fromSeq: number) => Promise<void>,
  ) {}

  /** Takes every microblock of the mesh in: a validator's part, not an edge's. */
  #subscribed = false;

  /** Takes every node's batches in (validators); once, whatever the validator set does later. */
  subscribe(): void {
    if (this.#subscribed) return;
    this.#subscribed = true;
    this.ctx.net.subscribe(this.ctx.mbTopic, (data) => this.#onBatch(data), () => {});
  }

  /** Offers this node's chain every gossip.batch_max_ms, from its start. */
  start(): void {
    this.#lastSeq = 0;
    this.#timer = setInterval(() => void this.#tick(), this.ctx.node.config.gossip.batch_max_ms);
  }

  async #tick(): Promise<void> {
    await this.publishNew();
    const now = Date.now();
    if (now < this.#checkAt || this.ctx.stopping()) return;
    this.#checkAt = now + CHECK_EVERY_MS;
    this.#fetchNoLongerAhead(now);
    this.#reofferUnfinalized(now);
  }

  /**
   * A validator refused a node's microblock as dated ahead of its clock; now that its clock
   * has reached it, the node's chain is fetched from the first seq this validator lacks
   * (Sync.want, at most once a second per node), until it holds that microblock or gives up.
   */
  #fetchNoLongerAhead(now: number): void {
    const { node } = this.ctx;
    for (const [nodeId, a] of this.#ahead) {
      const have = node.ledger.head(node.mesh, nodeId)?.seq ?? 0;
      if (have >= a.seq || now > a.validAtMs + AHEAD_FETCH_FOR_MS) this.#ahead.delete(nodeId);
      else if (now >= a.validAtMs) void this.want(nodeId, have + 1).catch(() => {});
    }
  }

  /** Remembers a microblock refused as dated ahead of this clock (store(), inside its transaction). */
  #noteAhead(value: unknown): void {
    const mb = value as { node_id?: unknown; seq?: unknown; timestamp?: unknown };
    if (typeof mb.node_id !== "string" || typeof mb.seq !== "number" || typeof mb.timestamp !== "string") return;
    const ts = Date.parse(mb.timestamp);
    if (!Number.isFinite(ts)) return;
    const { node } = this.ctx;
    const cur = this.#ahead.get(mb.node_id);
    // The lowest seq not yet held: an entry already held (a fetch stored up to it) gives way.
    if (cur && mb.seq >= cur.seq && (node.ledger.head(node.mesh, mb.node_id)?.seq ?? 0) < cur.seq) return;
    if (!cur && this.#ahead.size >= AHEAD_MAX_NODES) return;
    this.#ahead.set(mb.node_id, { seq: mb.seq, validAtMs: ts - node.config.mesh.max_clock_skew_s * 1000 });
  }

  /**
   * This node's own microblocks that no certificate includes are offered again, from the
   * first one not included: once this clock reaches the newest timestamp it saw ahead of it
   * (the clock was stepped back: what was offered was likely refused as future_timestamp);
   * and one epoch after the first one's epoch closed (refused, lost, or offered while no
   * validator listened), at most once an epoch, backing off to once every
   * REOFFER_BACKOFF_MAX_EPOCHS epochs while nothing more is included.
   */
  #reofferUnfinalized(now: number): void {
    const { node, builder } = this.ctx;
    // A publishNew still going on would move #lastSeq on past a reset made now: next time.
    if (this.#publishing || this.#lastSeq <= this.#acked) return;
    const included = (seq: number): boolean => {
      const mb = node.ledger.bySeq(node.mesh, node.nodeId, seq);
      return mb !== null && builder.leafIndexOf(mb.id) !== null;
    };
    // Certificates include a prefix of the chain: its end, by bisection over what was offered.
    let lo = this.#acked;
    let hi = this.#lastSeq;
    if (lo < hi && included(lo + 1)) {
      while (lo < hi) {
        const mid = Math.floor((lo + hi + 1) / 2);
        if (included(mid)) lo = mid;
        else hi = mid - 1;
      }
    }
    if (lo > this.#acked) {
      this.#acked = lo;
      this.#reofferEpochs = 0;
      this.#reofferAt = 0;
    }
    const head = node.ledger.head(node.mesh, node.nodeId);
    if (head && Date.parse(head.timestamp) > now) this.#aheadOfClock = Math.max(this.#aheadOfClock, Date.parse(head.timestamp));
    if (this.#lastSeq <= this.#acked) return;
    if (this.#aheadOfClock > 0 && now >= this.#aheadOfClock) {
      this.#aheadOfClock = 0;
      this.#lastSeq = this.#acked;
      return;
    }
    if (now < this.#reofferAt) return;
    const first = node.ledger.bySeq(node.mesh, node.nodeId, this.#acked + 1);
    if (!first) return;
    const { genesis } = node;
    const epochMs = genesis.epoch_duration * 1000;
    const ts = Date.parse(first.timestamp);
    if (now < epochBounds(genesis, epochAt(genesis, ts)).endMs + epochMs) return;
    this.#reofferEpochs = Math.min(REOFFER_BACKOFF_MAX_EPOCHS, Math.max(1, this.#reofferEpochs * 2));
    this.#reofferAt = now + this.#reofferEpochs * epochMs;
    this.#lastSeq = this.#acked; // publishNew offers from the first seq not included
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
          let rec: ReturnType<typeof parseExchangeLine> | null = null;
          try {
            rec = parseExchangeLine(line, `gossip line ${i + 1}`);
            if (rec.kind === "key_certificate") receiver.acceptKeyCert(rec.certificate);
            else {
              const out = receiver.acceptMicroblock(rec.microblock, rec.payload ?? undefined);
              if (out.status === "stored") stored++;
              else if (out.status === "gap") void this.want(out.microblock.node_id, out.have + 1);
              last = out.microblock.seq;
            }
          } catch (e) {
            if (e instanceof MicroblockRejected) {
              verdict = stats.reject(e.reason);
              // Valid but dated ahead of this clock: fetched again once it is not (#fetchNoLongerAhead).
              if (e.reason === "future_timestamp" && rec?.kind === "microblock") this.#noteAhead(rec.microblock);
            }
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
