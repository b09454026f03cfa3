import { command, commonArgs, context, print, printJson, withNode } from "./common.ts";

export default command({
  meta: { name: "card", description: "Print this node's signed node card" },
  help: `Prints the node card (type N): node id, role, identity public key, tpm flag,
libp2p peer id, listen addresses, BLS public key and proof of possession, signed by the
identity key. A mesh operator collects validators' cards to build a genesis.

EXAMPLES
  dsm card > my-card.json`,
  args: { ...commonArgs },
  async run({ args }) {
    const ctx = context(args);
    await withNode(ctx, (node) => {
      const card = node.card();
      if (ctx.json) printJson(card);
      else print(JSON.stringify(card, null, 2));
    }, { readonly: true });
  },
});
