import { letSignalsIn } from "../runtime/yield.ts";
import { onStopSignals } from "./signals.ts";
import * as fs from "node:fs";
import { type AcceptOutcome, KeyCertRejected, Receiver } from "../chain/accept.ts";
import { DSMValidator, ValidatorKeyError } from "../node/validator.ts";
import type { QuarantineRecord } from "../protocol/quarantine.ts";
import { ExchangeLineError, MAX_EXCHANGE_LINE_BYTES, parseExchangeLine } from "../chain/exchange.ts";
import { MicroblockRejected } from "../protocol/microblock.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { keyNameOf } from "../protocol/keycert.ts";
import { LineSplitter } from "../ingest/lines.ts";
import type { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, context, EXIT, printJson, warn, withNode } from "./common.ts";

/** Microblocks held in memory while waiting for an earlier seq or their key certificate. */
const MAX_HELD = 100_000;

export default command({
  meta: { name: "import", description: "Check and store microblocks exported by other nodes of this mesh" },
  help: `Reads the NDJSON written by \`dsm export\` from the FILEs in order ("-" is stdin) and
puts every record through the full acceptance rules a receiver applies (DESIGN.md
section 5): exact schema, our mesh, id, signature under a valid key certificate, node
admitted and not quarantined, timestamp not too far ahead, payload against payload_hash,
and the chain link. Each line is stored whole or not at all.

A microblock is "stored" when it extends its node's chain, "duplicate" when held already.
One that arrives before an earlier seq (or before its key certificate) is held in memory
(at most ${MAX_HELD}) and stored as soon as the chain reaches it, so files may come in any
order; what is still missing at the end is reported as "node X: missing seq A..B".
Two valid microblocks with the same node and seq are a FORK: both are kept as evidence,
the node is quarantined, and its later microblocks are rejected.

Every rejected line gets one stderr line "dsm import: FILE:LINE: reason: message".
A summary goes to stderr; with --json a summary object goes to stdout.

EXIT STATUS  0 every line stored or duplicate, 3 some lines rejected, a fork was found or
seqs are still missing, 1 fatal error (lines before it stay stored).
SIGINT/SIGTERM: stop within a second, keep what was committed, exit 130 or 143.

EXAMPLES
  dsm import edge1.ndjson edge2.ndjson
  ssh edge1 dsm export --no-payloads | dsm import -`,
  args: { ...commonArgs },
  async run({ args }) {
    const ctx = context(args);
    const names = args._ as string[];
    if (names.length === 0) throw new CliError(`name the files to import, or "-" for stdin`);
    for (const f of names) {
      if (f === "-") continue;
      if (!fs.existsSync(f)) throw new CliError(`${f}: no such file`);
      if (fs.statSync(f).isDirectory()) throw new CliError(`${f}: is a directory`);
    }
    const stop = onStopSignals();
    const code = await withNode(ctx, async (node) => {
      const imp = new Importer(node);
      try {
        for (const name of names) {
          if (stop.stopped) break;
          const stream = name === "-" ? Bun.stdin.stream() : Bun.file(name).stream();
          await imp.consume(stream, name === "-" ? "stdin" : name, stop);
        }
      } catch (e) {
        throw new CliError(`${(e as Error).message} (${imp.stats.stored} microblocks were stored before this error)`);
      }
      const r = imp.finish();
      const s = imp.stats;
      const reasons = Object.entries(s.reasons).map(([k, n]) => `${k}: ${n}`).join(", ");
      warn(
        `dsm import: ${s.lines} lines: ${s.stored} stored` +
          (s.filled ? ` (${s.filled} after waiting)` : "") +
          `, ${s.duplicate} duplicate, ${s.certificates} key certificates, ${s.fork} fork, ${s.rejected} rejected` +
          (reasons ? ` (${reasons})` : "") +
          `, ${s.gap} waiting for missing seqs` +
          (s.empty ? `, ${s.empty} empty` : "") +
          (s.payloads_filled ? `, ${s.payloads_filled} withheld payloads filled in` : "") +
          (stop.signal ? ` (stopped by ${stop.signal}: the rest of the input was not read)` : ""),
      );
      const quarantined = quarantineForks(node, imp.forks);
      if (ctx.json) printJson({ ok: r.ok && !stop.signal, ...s, stopped_by: stop.signal, missing: r.missing, forks: imp.forks, quarantine: quarantined });
      return stop.exitCode(r.ok ? EXIT.ok : EXIT.partial);
    });
    process.exitCode = code;
  },
});

interface Held {
  microblock: Record<string, unknown>;
  payload: Record<string, unknown> | null;
  where: string;
}

interface Missing {
  mesh: string;
  node_id: string;
  from: number;
  to: number;
  held: number;
}

