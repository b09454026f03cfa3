import * as fs from "node:fs";
import * as path from "node:path";
import { DSMValidator, ValidatorKeyError } from "../node/validator.ts";
import { MeshClient } from "../mesh/client.ts";
import { type BuildResult, CheckpointBuilder } from "../log/builder.ts";
import { type FinalityCertificate } from "../protocol/certificate.ts";
import { epochAt, epochBounds } from "../protocol/checkpoint.ts";
import { checkpointNote } from "../log/note.ts";
import type { DSMNode } from "../node/node.ts";
import { writeFileAtomic } from "../fs/files.ts";
import { CliError, type Context, command, commonArgs, context, EXIT, intArg, print, printJson, readJsonFile, warn, withNode } from "./common.ts";

export default command({
  meta: { name: "checkpoint", description: "Build and sign the checkpoint of the last closed epoch (or show a stored one)" },
  help: `The cron-friendly one-shot of a validator. Appends to the mesh's Merkle log every
microblock that is due (DESIGN.md section 6: for each node, the contiguous chain after
its last included seq, timestamps before the end of the epoch), signs the checkpoint with
this node's BLS key (bls.key in the data dir) and stores the finality certificate.

The epoch is the last CLOSED one: the one before the epoch that contains now. An epoch
still open is never checkpointed (a microblock timestamped before its end may still
arrive), so --epoch refuses the current and future epochs; --now says "the last closed
epoch" explicitly and is the default. Checkpoints are cumulative: an epoch skipped (cron
missed a run) is simply included by the next one, and an epoch older than the latest
checkpoint has nothing new.

The node must be the validator of a one-validator mesh (every local mesh made by dsm
init is one). In a mesh of n > 1 validators a checkpoint is final only with a quorum
q = n - floor((n-1)/3) of their BLS signatures, agreed over the mesh by the consensus
engine, so this command refuses rather than sign alone. The signature is recorded in the
ledger before it is used: a validator signs at most one checkpoint per epoch, even across
a crash. Idempotent: running it again for an epoch changes nothing.

Prints a NEW finality certificate on stdout (pretty JSON; --json: one line) and a one-line
summary on stderr. New means later than the last certificate dsm checkpoint reported for
this data dir (recorded in checkpoint.reported), whether this command made it or the mesh
did: so "dsm checkpoint --json >> checkpoints.ndjson" from cron appends each certificate
exactly once, with or without a daemon. Anything else prints nothing on stdout and exits
4; dsm checkpoint show prints any stored certificate.

  dsm checkpoint show [EPOCH] [--format json|note]
prints a stored certificate (default: the latest). --format note prints it as a C2SP
tlog-checkpoint signed note (origin hookprobe.dsm/<mesh id>, tree size, base64 root);
its signature line uses a non-standard key type (BLS12-381 aggregate over the checkpoint
digest), so note verifiers report an unknown key but can read the body.

With a daemon (dsm run) on the data dir, the mesh makes checkpoints: dsm checkpoint asks
the daemon for the certificate of the last closed epoch (or --epoch N, or a later one),
waking its consensus; --wait SECONDS waits that long for it. Cron-friendly either way.

EXIT STATUS  0 a new certificate was printed (show: printed), 4 nothing new since the
last one reported (nothing on stdout), 1 error (not a validator, epoch not closed,
no such checkpoint, ...).

EXAMPLES
  dsm checkpoint                                   from cron, every epoch
  */5 * * * * dsm checkpoint --json >>/var/log/dsm/checkpoints.ndjson 2>/dev/null
  dsm checkpoint --epoch 1042
  dsm checkpoint show
  dsm checkpoint show 1042 --format note
  dsm checkpoint show --format note --json         {"epoch": N, "note": "..."}`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "show: print a stored certificate instead of building one", valueHint: "show" },
    target: { type: "positional", required: false, description: "With show: the epoch to print (default: the latest)", valueHint: "EPOCH" },
    epoch: { type: "string", description: "Build (or show) this closed epoch instead of the last closed one", valueHint: "N" },
    now: { type: "boolean", description: "Build the last closed epoch (the default, stated explicitly)" },
    format: { type: "enum", options: ["json", "note"], description: "With show: json (default) or a C2SP signed note" },
    wait: { type: "string", description: "With a running daemon: wait up to this long for the epoch's certificate", valueHint: "SECONDS" },
  },
  async run({ args }) {
    const ctx = context(args);
    const action = args.action === undefined ? undefined : String(args.action);
    if (action !== undefined && action !== "show") {
      throw new CliError(`unknown action "${action}": use dsm checkpoint [--epoch N | --now] or dsm checkpoint show [EPOCH]`);
    }
    if (action === "show") return show(ctx, args);
    if (args.target !== undefined) throw new CliError(`unexpected argument "${args.target}" (for an epoch use --epoch N)`);
    if (args.format !== undefined) throw new CliError("--format applies to dsm checkpoint show");
    if (args.now && args.epoch !== undefined) throw new CliError("--epoch and --now exclude each other");
    const wanted = intArg(args.epoch === undefined ? undefined : String(args.epoch), "epoch", 0);
    const wait = intArg(args.wait === undefined ? undefined : String(args.wait), "wait", 0) ?? 0;
    const client = MeshClient.forDataDir(ctx.dataDir);
    if (client) return fromDaemon(ctx, client, wanted, wait);
    if (args.wait !== undefined) throw new CliError(`--wait needs the dsm daemon running on ${ctx.dataDir} (dsm run)`);
    await withNode(ctx, (node) => build(ctx, node, wanted));
  },
});

