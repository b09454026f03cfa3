// The genesis (type G, DESIGN.md section 3) fixes a mesh; its hash is the mesh id that
// every signed object names. A node without a mesh gets a one-node local genesis at init.
import { ed25519OfPeerId } from "./peer-id.ts";
import { fromHex, isCompressedKeyHex, isHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { expectKeys, expectObject, intField, literalField, SchemaError, stringField, timeField } from "../encoding/schema.ts";
import { formatTime } from "../encoding/time.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import { nodeIdOf } from "./node-id.ts";
import { type NodeCard, parseCard } from "./card.ts";
import { importPublicKey } from "../crypto/p256.ts";
import { parseCertificate, pemCertificates } from "../crypto/x509.ts";
import { formatCidr, parseCidr } from "../encoding/ip.ts";

export type Admission = { policy: "open" } | { policy: "allowlist"; keys: string[] };

export interface Genesis {
  v: 1;
  type: "G";
  name: string;
  genesis_time: string;
  epoch_duration: number;
  validators: NodeCard[];
  admission: Admission;
  attestation: AttestationPolicy;
  /** Who decides what the mesh blocks (docs/PROTOCOL.md "Decisions"); absent: the defaults, so older meshes keep their id. */
  intel?: Partial<IntelPolicy>;
}

/** DESIGN.md section 12: the genesis policy for decisions. */
export interface IntelPolicy {
  /** Distinct admitted, non-quarantined reporters an indicator needs. */
  min_reporters: number;
  /** Node ids whose single advice suffices. */
  trusted: string[];
  /** CIDR ranges never blocked, beyond the built-in ones (src/intel/decide.ts). */
  never_block: string[];
  /** Seconds an advisory may hold at most, whatever its TTL. */
  max_ttl: number;
  /** Decisions held at most (the most corroborated first). */
  max_decisions: number;
}

export const DEFAULT_INTEL: Readonly<IntelPolicy> = { min_reporters: 2, trusted: [], never_block: [], max_ttl: 7 * 86400, max_decisions: 100_000 };

/** The keys of a policy that differ from the defaults, or undefined when none does (the genesis then has no "intel"). */
function intelDiff(p: Partial<IntelPolicy>): Partial<IntelPolicy> | undefined {
  const out: Partial<IntelPolicy> = {};
  if (p.min_reporters !== undefined && p.min_reporters !== DEFAULT_INTEL.min_reporters) out.min_reporters = p.min_reporters;
  if (p.trusted?.length) out.trusted = [...new Set(p.trusted)];
  if (p.never_block?.length) out.never_block = [...new Set(p.never_block)];
  if (p.max_ttl !== undefined && p.max_ttl !== DEFAULT_INTEL.max_ttl) out.max_ttl = p.max_ttl;
  if (p.max_decisions !== undefined && p.max_decisions !== DEFAULT_INTEL.max_decisions) out.max_decisions = p.max_decisions;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The genesis's intel policy with the defaults filled in. */
export function intelPolicy(genesis: Genesis): IntelPolicy {
  return { ...DEFAULT_INTEL, ...genesis.intel };
}

/**
 * DESIGN.md section 7. ek_roots (PEM CA certificates: TPM vendors' roots, or a local CA) and
 * ek_allowlist (EK digests: the EK's TPM name without its algorithm, i.e. the hash of its
 * TPMT_PUBLIC under its nameAlg) say which endorsement keys a verifier trusts; roles, which nodes must attest
 * (absent: every role). The optional keys are left out when unused, so a genesis that
 * never attests keeps the bytes, and the mesh id, it always had.
 */
export interface AttestationPolicy {
  required: boolean;
  pcrs: number[];
  digests: string[];
  ek_roots?: string[];
  ek_allowlist?: string[];
  roles?: AttestRole[];
}
export type AttestRole = "edge" | "validator";

export const DEFAULT_EPOCH_SECONDS = 300;

/** mesh = hex(sha256(JCS(genesis))), exactly as DESIGN.md section 3 says. */
export function meshIdOf(genesis: Genesis): string {
  return sha256Hex(canonicalize(genesis));
}

export function makeLocalGenesis(card: NodeCard, nowMs: number): Genesis {
  return {
    v: 1,
    type: "G",
    name: `local-${card.node_id.slice(0, 12)}`,
    // Epochs start on a whole second so epoch boundaries are easy to read.
    genesis_time: formatTime(Math.floor(nowMs / 1000) * 1000),
    epoch_duration: DEFAULT_EPOCH_SECONDS,
    validators: [card],
    admission: { policy: "allowlist", keys: [card.identity_pub] },
    attestation: { required: false, pcrs: [], digests: [] },
  };
}

/**
 * A validator signs its proposals and votes with the Ed25519 key its peer id names
 * (docs/PROTOCOL.md "Consensus"), so the peer id must name one, and no other validator's:
 * a shared key would let one validator's vote be relabelled as another's.
 */
function voteKeyProblem(peerId: string, taken: Set<string>): string | null {
  if (ed25519OfPeerId(peerId) === null) return `peer_id ${peerId} does not name an Ed25519 key, so its votes could not be checked`;
  if (taken.has(peerId)) return `peer_id ${peerId} is already another validator's`;
  taken.add(peerId);
  return null;
}

/** checkPop: see parseCard. Every validator must carry a BLS key: a validator votes with it. */
export function parseGenesis(value: unknown, opts: { checkPop?: boolean } = {}): Genesis {
  const what = "genesis";
  const o = expectObject(value, what);
  expectKeys(o, what, ["v", "type", "name", "genesis_time", "epoch_duration", "validators", "admission", "attestation"], ["intel"]);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "G");
  stringField(o, "name", what, /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "1-64 letters, digits, '.', '_' or '-'");
  timeField(o, "genesis_time", what);
  intField(o, "epoch_duration", what, 1, 86400);
  if (!Array.isArray(o.validators) || o.validators.length === 0 || o.validators.length > 1024) {
    throw new SchemaError(`${what}: "validators" must list 1 to 1024 node cards`);
  }
  const seen = new Set<string>();
  const blsKeys = new Set<string>();
  const peerIds = new Set<string>();
  o.validators.forEach((c, i) => {
    const card = parseCard(c, `genesis validator ${i}`, opts);
    if (!card.bls_pub) throw new SchemaError(`genesis validator ${i}: card has no bls_pub/bls_pop, so it cannot vote`);
    if (seen.has(card.node_id)) throw new SchemaError(`${what}: validator ${card.node_id} is listed twice`);
    // One BLS key counted twice would let one secret supply two votes toward a quorum.
    if (blsKeys.has(card.bls_pub)) throw new SchemaError(`genesis validator ${i}: bls_pub is already another validator's`);
    const vote = voteKeyProblem(card.peer_id, peerIds);
    if (vote) throw new SchemaError(`genesis validator ${i}: ${vote}`);
    seen.add(card.node_id);
    blsKeys.add(card.bls_pub);
  });
  const adm = expectObject(o.admission, "genesis admission");
  if (adm.policy === "open") expectKeys(adm, "genesis admission", ["policy"]);
  else if (adm.policy === "allowlist") {
    expectKeys(adm, "genesis admission", ["policy", "keys"]);
    if (!Array.isArray(adm.keys) || !adm.keys.every((k) => isCompressedKeyHex(k))) {
      throw new SchemaError(`genesis admission: "keys" must list SEC1 compressed identity keys in hex`);
    }
    adm.keys.forEach((k: string, i: number) => {
      try {
        importPublicKey(fromHex(k, 33));
      } catch {
        throw new SchemaError(`genesis admission: key ${i + 1} is not a P-256 point`);
      }
    });
    if (new Set(adm.keys).size !== adm.keys.length) throw new SchemaError(`genesis admission: "keys" lists a key twice`);
  } else throw new SchemaError(`genesis admission: "policy" must be "open" or "allowlist"`);
  const att = expectObject(o.attestation, "genesis attestation");
  expectKeys(att, "genesis attestation", ["required", "pcrs", "digests"], ["ek_roots", "ek_allowlist", "roles"]);
  if (typeof att.required !== "boolean") throw new SchemaError(`genesis attestation: "required" must be true or false`);
  if (!Array.isArray(att.pcrs) || !att.pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23)) {
    throw new SchemaError(`genesis attestation: "pcrs" must list PCR indices 0-23`);
  }
  if (!Array.isArray(att.digests) || !att.digests.every((d) => isHex(d, 32))) {
    throw new SchemaError(`genesis attestation: "digests" must list sha256 digests in hex`);
  }
  if (new Set(att.pcrs).size !== att.pcrs.length) throw new SchemaError(`genesis attestation: "pcrs" lists an index twice`);
  // Required attestation with nothing accepted would lock every node out, silently.
  if (att.required && (att.pcrs.length === 0 || att.digests.length === 0)) {
    throw new SchemaError(`genesis attestation: "required" needs at least one PCR index and one accepted digest`);
  }
  parseEkTrust(att);
  if ("intel" in o) parseIntelPolicy(o.intel);
  // A copy: what the caller holds can change later; the parsed genesis must not.
  return structuredClone(o) as unknown as Genesis;
}

