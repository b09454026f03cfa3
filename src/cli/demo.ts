// The README's first command: a throwaway node, the bundled samples piped through the
// real ingest path, a full verify; then a local mesh of separate processes finalizing a
// checkpoint and a proof checked offline; a summary, and nothing left behind.
import { Database } from "bun:sqlite";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import suricataSample from "../../config/samples/suricata-eve.ndjson" with { type: "text" };
import zeekSample from "../../config/samples/zeek-notice.ndjson" with { type: "text" };
import { DEFAULT_CONFIG_TEXT, parseConfig } from "../config/config.ts";
import { IngestPipeline } from "../ingest/pipeline.ts";
import { verifyLedger } from "../ledger/verify.ts";
import { MitigationLogger } from "../node/handlers.ts";
import { DSMNode } from "../node/node.ts";
import { CliError, command, EXIT, print, printJson } from "./common.ts";
import { meshDemo, type MeshDemoResult } from "./demo-mesh.ts";

export default command({
  meta: { name: "demo", description: "Run the whole story on throwaway nodes and bundled samples: one edge, then a local mesh" },
  help: `Part 1, one edge node: creates a temporary node, pipes the bundled Suricata EVE and
Zeek samples through the same ingest path as \`dsm ingest\`, records a mitigation linked to
the worst alert, verifies the whole ledger, then changes one byte and shows verify catch it.

Part 2, the mesh: four validators and two edges, each \`dsm run\` in its own process on
127.0.0.1 (ephemeral ports, 2 s epochs): the samples are ingested at the edges, gossiped,
validated and stored by every validator, one epoch is finalized by a quorum of BLS
signatures aggregated into one certificate, and an inclusion proof for an edge's event is
checked offline against the genesis alone. --no-mesh skips this part.

Everything is removed at the end, or on Ctrl-C (--keep keeps the data dirs and prints
where, so you can try \`dsm log --data-dir DIR\` and friends).`,
  args: {
    json: { type: "boolean", description: "Print the summary as JSON" },
    keep: { type: "boolean", description: "Keep the demo node's data dir" },
    mesh: { type: "boolean", default: true, description: "Run part 2, the local mesh (--no-mesh: only the edge node)" },
  },
  async run({ args }) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-demo-"));
    const cleanup = () => {
      if (!args.keep) fs.rmSync(dir, { recursive: true, force: true });
    };
    process.once("SIGINT", () => setTimeout(() => (cleanup(), process.exit(130)), 100));
    try {
      const config = parseConfig(DEFAULT_CONFIG_TEXT, "built-in defaults", {});
      const init = await DSMNode.init({ dataDir: dir, config });
      const node = DSMNode.open(dir, config);
      try {
        const errors: string[] = [];
        const pipeline = new IngestPipeline(node, {
          format: "auto",
          maxLineBytes: config.ingest.max_line_bytes,
          batchMaxEvents: config.ledger.batch_max_events,
          batchMaxMs: config.ledger.batch_max_ms,
          json: false,
          out: () => undefined,
          err: (t) => errors.push(t),
        });
        await pipeline.consume(new Response(suricataSample).body!, "samples/suricata-eve.ndjson");
        await pipeline.consume(new Response(zeekSample).body!, "samples/zeek-notice.ndjson");
        const stats = await pipeline.finish();
        const critical = node.ledger.list({ eventType: "suricata.alert", limit: 100, descending: false }).find((mb) => {
          const p = JSON.parse(node.ledger.payload(mb.payload_hash) ?? "{}");
          return p.severity === "critical";
        });
        const mitigation = await new MitigationLogger(node).onMitigationExecuted(critical?.id ?? null, {
          action: "block",
          target: "198.51.100.7",
        });
        const report = await verifyLedger(node.ledger, { ownNodeId: node.nodeId, policy: node.policy });
        const byType = node.ledger.eventTypeCounts();
        // Then show what tamper-evident means: flip one byte of one stored payload and verify again.
        const victim = node.ledger.list({ eventType: "suricata.alert", limit: 1, descending: false })[0]!;
        // As an outside tamperer would: its own connection to the SQLite file, past the ledger's API
        // (the one SQL outside src/ledger/, named as such in test/sql-boundary.test.ts).
        const tamperer = new Database(node.ledger.path);
        try {
          tamperer.run("UPDATE payloads SET body = CAST(replace(CAST(body AS TEXT), 'suricata', 'Suricata') AS BLOB) WHERE hash = ?", [
            Buffer.from(victim.payload_hash, "hex"),
          ]);
        } finally {
          tamperer.close();
        }
        const tampered = await verifyLedger(node.ledger, { ownNodeId: node.nodeId, policy: node.policy });
        let meshResult: MeshDemoResult | null = null;
        const meshLines: string[] = [];
        if (args.mesh !== false) {
          meshResult = await meshDemo(
            path.join(dir, "mesh"),
            [
              { name: "samples/suricata-eve.ndjson", text: suricataSample },
              { name: "samples/zeek-notice.ndjson", text: zeekSample },
            ],
            (l) => meshLines.push(l),
          );
        }
        const summary = {
          node_id: init.card.node_id,
          mesh: init.mesh,
          data_dir: args.keep ? dir : null,
          ingested: { lines: stats.lines, stored: stats.stored, rejected: stats.rejected, empty: stats.empty, first_seq: stats.firstSeq, last_seq: stats.lastSeq },
          rejected_lines: errors.filter((e) => !e.includes("empty line")),
          mitigation: { id: mitigation.id, threat: critical?.id ?? null },
          event_types: byType,
          verify: { ok: report.problemCount === 0, microblocks: report.microblocks, key_certificates: report.keyCerts, problems: report.problems },
          tamper_check: { altered: `one byte of the payload of seq ${victim.seq}`, detected: tampered.problemCount > 0, first_problem: tampered.problems[0]?.message ?? null },
          head: node.ledger.head(node.mesh, node.nodeId),
          mesh_demo: meshResult,
        };
        if (args.json) printJson(summary);
        else {
          print(`dsm demo: a throwaway edge node in ${dir}`);
          print(`  node ${summary.node_id.slice(0, 16)}…  mesh ${summary.mesh.slice(0, 16)}… (local, software key)`);
          print(`  ingested ${stats.stored} events from the bundled Suricata and Zeek samples (${stats.rejected} rejected)`);
          for (const [t, n] of Object.entries(byType)) print(`    ${String(n).padStart(4)}  ${t}`);
          print(`  mitigation ${mitigation.id.slice(0, 16)}… blocked 198.51.100.7, linked to alert ${critical?.id.slice(0, 16) ?? "-"}…`);
          print(`  chain head seq ${summary.head?.seq}  ${summary.head?.id}`);
          print(`  verify: ${summary.verify.ok ? "OK" : "FAILED"}, ${report.microblocks} microblocks, ids, links, signatures, key certificate and payload hashes re-checked`);
          print(`  tamper check: changed one byte of the payload of seq ${victim.seq}; verify now says:`);
          print(`    ${tampered.problems[0]?.message ?? "nothing (THIS IS A BUG)"}`);
          if (meshResult) {
            print(`dsm demo, part 2: a local mesh`);
            for (const l of meshLines) print(l);
          }
          if (args.keep) print(`  kept: dsm log --data-dir ${dir} (its ledger now holds the altered payload)`);
        }
        if (!summary.verify.ok || !summary.tamper_check.detected) throw new CliError("demo ledger failed verification", EXIT.verifyFailed);
        if (meshResult && !meshResult.proof.verified) throw new CliError("demo mesh: the inclusion proof did not verify", EXIT.verifyFailed);
      } finally {
        node.close();
      }
    } finally {
      cleanup();
    }
  },
});
