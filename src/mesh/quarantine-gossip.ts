// Quarantine requests on the consensus topic: a request from the mesh is checked against the
// genesis validators and stored, for a checkpoint to decide; the records this node holds are gossiped once,
// and all of them now and then for nodes that joined later.
import { DSMValidator } from "../node/validator.ts";
import { toHex } from "../encoding/hex.ts";
import { parseQuarantine, quarantineDigest, type QuarantineRecord } from "../protocol/quarantine.ts";
import { parseSetChangeRequest, setChangeDigest, type SetChangeRequest } from "../protocol/set-change.ts";
import { RateWindow } from "../runtime/rate.ts";
import { type MeshContext, publishJson } from "./context.ts";

/** New records a validator may add here per minute: an honest one signs a few a day. */
export const QUARANTINE_RECORDS_PER_MINUTE = 10;
/** Records this node keeps per validator: a byzantine one cannot fill the disk with them. */
export const QUARANTINE_RECORDS_PER_VALIDATOR = 1024;

export class QuarantineGossip {
  #sent = new Set<string>();
  #ticks = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  /** A peer joined since the last full round: it lacks what the others already have. */
  #newPeer = true;
  readonly #rate = new RateWindow(60_000);

  constructor(private readonly ctx: MeshContext) {}

  /**
   * Every 2 s the records not sent yet; all of them when a peer was admitted since (it lacks
   * them), throttled to once in 10 s, and otherwise only every 5 minutes, for what gossip lost.
   */
  start(): void {
    this.#timer = setInterval(() => {
      const tick = this.#ticks++;
      const all = (this.#newPeer && tick % 5 === 0) || tick % 150 === 0;
      if (all) this.#newPeer = false;
      this.#gossip(all);
    }, 2000);
  }

  /** A peer was admitted: the next full round sends it every record. */
  onPeer(): void {
    this.#newPeer = true;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /**
   * A quarantine request (Q) or a validator-set change request (R) from the mesh: checked
   * against the validators in force and stored; a proposal may now carry a decision.
   */
  receive(value: unknown): void {
    if ((value as { type?: unknown })?.type === "R") return this.#receiveSetRequest(value);
    const { node, builder, stats } = this.ctx;
    let record: QuarantineRecord;
    try {
      record = parseQuarantine(value, node.mesh, DSMValidator.validatorsOf(node, builder), "quarantine record", { maxEpoch: DSMValidator.maxRequestEpoch(node) });
    } catch {
      stats.count("quarantine");
      return;
    }
    const digest = toHex(quarantineDigest(record));
    // Bounded: a validator's new records by rate and in all; one already held costs nothing.
    if (!builder.quarantine.has(record)) {
      if (builder.quarantine.countOf(record.validator) >= QUARANTINE_RECORDS_PER_VALIDATOR || !this.#rate.take(String(record.validator), QUARANTINE_RECORDS_PER_MINUTE)) {
        stats.count("quarantine_limit");
        return;
      }
    }
    let added: boolean;
    try {
      added = builder.quarantine.add(record);
    } catch (e) {
      stats.storageFailed(`quarantine record not stored: ${(e as Error).message}`);
      return; // not marked as sent: it comes again
    }
    this.#sent.add(digest);
    if (added) {
      this.ctx.log("info", `quarantine request from validator ${record.validator}: ${record.action} node ${record.node_id.slice(0, 16)}… (${record.reason}; a checkpoint decides once enough validators asked)`);
      this.ctx.engine()?.logChanged();
    }
  }

  /**
   * Gossips the pending requests this node holds that it has not sent yet, or all of them.
   * Requests a decision made stale are never sent again: no peer can use them.
   */
  #gossip(all: boolean): void {
    const out: [string, unknown][] = [
      ...this.ctx.builder.quarantine.pending().map((r) => [toHex(quarantineDigest(r)), r] as [string, unknown]),
      ...this.ctx.builder.sets.pending().map((r) => [toHex(setChangeDigest(r)), r] as [string, unknown]),
    ];
    for (const [digest, r] of out) {
      if (!all && this.#sent.has(digest)) continue;
      this.#sent.add(digest);
      void publishJson(this.ctx, this.ctx.cpTopic, r);
    }
  }

  /** A set-change request: bounded like quarantine requests, by the same per-validator window. */
  #receiveSetRequest(value: unknown): void {
    const { node, builder, stats } = this.ctx;
    let r: SetChangeRequest;
    try {
      r = parseSetChangeRequest(value, node.mesh, DSMValidator.validatorsOf(node, builder), { maxEpoch: DSMValidator.maxRequestEpoch(node) });
    } catch {
      stats.count("set_request");
      return;
    }
    const store = builder.sets;
    if (!store.has(r)) {
      if (store.countOf(r.validator) >= QUARANTINE_RECORDS_PER_VALIDATOR || !this.#rate.take(`R${r.validator}`, QUARANTINE_RECORDS_PER_MINUTE)) {
        stats.count("quarantine_limit");
        return;
      }
    }
    let added: boolean;
    try {
      added = store.add(r);
    } catch (e) {
      stats.storageFailed(`set-change request not stored: ${(e as Error).message}`);
      return;
    }
    this.#sent.add(toHex(setChangeDigest(r)));
    if (added) {
      const c = r.change;
      this.ctx.log("info", `validator-set request from validator ${r.validator}: ${c.action} ${(c.action === "remove" ? c.node_id : c.card.node_id).slice(0, 16)}… (a checkpoint decides once a quorum asked)`);
      this.ctx.engine()?.logChanged();
    }
  }
}
