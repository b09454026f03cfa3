import { CliError, command, commonArgs, context, print, printJson, withNode } from "./common.ts";
import { resolveNode } from "./log.ts";
import type { DSMNode } from "../node/node.ts";
import { type StoredMicroblock, withoutLocalFields } from "../ledger/ledger.ts";

export default command({
  meta: { name: "show", description: "Show one microblock with its payload and key certificate" },
  help: `REF is a microblock id (64 hex, or a unique prefix of at least 8), or NODE:SEQ
where NODE is a node id or unique prefix. Prints {"microblock","payload","key_certificate"};
payload is null when it was withheld by its node.

EXAMPLES
  dsm show 9c1e4f0a
  dsm show 3fa2:57 --json | jq .payload.indicators`,
  args: {
    ...commonArgs,
    ref: { type: "positional", required: true, description: "ID, ID prefix, or NODE:SEQ", valueHint: "REF" },
  },
  async run({ args }) {
    const ctx = context(args);
    await withNode(ctx, (node) => {
      const mb = find(node, args.ref);
      const payload = node.ledger.payload(mb.payload_hash);
      const cert = node.ledger.keyCert(mb.key);
      const out = {
        microblock: withoutLocalFields(mb),
        payload: payload === null ? null : JSON.parse(payload),
        key_certificate: cert === null ? null : JSON.parse(cert),
      };
      if (ctx.json) printJson(out);
      else print(JSON.stringify(out, null, 2));
    }, { readonly: true });
  },
});

function find(node: DSMNode, ref: string): StoredMicroblock {
  const colon = /^([0-9a-f]{1,64}):(\d+)$/.exec(ref);
  if (colon) {
    const nodeId = resolveNode(node, colon[1]!);
    const seq = Number(colon[2]);
    const mb = node.ledger.bySeq(node.mesh, nodeId, seq) ?? node.ledger.list({ nodeId, fromSeq: seq, toSeq: seq, limit: 1 })[0];
    if (!mb) throw new CliError(`no microblock ${nodeId.slice(0, 12)}…:${seq}`);
    return mb;
  }
  if (!/^[0-9a-f]{8,64}$/.test(ref)) throw new CliError(`"${ref}" is neither an id (8-64 hex) nor NODE:SEQ`);
  if (ref.length === 64) {
    const mb = node.ledger.byId(ref);
    if (!mb) throw new CliError(`no microblock with id ${ref}`);
    return mb;
  }
  const found = node.ledger.byIdPrefix(ref, 2);
  if (found.length === 0) throw new CliError(`no microblock id starts with ${ref}`);
  if (found.length > 1) throw new CliError(`id prefix ${ref} is ambiguous`);
  return found[0]!;
}
