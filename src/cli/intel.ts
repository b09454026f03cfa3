import { CheckpointBuilder } from "../log/builder.ts";
import { queryIntel, type IntelQuery } from "../intel/query.ts";
import { CATEGORIES, type Category, indicatorText, parseIndicatorText } from "../protocol/advisory.ts";
import { CliError, command, commonArgs, context, print, printJson, timeArg, withNode } from "./common.ts";

export default command({
  meta: { name: "intel", description: "Query the mesh's finalized threat advisories" },
  help: `The seed's threat-intelligence query (MeshClient.queryThreatIntel in code): finalized
threat.advisory and threat.retract microblocks of every node, newest first, as this
node holds them (a validator from its ledger; an edge from /dsm/intel/1, each checked
against its own verified tree). Advice not yet in a checkpoint is not listed.

  dsm intel query [--category C] [--since AGE|TIME] [--indicator I] [--node NODE] [--kind K] [--json]

--since selects by when a checkpoint finalized the advice (the end of its epoch).
--json: one JSON array of records (id, node_id, epoch, finalized_at, timestamp, kind,
indicators, category, severity, confidence, ttl, until, evidence, reason, rule).

EXAMPLES
  dsm intel query --category c2 --since 24h
  dsm intel query --indicator ip:203.0.113.9 --json | jq '.[].node_id'`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "query (the default)", valueHint: "ACTION" },
    category: { type: "enum", options: [...CATEGORIES], description: "Only advisories of this category", valueHint: "CATEGORY" },
    since: { type: "string", description: "Only finalized at or after: RFC 3339 time or an age (30m, 2h, 7d)", valueHint: "TIME" },
    indicator: { type: "string", description: "Only those naming this indicator (ip:203.0.113.9, domain:..., a bare address)", valueHint: "INDICATOR" },
    node: { type: "string", description: "Only this reporter (node id or prefix)", valueHint: "NODE" },
    kind: { type: "enum", options: ["advisory", "retract"], description: "Only advisories or only retractions", valueHint: "KIND" },
  },
  async run({ args }) {
    const ctx = context(args);
    if (args.action !== undefined && args.action !== "query") throw new CliError(`unknown action "${args.action}": query`);
    const q: IntelQuery = {};
    if (args.category) q.category = args.category as Category;
    const since = timeArg(args.since, "since");
    if (since !== undefined) q.sinceMs = since;
    if (args.node) {
      if (!/^[0-9a-f]{1,64}$/.test(args.node)) throw new CliError("--node must be a node id or a prefix of one (hex)");
      q.nodeId = args.node;
    }
    if (args.kind) q.kind = args.kind as "advisory" | "retract";
    if (args.indicator) {
      try {
        q.indicator = indicatorText(parseIndicatorText(args.indicator));
      } catch (e) {
        throw new CliError((e as Error).message);
      }
    }
    await withNode(
      ctx,
      (node) => {
        const builder = new CheckpointBuilder(node.ledger, node.policy);
        const records = queryIntel(builder.intel.sinceEpoch(0), node.genesis, q);
        if (ctx.json) return printJson(records);
        if (records.length === 0) return print("no finalized advisory matches");
        for (const r of records) {
          const what = r.indicators.map(indicatorText).join(" ");
          const how = r.kind === "advisory" ? `${r.category}/${r.severity} until ${r.until}` : "retraction";
          print(`${r.finalized_at}  ${r.kind === "advisory" ? "advise " : "retract"}  ${what}  ${how}  by ${r.node_id.slice(0, 16)}…  ${r.id.slice(0, 16)}…`);
        }
      },
      { readonly: true },
    );
  },
});
