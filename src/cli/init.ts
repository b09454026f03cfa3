import * as fs from "node:fs";
import { DEFAULT_CONFIG_TEXT } from "../config/config.ts";
import { DSMNode } from "../node/node.ts";
import { command, commonArgs, context, print, printJson, warn } from "./common.ts";

export default command({
  meta: { name: "init", description: "Create a node: data dir, identity key, libp2p and BLS keys, card, config" },
  help: `Creates the data directory (mode 0700) and, each in a 0600 file:
  identity.pem   the P-256 identity key (a software key: no TPM in this build)
  libp2p.key     the Ed25519 key that fixes the node's libp2p peer id
  bls.key        the BLS12-381 key this node votes with as a validator
  privacy.key    the secret for privacy.anonymize_ips
Then writes card.json (the signed node card), dsm.yaml (the documented default config,
if absent) and genesis.json: the given mesh genesis, or without --genesis a one-node
local mesh in which this node is the only validator. Existing keys are never replaced
without --force; --force gives the node a new identity (the old chain stays verifiable).

EXAMPLES
  dsm init --data-dir /var/lib/dsm
  dsm init --genesis mesh-genesis.json --role edge`,
  args: {
    ...commonArgs,
    force: { type: "boolean", description: "Replace existing keys (the node gets a new identity)" },
    genesis: { type: "string", description: "Join the mesh this genesis file defines instead of a local one", valueHint: "FILE" },
    role: { type: "enum", options: ["edge", "validator", "both"], description: "Node role (default: node.role from the config)" },
  },
  async run({ args }) {
    const ctx = context(args);
    const r = await DSMNode.init({
      dataDir: ctx.dataDir,
      config: ctx.config,
      configText: DEFAULT_CONFIG_TEXT,
      force: args.force,
      genesisFile: args.genesis,
      role: args.role as "edge" | "validator" | "both" | undefined,
    });
    warn("dsm: identity key is a SOFTWARE key in a 0600 file (no TPM): protect this data dir like a private key");
    if (ctx.json) {
      printJson({ node_id: r.card.node_id, mesh: r.mesh, mesh_name: r.genesis.name, data_dir: r.layout.dir, key_kind: "software", peer_id: r.card.peer_id, role: r.card.role });
      return;
    }
    print(
      [
        `initialised ${r.layout.dir}`,
        `  node id   ${r.card.node_id}`,
        `  mesh      ${r.mesh} (${r.genesis.name})`,
        `  peer id   ${r.card.peer_id}`,
        `  role      ${r.card.role}`,
        `  identity  software key ${r.layout.identityKey}`,
        `  config    ${fs.existsSync(r.layout.config) ? r.layout.config : "(built-in defaults)"}`,
      ].join("\n"),
    );
  },
});
