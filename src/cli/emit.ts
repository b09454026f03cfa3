import { parseJsonLine } from "../ingest/records.ts";
import { beforeSigning } from "../mesh/restore-check.ts";
import { CliError, command, commonArgs, context, print, printJson, warning, withNode } from "./common.ts";

export default command({
  meta: { name: "emit", description: "Record one event of any type as a signed microblock" },
  help: `Chains one event: --payload is a JSON object (or "-" to read it from stdin),
--event-type names it (1-64 characters of a-z, 0-9, '.', '_', '-'). Prints the new
microblock's id once it is committed to disk.

Before it signs, a node in a mesh with peers checks that the mesh holds no later seq of its
chain (a data dir restored from an older copy would fork it): see dsm recover --help.

EXAMPLES
  dsm emit --event-type honeypot.login --payload '{"user":"root","src_ip":"203.0.113.9"}'
  jq -c . event.json | dsm emit --event-type custom --payload -`,
  args: {
    ...commonArgs,
    "event-type": { type: "string", required: true, description: "Event type, e.g. honeypot.login", valueHint: "TYPE" },
    payload: { type: "string", required: true, description: 'Payload JSON object, or "-" for stdin', valueHint: "JSON" },
  },
  async run({ args }) {
    const ctx = context(args);
    const text = args.payload === "-" ? await Bun.stdin.text() : args.payload;
    let payload: unknown;
    try {
      // The ingest parser: integers beyond 2^53 are kept exactly, as strings.
      payload = parseJsonLine(text.trim());
    } catch (e) {
      throw new CliError(`--payload: ${(e as Error).message}`);
    }
    await withNode(ctx, async (node) => {
      await beforeSigning(node, { warn: warning });
      const mb = await node.createMicroblock({ eventType: args["event-type"], payload });
      if (ctx.json) printJson({ id: mb.id, seq: mb.seq, node_id: mb.node_id, event_type: mb.event_type });
      else print(mb.id);
    });
  },
});
