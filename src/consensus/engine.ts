// The consensus engine of one validator (DESIGN.md section 6, refined in docs/PROTOCOL.md
// "Consensus"). Each height decides the checkpoint that follows the last finalized one, by
// the round-based algorithm of Buchman, Kwon and Milosevic, "The latest gossip on BFT
// consensus" (Tendermint, 2018): proposals, prevotes and precommits per round, a lock on
// the value precommitted, proposers in rotation, timeouts that grow with the round. Once a
// quorum precommits a body in one round, that body is decided and the validator makes its
// one BLS signature for the epoch over the checkpoint digest; a quorum of those aggregates
// into the finality certificate.
//
// Why two phases before the signature: DESIGN.md lets a validator sign one body per epoch,
// ever. Signing a proposal directly would let a proposer that shows different bodies to
// different validators split their only signatures, and the epoch could never finalize.
// Prevotes and precommits may change from round to round; the signature is only made for
// a body that is already decided, so honest signatures never split.
//
// Deterministic and transport-agnostic: every input arrives through receive(), logChanged()
// or a timer of the injected clock, and the engine never awaits.
import { ZERO_HASH } from "../encoding/hex.ts";
import { SchemaError } from "../encoding/schema.ts";
import type { Genesis } from "../protocol/genesis.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { type CheckpointBody, checkpointDigest, checkpointDigestHex, epochAt, epochBounds } from "../protocol/checkpoint.ts";
import { parseFinalityCertificate } from "../protocol/certificate.ts";
import {
  conflicting,
  type Evidence,
  evidenceProblem,
  heightOf,
  makeEvidence,
  type Phase,
  parseSigned,
  type Proposal,
  type Signature,
  type Signed,
  type Unsigned,
  ofMesh,
  signatureValid,
  signingDigest,
  slotOf,
  slotsOf,
} from "../protocol/consensus-messages.ts";
import type { CheckpointSource, Clock, ConsensusTransport, SignedStore } from "./ports.ts";
import { signOnce } from "./sign-once.ts";
import { signersBitfield, type ValidatorSet } from "../protocol/validator-set.ts";
import { CHANGE_DELAY_EPOCHS } from "../protocol/set-change.ts";

export type EngineEvent =
  | { kind: "proposed"; epoch: number; round: number; digest: string }
  | { kind: "decided"; epoch: number; round: number; digest: string; baseEpoch: number }
  | { kind: "finalized"; certificate: FinalityCertificate; round: number }
  | { kind: "evidence"; validator: number; evidence: Evidence }
  | { kind: "rejected"; reason: string; validator?: number }
  | { kind: "refused"; reason: string }
  | { kind: "conflict"; reason: string }
  /** A write to this validator's ledger failed (disk full, say): retried later, nothing sent that is not stored. */
  | { kind: "store-failed"; reason: string };

export interface EngineOptions {
  genesis: Genesis;
  mesh: string;
  validators: ValidatorSet;
  /** This validator's index in genesis order. */
  index: number;
  /** The signature of a message with this validator's keys (signMessage). */
  sign: (message: Unsigned) => Uint8Array;
  source: CheckpointSource;
  store: SignedStore;
  transport: ConsensusTransport;
  clock: Clock;
  /** signature_timeout: the length of round 0; later rounds grow by half of it each. */
  roundTimeoutMs: number;
  /** Clock difference tolerated when deciding whether an epoch has closed. */
  maxClockSkewMs: number;
  onEvent?: (e: EngineEvent) => void;
}

type Step = "idle" | "propose" | "prevote" | "precommit";
type Validity = "valid" | "invalid" | "pending";

const MAX_BUFFERED = 4096;
const MAX_ROUNDS_AHEAD = 256;
const MAX_BUFFERED_PER_VALIDATOR = 64;
const MAX_EXTRA_PER_SLOT = 3;
/** How long a BLS signature may wait for others to be verified with it. */
const VERIFY_BATCH_MS = 10;

export class ConsensusEngine {
  readonly #o: EngineOptions;
  readonly #set: ValidatorSet;
  readonly #f: number;
  #stopped = false;
  #unverified: { m: Signed; key: string; height: string }[] = [];
  #verifyTimer: (() => void) | null = null;

  // The height: the checkpoint after #latest.
  #latest: FinalityCertificate | null = null;
  #prev = ZERO_HASH;
  #baseEpoch = 0;

  #round = 0;
  #step: Step = "idle";
  #lockedValue: string | null = null;
  #lockedRound = -1;
  #validValue: string | null = null;
  #validRound = -1;
  #decided: string | null = null;
  #heard = false;

