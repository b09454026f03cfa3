// Where the ingest pipeline hands its prepared events: a chain writer that signs them into
// microblocks and commits them. DSMNode is one; ingest depends on this shape, not on the node.
import type { Anonymizer, PreparedEvent } from "./prepare.ts";

export interface EventSink {
  /** Commits a batch; resolves, once it is durable, with each event's microblock id and seq, in order. */
  append(events: PreparedEvent[]): Promise<{ id: string; seq: number }[]>;
  /** Anonymises IPs on the pipeline's thread (null: not configured). */
  readonly anonymizer: Anonymizer | null;
  /** The key the prepare worker builds the same anonymiser from (null: not configured). */
  readonly anonymizeSecret: Uint8Array | null;
}
