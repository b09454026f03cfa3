// /dsm/finality/1 and the certificates a node keeps. Every node asks for the certificates
// after its newest one (catch-up), so one that was down, or missed a certificate, needs
// nothing else. A validator's engine checks and applies them; an edge checks the quorum
// against the genesis and keeps them itself, with the leaf ids they commit to, so it can
// prove its own events (dsm proof inclusion works on the edge itself).
import { CheckpointConflict } from "../log/builder.ts";
import { betterCertificate, BundleError, type FinalityCertificate, parseFinalityCertificate, verifyParsedFinality } from "../protocol/certificate.ts";
import { checkpointDigestHex } from "../protocol/checkpoint.ts";
import { toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { type MeshContext, peersToAsk, publishJson } from "./context.ts";
import type { Leaves } from "./leaves.ts";

export const FINALITY_PROTOCOL = "/dsm/finality/1";

export class Finality {
  #timer: ReturnType<typeof setInterval> | null = null;
  #keeping: Promise<void> = Promise.resolve();
  #queued = new Set<string>();
  /** A certificate of a body being stored, to offer #improve once it is (the best one seen). */
  #later = new Map<string, FinalityCertificate>();
  #contradicted = new Set<string>();

  constructor(
    private readonly ctx: MeshContext,
    private readonly leaves: Leaves,
  ) {}

  serve(): Promise<void> {
    return this.ctx.net.serve(FINALITY_PROTOCOL, (req) => this.#answer(req), 4096);
  }

  /** Catch-up every 2 s: an answer with nothing newer costs a few bytes. */
  startCatchUp(): void {
    this.#timer = setInterval(() => void this.catchUp(), 2000);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** Answers /dsm/finality/1: certificates after an epoch, oldest first, a bounded number. */
  #answer(req: unknown): unknown {
    const after = (req as { after?: unknown }).after;
    if (typeof after !== "number" || !Number.isSafeInteger(after) || after < -1) return { error: "after must be an epoch (or -1)" };
    return { certificates: this.ctx.builder.since(after, 64) };
  }

  /** Certificates after ours, with /dsm/finality/1, from a validator that has them. */
  async catchUp(): Promise<void> {
    const after = this.ctx.builder.latest()?.checkpoint.epoch ?? -1;
    for (const peer of peersToAsk(this.ctx, true).slice(0, 2)) {
      try {
        const answer = (await this.ctx.net.request(peer, FINALITY_PROTOCOL, { after }, 10_000, 4 << 20)) as { certificates?: unknown };
        if (Array.isArray(answer.certificates)) for (const c of answer.certificates) this.onCertificate(c);
        if (Array.isArray(answer.certificates) && answer.certificates.length > 0) return;
      } catch {
        // the next peer
      }
    }
  }

  /**
   * A finality certificate: a validator's engine checks and applies it; an edge checks the
   * quorum against the validators in force at its epoch and keeps it, in order, with the leaf ids it commits to.
   */
  onCertificate(value: unknown): void {
    const { builder } = this.ctx;
    // Another certificate for a body finalized here: kept if it is the better one, so that
    // every node converges on one certificate per epoch (validators and edges alike).
    const epoch = (value as { checkpoint?: { epoch?: unknown } })?.checkpoint?.epoch;
    const latest = builder.latest();
    if (typeof epoch === "number" && latest && epoch <= latest.checkpoint.epoch) return this.#improve(value);
    const engine = this.ctx.engine();
    if (engine) return engine.receive(value);
    let cert: FinalityCertificate;
    try {
      cert = this.#verify(value);
    } catch {
      this.ctx.stats.count("certificate");
      return;
    }
    const digest = checkpointDigestHex(cert.checkpoint);
    if (this.#contradicted.has(digest)) return;
    // Each body once in the queue. Another certificate of a body being stored is kept for
    // after it: validators pass a better one on only once, and catch-up asks only for later
    // epochs, so dropping it would leave this node with the worse one for good.
    if (this.#queued.has(digest)) {
      const held = this.#later.get(digest);
      if (!held || betterCertificate(cert, held)) this.#later.set(digest, cert);
      return;
    }
    this.#queued.add(digest);
    // One at a time, oldest first: a catch-up answer's certificates each follow the one before.
    this.#keeping = this.#keeping
      .then(() => this.#keep(cert, digest))
      .catch((e) => this.ctx.log("warn", `certificate: ${(e as Error).message}`))
      .finally(() => {
        this.#queued.delete(digest);
        const later = this.#later.get(digest);
        this.#later.delete(digest);
        if (later) this.#improve(later);
      });
  }

  /** A certificate for an epoch already final here: checked, and kept when better; then passed on. */
  #improve(value: unknown): void {
    const { builder } = this.ctx;
    const stored = builder.byEpoch((value as FinalityCertificate).checkpoint.epoch);
    if (!stored || canonicalize(stored) === canonicalize(value)) return; // the same one: nothing to do
    try {
      this.#verify(value);
    } catch {
      this.ctx.stats.count("certificate");
      return;
    }
    let improved = false;
    try {
      improved = builder.improveCertificate(value as FinalityCertificate);
    } catch (e) {
      this.ctx.stats.storageFailed(`a better certificate of epoch ${stored.checkpoint.epoch} could not be stored: ${(e as Error).message}`);
      return;
    }
    // Passed on once, when it replaced ours: a node still holding a worse one learns of it.
    if (improved) void publishJson(this.ctx, this.ctx.cpTopic, value);
  }

  /**
   * A certificate of this mesh with a quorum of the validators in force at its epoch (the
   * genesis's, changed by the set changes this ledger holds, docs/PROTOCOL.md
   * "Validator-set changes"). Throws BundleError.
   */
  #verify(value: unknown): FinalityCertificate {
    const { node, builder } = this.ctx;
    const cert = parseFinalityCertificate(value, "certificate");
    const set = builder.setAt(cert.checkpoint.epoch);
    const { signed } = verifyParsedFinality(cert, node.mesh, set, "certificate");
    const threshold = Math.min(node.config.consensus.quorum_threshold, set.n);
    if (signed < threshold) throw new BundleError(`certificate: fewer signers than quorum_threshold ${threshold}`);
    return cert;
  }

  async #keep(cert: FinalityCertificate, digest: string): Promise<void> {
    const { builder } = this.ctx;
    // Not the next one: the next catch-up brings those between.
    if (this.ctx.stopping() || builder.successorProblem(cert.checkpoint) !== null) return;
    const root = cert.checkpoint.root;
    const fits = (ids: Uint8Array[]) => toHex(builder.tree.rootAfter(ids).root) === root;
    const ids = await this.leaves.fetch(builder.tree.size(), cert.checkpoint.tree_size, fits);
    if (ids === null || this.ctx.stopping()) return; // no peer has them yet: the next catch-up retries
    try {
      builder.commitLeaves(cert, ids);
    } catch (e) {
      // The leaves recompute the root a quorum signed, yet this ledger disagrees (its own
      // chain differs from what the mesh finalized): loud, once, and no more downloads.
      if (e instanceof CheckpointConflict) this.#contradicted.add(digest);
      this.ctx.stats.count("certificate");
      this.ctx.log("error", `certificate of epoch ${cert.checkpoint.epoch} NOT KEPT: ${(e as Error).message}`, { epoch: cert.checkpoint.epoch });
      return;
    }
    this.ctx.stats.noteFinalized(cert);
    if (cert.checkpoint.set_change) this.ctx.setChanged();
  }
}