/** A daemon runs on the data dir: it makes checkpoints with the mesh; ask it. */
async function fromDaemon(ctx: Context, client: MeshClient, wanted: number | undefined, wait: number): Promise<void> {
  let cert: FinalityCertificate;
  try {
    cert = await client.waitForCheckpoint(wait, wanted);
  } catch (e) {
    throw new CliError(`the daemon has no certificate for epoch ${wanted ?? "(last closed)"}${wait ? ` after ${wait} s` : " yet (use --wait SECONDS)"}: ${(e as Error).message}`);
  }
  const c = cert.checkpoint;
  if (!report(ctx, cert)) {
    warn(`checkpoint epoch ${c.epoch} (from the running daemon) was already reported: tree_size ${c.tree_size}, root ${c.root}; nothing new (dsm checkpoint show ${c.epoch} prints it)`);
    process.exitCode = EXIT.nothingNew;
    return;
  }
  warn(`checkpoint epoch ${c.epoch} (from the running daemon): tree_size ${c.tree_size}, root ${c.root}`);
}

/**
 * What "new" means for dsm checkpoint, with or without a daemon: a certificate later than
 * the last one this command reported for the data dir. A new one is printed and recorded
 * (exit 0); anything else prints nothing on stdout (exit 4), so the cron line
 * "dsm checkpoint >> checkpoints.ndjson" appends each certificate once, whether this
 * command or the mesh made it. Recorded after it is written out: a crash in between prints
 * it again next time rather than never.
 */
function report(ctx: Context, cert: FinalityCertificate): boolean {
  const file = path.join(ctx.dataDir, REPORTED_FILE);
  if (cert.checkpoint.epoch <= lastReported(file)) return false;
  printCertificate(ctx, cert);
  writeFileAtomic(file, JSON.stringify({ epoch: cert.checkpoint.epoch, root: cert.checkpoint.root }) + "\n", { overwrite: true, mode: 0o600 });
  return true;
}

/** The last epoch dsm checkpoint reported for this data dir; -1 before the first. */
function lastReported(file: string): number {
  if (!fs.existsSync(file)) return -1;
  const epoch = (readJsonFile(file, "checkpoint record") as { epoch?: unknown } | null)?.epoch;
  if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 0) {
    throw new CliError(`${file} is damaged (it records the last checkpoint reported); remove it to report the latest certificate again`);
  }
  return epoch;
}

const REPORTED_FILE = "checkpoint.reported";

