import * as fs from "node:fs";
import * as path from "node:path";
import { importPublicKey } from "../crypto/p256.ts";
import { fromHex, isHex } from "../encoding/hex.ts";
import { FileExistsError, writeFileAtomic } from "../fs/files.ts";
import { parseCard } from "../protocol/card.ts";
import { type AttestationPolicy, buildGenesis, DEFAULT_EPOCH_SECONDS, type IntelPolicy, meshIdOf } from "../protocol/genesis.ts";
import { verifyEvidence } from "../tpm/evidence.ts";
import { CliError, command, intArg, printJson, readJsonFile, readPemFile, timeArg, warn } from "./common.ts";
import { certificatePem } from "../crypto/x509.ts";
import { formatCidr, parseCidr } from "../encoding/ip.ts";
import { parseDuration } from "../encoding/duration.ts";

// Flags that may be given more than once. citty 0.2.2 hands its args to node:util parseArgs
// without `multiple`, so a repeated string flag keeps only its last value: these are
// collected from the raw arguments instead.
const REPEATED = { validator: ["validator"], allow: ["allow"], ekRoot: ["ek-root"], ekAllow: ["ek-allow"], trusted: ["trusted-reporter"], neverBlock: ["never-block"] } as const;
// Every flag of this command that takes a value (the walker must skip their values).
const VALUED = new Set(["name", "validator", "epoch-duration", "genesis-time", "admission", "allow", "pcr-policy", "ek-root", "ek-allow", "attest-roles", "output", "o", "config", "data-dir", "min-reporters", "trusted-reporter", "never-block", "max-ttl", "max-decisions"]);

interface Raw {
  /** Validator cards in command-line order, from --validator and plain arguments alike. */
  validator: string[];
  allow: string[];
  ekRoot: string[];
  ekAllow: string[];
  trusted: string[];
  neverBlock: string[];
  positionals: string[];
  outputGiven: boolean;
  outputValue: string | undefined;
}

/** Walks the raw arguments the way citty/parseArgs do, but keeps every repeated value. */
export function collectArgs(rawArgs: string[]): Raw {
  const out: Raw = { validator: [], allow: [], ekRoot: [], ekAllow: [], trusted: [], neverBlock: [], positionals: [], outputGiven: false, outputValue: undefined };
  for (let i = 0; i < rawArgs.length; i++) {
    const tok = rawArgs[i]!;
    if (tok === "--") {
      out.positionals.push(...rawArgs.slice(i + 1));
      out.validator.push(...rawArgs.slice(i + 1));
      break;
    }
    const m = /^--?([^=]+)(?:=(.*))?$/s.exec(tok);
    if (!m || tok === "-") {
      // A card given as a plain argument keeps its place among the --validator cards.
      out.positionals.push(tok);
      out.validator.push(tok);
      continue;
    }
    const name = m[1]!;
    if (!VALUED.has(name)) continue; // a boolean flag (unknown ones were refused already)
    let value = m[2];
    if (value === undefined) {
      value = rawArgs[i + 1];
      i += 1;
    }
    if (name === "o" || name === "output") {
      out.outputGiven = true;
      out.outputValue = value;
    }
    for (const [key, names] of Object.entries(REPEATED) as [keyof typeof REPEATED, readonly string[]][]) {
      if (names.includes(name)) {
        if (value === undefined || value === "") throw new CliError(`--${name} needs a value`);
        out[key].push(value);
      }
    }
  }
  return out;
}

