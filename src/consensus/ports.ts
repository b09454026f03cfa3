// What the consensus engine needs from the world, as interfaces: a clock, a transport, the
// validator's checkpoint log and a durable store for what it signed. The daemon plugs in
// libp2p, the ledger and SQLite; tests plug in a simulated network and a fake clock.
import type { FinalityCertificate } from "../protocol/certificate.ts";
import type { CheckpointBody } from "../protocol/checkpoint.ts";
import type { Evidence, Signed } from "../protocol/consensus-messages.ts";
import type { SignedStore } from "../ledger/signed-store.ts";
import type { CheckResult } from "../log/builder.ts";

export interface Clock {
  now(): number;
  /** Runs fn after ms; returns a function that cancels it. */
  schedule(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  schedule(ms, fn) {
    // setTimeout fires at once beyond 2^31 - 1 ms; a far-off time is re-armed instead.
    const MAX = 2 ** 31 - 1;
    if (ms > MAX) {
      let cancel = systemClock.schedule(MAX, () => {
        cancel = systemClock.schedule(ms - MAX, fn);
      });
      return () => cancel();
    }
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
};

export type ConsensusMessage = Signed | Evidence | FinalityCertificate;

export interface ConsensusTransport {
  /** To every validator; certificates and evidence to every node. Best effort. */
  broadcast(msg: ConsensusMessage): void;
  /** Catch-up (/dsm/finality/1): certificates of epochs after `afterEpoch`, handed back through receive(). */
  requestCertificates(afterEpoch: number): void;
  /** Gap fill (/dsm/sync/1): once stored, the caller says so with logChanged(). */
  fetchMicroblocks(ranges: Record<string, [number, number]>): void;
}

/** What a validator finds when it recomputes a proposed body; declared beside the checkpoint builder. */
export type { CheckResult } from "../log/builder.ts";

/** The validator's view of the mesh log. */
export interface CheckpointSource {
  /** The newest finalized certificate this validator holds, or null before the first. */
  latest(): FinalityCertificate | null;
  /** A body for `epoch` over what this validator has verified, after latest(); null when nothing is new. */
  propose(epoch: number): CheckpointBody | null;
  /** Recomputes the body's ranges, tree_size and root from this validator's own microblocks. */
  check(body: CheckpointBody): CheckResult;
  /** Stores a finalized certificate whose body check() accepted; appends its leaves to the log. */
  commit(cert: FinalityCertificate): void;
}

/** Durable record of every message this validator signed; declared beside its ledger implementation. */
export type { SignedStore } from "../ledger/signed-store.ts";

/** In memory: for tests, simulations and benchmarks; a restart keeps the object. */
export class MemorySignedStore implements SignedStore {
  readonly #slots = new Map<string, Signed>();
  readonly evidence = new Map<string, Evidence>();

  claim(slots: readonly string[], msg: Signed): Signed {
    for (const s of slots) {
      const held = this.#slots.get(s);
      if (held) return held;
    }
    for (const s of slots) this.#slots.set(s, msg);
    return msg;
  }

  ofHeight(prev: string): Signed[] {
    const out = new Set<Signed>();
    for (const [slot, m] of this.#slots) if (slot.startsWith(`P/${prev}/`) || slot.startsWith(`V/${prev}/`) || slot.startsWith(`L/${prev}/`) || slot === `S@${prev}`) out.add(m);
    return [...out];
  }

  addEvidence(e: Evidence, slot: string): boolean {
    if ([...this.evidence.keys()].some((k) => k.startsWith(`${e.validator}/`))) return false;
    this.evidence.set(`${e.validator}/${slot}`, e);
    return true;
  }
}
