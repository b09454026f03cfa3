// dsm/<mesh[0:16]>/cp/1 and, on a validator, the consensus engine that speaks on it. The
// topic carries the engine's P, V, S, E and F messages, certificate requests and quarantine
// records: each message goes to the service it is for, and what the engine reports becomes
// a log line or a count.
import type { ConsensusEngine, EngineEvent } from "../consensus/engine.ts";
import type { DSMValidator } from "../node/validator.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { DEC, type MeshContext, publishJson } from "./context.ts";
import { parseJson } from "../encoding/json.ts";
import type { Verdict } from "./p2p.ts";

/** Where the topic's messages that are not the engine's go, and what the engine asks of the mesh. */
export interface ConsensusRoutes {
  quarantine(value: unknown): void;
  certificate(value: unknown): void;
  catchUp(): Promise<void>;
  want(nodeId: string, fromSeq: number): Promise<void>;
}

export class ConsensusGossip {
  engine: ConsensusEngine | null = null;

  constructor(
    private readonly ctx: MeshContext,
    private readonly routes: ConsensusRoutes,
  ) {}

  subscribe(): void {
    this.ctx.net.subscribe(this.ctx.cpTopic, (data) => this.#check(data), (data) => this.#receive(data));
  }

  /** Runs the validator's engine over the topic. */
  startEngine(validator: DSMValidator): void {
    this.engine = validator.engine({
      transport: {
        broadcast: (m) => void publishJson(this.ctx, this.ctx.cpTopic, m),
        requestCertificates: () => void this.routes.catchUp(),
        fetchMicroblocks: (ranges) => {
          for (const [nodeId, [from]] of Object.entries(ranges)) void this.routes.want(nodeId, from);
        },
      },
      onEvent: (e) => this.#onEngineEvent(e),
    });
    this.engine.start();
  }

  #check(data: Uint8Array): Verdict {
    this.ctx.stats.bytesIn += data.length;
    try {
      const v = parseJson(DEC.decode(data), "gossip") as { type?: unknown } | null;
      return typeof v === "object" && v !== null && typeof v.type === "string" ? "accept" : this.ctx.stats.reject("malformed");
    } catch {
      return this.ctx.stats.reject("malformed");
    }
  }

  #receive(data: Uint8Array): void {
    const v = JSON.parse(DEC.decode(data)) as { type: string; after?: unknown };
    if (v.type === "Q" || v.type === "R") return this.routes.quarantine(v);
    if (v.type === "F") return this.routes.certificate(v);
    this.engine?.receive(v);
  }

  #onEngineEvent(e: EngineEvent): void {
    const { log, stats } = this.ctx;
    switch (e.kind) {
      case "finalized": {
        const c: FinalityCertificate = e.certificate;
        stats.noteFinalized(c);
        if (c.checkpoint.set_change) this.ctx.setChanged();
        log("info", `epoch ${c.checkpoint.epoch} finalized: tree_size ${c.checkpoint.tree_size}, signers ${c.signers}, round ${e.round}`, { epoch: c.checkpoint.epoch, tree_size: c.checkpoint.tree_size, signers: c.signers, round: e.round });
        return;
      }
      case "evidence":
        log("error", `EQUIVOCATION by validator ${e.validator}: evidence stored and broadcast`, { validator: e.validator });
        return;
      case "conflict":
      case "refused":
        log("warn", `${e.kind}: ${e.reason}`);
        return;
      case "store-failed":
        stats.storageFailed(`consensus: ${e.reason}; this validator takes part again once it can write`);
        return;
      case "rejected":
        stats.count("consensus");
        return;
      default:
        return;
    }
  }
}
