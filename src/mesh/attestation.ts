// Attestation (DESIGN.md section 7) over the mesh. Every TPM node answers two protocols:
// /dsm/enroll/1 (credential activation: its AK is in the TPM of its EK) and /dsm/attest/1
// (a quote bound to itself and the validator's nonce). A validator of a mesh whose genesis
// requires attestation enrolls each admitted TPM peer, validators included, then challenges
// it at admission and every attestation.interval_epochs, checking each answer against the
// AK it enrolled, never against what the answer says. A failed or missing answer makes it
// sign a quarantine record.
import type { EnrollmentStore } from "../ledger/enrollment-store.ts";
import type { DSMValidator } from "../node/validator.ts";
import type { NodeCard } from "../protocol/card.ts";
import { parseEnrollAnswer, parseEnrollChallenge } from "../protocol/enrollment.ts";
import { mustAttest } from "../protocol/genesis.ts";
import type { QuarantineRecord } from "../protocol/quarantine.ts";
import { answerChallenge, newNonce, verifyAttestation } from "../tpm/attestation.ts";
import { answerEnrollment, EnrollError, finishEnrollment, makeEnrollChallenge } from "../tpm/enroll.ts";
import { TpmIdentityKey } from "../tpm/tpm-key.ts";
import { RateWindow } from "../runtime/rate.ts";
import type { MeshContext } from "./context.ts";

export const ATTEST_PROTOCOL = "/dsm/attest/1";
export const ENROLL_PROTOCOL = "/dsm/enroll/1";
/**
 * A validator enrolls a node once and challenges it at most once an epoch (every
 * attestation.interval_epochs >= 1): four a minute or four an epoch, whichever is more,
 * leaves room for reconnects and a re-enrollment.
 */
export function tpmRequestsPerMinute(epochSeconds: number): number {
  return Math.max(30, Math.ceil((4 * 60) / epochSeconds));
}

export interface AttestationStatus {
  challenging: boolean;
  passed: number;
  failed: number;
  /** Failures by the check that failed (enrollment and quotes alike). */
  failures: Record<string, number>;
}

export class Attestation {
  /** This node challenges its peers: a validator, and the genesis requires attestation. */
  challenging = false;
  passed = 0;
  failed = 0;
  readonly failures: Record<string, number> = {};
  #timer: ReturnType<typeof setInterval> | null = null;
  /** One enrollment or challenge at a time per node: a reconnect storm must not stack them. */
  readonly #busy = new Set<string>();
  /** The node side: the TPM work each validator asked for in the last minute. */
  readonly #asked = new RateWindow(60_000);

  constructor(
    private readonly ctx: MeshContext,
    /** This node as a validator of the set in force, or null; the daemon replaces it when the set changes. */
    public validator: DSMValidator | null,
    private readonly enrollments: EnrollmentStore,
    /** Fetches a node's microblocks from a seq (/dsm/sync/1): those refused before its enrollment. */
    private readonly want: (nodeId: string, fromSeq: number) => Promise<void>,
  ) {}

  async serve(): Promise<void> {
    await this.ctx.net.serve(ATTEST_PROTOCOL, (req, peerId) => this.#tpmTurn(peerId, () => this.#answer(req)), 4 * 1024);
    await this.ctx.net.serve(ENROLL_PROTOCOL, (req, peerId) => this.#tpmTurn(peerId, () => this.#answerEnroll(req, peerId)), 16 * 1024);
  }

  /**
   * A TPM is slow and shared (tens of ms per command on a real chip), so a peer must not
   * be able to keep it busy: only the mesh's validators ask (they are the ones who enroll
   * and challenge), at most TPM_REQUESTS_PER_MINUTE each. (The TPM calls are synchronous,
   * so requests never overlap.)
   */
  #tpmTurn(peerId: string, answer: () => unknown): unknown {
    const validator = this.ctx.node.genesis.validators.some((c) => c.peer_id === peerId);
    if (!validator) return { error: "only the mesh's validators enroll and challenge this node" };
    const cap = tpmRequestsPerMinute(this.ctx.node.genesis.epoch_duration);
    if (!this.#asked.take(peerId, cap)) return { error: `more than ${cap} TPM requests a minute: try later` };
    return answer();
  }

  /** Starts challenging, when this node should: admitted peers now, and all of them every interval. */
  start(): void {
    const { node, net } = this.ctx;
    this.challenging = this.validator !== null && node.genesis.attestation.required;
    // Peers admitted before this point missed onAdmitted's challenge.
    if (this.challenging) for (const [peerId, card] of net.cards) void this.challenge(peerId, card as NodeCard);
    const every = node.config.attestation.interval_epochs;
    if (this.challenging && every > 0) {
      this.#timer = setInterval(() => {
        for (const [peerId, card] of net.cards) void this.challenge(peerId, card as NodeCard);
      }, every * node.genesis.epoch_duration * 1000);
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** A peer just admitted: enrolled and challenged at once when this node challenges at all. */
  onAdmitted(peerId: string, card: NodeCard): void {
    if (this.challenging) void this.challenge(peerId, card);
  }

  status(): AttestationStatus {
    return { challenging: this.challenging, passed: this.passed, failed: this.failed, failures: { ...this.failures } };
  }

  #answer(req: unknown): unknown {
    const node = this.ctx.node;
    const r = req as { nonce?: unknown; pcrs?: unknown };
    if (typeof r.nonce !== "string" || !/^[0-9a-f]{64}$/.test(r.nonce)) return { error: "nonce must be 32 bytes of hex" };
    if (!Array.isArray(r.pcrs) || r.pcrs.length === 0 || r.pcrs.length > 24 || !r.pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23)) return { error: "pcrs must list PCR indices 0-23" };
    if (!(node.identity instanceof TpmIdentityKey)) return { error: "this node has no TPM (software identity key)" };
    try {
      return answerChallenge(node.identity, node.card(), node.mesh, r.nonce, r.pcrs as number[]);
    } catch (e) {
      return { error: `TPM: ${(e as Error).message}` };
    }
  }

