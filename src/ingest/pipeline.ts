// dsm ingest as a library: lines in, microblocks out, with group commit. A line is
// acknowledged (its id reported) only after the transaction holding it has committed.
//
// With `worker: true` the per-line work (parse, map, anonymise, canonicalise, hash)
// runs on a second thread while this one signs and commits: on a 2-core SBC that is
// the difference between the two halves of the work adding up and overlapping.
import { letSignalsIn } from "../runtime/yield.ts";
import { LineSplitter } from "./lines.ts";
import { type LineResult, type PreparedEvent, prepareEvent, prepareLine, seal } from "./prepare.ts";
import { ADVISORY_EVENT, type Indicator, makeAdvisory } from "../protocol/advisory.ts";
import type { CompiledRules, RuleEngine } from "../intel/rules.ts";
import type { FromWorker, ToWorker } from "./prepare-worker.ts";
import type { InputFormat } from "./records.ts";
import type { EventSink } from "./sink.ts";
import { workerUrl } from "../runtime/worker-url.ts";

export interface IngestOptions {
  format: InputFormat;
  maxLineBytes: number;
  batchMaxEvents: number;
  batchMaxMs: number;
  /** One JSON result per input line on stdout. */
  json: boolean;
  out: (text: string) => void;
  err: (text: string) => void;
  /** Prepare lines on a worker thread (the CLI does; tests of the in-process path do not). */
  worker?: boolean;
  /** intel.rules: matched on the clear records; each advisory is written right after the batch holding its evidence. */
  intel?: IngestIntel;
}

export interface IngestIntel {
  rules: CompiledRules;
  engine: RuleEngine;
  /** The wall clock (ms) that advisories' freshness is judged by; Date.now by default. */
  now?: () => number;
}

export interface IngestStats {
  lines: number;
  stored: number;
  rejected: number;
  empty: number;
  /** threat.advisory microblocks that intel.rules made. */
  advisories: number;
  firstSeq: number | null;
  lastSeq: number | null;
}

/** Set stopped and call cancel() (from a signal handler) to end consume() after the current read. */
export interface StopSignal {
  stopped: boolean;
  cancel?: () => void;
}

const WORKER_URL = workerUrl("ingest/prepare-worker.ts", new URL("./prepare-worker.ts", import.meta.url));

/**
 * Chunks handed to the worker and not yet answered. Enough for the worker to prepare
 * the next whole batch while this thread commits the current one (a batch of 1000 EVE
 * lines is about 12 chunks of 64 KiB), and a bound on memory when input outruns commits.
 */
const MAX_CHUNKS_IN_FLIGHT = 32;

interface Reader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>;
}

export class IngestPipeline {
  readonly stats: IngestStats = { lines: 0, stored: 0, rejected: 0, empty: 0, advisories: 0, firstSeq: null, lastSeq: null };
  #pending: LineResult[] = [];
  #events = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #firstPendingAt = 0;
  #flushing: Promise<void> = Promise.resolve();
  #fatal: Error | null = null;
  #worker: Worker | null = null;
  #inFlight = 0;
  #uncommitted = 0;
  #wake: (() => void) | null = null;
  #ended = new Map<string, () => void>();
  #signal: StopSignal | null = null;
  /** One batch is still committed after a stop: the one whose lines were read first. */
  #stopCommitted = false;

  constructor(private readonly sink: EventSink, private readonly opts: IngestOptions) {}

  get fatal(): Error | null {
    return this.#fatal;
  }

