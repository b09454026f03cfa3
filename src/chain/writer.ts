// Writing this node's own chain: prepared events in, signed microblocks out. Seq and prev
// come from the chain head, the body is signed with the delegated key (ChainSigner), and
// the rows, payloads and any new key certificate are committed in one BEGIN IMMEDIATE
// transaction: one fsync per batch (group commit), and no other process on this ledger
// can race the seq assignment.
import { fromHex, toHex, ZERO_HASH } from "../encoding/hex.ts";
import { formatTime } from "../encoding/time.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { type Microblock, type MicroblockBody, microblockIdBytes } from "../protocol/microblock.ts";
import type { ChainSigner, IssuedCert } from "./signer.ts";

/** What the writer chains of an event: its type and its canonical, hashed payload (ingest's PreparedEvent is one). */
export interface ChainEvent {
  eventType: string;
  canonical: string;
  payloadHash: string;
}

export class ChainWriter {
  #queue: Promise<unknown> = Promise.resolve();

  /** fail makes the error thrown when no key certificate stays current for the head (the node's EventError). */
  constructor(
    private readonly ledger: Ledger,
    private readonly mesh: string,
    private readonly nodeId: string,
    private readonly signer: ChainSigner,
    private readonly fail: (message: string) => Error = (m) => new Error(m),
  ) {}

  /** Chains a batch in one transaction. Batches from this process run one at a time. */
  append(events: ChainEvent[]): Promise<Microblock[]> {
    const run = this.#queue.then(() => this.#appendNow(events));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #appendNow(events: ChainEvent[]): Promise<Microblock[]> {
    if (events.length === 0) return [];
    for (let attempt = 0; ; attempt++) {
      // Certifying a new signing key may wait on the identity key (a TPM takes 20-100 ms),
      // so it happens outside the write lock, for the seq the head suggests. If another
      // writer moved the head meanwhile, the certificate is re-issued: its first_seq is
      // always exactly the first seq its key signs, never an older one.
      if (attempt === 8) throw this.fail("could not certify a signing key for the chain head after 8 tries (heavy contention, or a clock far behind the chain)");
      const head = this.ledger.head(this.mesh, this.nodeId);
      // From the head's time if the clock is behind it: timestamps never go backwards, so neither may not_after.
      const issued = await this.signer.ready((head?.seq ?? 0) + 1, Math.max(Date.now(), head ? Date.parse(head.timestamp) : 0));
      const out = this.#appendLocked(events, issued);
      if (out === null) continue;
      if (issued) this.signer.stored();
      return out;
    }
  }

  /** The whole write, synchronous, under BEGIN IMMEDIATE. null: the certificate went stale (first_seq or not_after). */
  #appendLocked(events: ChainEvent[], issued: IssuedCert | null): Microblock[] | null {
    const mesh = this.mesh;
    return this.ledger.immediate(() => {
      const nowMs = Date.now();
      const head = this.ledger.head(mesh, this.nodeId);
      let seq = head?.seq ?? 0;
      if (issued && issued.cert.first_seq !== seq + 1) return null;
      let prev = head?.id ?? ZERO_HASH;
      // Timestamps never go backwards along a chain (docs/PROTOCOL.md), even if the clock does.
      const timestampMs = Math.max(nowMs, head ? Date.parse(head.timestamp) : 0);
      // The wait for the write lock may have outlived the key's certificate: never sign past not_after.
      if (timestampMs > this.signer.notAfterMs) {
        this.signer.expire();
        return null;
      }
      const timestamp = formatTime(timestampMs);
      if (issued) this.ledger.insertKeyCert(mesh, this.nodeId, issued.keyName, issued.cert.first_seq, issued.canonical, nowMs);
      const key = this.signer.keyName;
      const keyBytes = fromHex(key);
      const chain = this.ledger.chainOf(mesh, this.nodeId, true)!;
      let prevBytes = fromHex(prev);
      const out: Microblock[] = [];
      for (const ev of events) {
        seq += 1;
        const body: MicroblockBody = {
          v: 1,
          type: "M",
          mesh,
          node_id: this.nodeId,
          seq,
          prev,
          timestamp,
          event_type: ev.eventType,
          payload_hash: ev.payloadHash,
          key,
        };
        const idBytes = microblockIdBytes(body);
        const sig = this.signer.sign(idBytes);
        const payloadHash = fromHex(ev.payloadHash);
        this.ledger.insertPayload(payloadHash, ev.canonical);
        this.ledger.insertRow({ chain, seq, id: idBytes, prev: prevBytes, timestamp, eventType: ev.eventType, payloadHash, key: keyBytes, sig, receivedAt: nowMs });
        const mb: Microblock = { ...body, id: toHex(idBytes), sig: toHex(sig) };
        out.push(mb);
        prev = mb.id;
        prevBytes = idBytes;
      }
      return out;
    });
  }
}