function parseIntelPolicy(value: unknown): void {
  const what = "genesis intel";
  const o = expectObject(value, what);
  expectKeys(o, what, [], ["min_reporters", "trusted", "never_block", "max_ttl", "max_decisions"]);
  // Written only when it differs from the default, like the attestation keys.
  if (Object.keys(o).length === 0) throw new SchemaError(`${what}: leave "intel" out rather than empty`);
  if ("min_reporters" in o) intField(o, "min_reporters", what, 1, 1024);
  if ("max_ttl" in o) intField(o, "max_ttl", what, 60, 30 * 86400);
  if ("max_decisions" in o) intField(o, "max_decisions", what, 1, 10_000_000);
  if ("trusted" in o) {
    if (!Array.isArray(o.trusted) || o.trusted.length > 1024 || !o.trusted.every((t) => isHex(t, 32))) throw new SchemaError(`${what}: "trusted" must list node ids (64 hex digits)`);
    if (new Set(o.trusted).size !== o.trusted.length) throw new SchemaError(`${what}: "trusted" lists a node twice`);
  }
  if ("never_block" in o) {
    const list = o.never_block;
    if (!Array.isArray(list) || list.length > 4096) throw new SchemaError(`${what}: "never_block" must list CIDR ranges`);
    list.forEach((c, i) => {
      const parsed = typeof c === "string" ? parseCidr(c) : null;
      if (!parsed || formatCidr(parsed) !== c) throw new SchemaError(`${what}: never_block[${i}] must be a canonical CIDR range with host bits zero (e.g. 198.51.100.0/24)`);
    });
  }
}