export class Importer {
  readonly stats = {
    lines: 0,
    empty: 0,
    certificates: 0,
    stored: 0,
    /** stored after being held for a missing seq or key certificate */
    filled: 0,
    duplicate: 0,
    /** microblocks still held at the end: their chain has a hole before them */
    gap: 0,
    fork: 0,
    rejected: 0,
    reasons: {} as Record<string, number>,
    payloads_filled: 0,
  };
  readonly forks: { node_id: string; seq: number; stored: string; received: string; where: string }[] = [];
  readonly #receiver: Receiver;
  /** chain ("mesh/node") -> seq -> held microblocks (two different ones for one seq are kept: a fork to detect). */
  readonly #bySeq = new Map<string, Map<number, Held[]>>();
  /** signing key name -> microblocks waiting for its certificate */
  readonly #byKey = new Map<string, Held[]>();
  #held = 0;

  constructor(private readonly node: DSMNode) {
    this.#receiver = new Receiver(node.ledger, node.policy, { maxClockSkewMs: node.config.mesh.max_clock_skew_s * 1000 });
  }

  async consume(stream: ReadableStream<Uint8Array>, source: string, stop?: { stopped: boolean }): Promise<void> {
    const splitter = new LineSplitter(MAX_EXCHANGE_LINE_BYTES);
    const onLine = (e: { no: number; text: string } | { no: number; error: string }) => this.#line(e, source);
    // One commit (one fsync) per chunk read, not per line: the receiver checks a line fully
    // before it writes anything, so a rejected line still leaves nothing behind.
    for await (const chunk of stream) {
      this.#receiver.batch(() => splitter.push(chunk, onLine));
      await letSignalsIn();
      // Stopped: what was committed stays; a partial last line is dropped, not guessed at.
      if (stop?.stopped) return;
    }
    this.#receiver.batch(() => splitter.end(onLine));
  }