  /** Reads one stream to its end (or until stop() cancels it). */
  async consume(stream: ReadableStream<Uint8Array>, source: string, signal?: StopSignal): Promise<void> {
    const reader = stream.getReader();
    if (signal) {
      this.#signal = signal;
      signal.cancel = () => {
        void reader.cancel().catch(() => undefined);
        // Whatever the worker still hands back was never acknowledged: it is dropped, and
        // nothing waits for it.
        this.#wakeReader();
        for (const done of this.#ended.values()) done();
        this.#ended.clear();
      };
    }
    try {
      if (this.opts.worker) await this.#consumeOnWorker(reader, source, signal);
      else await this.#consumeHere(reader, source, signal);
    } finally {
      reader.releaseLock();
    }
    if (this.#fatal) throw this.#fatal;
  }

  async #consumeHere(reader: Reader, source: string, signal?: StopSignal): Promise<void> {
    const splitter = new LineSplitter(this.opts.maxLineBytes);
    const { format } = this.opts;
    const anonymize = this.sink.anonymizer;
    const rules = this.opts.intel?.rules ?? null;
    const onLine = (l: { no: number; text?: string; error?: string }) =>
      this.#accept(prepareLine(source, l.no, l.text, l.error, format, anonymize, rules));
    while (!this.#fatal && !signal?.stopped) {
      const { value, done } = await reader.read();
      if (done || !value) break;
      splitter.push(value, onLine);
      await this.#afterChunk();
      await letSignalsIn();
    }
    if (!signal?.stopped) splitter.end(onLine);
  }

  async #consumeOnWorker(reader: Reader, source: string, signal?: StopSignal): Promise<void> {
    const worker = this.#startWorker();
    while (!this.#fatal && !signal?.stopped) {
      const { value, done } = await reader.read();
      if (done || !value) break;
      // Bounded read-ahead: chunks on the worker, and prepared events not yet committed.
      while ((this.#inFlight >= MAX_CHUNKS_IN_FLIGHT || this.#uncommitted >= 4 * this.opts.batchMaxEvents) && !this.#fatal && !signal?.stopped) {
        await new Promise<void>((r) => (this.#wake = r));
      }
      // Stopped while waiting: what the worker would hand back now is dropped anyway.
      if (signal?.stopped) break;
      // A copy, transferred: the reader may reuse its buffer.
      const bytes = value.slice();
      this.#inFlight += 1;
      worker.postMessage({ kind: "chunk", source, bytes } satisfies ToWorker, [bytes.buffer]);
      this.#checkAge();
      await letSignalsIn();
    }
    // Stopping: what the worker still holds is dropped (never acknowledged), and so is a
    // partial last line; what was handed over before the signal is committed by finish().
    if (signal?.stopped) return;
    // The end of the stream: a last line without a newline still counts.
    const ended = new Promise<void>((r) => this.#ended.set(source, r));
    worker.postMessage({ kind: "end", source } satisfies ToWorker);
    await ended;
  }

  #startWorker(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(WORKER_URL);
    worker.postMessage({
      kind: "init",
      format: this.opts.format,
      maxLineBytes: this.opts.maxLineBytes,
      anonymizeSecret: this.sink.anonymizeSecret,
      rules: this.opts.intel?.rules ?? null,
    } satisfies ToWorker);
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const msg = e.data;
      // Stopping: lines prepared but not yet committed were never acknowledged; drop them.
      const results = this.#signal?.stopped ? [] : msg.results;
      for (const r of results) {
        // Prepared by our own worker from our own code: trusted like a local prepare.
        if ("event" in r) seal(r.event);
        this.#accept(r);
      }
      this.#checkAge();
      if (msg.kind === "results") {
        this.#inFlight -= 1;
        this.#wakeReader();
      } else {
        this.#ended.get(msg.source)?.();
        this.#ended.delete(msg.source);
      }
    };
    worker.onerror = (e) => {
      this.#fatal ??= new Error(`ingest worker failed: ${e.message}`);
      this.#wakeReader();
      for (const done of this.#ended.values()) done();
    };
    this.#worker = worker;
    return worker;
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async #afterChunk(): Promise<void> {
    this.#checkAge();
    // Backpressure: do not read further ahead than the batch being committed.
    await this.#flushing;
  }

  /** A stream that always has data can starve the batchMaxMs timer: check the age on every chunk too. */
  #checkAge(): void {
    if (this.#events > 0 && performance.now() - this.#firstPendingAt >= this.opts.batchMaxMs) void this.flush();
  }

  #accept(r: LineResult): void {
    this.stats.lines += 1;
    if ("skipped" in r) {
      this.stats.empty += 1;
      this.opts.err(`dsm ingest: ${r.source}:${r.line}: empty line skipped`);
    } else if ("error" in r) {
      this.stats.rejected += 1;
      this.opts.err(`dsm ingest: ${r.source}:${r.line}: ${r.error}`);
    }
    this.#pending.push(r);
    if (!("event" in r)) {
      // A result with no event is reported in input order, so after any batch still committing.
      if (this.#events === 0) void this.flush();
      return;
    }
    this.#events += 1;
    this.#uncommitted += 1;
    if (this.#events >= this.opts.batchMaxEvents) void this.flush();
    else if (this.#events === 1) {
      this.#firstPendingAt = performance.now();
      this.#timer = setTimeout(() => void this.flush(), this.opts.batchMaxMs);
    }
  }

  /** Commits everything pending; resolves once it is durable and reported. */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const batch = this.#pending;
    this.#pending = [];
    this.#events = 0;
    if (batch.length === 0) return this.#flushing;
    const events = batch.flatMap((p) => ("event" in p ? [p.event] : []));
    this.#flushing = this.#flushing.then(async () => {
      if (this.#fatal) return;
      // Between commits, with a worker's answers always queued: the one point a signal
      // handler is sure to get in.
      await letSignalsIn();
      // Batches queued behind the one committing when a signal came were never
      // acknowledged: dropped, so the stop takes one commit, not the whole read-ahead.
      if (this.#signal?.stopped && this.#stopCommitted) {
        this.#uncommitted -= events.length;
        return;
      }
      if (this.#signal?.stopped) this.#stopCommitted = true;
      try {
        const mbs = await this.sink.append(events);
        this.#emit(batch, mbs);
        // After their evidence, never in the same batch: an advisory names committed ids.
        const advice = this.#advise(batch, mbs);
        if (advice.length > 0) this.#emitAdvisories(advice, await this.sink.append(advice.map((a) => a.event)));
      } catch (e) {
        this.#fatal = e as Error;
      } finally {
        this.#uncommitted -= events.length;
        this.#wakeReader();
      }
    });
    return this.#flushing;
  }

  #emit(batch: LineResult[], mbs: { id: string; seq: number }[]): void {
    let i = 0;
    const lines: string[] = [];
    for (const p of batch) {
      const base = { source: p.source, line: p.line };
      if ("event" in p) {
        const mb = mbs[i++]!;
        this.stats.stored += 1;
        this.stats.firstSeq ??= mb.seq;
        this.stats.lastSeq = mb.seq;
        if (this.opts.json) lines.push(JSON.stringify({ ...base, id: mb.id, seq: mb.seq }));
      } else if (this.opts.json) {
        lines.push(JSON.stringify("error" in p ? { ...base, error: p.error } : { ...base, skipped: p.skipped }));
      }
    }
    if (lines.length) this.opts.out(lines.join("\n") + "\n");
  }

  /** The advisories the rule hits of a committed batch make (none while a fresher one stands). */
  #advise(batch: LineResult[], mbs: { id: string }[]): { event: PreparedEvent; rule: string; indicators: Indicator[]; evidence: string[] }[] {
    const intel = this.opts.intel;
    if (!intel) return [];
    const now = (intel.now ?? Date.now)();
    const out: { event: PreparedEvent; rule: string; indicators: Indicator[]; evidence: string[] }[] = [];
    let i = 0;
    for (const p of batch) {
      if (!("event" in p)) continue;
      const id = mbs[i++]!.id;
      for (const hit of p.hits ?? []) {
        const input = intel.engine.observe(hit, id, now);
        if (input === null) continue;
        try {
          const payload = makeAdvisory(input);
          out.push({ event: prepareEvent(ADVISORY_EVENT, payload, this.sink.anonymizer), rule: input.rule!, indicators: payload.indicators, evidence: payload.evidence });
        } catch (e) {
          this.opts.err(`dsm ingest: ${p.source}:${p.line}: rule ${input.rule}: no advisory: ${(e as Error).message}`);
        }
      }
    }
    return out;
  }

  #emitAdvisories(advice: { rule: string; indicators: Indicator[]; evidence: string[] }[], mbs: { id: string; seq: number }[]): void {
    this.stats.advisories += advice.length;
    if (!this.opts.json) return;
    const lines = advice.map((a, i) => JSON.stringify({ advisory: { id: mbs[i]!.id, seq: mbs[i]!.seq, rule: a.rule, indicators: a.indicators, evidence: a.evidence } }));
    this.opts.out(lines.join("\n") + "\n");
  }

  /** Commits what is pending, stops the worker, and returns the totals. */
  async finish(): Promise<IngestStats> {
    await this.flush();
    this.close();
    if (this.#fatal) throw this.#fatal;
    return this.stats;
  }

  /** Stops the worker thread (idempotent); a live worker would keep the process running. */
  close(): void {
    this.#worker?.terminate();
    this.#worker = null;
  }
}
