// Attestation (DESIGN.md section 7): every node answers a validator's challenge with a TPM
// quote over its nonce (without a TPM it says so), and a validator of a mesh whose genesis
// requires attestation challenges each admitted peer, at admission and every
// attestation.interval_epochs. A failed or missing answer makes it sign a quarantine record.
import type { DSMValidator } from "../node/validator.ts";
import type { NodeCard } from "../protocol/card.ts";
import type { QuarantineRecord } from "../protocol/quarantine.ts";
import { TpmIdentityKey } from "../tpm/tpm-key.ts";
import { answerChallenge, newNonce, verifyAttestation } from "../tpm/attestation.ts";
import type { MeshContext } from "./context.ts";

export const ATTEST_PROTOCOL = "/dsm/attest/1";

export class Attestation {
  /** This node challenges its peers: a validator, and the genesis requires attestation. */
  challenging = false;
  passed = 0;
  failed = 0;
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly ctx: MeshContext,
    private readonly validator: DSMValidator | null,
  ) {}

  serve(): Promise<void> {
    return this.ctx.net.serve(ATTEST_PROTOCOL, (req) => this.#answer(req));
  }

  /** Starts challenging, when this node should: admitted peers now, and all of them every interval. */
  start(): void {
    const { node, net } = this.ctx;
    this.challenging = this.validator !== null && node.genesis.attestation.required;
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

  /** A peer just admitted: challenged at once when this node challenges at all. */
  onAdmitted(peerId: string, card: NodeCard): void {
    if (this.challenging) void this.challenge(peerId, card);
  }

  status(): { challenging: boolean; passed: number; failed: number } {
    return { challenging: this.challenging, passed: this.passed, failed: this.failed };
  }

  /** The answer to a validator's challenge: a quote of the asked PCRs over its nonce. */
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

  /**
   * Challenges a peer: a fresh nonce, a quote of the genesis PCRs back, checked against the
   * genesis. A failed or missing answer makes this validator sign a quarantine record, which
   * gossip carries to every node.
   */
  async challenge(peerId: string, card: NodeCard): Promise<void> {
    const { node, net, builder, stats } = this.ctx;
    if (!this.validator || this.ctx.stopping()) return;
    if (builder.quarantine.quarantinedFrom(card.node_id) !== undefined) return; // already held back
    const nonce = newNonce();
    const timeoutMs = node.config.attestation.timeout_s * 1000;
    let answer: unknown;
    let missed = false;
    try {
      answer = await net.request(peerId, ATTEST_PROTOCOL, { nonce, pcrs: node.genesis.attestation.pcrs }, timeoutMs, 64 * 1024);
    } catch (e) {
      missed = true;
      answer = { error: (e as Error).message };
    }
    if (this.ctx.stopping()) return;
    const error = (answer as { error?: unknown })?.error;
    const r = typeof error === "string" ? { ok: false as const, check: "no_answer", reason: error } : verifyAttestation(answer, node.genesis, nonce);
    if (r.ok) {
      this.passed++;
      return;
    }
    this.failed++;
    let record: QuarantineRecord;
    try {
      record = this.validator.quarantine(card.node_id, {
        action: "quarantine",
        reason: missed ? "attestation_missed" : "attestation_failed",
        detail: `${r.check}: ${r.reason}`,
      });
    } catch (e) {
      // Not stored, so not sent: the next challenge (attestation.interval_epochs) tries again.
      stats.storageFailed(`attestation of node ${card.node_id.slice(0, 16)}… failed (${r.check}), but its quarantine record could not be stored: ${(e as Error).message}`);
      return;
    }
    this.ctx.log("warn", `attestation of node ${card.node_id.slice(0, 16)}… failed (${r.check}): quarantined from seq ${record.from_seq}`, { node_id: card.node_id, check: r.check, from_seq: record.from_seq });
    this.ctx.engine()?.logChanged();
  }
}
