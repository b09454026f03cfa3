import * as fs from "node:fs";
import { fromHex, isHex, toHex } from "../encoding/hex.ts";
import { parseCertificate } from "../crypto/x509.ts";
import { ekDigest, parseTpmPublic } from "../tpm/public-area.ts";
import { type NodeCard, parseCard } from "../protocol/card.ts";
import { type EnrollAnswer, parseEnrollAnswer, parseEnrollChallenge } from "../protocol/enrollment.ts";
import { parseGenesis, type Genesis } from "../protocol/genesis.ts";
import { answerEnrollment, EnrollError, finishEnrollment, makeEnrollChallenge } from "../tpm/enroll.ts";
import { ekTrustText } from "../tpm/evidence.ts";
import { DSMValidator } from "../node/validator.ts";
import { TpmIdentityKey } from "../tpm/tpm-key.ts";
import { answerChallenge, goldenDigest, verifyAttestation } from "../tpm/attestation.ts";
import type { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, type Context, context, EXIT, print, printJson, readJsonFile, warn, withNode } from "./common.ts";

export default command({
  meta: { name: "attest", description: "Enroll a TPM node's attestation key, answer a challenge with a TPM quote, or check an answer" },
  help: `DESIGN.md section 7: trust in a TPM node is a chain checked link by link: its EK
certificate (to the genesis' ek_roots, or its EK digest on ek_allowlist), its AK bound to
that EK by credential activation (enrollment), its identity key certified by the AK, and
then quotes of the genesis policy's PCRs, bound to the mesh, the node, its enrolled AK and
the verifier's nonce. The mesh (dsm run) does all of it over /dsm/enroll/1 and
/dsm/attest/1; these commands do it with files, for an air-gapped verifier.

ENROLLMENT (the verifier runs 1 and 3 on its data dir; the node runs 2)
  1. dsm attest enroll-challenge CARD [-o c.json]
      Checks the card's evidence (EK chain, AK, certify) and makes a TPM2_MakeCredential
      challenge against its EK for its AK; the secret stays in this data dir's ledger.
  2. dsm attest enroll-answer c.json [-o a.json]
      On the TPM node: TPM2_ActivateCredential, then an HMAC proof under the secret.
  3. dsm attest enroll-verify a.json
      Checks the proof and records the enrollment: later quotes are checked under this AK.

  dsm attest --nonce HEX [--pcrs LIST] [-o FILE]
      On a TPM node: the answer (an attestation bundle: card, nonce, quote, signature).
      PCRs default to the genesis policy's (0-7 when it names none).
  dsm attest --ek
      This node's endorsement key as its card shows it: its digest (what a genesis'
      ek_allowlist lists, for a TPM without an EK certificate), its type and, when it
      has one, its certificate's issuer and validity. Needs no TPM access.
  dsm attest --golden [--pcrs LIST]
      On a reference node: {"pcrs": [...], "digests": ["<current composite digest>"]},
      the policy file that dsm genesis --pcr-policy records.
  dsm attest verify BUNDLE --node NODE_ID --nonce HEX [--genesis FILE] [--quarantine]
      Checks the answer of the node you challenged (--node) to your nonce: the bundle's
      mesh, that it answers for that node, that node's enrollment in this data dir's
      ledger, the quote made by the enrolled AK over the binding of mesh, node, AK and
      nonce, exactly the policy's PCRs and a digest the genesis accepts. A node with no
      enrollment here fails (not_enrolled): it is a software node, whatever its card
      says. --genesis defaults to the data dir's genesis. With --quarantine, run on a
      validator: a failed answer makes it sign a quarantine record (type Q) for the node,
      stored in its ledger and printed, so its later microblocks stay out of checkpoints.

LIST: PCR indices, e.g. 0,1,2,7 or 0-7.

EXIT STATUS  0 answer made / verified / enrolled, 2 the evidence, enrollment or answer
does not verify (the check that failed is named), 1 error (no TPM, unreadable file, bad
arguments).

EXAMPLES
  dsm attest enroll-challenge edge1-card.json -o c.json     # on the validator
  dsm attest enroll-answer c.json -o a.json                 # on edge1
  dsm attest enroll-verify a.json                           # on the validator
  dsm attest --nonce $(openssl rand -hex 32) -o answer.json # on edge1
  dsm attest verify answer.json --node <edge1 node id> --nonce <the nonce sent>
  dsm attest --golden > pcr-policy.json`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "verify, enroll-challenge, enroll-answer or enroll-verify", valueHint: "ACTION" },
    bundle: { type: "positional", required: false, description: "The file the action reads: an answer, a card, a challenge", valueHint: "FILE" },
    node: { type: "string", description: "With verify: the node id you challenged", valueHint: "NODE_ID" },
    nonce: { type: "string", description: "The challenge: 32 bytes as 64 hex characters", valueHint: "HEX" },
    pcrs: { type: "string", description: "PCR indices to quote (default: the genesis policy's)", valueHint: "LIST" },
    golden: { type: "boolean", description: "Print this TPM's current PCR digest as a policy file" },
    ek: { type: "boolean", description: "Print this node's EK digest and certificate issuer" },
    genesis: { type: "string", description: "With verify: the mesh genesis (default: the data dir's)", valueHint: "FILE" },
    quarantine: { type: "boolean", description: "With verify, on a validator: sign and store a quarantine request on failure (it counts once f + 1 validators observed one)" },
    output: { type: "string", alias: "o", description: "Write the answer here instead of stdout", valueHint: "FILE" },
  },
  async run({ args }) {
    const ctx = context(args);
    const action = args.action === undefined ? undefined : String(args.action);
    if (action !== undefined && !["verify", "enroll-challenge", "enroll-answer", "enroll-verify"].includes(action)) {
      throw new CliError(`unknown action "${action}": use dsm attest --nonce HEX, --golden, verify, enroll-challenge, enroll-answer or enroll-verify (see dsm attest --help)`);
    }
    if (action === "verify") return verify(ctx, args);
    if (action !== undefined) return enroll(ctx, action, args);
    if (args.node !== undefined) throw new CliError("--node belongs to dsm attest verify");
    if (args.bundle !== undefined) throw new CliError(`unexpected argument "${args.bundle}"`);
    if (args.quarantine || args.genesis !== undefined) throw new CliError("--genesis and --quarantine belong to dsm attest verify");
    if (args.ek) {
      if (args.golden || args.nonce !== undefined || args.pcrs !== undefined || args.output !== undefined) throw new CliError("--ek takes no other option");
      return showEk(ctx);
    }
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

async function showEk(ctx: Context): Promise<void> {
  await withNode(
    ctx,
    (node) => {
      const ev = node.card().tpm_evidence;
      if (!ev) throw new CliError("this node's card carries no TPM evidence: it has a software key, or was made before dsm read EKs (dsm init --tpm --force makes a new card)");
      const ek = parseTpmPublic(fromHex(ev.ek_public));
      const cert = ev.ek_certificates.length > 0 ? parseCertificate(fromHex(ev.ek_certificates[0]!)) : null;
      const out = {
        ek_digest: ekDigest(ek),
        ek_name: toHex(ek.name),
        ek_type: ek.type === "rsa" ? `rsa${ek.rsa!.keyBits}` : `ecc-${ek.ecc!.curve.toLowerCase()}`,
        certificate: cert ? { issuer: cert.issuer.text, subject: cert.subject.text, not_before: new Date(cert.notBefore).toISOString(), not_after: new Date(cert.notAfter).toISOString(), intermediates: ev.ek_certificates.length - 1 } : null,
      };
      if (ctx.json) return printJson(out);
      print(
        [
          `EK digest    ${out.ek_digest}`,
          `EK           ${out.ek_type}, name ${out.ek_name}`,
          cert ? `certificate  issued by ${out.certificate!.issuer}, valid ${out.certificate!.not_before} to ${out.certificate!.not_after}, ${out.certificate!.intermediates} intermediate(s) on the card` : "certificate  none in NV: a genesis trusts this EK only through ek_allowlist (dsm genesis --ek-allow DIGEST)",
        ].join("\n"),
      );
    },
    { readonly: true },
  );
}

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

async function verify(ctx: Context, args: { bundle?: unknown; genesis?: unknown; nonce?: unknown; node?: unknown; quarantine?: unknown; golden?: unknown; output?: unknown; pcrs?: unknown }): Promise<void> {
  if (args.bundle === undefined) throw new CliError("dsm attest verify needs the BUNDLE file");
  if (args.golden || args.output !== undefined || args.pcrs !== undefined) throw new CliError("--golden, --pcrs and -o are for making an answer, not verifying one");
  if (args.nonce === undefined) throw new CliError("dsm attest verify needs --nonce HEX, the nonce you sent: without it a replayed answer would pass");
  if (args.node === undefined) throw new CliError("dsm attest verify needs --node NODE_ID, the node you challenged: the answer's own claim of who it is does not count");
  const nonce = String(args.nonce);
  if (!isHex(nonce, 32)) throw new CliError("--nonce must be 64 lowercase hex characters (32 bytes)");
  const nodeId = String(args.node);
  if (!isHex(nodeId, 32)) throw new CliError("--node must be a node id: 64 lowercase hex characters");
  const bundle = readJsonFile(String(args.bundle), "attestation bundle");
  const genesisFile: Genesis | null = args.genesis === undefined ? null : readParsed(String(args.genesis), "genesis", (v) => parseGenesis(v, { checkPop: true }));
  await withNode(
    ctx,
    (node) => {
      const genesis = genesisFile ?? node.genesis;
      const enrollment = node.enrollments.get(nodeId);
      const r = verifyAttestation(bundle, genesis, { nodeId, enrollment, nonce });
      if (r.ok) {
        if (args.quarantine) node.enrollments.quoted(nodeId, Date.now(), r.pcrDigest, "passed");
        if (ctx.json) printJson({ ok: true, node_id: r.nodeId, pcr_digest: r.pcrDigest, ak_name: r.akName, ek: enrollment!.ek });
        else print(`OK: node ${r.nodeId} attested: quote by its enrolled AK (${ekTrustText(enrollment!.ek)}), PCR digest ${r.pcrDigest} accepted by the genesis`);
        return;
      }
      process.exitCode = EXIT.verifyFailed;
      let record = null;
      if (args.quarantine) record = quarantineFor(node, nodeId, `${r.check}: ${r.reason}`);
      if (ctx.json) printJson({ ok: false, node_id: r.nodeId, check: r.check, error: r.reason, ...(record ? { quarantine: record } : {}) });
      else if (record) print(JSON.stringify(record));
      process.stderr.write(`dsm attest verify: FAILED (${r.check}): ${r.reason}\n`);
      if (record) warn(`dsm attest verify: quarantine of node ${nodeId.slice(0, 16)}… requested by validator ${record.validator}; it takes effect once f + 1 validators observed a failure and a checkpoint decides it`);
    },
    { readonly: !args.quarantine },
  );
}

/** A JSON file parsed into its type; what is wrong with it becomes one CliError naming the file. */
function readParsed<T>(file: string, what: string, parse: (value: unknown) => T): T {
  const value = readJsonFile(file, what);
  try {
    return parse(value);
  } catch (e) {
    throw new CliError(`${file}: ${(e as Error).message}`);
  }
}

/** The three steps of enrollment with files (see the help text). */
async function enroll(ctx: Context, action: string, args: { bundle?: unknown; output?: unknown; nonce?: unknown; golden?: unknown; genesis?: unknown; quarantine?: unknown; pcrs?: unknown }): Promise<void> {
  if (args.bundle === undefined) throw new CliError(`dsm attest ${action} needs its input file (see dsm attest --help)`);
  if (args.nonce !== undefined || args.golden || args.genesis !== undefined || args.quarantine || args.pcrs !== undefined) throw new CliError(`dsm attest ${action} takes only its file${action === "enroll-verify" ? "" : " and -o"}`);
  const file = String(args.bundle);
  const emit = (value: unknown, what: string) => {
    const text = ctx.json || args.output === undefined ? JSON.stringify(value) : JSON.stringify(value, null, 2) + "\n";
    if (args.output === undefined) return print(text);
    fs.writeFileSync(String(args.output), text, { mode: 0o644 });
    warn(`${what} written to ${args.output}`);
  };
  if (action === "enroll-challenge") {
    const card: NodeCard = readParsed(file, "card", (v) => parseCard(v, file, { checkPop: false }));
    await withNode(ctx, (node) => {
      let p;
      try {
        p = makeEnrollChallenge(card, node.genesis, node.mesh, node.nodeId, Date.now());
      } catch (e) {
        if (!(e instanceof EnrollError)) throw e;
        process.exitCode = EXIT.verifyFailed;
        if (ctx.json) printJson({ ok: false, node_id: card.node_id, check: e.check, error: e.message });
        process.stderr.write(`dsm attest enroll-challenge: node ${card.node_id.slice(0, 16)}… cannot be enrolled (${e.check}): ${e.message}\n`);
        return;
      }
      node.enrollments.addPending(p, Date.now());
      emit(p.challenge, `enrollment challenge for node ${card.node_id.slice(0, 16)}… (${ekTrustText(p.ek)})`);
    });
    return;
  }
  if (action === "enroll-answer") {
    const c = readParsed(file, "enrollment challenge", (v) => parseEnrollChallenge(v, file));
    await withNode(ctx, (node) => {
      const key = tpmKeyOf(node);
      let a;
      try {
        a = answerEnrollment(key, node.card(), node.mesh, c);
      } catch (e) {
        throw new CliError(`cannot answer ${file}: ${(e as Error).message}`);
      }
      emit(a, "enrollment answer");
    });
    return;
  }
  if (args.output !== undefined) throw new CliError("dsm attest enroll-verify writes no file: it records the enrollment in the ledger");
  const a: EnrollAnswer = readParsed(file, "enrollment answer", (v) => parseEnrollAnswer(v, file));
  await withNode(ctx, (node) => {
    const p = node.enrollments.pending(a.challenge);
    if (!p) throw new CliError(`${file} answers no challenge this data dir sent and still waits on (answered already, expired, or made elsewhere): run dsm attest enroll-challenge again`);
    node.enrollments.dropPending(a.challenge);
    let e;
    try {
      e = finishEnrollment(p, a, Date.now());
    } catch (err) {
      process.exitCode = EXIT.verifyFailed;
      const check = err instanceof EnrollError ? err.check : "enroll";
      if (ctx.json) printJson({ ok: false, node_id: p.challenge.node_id, check, error: (err as Error).message });
      process.stderr.write(`dsm attest enroll-verify: FAILED (${check}): ${(err as Error).message}\n`);
      return;
    }
    const superseded = node.enrollments.put(e);
    for (const other of superseded) warn(`dsm attest enroll-verify: node ${other.slice(0, 16)}… had the same EK (one TPM is one enrolled node): it is no longer enrolled`);
    const how = ekTrustText(e.ek);
    if (ctx.json) printJson({ ok: true, node_id: e.node_id, ak_name: e.ak_name, ek: e.ek });
    else print(`OK: node ${e.node_id} enrolled: TPM-rooted, ${how}; its AK ${e.ak_name.slice(0, 20)}… is in that TPM (credential activated)`);
  });
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
