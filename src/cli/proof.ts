import * as fs from "node:fs";
import { CheckpointBuilder } from "../log/builder.ts";
import { BundleUnavailable, consistencyBundle, inclusionBundle } from "../log/bundle.ts";
import type { ProofBundle } from "../log/verify-bundle.ts";
import type { NodeCard } from "../protocol/card.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { CliError, command, commonArgs, context, intArg, print, withNode } from "./common.ts";

export default command({
  meta: { name: "proof", description: "Print a self-contained proof bundle: inclusion of a microblock, or consistency of two checkpoints" },
  help: `dsm proof inclusion ID [--checkpoint EPOCH] [-o FILE]
  ID is a full microblock id (64 hex). The bundle holds the microblock, its key
  certificate, its payload (null if withheld), its leaf index, the RFC 9162 inclusion
  proof and the finality certificate of the checkpoint (by default the latest one, which
  contains every leaf ever checkpointed). Exit 1 "not yet in a checkpoint" when it is not.

dsm proof consistency EPOCH1 EPOCH2 [-o FILE]
  The two finality certificates and the RFC 9162 consistency proof from the tree of the
  first to the tree of the second.

After validator-set changes, either bundle also carries set_changes: the finality
certificates of the checkpoints that changed the set before the one proven, oldest
first, the chain verify-proof follows from the genesis to the set that signed it.

The bundle is pretty JSON on stdout (compact with --json), or written to FILE with -o.
Check it anywhere, offline, with: dsm verify-proof BUNDLE --genesis genesis.json

EXAMPLES
  dsm proof inclusion 9c1e4f0a...(64 hex) -o proof.json
  dsm proof consistency 41 42 --json > consistency.json`,
  args: {
    ...commonArgs,
    kind: { type: "positional", required: true, description: "inclusion or consistency", valueHint: "KIND" },
    first: { type: "positional", required: true, description: "Microblock ID (inclusion) or EPOCH1 (consistency)", valueHint: "ID|EPOCH1" },
    second: { type: "positional", required: false, description: "EPOCH2 (consistency)", valueHint: "EPOCH2" },
    checkpoint: { type: "string", description: "Prove inclusion in the checkpoint of this epoch (default: the latest)", valueHint: "EPOCH" },
    output: { type: "string", alias: "o", description: "Write the bundle to FILE instead of stdout", valueHint: "FILE" },
  },
  async run({ args }) {
    const ctx = context(args);
    const kind = args.kind as string;
    let make: (ledger: Ledger, builder: CheckpointBuilder, cardOf: (nodeId: string) => NodeCard | null) => ProofBundle;
    if (kind === "inclusion") {
      if (args.second !== undefined) throw new CliError(`dsm proof inclusion takes one ID, got an extra "${args.second}"`);
      const epoch = intArg(args.checkpoint, "checkpoint");
      make = (ledger, builder, cardOf) => inclusionBundle(ledger, builder, args.first as string, epoch, cardOf);
    } else if (kind === "consistency") {
      if (args.checkpoint !== undefined) throw new CliError("--checkpoint only applies to dsm proof inclusion");
      if (args.second === undefined) throw new CliError("dsm proof consistency needs EPOCH1 and EPOCH2");
      const e1 = epochArg(args.first as string);
      const e2 = epochArg(args.second as string);
      make = (_ledger, builder) => consistencyBundle(builder, e1, e2);
    } else throw new CliError(`proof kind must be "inclusion" or "consistency", got "${kind}"`);
    const bundle = await withNode(ctx, (node) => {
      try {
        return make(node.ledger, new CheckpointBuilder(node.ledger, node.policy), (n) => node.cardOf(n));
      } catch (e) {
        if (e instanceof BundleUnavailable) throw new CliError(e.message);
        throw e;
      }
    }, { readonly: true });
    const text = ctx.json ? JSON.stringify(bundle) : JSON.stringify(bundle, null, 2);
    if (args.output !== undefined) fs.writeFileSync(args.output, text + "\n");
    else print(text);
  },
});

function epochArg(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new CliError(`epoch must be a non-negative integer, got "${value}"`);
  return Number(value);
}
