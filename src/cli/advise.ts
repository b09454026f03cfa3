import { parseDuration, formatDuration } from "../encoding/duration.ts";
import { isHex } from "../encoding/hex.ts";
import { compileRules, isLocal } from "../intel/rules.ts";
import { beforeSigning } from "../mesh/restore-check.ts";
import {
  ADVISORY_EVENT,
  type AdvisorySeverity,
  type Category,
  CATEGORIES,
  type Indicator,
  indicatorText,
  makeAdvisory,
  MAX_TTL_S,
  MIN_TTL_S,
  parseIndicatorText,
  SCOPES,
  SEVERITIES,
} from "../protocol/advisory.ts";
import { type DsmArgDef, optionValues } from "./argv.ts";
import { CliError, command, commonArgs, context, intArg, print, printJson, warning, withNode } from "./common.ts";

const ARGS = {
  ...commonArgs,
  indicator: {
    type: "string",
    multiple: true,
    required: true,
    description: `What to advise, SCOPE:VALUE with SCOPE one of ${SCOPES.join(", ")} (a bare address is ip:, a bare CIDR range:); repeatable`,
    valueHint: "SCOPE:VALUE",
  },
  category: { type: "enum", options: [...CATEGORIES], required: true, description: "What the threat is" },
  ttl: { type: "string", required: true, description: `How long the advice holds, ${formatDuration(MIN_TTL_S)} to ${formatDuration(MAX_TTL_S)} (e.g. 4h)`, valueHint: "DURATION" },
  severity: { type: "enum", options: [...SEVERITIES], description: "How bad (default high)" },
  confidence: { type: "string", description: "How sure, 0-100 (default 80)", valueHint: "N" },
  evidence: { type: "string", multiple: true, description: "Id of a microblock that shows it (the Suricata alert, the Zeek notice); repeatable", valueHint: "ID" },
  reason: { type: "string", description: "Free text, at most 256 characters", valueHint: "TEXT" },
  force: { type: "boolean", description: "Advise an address inside intel.local_networks all the same" },
} as const satisfies Record<string, DsmArgDef>;

/** The --indicator values, canonical; a bad one is a CliError naming it and the scopes. */
export function indicatorArgs(values: readonly string[]): Indicator[] {
  const seen = new Set<string>();
  return values.map((v) => {
    let i: Indicator;
    try {
      i = parseIndicatorText(v);
    } catch (e) {
      throw new CliError(`--indicator: ${(e as Error).message}`);
    }
    if (seen.has(indicatorText(i))) throw new CliError(`--indicator ${indicatorText(i)} is given twice`);
    seen.add(indicatorText(i));
    return i;
  });
}

export default command({
  meta: { name: "advise", description: "Advise the mesh of a threat: signs a threat.advisory microblock" },
  help: `Chains one threat.advisory: the indicators (--indicator, repeatable), what they are
(--category), for how long the advice holds (--ttl, counted from the checkpoint that
finalizes it), and the microblocks that show it (--evidence). The indicators are in clear,
even under privacy.anonymize_ips: sharing them is the point (a --reason is anonymised like
any payload). Other nodes act on an indicator once enough distinct nodes advised it (see
dsm decisions). Prints the advisory's microblock id.

Indicators: ip:203.0.113.9, range:198.51.100.0/24, domain:evil.example, ja3:<32 hex>,
sid:2024897; a bare address or CIDR works too. Addresses are written in one canonical form.
An address or range inside intel.local_networks (this site's own and private hosts) is
refused unless --force: it means nothing to other edges and would name a victim.
Categories: ${CATEGORIES.join(", ")}. Severities: ${SEVERITIES.join(", ")}.
An --evidence id must be 64 hex digits; one that is not in this node's ledger is
accepted with a warning (it may be another node's microblock).

Like dsm emit, it first checks that the mesh holds no later seq of this node's chain.
Withdraw the advice with dsm retract.

OUTPUT  The microblock id. --json: {"id","seq","node_id","indicators":[{"scope","value"}]}.

EXAMPLES
  dsm advise --indicator ip:203.0.113.9 --category c2 --ttl 4h --evidence 9c1e...
  dsm advise --indicator 203.0.113.9 --indicator domain:evil.example --category malware \\
      --ttl 1d --severity critical --confidence 95 --reason "beacon every 60 s"
  dsm advise --indicator range:198.51.100.0/24 --category scan --ttl 2h --json`,
  args: ARGS,
  async run({ args, rawArgs }) {
    const ctx = context(args);
    const indicators = indicatorArgs(optionValues(ARGS, rawArgs, "indicator"));
    const ttl = parseDuration(args.ttl);
    if (ttl === null || ttl < MIN_TTL_S || ttl > MAX_TTL_S) {
      throw new CliError(`--ttl must be a duration from ${formatDuration(MIN_TTL_S)} to ${formatDuration(MAX_TTL_S)} such as 90s, 30m, 4h or 7d, got "${args.ttl}"`);
    }
    const confidence = intArg(args.confidence, "confidence");
    if (confidence !== undefined && confidence > 100) throw new CliError(`--confidence must be an integer from 0 to 100, got "${args.confidence}"`);
    const evidence = optionValues(ARGS, rawArgs, "evidence").map((e) => {
      if (!isHex(e.toLowerCase(), 32)) throw new CliError(`--evidence must be a microblock id (64 hex digits), got "${e}"`);
      return e.toLowerCase();
    });
    if (new Set(evidence).size !== evidence.length) throw new CliError("--evidence: an id is given twice");
    const local = compileRules([], ctx.config.intel.local_networks).local;
    const inside = indicators.filter((i) => isLocal(local, i));
    if (inside.length > 0 && !args.force) {
      throw new CliError(`--indicator ${indicatorText(inside[0]!)} is inside intel.local_networks (a local or private address, meaningless to other edges); --force advises it all the same`);
    }
    let payload;
    try {
      payload = makeAdvisory({
        indicators,
        category: args.category as Category,
        severity: args.severity as AdvisorySeverity | undefined,
        confidence,
        ttl,
        evidence,
        reason: args.reason,
      });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    await withNode(ctx, async (node) => {
      for (const id of evidence) {
        if (node.ledger.byId(id) === null) warning(`dsm advise: evidence ${id} is not in this node's ledger (it may be another node's microblock)`);
      }
      await beforeSigning(node, { warn: warning });
      const mb = await node.createMicroblock({ eventType: ADVISORY_EVENT, payload });
      if (ctx.json) printJson({ id: mb.id, seq: mb.seq, node_id: mb.node_id, indicators: payload.indicators });
      else print(mb.id);
    });
  },
});
