import { DSMValidator, ValidatorKeyError } from "../node/validator.ts";
import { parseQuarantine, type QuarantineReason, type QuarantineRecord } from "../protocol/quarantine.ts";
import { QuarantineStore } from "../ledger/quarantine-store.ts";
import type { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, type Context, context, intArg, print, printJson, readJsonFile, warn, withNode } from "./common.ts";

export default command({
  meta: { name: "quarantine", description: "List, add, lift or import quarantine records (type Q)" },
  help: `A quarantined node's microblocks from its quarantine point on never enter a checkpoint
(DESIGN.md section 7). A node is quarantined by fork evidence in this ledger, or by a
quarantine record signed by any validator of the mesh (a failed or missed attestation, or
an operator's decision); every validator honours every valid record.

  dsm quarantine list [--json]
      Every node that is quarantined now, from which seq and why, then every record.
  dsm quarantine add NODE --detail TEXT [--from-seq N] [--reason R]
      (validator) Sign and store a record, reason "operator" unless --reason says
      attestation_missed (the node did not answer a challenge), attestation_failed or
      fork. --from-seq defaults to the seq after the node's current head in this ledger.
  dsm quarantine lift NODE --detail TEXT
      (validator) Sign and store a lift: the node's microblocks are included again (the
      ones held back too), and fork evidence found before the lift no longer holds them.
  dsm quarantine import FILE
      Store records signed by other validators (a JSON record or an array of them), each
      checked against the genesis validators first.

NODE is a node id or a unique prefix of one known to this ledger.

EXIT STATUS  0 done, 1 error (not a validator, unknown node, bad record).

EXAMPLES
  dsm quarantine list
  dsm quarantine lift 3fa2c1 --detail "reflashed and re-attested, ticket 4411"`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "list (default), add, lift or import", valueHint: "ACTION" },
    target: { type: "positional", required: false, description: "add/lift: the node id; import: the file", valueHint: "NODE|FILE" },
    detail: { type: "string", description: "add/lift: why, in one line (kept in the signed record)", valueHint: "TEXT" },
    "from-seq": { type: "string", description: "add: first seq to keep out (default: after the current head)", valueHint: "N" },
    reason: { type: "enum", options: ["operator", "attestation_missed", "attestation_failed", "fork"], description: "add: why (default operator; attestation_missed when a node did not answer a challenge)" },
  },
  async run({ args }) {
    const ctx = context(args);
    const action = args.action === undefined ? "list" : String(args.action);
    const target = args.target === undefined ? undefined : String(args.target);
    if (action === "list") {
      if (target !== undefined || args.detail !== undefined || args["from-seq"] !== undefined) throw new CliError("dsm quarantine list takes no other arguments");
      return withNode(ctx, (node) => list(ctx, node), { readonly: true });
    }
    if (action === "import") {
      if (target === undefined) throw new CliError("dsm quarantine import needs a FILE");
      return withNode(ctx, (node) => importRecords(ctx, node, target));
    }
    if (action !== "add" && action !== "lift") throw new CliError(`unknown action "${action}": use list, add, lift or import`);
    if (target === undefined) throw new CliError(`dsm quarantine ${action} needs the NODE id`);
    if (args.detail === undefined || String(args.detail).trim() === "") throw new CliError(`dsm quarantine ${action} needs --detail TEXT: the record says why`);
    if (action === "lift" && args["from-seq"] !== undefined) throw new CliError("--from-seq applies to add, not lift");
    const fromSeq = intArg(args["from-seq"] === undefined ? undefined : String(args["from-seq"]), "from-seq", 1);
    const reason = (args.reason ?? "operator") as QuarantineReason;
    if (action === "lift" && args.reason !== undefined) throw new CliError("--reason applies to add: a lift is always an operator's");
    return withNode(ctx, (node) => sign(ctx, node, action, target, String(args.detail), fromSeq, action === "lift" ? "operator" : reason));
  },
});

function resolveNode(node: DSMNode, text: string): string {
  if (/^[0-9a-f]{64}$/.test(text)) return text;
  if (!/^[0-9a-f]{4,63}$/.test(text)) throw new CliError(`"${text}" is not a node id or a prefix of one (4 or more lowercase hex characters)`);
  const ids = node.ledger.resolveNodeId(text);
  if (ids.length === 0) throw new CliError(`no node with an id starting ${text} in this ledger`);
  if (ids.length > 1) throw new CliError(`${text} is ambiguous: ${ids.length} nodes start with it`);
  return ids[0]!;
}

function sign(ctx: Context, node: DSMNode, action: "add" | "lift", target: string, detail: string, fromSeq: number | undefined, reason: QuarantineReason): void {
  const nodeId = resolveNode(node, target);
  let v: DSMValidator;
  try {
    v = DSMValidator.open(node);
  } catch (e) {
    if (e instanceof ValidatorKeyError) throw new CliError(`only a validator signs quarantine records: ${e.message}`);
    throw e;
  }
  try {
    const record = v.quarantine(nodeId, { action: action === "add" ? "quarantine" : "lift", reason, detail, fromSeq });
    print(ctx.json ? JSON.stringify(record) : JSON.stringify(record, null, 2));
    warn(action === "add" ? `node ${nodeId.slice(0, 16)}… quarantined from seq ${record.from_seq}` : `quarantine of node ${nodeId.slice(0, 16)}… lifted`);
  } finally {
    v.close();
  }
}

function importRecords(ctx: Context, node: DSMNode, file: string): void {
  const value = readJsonFile(file, "quarantine records");
  const list = Array.isArray(value) ? value : [value];
  const set = DSMValidator.validatorsOf(node);
  const store = new QuarantineStore(node.ledger, node.mesh);
  // All checked before any is stored: a bad record in the file stores nothing.
  const records = list.map((r, i) => {
    try {
      return parseQuarantine(r, node.mesh, set, `${file} record ${i + 1}`, { notAfterMs: Date.now() + node.config.mesh.max_clock_skew_s * 1000 });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  });
  let added = 0;
  for (const r of records) if (store.add(r)) added++;
  if (ctx.json) printJson({ records: records.length, added });
  else warn(`${records.length} quarantine record(s) checked, ${added} new`);
}

function list(ctx: Context, node: DSMNode): void {
  const store = new QuarantineStore(node.ledger, node.mesh);
  const records = store.records();
  const forks = store.forkedNodes();
  const nodes = new Set<string>([...records.map((r) => r.node_id), ...forks]);
  const active = [...nodes]
    .map((id) => ({ node_id: id, from_seq: store.quarantinedFrom(id), reason: reasonOf(id, records, forks.includes(id)) }))
    .filter((a) => a.from_seq !== undefined);
  if (ctx.json) {
    printJson({ quarantined: active, records });
    return;
  }
  if (active.length === 0) print("no node is quarantined");
  for (const a of active) print(`QUARANTINED ${a.node_id} from seq ${a.from_seq} (${a.reason})`);
  for (const r of records) print(`${r.issued}  ${r.action.padEnd(10)} ${r.node_id.slice(0, 16)}…  ${r.action === "lift" ? "" : `from seq ${r.from_seq}  `}${r.reason}  by validator ${r.validator}: ${r.detail}`);
}

function reasonOf(nodeId: string, records: QuarantineRecord[], fork: boolean): string {
  const last = records.filter((r) => r.node_id === nodeId && r.action === "quarantine").at(-1);
  return [last ? `${last.reason}: ${last.detail}` : null, fork ? "fork evidence" : null].filter(Boolean).join("; ");
}