const PEM_CERT = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/;

function parseEkTrust(att: Record<string, unknown>): void {
  const what = "genesis attestation";
  if ("ek_roots" in att) {
    const roots = att.ek_roots;
    if (!Array.isArray(roots) || roots.length === 0 || roots.length > 64) throw new SchemaError(`${what}: "ek_roots" must list 1 to 64 PEM CA certificates`);
    roots.forEach((r, i) => {
      if (typeof r !== "string" || r.length > 16384 || !PEM_CERT.test(r)) throw new SchemaError(`${what}: ek_roots[${i}] is not one PEM certificate (-----BEGIN CERTIFICATE----- ...)`);
      let cert;
      try {
        cert = parseCertificate(pemCertificates(r)[0]!);
      } catch (e) {
        throw new SchemaError(`${what}: ek_roots[${i}]: ${(e as Error).message}`);
      }
      // A trust anchor issues certificates: an EK certificate itself listed here is a mistake.
      if (!cert.basicConstraints?.ca) throw new SchemaError(`${what}: ek_roots[${i}] (${cert.subject.text || "no subject"}) is not a CA certificate`);
    });
    if (new Set(roots).size !== roots.length) throw new SchemaError(`${what}: "ek_roots" lists a certificate twice`);
  }
  if ("ek_allowlist" in att) {
    const list = att.ek_allowlist;
    if (!Array.isArray(list) || list.length === 0 || list.length > 100000 || !list.every((d) => isHex(d, 32) || isHex(d, 48))) {
      throw new SchemaError(`${what}: "ek_allowlist" must list EK digests (lowercase hex of the EK's name without its algorithm: 64 digits for sha256, 96 for sha384)`);
    }
    if (new Set(list).size !== list.length) throw new SchemaError(`${what}: "ek_allowlist" lists a digest twice`);
  }
  if ("roles" in att) {
    const roles = att.roles;
    if (!Array.isArray(roles) || roles.length === 0 || !roles.every((r) => r === "edge" || r === "validator") || new Set(roles).size !== roles.length) {
      throw new SchemaError(`${what}: "roles" must list "edge" and/or "validator", each once`);
    }
  }
  // Attestation required with no EK anyone trusts would lock every node out.
  if (att.required && !("ek_roots" in att) && !("ek_allowlist" in att)) {
    throw new SchemaError(`${what}: "required" needs the EKs it trusts: "ek_roots" (CA certificates) and/or "ek_allowlist" (EK digests); dsm genesis --ek-root FILE / --ek-allow DIGEST`);
  }
}