  #line(e: { no: number; text: string } | { no: number; error: string }, source: string): void {
    this.stats.lines++;
    const where = `${source}:${e.no}`;
    if ("error" in e) return this.#reject(where, "format", e.error);
    if (e.text.trim() === "") {
      this.stats.empty++;
      return;
    }
    let rec;
    try {
      rec = parseExchangeLine(e.text, where);
    } catch (err) {
      if (err instanceof ExchangeLineError) return this.#reject(where, "format", err.reason);
      throw err;
    }
    if (rec.kind === "key_certificate") this.#certificate(rec.certificate, where);
    else this.#process({ microblock: rec.microblock, payload: rec.payload, where });
  }

  #certificate(value: Record<string, unknown>, where: string): void {
    let name: string;
    try {
      const cert = this.#receiver.acceptKeyCert(value);
      name = keyNameOf(cert.signing_pub);
    } catch (err) {
      if (!(err instanceof KeyCertRejected)) throw err;
      return this.#reject(where, err.reason === "conflict" ? "key_certificate" : err.reason, err.message);
    }
    this.stats.certificates++;
    const waiting = this.#byKey.get(name);
    if (waiting) {
      this.#byKey.delete(name);
      this.#held -= waiting.length;
      for (const h of waiting) this.#process(h, true);
    }
  }

  /** Tries one microblock; when it extends a chain, stores whatever was waiting behind it. */
  #process(h: Held, wasHeld = false): void {
    let o = this.#attempt(h, wasHeld);
    while (o?.status === "stored") {
      const chain = chainKey(o.microblock.mesh, o.microblock.node_id);
      const seqs = this.#bySeq.get(chain);
      const next = seqs?.get(o.microblock.seq + 1);
      if (!seqs || !next) break;
      seqs.delete(o.microblock.seq + 1);
      if (seqs.size === 0) this.#bySeq.delete(chain);
      this.#held -= next.length;
      let advanced: AcceptOutcome | null = null;
      for (const n of next) {
        const r = this.#attempt(n, true);
        if (r?.status === "stored") advanced = r;
      }
      o = advanced;
    }
  }

  #attempt(h: Held, wasHeld: boolean): AcceptOutcome | null {
    let o: AcceptOutcome;
    try {
      o = this.#receiver.acceptMicroblock(h.microblock, h.payload ?? undefined);
    } catch (err) {
      if (!(err instanceof MicroblockRejected)) throw err;
      const key = h.microblock.key;
      if (err.reason === "unknown_key" && typeof key === "string" && /^[0-9a-f]{64}$/.test(key)) {
        // Its certificate may come later (files in any order): wait for it.
        if (this.#hold(h, err.message)) {
          const list = this.#byKey.get(key) ?? [];
          list.push(h);
          this.#byKey.set(key, list);
        }
      } else {
        this.#reject(h.where, err.reason, err.message);
      }
      return null;
    }
    const mb = o.microblock;
    switch (o.status) {
      case "stored":
        this.stats.stored++;
        if (wasHeld) this.stats.filled++;
        break;
      case "duplicate":
        this.stats.duplicate++;
        // A payload withheld by an earlier import arrives now: its hash was checked above.
        if (h.payload !== null && !this.node.ledger.hasPayload(mb.payload_hash)) {
          const text = canonicalize(h.payload);
          this.node.ledger.immediate(() => this.node.ledger.insertPayload(mb.payload_hash, text));
          this.stats.payloads_filled++;
        }
        break;
      case "gap": {
        if (!this.#hold(h, `seq ${mb.seq} is ahead of the stored seq ${o.have}`)) return null;
        const chain = chainKey(mb.mesh, mb.node_id);
        const seqs = this.#bySeq.get(chain) ?? new Map<number, Held[]>();
        const list = seqs.get(mb.seq) ?? [];
        // The same microblock twice while waiting is one microblock.
        if (list.some((x) => x.microblock.id === mb.id)) {
          this.#held--;
          this.stats.duplicate++;
          return o;
        }
        list.push(h);
        seqs.set(mb.seq, list);
        this.#bySeq.set(chain, seqs);
        break;
      }
      case "fork":
        this.stats.fork++;
        this.forks.push({ node_id: mb.node_id, seq: mb.seq, stored: o.existing, received: mb.id, where: h.where });
        warn(
          `dsm import: ${h.where}: FORK: node ${mb.node_id} signed two different microblocks for seq ${mb.seq} ` +
            `(stored ${o.existing.slice(0, 16)}…, received ${mb.id.slice(0, 16)}…): both kept as fork evidence, node quarantined`,
        );
        break;
    }
    return o;
  }

  /** Counts one more held microblock; false (and the line rejected) when the limit is reached. */
  #hold(h: Held, why: string): boolean {
    if (this.#held >= MAX_HELD) {
      this.#reject(h.where, "gap", `${why}, and ${MAX_HELD} microblocks are already held: import the earlier seqs first`);
      return false;
    }
    this.#held++;
    return true;
  }

  #reject(where: string, reason: string, message: string): void {
    this.stats.rejected++;
    this.stats.reasons[reason] = (this.stats.reasons[reason] ?? 0) + 1;
    warn(`dsm import: ${where}: ${reason}: ${message}`);
  }

  /** End of all input: what is still held is reported as missing (or rejected, if it can never be stored). */
  finish(): { ok: boolean; missing: Missing[] } {
    for (const [key, list] of this.#byKey) {
      for (const h of list) this.#reject(h.where, "unknown_key", `no key certificate for signing key ${key.slice(0, 16)}… in the input or the ledger`);
    }
    this.#byKey.clear();
    const missing: Missing[] = [];
    for (const [chain, seqs] of this.#bySeq) {
      const [mesh, nodeId] = chain.split("/") as [string, string];
      if (this.node.ledger.hasForkEvidence(mesh, nodeId)) {
        for (const list of seqs.values()) for (const h of list) this.#reject(h.where, "quarantined", `node ${nodeId.slice(0, 12)}… is quarantined (fork evidence)`);
        continue;
      }
      const sorted = [...seqs.keys()].sort((a, b) => a - b);
      let have = this.node.ledger.head(mesh, nodeId)?.seq ?? 0;
      let i = 0;
      while (i < sorted.length) {
        const from = have + 1;
        const to = sorted[i]! - 1;
        // a run of consecutive held seqs after this hole
        let j = i;
        while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
        let held = 0;
        for (let k = i; k <= j; k++) held += seqs.get(sorted[k]!)!.length;
        missing.push({ mesh, node_id: nodeId, from, to, held });
        this.stats.gap += held;
        have = sorted[j]!;
        i = j + 1;
      }
    }
    this.#bySeq.clear();
    this.#held = 0;
    for (const m of missing) {
      warn(`dsm import: node ${m.node_id}: missing seq ${m.from === m.to ? m.from : `${m.from}..${m.to}`} (${m.held} later microblocks held, not stored)`);
    }
    const ok = this.stats.rejected === 0 && this.stats.fork === 0 && missing.length === 0;
    return { ok, missing };
  }
}

function chainKey(mesh: string, nodeId: string): string {
  return `${mesh}/${nodeId}`;
}

/**
 * On a validator, each forked node gets a signed quarantine record (reason fork) from its
 * first forked seq, so the quarantine travels with the records, not only with this ledger's
 * evidence. On other nodes the fork evidence alone keeps the node out of checkpoints.
 */
function quarantineForks(node: DSMNode, forks: { node_id: string; seq: number; stored: string; received: string }[]): QuarantineRecord[] {
  if (forks.length === 0) return [];
  let v: DSMValidator;
  try {
    v = DSMValidator.open(node);
  } catch (e) {
    if (e instanceof ValidatorKeyError) return [];
    throw e;
  }
  try {
    const first = new Map<string, (typeof forks)[number]>();
    for (const f of forks) if (!first.has(f.node_id) || first.get(f.node_id)!.seq > f.seq) first.set(f.node_id, f);
    return [...first.values()].map((f) => {
      const record = v.quarantine(f.node_id, { action: "quarantine", reason: "fork", fromSeq: f.seq, detail: `two microblocks for seq ${f.seq}: ${f.stored.slice(0, 16)}… and ${f.received.slice(0, 16)}…` });
      warn(`dsm import: node ${f.node_id.slice(0, 16)}… quarantined from seq ${f.seq} (fork); record signed by validator ${v.index}`);
      return record;
    });
  } finally {
    v.close();
  }
}
