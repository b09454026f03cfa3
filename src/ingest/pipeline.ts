// dsm ingest as a library: lines in, microblocks out, with group commit. A line is
// acknowledged (its id reported) only after the transaction holding it has committed.
import type { DSMNode, PreparedEvent } from "../node/node.ts";
import { LineSplitter } from "./lines.ts";
import { type InputFormat, parseJsonLine } from "./records.ts";

export interface IngestOptions {
  format: InputFormat;
  maxLineBytes: number;
  batchMaxEvents: number;
  batchMaxMs: number;
  /** One JSON result per input line on stdout. */
  json: boolean;
  out: (text: string) => void;
  err: (text: string) => void;
}

export interface IngestStats {
  lines: number;
  stored: number;
  rejected: number;
  empty: number;
  firstSeq: number | null;
  lastSeq: number | null;
}

/** Set stopped and call cancel() (from a signal handler) to end consume() after the current read. */
export interface StopSignal {
  stopped: boolean;
  cancel?: () => void;
}

type Pending = { source: string; line: number; event?: PreparedEvent; error?: string; skipped?: string };

export class IngestPipeline {
  readonly stats: IngestStats = { lines: 0, stored: 0, rejected: 0, empty: 0, firstSeq: null, lastSeq: null };
  #pending: Pending[] = [];
  #events = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #firstPendingAt = 0;
  #flushing: Promise<void> = Promise.resolve();
  #fatal: Error | null = null;

  constructor(private readonly node: DSMNode, private readonly opts: IngestOptions) {}

  get fatal(): Error | null {
    return this.#fatal;
  }

  /** Reads one stream to its end (or until stop() cancels it). */
  async consume(stream: ReadableStream<Uint8Array>, source: string, signal?: StopSignal): Promise<void> {
    const splitter = new LineSplitter(this.opts.maxLineBytes);
    const reader = stream.getReader();
    if (signal) signal.cancel = () => void reader.cancel().catch(() => undefined);
    const onLine = (e: { no: number; text?: string; error?: string }) => this.#line(source, e.no, e.text, e.error);
    try {
      while (!this.#fatal && !signal?.stopped) {
        const { value, done } = await reader.read();
        if (done) break;
        splitter.push(value, onLine);
        // A stream that always has data can starve the batchMaxMs timer: check the age here too.
        if (this.#events > 0 && performance.now() - this.#firstPendingAt >= this.opts.batchMaxMs) void this.flush();
        // Backpressure: do not read further ahead than the batch being committed.
        await this.#flushing;
      }
      if (!signal?.stopped) splitter.end(onLine);
    } finally {
      reader.releaseLock();
    }
    if (this.#fatal) throw this.#fatal;
  }

  #line(source: string, line: number, text: string | undefined, error: string | undefined): void {
    this.stats.lines += 1;
    if (error === undefined && text !== undefined && text.trim() === "") {
      this.stats.empty += 1;
      this.opts.err(`dsm ingest: ${source}:${line}: empty line skipped`);
      this.#queue({ source, line, skipped: "empty line" });
      return;
    }
    let event: PreparedEvent | undefined;
    if (error === undefined) {
      try {
        event = this.node.prepareRecord(parseJsonLine(text!), this.opts.format);
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
      }
    }
    if (error !== undefined) {
      this.stats.rejected += 1;
      this.opts.err(`dsm ingest: ${source}:${line}: ${error}`);
      this.#queue({ source, line, error });
      return;
    }
    this.#pending.push({ source, line, event });
    this.#events += 1;
    if (this.#events >= this.opts.batchMaxEvents) void this.flush();
    else if (this.#events === 1) {
      this.#firstPendingAt = performance.now();
      this.#timer = setTimeout(() => void this.flush(), this.opts.batchMaxMs);
    }
  }

  /** A result with no event: reported in input order, so after any batch still committing. */
  #queue(p: Pending): void {
    this.#pending.push(p);
    if (this.#events === 0) void this.flush();
  }

  /** Commits everything pending; resolves once it is durable and reported. */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const batch = this.#pending;
    this.#pending = [];
    this.#events = 0;
    if (batch.length === 0) return this.#flushing;
    const events = batch.filter((p) => p.event).map((p) => p.event!);
    this.#flushing = this.#flushing.then(async () => {
      if (this.#fatal) return;
      try {
        const mbs = await this.node.append(events);
        this.#emit(batch, mbs);
      } catch (e) {
        this.#fatal = e as Error;
      }
    });
    return this.#flushing;
  }

  #emit(batch: Pending[], mbs: { id: string; seq: number }[]): void {
    let i = 0;
    const lines: string[] = [];
    for (const p of batch) {
      if (p.event) {
        const mb = mbs[i++]!;
        this.stats.stored += 1;
        this.stats.firstSeq ??= mb.seq;
        this.stats.lastSeq = mb.seq;
        if (this.opts.json) lines.push(JSON.stringify({ source: p.source, line: p.line, id: mb.id, seq: mb.seq }));
      } else if (this.opts.json) {
        lines.push(JSON.stringify(p.error !== undefined ? { source: p.source, line: p.line, error: p.error } : { source: p.source, line: p.line, skipped: p.skipped }));
      }
    }
    if (lines.length) this.opts.out(lines.join("\n") + "\n");
  }

  async finish(): Promise<IngestStats> {
    await this.flush();
    if (this.#fatal) throw this.#fatal;
    return this.stats;
  }
}
