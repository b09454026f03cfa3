import { Daemon } from "../mesh/daemon.ts";
import { command, commonArgs, context, warn, withNode } from "./common.ts";

export default command({
  meta: { name: "run", description: "Run the node on the mesh: gossip, validation, consensus (foreground)" },
  help: `The long-running node (DESIGN.md section 8), in the foreground; run it under systemd.
It listens for mesh peers on gossip.host:gossip.port (libp2p over TCP with Noise and
Yamux), dials gossip.bootstrap_nodes and keeps them dialled, and then:
  - gossips, in batches, every microblock this node's ledger gains (dsm ingest, emit and
    mitigation write to the same ledger from other processes), with its key certificate
    and payload;
  - validates every microblock other nodes gossip (DESIGN.md section 5) and stores it;
    an invalid batch is rejected, which penalises the peer that sent it; a gap is
    fetched with /dsm/sync/1;
  - on a validator of the mesh's genesis, runs the consensus engine on the epoch timer:
    proposals, votes and signatures over gossip, finality certificates stored in the
    ledger as they are made (see dsm checkpoint show); edges fetch and keep them too.
The peer id comes from libp2p.key and survives restarts. When it is listening the daemon
writes run.json (pid, peer id, addresses) in the data dir, and removes it on exit.

SIGTERM or SIGINT stops it gracefully (last batch sent, consensus stopped, ledger
closed); a second signal exits at once.

Every connection starts with a node-card handshake: a peer whose card does not verify,
or is not admitted by the genesis, is disconnected and refused. In a mesh that requires
attestation, validators challenge each node (a TPM quote over a fresh nonce) when it
connects and every attestation.interval_epochs; a failure is a signed quarantine record,
gossiped like every quarantine record. The control socket (control.sock) answers dsm
status, dsm peers and dsm checkpoint; metrics.port serves Prometheus metrics.

Gaps are fetched with /dsm/sync/1 and missed certificates with /dsm/finality/1, so a
node that was offline catches up with those alone.

Edges keep the finality certificates too, so dsm proof works on an edge for its own
events. An edge still stores every node's microblocks (to check the certificates it keeps),
which costs verification work a future build will save.

EXAMPLES
  dsm run --data-dir /var/lib/dsm
  DSM_GOSSIP_BOOTSTRAP_NODES=/ip4/10.0.0.2/tcp/7946/p2p/12D3KooW... dsm run`,
  args: { ...commonArgs },
  async run({ args }) {
    const ctx = context(args);
    await withNode(ctx, async (node) => {
      const daemon = await Daemon.start(node, (line) => warn(line));
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (sig: string) => {
          signals++;
          if (signals > 1) process.exit(130);
          warn(`dsm run: ${sig}: stopping (again to exit at once)`);
          daemon.stop().then(resolve, resolve);
        };
        process.on("SIGINT", () => onSignal("SIGINT"));
        process.on("SIGTERM", () => onSignal("SIGTERM"));
        // Started by a parent that owns this daemon (dsm demo): stop when that parent is
        // gone, even if it was killed before it could stop its children.
        const parent = Number(process.env.DSM_RUN_PARENT_PID ?? "");
        if (Number.isSafeInteger(parent) && parent > 1) {
          const watch = setInterval(() => {
            try {
              process.kill(parent, 0);
            } catch {
              clearInterval(watch);
              onSignal("parent exited");
            }
          }, 1000);
        }
      });
    });
  },
});
