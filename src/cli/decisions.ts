import * as fs from "node:fs";
import { CheckpointBuilder } from "../log/builder.ts";
import { DecisionStore } from "../ledger/decision-store.ts";
import { explain } from "../intel/decide.ts";
import { intelInput } from "../intel/input.ts";
import { refreshDecisions, scannedWithoutDaemon } from "../intel/refresh.ts";
import { runningDaemonPid } from "../mesh/restore-check.ts";
import { EXPORT_FORMATS, type ExportFormat, exportDecisionsResult } from "../intel/export.ts";
import { parseIndicatorText, SCOPES, type Scope } from "../protocol/advisory.ts";
import type { Decision } from "../protocol/decision.ts";
import { writeFileAtomic } from "../fs/files.ts";
import { goDuration } from "../encoding/duration.ts";
import { CliError, command, commonArgs, context, print, printJson, warning, withNode } from "./common.ts";

export default command({
  meta: { name: "decisions", description: "What the mesh blocks: list, explain and export its decisions" },
  help: `Decisions are what the mesh blocks (DESIGN.md section 12, docs/PROTOCOL.md "Decisions").
They come from finalized checkpoints only, the same on every node: an indicator (an IP,
a range, a domain, a JA3 hash, a Suricata signature id) becomes a decision when at least
min_reporters distinct admitted, non-quarantined nodes advised it (dsm advise, a
mitigation, or intel.rules inside dsm ingest) and their advice still holds; never for
never_block addresses. A retraction, a quarantine by quorum or the TTL ends it. dsm run
keeps this node's set up to date and serves it to CrowdSec bouncers on decisions.listen.

  dsm decisions list [--json]
      The set as of the latest checkpoint this node has fully read, sorted by scope and
      value (brought up to date here when no dsm run did it, e.g. on a node
      checkpointed from cron). --json: {"epoch": N, "decisions": [...]}, byte-identical on every node at the
      same epoch (until is absolute; expired entries stay until the next checkpoint; the
      bouncer API and exports leave them out).
  dsm decisions explain VALUE [--json]
      Which advisories, reporters and checkpoint made (or refused) the decision on VALUE
      (ip:203.0.113.9, range:198.51.100.0/24, domain:evil.example, or a bare address).
      Judged from this ledger as of its latest checkpoint.
  dsm decisions export --format FORMAT [--scope S]... [--name NAME] [--output FILE]
      FORMAT: nftables (a file for nft -f: table inet NAME with sets of addresses and
      ranges, timeouts from until), ipset (ipset restore input, swapped in atomically),
      plain (one value per line), suricata-dataset (one dataset per file: --scope ip,
      domain or ja3). With --output the file is written atomically and only when its
      decisions changed (for nftables and ipset, whose timeouts count down, when their
      "# dsm-digest:" line did), exit 0 either way (--json says which), so a cron line
      or a systemd path unit reloads only on change.

EXIT STATUS  0 done, 1 error.

EXAMPLES
  dsm decisions list
  dsm decisions explain ip:203.0.113.9
  dsm decisions export --format nftables --output /run/dsm/blocklist.nft && nft -f /run/dsm/blocklist.nft
  dsm decisions export --format suricata-dataset --scope domain --output /var/lib/suricata/dsm-domain.lst`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "list (default), explain or export", valueHint: "ACTION" },
    value: { type: "positional", required: false, description: "explain: the indicator", valueHint: "VALUE" },
    format: { type: "enum", options: [...EXPORT_FORMATS], description: "export: the file format", valueHint: "FORMAT" },
    scope: { type: "string", multiple: true, description: `export: only these scopes (${SCOPES.join(", ")}); repeatable`, valueHint: "SCOPE" },
    name: { type: "string", description: "export: nftables table / ipset set name prefix (default dsm)", valueHint: "NAME" },
    output: { type: "string", description: "export: write to FILE (atomically, only when changed) instead of stdout", valueHint: "FILE" },
  },
  async run({ args }) {
    const ctx = context(args);
    const action = args.action === undefined ? "list" : String(args.action);
    await withNode(
      ctx,
      (node) => {
        const store = new DecisionStore(node.ledger, node.mesh);
        // A node checkpointed from cron has no dsm run to judge its checkpoints: done here.
        // Never beside a running dsm run: the set is its to keep (it holds it in memory).
        if (action !== "explain" && runningDaemonPid(node.layout.dir) === null) {
          const builder = new CheckpointBuilder(node.ledger, node.policy);
          refreshDecisions(builder, node.genesis, store, scannedWithoutDaemon(builder, node.nodeId), Date.now());
        }
        if (action === "list") {
          if (args.value !== undefined) throw new CliError("dsm decisions list takes no other arguments");
          const decisions = store.current();
          if (ctx.json) return printJson({ epoch: store.asOf(), decisions });
          return print(listText(decisions, store.asOf(), Date.now()));
        }
        if (action === "explain") {
          if (args.value === undefined) throw new CliError("dsm decisions explain needs VALUE (e.g. ip:203.0.113.9)");
          let indicator;
          try {
            indicator = parseIndicatorText(String(args.value));
          } catch (e) {
            throw new CliError((e as Error).message);
          }
          const builder = new CheckpointBuilder(node.ledger, node.policy);
          const latest = builder.latest();
          if (!latest) throw new CliError("no finalized checkpoint in this ledger yet: decisions come from finalized checkpoints only");
          const x = explain(intelInput(builder, node.genesis, latest.checkpoint.epoch), indicator);
          if (ctx.json) return printJson(x);
          return print(explainText(x));
        }
        if (action === "export") {
          if (!args.format) throw new CliError(`dsm decisions export needs --format (${EXPORT_FORMATS.join(", ")})`);
          const scopes = scopeArgs(args.scope);
          let r;
          try {
            r = exportDecisionsResult(store.current(), args.format as ExportFormat, { nowMs: Date.now(), name: args.name, scopes });
          } catch (e) {
            throw new CliError((e as Error).message);
          }
          for (const o of r.omitted) warning(`dsm decisions export: ${o.count} ${o.scope} decision(s) left out: ${o.reason}`);
          if (args.output === undefined) {
            process.stdout.write(r.text);
            return;
          }
          const file = String(args.output);
          const same = unchanged(file, r.text, r.digest);
          if (!same) writeFileAtomic(file, r.text, { overwrite: true, mode: 0o644 });
          if (ctx.json) return printJson({ file, format: args.format, entries: r.entries, changed: !same, digest: r.digest, omitted: r.omitted });
          return print(`${file}: ${r.entries} entr${r.entries === 1 ? "y" : "ies"}${same ? ", unchanged" : ", written"}`);
        }
        throw new CliError(`unknown action "${action}": list, explain or export`);
      },
      { readonly: action === "explain" },
    );
  },
});

