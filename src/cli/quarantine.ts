import { DSMValidator, ValidatorKeyError } from "../node/validator.ts";
import { faultyOf, parseQuarantine, type QuarantineReason, type QuarantineRecord } from "../protocol/quarantine.ts";
import { QuarantineStore } from "../ledger/quarantine-store.ts";
import type { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, type Context, context, intArg, print, printJson, readJsonFile, warn, withNode } from "./common.ts";

export default command({
  meta: { name: "quarantine", description: "List quarantined nodes, request a quarantine or a lift, import requests" },
  help: `A quarantined node's microblocks from its quarantine point on never enter a checkpoint
(DESIGN.md section 7). No single validator decides it. Fork evidence (two valid
microblocks for one seq) proves itself and quarantines the node at the fork seq, here and
on every node it reaches. Anything else is a request (type Q) that one validator signs;
it changes nothing until a checkpoint decides it, and a checkpoint may only carry the
decision with enough requests from distinct validators: a quorum (q of n) to quarantine
by an operator's decision or to lift, or f + 1 observed attestation failures (at least
one honest validator saw it). The decision takes effect from the checkpoint that
finalizes it, on every node alike: a quarantine keeps out every microblock that
checkpoint did not include; a lift readmits them. Requests are dated by mesh epoch,
and one signed before the node's last decision no longer counts (no replay).

  dsm quarantine list [--json]
      Every node quarantined now, from which seq and why; the decisions checkpoints
      took; the requests still pending, with how many more are needed. With --json,
      "records" holds every request stored, for dsm quarantine import elsewhere.
  dsm quarantine add NODE --detail TEXT [--from-seq N] [--reason R]
      (validator) Sign and store a request to quarantine NODE, reason "operator" unless
      --reason says attestation_missed or attestation_failed. --from-seq is the first seq
      to keep out, by default the one after the node's head in this ledger; a decision
      keeps out from the earliest its requests name, never a seq already checkpointed.
      Other validators' operators run the same command to join it; gossip carries it.
  dsm quarantine lift NODE --detail TEXT
      (validator) Sign and store a request to lift NODE's quarantine by decision. A quorum
      of validators must ask. Fork evidence is never lifted.
  dsm quarantine import FILE
      Store requests signed by other validators (a JSON request or an array of them),
      each checked against the genesis validators first; a request signed for an epoch
      that has not begun is refused.

NODE is a node id or a unique prefix of one known to this ledger.

EXIT STATUS  0 done, 1 error (not a validator, unknown node, bad request, nothing to lift).

EXAMPLES
  dsm quarantine list
  dsm quarantine add 3fa2c1 --detail "ticket 4410: exfiltration from this sensor"
  dsm quarantine lift 3fa2c1 --detail "reflashed and re-attested, ticket 4411"`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "list (default), add, lift or import", valueHint: "ACTION" },
    target: { type: "positional", required: false, description: "add/lift: the node id; import: the file", valueHint: "NODE|FILE" },
    detail: { type: "string", description: "add/lift: why, in one line (kept in the signed request)", valueHint: "TEXT" },
    "from-seq": { type: "string", description: "add: first seq to keep out (default: after the node's head in this ledger)", valueHint: "N" },
    reason: { type: "enum", options: ["operator", "attestation_missed", "attestation_failed"], description: "add: why (default operator; attestation_missed when a node did not answer a challenge)" },
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
    if (args.detail === undefined || String(args.detail).trim() === "") throw new CliError(`dsm quarantine ${action} needs --detail TEXT: the request says why`);
    if (action === "lift" && args["from-seq"] !== undefined) throw new CliError("--from-seq applies to add, not lift");
    const fromSeq = intArg(args["from-seq"] === undefined ? undefined : String(args["from-seq"]), "from-seq", 1);
    const reason = (args.reason ?? "operator") as QuarantineReason;
    if (action === "lift" && args.reason !== undefined) throw new CliError("--reason applies to add: a lift is always an operator's");
    return withNode(ctx, (node) => sign(ctx, node, action, target, String(args.detail), reason, fromSeq));
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

function sign(ctx: Context, node: DSMNode, action: "add" | "lift", target: string, detail: string, reason: QuarantineReason, fromSeq: number | undefined): void {
  const nodeId = resolveNode(node, target);
  let v: DSMValidator;
  try {
    v = DSMValidator.open(node);
  } catch (e) {
    if (e instanceof ValidatorKeyError) throw new CliError(`only a validator signs quarantine requests: ${e.message}`);
    throw e;
  }
  try {
    const store = v.builder.quarantine;
    const standing = store.standing(nodeId);
    if (action === "add" && standing.quarantined) throw new CliError(`node ${nodeId.slice(0, 16)}… is quarantined already (dsm quarantine list)`);
    if (action === "lift" && !standing.decided) {
      throw new CliError(
        standing.quarantined
          ? `node ${nodeId.slice(0, 16)}… is held by fork evidence (two valid microblocks for one seq), which proves itself and is never lifted; the device needs a new identity (dsm init)`
          : `node ${nodeId.slice(0, 16)}… is not quarantined: there is nothing to lift`,
      );
    }
    const record = v.quarantine(nodeId, { action: action === "add" ? "quarantine" : "lift", reason, detail, fromSeq });
    print(ctx.json ? JSON.stringify(record) : JSON.stringify(record, null, 2));
    const set = DSMValidator.validatorsOf(node);
    const asked = store.pending(nodeId).filter((r) => r.action === record.action).map((r) => r.validator);
    const distinct = new Set(asked).size;
    const need = record.action === "lift" || reason === "operator" ? `${set.quorum} (a quorum)` : `${faultyOf(set.n) + 1} observations or a quorum of ${set.quorum}`;
    warn(`request to ${record.action} node ${nodeId.slice(0, 16)}… signed by validator ${v.index}: ${distinct} validator(s) asked, ${need} needed; it takes effect from the checkpoint that decides it`);
  } finally {
    v.close();
  }
}

function importRecords(ctx: Context, node: DSMNode, file: string): void {
  const value = readJsonFile(file, "quarantine requests");
  const list = Array.isArray(value) ? value : [value];
  const set = DSMValidator.validatorsOf(node);
  const store = new QuarantineStore(node.ledger, node.mesh);
  const maxEpoch = DSMValidator.maxRequestEpoch(node);
  // All checked before any is stored: a bad request in the file stores nothing.
  const records = list.map((r, i) => {
    try {
      return parseQuarantine(r, node.mesh, set, `${file} request ${i + 1}`, { maxEpoch });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  });
  let added = 0;
  for (const r of records) if (store.add(r)) added++;
  if (ctx.json) printJson({ records: records.length, added });
  else warn(`${records.length} quarantine request(s) checked, ${added} new`);
}

function list(ctx: Context, node: DSMNode): void {
  const store = new QuarantineStore(node.ledger, node.mesh);
  const decisions = store.decisions();
  const pending = store.pending();
  const forks = store.forkedNodes();
  const nodes = new Set<string>([...decisions.map((d) => d.node_id), ...forks]);
  const active = [...nodes]
    .map((id) => ({ node_id: id, from_seq: store.quarantinedFrom(id), reason: reasonOf(id, store, forks.includes(id)) }))
    .filter((a) => a.from_seq !== undefined);
  const set = DSMValidator.validatorsOf(node);
  const groups = new Map<string, QuarantineRecord[]>();
  for (const r of pending) {
    const k = `${r.node_id}/${r.action}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const requests = [...groups.values()].map((rs) => {
    const { node_id, action } = rs[0]!;
    const validators = [...new Set(rs.map((r) => r.validator))].sort((a, b) => a - b);
    const attest = new Set(rs.filter((r) => r.reason !== "operator").map((r) => r.validator)).size;
    const need = action === "lift" ? set.quorum - validators.length : Math.min(set.quorum - validators.length, faultyOf(set.n) + 1 - attest);
    return { node_id, action, validators, needed: Math.max(0, need), requests: rs };
  });
  if (ctx.json) {
    printJson({ quarantined: active, decisions, pending: requests, records: store.records() });
    return;
  }
  if (active.length === 0) print("no node is quarantined");
  for (const a of active) print(`QUARANTINED ${a.node_id} from seq ${a.from_seq} (${a.reason})`);
  for (const d of decisions) print(`decided in epoch ${d.epoch}: ${d.action.padEnd(10)} ${d.node_id.slice(0, 16)}…${d.action === "quarantine" ? `  from seq ${d.from_seq}` : ""}`);
  for (const g of requests) {
    print(`pending: ${g.action} ${g.node_id.slice(0, 16)}… asked by validator(s) ${g.validators.join(", ")}; ${g.needed === 0 ? "enough: the next checkpoint may decide it" : `${g.needed} more needed`}`);
    for (const r of g.requests) print(`    epoch ${r.epoch}  validator ${r.validator}  ${r.reason}: ${r.detail}`);
  }
}

function reasonOf(nodeId: string, store: QuarantineStore, fork: boolean): string {
  const decided = store.decisions(nodeId);
  const last = decided.at(-1);
  // The requests the decision was taken on: those signed when the node had one decision fewer.
  const reasons = [...new Set(store.records(nodeId).filter((r) => r.action === "quarantine" && r.basis === decided.length - 1).map((r) => `${r.reason}: ${r.detail}`))];
  const why = last?.action === "quarantine" ? `${reasons.join("; ")} (decided in epoch ${last.epoch})` : null;
  return [why, fork ? "fork evidence" : null].filter(Boolean).join("; ");
}
