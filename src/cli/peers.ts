import { MeshClient } from "../mesh/client.ts";
import { CliError, command, commonArgs, context, print, printJson } from "./common.ts";
import { trustText } from "./status.ts";

export default command({
  meta: { name: "peers", description: "Show the running daemon's mesh: peers and validators" },
  help: `Asks the dsm run daemon on this data dir (its control.sock) for its connected peers and
the mesh's validators: whether each is connected, and whether it signed the last
finality certificate; and each admitted peer's trust level (DESIGN.md section 7):
software, tpm-evidence (its card's EK chain and certify verify, AK not enrolled here) or
tpm-enrolled (its AK enrolled here by credential activation), with the time, result and
PCR digest of its last quote on a validator. Fails when no daemon runs on the data dir.

EXAMPLES
  dsm peers
  dsm peers --json | jq '.validators[] | select(.connected | not)'`,
  args: { ...commonArgs },
  async run({ args }) {
    const ctx = context(args);
    const client = MeshClient.forDataDir(ctx.dataDir);
    if (!client) throw new CliError(`no dsm daemon runs on ${ctx.dataDir} (start it with dsm run)`);
    const s = await client.status();
    const peers = await client.peers();
    if (ctx.json) {
      printJson({ peer_id: s.peer_id, peers, validators: s.validators, trust: s.attestation.nodes, last_finalized_epoch: s.last_finalized_epoch, lag_epochs: s.lag_epochs });
      return;
    }
    const lines = [`peer id     ${s.peer_id}`, `peers       ${peers.length}${peers.length ? `: ${peers.join(", ")}` : ""}`, `finalized   ${s.last_finalized_epoch ?? "none yet"}${s.lag_epochs ? ` (${s.lag_epochs} closed epochs behind)` : ""}`, "validators"];
    for (const v of s.validators) lines.push(`  ${String(v.index).padStart(3)}  ${v.node_id.slice(0, 16)}…  ${v.connected ? "connected" : "NOT CONNECTED"}${v.signed_last ? "  signed last" : ""}`);
    if (s.attestation.nodes.length > 0) lines.push("trust");
    for (const n of s.attestation.nodes) lines.push(`  ${n.node_id.slice(0, 16)}…  ${trustText(n)}`);
    print(lines.join("\n"));
  },
});
