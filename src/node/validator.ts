// A validator over a node's data dir: its BLS key (checked against the genesis), its
// checkpoint log and durable signature store in the ledger, and the consensus engine wired
// to them. The transport is the caller's: the mesh daemon passes libp2p, tests a simulation.
import type { KeyObject } from "node:crypto";
import { toHex } from "../encoding/hex.ts";
import { ed25519PrivateKey } from "../crypto/ed25519.ts";
import { loadLibp2pKey } from "../identity/libp2p-key.ts";
import { signMessage } from "../protocol/consensus-messages.ts";
import { blsPublicKey, blsSign } from "../crypto/bls.ts";
import { readSecretFile } from "../fs/files.ts";
import { type BuildResult, CheckpointBuilder } from "../log/builder.ts";
import { type CheckpointBody, epochAt } from "../protocol/checkpoint.ts";
import { makeQuarantine, parseQuarantine, type QuarantineReason, type QuarantineRecord } from "../protocol/quarantine.ts";
import type { DSMNode } from "./node.ts";
import { buildAlone } from "../consensus/alone.ts";
import { ConsensusEngine, type EngineEvent } from "../consensus/engine.ts";
import { type Clock, type ConsensusTransport, systemClock } from "../consensus/ports.ts";
import { LedgerSignedStore } from "../ledger/signed-store.ts";
import { quorumOf, type ValidatorSet } from "../protocol/validator-set.ts";
import { validatorSetOfCards } from "../protocol/set-change.ts";
import { promoteNextKeys } from "./rotation.ts";

export class ValidatorKeyError extends Error {}

export class DSMValidator {
  readonly builder: CheckpointBuilder;
  readonly store: LedgerSignedStore;
  readonly validators: ValidatorSet;
  readonly #secret: Uint8Array;
  /** The libp2p Ed25519 key, which signs this validator's proposals and votes. */
  readonly #vote: KeyObject;

  private constructor(
    readonly node: DSMNode,
    readonly index: number,
    secret: Uint8Array,
    vote: KeyObject,
    builder: CheckpointBuilder,
  ) {
    this.#vote = vote;
    this.#secret = secret;
    this.builder = builder;
    this.store = new LedgerSignedStore(node.ledger, node.mesh);
    this.validators = DSMValidator.validatorsOf(node, builder);
    this.setVersion = builder.history().version;
  }

  /** What open() switched to because the set in force names this node's waiting keys (src/node/rotation.ts). */
  rotated: { bls: boolean; libp2p: boolean } | null = null;

  /** Set changes finalized when this validator was opened: its index and set hold until the next one. */
  readonly setVersion: number;

  /**
   * The validator set in force for the next checkpoint (the genesis's, changed by every set
   * change finalized in this ledger), for checking what validators signed (any node may).
   */
  static validatorsOf(node: DSMNode, builder = new CheckpointBuilder(node.ledger, node.policy)): ValidatorSet {
    const cards = builder.history().latestCards();
    // quorum_threshold only ever raises the BFT quorum; after a set change it may be below
    // the new set's quorum (then it is that quorum) or above its size (then every validator).
    const t = node.config.consensus.quorum_threshold;
    const q = quorumOf(cards.length);
    return validatorSetOfCards(node.genesis, cards, t > cards.length ? cards.length : t < q ? 0 : t);
  }

  /** The latest epoch a request from the mesh may name on this node: its current one, its clock skew allowed for. */
  static maxRequestEpoch(node: DSMNode, nowMs = Date.now()): number {
    return epochAt(node.genesis, nowMs + node.config.mesh.max_clock_skew_s * 1000);
  }

