// Quarantine records on the consensus topic: a record from the mesh is checked against the
// genesis validators, stored and honoured; the records this node holds are gossiped once,
// and all of them now and then for nodes that joined later.
import { DSMValidator } from "../node/validator.ts";
import { toHex } from "../encoding/hex.ts";
import { parseQuarantine, quarantineDigest, type QuarantineRecord } from "../protocol/quarantine.ts";
import { type MeshContext, publishJson } from "./context.ts";

export class QuarantineGossip {
  #sent = new Set<string>();
  #ticks = 0;
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly ctx: MeshContext) {}

  /** Every 2 s the records not sent yet; every 15th time (30 s) all of them. */
  start(): void {
    this.#timer = setInterval(() => this.#gossip(this.#ticks++ % 15 === 0), 2000);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** A quarantine record from the mesh: checked against the genesis validators, stored, honoured. */
  receive(value: unknown): void {
    const { node, builder, stats } = this.ctx;
    let record: QuarantineRecord;
    try {
      record = parseQuarantine(value, node.mesh, DSMValidator.validatorsOf(node), "quarantine record", { notAfterMs: Date.now() + node.config.mesh.max_clock_skew_s * 1000 });
    } catch {
      stats.count("quarantine");
      return;
    }
    const digest = toHex(quarantineDigest(record));
    let added: boolean;
    try {
      added = builder.quarantine.add(record);
    } catch (e) {
      stats.storageFailed(`quarantine record not stored: ${(e as Error).message}`);
      return; // not marked as sent: it comes again
    }
    this.#sent.add(digest);
    if (added) {
      this.ctx.log("warn", `quarantine record from validator ${record.validator}: node ${record.node_id.slice(0, 16)}… ${record.action}${record.action === "quarantine" ? ` from seq ${record.from_seq}` : ""} (${record.reason})`);
      this.ctx.engine()?.logChanged();
    }
  }

  /** Gossips the quarantine records this node holds that it has not sent yet, or all of them. */
  #gossip(all: boolean): void {
    for (const r of this.ctx.builder.quarantine.records()) {
      const digest = toHex(quarantineDigest(r));
      if (!all && this.#sent.has(digest)) continue;
      this.#sent.add(digest);
      void publishJson(this.ctx, this.ctx.cpTopic, r);
    }
  }
}