/** Must this node attest: the genesis requires it of its role (a validator, or else an edge)? */
export function mustAttest(genesis: Genesis, nodeId: string): boolean {
  const att = genesis.attestation;
  if (!att.required) return false;
  const role: AttestRole = genesis.validators.some((c) => c.node_id === nodeId) ? "validator" : "edge";
  return (att.roles ?? ["edge", "validator"]).includes(role);
}

/** Which node ids may write to this mesh: its validators, plus edges under the admission policy. */
export class MeshPolicy {
  readonly mesh: string;
  readonly #validators: Set<string>;
  readonly #allowed: Set<string> | null;

  constructor(readonly genesis: Genesis) {
    this.mesh = meshIdOf(genesis);
    this.#validators = new Set(genesis.validators.map((c) => c.node_id));
    this.#allowed =
      genesis.admission.policy === "open" ? null : new Set(genesis.admission.keys.map((k) => nodeIdOf(fromHex(k, 33))));
  }

  isAdmitted(nodeId: string): boolean {
    return this.#validators.has(nodeId) || this.#allowed === null || this.#allowed.has(nodeId);
  }
}

/**
 * Builds a mesh genesis from validator cards (`dsm genesis`). Every card is fully checked
 * (signature and BLS proof of possession); validators keep the given order, which is the
 * proposer order. `sources` names each card in errors ("card 2 (b.json): ..."). With the
 * allowlist policy, `allow` lists the identity keys of admitted edges; validators are always
 * admitted and need not be listed. The result passes parseGenesis; meshIdOf gives its mesh id.
 */