  /** The node as a validator of its mesh; errors say why it cannot be one. */
  static open(node: DSMNode): DSMValidator {
    const genesis = node.genesis;
    const builder = new CheckpointBuilder(node.ledger, node.policy);
    // The set in force, not the genesis's: validators are added, removed and re-keyed by quorum.
    const cards = builder.history().latestCards();
    const index = cards.findIndex((c) => c.node_id === node.nodeId);
    // A rotation of this node's keys that the set now names: switch to the waiting keys.
    const rotated = node.writable ? promoteNextKeys(node, cards[index]) : null;
    if (index < 0) {
      throw new ValidatorKeyError(
        `this node is not a validator of mesh ${node.mesh.slice(0, 16)}… ("${genesis.name}", ${cards.length} validator(s) in force); only a validator builds checkpoints`,
      );
    }
    let secret: Uint8Array;
    try {
      secret = new Uint8Array(readSecretFile(node.layout.blsKey));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ValidatorKeyError(code ? `cannot read the BLS key ${node.layout.blsKey}: ${code}` : (e as Error).message);
    }
    if (secret.length !== 32) throw new ValidatorKeyError(`${node.layout.blsKey} must hold a 32-byte BLS secret key, it has ${secret.length} bytes`);
    let pub: string;
    try {
      pub = toHex(blsPublicKey(secret));
    } catch (e) {
      throw new ValidatorKeyError(`${node.layout.blsKey}: ${(e as Error).message}`);
    }
    if (pub !== cards[index]!.bls_pub) {
      throw new ValidatorKeyError(`${node.layout.blsKey} does not match this node's bls_pub in the validator set of mesh ${node.mesh.slice(0, 16)}…`);
    }
    let vote: KeyObject;
    try {
      const k = loadLibp2pKey(node.layout.libp2pKey);
      if (k.peerId !== cards[index]!.peer_id) throw new Error(`it is the key of peer ${k.peerId}, not of this validator's peer_id in the validator set`);
      vote = ed25519PrivateKey(k.privateKey);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ValidatorKeyError(`${node.layout.libp2pKey}: ${code ? `cannot read it: ${code}` : (e as Error).message}`);
    }
    const v = new DSMValidator(node, index, secret, vote, builder);
    v.rotated = rotated;
    return v;
  }

  /** The checkpoint body this validator would propose for a closed epoch, or null when nothing is new.
   * A shim over builder.propose kept for library callers (src/index.ts exports DSMValidator) written against the first one-call API. */
  buildCheckpoint(epoch: number): CheckpointBody | null {
    return this.builder.propose(epoch);
  }

  /** The checkpoint of a closed epoch where this validator alone is the quorum (n = 1). */
  buildAlone(epoch: number): BuildResult {
    if (this.validators.quorum !== 1) throw new Error(`a checkpoint of this mesh needs ${this.validators.quorum} signatures, not this validator's alone`);
    return buildAlone(this.builder, epoch, this.#secret, this.index);
  }

  /** BLS signature with this validator's key. */
  sign(message: Uint8Array): Uint8Array {
    return blsSign(this.#secret, message);
  }

  /** The consensus engine of this validator; call start() on it once the transport is up. */
  engine(opts: { transport: ConsensusTransport; clock?: Clock; onEvent?: (e: EngineEvent) => void }): ConsensusEngine {
    return new ConsensusEngine({
      genesis: this.node.genesis,
      mesh: this.node.mesh,
      validators: this.validators,
      index: this.index,
      sign: (m) => signMessage(m, { bls: this.#secret, vote: this.#vote }),
      source: this.builder,
      store: this.store,
      transport: opts.transport,
      clock: opts.clock ?? systemClock,
      roundTimeoutMs: this.node.config.consensus.signature_timeout_s * 1000,
      maxClockSkewMs: this.node.config.mesh.max_clock_skew_s * 1000,
      onEvent: opts.onEvent,
    });
  }

  /**
   * Signs a quarantine request (type Q) about a node and stores it, checked like any
   * request from the mesh: the request for what the node's standing calls for (a
   * quarantine while it is free, a lift while it is quarantined), current for its decision
   * count. It takes effect only once a checkpoint decides it (enough validators asked).
   * fromSeq defaults to the seq after the node's head in this ledger.
   */
  quarantine(nodeId: string, f: { action: "quarantine" | "lift"; reason: QuarantineReason; detail: string; fromSeq?: number; nowMs?: number }): QuarantineRecord {
    const record = makeQuarantine({
      mesh: this.node.mesh,
      nodeId,
      action: f.action,
      fromSeq: f.fromSeq ?? (this.node.ledger.head(this.node.mesh, nodeId)?.seq ?? 0) + 1,
      reason: f.reason,
      basis: this.builder.quarantine.standing(nodeId).decisions,
      epoch: Math.max(0, epochAt(this.node.genesis, f.nowMs ?? Date.now())),
      detail: f.detail,
      validator: this.index,
      sign: (d) => this.sign(d),
    });
    this.builder.quarantine.add(parseQuarantine(record, this.node.mesh, this.validators));
    return record;
  }

  /** Forgets the key material held in memory. */
  close(): void {
    this.#secret.fill(0);
  }
}
