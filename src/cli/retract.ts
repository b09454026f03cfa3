import { beforeSigning } from "../mesh/restore-check.ts";
import { makeRetraction, RETRACT_EVENT, SCOPES } from "../protocol/advisory.ts";
import { indicatorArgs } from "./advise.ts";
import { type DsmArgDef, optionValues } from "./argv.ts";
import { CliError, command, commonArgs, context, print, printJson, warning, withNode } from "./common.ts";

const ARGS = {
  ...commonArgs,
  indicator: {
    type: "string",
    multiple: true,
    required: true,
    description: `What to withdraw, SCOPE:VALUE with SCOPE one of ${SCOPES.join(", ")}; repeatable`,
    valueHint: "SCOPE:VALUE",
  },
  reason: { type: "string", description: "Free text, at most 256 characters", valueHint: "TEXT" },
} as const satisfies Record<string, DsmArgDef>;

export default command({
  meta: { name: "retract", description: "Withdraw this node's advice on indicators: signs a threat.retract microblock" },
  help: `Chains one threat.retract: this node withdraws its earlier advice (dsm advise, a
mitigation's, its intel.rules') on the indicators given. Once it is finalized, this node no
longer counts among the reporters of those indicators; a decision that needed it is
withdrawn on every node. Indicators as for dsm advise. Prints the microblock id.

OUTPUT  The microblock id. --json: {"id","seq","node_id","indicators":[{"scope","value"}]}.

EXAMPLES
  dsm retract --indicator ip:203.0.113.9 --reason "false positive: our scanner"
  dsm retract --indicator 203.0.113.9 --indicator domain:evil.example --json`,
  args: ARGS,
  async run({ args, rawArgs }) {
    const ctx = context(args);
    const indicators = indicatorArgs(optionValues(ARGS, rawArgs, "indicator"));
    let payload;
    try {
      payload = makeRetraction(indicators, args.reason);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    await withNode(ctx, async (node) => {
      await beforeSigning(node, { warn: warning });
      const mb = await node.createMicroblock({ eventType: RETRACT_EVENT, payload });
      if (ctx.json) printJson({ id: mb.id, seq: mb.seq, node_id: mb.node_id, indicators: payload.indicators });
      else print(mb.id);
    });
  },
});
