import { DSMValidator, ValidatorKeyError } from "../node/validator.ts";
import { CheckpointBuilder } from "../log/builder.ts";
import { type NodeCard, parseCard } from "../protocol/card.ts";
import { epochAt } from "../protocol/checkpoint.ts";
import { mustAttest } from "../protocol/genesis.ts";
import { applyChange, CHANGE_DELAY_EPOCHS, makeSetChangeRequest, parseSetChangeRequest, type SetChange, type SetChangeRequest } from "../protocol/set-change.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { quorumOf } from "../protocol/validator-set.ts";
import { verifyEvidence } from "../tpm/evidence.ts";
import type { DSMNode } from "../node/node.ts";
import { makeNextKeys, RotationError, rotationFiles } from "../node/rotation.ts";
import { CliError, command, commonArgs, type Context, context, print, printJson, readJsonFile, warn, withNode } from "./common.ts";

export default command({
  meta: { name: "validators", description: "Show the validator set in force and its history; propose adding, removing or re-keying a validator" },
  help: `The genesis names the first validators; the set changes only by a decision of a quorum
of the set in force (DESIGN.md section 11). A validator of the set signs a request (type R);
once a quorum asked for the same change, a checkpoint carries it with their requests, and
it takes effect two epochs after that checkpoint (no checkpoint is made for the epoch in
between). From then on the new set proposes, votes and signs; a removed validator's
signature no longer counts. Proof bundles carry the certificates of every change, so
dsm verify-proof needs only the genesis.

  dsm validators [list] [--json]
      The set in force (index, node, peer, BLS key), the sets before it and from which
      epoch each counted, and the requests still pending with how many more are needed.
  dsm validators propose add CARD --detail TEXT
      (validator) Ask to add the node of CARD (a validator card: dsm card --json on a node
      made with dsm init --role validator). Its card is checked as a genesis checks one; if
      the genesis makes validators attest, its TPM evidence must verify too.
  dsm validators propose remove NODE --detail TEXT
      (validator) Ask to remove a validator (equivocation evidence, a retired device).
  dsm validators propose rotate CARD --detail TEXT
      (validator) Ask to replace a validator's card by a new one of the same node (same
      identity key) with new BLS and libp2p keys, after a key was exposed.
  dsm validators new-keys [--libp2p] [--force]
      (on the validator whose keys are to change) Make a new BLS key (and with --libp2p a
      new libp2p key, so a new peer id) beside the ones in use, as bls.key.next,
      libp2p.key.next and card.json.next, and print that card: the CARD of propose rotate.
      The node keeps signing with its old keys until the set in force names the new card;
      then it switches (the old files kept as .old). After a libp2p rotation, restart
      dsm run once it has switched.
  dsm validators import FILE
      Store requests signed by other validators (a request or an array), each checked.

Other validators' operators run the same propose command to join a request; dsm run
gossips requests to the mesh. NODE is a node id or a unique prefix of one.

EXIT STATUS  0 done, 1 error (not a validator, unknown node, a card or change refused).

EXAMPLES
  dsm validators
  dsm validators propose add new-validator.card.json --detail "site B validator, ticket 512"
  dsm validators propose remove 7c01e2 --detail "equivocated in epoch 88412"`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "list (default), propose or import", valueHint: "ACTION" },
    kind: { type: "positional", required: false, description: "propose: add, remove or rotate; import: the file", valueHint: "KIND|FILE" },
    target: { type: "positional", required: false, description: "add/rotate: the card file; remove: the node id", valueHint: "CARD|NODE" },
    detail: { type: "string", description: "propose: why, in one line (kept in the signed request)", valueHint: "TEXT" },
    libp2p: { type: "boolean", description: "new-keys: a new libp2p key (peer id) too" },
    force: { type: "boolean", description: "new-keys: replace a rotation already waiting" },
  },
  async run({ args }) {
    const ctx = context(args);
    const action = args.action === undefined ? "list" : String(args.action);
    if (action === "list") {
      if (args.kind !== undefined || args.detail !== undefined) throw new CliError("dsm validators list takes no other arguments");
      return withNode(ctx, (node) => list(ctx, node), { readonly: true });
    }
    if (action === "new-keys") {
      if (args.kind !== undefined) throw new CliError("dsm validators new-keys takes no positional argument");
      return withNode(ctx, (node) => newKeys(ctx, node, Boolean(args.libp2p), Boolean(args.force)));
    }
    if (action === "import") {
      if (args.kind === undefined) throw new CliError("dsm validators import needs a FILE");
      return withNode(ctx, (node) => importRequests(ctx, node, String(args.kind)));
    }
    if (action !== "propose") throw new CliError(`unknown action "${action}": use list, propose, new-keys or import`);
    const kind = args.kind === undefined ? "" : String(args.kind);
    if (kind !== "add" && kind !== "remove" && kind !== "rotate") throw new CliError("dsm validators propose needs add CARD, remove NODE or rotate CARD");
    if (args.target === undefined) throw new CliError(`dsm validators propose ${kind} needs ${kind === "remove" ? "the NODE id" : "a CARD file"}`);
    if (args.detail === undefined || String(args.detail).trim() === "") throw new CliError(`dsm validators propose ${kind} needs --detail TEXT: the request says why`);
    return withNode(ctx, (node) => propose(ctx, node, kind, String(args.target), String(args.detail)));
  },
});

