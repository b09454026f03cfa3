import { parseGenesis, type Genesis } from "../protocol/genesis.ts";
import { verifyBundle } from "../log/verify-bundle.ts";
import { BundleError } from "../protocol/certificate.ts";
import { CliError, command, commonArgs, EXIT, print, printJson, readJsonFile } from "./common.ts";

export default command({
  meta: { name: "verify-proof", description: "Check a proof bundle offline, against nothing but the mesh genesis" },
  help: `The light client. Reads BUNDLE (from dsm proof) and the mesh's genesis; no node, data
dir or network is needed. Checks every hash and signature: for an inclusion bundle the
key certificate, the microblock's id and signature, its payload against payload_hash, the
node's admission, the inclusion proof up to the checkpoint root, and the finality
certificate (a quorum q = n - floor((n-1)/3) of the validators in force at its epoch in
the signers bitfield, and their aggregate BLS signature over the checkpoint); for a
consistency bundle both certificates and the consistency proof between their trees.

The validators in force are the genesis's until the mesh changes its set. A bundle of a
later checkpoint then carries set_changes, the certificates of every checkpoint that
finalized a change before it; each is checked (signed by a quorum of the set in force at
its epoch, the change requested by a quorum of that set) and applied in turn, two epochs
after its checkpoint, so the genesis stays the only thing trusted. The OK line then says
which set signed ("of the set in force from epoch 14 (1 change since genesis)"). A
bundle that leaves out the latest changes is checked against the older set: get bundles
from a node that follows the mesh.

An inclusion bundle made by the node itself, or by a validator that enrolled the node,
carries the node's card; then a second line says which links of the node's chain of trust
(DESIGN.md section 7) check out against the genesis: "TPM-rooted, EK certificate from
<issuer> → AK → identity key → signing key → this microblock", or "software key". The
AK's credential activation is checked by the validators at enrollment, not here.

EXIT STATUS  0 the bundle proves what it says (one line "OK: ..."), 2 it does not (one
line saying what failed), 1 a file is unreadable, not JSON, or the genesis is invalid.

EXAMPLES
  dsm verify-proof proof.json --genesis genesis.json
  dsm verify-proof proof.json --genesis genesis.json --json | jq .ok`,
  args: {
    ...commonArgs,
    bundle: { type: "positional", required: true, description: "Proof bundle (JSON) from dsm proof", valueHint: "BUNDLE" },
    genesis: { type: "string", required: true, description: "The mesh's genesis.json", valueHint: "FILE" },
  },
  async run({ args }) {
    // Deliberately no context()/withNode: the light client touches no data dir.
    const json = Boolean(args.json);
    const genesisValue = readJsonFile(args.genesis as string, "genesis");
    let genesis: Genesis;
    try {
      genesis = parseGenesis(genesisValue, { checkPop: true });
    } catch (e) {
      throw new CliError(`${args.genesis}: ${(e as Error).message}`);
    }
    const bundle = readJsonFile(args.bundle as string, "bundle");
    try {
      const summary = verifyBundle(bundle, genesis);
      if (json) printJson({ ok: true, ...summary });
      else {
        print(`OK: ${summary.message}`);
        if (summary.type === "inclusion") print(`  node key: ${summary.trust.detail}`);
      }
    } catch (e) {
      if (!(e instanceof BundleError)) throw e;
      if (json) printJson({ ok: false, error: e.message });
      process.stderr.write(`dsm verify-proof: FAILED: ${e.message}\n`);
      process.exitCode = EXIT.verifyFailed;
    }
  },
});