  #bodies = new Map<string, CheckpointBody>();
  #proposals = new Map<number, Proposal>();
  /** round/phase → validator → the values it voted (more than one only for an equivocator). */
  #votes = new Map<string, Map<number, (string | null)[]>>();
  /** Verified messages that conflict with a validator's first one for a slot (V and S only). */
  #extra = new Map<string, Signed[]>();
  #sigs = new Map<string, Map<number, string>>();
  #roundSenders = new Map<number, Set<number>>();
  #seen = new Map<string, Signed>();
  #validity = new Map<string, Validity>();
  #fired = new Set<string>();
  #graceUntil = new Map<string, number>();
  #farAhead = new Map<number, number>();
  #bufferedBy = new Map<number, number>();
  #timers: (() => void)[] = [];
  #armed = new Set<() => void>();
  #future = new Map<string, unknown[]>();
  #futureCount = 0;
  #pendingCert: FinalityCertificate | null = null;
  #requestedAt = -Infinity;
  #helpedAt = -Infinity;
  #activation: (() => void) | null = null;
  #waiters: { epoch: number; resolve: (c: FinalityCertificate) => void }[] = [];
  /** Validators this engine holds verified equivocation evidence against. */
  #flagged = new Set<number>();

  constructor(opts: EngineOptions) {
    if (!Number.isInteger(opts.index) || opts.index < 0 || opts.index >= opts.validators.n) {
      throw new RangeError(`validator index ${opts.index} is not in the genesis's ${opts.validators.n} validators`);
    }
    this.#o = opts;
    this.#set = opts.validators;
    this.#f = Math.floor((this.#set.n - 1) / 3);
  }

  get index(): number {
    return this.#o.index;
  }

  /** Loads the last finalized checkpoint and resumes the height from what this validator already signed. */
  start(): void {
    this.#enterHeight(this.#o.source.latest());
    this.#requestCatchUp();
    this.#schedule(this.#o.roundTimeoutMs, () => this.#heartbeat());
  }

