import { MitigationLogger, MITIGATION_ACTIONS, MITIGATION_SCOPES, mitigationAdvice, type Mitigation, type MitigationAction, type MitigationScope } from "../node/handlers.ts";
import { beforeSigning } from "../mesh/restore-check.ts";
import { parseDuration } from "../encoding/duration.ts";
import { CATEGORIES, type Category } from "../protocol/advisory.ts";
import { CliError, command, commonArgs, context, print, printJson, warning, withNode } from "./common.ts";

export default command({
  meta: { name: "mitigation", description: "Record a mitigation action (block, rate_limit, alert, quarantine)" },
  help: `Chains a record of a mitigation that was applied (or that failed, with --failed),
linked to the threat that caused it with --threat (a microblock id or any external id).
Event type: mitigation.<action>. Prints the new microblock's id. Like dsm emit, it first
checks that the mesh holds no later seq of this node's chain (see dsm recover --help).

--duration (4h, 30m, 7d) and --scope (ip: one address, range: a CIDR; default range when
the target has a "/", else ip) are recorded with it. A block that succeeded with a
--duration also tells the mesh: a threat.advisory for the target (its ttl the duration,
60s to 30d; its category --category, default other; its evidence the mitigation's id, and
--threat when that is a microblock id), written right after it, its id printed on a second
line. The target is in clear in the advisory, as sharing it is its purpose, even under
privacy.anonymize_ips, which keeps hashing it in the mitigation record. A target inside
intel.local_networks (a local or victim host) is recorded but not advised (a warning says
so); --failed advises nothing.

OUTPUT  The mitigation's id, then the advisory's when one was made. --json:
{"id", "seq", "node_id", "event_type", "advisory": {"id", "seq", "indicators"} or null}.

EXAMPLES
  dsm mitigation --action block --target 203.0.113.9 --threat 9c1e...
  dsm mitigation --action block --target 203.0.113.9 --duration 4h --category c2
  dsm mitigation --action block --target 198.51.100.0/24 --scope range --duration 1d
  nft add element inet filter blocklist { $IP } || dsm mitigation --action block --target $IP --failed`,
  args: {
    ...commonArgs,
    action: { type: "enum", options: [...MITIGATION_ACTIONS], required: true, description: "What was done" },
    target: { type: "string", required: true, description: "What it was done to (IP, range, host, flow, user...)", valueHint: "TARGET" },
    threat: { type: "string", description: "Id of the event that caused it", valueHint: "ID" },
    failed: { type: "boolean", description: "The action failed" },
    reason: { type: "string", description: "Free-text reason or error message", valueHint: "TEXT" },
    duration: { type: "string", description: "How long it holds (90s, 30m, 4h, 7d); a block advises the mesh for that long", valueHint: "DURATION" },
    scope: { type: "enum", options: [...MITIGATION_SCOPES], description: "The target is one address (ip) or a CIDR range (range)" },
    category: { type: "enum", options: [...CATEGORIES], description: "Category of the advisory a block with --duration makes (default other)" },
  },
  async run({ args }) {
    const ctx = context(args);
    let duration: number | undefined;
    if (args.duration !== undefined) {
      const d = parseDuration(args.duration);
      if (d === null) throw new CliError(`--duration must be a duration such as 90s, 30m, 4h, 1h30m or 7d, got "${args.duration}"`);
      duration = d;
    }
    const m: Mitigation = {
      action: args.action as MitigationAction,
      target: args.target,
      success: !args.failed,
      reason: args.reason,
      duration,
      scope: args.scope as MitigationScope | undefined,
      category: args.category as Category | undefined,
    };
    if (args.category !== undefined && (m.action !== "block" || duration === undefined)) {
      throw new CliError("--category is the category of the advisory that a block with --duration makes: give --action block --duration too");
    }
    // A target the advisory cannot carry is refused before anything is signed.
    try {
      mitigationAdvice(m, ctx.config.intel.local_networks);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    await withNode(ctx, async (node) => {
      await beforeSigning(node, { warn: warning });
      const r = await new MitigationLogger(node).record(args.threat ?? null, m);
      if (r.noAdvisory) warning(`dsm mitigation: no advisory: ${r.noAdvisory}`);
      const mb = r.mitigation;
      if (ctx.json) {
        const advisory = r.advisory && { id: r.advisory.id, seq: r.advisory.seq, indicators: r.indicators };
        printJson({ id: mb.id, seq: mb.seq, node_id: mb.node_id, event_type: mb.event_type, advisory });
      } else {
        print(mb.id);
        if (r.advisory) print(r.advisory.id);
      }
    });
  },
});
