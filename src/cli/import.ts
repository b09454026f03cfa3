import { letSignalsIn } from "../runtime/yield.ts";
import { onStopSignals } from "./signals.ts";
import * as fs from "node:fs";
import { MAX_HELD, type Missing, ReorderBuffer } from "../chain/reorder.ts";
import { MAX_EXCHANGE_LINE_BYTES } from "../chain/exchange.ts";
import { LineSplitter } from "../ingest/lines.ts";
import type { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, context, EXIT, printJson, warn, withNode } from "./common.ts";

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
      const quarantined = quarantineForks(imp.forks);
      if (ctx.json) printJson({ ok: r.ok && !stop.signal, ...s, stopped_by: stop.signal, missing: r.missing, forks: imp.forks, quarantine: quarantined });
      return stop.exitCode(r.ok ? EXIT.ok : EXIT.partial);
    });
    await stop.finish(code);
  },
});

/** dsm import's reading side: streams split into lines, one commit per chunk read, stoppable by a signal. */
export class Importer {
  readonly #buffer: ReorderBuffer;

  constructor(node: DSMNode) {
    this.#buffer = new ReorderBuffer(node.ledger, node.policy, {
      maxClockSkewMs: node.config.mesh.max_clock_skew_s * 1000,
      notAttested: (id) => node.notAttested(id),
      report: (line) => warn(`dsm import: ${line}`),
    });
  }

  get stats(): ReorderBuffer["stats"] {
    return this.#buffer.stats;
  }

  get forks(): ReorderBuffer["forks"] {
    return this.#buffer.forks;
  }

  async consume(stream: ReadableStream<Uint8Array>, source: string, stop?: { stopped: boolean }): Promise<void> {
    const splitter = new LineSplitter(MAX_EXCHANGE_LINE_BYTES);
    const onLine = (e: { no: number; text: string } | { no: number; error: string }) => this.#buffer.line(e, source);
    // One commit (one fsync) per chunk read, not per line: the receiver checks a line fully
    // before it writes anything, so a rejected line still leaves nothing behind.
    for await (const chunk of stream) {
      this.#buffer.batch(() => splitter.push(chunk, onLine));
      await letSignalsIn();
      // Stopped: what was committed stays; a partial last line is dropped, not guessed at.
      if (stop?.stopped) return;
    }
    this.#buffer.batch(() => splitter.end(onLine));
  }

  /** End of all input: see ReorderBuffer.finish. */
  finish(): { ok: boolean; missing: Missing[] } {
    return this.#buffer.finish();
  }
}

/**
 * On a validator, each forked node gets a signed quarantine record (reason fork) from its
 * first forked seq, so the quarantine travels with the records, not only with this ledger's
 * evidence. On other nodes the fork evidence alone keeps the node out of checkpoints.
 */
/**
 * Fork evidence proves itself: it quarantines the node at the fork seq here and on every
 * node the evidence reaches, with no request and no vote. Says so, once per node.
 */
function quarantineForks(forks: { node_id: string; seq: number }[]): { node_id: string; from_seq: number; reason: "fork" }[] {
  const first = new Map<string, number>();
  for (const f of forks) if (!first.has(f.node_id) || first.get(f.node_id)! > f.seq) first.set(f.node_id, f.seq);
  return [...first].map(([nodeId, seq]) => {
    warn(`dsm import: node ${nodeId.slice(0, 16)}… quarantined from seq ${seq} by fork evidence (two valid microblocks for one seq)`);
    return { node_id: nodeId, from_seq: seq, reason: "fork" as const };
  });
}
