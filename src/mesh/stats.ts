// The daemon's counters, in one place every service writes to and status() reads: what was
// gossiped and stored, what was refused and why, the bytes of gossip, and the newest
// certificate with how long after its epoch it came.
import type { FinalityCertificate } from "../protocol/certificate.ts";
import type { Genesis } from "../protocol/genesis.ts";
import { epochBounds } from "../protocol/checkpoint.ts";
import type { DaemonLog } from "./daemon-log.ts";
import type { Verdict } from "./p2p.ts";

export class MeshStats {
  /** Microblocks of this node's chain gossiped. */
  published = 0;
  /** Microblocks of other nodes validated and stored. */
  received = 0;
  /** Things refused or failed, by reason. */
  readonly rejected: Record<string, number> = {};
  bytesIn = 0;
  /** Bytes handed to peers: a message's size times the peers it went to. */
  bytesOut = 0;
  lastFinalized: number | null = null;
  lastCert: FinalityCertificate | null = null;
  /** From the end of the last finalized epoch to its certificate here. */
  finalityLatency: number | null = null;
  #storageLoggedAt = 0;
  /** Told of each certificate this node comes to hold (the intel service recomputes decisions). */
  readonly onFinalized: ((cert: FinalityCertificate) => void)[] = [];

  constructor(
    private readonly genesis: Genesis,
    private readonly log: DaemonLog,
  ) {}

  /** Counts something refused or failed, by reason (status and /metrics show them). */
  count(reason: string): void {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
  }

  reject(reason: string): Verdict {
    this.count(reason);
    return "reject";
  }

  /** A write this node could not make (disk full, say): counted, and logged at most every 10 s. */
  storageFailed(message: string): void {
    this.count("storage");
    if (Date.now() - this.#storageLoggedAt < 10_000) return;
    this.#storageLoggedAt = Date.now();
    this.log("error", message);
  }

  /** Answers the bouncer API gave (startup or incremental). */
  bouncerPulls = 0;

  notePull(_bouncer: string, _startup: boolean, _count: number): void {
    this.bouncerPulls++;
  }

  /** The certificate held at start, without a latency: it did not come while this daemon ran. */
  startFrom(cert: FinalityCertificate | null): void {
    this.lastCert = cert;
    this.lastFinalized = cert?.checkpoint.epoch ?? null;
  }

  /** The newest certificate this node holds, and how long after its epoch's end it came. */
  noteFinalized(cert: FinalityCertificate): void {
    this.lastCert = cert;
    this.lastFinalized = cert.checkpoint.epoch;
    this.finalityLatency = Date.now() - epochBounds(this.genesis, cert.checkpoint.epoch).endMs;
    for (const f of this.onFinalized) f(cert);
  }
}
