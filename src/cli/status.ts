import * as fs from "node:fs";
import type { DSMNode } from "../node/node.ts";
import { cardTrust } from "../tpm/evidence.ts";
import { MeshClient } from "../mesh/client.ts";
import type { DaemonStatus } from "../mesh/api.ts";
import { command, commonArgs, context, print, printJson, withNode } from "./common.ts";

export default command({
  meta: { name: "status", description: "Show this node: id, key kind, mesh, ledger counts, chain head" },
  help: `Shows the node id, the kind of identity key (a software key is flagged loudly: it
can be copied off the box, a TPM key cannot), the mesh and genesis name, the ledger's
counts (microblocks, payloads, key certificates, fork evidence) and this node's chain head.
When dsm run is running on the data dir, also the mesh as it sees it: peers, the last
finalized epoch and how many closed epochs behind it is, the validators connected, and
consensus (round, step, validators caught equivocating), and threat intelligence: the
finalized advisories held, the active decisions and the checkpoint they are as of, and
how often bouncers pulled them.

EXAMPLES
  dsm status
  dsm status --json | jq .head.seq`,
  args: { ...commonArgs },
  async run({ args }) {
    const ctx = context(args);
    const client = MeshClient.forDataDir(ctx.dataDir);
    let daemon: DaemonStatus | null = null;
    if (client) {
      try {
        daemon = await client.status();
      } catch {
        daemon = null; // a stale socket: the daemon is gone
      }
    }
    await withNode(ctx, (node) => {
      const counts = node.ledger.counts();
      const head = node.ledger.head(node.mesh, node.nodeId);
      const size = ["", "-wal"].reduce((n, s) => n + (fs.existsSync(node.ledger.path + s) ? fs.statSync(node.ledger.path + s).size : 0), 0);
      const status = {
        node_id: node.nodeId,
        key_kind: node.identity.kind,
        tpm: node.identity.kind === "tpm",
        role: node.card().role,
        mesh: node.mesh,
        mesh_name: node.genesis.name,
        local_mesh: node.genesis.name === `local-${node.nodeId.slice(0, 12)}` && node.genesis.validators.length === 1,
        data_dir: node.layout.dir,
        config: ctx.configPath,
        ledger: { path: node.ledger.path, bytes: size, microblocks: counts.microblocks, payloads: counts.payloads, key_certificates: counts.keyCerts, chains: counts.chains, fork_evidence: counts.forkEvidence },
        head,
        anonymize_ips: node.config.privacy.anonymize_ips,
        trust: ownTrust(node),
        enrollments: node.enrollments.all().map((e) => ({ node_id: e.node_id, ek: e.ek, enrolled_at: new Date(e.enrolled_at).toISOString(), quoted_at: e.quoted_at === null ? null : new Date(e.quoted_at).toISOString(), pcr_digest: e.pcr_digest, result: e.result })),
        daemon,
      };
      if (ctx.json) return printJson(status);
      print(
        [
          `node        ${status.node_id}`,
          `identity    ${status.tpm ? `TPM key: ${status.trust.detail}` : "SOFTWARE KEY (no TPM): the identity key is a file and could be copied"}`,
          ...(status.enrollments.length > 0 ? [`enrolled    ${status.enrollments.length} TPM node(s) enrolled here; last quotes: ${status.enrollments.filter((e) => e.result === "passed").length} passed, ${status.enrollments.filter((e) => e.result?.startsWith("failed")).length} failed`] : []),
          `role        ${status.role}`,
          `mesh        ${status.mesh} (${status.mesh_name}${status.local_mesh ? ", local one-node mesh" : ""})`,
          `data dir    ${status.data_dir}`,
          `config      ${status.config ?? "(built-in defaults)"}`,
          `ledger      ${status.ledger.path} (${(size / 1048576).toFixed(1)} MiB)`,
          `            ${counts.microblocks} microblocks in ${counts.chains} chains, ${counts.payloads} payloads, ${counts.keyCerts} key certificates, ${counts.forkEvidence} fork evidence`,
          `head        ${head ? `seq ${head.seq}  ${head.timestamp}  ${head.id}` : "(no microblocks yet)"}`,
          `privacy     anonymize_ips ${status.anonymize_ips ? "on" : "off"}`,
          daemon
            ? [
                `daemon      running as ${daemon.role}, peer ${daemon.peer_id}, ${daemon.peers} peers`,
                `            finalized epoch ${daemon.last_finalized_epoch ?? "none yet"}${daemon.lag_epochs ? `, ${daemon.lag_epochs} closed epochs behind` : ""}; ${daemon.validators.filter((v) => v.connected).length} of ${daemon.validators.length} validators connected`,
                `            gossip: ${daemon.published} microblocks sent, ${daemon.received} received, ${Object.values(daemon.rejected).reduce((a, b) => a + b, 0)} rejected`,
                `            intel: ${daemon.intel.finalized} finalized advisories (${daemon.intel.made} made here), ${daemon.intel.decisions} active decisions${daemon.intel.decisions_as_of === null ? "" : ` as of epoch ${daemon.intel.decisions_as_of}`}, ${daemon.intel.bouncer_pulls} bouncer pulls${daemon.intel.scanned_to < daemon.intel.tree_size ? `; ${daemon.intel.tree_size - daemon.intel.scanned_to} leaves not yet scanned` : ""}`,
                ...(daemon.attestation.challenging ? [`            attestation: ${daemon.attestation.passed} passed, ${daemon.attestation.failed} failed${Object.keys(daemon.attestation.failures).length ? ` (${Object.entries(daemon.attestation.failures).map(([c, n]) => `${c} ${n}`).join(", ")})` : ""}`] : []),
                ...daemon.attestation.nodes.map((n) => `            peer ${n.node_id.slice(0, 16)}…  ${trustText(n)}`),
              ].join("\n")
            : "daemon      not running",
        ].join("\n"),
      );
    }, { readonly: true });
  },
});

/** This node's own chain of trust, as a verifier holding its genesis would see its card. */
function ownTrust(node: DSMNode): ReturnType<typeof cardTrust> {
  const t = cardTrust(node.card(), node.genesis.attestation, Date.now());
  return t.level === "tpm-evidence" ? { ...t, detail: `${t.detail}; validators enroll the AK by credential activation` } : t;
}

export function trustText(n: DaemonStatus["attestation"]["nodes"][number]): string {
  const last = n.quoted_at === null ? "" : `; last quote ${new Date(n.quoted_at).toISOString()} ${n.result ?? ""}${n.pcr_digest ? ` (PCR digest ${n.pcr_digest.slice(0, 16)}…)` : ""}`;
  return `${n.trust}: ${n.detail}${last}`;
}
