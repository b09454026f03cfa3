// A dsm node: its identity, its mesh, its ledger, and the one way events become
// microblocks (checked here; signed and committed by src/chain/writer.ts). The CLI
// and the library API are both thin layers over this.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { toHex } from "../encoding/hex.ts";
import type { Microblock } from "../protocol/microblock.ts";
import type { DsmConfig } from "../config/config.ts";
import { makeCard, type NodeCard, parseCard, type Role, type TpmEvidence } from "../protocol/card.ts";
import { collectEvidence } from "../tpm/evidence.ts";
import { EnrollmentStore } from "../ledger/enrollment-store.ts";
import { parseJson } from "../encoding/json.ts";
import { type IdentityKey, nodeIdOf, PublicIdentityKey, SoftwareIdentityKey } from "../identity/identity-key.ts";
import { createLibp2pKey } from "../identity/libp2p-key.ts";
import { createIpAnonymizer } from "../ingest/anonymize.ts";
import type { InputFormat } from "../ingest/records.ts";
import { type Anonymizer, checkPrepared, EventError, type PreparedEvent, prepareEvent, prepareRecord } from "../ingest/prepare.ts";
import { Ledger } from "../ledger/ledger.ts";
import { DEFAULT_TPM_HANDLE, handleHex, TpmIdentityKey } from "../tpm/tpm-key.ts";
import { type Genesis, makeLocalGenesis, MeshPolicy, mustAttest, parseGenesis } from "../protocol/genesis.ts";
import { ensurePrivateDir, readSecretFile, writeFileAtomic } from "../fs/files.ts";
import { blsKeygen, blsPopProve, blsPublicKey } from "../crypto/bls.ts";
import { createControlToken, type DataDirLayout, dataDirLayout } from "./data-dir.ts";
import { ChainSigner } from "../chain/signer.ts";
import { ChainWriter } from "../chain/writer.ts";
import type { EventSink } from "../ingest/sink.ts";

export { EventError, type PreparedEvent } from "../ingest/prepare.ts";

/** A node that cannot be made or opened: its data dir, keys, card, genesis or TPM key. */
export class NodeError extends Error {
  override name = "NodeError";
}

export interface InitOptions {
  dataDir: string;
  config: DsmConfig;
  configText?: string;
  force?: boolean;
  genesisFile?: string;
  role?: Role;
  nowMs?: number;
  /** Create the identity key in this TPM (a TCTI string) instead of a software key file. */
  tpm?: string;
  /**
   * Where in the TPM: a persistent handle the operator names (taken by a key this data dir
   * did not make: refused), or "auto". Default: identity.tpm_handle (a value other than the
   * default counts as named), or with --force this data dir's own key's handle; a default
   * handle held by another key gives way to the first free one.
   */
  tpmHandle?: number | "auto";
  /** DER intermediates of the EK certificate (the vendor's, or swtpm_localca's), carried on the card. */
  ekChain?: Uint8Array[];
}

export interface InitResult {
  layout: DataDirLayout;
  card: NodeCard;
  genesis: Genesis;
  mesh: string;
  /** A TPM identity: where it went, and what init did to get there. */
  tpm?: { handle: string; skipped: string | null; replaced: boolean; released: string | null };
}

export class DSMNode implements EventSink {
  readonly layout: DataDirLayout;
  readonly identity: IdentityKey;
  readonly nodeId: string;
  readonly genesis: Genesis;
  readonly policy: MeshPolicy;
  readonly ledger: Ledger;
  readonly #writer: ChainWriter;
  readonly #anonymize: Anonymizer | null;
  /** The privacy.anonymize_ips secret, for the ingest worker's own anonymiser; null when off. */
  readonly anonymizeSecret: Uint8Array | null;

  private constructor(
    readonly config: DsmConfig,
    layout: DataDirLayout,
    identity: IdentityKey,
    genesis: Genesis,
    ledger: Ledger,
    writer: boolean,
  ) {
    this.writable = writer;
    this.layout = layout;
    this.identity = identity;
    this.nodeId = nodeIdOf(identity.publicKey);
    this.genesis = genesis;
    this.policy = new MeshPolicy(genesis);
    this.ledger = ledger;
    const signer = new ChainSigner(identity, this.policy.mesh, config.keys.signing_key_lifetime_s);
    this.#writer = new ChainWriter(ledger, this.policy.mesh, this.nodeId, signer, (m) => new EventError(m));
    this.anonymizeSecret = writer && config.privacy.anonymize_ips ? new Uint8Array(readSecretFile(layout.privacyKey)) : null;
    this.#anonymize = this.anonymizeSecret ? createIpAnonymizer(this.anonymizeSecret) : null;
  }