function build(ctx: Context, node: DSMNode, wanted: number | undefined): void {
  const genesis = node.genesis;
  let validator: DSMValidator;
  try {
    validator = DSMValidator.open(node);
  } catch (e) {
    if (e instanceof ValidatorKeyError) throw new CliError(e.message);
    throw e;
  }
  if (validator.validators.n > 1) {
    const { n, quorum } = validator.validators;
    throw new CliError(
      `mesh "${genesis.name}" has ${n} validators: a checkpoint is final only with ${quorum} of their signatures, which the validators agree on over the mesh; start the daemon (dsm run) and run dsm checkpoint [--wait SECONDS] again`,
    );
  }
  const nowMs = Date.now();
  const current = epochAt(genesis, nowMs);
  const closesAt = (e: number) => new Date(epochBounds(genesis, e).endMs).toISOString();
  let epoch: number;
  if (wanted === undefined) {
    if (current < 1) throw new CliError(`no epoch has closed yet: epoch 0 closes at ${closesAt(0)}`);
    epoch = current - 1;
  } else {
    if (wanted > current) throw new CliError(`epoch ${wanted} is in the future (current epoch ${current} closes at ${closesAt(Math.max(current, 0))}); only a closed epoch is checkpointed`);
    if (wanted === current) throw new CliError(`epoch ${wanted} is still open (it closes at ${closesAt(wanted)}); only a closed epoch is checkpointed`);
    epoch = wanted;
  }
  const builder = validator.builder;
  let result: BuildResult;
  try {
    result = validator.buildAlone(epoch);
  } finally {
    validator.close();
  }
  switch (result.status) {
    case "created": {
      const c = result.certificate.checkpoint;
      report(ctx, result.certificate);
      warn(`checkpoint epoch ${c.epoch}: tree_size ${c.tree_size}, +${result.leaves} microblocks from ${Object.keys(c.ranges).length} nodes, root ${c.root}`);
      return;
    }
    case "exists": {
      const c = result.certificate.checkpoint;
      // Made before (by an earlier run, or by the daemon): new only if never reported.
      if (report(ctx, result.certificate)) {
        warn(`checkpoint epoch ${c.epoch} (made earlier, not reported before): tree_size ${c.tree_size}, root ${c.root}`);
        return;
      }
      warn(`checkpoint epoch ${c.epoch} already exists: tree_size ${c.tree_size}, root ${c.root}; nothing new (dsm checkpoint show ${c.epoch} prints it)`);
      process.exitCode = EXIT.nothingNew;
      return;
    }
    case "nothing-new": {
      const latest = builder.latest();
      warn(
        latest
          ? `checkpoint epoch ${result.epoch}: nothing new since epoch ${latest.checkpoint.epoch} (tree_size ${latest.checkpoint.tree_size}); no checkpoint made`
          : `checkpoint epoch ${result.epoch}: nothing new (no microblock before ${closesAt(result.epoch)}); no checkpoint made`,
      );
      process.exitCode = EXIT.nothingNew;
      return;
    }
  }
}

async function show(ctx: Context, args: { target?: unknown; epoch?: unknown; now?: unknown; format?: unknown }): Promise<void> {
  if (args.now) throw new CliError("--now applies to building a checkpoint, not to show");
  if (args.target !== undefined && args.epoch !== undefined) throw new CliError("give the epoch once: dsm checkpoint show EPOCH");
  const raw = args.target ?? args.epoch;
  let epoch: number | undefined;
  if (raw !== undefined) {
    const v = String(raw);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new CliError(`EPOCH must be an integer >= 0, got "${v}"`);
    epoch = Number(v);
  }
  const format = args.format === undefined ? "json" : String(args.format);
  await withNode(
    ctx,
    (node) => {
      const builder = new CheckpointBuilder(node.ledger, node.policy);
      const cert = epoch === undefined ? builder.latest() : builder.byEpoch(epoch);
      if (!cert) {
        throw new CliError(epoch === undefined ? `no checkpoint yet for mesh ${node.mesh.slice(0, 16)}… (run: dsm checkpoint)` : `no checkpoint for epoch ${epoch}`);
      }
      if (format === "note") {
        const note = checkpointNote(cert, node.genesis);
        if (ctx.json) printJson({ epoch: cert.checkpoint.epoch, note });
        else print(note);
      } else printCertificate(ctx, cert);
    },
    { readonly: true },
  );
}

function printCertificate(ctx: Context, cert: FinalityCertificate): void {
  print(ctx.json ? JSON.stringify(cert) : JSON.stringify(cert, null, 2));
}