  /**
   * Sends this validator's messages of the current round (and its signature) again, every
   * round timeout: a lossy network then delivers each of them eventually, which the
   * algorithm's liveness assumes.
   */
  #heartbeat(): void {
    if (this.#stopped) return;
    this.#retryPendingCert();
    // The rules once more: a wake-up lost anywhere (a quorum of signatures waiting, say)
    // costs at most one round timeout, never the wait for the next message.
    this.#evaluate();
    if (this.#step !== "idle") for (const m of this.#relaySet()) this.#o.transport.broadcast(m);
    this.#schedule(this.#o.roundTimeoutMs, () => this.#heartbeat());
  }

  /**
   * What is sent again every round timeout: every message of the current round (anyone's),
   * this validator's own of the round before, the signatures, and the proposal and
   * prevotes that made validValue valid. Algorithm 1's
   * liveness assumes a message one correct validator got reaches every correct validator
   * eventually; a lock on a body others never saw a quorum for would otherwise stall the
   * height forever (the locked validator prevotes nothing else, the others cannot check its
   * re-proposal).
   */
  #relaySet(): Set<Signed> {
    const out = new Set<Signed>();
    for (const m of [...this.#seen.values(), ...[...this.#extra.values()].flat()]) {
      if (m.type === "S") out.add(m);
      else if (m.round === this.#round) out.add(m);
      // A validator one round behind waits for our last round's votes to time that round out.
      else if (m.validator === this.#o.index && m.round === this.#round - 1) out.add(m);
      else if (this.#validValue !== null && m.round === this.#validRound) {
        if (m.type === "V" && m.phase === "prevote" && m.checkpoint === this.#validValue) out.add(m);
        if (m.type === "P" && checkpointDigestHex(m.checkpoint) === this.#validValue) out.add(m);
      }
    }
    return out;
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelTimers();
    for (const cancel of this.#armed) cancel();
    this.#armed.clear();
    this.#verifyTimer?.();
    this.#verifyTimer = null;
    this.#unverified = [];
    this.#waiters = [];
  }

  /** Status for status commands and tests. */
  status(): { prev: string; baseEpoch: number; round: number; step: Step; lastFinalizedEpoch: number | null; decided: string | null; flagged: number[] } {
    return {
      prev: this.#prev,
      baseEpoch: this.#baseEpoch,
      round: this.#round,
      step: this.#step,
      lastFinalizedEpoch: this.#latest?.checkpoint.epoch ?? null,
      decided: this.#decided,
      flagged: [...this.#flagged].sort((a, b) => a - b),
    };
  }

  /** Proposer of a round at the current height: (base epoch + round) mod n. */
  proposerOf(round: number): number {
    return (this.#baseEpoch + round) % this.#set.n;
  }

  /**
   * Waits for the finality certificate of `body`'s epoch or of a later one (checkpoints
   * are cumulative), and wakes the engine if it was idle. Kept under the first prototype's
   * name, which integrations call; the daemon waits through the same path.
   */
  collectValidatorSignatures(body: CheckpointBody): Promise<FinalityCertificate> {
    if (this.#latest && this.#latest.checkpoint.epoch >= body.epoch) return Promise.resolve(this.#latest);
    return new Promise((resolve) => {
      this.#waiters.push({ epoch: body.epoch, resolve });
      // Wake the engine only when there is something to agree on: empty rounds cost
      // signatures and grow the round timeouts for when something does arrive.
      if (this.#o.source.propose(this.#latestClosed()) !== null) this.#maybeActivate();
    });
  }

  /** New microblocks were stored: pending proposals and certificates may now check out. */
  logChanged(): void {
    if (this.#stopped) return;
    for (const [d, v] of this.#validity) if (v === "pending") this.#validity.delete(d);
    if (this.#retryPendingCert()) return;
    this.#maybeActivate();
    this.#evaluate();
  }

  /** A certificate that could not be committed yet (microblocks missing, a failed write): once more. */
  #retryPendingCert(): boolean {
    const c = this.#pendingCert;
    if (c === null) return false;
    this.#pendingCert = null;
    this.#finalize(c);
    return true;
  }

  /** Any consensus message from the network (P, V, S, E or F), untrusted. */
  receive(value: unknown): void {
    if (this.#stopped) return;
    const type = typeof value === "object" && value !== null ? (value as { type?: unknown }).type : undefined;
    try {
      if (type === "F") return this.#onCertificate(parseFinalityCertificate(value));
      if (type === "E") return this.#onEvidence(value);
      this.#onSigned(parseSigned(value, this.#set.n));
    } catch (e) {
      if (e instanceof SchemaError || (e as Error).name === "BundleError") this.#emit({ kind: "rejected", reason: (e as Error).message });
      else throw e;
    }
  }

  // --- heights ----------------------------------------------------------------------

  #enterHeight(latest: FinalityCertificate | null): void {
    this.#cancelTimers();
    this.#latest = latest;
    this.#prev = latest ? checkpointDigestHex(latest.checkpoint) : ZERO_HASH;
    // After a set change the next checkpoint is for its second epoch on (docs/PROTOCOL.md "Validator-set changes").
    this.#baseEpoch = latest ? latest.checkpoint.epoch + (latest.checkpoint.set_change ? CHANGE_DELAY_EPOCHS : 1) : 0;
    this.#round = 0;
    this.#step = "idle";
    this.#lockedValue = null;
    this.#lockedRound = -1;
    this.#validValue = null;
    this.#validRound = -1;
    this.#decided = null;
    this.#heard = false;
    this.#bodies = new Map();
    this.#proposals = new Map();
    this.#votes = new Map();
    this.#extra = new Map();
    this.#sigs = new Map();
    this.#roundSenders = new Map();
    this.#seen = new Map();
    this.#validity = new Map();
    this.#fired = new Set();
    this.#pendingCert = null;
    this.#graceUntil = new Map();
    this.#farAhead = new Map();
    if (latest) {
      const done = this.#waiters.filter((w) => w.epoch <= latest.checkpoint.epoch);
      this.#waiters = this.#waiters.filter((w) => w.epoch > latest.checkpoint.epoch);
      for (const w of done) w.resolve(latest);
    }
    this.#resume();
    // Only this height's buffered messages can still matter; later ones come again.
    const buffered = this.#future.get(this.#prev) ?? [];
    this.#future = new Map();
    this.#futureCount = 0;
    this.#bufferedBy = new Map();
    for (const m of buffered) this.receive(m);
    this.#maybeActivate();
    this.#evaluate();
  }

  /** After a restart: what this validator signed at this height binds it again. */
  #resume(): void {
    const stored = this.#o.store.ofHeight(this.#prev);
    if (stored.length === 0) return;
    // Stored messages were verified before they were stored: recorded as they are. Others'
    // messages among them are the proposal and prevotes that justified this validator's lock.
    for (const m of stored) this.#record(m);
    const mine = stored.filter((m) => m.validator === this.#o.index);
    let round = 0;
    for (const m of mine) {
      if (m.type !== "S") round = Math.max(round, m.round);
      if (m.type === "V" && m.phase === "precommit" && m.checkpoint !== null && m.round > this.#lockedRound) {
        this.#lockedRound = m.round;
        this.#lockedValue = m.checkpoint;
      }
      if (m.type === "S") this.#decided = slotOf(m).value;
    }
    // validRound >= lockedRound holds in the paper: the lock is a valid value with its polka.
    if (this.#lockedValue !== null && this.#bodies.has(this.#lockedValue)) {
      this.#validValue = this.#lockedValue;
      this.#validRound = this.#lockedRound;
    }
    this.#round = round;
    const signedVote = (phase: Phase) => mine.some((m) => m.type === "V" && m.round === round && m.phase === phase);
    this.#step = signedVote("precommit") ? "precommit" : signedVote("prevote") ? "prevote" : "propose";
    this.#heard = true;
    for (const m of this.#relaySet()) this.#o.transport.broadcast(m);
    this.#scheduleRoundTimeouts();
  }

  #maybeActivate(): void {
    if (this.#stopped || this.#step !== "idle") return;
    this.#activation?.();
    this.#activation = null;
    const now = this.#o.clock.now();
    const { endMs } = epochBounds(this.#o.genesis, this.#baseEpoch);
    let wake = endMs;
    if (now >= endMs) {
      if (this.#heard || this.#o.source.propose(this.#latestClosed()) !== null) return this.#startRound(0);
      // Nothing new anywhere yet: look again when the next epoch closes.
      wake = epochBounds(this.#o.genesis, epochAt(this.#o.genesis, now)).endMs;
    }
    this.#activation = this.#schedule(wake - now, () => {
      this.#activation = null;
      this.#maybeActivate();
    });
  }

  #latestClosed(): number {
    return epochAt(this.#o.genesis, this.#o.clock.now()) - 1;
  }

  // --- rounds -----------------------------------------------------------------------

  #timeout(round: number): number {
    const step = this.#o.roundTimeoutMs / 3;
    return step + (round * step) / 2;
  }

  #startRound(round: number): void {
    this.#cancelTimers();
    this.#round = round;
    this.#step = "propose";
    if (this.proposerOf(round) === this.#o.index) {
      let body: CheckpointBody | null = null;
      let validRound = -1;
      if (this.#validValue !== null) {
        body = this.#bodies.get(this.#validValue) ?? null;
        validRound = this.#validRound;
      } else {
        const epoch = this.#latestClosed();
        if (epoch >= this.#baseEpoch) body = this.#o.source.propose(epoch);
        if (body && body.prev !== this.#prev) body = null;
      }
      if (body) {
        const m = this.#signAndSend({ v: 1, type: "P", mesh: this.#o.mesh, round, valid_round: validRound, checkpoint: body, validator: this.#o.index });
        if (m) this.#emit({ kind: "proposed", epoch: body.epoch, round, digest: checkpointDigestHex(body) });
      }
    }
    this.#scheduleRoundTimeouts();
    this.#evaluate();
  }

  #scheduleRoundTimeouts(): void {
    const round = this.#round;
    const prev = this.#prev;
    const t = this.#timeout(round);
    const stillHere = () => !this.#stopped && this.#prev === prev && this.#round === round;
    this.#after(t, () => {
      if (stillHere() && this.#step === "propose") this.#vote("prevote", null);
    });
  }

  #vote(phase: Phase, value: string | null): void {
    const m = this.#signAndSend({ v: 1, type: "V", mesh: this.#o.mesh, prev: this.#prev, round: this.#round, phase, checkpoint: value, validator: this.#o.index });
    this.#step = phase;
    if (m === null) return;
    if (phase === "precommit" && value !== null) {
      this.#lockedValue = value;
      this.#lockedRound = this.#round;
      this.#keepJustification(this.#round, value);
    }
    this.#evaluate();
  }

  /** Stores the proposal and prevotes behind a lock, so a restart can re-propose the locked body with its proof. */
  #keepJustification(round: number, value: string): void {
    for (const m of [...this.#seen.values(), ...[...this.#extra.values()].flat()]) {
      if (m.validator === this.#o.index) continue;
      const isPolka = m.type === "V" && m.round === round && m.phase === "prevote" && m.checkpoint === value;
      const isBody = m.type === "P" && checkpointDigestHex(m.checkpoint) === value;
      if (isPolka || isBody) this.#o.store.claim([`L/${this.#prev}/${round}/${slotOf(m).slot}/${m.validator}`], m);
    }
  }

  /**
   * A write to this validator's store. When it fails (a full disk, say) the engine goes on
   * without it: the caller does what it does when nothing was written, and the failure is
   * reported, never thrown out of a timer or a message handler.
   */
  #stored<T>(what: string, write: () => T): { value: T } | null {
    try {
      return { value: write() };
    } catch (e) {
      this.#emit({ kind: "store-failed", reason: `${what} not stored: ${(e as Error).message}` });
      return null;
    }
  }

  /** Signs, records durably, then sends. Null when the store already holds a different message for the slot. */
  #signAndSend(unsigned: Unsigned): Signed | null {
    const w = this.#stored("signature", () => signOnce(this.#o.store, unsigned, this.#o.sign));
    if (w === null) return null; // not recorded, so not sent
    const r = w.value;
    if (!r.ok) {
      this.#emit({ kind: "refused", reason: `already signed ${r.slot} for another value; not signing a second` });
      return null;
    }
    this.#record(r.message);
    this.#o.transport.broadcast(r.message);
    return r.message;
  }

  // --- messages -----------------------------------------------------------------------

  #onSigned(m: Signed): void {
    const height = heightOf(m);
    if (m.mesh !== this.#o.mesh) return this.#emit({ kind: "rejected", reason: "message for another mesh", validator: m.validator });
    if (height !== this.#prev) {
      // A validator still at the height this one finalized: its certificate may have been
      // lost on the way (it is broadcast once), and nothing here would send it again.
      if (this.#latest !== null && height === this.#latest.checkpoint.prev) return this.#helpLaggard();
      if (m.type !== "V" && this.#latest && m.checkpoint.epoch <= this.#latest.checkpoint.epoch) return; // an old height
      // Possibly a height after one this validator missed: keep it, fetch certificates.
      this.#buffer(height, m);
      return;
    }
    // The same message again (gossip, heartbeats): nothing to verify.
    const key = `${m.validator}/${slotOf(m).slot}`;
    const held = this.#seen.get(key);
    if (held && held.sig === m.sig && slotOf(held).value === slotOf(m).value) return;
    if (this.#extra.get(key)?.some((x) => x.sig === m.sig)) return;
    if (m.type !== "S" && m.round > this.#round + MAX_ROUNDS_AHEAD) {
      // Far ahead: kept only as "this validator has reached round R" (one number per
      // validator, so memory stays bounded), which the round-skip rule counts.
      if (m.round <= (this.#farAhead.get(m.validator) ?? -1)) return;
      if (!signatureValid(m, this.#o.mesh, this.#set)) return this.#emit({ kind: "rejected", reason: "bad signature", validator: m.validator });
      this.#farAhead.set(m.validator, m.round);
      this.#heard = true;
      return this.#evaluate();
    }
    if (m.type !== "S") {
      if (!signatureValid(m, this.#o.mesh, this.#set)) return this.#emit({ kind: "rejected", reason: "bad signature", validator: m.validator });
      return this.#admit(m, key);
    }
    this.#queueForVerification(m, key);
  }

  /**
   * BLS signatures wait VERIFY_BATCH_MS (or until n are waiting) to be checked together:
   * they sign one checkpoint digest, so a batch costs about one pairing check instead of
   * one per signature. Nothing counts a signature before it verifies.
   */
  #queueForVerification(m: Signed, key: string): void {
    if (!ofMesh(m, this.#o.mesh)) return this.#emit({ kind: "rejected", reason: "bad signature", validator: m.validator });
    if (this.#unverified.some((u) => u.key === key && u.m.sig === m.sig)) return;
    this.#unverified.push({ m, key, height: this.#prev });
    if (this.#unverified.length >= this.#set.n) return this.#verifyQueued();
    if (this.#verifyTimer === null) this.#verifyTimer = this.#schedule(VERIFY_BATCH_MS, () => this.#verifyQueued());
  }

  #verifyQueued(): void {
    this.#verifyTimer?.();
    this.#verifyTimer = null;
    const queued = this.#unverified.filter((u) => u.height === this.#prev); // others: a height since left
    this.#unverified = [];
    if (this.#stopped || queued.length === 0) return;
    const valid = this.#set.verifyMany(queued.map(({ m }) => ({ i: m.validator, message: signingDigest(m), sigHex: m.sig })));
    for (const [j, { m, key, height }] of queued.entries()) {
      if (this.#prev !== height) return; // admitting one finished the height
      if (!valid[j]) this.#emit({ kind: "rejected", reason: "bad signature", validator: m.validator });
      else this.#admit(m, key);
    }
  }

  /** A message whose signature verified: equivocation check, then the round state. */
  #admit(m: Signed, key: string): void {
    if (!this.#checkEquivocation(m)) {
      // An equivocator's second vote (or signature) still counts for its own value, as a
      // byzantine vote may: otherwise validators that got its two votes in different orders
      // would count different polkas, and a lock on one of them could never be shared.
      if (m.type === "P" || !this.#recordExtra(key, m)) return;
    } else if (!this.#record(m)) return;
    this.#heard = true;
    if (this.#step === "idle") this.#maybeActivate();
    this.#evaluate();
  }

  /** A message of another height: perhaps one after a certificate this validator missed. */
  #buffer(height: string, m: unknown): void {
    // At most a few rounds' worth per validator: one peer cannot crowd out the others.
    const from = (m as { validator?: unknown }).validator;
    if (typeof from === "number") {
      const count = this.#bufferedBy.get(from) ?? 0;
      if (count >= MAX_BUFFERED_PER_VALIDATOR) return this.#requestCatchUp();
      this.#bufferedBy.set(from, count + 1);
    }
    if (this.#futureCount < MAX_BUFFERED) {
      const list = this.#future.get(height) ?? [];
      list.push(m);
      this.#future.set(height, list);
      this.#futureCount++;
    }
    this.#requestCatchUp();
  }

  /** Sends the latest certificate again for a validator still at its height, at most once per round timeout. */
  #helpLaggard(): void {
    const now = this.#o.clock.now();
    if (this.#latest === null || now - this.#helpedAt < this.#o.roundTimeoutMs) return;
    this.#helpedAt = now;
    this.#o.transport.broadcast(this.#latest);
  }

  /** Asks for certificates after the latest, at most once per round timeout. */
  #requestCatchUp(): void {
    const now = this.#o.clock.now();
    if (now - this.#requestedAt < this.#o.roundTimeoutMs) return;
    this.#requestedAt = now;
    this.#o.transport.requestCertificates(this.#latest?.checkpoint.epoch ?? -1);
  }

  /** False (and evidence made) when m conflicts with what its signer already signed. */
  #checkEquivocation(m: Signed): boolean {
    for (const { slot } of slotsOf(m)) {
      const key = `${m.validator}/${slot}`;
      const first = this.#seen.get(key);
      if (!first) continue;
      if (conflicting(first, m)) {
        const e = makeEvidence(first, m);
        this.#flagged.add(m.validator);
        if (this.#stored("evidence", () => this.#o.store.addEvidence(e, slot))?.value) {
          this.#emit({ kind: "evidence", validator: m.validator, evidence: e });
          this.#o.transport.broadcast(e);
        }
        return false;
      }
    }
    return true;
  }

  /** Records a verified vote or signature that conflicts with its signer's first; at most a few per slot. */
  #recordExtra(key: string, m: Signed): boolean {
    const list = this.#extra.get(key) ?? [];
    if (list.length >= MAX_EXTRA_PER_SLOT || list.some((x) => slotOf(x).value === slotOf(m).value)) return false;
    list.push(m);
    this.#extra.set(key, list);
    if (m.type === "V") {
      const votes = this.#votes.get(`${m.round}/${m.phase}`);
      const mine = votes?.get(m.validator);
      if (!mine || mine.includes(m.checkpoint)) return false;
      mine.push(m.checkpoint);
    } else if (m.type === "S") this.#addSignature(m);
    return true;
  }

  #addSignature(m: Signature): void {
    const d = checkpointDigestHex(m.checkpoint);
    this.#bodies.set(d, m.checkpoint);
    let sigs = this.#sigs.get(d);
    if (!sigs) this.#sigs.set(d, (sigs = new Map()));
    sigs.set(m.validator, m.sig);
  }

  /** Adds a verified message to the round state; false when it adds nothing. */
  #record(m: Signed): boolean {
    for (const { slot } of slotsOf(m)) {
      const key = `${m.validator}/${slot}`;
      if (this.#seen.has(key)) return false;
      this.#seen.set(key, m);
    }
    if (m.type === "P") {
      if (m.validator !== this.proposerOf(m.round) || m.checkpoint.prev !== this.#prev) return false;
      if (this.#proposals.has(m.round)) return false;
      this.#proposals.set(m.round, m);
      this.#bodies.set(checkpointDigestHex(m.checkpoint), m.checkpoint);
      this.#senders(m.round).add(m.validator);
    } else if (m.type === "V") {
      const k = `${m.round}/${m.phase}`;
      let votes = this.#votes.get(k);
      if (!votes) this.#votes.set(k, (votes = new Map()));
      votes.set(m.validator, [m.checkpoint]);
      this.#senders(m.round).add(m.validator);
    } else this.#addSignature(m);
    return true;
  }

  #senders(round: number): Set<number> {
    let s = this.#roundSenders.get(round);
    if (!s) this.#roundSenders.set(round, (s = new Set()));
    return s;
  }

  #onEvidence(value: unknown): void {
    const problem = evidenceProblem(value, this.#o.mesh, this.#set);
    if (problem !== null) return this.#emit({ kind: "rejected", reason: `evidence: ${problem}` });
    const e = value as Evidence;
    this.#flagged.add(e.validator);
    if (this.#stored("evidence", () => this.#o.store.addEvidence(e, slotOf(e.first).slot))?.value) this.#emit({ kind: "evidence", validator: e.validator, evidence: e });
  }

  #onCertificate(cert: FinalityCertificate): void {
    const cp = cert.checkpoint;
    if (cp.mesh !== this.#o.mesh) return this.#emit({ kind: "rejected", reason: "certificate for another mesh" });
    if (this.#latest && cp.epoch <= this.#latest.checkpoint.epoch) return;
    const problem = this.#set.quorumProblem(cert.signers, checkpointDigest(cp), cert.agg_sig);
    if (problem !== null) return this.#emit({ kind: "rejected", reason: `certificate: ${problem}` });
    if (cp.prev !== this.#prev) return this.#buffer(cp.prev, cert);
    this.#finalize(cert);
  }

  #finalize(cert: FinalityCertificate): void {
    const cp = cert.checkpoint;
    if (cp.prev !== this.#prev) return;
    const r = this.#o.source.check(cp);
    if (!r.ok) {
      this.#pendingCert = cert;
      if (r.missing) this.#o.transport.fetchMicroblocks(r.missing);
      else this.#emit({ kind: "conflict", reason: `a quorum finalized epoch ${cp.epoch}, but this validator's log rejects it: ${r.reason}` });
      return;
    }
    if (this.#stored("certificate", () => this.#o.source.commit(cert)) === null) {
      this.#pendingCert = cert; // tried again when the log changes and at every heartbeat
      return;
    }
    this.#o.transport.broadcast(cert);
    this.#emit({ kind: "finalized", certificate: cert, round: this.#round });
    // A new validator set counts from the next height: this engine's set and index end here,
    // and whoever runs it starts one over the new set (src/mesh/daemon.ts).
    if (cp.set_change) return this.stop();
    this.#enterHeight(cert);
  }

  // --- the rules ----------------------------------------------------------------------

  #validity_(digest: string): Validity {
    const cached = this.#validity.get(digest);
    if (cached) return cached;
    const body = this.#bodies.get(digest);
    if (!body) return "pending";
    let v: Validity;
    const now = this.#o.clock.now();
    const { endMs } = epochBounds(this.#o.genesis, body.epoch);
    if (body.mesh !== this.#o.mesh || body.prev !== this.#prev || body.epoch < this.#baseEpoch) v = "invalid";
    else if (endMs > now + this.#o.maxClockSkewMs) {
      // Not closed yet by this clock: valid later, perhaps.
      // Not a round timer: a round change must not cancel it.
      if (this.#once(`closes/${digest}`)) this.#schedule(endMs - this.#o.maxClockSkewMs - now, () => this.#evaluate());
      return "pending";
    } else {
      const r = this.#o.source.check(body);
      if (r.ok) v = "valid";
      else if (r.missing) {
        this.#o.transport.fetchMicroblocks(r.missing);
        v = "pending";
      } else {
        v = "invalid";
        this.#emit({ kind: "rejected", reason: `proposal for epoch ${body.epoch}: ${r.reason}` });
      }
    }
    this.#validity.set(digest, v);
    return v;
  }

  #count(round: number, phase: Phase, value: string | null | undefined): number {
    const votes = this.#votes.get(`${round}/${phase}`);
    if (!votes) return 0;
    if (value === undefined) return votes.size;
    let c = 0;
    for (const vs of votes.values()) if (vs.includes(value)) c++;
    return c;
  }

  /** Values with at least a quorum of `phase` votes in `round`. */
  #quorumValues(round: number, phase: Phase): (string | null)[] {
    const votes = this.#votes.get(`${round}/${phase}`);
    if (!votes || votes.size < this.#set.quorum) return [];
    const counts = new Map<string | null, number>();
    for (const vs of votes.values()) for (const v of vs) counts.set(v, (counts.get(v) ?? 0) + 1);
    return [...counts].filter(([, c]) => c >= this.#set.quorum).map(([v]) => v);
  }

  #once(key: string): boolean {
    if (this.#fired.has(key)) return false;
    this.#fired.add(key);
    return true;
  }

  #evaluating = false;
  #again = false;

  #evaluate(): void {
    if (this.#stopped) return;
    if (this.#evaluating) {
      this.#again = true;
      return;
    }
    this.#evaluating = true;
    try {
      do {
        this.#again = false;
        this.#rules();
      } while (this.#again && !this.#stopped);
    } finally {
      this.#evaluating = false;
    }
  }

  #rules(): void {
    const q = this.#set.quorum;
    const r = this.#round;
    const prev = this.#prev;

    // Decision: a quorum of precommits for a valid body in any round.
    if (this.#decided === null) {
      for (const key of this.#votes.keys()) {
        if (!key.endsWith("/precommit")) continue;
        const round = Number(key.slice(0, key.indexOf("/")));
        for (const v of this.#quorumValues(round, "precommit")) {
          if (v !== null && this.#bodies.has(v) && this.#validity_(v) === "valid") return this.#decide(v, round);
        }
      }
    }
    this.#maybeCertify();
    if (this.#prev !== prev || this.#step === "idle") return;

    // Round skip: f+1 validators already at round R or later, so at least one honest one is.
    const highest = new Map<number, number>(this.#farAhead);
    for (const [round, senders] of this.#roundSenders) for (const v of senders) highest.set(v, Math.max(highest.get(v) ?? -1, round));
    const rounds = [...highest.values()].sort((a, b) => b - a);
    const reached = rounds[this.#f];
    if (reached !== undefined && reached > r) return this.#startRound(reached);

    const proposal = this.#proposals.get(r);
    if (this.#step === "propose" && proposal) {
      const v = checkpointDigestHex(proposal.checkpoint);
      const vr = proposal.valid_round;
      if (vr === -1) {
        const validity = this.#validity_(v);
        if (validity !== "pending") {
          const ok = validity === "valid" && (this.#lockedRound === -1 || this.#lockedValue === v);
          return this.#vote("prevote", ok ? v : null);
        }
      } else if (vr < r && this.#count(vr, "prevote", v) >= q) {
        const validity = this.#validity_(v);
        if (validity !== "pending") {
          const ok = validity === "valid" && (this.#lockedRound <= vr || this.#lockedValue === v);
          return this.#vote("prevote", ok ? v : null);
        }
      }
    }

    if (this.#step === "prevote" && this.#count(r, "prevote", undefined) >= q && this.#once(`tpv/${r}`)) {
      const round = r;
      this.#after(this.#timeout(r), () => {
        if (!this.#stopped && this.#prev === prev && this.#round === round && this.#step === "prevote") this.#vote("precommit", null);
      });
    }

    if (this.#step === "prevote" || this.#step === "precommit") {
      for (const v of this.#quorumValues(r, "prevote")) {
        if (v === null) {
          if (this.#step === "prevote") return this.#vote("precommit", null);
          continue;
        }
        if (this.#bodies.has(v) && this.#validity_(v) === "valid" && this.#once(`polka/${r}`)) {
          this.#validValue = v;
          this.#validRound = r;
          if (this.#step === "prevote") return this.#vote("precommit", v);
        }
      }
    }

    if (this.#count(r, "precommit", undefined) >= q && this.#once(`tpc/${r}`)) {
      const round = r;
      this.#after(this.#timeout(r), () => {
        if (!this.#stopped && this.#prev === prev && this.#round === round && this.#decided === null) this.#startRound(round + 1);
      });
    }
  }

  #decide(digest: string, round: number): void {
    this.#decided = digest;
    const body = this.#bodies.get(digest)!;
    this.#emit({ kind: "decided", epoch: body.epoch, round, digest, baseEpoch: this.#baseEpoch });
    this.#signAndSend({ v: 1, type: "S", mesh: this.#o.mesh, checkpoint: body, validator: this.#o.index });
    this.#again = true;
  }

  /** A quorum of signatures over one body: aggregate them into the certificate. */
  #maybeCertify(): void {
    for (const [d, sigs] of this.#sigs) {
      if (sigs.size < this.#set.quorum) continue;
      // A short wait for the remaining signatures: validators that all saw every signature
      // build the same certificate, byte for byte. A silent validator costs only the wait.
      if (sigs.size < this.#set.n) {
        const now = this.#o.clock.now();
        let until = this.#graceUntil.get(d);
        if (until === undefined) {
          until = now + this.#o.roundTimeoutMs / 6;
          this.#graceUntil.set(d, until);
          // Not a round timer: the signatures stay a quorum whatever round this validator
          // moves to. As a round timer, a round skip inside the wait cancelled it, and with
          // no message after it the quorum never became a certificate (issue 14).
          const height = this.#prev;
          this.#schedule(until - now, () => {
            if (this.#prev === height) this.#evaluate();
          });
        }
        if (now < until) continue;
      }
      const body = this.#bodies.get(d)!;
      const signers = [...sigs.keys()].sort((a, b) => a - b);
      const cert: FinalityCertificate = {
        v: 1,
        type: "F",
        checkpoint: body,
        signers: signersBitfield(signers, this.#set.n),
        agg_sig: this.#set.aggregate(signers.map((i) => sigs.get(i)!)),
      };
      if (this.#pendingCert && checkpointDigestHex(this.#pendingCert.checkpoint) === d) return;
      this.#finalize(cert);
      return;
    }
  }

  // --- plumbing -----------------------------------------------------------------------

  /**
   * Every timer the engine arms goes through here, so stop() can cancel all of them: a
   * heartbeat or an epoch-close check left armed keeps the daemon's process alive for up to
   * a round timeout after SIGTERM.
   */
  #schedule(ms: number, fn: () => void): () => void {
    if (this.#stopped) return () => {};
    const cancel = this.#o.clock.schedule(ms, () => {
      this.#armed.delete(cancel);
      fn();
    });
    this.#armed.add(cancel);
    return () => {
      this.#armed.delete(cancel);
      cancel();
    };
  }

  #after(ms: number, fn: () => void): void {
    this.#timers.push(this.#schedule(Math.max(0, ms), fn));
  }

  #cancelTimers(): void {
    for (const c of this.#timers) c();
    this.#timers = [];
    this.#activation?.();
    this.#activation = null;
  }

  #emit(e: EngineEvent): void {
    this.#o.onEvent?.(e);
  }
}