/** The --min-reporters ... --max-decisions flags as a policy (buildGenesis keeps what differs from the defaults). */
function intelArgs(args: Record<string, unknown>, raw: Raw): Partial<IntelPolicy> {
  const out: Partial<IntelPolicy> = {};
  if (args["min-reporters"] !== undefined) out.min_reporters = intArg(String(args["min-reporters"]), "min-reporters", 1);
  if (args["max-decisions"] !== undefined) out.max_decisions = intArg(String(args["max-decisions"]), "max-decisions", 1);
  if (args["max-ttl"] !== undefined) {
    const s = parseDuration(String(args["max-ttl"]));
    if (s === null || s < 60 || s > 30 * 86400) throw new CliError(`--max-ttl must be a duration from 60s to 30d (e.g. 7d, 12h), got "${args["max-ttl"]}"`);
    out.max_ttl = s;
  }
  out.trusted = splitList(raw.trusted).map((t) => {
    if (!isHex(t, 32)) throw new CliError(`--trusted-reporter ${JSON.stringify(t)} is not a node id (64 hex digits, as dsm init prints it)`);
    return t;
  });
  out.never_block = splitList(raw.neverBlock).map((c) => {
    const parsed = parseCidr(c.includes("/") ? c : `${c}/${c.includes(":") ? 128 : 32}`);
    if (!parsed) throw new CliError(`--never-block ${JSON.stringify(c)} is not a CIDR range with its host bits zero (e.g. 198.51.100.0/24) or an address`);
    return formatCidr(parsed);
  });
  return out;
}

/** "a.json,b.json" and "a.json" alike: a list flag may also be comma-separated. */
function splitList(values: string[]): string[] {
  return values.flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v !== "");
}

/** An --allow value: an identity key in hex, or a node card file whose key is admitted. */
function allowedKey(value: string, policy: AttestationPolicy | null): string {
  if (/^[0-9a-fA-F]{66}$/.test(value)) {
    const k = value.toLowerCase();
    try {
      if (!/^0[23]/.test(k)) throw new Error("not compressed");
      importPublicKey(fromHex(k, 33));
    } catch {
      throw new CliError(`--allow ${value}: not a SEC1 compressed P-256 public key`);
    }
    return k;
  }
  const raw = readJsonFile(value, "card");
  let card;
  try {
    card = parseCard(raw, `--allow card (${value})`);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (policy && !card.tpm) throw new CliError(`--allow card (${value}): node ${card.node_id.slice(0, 16)}… has a software identity key, but --pcr-policy makes this mesh require TPM attestation`);
  if (policy) {
    const ev = verifyEvidence(card, policy, Date.now());
    if (!ev.ok) throw new CliError(`--allow card (${value}): node ${card.node_id.slice(0, 16)}… must attest, but its TPM evidence does not verify against --ek-root/--ek-allow (${ev.check}): ${ev.reason}`);
  }
  return card.identity_pub;
}

/**
 * An edge's card cannot be a validator (buildGenesis refuses it too): the error says what
 * to do. A card that does not parse is left to buildGenesis, which says why.
 */
function refuseEdgeCard(raw: unknown, label: string): void {
  let card;
  try {
    card = parseCard(raw, label, { checkPop: false });
  } catch {
    return;
  }
  if (card.role !== "edge") return;
  throw new CliError(
    `${label}: node ${card.node_id.slice(0, 16)}… has role edge (dsm init's default); a genesis names validators, whose cards say role validator or both: make the validator with dsm init --role validator (an existing node: dsm init --force --role validator, which gives it a new identity)`,
  );
}

/** A PCR policy file, as dsm attest --golden prints it: {"pcrs": [...], "digests": [...]}. */
function readPcrPolicy(file: string): { pcrs: number[]; digests: string[] } {
  const v = readJsonFile(file, "PCR policy") as { pcrs?: unknown; digests?: unknown };
  const pcrs = v?.pcrs;
  const digests = v?.digests;
  if (!Array.isArray(pcrs) || pcrs.length === 0 || !pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23) || new Set(pcrs).size !== pcrs.length) {
    throw new CliError(`PCR policy ${file}: "pcrs" must list distinct PCR indices 0-23 (dsm attest --golden prints one)`);
  }
  if (!Array.isArray(digests) || digests.length === 0 || !digests.every((d) => isHex(d, 32))) {
    throw new CliError(`PCR policy ${file}: "digests" must list sha256 composite digests in lowercase hex`);
  }
  return { pcrs: [...pcrs].sort((a, b) => a - b), digests: [...new Set(digests as string[])] };
}

