import * as fs from "node:fs";
import { DEFAULT_CONFIG_TEXT } from "../config/config.ts";
import { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, context, print, printJson, readPemFile, warning } from "./common.ts";

export default command({
  meta: { name: "init", description: "Create a node: data dir, identity key, libp2p and BLS keys, card, config" },
  help: `Creates the data directory (mode 0700) and, each in a 0600 file:
  identity.pem   the P-256 identity key, a software key; with --tpm TCTI (or
                 identity.kind: tpm) the key is created inside the TPM instead and
                 made persistent at identity.tpm_handle (default 0x81000100); its
                 private part never leaves the TPM, and identity.tpm.json records
                 where it is. The card then says tpm: true and carries the TPM's
                 evidence (DESIGN.md section 7): the endorsement key (EK) and its
                 certificate read from NV (0x01c00002 RSA 2048, 0x01c0000a P-256,
                 0x01c00016 P-384), the intermediates given with --ek-chain, the
                 attestation key (AK), and the AK's TPM2_Certify of the identity key.
                 Validators enroll the AK by credential activation before they trust
                 it; until then the node counts as a software node.
  libp2p.key     the Ed25519 key that fixes the node's libp2p peer id
  bls.key        the BLS12-381 key this node votes with as a validator
  privacy.key    the secret for privacy.anonymize_ips
  control.token  the bearer token control.port requires (control.token_file; one
                 already there is kept without --force)
Then writes card.json (the signed node card), dsm.yaml (the documented default config,
if absent) and genesis.json: the given mesh genesis, or without --genesis a one-node
local mesh in which this node is the only validator. Existing keys are never replaced
without --force; --force gives the node a new identity (the old chain stays verifiable).

ROLE  --role (default node.role, edge) goes into the card. Only a card of role validator
or both can be named in a mesh genesis (dsm genesis refuses an edge's card). The local
one-node mesh is the exception: its genesis names the node itself, whatever its role, so
that its own checkpoints can be made; dsm run on an edge says "edge, validator of its
local one-node mesh". A validator for a real mesh: dsm init --role validator.

TPM HANDLE  Without --tpm-handle the key goes to identity.tpm_handle (default
0x81000100, in the owner range); if that default handle holds a key this data dir did
not make (another node on the same TPM, another program's key), the first free handle of
0x81000100-0x810001ff is used and init says which. dsm makes no key in the ranges the TCG
reserves: storage primary keys (0x81000000-0x810000ff, the SRK), endorsement keys
(0x81010000-0x8101ffff, the EK at 0x81010001) and the platform's (0x81800000 and up). --tpm-handle 0x81...... names the
handle: held by any other key, it is refused (with a free handle suggested); auto picks
the first free one. --force replaces only this data dir's own TPM key, recognised by the
public key identity.tpm.json records, never another key at the same handle. The
attestation key is derived again for each quote and takes no handle.

TPM  TCTI strings: device:/dev/tpmrm0 (the kernel's resource manager), tabrmd,
swtpm:host=127.0.0.1,port=2321 (a software TPM, for tests). Needs the system's
tpm2-tss libraries (Debian: libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0
libtss2-rc0, and libtss2-tcti-swtpm0 for swtpm).

EXAMPLES
  dsm init --data-dir /var/lib/dsm
  dsm init --tpm device:/dev/tpmrm0 --role validator
  dsm init --tpm device:/dev/tpmrm0 --tpm-handle auto --data-dir /var/lib/dsm-2
  dsm init --genesis mesh-genesis.json --role edge`,
  args: {
    ...commonArgs,
    force: { type: "boolean", description: "Replace existing keys (the node gets a new identity)" },
    genesis: { type: "string", description: "Join the mesh this genesis file defines instead of a local one", valueHint: "FILE" },
    role: { type: "enum", options: ["edge", "validator", "both"], description: "Node role (default: node.role from the config)" },
    tpm: { type: "string", description: "Create the identity key in this TPM (TCTI string) instead of a key file", valueHint: "TCTI" },
    "tpm-handle": { type: "string", description: "Persistent handle for the TPM key, or auto: the first free one (default: identity.tpm_handle)", valueHint: "0x81......|auto" },
    "ek-chain": { type: "string", description: "With --tpm: PEM intermediates of the EK certificate, carried on the card", valueHint: "FILE" },
  },
  async run({ args }) {
    const ctx = context(args);
    const tpmHandle = tpmHandleArg(args["tpm-handle"]);
    if (tpmHandle !== undefined && args.tpm === undefined && ctx.config.identity.kind !== "tpm") throw new CliError("--tpm-handle needs --tpm TCTI (or identity.kind: tpm)");
    if (args["ek-chain"] !== undefined && args.tpm === undefined && ctx.config.identity.kind !== "tpm") throw new CliError("--ek-chain needs --tpm TCTI (or identity.kind: tpm)");
    const ekChain = args["ek-chain"] === undefined ? undefined : readPemFile(String(args["ek-chain"]), "--ek-chain");
    const r = await DSMNode.init({
      dataDir: ctx.dataDir,
      config: ctx.config,
      // The documented defaults as <data-dir>/dsm.yaml, only when no config file is in use: a copy
      // beside --config, DSM_CONFIG or /etc/dsm/dsm.yaml would be read instead of it next time.
      configText: ctx.configPath === null ? DEFAULT_CONFIG_TEXT : undefined,
      force: args.force,
      genesisFile: args.genesis,
      role: args.role as "edge" | "validator" | "both" | undefined,
      tpm: args.tpm === undefined ? undefined : String(args.tpm),
      tpmHandle,
      ekChain,
    });
    const kind = r.card.tpm ? "tpm" : "software";
    if (kind === "software") warning("dsm: identity key is a SOFTWARE key in a 0600 file (no TPM): protect this data dir like a private key");
    const tpm = r.tpm;
    const skippedNote = tpm?.skipped ? `TPM handle ${tpm.skipped} holds another key (left alone): this node's key is at the free handle ${tpm.handle}` : null;
    if (ctx.json) {
      printJson({
        node_id: r.card.node_id,
        mesh: r.mesh,
        mesh_name: r.genesis.name,
        data_dir: r.layout.dir,
        key_kind: kind,
        peer_id: r.card.peer_id,
        role: r.card.role,
        ...(tpm ? { tpm_handle: tpm.handle, tpm_handle_skipped: tpm.skipped, tpm_key_replaced: tpm.replaced, tpm_handle_released: tpm.released } : {}),
      });
      return;
    }
    print(
      [
        `initialised ${r.layout.dir}`,
        `  node id   ${r.card.node_id}`,
        `  mesh      ${r.mesh} (${r.genesis.name})`,
        `  peer id   ${r.card.peer_id}`,
        `  role      ${r.card.role}`,
        kind === "tpm" ? `  identity  TPM key at handle ${tpm!.handle} (${r.layout.tpmIdentity}); attestation key ${r.card.ak_pub}` : `  identity  software key ${r.layout.identityKey}`,
        ...(kind === "tpm" ? [`  EK        ${r.card.tpm_evidence?.ek_certificates.length ? `certificate from NV${ekChain?.length ? ` + ${ekChain.length} intermediate(s)` : ""}` : "no certificate in NV: the genesis must list its digest (ek_allowlist)"}`] : []),
        ...(skippedNote ? [`  note      ${skippedNote}`] : []),
        ...(tpm?.replaced ? [`  note      replaced this data dir's previous TPM key at ${tpm.handle}`] : []),
        ...(tpm?.released ? [`  note      evicted this data dir's previous TPM key at ${tpm.released}`] : []),
        `  config    ${ctx.configPath ?? (fs.existsSync(r.layout.config) ? r.layout.config : "(built-in defaults)")}`,
      ].join("\n"),
    );
  },
});

/** --tpm-handle: a persistent handle in hex (0x81000000-0x81ffffff) or "auto". */
function tpmHandleArg(value: string | undefined): number | "auto" | undefined {
  if (value === undefined) return undefined;
  if (value === "auto") return "auto";
  if (!/^0x81[0-9a-fA-F]{6}$/.test(value)) throw new CliError(`--tpm-handle must be a persistent handle 0x81000000-0x81ffffff in hex, or auto; got "${value}"`);
  return Number.parseInt(value, 16);
}