  #answerEnroll(req: unknown, peerId: string): unknown {
    const node = this.ctx.node;
    if (!(node.identity instanceof TpmIdentityKey)) return { error: "this node has no TPM (software identity key)" };
    try {
      const c = parseEnrollChallenge(req);
      // The answer names the verifier: it must be the validator asking, not one it relays for.
      const asker = node.genesis.validators.find((v) => v.peer_id === peerId);
      if (!asker || asker.node_id !== c.verifier) return { error: "the challenge names another verifier than the validator asking" };
      return answerEnrollment(node.identity, node.card(), node.mesh, c);
    } catch (e) {
      return { error: (e as Error).message };
    }
  }

  #count(check: string): void {
    this.failed++;
    this.failures[check] = (this.failures[check] ?? 0) + 1;
  }

  /**
   * Enrolls a peer by credential activation (unless its current AK is enrolled already).
   * The enrollment or the reason it failed: a node that must attest and fails is refused.
   */
  async enroll(peerId: string, card: NodeCard): Promise<{ ok: true } | { ok: false; check: string; reason: string }> {
    const { node, net } = this.ctx;
    const have = this.enrollments.get(card.node_id);
    const akNow = card.tpm_evidence?.ak_public;
    if (have && akNow && have.ak_public === akNow) return { ok: true };
    // A TPM derives the same AK every time: a card with another one is a new claim, and the
    // old enrollment must not stand for it while the new one is pending (or never answered).
    if (have) this.enrollments.drop(card.node_id);
    let pending;
    try {
      pending = makeEnrollChallenge(card, node.genesis, node.mesh, node.nodeId, Date.now());
    } catch (e) {
      return { ok: false, check: e instanceof EnrollError ? e.check : "enroll", reason: (e as Error).message };
    }
    let answer: unknown;
    try {
      answer = await net.request(peerId, ENROLL_PROTOCOL, pending.challenge, node.config.attestation.timeout_s * 1000, 16 * 1024);
    } catch (e) {
      return { ok: false, check: "enroll_no_answer", reason: (e as Error).message };
    }
    const error = (answer as { error?: unknown })?.error;
    // The node says why it did not answer (busy, rate, a TPM error): asked again next interval.
    if (typeof error === "string") return { ok: false, check: "enroll_no_answer", reason: `the node did not answer the enrollment: ${error}` };
    try {
      const superseded = this.enrollments.put(finishEnrollment(pending, parseEnrollAnswer(answer), Date.now()));
      for (const other of superseded) this.ctx.log("warn", `node ${card.node_id.slice(0, 16)}… enrolled with the EK of node ${other.slice(0, 16)}…: one TPM is one enrolled node, so ${other.slice(0, 16)}… is no longer enrolled`, { node_id: card.node_id, superseded: other });
    } catch (e) {
      return { ok: false, check: e instanceof EnrollError ? e.check : "enroll", reason: (e as Error).message };
    }
    this.ctx.log("info", `node ${card.node_id.slice(0, 16)}… enrolled: its AK is in the TPM of its EK (${pending.ek.method === "certificate" ? `certificate from ${pending.ek.issuer}` : "EK allowlist"})`, { node_id: card.node_id });
    // Microblocks it gossiped before now were refused (not_attested), and it will not offer
    // them again: fetch them.
    const head = node.ledger.head(node.mesh, card.node_id);
    void this.want(card.node_id, (head?.seq ?? 0) + 1).catch(() => {});
    return { ok: true };
  }

  /**
   * Challenges a peer: enrolled first when it is not, then a fresh nonce, a bound quote
   * back, checked against the enrolled AK and the genesis. A failure makes this validator
   * sign a quarantine request, which gossip carries to every node; it counts once f + 1
   * validators observed a failure.
   */
  async challenge(peerId: string, card: NodeCard): Promise<void> {
    const { node, net, builder, stats } = this.ctx;
    if (!this.validator || this.ctx.stopping() || this.#busy.has(card.node_id)) return;
    if (builder.quarantine.quarantinedFrom(card.node_id) !== undefined) return; // already held back
    this.#busy.add(card.node_id);
    try {
      const must = mustAttest(node.genesis, card.node_id);
      if (!card.tpm && !must) return; // a software node the mesh does not ask to attest
      const e = await this.enroll(peerId, card);
      if (this.ctx.stopping()) return;
      if (!e.ok) {
        // No answer may be the network: the next interval tries again, and until then the
        // node's microblocks stay out (not_attested). Any other failure is a verdict: the
        // card's AK is not enrolled, so an older enrollment of the node no longer counts.
        const verdict = e.check !== "enroll_no_answer";
        if (verdict) this.enrollments.drop(card.node_id);
        // A TPM node the mesh does not ask to attest stays a software node: not a failure.
        if (!must) {
          this.ctx.log("debug", `node ${card.node_id.slice(0, 16)}… not enrolled (${e.check}): ${e.reason}`, { node_id: card.node_id, check: e.check });
          return;
        }
        this.#count(e.check);
        this.ctx.log("warn", `enrollment of node ${card.node_id.slice(0, 16)}… failed (${e.check}): ${e.reason}`, { node_id: card.node_id, check: e.check });
        // Where its role must attest, a node whose evidence or activation failed is not admitted.
        if (verdict) await net.refuse(peerId, `no verified enrollment (${e.check}): ${e.reason}`);
        return;
      }
      const nonce = newNonce();
      let answer: unknown;
      let missed = false;
      try {
        answer = await net.request(peerId, ATTEST_PROTOCOL, { nonce, pcrs: node.genesis.attestation.pcrs }, node.config.attestation.timeout_s * 1000, 64 * 1024);
      } catch (err) {
        missed = true;
        answer = { error: (err as Error).message };
      }
      if (this.ctx.stopping()) return;
      const error = (answer as { error?: unknown })?.error;
      // A node that says why it cannot quote has not attested: a missed attestation.
      if (typeof error === "string") missed = true;
      const enrollment = this.enrollments.get(card.node_id);
      const r = typeof error === "string" ? { ok: false as const, check: "no_answer", reason: error } : verifyAttestation(answer, node.genesis, { nodeId: card.node_id, enrollment, nonce });
      if (r.ok) {
        this.passed++;
        this.enrollments.quoted(card.node_id, Date.now(), r.pcrDigest, "passed");
        return;
      }
      this.enrollments.quoted(card.node_id, Date.now(), null, `failed: ${r.check}`);
      // Only a node the genesis makes attest answers for its quotes; another TPM node's
      // result is shown (dsm status, dsm peers), never held against it.
      if (!must) return;
      this.#count(r.check);
      this.#quarantine(card, missed, `${r.check}: ${r.reason}`, r.check, stats);
    } finally {
      this.#busy.delete(card.node_id);
    }
  }

  #quarantine(card: NodeCard, missed: boolean, detail: string, check: string, stats: MeshContext["stats"]): void {
    const v = this.validator!;
    // One observation per validator until a checkpoint decides: another one would only pile up.
    if (this.ctx.builder.quarantine.pending(card.node_id).some((r) => r.validator === v.index && r.action === "quarantine")) return;
    let record: QuarantineRecord;
    try {
      record = v.quarantine(card.node_id, { action: "quarantine", reason: missed ? "attestation_missed" : "attestation_failed", detail });
    } catch (e) {
      // Not stored, so not sent: the next challenge (attestation.interval_epochs) tries again.
      stats.storageFailed(`attestation of node ${card.node_id.slice(0, 16)}… failed (${check}), but its quarantine record could not be stored: ${(e as Error).message}`);
      return;
    }
    // An observation, not a verdict: the node is quarantined once f + 1 validators observed
    // a failure and a checkpoint finalizes the decision.
    this.ctx.log("warn", `attestation of node ${card.node_id.slice(0, 16)}… failed (${check}): quarantine requested (epoch ${record.epoch})`, { node_id: card.node_id, check, epoch: record.epoch });
    this.ctx.engine()?.logChanged();
  }
}
