import { type StoredMicroblock, withoutLocalFields } from "../ledger/ledger.ts";
import type { DSMNode } from "../node/node.ts";
import { type DsmArgDef, optionValues } from "./argv.ts";
import { CliError, command, commonArgs, context, intArg, print, printJson, timeArg, withNode } from "./common.ts";

const ARGS = {
  ...commonArgs,
  node: { type: "string", description: "Only this node (id or unique prefix)", valueHint: "NODE" },
  "from-seq": { type: "string", description: "Only seq >= N", valueHint: "N" },
  "to-seq": { type: "string", description: "Only seq <= N", valueHint: "N" },
  type: {
    type: "string",
    multiple: true,
    description: "Only this event type and those below it (suricata: suricata.*), or TYPE* for any type starting TYPE; repeat for any of several",
    valueHint: "TYPE",
  },
  since: { type: "string", description: "Only at or after: RFC 3339 time or an age (30m, 2h, 7d)", valueHint: "TIME" },
  until: { type: "string", description: "Only before: RFC 3339 time or an age", valueHint: "TIME" },
  limit: { type: "string", description: "At most N rows (default 50; 0 = all)", valueHint: "N" },
  "oldest-first": { type: "boolean", description: "Oldest first" },
} as const satisfies Record<string, DsmArgDef>;

/** The --type values: an event type, optionally ending in "*" (any type starting with the rest). */
function typeArgs(values: string[]): string[] {
  for (const v of values) {
    if (!/^[a-z0-9._-]{0,64}\*?$/.test(v) || v === "") {
      throw new CliError(`--type "${v}": an event type (a-z, 0-9, '.', '_', '-'), or a prefix of one ending in "*"`);
    }
  }
  return values;
}

export default command({
  meta: { name: "log", description: "List microblocks, newest first, with filters" },
  help: `Lists stored microblocks (this node's and any imported), newest first.
Human output: one line each: seq, timestamp, event type, id, node. --json: one JSON
object per line (NDJSON), streamed, so --limit 0 is safe on a large ledger.

--type may be repeated: --type zeek.notice --type 'suricata.*' lists either. A type
matches itself and the types below it (suricata: suricata and suricata.alert); a type
ending in "*" matches every type that starts with the rest (suricata.*: suricata.alert,
not suricata itself).

EXAMPLES
  dsm log --type suricata.alert --since 1h
  dsm log --type 'suricata.*' --type mitigation.block --limit 0
  dsm log --node 3fa2 --from-seq 100 --to-seq 200 --oldest-first --json`,
  args: ARGS,
  async run({ args, rawArgs }) {
    const ctx = context(args);
    await withNode(ctx, (node) => {
      const nodeId = args.node ? resolveNode(node, args.node) : undefined;
      const limit = intArg(args.limit, "limit") ?? 50;
      const base = {
        nodeId,
        fromSeq: intArg(args["from-seq"], "from-seq", 1),
        toSeq: intArg(args["to-seq"], "to-seq", 1),
        eventType: typeArgs(optionValues(ARGS, rawArgs, "type")),
        sinceMs: timeArg(args.since, "since"),
        untilMs: timeArg(args.until, "until"),
        descending: !args["oldest-first"],
      };
      // Paged, so --limit 0 on millions of rows runs in flat memory.
      for (const page of node.ledger.listPages({ ...base, limit: limit === 0 ? undefined : limit })) {
        for (const mb of page) (ctx.json ? printJson(withoutLocalFields(mb)) : print(line(mb)));
      }
    }, { readonly: true });
  },
});

export function resolveNode(node: DSMNode, prefix: string): string {
  if (!/^[0-9a-f]{1,64}$/.test(prefix)) throw new CliError(`node "${prefix}" is not a hex node id or prefix`);
  const matches = node.ledger.resolveNodeId(prefix);
  if (matches.length === 0) {
    if (prefix.length === 64) return prefix;
    throw new CliError(`no node id starts with ${prefix}`);
  }
  if (matches.length > 1) throw new CliError(`node prefix ${prefix} is ambiguous (${matches.length} nodes)`);
  return matches[0]!;
}

function line(mb: StoredMicroblock): string {
  return `${String(mb.seq).padStart(8)}  ${mb.timestamp}  ${mb.event_type.padEnd(22)}  ${mb.id.slice(0, 16)}  ${mb.node_id.slice(0, 12)}`;
}


