import * as fs from "node:fs";
import { isHex } from "../encoding/hex.ts";
import { parseGenesis, type Genesis } from "../protocol/genesis.ts";
import { DSMValidator } from "../node/validator.ts";
import { TpmIdentityKey } from "../tpm/tpm-key.ts";
import { answerChallenge, goldenDigest, verifyAttestation } from "../tpm/attestation.ts";
import type { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, type Context, context, EXIT, print, printJson, readJsonFile, warn, warning, withNode } from "./common.ts";

export default command({
  meta: { name: "attest", description: "Answer an attestation challenge with a TPM quote, or check an answer" },
  help: `DESIGN.md section 7: a validator challenges a node with a fresh nonce; the node answers
with a TPM2_Quote of the genesis policy's PCRs (sha256 bank) signed by the attestation key
its card names; anyone with the genesis checks the answer, with no TPM of their own.

  dsm attest --nonce HEX [--pcrs LIST] [-o FILE]
      On a TPM node: the answer (an attestation bundle: card, nonce, quote, signature).
      PCRs default to the genesis policy's (0-7 when it names none).
  dsm attest --golden [--pcrs LIST]
      On a reference node: {"pcrs": [...], "digests": ["<current composite digest>"]},
      the policy file that dsm genesis --pcr-policy records.
  dsm attest verify BUNDLE [--genesis FILE] [--nonce HEX] [--quarantine]
      Checks an answer: the bundle's mesh, the card's signature, a TPM node admitted to
      the mesh, the quote signed by the card's attestation key, exactly the policy's
      PCRs, a digest the genesis accepts, and with --nonce the challenge's nonce (without
      it, freshness is not checked and a warning says so). --genesis defaults to the data
      dir's genesis. With --quarantine, run on a validator: a failed answer makes that
      validator sign a quarantine record (type Q) for the node, stored in its ledger and
      printed, so the node's later microblocks stay out of checkpoints.

LIST: PCR indices, e.g. 0,1,2,7 or 0-7.

EXIT STATUS  0 answer made / verified, 2 the answer does not verify, 1 error (no TPM,
unreadable file, bad arguments).

EXAMPLES
  dsm attest --nonce $(openssl rand -hex 32) -o answer.json
  dsm attest --golden > pcr-policy.json
  dsm attest verify answer.json --genesis genesis.json --nonce <the nonce sent>`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "verify: check an answer instead of making one", valueHint: "verify" },
    bundle: { type: "positional", required: false, description: "With verify: the attestation bundle file", valueHint: "BUNDLE" },
    nonce: { type: "string", description: "The challenge: 32 bytes as 64 hex characters", valueHint: "HEX" },
    pcrs: { type: "string", description: "PCR indices to quote (default: the genesis policy's)", valueHint: "LIST" },
    golden: { type: "boolean", description: "Print this TPM's current PCR digest as a policy file" },
    genesis: { type: "string", description: "With verify: the mesh genesis (default: the data dir's)", valueHint: "FILE" },
    quarantine: { type: "boolean", description: "With verify, on a validator: sign and store a quarantine record on failure" },
    output: { type: "string", alias: "o", description: "Write the answer here instead of stdout", valueHint: "FILE" },
  },
  async run({ args }) {
    const ctx = context(args);
    const action = args.action === undefined ? undefined : String(args.action);
    if (action !== undefined && action !== "verify") throw new CliError(`unknown action "${action}": use dsm attest --nonce HEX, dsm attest --golden or dsm attest verify BUNDLE`);
    if (action === "verify") return verify(ctx, args);
    if (args.bundle !== undefined) throw new CliError(`unexpected argument "${args.bundle}"`);
    if (args.quarantine || args.genesis !== undefined) throw new CliError("--genesis and --quarantine belong to dsm attest verify");
    if (args.golden && args.nonce !== undefined) throw new CliError("--golden and --nonce exclude each other");
    if (!args.golden && args.nonce === undefined) throw new CliError("give --nonce HEX (answer a challenge) or --golden (print a PCR policy); see dsm attest --help");
    const nonce = args.nonce === undefined ? undefined : String(args.nonce);
    if (nonce !== undefined && !isHex(nonce, 32)) throw new CliError("--nonce must be 64 lowercase hex characters (32 bytes)");
    await withNode(ctx, (node) => {
      const key = tpmKeyOf(node);
      const pcrs = args.pcrs !== undefined ? parsePcrList(String(args.pcrs)) : node.genesis.attestation.pcrs.length > 0 ? node.genesis.attestation.pcrs : [0, 1, 2, 3, 4, 5, 6, 7];
      if (args.golden) {
        const policy = { pcrs, digests: [goldenDigest(key, pcrs)] };
        print(ctx.json ? JSON.stringify(policy) : JSON.stringify(policy, null, 2));
        return;
      }
      const bundle = answerChallenge(key, node.card(), node.mesh, nonce!, pcrs);
      const text = ctx.json || args.output === undefined ? JSON.stringify(bundle) : JSON.stringify(bundle, null, 2) + "\n";
      if (args.output !== undefined) {
        fs.writeFileSync(String(args.output), text, { mode: 0o644 });
        warn(`attestation answer for nonce ${nonce!.slice(0, 16)}… (PCRs ${pcrs.join(",")}) written to ${args.output}`);
      } else print(text);
    });
  },
});

