import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { CliError, command, commonArgs, context, print, printJson, warning, withNode } from "./common.ts";

export default command({
  meta: { name: "backup", description: "Make a consistent copy of this node's data dir, while it runs" },
  help: `Copies the data dir into DIR, a new or empty directory made mode 0700: the ledger as
one consistent snapshot (SQLite VACUUM INTO: dsm run, ingest and cron checkpoints may go on
writing meanwhile; the copy passes integrity_check), and the node's keys (0600), card,
genesis, config and control token. MANIFEST.json lists every file with its size and sha256,
the node id, the mesh and the chain head the snapshot holds. A TPM node's identity key
stays in its TPM: the backup records which handle holds it.

The backup holds the node's secret keys: keep it like them.

RESTORE  Stop dsm, copy the files (all but MANIFEST.json) into an empty data dir (as the
dsm user, modes kept), then run dsm recover BEFORE the node signs anything new: it fetches
what the node signed after the backup from the validators, each microblock checked as
usual, so the node signs on from the mesh's head. Otherwise it would sign those seq
numbers again: the mesh would see a fork and quarantine it. dsm run (or dsm ingest, emit,
mitigation) started first refuses to sign until dsm recover has run, whenever a peer is
reachable that proves the mesh holds a later seq (see dsm recover --help).

EXIT STATUS  0 backed up, 1 error (DIR not empty, a file unreadable, the disk full).

EXAMPLES
  dsm backup /media/usb/dsm-$(date +%F)
  dsm backup --json /var/backups/dsm | jq .head`,
  args: {
    ...commonArgs,
    dir: { type: "positional", required: true, description: "Where to put the backup: a new or empty directory", valueHint: "DIR" },
  },
  async run({ args }) {
    const ctx = context(args);
    const out = path.resolve(String(args.dir));
    if (fs.existsSync(out) && (!fs.statSync(out).isDirectory() || fs.readdirSync(out).length > 0)) throw new CliError(`${out} exists and is not an empty directory: a backup goes into a new one`);
    await withNode(
      ctx,
      (node) => {
        const l = node.layout;
        fs.mkdirSync(out, { recursive: true, mode: 0o700 });
        fs.chmodSync(out, 0o700);
        const files: { name: string; bytes: number; sha256: string }[] = [];
        const record = (name: string) => {
          const data = fs.readFileSync(path.join(out, name));
          files.push({ name, bytes: data.length, sha256: crypto.createHash("sha256").update(data).digest("hex") });
        };
        const ledgerName = path.basename(l.ledger);
        const head = node.ledger.head(node.mesh, node.nodeId);
        node.ledger.backupTo(path.join(out, ledgerName));
        record(ledgerName);
        for (const [file, secret] of [
          [l.identityKey, true],
          [l.tpmIdentity, false],
          [l.libp2pKey, true],
          [l.blsKey, true],
          [l.privacyKey, true],
          [l.controlToken, true],
          [l.card, false],
          [l.genesis, false],
          [l.config, true],
        ] as const) {
          if (!fs.existsSync(file)) continue;
          const name = path.basename(file);
          fs.copyFileSync(file, path.join(out, name), fs.constants.COPYFILE_EXCL);
          fs.chmodSync(path.join(out, name), secret ? 0o600 : 0o644);
          record(name);
        }
        // The head read before the snapshot: the snapshot holds at least it.
        const manifest = { v: 1, type: "dsm-backup", created: new Date().toISOString(), node_id: node.nodeId, mesh: node.mesh, head: head ? { seq: head.seq, id: head.id } : null, files };
        fs.writeFileSync(path.join(out, "MANIFEST.json"), JSON.stringify(manifest, null, 2) + "\n", { mode: 0o644 });
        if (ctx.json) return printJson({ dir: out, ...manifest });
        print(`backed up node ${node.nodeId.slice(0, 16)}… (head seq ${head?.seq ?? 0}) to ${out}: ${files.length} files, ${files.reduce((n, f) => n + f.bytes, 0)} bytes`);
        warning("dsm backup: the backup holds this node's secret keys: keep it like them. Before restoring, read dsm backup --help (RESTORE): a node restored from an older copy must run dsm recover before it signs again");
      },
      { readonly: true },
    );
  },
});
