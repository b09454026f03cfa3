import { Daemon, DaemonStartError } from "../mesh/daemon.ts";
import { createLogger, type DaemonLog, type Level, LEVELS, type LogFormat } from "../mesh/daemon-log.ts";
import { CliError, command, commonArgs, context, withNode } from "./common.ts";
import { tolerate } from "./output.ts";
import { onStopSignals } from "./signals.ts";

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
connects and every attestation.interval_epochs; a failure is a signed quarantine request,
gossiped to the mesh (a checkpoint quarantines the node once f + 1 validators observed a failure). The control socket (control.sock) answers dsm
status, dsm peers and dsm checkpoint; metrics.port serves Prometheus metrics.

Gaps are fetched with /dsm/sync/1 and missed certificates with /dsm/finality/1, so a
node that was offline catches up with those alone.

Before it offers this node's own chain, it asks its peers for that chain's head
(/dsm/head/1, proven by the signed microblock at that seq). If one proves a later seq than
the ledger's (a data dir restored from an older copy), it logs one error line naming dsm
recover and offers nothing of its own, and dsm ingest, emit and mitigation on the data dir
refuse to sign until dsm recover has run (with dsm run stopped; see dsm recover --help).

Edges keep the finality certificates too, so dsm proof works on an edge for its own
events. An edge still stores every node's microblocks (to check the certificates it keeps),
which costs verification work a future build will save.

EXAMPLES
  dsm run --data-dir /var/lib/dsm
  DSM_GOSSIP_BOOTSTRAP_NODES=/ip4/10.0.0.2/tcp/7946/p2p/12D3KooW... dsm run`,
  args: {
    ...commonArgs,
    json: { type: "boolean", description: "Log lines as JSON objects (same as --log-format json)" },
    "log-format": { type: "enum", options: ["text", "json"], description: "Log line format on stderr (default: logging.format from the config, else text)", valueHint: "text|json" },
    "log-level": { type: "enum", options: [...LEVELS], description: "Least severe level logged (default: logging.level from the config, else info)", valueHint: "LEVEL" },
  },
  async run({ args }) {
    const ctx = context(args);
    const { logging } = ctx.config;
    const format = (args["log-format"] ?? (args.json ? "json" : logging.format)) as LogFormat;
    const level = (args["log-level"] ?? logging.level) as Level;
    const log = createLogger({ format, level, write: (line) => void process.stderr.write(line), journal: format === "text" && Boolean(process.env.JOURNAL_STREAM) });
    process.exitCode = await withNode(ctx, async (node) => {
      let daemon: Daemon;
      try {
        daemon = await Daemon.start(node, log);
      } catch (e) {
        if (e instanceof DaemonStartError) throw new CliError(e.message);
        throw e;
      }
      return await stopped(daemon, log);
    });
    // Whatever a library left armed (a socket's close timer, a retry) must not hold the
    // process past the stop: systemd's TimeoutStopSec and a test's patience both end.
    setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
  },
});

/** Time for stop() before the process exits anyway, and for the exit after stop(). */
const STOP_DEADLINE_MS = 2000;
const EXIT_GRACE_MS = 500;

/**
 * Resolves with the exit code once a signal (or the parent's exit) has stopped the daemon:
 * 0 for a graceful stop, whatever the signal. A second signal exits at once (signals.ts).
 */
function stopped(daemon: Daemon, log: DaemonLog): Promise<number> {
  return new Promise<number>((resolve) => {
    const signals = onStopSignals();
    let watch: ReturnType<typeof setInterval> | undefined;
    const onStop = (why: string) => {
      if (watch) clearInterval(watch);
      log("info", `${why}: stopping (again to exit at once)`, { reason: why });
      // A socket torn down during the stop may report its abort as an error nobody listens
      // for: that is the stop itself, not a failure.
      tolerate(isAbort);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((done) => {
        timer = setTimeout(() => {
          log("warn", `stop took over ${STOP_DEADLINE_MS} ms: exiting anyway`);
          done();
        }, STOP_DEADLINE_MS);
      });
      Promise.race([daemon.stop(), deadline]).finally(() => clearTimeout(timer)).then(
        () => resolve(0),
        (e) => {
          log("error", `stop failed: ${(e as Error)?.message ?? String(e)}`);
          resolve(1);
        },
      );
    };
    signals.cancel = () => onStop(signals.signal!);
    // Started by a parent that owns this daemon (dsm demo): stop when that parent is
    // gone, even if it was killed before it could stop its children.
    const parent = Number(process.env.DSM_RUN_PARENT_PID ?? "");
    if (Number.isSafeInteger(parent) && parent > 1) {
      watch = setInterval(() => {
        try {
          process.kill(parent, 0);
        } catch {
          // As a first signal: a signal after it exits at once.
          signals.stopped = true;
          onStop("parent exited");
        }
      }, 1000);
    }
  });
}

function isAbort(e: unknown): boolean {
  const err = e as { name?: string; code?: string } | null;
  return err?.name === "AbortError" || err?.code === "ABORT_ERR" || err?.code === "ERR_STREAM_PREMATURE_CLOSE" || err?.code === "ECONNRESET";
}