export default command({
  meta: { name: "genesis", description: "Build a mesh genesis from validator node cards and print its mesh id" },
  help: `Builds the genesis file (type G) that fixes a mesh: its name, genesis time, epoch
duration, the ordered validators (their node cards: the order is the proposer order) and
the admission policy for edges. Every card's signature and BLS proof of possession is
checked. The mesh id, sha256 of the JCS of the genesis, is printed on stderr; every node
of the mesh is then set up with the same file: dsm init --genesis genesis.json.

Validator cards (from dsm card on each validator) are given with --validator, repeated or
comma-separated, or as plain arguments. Admission: allowlist (the default) admits the
validators and the identity keys given with --allow (a key in hex or a card file);
open admits any edge. Without -o the genesis goes to stdout.

--pcr-policy FILE makes the mesh require TPM attestation (DESIGN.md section 7): FILE lists
the PCR indices to quote and the composite digests accepted (dsm attest --golden on a
reference node prints it; several reference nodes' digests may be merged into one list).
Validator cards and --allow cards of software-key nodes are then refused. Such a mesh
also names the endorsement keys it trusts, as a TPM's chain of trust starts there:
--ek-root FILE (PEM CA certificates: the TPM vendors' roots, or swtpm_localca's; a file
may hold several; repeatable) and/or --ek-allow DIGEST (an EK without a certificate:
its TPM name without the algorithm, as dsm attest --ek prints it on the node; repeatable).
--attest-roles edge,validator chooses which roles must attest (default: both).

Decisions (what the mesh blocks, DESIGN.md section 12, docs/PROTOCOL.md "Decisions") are
the same on every node because their rule is in the genesis: --min-reporters N distinct
nodes must advise an indicator (default 2); --trusted-reporter NODE_ID names a node whose
single advice suffices (repeatable); --never-block CIDR is never blocked, beyond the
built-in loopback, link-local and multicast ranges (repeatable: add the mesh's own
validators' and bootstrap peers' public addresses); --max-ttl DURATION caps how long any
advice holds (default 7d); --max-decisions N caps the set (default 100000). Left at their
defaults, the genesis has no "intel" key.

EXAMPLES
  dsm genesis --name soc-eu --validator v1.json --validator v2.json --validator v3.json -o genesis.json
  dsm genesis --name lab v1.json v2.json --admission open --epoch-duration 60 -o genesis.json
  dsm genesis --name soc-eu --validator v1.json --allow edge1.json --allow 02ab...ef -o genesis.json
  dsm genesis --name fleet --validator v1.json --pcr-policy pcr-policy.json --ek-root vendor-roots.pem -o genesis.json
  dsm genesis --name soc-eu v1.json v2.json v3.json v4.json --min-reporters 3 --never-block 198.51.100.0/24 -o genesis.json`,
  args: {
    validators: { type: "positional", required: false, description: "Validator card files (also: --validator)", valueHint: "CARD.json" },
    name: { type: "string", description: "Mesh name: 1-64 letters, digits, '.', '_' or '-'", valueHint: "NAME" },
    validator: { type: "string", description: "A validator's card file; repeat, or separate with commas, in proposer order", valueHint: "CARD.json" },
    "epoch-duration": { type: "string", description: `Epoch length in seconds, 1-86400 (default ${DEFAULT_EPOCH_SECONDS})`, valueHint: "SECONDS" },
    "genesis-time": { type: "string", description: "Start of epoch 0, RFC 3339 (default: now, rounded down to the second)", valueHint: "TIME" },
    admission: { type: "enum", options: ["open", "allowlist"], description: "Which edges may write: allowlist (default) or open" },
    allow: { type: "string", description: "Admit this edge: identity key hex or card file; repeatable", valueHint: "KEY|CARD.json" },
    "pcr-policy": { type: "string", description: "Require TPM attestation with this PCR policy (from dsm attest --golden)", valueHint: "FILE" },
    "ek-root": { type: "string", description: "With --pcr-policy: trust EK certificates under these PEM CA certificates; repeatable", valueHint: "FILE" },
    "ek-allow": { type: "string", description: "With --pcr-policy: trust this EK digest (a TPM without an EK certificate); repeatable", valueHint: "DIGEST" },
    "attest-roles": { type: "string", description: "With --pcr-policy: which roles must attest: edge, validator or edge,validator (default)", valueHint: "ROLES" },
    "min-reporters": { type: "string", description: "Decisions: distinct reporters an indicator needs (default 2)", valueHint: "N" },
    "trusted-reporter": { type: "string", description: "Decisions: a node id whose single advice suffices; repeatable", valueHint: "NODE_ID" },
    "never-block": { type: "string", description: "Decisions: a CIDR range never blocked, beyond the built-in ones; repeatable", valueHint: "CIDR" },
    "max-ttl": { type: "string", description: "Decisions: the longest any advice holds, e.g. 7d (default)", valueHint: "DURATION" },
    "max-decisions": { type: "string", description: "Decisions: at most N held (default 100000)", valueHint: "N" },
    output: { type: "string", alias: "o", description: "Write the genesis here (default: stdout)", valueHint: "FILE" },
    force: { type: "boolean", description: "Replace an existing output file" },
    json: { type: "boolean", description: "Machine-readable summary on stdout" },
  },
  async run({ args, rawArgs }) {
    const raw = collectArgs(rawArgs);
    if (args.name === undefined) throw new CliError("--name is required (see: dsm genesis --help)");
    const name = String(args.name);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
      throw new CliError(`--name must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit, got "${name}"`);
    }
    const files = splitList(raw.validator);
    if (files.length === 0) throw new CliError("no validator cards: give at least one with --validator CARD.json");

    let epochDurationS: number | undefined;
    if (args["epoch-duration"] !== undefined) {
      const v = String(args["epoch-duration"]);
      const n = /^\d+$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || n < 1 || n > 86400) throw new CliError(`--epoch-duration must be a whole number of seconds from 1 to 86400, got "${v}"`);
      epochDurationS = intArg(v, "epoch-duration", 1);
    }
    let genesisTimeMs: number | undefined;
    if (args["genesis-time"] !== undefined) {
      const v = String(args["genesis-time"]);
      if (/^\d+[smhd]$/.test(v)) throw new CliError(`--genesis-time must be an RFC 3339 time (2026-11-25T18:00:00Z), got "${v}"`);
      genesisTimeMs = timeArg(v, "genesis-time");
      if (genesisTimeMs! < 0 || genesisTimeMs! > 253402300799999) throw new CliError(`--genesis-time must be between 1970 and 9999, got "${v}"`);
    }
    const allowValues = splitList(raw.allow);
    const admission = (args.admission as "open" | "allowlist" | undefined) ?? "allowlist";
    if (admission === "open" && allowValues.length > 0) throw new CliError("--allow needs --admission allowlist (open admits every edge)");
    const pcrPolicy = args["pcr-policy"] === undefined ? undefined : readPcrPolicy(String(args["pcr-policy"]));
    const ekRoots = splitList(raw.ekRoot).flatMap((f) => readPemFile(f, "--ek-root").map(certificatePem));
    const ekAllow = splitList(raw.ekAllow).map((d) => {
      const v = d.toLowerCase().replace(/^(0x)?000b(?=[0-9a-f]{64}$)/, "").replace(/^(0x)?000c(?=[0-9a-f]{96}$)/, "");
      if (!isHex(v, 32) && !isHex(v, 48)) throw new CliError(`--ek-allow ${JSON.stringify(d)} is not an EK digest (64 or 96 hex digits as dsm attest --ek prints it, or the EK's name as tpm2_readpublic prints it: 000b + 64, 000c + 96)`);
      return v;
    });
    let roles: ("edge" | "validator")[] | undefined;
    if (args["attest-roles"] !== undefined) {
      roles = [...new Set(String(args["attest-roles"]).split(",").map((r) => r.trim()))] as ("edge" | "validator")[];
      if (roles.length === 0 || !roles.every((r) => r === "edge" || r === "validator")) throw new CliError(`--attest-roles must be edge, validator or edge,validator, got "${args["attest-roles"]}"`);
    }
    if (pcrPolicy === undefined && (ekRoots.length > 0 || ekAllow.length > 0 || roles)) throw new CliError("--ek-root, --ek-allow and --attest-roles belong with --pcr-policy (they shape required attestation)");
    if (pcrPolicy !== undefined && ekRoots.length === 0 && ekAllow.length === 0) throw new CliError("--pcr-policy needs the endorsement keys the mesh trusts: --ek-root FILE (CA certificates) and/or --ek-allow DIGEST");
    const attestation: AttestationPolicy | undefined = pcrPolicy && { required: true, ...pcrPolicy, ek_roots: ekRoots, ek_allowlist: ekAllow, ...(roles ? { roles } : {}) };
    const attests = (role: "edge" | "validator") => attestation !== undefined && (roles ?? ["edge", "validator"]).includes(role);
    const allow = allowValues.map((v) => allowedKey(v, attests("edge") ? attestation! : null));

    const output = raw.outputGiven ? raw.outputValue : undefined;
    if (raw.outputGiven && (output === undefined || output === "")) throw new CliError("-o needs a value");
    if (output !== undefined && !args.force && fs.existsSync(output)) {
      throw new CliError(`${output} already exists (use --force to replace it)`);
    }

    const cards = files.map((f) => readJsonFile(f, "card"));
    cards.forEach((raw, i) => refuseEdgeCard(raw, `card ${i + 1} (${files[i]})`));
    let genesis;
    try {
      genesis = buildGenesis({
        name,
        genesisTimeMs,
        epochDurationS,
        validators: cards,
        sources: files,
        admission,
        allow,
        attestation,
        intel: intelArgs(args, raw),
      });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    // A validator that must attest and whose evidence does not verify would be refused by
    // every peer: say so now, not at the first connection.
    if (attests("validator")) {
      genesis.validators.forEach((card, i) => {
        const ev = verifyEvidence(card, genesis.attestation, Date.now());
        if (!ev.ok) throw new CliError(`card ${i + 1} (${files[i]}): node ${card.node_id.slice(0, 16)}… must attest, but its TPM evidence does not verify against --ek-root/--ek-allow (${ev.check}): ${ev.reason}`);
      });
    }
    const mesh = meshIdOf(genesis);
    const text = JSON.stringify(genesis, null, 2) + "\n";

    if (output !== undefined) {
      try {
        // A genesis is public: every node and light client reads it.
        writeFileAtomic(output, text, { overwrite: Boolean(args.force), mode: 0o644 });
      } catch (e) {
        if (e instanceof FileExistsError) throw new CliError(`${output} already exists (use --force to replace it)`);
        throw new CliError(`cannot write ${output}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    if (args.json) {
      printJson({ mesh, name, validators: genesis.validators.length, file: output === undefined ? null : path.resolve(output), ...(output === undefined ? { genesis } : {}) });
      return;
    }
    if (output === undefined) process.stdout.write(text);
    warn(`mesh ${mesh} (${name}, ${genesis.validators.length} validator${genesis.validators.length === 1 ? "" : "s"}, ${genesis.admission.policy} admission)${output === undefined ? "" : ` written to ${output}`}`);
  },
});

