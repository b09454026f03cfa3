import { MitigationLogger, MITIGATION_ACTIONS, type MitigationAction } from "../node/handlers.ts";
import { beforeSigning } from "../mesh/restore-check.ts";
import { command, commonArgs, context, print, printJson, warning, withNode } from "./common.ts";

export default command({
  meta: { name: "mitigation", description: "Record a mitigation action (block, rate_limit, alert, quarantine)" },
  help: `Chains a record of a mitigation that was applied (or that failed, with --failed),
linked to the threat that caused it with --threat (a microblock id or any external id).
Event type: mitigation.<action>. Prints the new microblock's id. Like dsm emit, it first
checks that the mesh holds no later seq of this node's chain (see dsm recover --help).

EXAMPLES
  dsm mitigation --action block --target 203.0.113.9 --threat 9c1e...
  nft add element inet filter blocklist { $IP } || dsm mitigation --action block --target $IP --failed`,
  args: {
    ...commonArgs,
    action: { type: "enum", options: [...MITIGATION_ACTIONS], required: true, description: "What was done" },
    target: { type: "string", required: true, description: "What it was done to (IP, host, flow, user...)", valueHint: "TARGET" },
    threat: { type: "string", description: "Id of the event that caused it", valueHint: "ID" },
    failed: { type: "boolean", description: "The action failed" },
    reason: { type: "string", description: "Free-text reason or error message", valueHint: "TEXT" },
  },
  async run({ args }) {
    const ctx = context(args);
    await withNode(ctx, async (node) => {
      await beforeSigning(node, { warn: warning });
      const mb = await new MitigationLogger(node).onMitigationExecuted(args.threat ?? null, {
        action: args.action as MitigationAction,
        target: args.target,
        success: !args.failed,
        reason: args.reason,
      });
      if (ctx.json) printJson({ id: mb.id, seq: mb.seq, node_id: mb.node_id, event_type: mb.event_type });
      else print(mb.id);
    });
  },
});
