import * as fs from "node:fs";
import { type IngestIntel, IngestPipeline } from "../ingest/pipeline.ts";
import { compileRules, RuleEngine } from "../intel/rules.ts";
import { recentRuleAdvisories } from "../intel/recent.ts";
import type { DSMNode } from "../node/node.ts";
import type { InputFormat } from "../ingest/records.ts";
import { CliError, command, commonArgs, context, EXIT, warn, warning, withNode } from "./common.ts";
import { beforeSigning } from "../mesh/restore-check.ts";
import { useWorkers } from "../runtime/worker-url.ts";
import { onStopSignals } from "./signals.ts";

export default command({
  meta: { name: "ingest", description: "Turn JSON lines (Suricata EVE, Zeek, any JSON) into signed microblocks" },
  help: `Reads JSON lines from the FILEs, or from stdin when none is given, and chains each
as a signed microblock. Streams: it keeps up with \`tail -F\` and commits within
ledger.batch_max_ms (50 ms) of a line arriving, or every ledger.batch_max_events (1000)
lines, one fsync per batch. A line is acknowledged only once committed.

Formats (--format, default ingest.format = auto, detected per line):
  suricata  Suricata EVE JSON: alert/drop (severity 1-3 -> critical/high/medium),
            anomaly, dns, http, tls, flow, ...   event type suricata.<event_type>
  zeek      Zeek JSON logs: notice, weird, intel, conn, dns, ssl, ...   zeek.<log>
  json      any JSON object                                              json
Integers too large for a double (Suricata's 64-bit flow_id) are kept exactly, as strings.
With privacy.anonymize_ips, IP addresses are replaced by a keyed hash before hashing.

THREAT ADVISORIES  The rules of intel.rules (see config/dsm.yaml) run on each record before
it is anonymised: a Suricata alert of chosen severities, categories or signatures, a Zeek
notice or intel hit, or N of them from one address within a window, makes a threat.advisory
microblock naming the indicator in clear, with the matching events' microblock ids as its
evidence, written right after them. One per indicator per rule until half its ttl has
passed, across restarts (this node's recent advisories are read back from its ledger).
Addresses in intel.local_networks are never advised.

Before the first line is signed, a node in a mesh with peers checks that the mesh holds no
later seq of its chain (the running dsm run's check, or its own, waiting at most 2 s for a
peer); a data dir restored from an older copy is refused: see dsm recover --help.

Bad lines never stop the stream and are never partly stored: malformed JSON, non-objects,
lines over ingest.max_line_bytes, invalid UTF-8 get one stderr line
"dsm ingest: SOURCE:LINE: reason" and are counted. Empty lines are reported and skipped.

OUTPUT  A summary on stderr at the end (lines stored, rejected, empty, advisories made).
With --json, one line per input line on stdout, in input order: {"source","line","id","seq"},
{"source","line","error"}, or {"source","line","skipped":"empty line"}; and after the lines
of a batch, one {"advisory":{"id","seq","rule","indicators","evidence"}} per advisory made.

EXIT STATUS  0 every line stored (empty lines aside), 3 some lines rejected, 1 fatal
error (nothing after the last acknowledged line was stored).
SIGINT/SIGTERM: stop reading within a second, commit and acknowledge what was read, and
exit 130 (SIGINT) or 143 (SIGTERM), never 0, so a script can tell a partial ingest from a
complete one; a second signal exits at once (nothing unacknowledged is lost by it).

EXAMPLES
  tail -F /var/log/suricata/eve.json | dsm ingest --format suricata
  dsm ingest --json /opt/zeek/logs/current/notice.log > ids.ndjson
  DSM_INTEL_RULES='[{name: c2, match: {event_type: suricata.alert, severity: [1]}, category: c2, ttl: 4h}]' dsm ingest eve.json`,
  args: {
    ...commonArgs,
    format: { type: "enum", options: ["auto", "suricata", "zeek", "json"], description: "Input format (default: ingest.format)" },
  },
  async run({ args }) {
    const ctx = context(args);
    const files = (args._ as string[]).filter((f) => f !== "-");
    for (const f of files) {
      if (!fs.existsSync(f)) throw new CliError(`${f}: no such file`);
      if (fs.statSync(f).isDirectory()) throw new CliError(`${f}: is a directory`);
    }
    const useStdin = (args._ as string[]).length === 0 || (args._ as string[]).includes("-");
    const format = (args.format ?? ctx.config.ingest.format) as InputFormat;
    const signal = onStopSignals();
    const code = await withNode(ctx, async (node) => {
      await beforeSigning(node, { warn: warning });
      if (node.identity.kind === "software") warning("dsm ingest: signing with a SOFTWARE identity key (no TPM): protect the data dir like a private key");
      const pipeline = new IngestPipeline(node, {
        format,
        maxLineBytes: ctx.config.ingest.max_line_bytes,
        batchMaxEvents: ctx.config.ledger.batch_max_events,
        batchMaxMs: ctx.config.ledger.batch_max_ms,
        json: ctx.json,
        out: (t) => process.stdout.write(t),
        err: (t) => warn(t),
        worker: useWorkers(),
        intel: intelOf(node),
      });
      const sources: [string, () => ReadableStream<Uint8Array>][] = files.map((f) => [f, () => Bun.file(f).stream()]);
      if (useStdin) sources.push(["stdin", () => Bun.stdin.stream()]);
      try {
        for (const [name, open] of sources) {
          if (signal.stopped) break;
          await pipeline.consume(open(), name, signal);
        }
        const s = await pipeline.finish();
        const range = s.firstSeq !== null ? `, seq ${s.firstSeq}..${s.lastSeq}` : "";
        const unacked = s.lines - s.stored - s.rejected - s.empty;
        const stopped = signal.signal
          ? ` (stopped by ${signal.signal}: the rest of the input was not read${unacked > 0 ? `; ${unacked} lines read ahead were not stored and never acknowledged` : ""})`
          : "";
        const advised = ctx.config.intel.rules.length > 0 ? `, ${s.advisories} advisories` : "";
        warn(`dsm ingest: ${s.lines} lines: ${s.stored} stored, ${s.rejected} rejected, ${s.empty} empty${advised}${range}${stopped}`);
        return signal.exitCode(s.rejected > 0 ? EXIT.partial : EXIT.ok);
      } catch (e) {
        await pipeline.flush().catch(() => undefined);
        const s = pipeline.stats;
        throw new CliError(`${(e as Error).message} (${s.stored} events were stored and acknowledged before this error)`);
      } finally {
        pipeline.close();
      }
    });
    await signal.finish(code);
  },
});

/** intel.rules, with the advisories this node's rules made lately counted as live; undefined without rules. */
function intelOf(node: DSMNode): IngestIntel | undefined {
  const { rules, local_networks } = node.config.intel;
  if (rules.length === 0) return undefined;
  const engine = new RuleEngine(rules);
  const maxTtl = Math.max(...rules.map((r) => r.ttl));
  engine.seed(recentRuleAdvisories(node.ledger, node.mesh, node.nodeId, Date.now(), maxTtl));
  return { rules: compileRules(rules, local_networks), engine };
}