function tpmKeyOf(node: DSMNode): TpmIdentityKey {
  if (!(node.identity instanceof TpmIdentityKey)) throw new CliError("this node's identity key is a software key: it has no TPM to attest with (dsm init --tpm TCTI)");
  return node.identity;
}

export function parsePcrList(text: string): number[] {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^\s*(\d{1,2})\s*(?:-\s*(\d{1,2})\s*)?$/.exec(part);
    if (!m) throw new CliError(`--pcrs: "${part}" is not a PCR index or range (e.g. 0,1,7 or 0-7)`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a > 23 || b > 23 || b < a) throw new CliError(`--pcrs: "${part}" is outside PCRs 0-23`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
}

async function verify(ctx: Context, args: { bundle?: unknown; genesis?: unknown; nonce?: unknown; quarantine?: unknown; golden?: unknown; output?: unknown; pcrs?: unknown }): Promise<void> {
  if (args.bundle === undefined) throw new CliError("dsm attest verify needs the BUNDLE file");
  if (args.golden || args.output !== undefined || args.pcrs !== undefined) throw new CliError("--golden, --pcrs and -o are for making an answer, not verifying one");
  const nonce = args.nonce === undefined ? undefined : String(args.nonce);
  if (nonce !== undefined && !isHex(nonce, 32)) throw new CliError("--nonce must be 64 lowercase hex characters (32 bytes)");
  const bundle = readJsonFile(String(args.bundle), "attestation bundle");
  const check = (genesis: Genesis, node: DSMNode | null): void => {
    const r = verifyAttestation(bundle, genesis, nonce);
    if (nonce === undefined) warning("dsm attest verify: no --nonce given: the quote's freshness is not checked (a replayed answer would pass)");
    if (r.ok) {
      if (ctx.json) printJson({ ok: true, node_id: r.nodeId, pcr_digest: r.pcrDigest, ak_name: r.akName });
      else print(`OK: node ${r.nodeId} attested: PCR digest ${r.pcrDigest} is accepted by the genesis`);
      return;
    }
    process.exitCode = EXIT.verifyFailed;
    let record = null;
    if (node && r.nodeId) record = quarantineFor(node, r.nodeId, `${r.check}: ${r.reason}`);
    if (ctx.json) printJson({ ok: false, node_id: r.nodeId, check: r.check, error: r.reason, ...(record ? { quarantine: record } : {}) });
    else if (record) print(JSON.stringify(record));
    process.stderr.write(`dsm attest verify: FAILED (${r.check}): ${r.reason}\n`);
    if (record) warn(`dsm attest verify: node ${r.nodeId!.slice(0, 16)}… quarantined from seq ${record.from_seq} (record signed by validator ${record.validator})`);
  };
  if (args.quarantine) {
    await withNode(ctx, (node) => check(node.genesis, node));
    return;
  }
  if (args.genesis !== undefined) {
    let genesis: Genesis;
    try {
      genesis = parseGenesis(readJsonFile(String(args.genesis), "genesis"), { checkPop: true });
    } catch (e) {
      if (e instanceof CliError) throw e;
      throw new CliError(`${args.genesis}: ${(e as Error).message}`);
    }
    check(genesis, null);
    return;
  }
  await withNode(ctx, (node) => check(node.genesis, null), { readonly: true });
}

/** This validator signs and stores a quarantine record: the node's microblocks after its current head stay out. */
function quarantineFor(node: DSMNode, nodeId: string, detail: string) {
  const v = DSMValidator.open(node);
  try {
    return v.quarantine(nodeId, { action: "quarantine", reason: "attestation_failed", detail });
  } finally {
    v.close();
  }
}