function readCard(node: DSMNode, file: string): NodeCard {
  let card: NodeCard;
  try {
    card = parseCard(readJsonFile(file, "validator card"), `${file}`);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (!card.bls_pub) throw new CliError(`${file}: the card has no BLS key (make the node with dsm init --role validator)`);
  // The genesis's attestation policy applies to a validator added later as to one it named.
  if (mustAttest({ ...node.genesis, validators: [...node.genesis.validators, card] }, card.node_id)) {
    const r = verifyEvidence(card, node.genesis.attestation, Date.now());
    if (!r.ok) throw new CliError(`${file}: the genesis makes validators attest, and this card's TPM evidence does not verify (${r.check}): ${r.reason}`);
  }
  return card;
}

function resolveValidator(cards: readonly NodeCard[], text: string): string {
  if (!/^[0-9a-f]{4,64}$/.test(text)) throw new CliError(`"${text}" is not a node id or a prefix of one (4 or more lowercase hex characters)`);
  const hits = cards.filter((c) => c.node_id.startsWith(text));
  if (hits.length === 0) throw new CliError(`no validator of the set in force has an id starting ${text}`);
  if (hits.length > 1) throw new CliError(`${text} is ambiguous: ${hits.length} validators start with it`);
  return hits[0]!.node_id;
}

function propose(ctx: Context, node: DSMNode, kind: "add" | "remove" | "rotate", target: string, detail: string): void {
  let v: DSMValidator;
  try {
    v = DSMValidator.open(node);
  } catch (e) {
    if (e instanceof ValidatorKeyError) throw new CliError(`only a validator of the set in force signs set-change requests: ${e.message}`);
    throw e;
  }
  try {
    const history = v.builder.history();
    const cards = history.latestCards();
    const change: SetChange = kind === "remove" ? { action: "remove", node_id: resolveValidator(cards, target) } : { action: kind, card: readCard(node, target) };
    try {
      applyChange(node.genesis, cards, change);
    } catch (e) {
      throw new CliError(`this change cannot be made: ${(e as Error).message}`);
    }
    const request = makeSetChangeRequest({
      mesh: node.mesh,
      change,
      basis: history.version,
      epoch: Math.max(0, epochAt(node.genesis, Date.now())),
      detail,
      validator: v.index,
      sign: (d) => v.sign(d),
    });
    v.builder.sets.add(parseSetChangeRequest(request, node.mesh, v.validators));
    print(ctx.json ? JSON.stringify(request) : JSON.stringify(request, null, 2));
    const asked = new Set(v.builder.sets.pending().filter((r) => canonicalize(r.change) === canonicalize(change)).map((r) => r.validator)).size;
    warn(`request to ${kind} ${(change.action === "remove" ? change.node_id : change.card.node_id).slice(0, 16)}… signed by validator ${v.index}: ${asked} of the ${v.validators.quorum} needed (a quorum of ${cards.length}); it takes effect ${CHANGE_DELAY_EPOCHS} epochs after the checkpoint that decides it`);
  } finally {
    v.close();
  }
}

async function newKeys(ctx: Context, node: DSMNode, libp2p: boolean, force: boolean): Promise<void> {
  let card: NodeCard;
  try {
    card = await makeNextKeys(node, { libp2p, force });
  } catch (e) {
    if (e instanceof RotationError) throw new CliError(e.message);
    throw e;
  }
  print(ctx.json ? JSON.stringify(card) : JSON.stringify(card, null, 2));
  warn(`new ${libp2p ? "BLS and libp2p keys" : "BLS key"} waiting in ${node.layout.dir} (${rotationFiles(node).card}); a quorum installs them with: dsm validators propose rotate ${rotationFiles(node).card} --detail TEXT`);
}

function importRequests(ctx: Context, node: DSMNode, file: string): void {
  const value = readJsonFile(file, "set-change requests");
  const list = Array.isArray(value) ? value : [value];
  const builder = new CheckpointBuilder(node.ledger, node.policy);
  const set = DSMValidator.validatorsOf(node, builder);
  const maxEpoch = DSMValidator.maxRequestEpoch(node);
  const requests = list.map((r, i) => {
    try {
      return parseSetChangeRequest(r, node.mesh, set, { maxEpoch }, `${file} request ${i + 1}`);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  });
  let added = 0;
  for (const r of requests) if (builder.sets.add(r)) added++;
  if (ctx.json) printJson({ requests: requests.length, added });
  else warn(`${requests.length} set-change request(s) checked, ${added} new`);
}

const cardRow = (c: NodeCard, i: number) => ({ index: i, node_id: c.node_id, peer_id: c.peer_id, bls_pub: c.bls_pub! });

function list(ctx: Context, node: DSMNode): void {
  const builder = new CheckpointBuilder(node.ledger, node.policy);
  const history = builder.history();
  const changes = builder.sets.changes();
  const now = epochAt(node.genesis, Date.now());
  const eras = history.eras.map((e, i) => ({
    from_epoch: e.fromEpoch,
    change: i === 0 ? null : { ...describe(changes[i - 1]!.change), decided_epoch: changes[i - 1]!.epoch },
    validators: e.cards.map(cardRow),
    quorum: quorumOf(e.cards.length),
  }));
  const latest = history.latestCards();
  const groups = new Map<string, SetChangeRequest[]>();
  for (const r of builder.sets.pending()) {
    const k = canonicalize(r.change);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const pending = [...groups.values()].map((rs) => {
    const validators = [...new Set(rs.map((r) => r.validator))].sort((a, b) => a - b);
    return { ...describe(rs[0]!.change), validators, needed: Math.max(0, quorumOf(latest.length) - validators.length), requests: rs };
  });
  const current = { from_epoch: history.eras.at(-1)!.fromEpoch, validators: latest.map(cardRow), quorum: quorumOf(latest.length), in_force: history.eras.at(-1)!.fromEpoch <= now };
  if (ctx.json) {
    printJson({ current, history: eras, pending });
    return;
  }
  print(`validator set ${history.version === 0 ? "of the genesis" : `after ${history.version} change(s)`}, in force from epoch ${current.from_epoch}${current.in_force ? "" : ` (not yet: the mesh is at epoch ${now})`}; quorum ${current.quorum} of ${latest.length}`);
  for (const r of current.validators) print(`  ${String(r.index).padStart(3)}  ${r.node_id}  peer ${r.peer_id}`);
  for (const e of eras.slice(1)) print(`change decided in epoch ${e.change!.decided_epoch}, in force from epoch ${e.from_epoch}: ${e.change!.action} ${e.change!.node_id}`);
  for (const g of pending) print(`pending: ${g.action} ${g.node_id.slice(0, 16)}… asked by validator(s) ${g.validators.join(", ")}; ${g.needed === 0 ? "enough: the next checkpoint may decide it" : `${g.needed} more needed`}`);
}

function describe(c: SetChange): { action: string; node_id: string } {
  return { action: c.action, node_id: c.action === "remove" ? c.node_id : c.card.node_id };
}
