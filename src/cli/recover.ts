import { RecoverError, recoverChain } from "../mesh/restore-check.ts";
import { CliError, command, commonArgs, context, intArg, print, printJson, withNode } from "./common.ts";

export default command({
  meta: { name: "recover", description: "Fetch this node's own chain back from the mesh after a restore from backup" },
  help: `Brings back what this node signed after the copy its data dir was restored from
(dsm backup, a dead SD card), so that it signs on from the mesh's head instead of signing
seq numbers the mesh already holds: that would be a fork, and the validators would
quarantine the node mesh-wide.

It asks the peers it can reach (gossip.bootstrap_nodes, and the addresses the genesis
cards of the validators list) for the head of this node's chain (/dsm/head/1). A head
counts only when the peer proves it with the microblock at that seq, signed by a key that
this node's identity key certified. It then fetches the chain from the seq after this
ledger's head up to the highest proven head with /dsm/sync/1, from the peers that hold
it, and stores each microblock through the same checks as any received microblock (its
id, its signature under its key certificate, the chain link to the one before, the
payload against payload_hash). A microblock that fails a check ends that peer's part;
the next peer is tried. Payloads come back as the validators hold them (none, if this
node ran with privacy.withhold_payloads: payloads_missing counts them).

Once the ledger reaches the mesh's head, the refusal to sign is lifted: dsm ingest, emit
and mitigation, and dsm run, go on from the next seq. Nothing to recover (the mesh holds
no later seq) is a success.

WHY IT IS NEEDED  Before a node signs its first microblock in a process (dsm run, ingest,
emit, mitigation) it asks the mesh for its chain head, when a peer is reachable (a
one-shot command waits at most 2 s; with dsm run on the data dir, the daemon's check
counts). If a peer proves a later seq than the ledger's, it refuses to sign: "this data
dir looks restored from an older copy ... Run dsm recover". The refusal is kept in
head-check.json in the data dir until the chain is recovered.

Run it with dsm run stopped: the daemon holds the node's libp2p identity
(systemctl stop dsm; dsm recover; systemctl start dsm).

OUTPUT  One line: what was recovered, and the seq signing goes on from. With --json one
object: node_id, mesh, local_seq_before, head {seq, id}, mesh_head {seq, id, peer} (the
highest head a peer proved), recovered, payloads_missing, peers_asked, peers_answered,
fetched_from (the peer ids it fetched from).

EXIT STATUS  0 the ledger now holds the mesh's head (or already did), 1 error: no peer to
ask or none answered within --timeout, a microblock failed its checks, dsm run is
running, or the chain differs from the mesh's (recorded fork: recover cannot repair it).

EXAMPLES
  systemctl stop dsm && sudo -u dsm dsm recover && systemctl start dsm
  DSM_GOSSIP_BOOTSTRAP_NODES=/ip4/10.0.0.2/tcp/7946/p2p/12D3KooW... dsm recover --json`,
  args: {
    ...commonArgs,
    timeout: { type: "string", description: "Seconds to wait for a first peer to answer (default 10)", valueHint: "SECONDS" },
  },
  async run({ args }) {
    const ctx = context(args);
    const seconds = intArg(args.timeout, "timeout", 1) ?? 10;
    await withNode(ctx, async (node) => {
      let r;
      try {
        r = await recoverChain(node, { timeoutMs: seconds * 1000 });
      } catch (e) {
        if (e instanceof RecoverError) throw new CliError(e.message);
        throw e;
      }
      if (ctx.json) return printJson(r);
      const who = `node ${r.node_id.slice(0, 16)}…`;
      if (r.recovered === 0) {
        print(`nothing to recover: the mesh holds no later seq of ${who} than this ledger's seq ${r.head.seq} (${r.peers_answered} of ${r.peers_asked} peers answered); signing goes on from seq ${r.head.seq + 1}`);
        return;
      }
      const missing = r.payloads_missing > 0 ? ` (${r.payloads_missing} without their payload, as the mesh holds them)` : "";
      print(`recovered seq ${r.local_seq_before + 1}..${r.head.seq} of ${who}: ${r.recovered} microblocks${missing}, each checked, from ${r.fetched_from.length} peer(s); signing goes on from seq ${r.head.seq + 1}`);
    });
  },
});