/**
 * Whether FILE already holds these decisions: the same text, or for nftables and ipset (whose
 * timeouts count down, so the text changes every second) the same "# dsm-digest:" line.
 * Then it is left alone, and whatever reloads the firewall on a change of the file does not.
 */
function unchanged(file: string, text: string, digest: string): boolean {
  let old: string;
  try {
    old = fs.readFileSync(file, "utf8");
  } catch {
    return false;
  }
  if (old === text) return true;
  const line = /^# dsm-digest: (sha256:[0-9a-f]{64})$/m.exec(old);
  return line !== null && line[1] === digest && /^# dsm-digest: /m.test(text);
}

function scopeArgs(values: string[] | string | undefined): Scope[] | undefined {
  if (values === undefined) return undefined;
  const list = Array.isArray(values) ? values : [values];
  for (const v of list) if (!(SCOPES as readonly string[]).includes(v)) throw new CliError(`--scope "${v}": one of ${SCOPES.join(", ")}`);
  return list as Scope[];
}

function listText(decisions: Decision[], epoch: number | null, nowMs: number): string {
  if (epoch === null) return "no decisions yet: none computed from a finalized checkpoint (is dsm run running?)";
  const lines = [`${decisions.length} decision(s) as of the checkpoint of epoch ${epoch}`];
  for (const d of decisions) {
    const left = Date.parse(d.until) - nowMs;
    lines.push(`  ${`${d.scope}:${d.value}`.padEnd(44)} ${d.category.padEnd(10)} ${d.severity.padEnd(8)} ${String(d.reporters.length).padStart(2)} reporter(s)  ${left > 0 ? `${goDuration(left)} left` : "expired"}  until ${d.until}`);
  }
  return lines.join("\n");
}

function explainText(x: ReturnType<typeof explain>): string {
  const what = `${x.indicator.scope}:${x.indicator.value}`;
  const lines = [
    x.decision
      ? `${what}: BLOCKED as of epoch ${x.epoch}: decided by the checkpoint of epoch ${x.decision.epoch}, until ${x.decision.until}, ${x.decision.reporters.length} reporter(s) (min_reporters ${x.min_reporters})`
      : `${what}: not a decision as of epoch ${x.epoch}: ${x.refused} (min_reporters ${x.min_reporters})`,
  ];
  if (x.advice.length === 0) lines.push("  no finalized advisory names it");
  for (const a of x.advice) {
    lines.push(`  ${a.status.padEnd(11)} advisory ${a.id.slice(0, 16)}… by ${a.node_id.slice(0, 16)}…${a.trusted ? " (trusted)" : ""}, checkpoint of epoch ${a.epoch}, ${a.category}/${a.severity}, holds ${a.from} to ${a.until}`);
  }
  return lines.join("\n");
}
