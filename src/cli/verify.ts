import { onStopSignals } from "./signals.ts";
import { verifyLedger, verifyReportJson } from "../ledger/verify.ts";
import type { DSMNode } from "../node/node.ts";
import { cardTrust, ekTrustText } from "../tpm/evidence.ts";
import { CliError, command, commonArgs, context, EXIT, print, printJson, withNode } from "./common.ts";
import { useWorkers } from "../runtime/worker-url.ts";

export default command({
  meta: { name: "verify", description: "Re-check the whole ledger: microblocks, key certificates, payloads, the log, certificates, quarantine and consensus records" },
  help: `Reads every row of the ledger, in constant memory, and re-checks it as a receiver
would: every key certificate's signature and binding to its node; every microblock's id
against its body, its link to the previous one (seq, prev, timestamps), its signing key's
certificate limits and its signature; every stored payload against its payload_hash
(a missing payload is an error for this node's own chain, "withheld" for others); every
fork evidence record. Then, against the genesis: every stored node of the mesh log's Merkle
tree recomputed from the leaves (RFC 6962); every checkpoint's certificate (its quorum's
aggregate BLS signature over the genesis validators) and its body against the log (prev,
ranges, spans, the leaves it adds against the microblocks its ranges name, root and
tree_size); every quarantine record's signature and the columns it is stored under; every
consensus message this validator signed (its signature and slot) and every piece of
equivocation evidence; every enrollment record. A progress bar is shown on a terminal.

Any altered byte is found and named: the first problem is printed precisely (row,
node, seq, id, what is wrong), then the rest up to --max-problems.

EXIT STATUS  0 the ledger verifies, 2 problems were found, 1 the ledger could not be read,
130/143 stopped by SIGINT/SIGTERM before the end: nothing is claimed about the rest (the
report says INCOMPLETE, and --json has "complete": false).

EXAMPLES
  dsm verify
  dsm verify --json | jq .problems[0]`,
  args: {
    ...commonArgs,
    "max-problems": { type: "string", description: "List at most N problems (default 20)", valueHint: "N" },
  },
  async run({ args }) {
    const ctx = context(args);
    const max = args["max-problems"] === undefined ? 20 : Number(args["max-problems"]);
    if (!Number.isInteger(max) || max < 1) throw new CliError(`--max-problems must be a positive integer`);
    const tty = process.stderr.isTTY && !ctx.json;
    const started = performance.now();
    let lastDraw = 0;
    const stop = onStopSignals();
    let trust: { node_id: string; trust: string; detail: string }[] = [];
    const report = await withNode(ctx, (node) => {
      trust = chainTrust(node);
      return verifyLedger(node.ledger, {
        stop,
        ownNodeId: node.nodeId,
        policy: node.policy,
        genesis: node.genesis,
        worker: useWorkers(),
        maxProblems: max,
        onProgress: tty
          ? (done, total) => {
              const now = performance.now();
              if (now - lastDraw < 100 && done < total) return;
              lastDraw = now;
              const pct = total ? Math.floor((done / total) * 100) : 100;
              const bar = "#".repeat(Math.floor(pct / 4)).padEnd(25, ".");
              process.stderr.write(`\rverifying [${bar}] ${pct}% ${done}/${total}`);
            }
          : undefined,
      });
    }, { readonly: true });
    if (tty) process.stderr.write("\n");
    const seconds = (performance.now() - started) / 1000;
    const complete = !report.stopped;
    const ok = report.problemCount === 0 && complete;
    if (ctx.json) printJson({ ok, complete, ...verifyReportJson(report), trust, seconds: Number(seconds.toFixed(3)) });
    else {
      print(
        `${report.problemCount > 0 ? "FAILED" : complete ? "OK" : `INCOMPLETE (stopped by ${stop.signal})`}: ${report.microblocks} microblocks in ${report.chains} chains, ${report.keyCerts} key certificates, ` +
          `${report.payloadsChecked} payloads checked, ${report.payloadsWithheld} withheld, ${report.forkEvidence} fork evidence, ` +
          `${report.stored.certificates} checkpoints (log of ${report.stored.logLeaves} leaves, ${report.stored.logNodes} nodes), ${report.stored.quarantineRecords} quarantine requests, ${report.stored.quarantineDecisions} quarantine decisions, ` +
          `${report.stored.consensusMessages} consensus messages, ${report.stored.consensusEvidence} consensus evidence, ${report.stored.enrollments} enrollments ` +
          `(${seconds.toFixed(1)}s, ${Math.round(report.microblocks / Math.max(seconds, 1e-3))} rows/s)`,
      );
      for (const p of report.problems) print(`  ${p.message}`);
      if (report.problemCount > report.problems.length) print(`  ... and ${report.problemCount - report.problems.length} more`);
      for (const t of trust) print(`  chain ${t.node_id.slice(0, 16)}…: ${t.detail}`);
    }
    if (!complete && report.problemCount === 0) {
      process.stderr.write(`dsm verify: stopped by ${stop.signal} after ${report.microblocks} microblocks: the rest was not checked\n`);
      process.exitCode = stop.exitCode(EXIT.error);
    } else if (!ok) {
      process.stderr.write(`dsm verify: FAILED: ${report.problemCount} problem(s); first: ${report.problems[0]?.message}\n`);
      process.exitCode = EXIT.verifyFailed;
    }
  },
});

/**
 * Which links of the chain of trust (DESIGN.md section 7) each chain's node has, as this
 * data dir knows it: its own card's evidence, checked against the genesis, or for other
 * nodes the enrollment this node made of them. Nothing else counts: another node's card
 * claim is not evidence until its AK was enrolled.
 */
function chainTrust(node: DSMNode): { node_id: string; trust: string; detail: string }[] {
  return node.ledger.resolveNodeId("").sort().map((id) => {
    if (id === node.nodeId) {
      const t = cardTrust(node.card(), node.genesis.attestation, Date.now());
      const detail = t.level === "software" ? "software key (this node)" : t.level === "tpm-evidence" ? `TPM key (this node): ${t.detail} → signing keys` : `TPM key (this node), ${t.detail}`;
      return { node_id: id, trust: t.level, detail };
    }
    const e = node.enrollments.get(id);
    if (!e) return { node_id: id, trust: "software", detail: "software key, or a TPM this node has not enrolled" };
    return { node_id: id, trust: "tpm-enrolled", detail: `TPM-rooted, ${ekTrustText(e.ek)} → AK (enrolled here) → identity key → signing keys` };
  });
}
