// From input to a PreparedEvent: everything about an event that does not depend on the
// chain (mapping, anonymisation, canonical payload, payload hash). Pure, so it runs the
// same in the ingest worker thread as in the node itself.
import { canonicalize } from "../encoding/jcs.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import { EVENT_TYPE_RE } from "../chain/microblock.ts";
import { type InputFormat, parseJsonLine, toSecurityEvent } from "./records.ts";

/** An event ready to be chained: payload canonicalised and hashed outside the write lock. */
export interface PreparedEvent {
  eventType: string;
  canonical: string;
  payloadHash: string;
}

export type Anonymizer = (value: unknown) => unknown;

export class EventError extends Error {}

export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

/** Any event (emit, mitigation, library callers): IPs anonymised in the payload when configured. */
export function prepareEvent(eventType: string, payload: unknown, anonymize: Anonymizer | null): PreparedEvent {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new EventError("payload must be a JSON object");
  }
  return finish(eventType, anonymize ? anonymize(payload) : payload);
}

/**
 * An input record (one ingested line). IPs are anonymised in the record itself, before
 * mapping, so nothing derived from it (event_id, indicators) sees the clear addresses;
 * the record's canonical text, computed once for event_id, is reused for the payload.
 */
export function prepareRecord(record: Record<string, unknown>, format: InputFormat, anonymize: Anonymizer | null): PreparedEvent {
  const rec = anonymize ? (anonymize(record) as Record<string, unknown>) : record;
  const ev = toSecurityEvent(rec, format);
  return finish(ev.eventType, ev.payload, new Map([[ev.payload.original, ev.originalCanonical]]));
}

/** One ingested line's outcome, in the order lines arrived. */
export type LineResult = { source: string; line: number } & (
  | { event: PreparedEvent }
  | { error: string }
  | { skipped: "empty line" }
);

export function prepareLine(
  source: string,
  line: number,
  text: string | undefined,
  error: string | undefined,
  format: InputFormat,
  anonymize: Anonymizer | null,
): LineResult {
  if (error !== undefined) return { source, line, error };
  if (text!.trim() === "") return { source, line, skipped: "empty line" };
  try {
    return { source, line, event: prepareRecord(parseJsonLine(text!), format, anonymize) };
  } catch (e) {
    return { source, line, error: e instanceof Error ? e.message : String(e) };
  }
}

function finish(eventType: string, payload: unknown, known?: ReadonlyMap<object, string>): PreparedEvent {
  if (!EVENT_TYPE_RE.test(eventType)) {
    throw new EventError(`event type "${eventType}" must be 1-64 characters of a-z, 0-9, '.', '_' or '-'`);
  }
  let canonical: string;
  try {
    canonical = canonicalize(payload, known);
  } catch (e) {
    throw new EventError(`payload cannot be canonicalised: ${(e as Error).message}`);
  }
  if (canonical.length > MAX_PAYLOAD_BYTES) throw new EventError(`payload is larger than ${MAX_PAYLOAD_BYTES} bytes`);
  return { eventType, canonical, payloadHash: sha256Hex(canonical) };
}
