import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { certificateLine, microblockLine } from "../chain/exchange.ts";
import { CliError, command, commonArgs, context, intArg, printJson, warn, withNode } from "./common.ts";
import { resolveNode } from "./log.ts";

const PAGE = 1000;
/** Output is written in chunks of about this size. */
const CHUNK = 1 << 20;

export default command({
  meta: { name: "export", description: "Write microblocks, their key certificates and payloads as NDJSON for dsm import" },
  help: `Writes stored microblocks of this node's mesh as NDJSON, one record a line, for
\`dsm import\` on another node of the same mesh:
  {"kind":"key_certificate","certificate":{...}}
  {"kind":"microblock","microblock":{...body, id, sig},"payload":{...}|null}
Each key certificate comes before the first microblock it signs. Microblocks come in
storage order, so each chain is in seq order. payload is null when withheld
(--no-payloads, or a payload this node does not hold): the receiver stores the signed
microblock and counts the payload as withheld.

By default the node's own chain is exported; --node selects another stored chain (id or
unique prefix) or "all" for every chain of the mesh. Streams in constant memory. With -o
the file is written to a temporary name, synced and renamed: it is whole or absent.
A summary goes to stderr (with --json, a summary object to stdout when -o is given).

EXIT STATUS  0 written, 1 error.

EXAMPLES
  dsm export -o edge1.ndjson
  dsm export --node all --from-seq 1000 --no-payloads | ssh validator dsm import -`,
  args: {
    ...commonArgs,
    node: { type: "string", description: 'Chain to export: node id or unique prefix, or "all" (default: this node)', valueHint: "NODE" },
    "from-seq": { type: "string", description: "Only seq >= N", valueHint: "N" },
    payloads: { type: "boolean", default: true, description: "Include payloads (--no-payloads withholds them)" },
    output: { type: "string", alias: "o", description: 'Write to FILE (atomically) instead of stdout ("-": stdout)', valueHint: "FILE" },
  },
  async run({ args }) {
    const ctx = context(args);
    const fromSeq = intArg(args["from-seq"], "from-seq", 1);
    const withPayloads = args.payloads !== false;
    const file = args.output === "-" ? undefined : args.output; // -o - is stdout
    const out = file ? FileOut.open(file) : new StdoutOut();
    try {
      const s = await withNode(ctx, async (node) => {
        const nodeId = args.node === "all" ? undefined : args.node ? resolveNode(node, args.node) : node.nodeId;
        const stats = { microblocks: 0, certificates: 0, payloads: 0, withheld: 0, chains: 0, first_seq: null as number | null, last_seq: null as number | null };
        const emitted = new Set<string>();
        const chains = new Set<string>();
        let buf = "";
        for (const page of node.ledger.listPages({ nodeId, fromSeq }, PAGE)) {
          for (const mb of page) {
            if (mb.mesh !== node.mesh) continue; // another mesh's chain (a local chain before joining)
            if (!emitted.has(mb.key)) {
              const cert = node.ledger.keyCert(mb.key);
              if (cert === null) throw new CliError(`microblock ${mb.node_id.slice(0, 12)}…:${mb.seq}: no stored key certificate for its signing key (run: dsm verify)`);
              buf += certificateLine(cert);
              emitted.add(mb.key);
              stats.certificates++;
            }
            const payload = withPayloads ? node.ledger.payload(mb.payload_hash) : null;
            if (payload === null) stats.withheld++;
            else stats.payloads++;
            buf += microblockLine(mb, payload);
            stats.microblocks++;
            chains.add(mb.node_id);
            if (nodeId !== undefined) {
              stats.first_seq ??= mb.seq;
              stats.last_seq = mb.seq;
            }
            if (buf.length >= CHUNK) {
              await out.write(buf);
              buf = "";
            }
          }
        }
        if (buf) await out.write(buf);
        stats.chains = chains.size;
        return stats;
      }, { readonly: true });
      await out.commit();
      const range = s.first_seq !== null ? `, seq ${s.first_seq}..${s.last_seq}` : "";
      warn(
        `dsm export: ${s.microblocks} microblocks from ${s.chains} chain(s)${range}, ${s.certificates} key certificates, ` +
          `${s.payloads} payloads, ${s.withheld} withheld${file ? ` -> ${file}` : ""}`,
      );
      if (ctx.json && file) printJson({ file, ...s });
    } catch (e) {
      out.abort();
      throw e;
    }
  },
});

interface Out {
  write(text: string): Promise<void>;
  commit(): Promise<void>;
  abort(): void;
}

class StdoutOut implements Out {
  readonly #sink = Bun.stdout.writer();
  async write(text: string): Promise<void> {
    this.#sink.write(text);
    await this.#sink.flush(); // waits for a slow reader: memory stays at one chunk
  }
  async commit(): Promise<void> {
    await this.#sink.flush();
  }
  abort(): void {}
}

/** temp file in the target's directory, fsync, rename: the file is whole or absent. */
class FileOut implements Out {
  private constructor(private readonly file: string, private readonly tmp: string, private fd: number | null) {}

  static open(file: string): FileOut {
    const dir = path.dirname(path.resolve(file));
    if (!fs.existsSync(dir)) throw new CliError(`${file}: directory ${dir} does not exist`);
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new CliError(`${file}: is a directory`);
    const tmp = path.join(dir, `.${path.basename(file)}.tmp-${crypto.randomBytes(8).toString("hex")}`);
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    return new FileOut(file, tmp, fd);
  }

  async write(text: string): Promise<void> {
    const b = Buffer.from(text);
    let o = 0;
    while (o < b.length) o += fs.writeSync(this.fd!, b, o);
  }

  async commit(): Promise<void> {
    fs.fsyncSync(this.fd!);
    fs.closeSync(this.fd!);
    this.fd = null;
    fs.renameSync(this.tmp, this.file);
    try {
      const d = fs.openSync(path.dirname(path.resolve(this.file)), "r");
      try {
        fs.fsyncSync(d);
      } finally {
        fs.closeSync(d);
      }
    } catch {
      // some filesystems refuse fsync on directories; the file itself is synced
    }
  }

  abort(): void {
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {}
      this.fd = null;
    }
    fs.rmSync(this.tmp, { force: true });
  }
}
