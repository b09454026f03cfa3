// Importing another node's microblocks in any order: each one goes through the Receiver's
// acceptance rules, and one that arrives before an earlier seq of its chain (or before its
// key certificate) is held in memory until the chain reaches it. Two valid microblocks for
// one seq are a fork, kept as evidence. dsm import feeds it lines and prints what it reports.
import { isHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import type { Ledger } from "../ledger/ledger.ts";
import type { MeshPolicy } from "../protocol/genesis.ts";
import { keyNameOf } from "../protocol/keycert.ts";
import { MicroblockRejected } from "../protocol/microblock.ts";
import { type AcceptOutcome, KeyCertRejected, Receiver } from "./accept.ts";
import { ExchangeLineError, parseExchangeLine } from "./exchange.ts";

/** Microblocks held in memory while waiting for an earlier seq or their key certificate. */
export const MAX_HELD = 100_000;

interface Held {
  microblock: Record<string, unknown>;
  payload: Record<string, unknown> | null;
  where: string;
}

export interface Missing {
  mesh: string;
  node_id: string;
  from: number;
  to: number;
  held: number;
}

export class ReorderBuffer {
  readonly stats = {
    lines: 0,
    empty: 0,
    certificates: 0,
    stored: 0,
    /** stored after being held for a missing seq or key certificate */
    filled: 0,
    duplicate: 0,
    /** microblocks still held at the end: their chain has a hole before them */
    gap: 0,
    fork: 0,
    rejected: 0,
    reasons: {} as Record<string, number>,
    payloads_filled: 0,
  };
  readonly forks: { node_id: string; seq: number; stored: string; received: string; where: string }[] = [];
  readonly #receiver: Receiver;
  /** chain ("mesh/node") -> seq -> held microblocks (two different ones for one seq are kept: a fork to detect). */
  readonly #bySeq = new Map<string, Map<number, Held[]>>();
  /** signing key name -> microblocks waiting for its certificate */
  readonly #byKey = new Map<string, Held[]>();
  #held = 0;
  readonly #report: (line: string) => void;

  /** report gets one line per rejection, fork and missing range (the CLI prints them). */
  constructor(
    private readonly ledger: Ledger,
    policy: MeshPolicy,
    opts: { maxClockSkewMs: number; report: (line: string) => void; notAttested?: (nodeId: string) => string | null },
  ) {
    this.#receiver = new Receiver(ledger, policy, { maxClockSkewMs: opts.maxClockSkewMs, notAttested: opts.notAttested });
    this.#report = opts.report;
  }

  /** Runs fn as one commit (one fsync): see Receiver.batch. */
  batch(fn: () => void): void {
    this.#receiver.batch(fn);
  }


  /** One line of exchange NDJSON (or the line splitter's error for it); where is source:line. */
  line(e: { no: number; text: string } | { no: number; error: string }, source: string): void {
    this.stats.lines++;
    const where = `${source}:${e.no}`;
    if ("error" in e) return this.#reject(where, "format", e.error);
    if (e.text.trim() === "") {
      this.stats.empty++;
      return;
    }
    let rec;
    try {
      rec = parseExchangeLine(e.text, where);
    } catch (err) {
      if (err instanceof ExchangeLineError) return this.#reject(where, "format", err.reason);
      throw err;
    }
    if (rec.kind === "key_certificate") this.#certificate(rec.certificate, where);
    else this.#process({ microblock: rec.microblock, payload: rec.payload, where });
  }

  #certificate(value: Record<string, unknown>, where: string): void {
    let name: string;
    try {
      const cert = this.#receiver.acceptKeyCert(value);
      name = keyNameOf(cert.signing_pub);
    } catch (err) {
      if (!(err instanceof KeyCertRejected)) throw err;
      return this.#reject(where, err.reason === "conflict" ? "key_certificate" : err.reason, err.message);
    }
    this.stats.certificates++;
    const waiting = this.#byKey.get(name);
    if (waiting) {
      this.#byKey.delete(name);
      this.#held -= waiting.length;
      for (const h of waiting) this.#process(h, true);
    }
  }

  /** Tries one microblock; when it extends a chain, stores whatever was waiting behind it. */
  #process(h: Held, wasHeld = false): void {
    let o = this.#attempt(h, wasHeld);
    while (o?.status === "stored") {
      const chain = chainKey(o.microblock.mesh, o.microblock.node_id);
      const seqs = this.#bySeq.get(chain);
      const next = seqs?.get(o.microblock.seq + 1);
      if (!seqs || !next) break;
      seqs.delete(o.microblock.seq + 1);
      if (seqs.size === 0) this.#bySeq.delete(chain);
      this.#held -= next.length;
      let advanced: AcceptOutcome | null = null;
      for (const n of next) {
        const r = this.#attempt(n, true);
        if (r?.status === "stored") advanced = r;
      }
      o = advanced;
    }
  }

  #attempt(h: Held, wasHeld: boolean): AcceptOutcome | null {
    let o: AcceptOutcome;
    try {
      o = this.#receiver.acceptMicroblock(h.microblock, h.payload ?? undefined);
    } catch (err) {
      if (!(err instanceof MicroblockRejected)) throw err;
      const key = h.microblock.key;
      if (err.reason === "unknown_key" && isHex(key, 32)) {
        // Its certificate may come later (files in any order): wait for it.
        if (this.#hold(h, err.message)) {
          const list = this.#byKey.get(key) ?? [];
          list.push(h);
          this.#byKey.set(key, list);
        }
      } else {
        this.#reject(h.where, err.reason, err.message);
      }
      return null;
    }
    const mb = o.microblock;
    switch (o.status) {
      case "stored":
        this.stats.stored++;
        if (wasHeld) this.stats.filled++;
        break;
      case "duplicate":
        this.stats.duplicate++;
        // A payload withheld by an earlier import arrives now: its hash was checked above.
        if (h.payload !== null && !this.ledger.hasPayload(mb.payload_hash)) {
          const text = canonicalize(h.payload);
          this.ledger.immediate(() => this.ledger.insertPayload(mb.payload_hash, text));
          this.stats.payloads_filled++;
        }
        break;
      case "gap": {
        if (!this.#hold(h, `seq ${mb.seq} is ahead of the stored seq ${o.have}`)) return null;
        const chain = chainKey(mb.mesh, mb.node_id);
        const seqs = this.#bySeq.get(chain) ?? new Map<number, Held[]>();
        const list = seqs.get(mb.seq) ?? [];
        // The same microblock twice while waiting is one microblock.
        if (list.some((x) => x.microblock.id === mb.id)) {
          this.#held--;
          this.stats.duplicate++;
          return o;
        }
        list.push(h);
        seqs.set(mb.seq, list);
        this.#bySeq.set(chain, seqs);
        break;
      }
      case "fork":
        this.stats.fork++;
        this.forks.push({ node_id: mb.node_id, seq: mb.seq, stored: o.existing, received: mb.id, where: h.where });
        this.#report(
          `${h.where}: FORK: node ${mb.node_id} signed two different microblocks for seq ${mb.seq} ` +
            `(stored ${o.existing.slice(0, 16)}…, received ${mb.id.slice(0, 16)}…): both kept as fork evidence, node quarantined`,
        );
        break;
    }
    return o;
  }

  /** Counts one more held microblock; false (and the line rejected) when the limit is reached. */
  #hold(h: Held, why: string): boolean {
    if (this.#held >= MAX_HELD) {
      this.#reject(h.where, "gap", `${why}, and ${MAX_HELD} microblocks are already held: import the earlier seqs first`);
      return false;
    }
    this.#held++;
    return true;
  }

  #reject(where: string, reason: string, message: string): void {
    this.stats.rejected++;
    this.stats.reasons[reason] = (this.stats.reasons[reason] ?? 0) + 1;
    this.#report(`${where}: ${reason}: ${message}`);
  }

  /** End of all input: what is still held is reported as missing (or rejected, if it can never be stored). */
  finish(): { ok: boolean; missing: Missing[] } {
    for (const [key, list] of this.#byKey) {
      for (const h of list) this.#reject(h.where, "unknown_key", `no key certificate for signing key ${key.slice(0, 16)}… in the input or the ledger`);
    }
    this.#byKey.clear();
    const missing: Missing[] = [];
    for (const [chain, seqs] of this.#bySeq) {
      const [mesh, nodeId] = chain.split("/") as [string, string];
      if (this.ledger.hasForkEvidence(mesh, nodeId)) {
        for (const list of seqs.values()) for (const h of list) this.#reject(h.where, "quarantined", `node ${nodeId.slice(0, 12)}… is quarantined (fork evidence)`);
        continue;
      }
      const sorted = [...seqs.keys()].sort((a, b) => a - b);
      let have = this.ledger.head(mesh, nodeId)?.seq ?? 0;
      let i = 0;
      while (i < sorted.length) {
        const from = have + 1;
        const to = sorted[i]! - 1;
        // a run of consecutive held seqs after this hole
        let j = i;
        while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
        let held = 0;
        for (let k = i; k <= j; k++) held += seqs.get(sorted[k]!)!.length;
        missing.push({ mesh, node_id: nodeId, from, to, held });
        this.stats.gap += held;
        have = sorted[j]!;
        i = j + 1;
      }
    }
    this.#bySeq.clear();
    this.#held = 0;
    for (const m of missing) {
      this.#report(`node ${m.node_id}: missing seq ${m.from === m.to ? m.from : `${m.from}..${m.to}`} (${m.held} later microblocks held, not stored)`);
    }
    const ok = this.stats.rejected === 0 && this.stats.fork === 0 && missing.length === 0;
    return { ok, missing };
  }
}

function chainKey(mesh: string, nodeId: string): string {
  return `${mesh}/${nodeId}`;
}