  /** Opened to write (its identity key loaded), not read-only. */
  readonly writable: boolean;

  #enrollments: EnrollmentStore | null = null;

  /** The AKs this node enrolled (as a verifier), and their last attestations. */
  get enrollments(): EnrollmentStore {
    this.#enrollments ??= new EnrollmentStore(this.ledger, this.policy.mesh);
    return this.#enrollments;
  }

  /**
   * Why this node takes no microblock of `nodeId` (DESIGN.md section 7), or null: the
   * genesis makes its role attest, and this node holds no verified enrollment of it.
   */
  notAttested(nodeId: string): string | null {
    if (nodeId === this.nodeId || !mustAttest(this.genesis, nodeId)) return null;
    return this.enrollments.has(nodeId) ? null : "the mesh requires attestation of its role and it has no verified enrollment here (EK, credential activation, certify): a software node, whatever its card says";
  }

  /** A node's card as this node holds it: its own, or that of a node it enrolled; null otherwise. */
  cardOf(nodeId: string): NodeCard | null {
    return nodeId === this.nodeId ? this.card() : (this.enrollments.get(nodeId)?.card ?? null);
  }

  get mesh(): string {
    return this.policy.mesh;
  }

  /** Creates the data dir, keys, card and (without a mesh genesis) the local one-node genesis. */
  static async init(opts: InitOptions): Promise<InitResult> {
    const layout = dataDirLayout(opts.dataDir, opts.config);
    ensurePrivateDir(layout.dir);
    const force = opts.force ?? false;
    if (!force) {
      for (const f of [layout.identityKey, layout.tpmIdentity, layout.libp2pKey, layout.blsKey, layout.privacyKey]) {
        if (fs.existsSync(f)) throw new NodeError(`${f} already exists; this data dir is initialised (use --force to replace its keys)`);
      }
    }
    // A bad genesis file must fail before any key is made.
    const joined = opts.genesisFile ? readGenesis(opts.genesisFile) : null;
    const nowMs = opts.nowMs ?? Date.now();
    const useTpm = opts.tpm !== undefined || opts.config.identity.kind === "tpm";
    let identity: IdentityKey;
    let akPub: string | undefined;
    let evidence: TpmEvidence | undefined;
    let tpmInfo: InitResult["tpm"];
    if (useTpm) {
      const tcti = opts.tpm ?? opts.config.identity.tcti;
      // Only the key this data dir made may be replaced: the one identity.tpm.json names,
      // checked by its public key, not by the handle number alone.
      const own = force ? ownTpmKey(layout) : null;
      const configured = opts.config.identity.tpm_handle;
      const handle = opts.tpmHandle ?? own?.handle ?? configured;
      const explicit = opts.tpmHandle !== undefined ? opts.tpmHandle !== "auto" : own === null && configured !== DEFAULT_TPM_HANDLE;
      const created = TpmIdentityKey.create(tcti, { handle, explicit, force, own });
      const key = created.key;
      tpmInfo = {
        handle: handleHex(key.persistentHandle),
        skipped: created.skipped === null ? null : handleHex(created.skipped),
        replaced: created.replaced,
        released: created.released === null ? null : handleHex(created.released),
      };
      identity = key;
      try {
        akPub = toHex(key.attestationKeySec1());
        evidence = collectEvidence(key, nodeIdOf(key.publicKey), opts.ekChain ?? []);
      } catch (e) {
        key.close();
        throw e;
      }
      const marker: TpmMarker = { tcti, handle: handleHex(key.persistentHandle), identity_pub: toHex(key.publicKey) };
      writeFileAtomic(layout.tpmIdentity, JSON.stringify(marker, null, 2) + "\n", { overwrite: force, mode: 0o644 });
      // A software key left from before would be a second identity: it goes.
      fs.rmSync(layout.identityKey, { force: true });
    } else {
      identity = SoftwareIdentityKey.create(layout.identityKey, force);
      fs.rmSync(layout.tpmIdentity, { force: true });
    }
    try {
      return { ...(await DSMNode.#initRest(opts, layout, identity, akPub, evidence, joined, nowMs, force)), ...(tpmInfo ? { tpm: tpmInfo } : {}) };
    } finally {
      if (identity instanceof TpmIdentityKey) identity.close();
    }
  }

  static async #initRest(
    opts: InitOptions,
    layout: DataDirLayout,
    identity: IdentityKey,
    akPub: string | undefined,
    tpmEvidence: TpmEvidence | undefined,
    joined: Genesis | null,
    nowMs: number,
    force: boolean,
  ): Promise<InitResult> {
    const p2p = createLibp2pKey(layout.libp2pKey, force);
    writeFileAtomic(layout.privacyKey, crypto.randomBytes(32), { overwrite: force });
    // control.port's bearer token; one already there (an operator's) is kept without --force.
    createControlToken(layout.controlToken, force);
    // Every node is the one validator of its own local mesh, so every node has a BLS key.
    const blsSecret = blsKeygen(crypto.randomBytes(32));
    writeFileAtomic(layout.blsKey, blsSecret, { overwrite: force });
    const card = await makeCard(identity, {
      role: opts.role ?? opts.config.node.role,
      peerId: p2p.peerId,
      nowMs,
      akPub,
      tpmEvidence,
      blsPub: toHex(blsPublicKey(blsSecret)),
      blsPop: toHex(blsPopProve(blsSecret)),
    });
    writeFileAtomic(layout.card, JSON.stringify(card, null, 2) + "\n", { overwrite: true, mode: 0o644 });
    const genesis = joined ?? makeLocalGenesis(card, nowMs);
    writeFileAtomic(layout.genesis, JSON.stringify(genesis, null, 2) + "\n", { overwrite: true, mode: 0o644 });
    if (opts.configText !== undefined && !fs.existsSync(layout.config)) {
      writeFileAtomic(layout.config, opts.configText, { overwrite: false, mode: 0o600 });
    }
    Ledger.open(layout.ledger, { busyTimeoutMs: opts.config.ledger.busy_timeout_ms }).close();
    return { layout, card, genesis, mesh: new MeshPolicy(genesis).mesh };
  }

  static open(dataDir: string, config: DsmConfig, opts: { readonly?: boolean } = {}): DSMNode {
    const layout = dataDirLayout(dataDir, config);
    if (!fs.existsSync(layout.card)) {
      throw new NodeError(`no dsm node in ${dataDir} (run: dsm init --data-dir ${dataDir})`);
    }
    // Reading (verify, log, show, status) needs no secret: an auditor can check a copied
    // ledger with the node's card alone. Only writers load the identity key.
    const identity = opts.readonly ? PublicIdentityKey.fromCard(readCard(layout.card)) : loadIdentity(layout, config);
    // Verified in full (proofs of possession included) when it was written at init or join.
    let genesis: Genesis;
    try {
      genesis = readGenesis(layout.genesis, { checkPop: false });
    } catch (e) {
      throw new NodeError(config.mesh.genesis ? `mesh.genesis: ${(e as Error).message}` : (e as Error).message);
    }
    let ledger: Ledger;
    try {
      ledger = Ledger.open(layout.ledger, { busyTimeoutMs: config.ledger.busy_timeout_ms, readonly: opts.readonly });
    } catch (e) {
      throw new NodeError(`ledger.file: ${(e as Error).message}`);
    }
    return new DSMNode(config, layout, identity, genesis, ledger, !opts.readonly);
  }

  close(): void {
    this.ledger.close();
    if (this.identity instanceof TpmIdentityKey) this.identity.close();
  }

  card(): NodeCard {
    return readCard(this.layout.card);
  }

  /** The local one-node mesh dsm init makes without --genesis: named after this node, which is its only validator. */
  get localMesh(): boolean {
    const v = this.genesis.validators;
    return this.genesis.name === `local-${this.nodeId.slice(0, 12)}` && v.length === 1 && v[0]!.node_id === this.nodeId;
  }

  /**
   * The role to print: the card's, and what the node does in its mesh where that differs.
   * An edge that its own genesis names as a validator validates (every local one-node mesh
   * names its node, so that the node's checkpoints can be made); a validator the node does
   * not act as (not in the genesis, or no usable BLS key) works as an edge.
   */
  roleDescription(validating: boolean): string {
    const role = this.card().role;
    if (validating && role === "edge") return this.localMesh ? "edge, validator of its local one-node mesh" : `edge, named a validator by the genesis of mesh ${this.genesis.name}`;
    if (!validating && role !== "edge") return `${role}, not validating in mesh ${this.genesis.name}: working as an edge`;
    return role;
  }

  /** The IP anonymiser when privacy.anonymize_ips is on, else null. */
  get anonymizer(): Anonymizer | null {
    return this.#anonymize;
  }

  prepareRecord(record: Record<string, unknown>, format: InputFormat): PreparedEvent {
    return prepareRecord(record, format, this.#anonymize);
  }

  /** Canonicalises and hashes a payload (anonymising IPs when configured). Throws EventError. */
  prepare(eventType: string, payload: unknown): PreparedEvent {
    return prepareEvent(eventType, payload, this.#anonymize);
  }

  /** One event, one microblock, committed before the promise resolves: a shim over prepare + append kept for library callers of the first one-event API. */
  async createMicroblock(event: { payload: unknown; eventType: string }): Promise<Microblock> {
    const [mb] = await this.append([this.prepare(event.eventType, event.payload)]);
    return mb!;
  }

  /**
   * Chains a batch of events in one BEGIN IMMEDIATE transaction (the ChainWriter's): one
   * fsync for the batch (group commit), and seq assignment that no other process on this
   * ledger can race. Batches from this process run one at a time.
   */
  append(events: PreparedEvent[]): Promise<Microblock[]> {
    // A PreparedEvent from library code is checked in full: its type goes into hand-built
    // canonical JSON and its hash is what gets signed. Our own are sealed and pass free.
    try {
      for (const ev of events) checkPrepared(ev);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#writer.append(events);
  }
}

function readCard(file: string): NodeCard {
  try {
    return parseCard(parseJson(fs.readFileSync(file, "utf8"), "JSON"), "node card", { checkPop: false });
  } catch (e) {
    throw new NodeError(`node card ${file}: ${(e as Error).message}`);
  }
}

export function readGenesis(file: string, opts: { checkPop?: boolean } = {}): Genesis {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new NodeError(`cannot read genesis ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return parseGenesis(parseJson(text, "JSON"), opts);
  } catch (e) {
    throw new NodeError(`genesis ${file}: ${(e as Error).message}`);
  }
}

/** identity.tpm.json: which TPM handle holds this node's identity key. */
interface TpmMarker {
  tcti: string;
  handle: string;
  identity_pub: string;
}

function parseTpmMarker(file: string): TpmMarker {
  const marker = JSON.parse(fs.readFileSync(file, "utf8")) as TpmMarker;
  if (typeof marker.tcti !== "string" || !/^0x81[0-9a-f]{6}$/.test(marker.handle) || !/^0[23][0-9a-f]{64}$/.test(marker.identity_pub)) throw new Error("malformed");
  return marker;
}

/** This data dir's TPM key as identity.tpm.json records it; null without one (or unreadable: nothing is then provably its own). */
function ownTpmKey(layout: DataDirLayout): { handle: number; publicKey: string } | null {
  if (!fs.existsSync(layout.tpmIdentity)) return null;
  try {
    const m = parseTpmMarker(layout.tpmIdentity);
    return { handle: Number.parseInt(m.handle, 16), publicKey: m.identity_pub };
  } catch {
    return null;
  }
}

/** The writer's identity key: in the TPM when the node was made with one, else the key file. */
function loadIdentity(layout: DataDirLayout, config: DsmConfig): IdentityKey {
  if (!fs.existsSync(layout.tpmIdentity)) {
    if (config.identity.kind === "tpm") {
      throw new NodeError(`identity.kind is tpm, but the node in ${layout.dir} has a software identity key (dsm init --tpm TCTI makes a TPM node; --force replaces the identity)`);
    }
    return SoftwareIdentityKey.load(layout.identityKey);
  }
  let marker: TpmMarker;
  try {
    marker = parseTpmMarker(layout.tpmIdentity);
  } catch (e) {
    throw new NodeError(`${layout.tpmIdentity}: ${(e as Error).message}`);
  }
  // The config may point at another TCTI (the TPM moved from a simulator to /dev/tpmrm0, say).
  const key = TpmIdentityKey.load(config.identity.tcti || marker.tcti, Number.parseInt(marker.handle, 16));
  if (toHex(key.publicKey) !== marker.identity_pub) {
    key.close();
    throw new NodeError(`the TPM key at handle ${marker.handle} is not this node's identity key (was the TPM cleared or replaced?)`);
  }
  return key;
}