export function buildGenesis(opts: {
  name: string;
  genesisTimeMs?: number;
  epochDurationS?: number;
  validators: unknown[];
  sources?: string[];
  admission?: "open" | "allowlist";
  allow?: string[];
  attestation?: Genesis["attestation"];
  /** Only the keys that differ from DEFAULT_INTEL are written. */
  intel?: Partial<IntelPolicy>;
  nowMs?: number;
}): Genesis {
  if (typeof opts.name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(opts.name)) {
    throw new SchemaError(`genesis name must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit, got ${JSON.stringify(opts.name)}`);
  }
  const epoch = opts.epochDurationS ?? DEFAULT_EPOCH_SECONDS;
  if (!Number.isInteger(epoch) || epoch < 1 || epoch > 86400) {
    throw new SchemaError(`epoch duration must be a whole number of seconds from 1 to 86400, got ${epoch}`);
  }
  const timeMs = opts.genesisTimeMs ?? Math.floor((opts.nowMs ?? Date.now()) / 1000) * 1000;
  if (!Number.isSafeInteger(timeMs) || timeMs < 0 || timeMs > 253402300799999) {
    throw new SchemaError(`genesis time must be between 1970 and 9999, got ${timeMs}`);
  }
  if (!Array.isArray(opts.validators) || opts.validators.length === 0) throw new SchemaError("a genesis needs at least one validator card");
  if (opts.validators.length > 1024) throw new SchemaError(`a genesis lists at most 1024 validators, got ${opts.validators.length}`);
  const label = (i: number) => `card ${i + 1}${opts.sources?.[i] !== undefined ? ` (${opts.sources[i]})` : ""}`;
  const byNode = new Map<string, number>();
  const byBls = new Map<string, number>();
  const peerIds = new Set<string>();
  const validators = opts.validators.map((raw, i) => {
    const card = parseCard(raw, label(i), { checkPop: true });
    if (!card.bls_pub) throw new SchemaError(`${label(i)}: card has no bls_pub/bls_pop, so it cannot vote (init the node with --role validator)`);
    if (card.role === "edge") throw new SchemaError(`${label(i)}: node ${card.node_id.slice(0, 16)} has role edge, not validator or both`);
    if (opts.attestation?.required && (opts.attestation.roles ?? ["validator"]).includes("validator") && !card.tpm) {
      throw new SchemaError(`${label(i)}: node ${card.node_id.slice(0, 16)} has a software identity key, but this genesis requires TPM attestation`);
    }
    const n = byNode.get(card.node_id);
    if (n !== undefined) throw new SchemaError(`${label(i)}: node ${card.node_id.slice(0, 16)} is already ${label(n)}: duplicate validator`);
    const b = byBls.get(card.bls_pub);
    if (b !== undefined) throw new SchemaError(`${label(i)}: bls_pub is already that of ${label(b)}`);
    const vote = voteKeyProblem(card.peer_id, peerIds);
    if (vote) throw new SchemaError(`${label(i)}: ${vote}`);
    byNode.set(card.node_id, i);
    byBls.set(card.bls_pub, i);
    return card;
  });
  const policy = opts.admission ?? "allowlist";
  let admission: Admission;
  if (policy === "open") {
    if (opts.allow && opts.allow.length > 0) throw new SchemaError("allowed keys only make sense with the allowlist admission policy");
    admission = { policy: "open" };
  } else if (policy === "allowlist") {
    const keys: string[] = [];
    for (const k of opts.allow ?? []) {
      if (!isCompressedKeyHex(k)) {
        throw new SchemaError(`allowed key ${JSON.stringify(k)} is not a SEC1 compressed P-256 identity key in lowercase hex (66 digits)`);
      }
      if (!keys.includes(k)) keys.push(k);
    }
    admission = { policy: "allowlist", keys };
  } else throw new SchemaError(`admission policy must be "open" or "allowlist", got ${JSON.stringify(policy)}`);
  const att = opts.attestation ?? { required: false, pcrs: [], digests: [] };
  const genesis: Genesis = {
    v: 1,
    type: "G",
    name: opts.name,
    genesis_time: formatTime(timeMs),
    epoch_duration: epoch,
    validators,
    admission,
    attestation: {
      required: att.required,
      pcrs: [...att.pcrs],
      digests: [...att.digests],
      ...(att.ek_roots?.length ? { ek_roots: [...att.ek_roots] } : {}),
      ...(att.ek_allowlist?.length ? { ek_allowlist: [...att.ek_allowlist] } : {}),
      ...(att.roles?.length ? { roles: [...att.roles] } : {}),
    },
  };
  const intel = intelDiff(opts.intel ?? {});
  if (intel) genesis.intel = intel;
  // The same checks every node runs on the file (PoP already checked above).
  return parseGenesis(JSON.parse(JSON.stringify(genesis)), { checkPop: false });
}
