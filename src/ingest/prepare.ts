// From input to a PreparedEvent: everything about an event that does not depend on the
// chain (mapping, anonymisation, canonical payload, payload hash). Pure, so it runs the
// same in the ingest worker thread as in the node itself.
import { canonicalize } from "../encoding/jcs.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import { EVENT_TYPE_RE } from "../protocol/microblock.ts";
import { isIntelEvent } from "../protocol/advisory.ts";
import { type InputFormat, parseJsonLine, toSecurityEvent } from "./records.ts";
import { type CompiledRules, matchRecord, type RuleHit } from "../intel/rules.ts";

/** An event ready to be chained: payload canonicalised and hashed outside the write lock. */
export interface PreparedEvent {
  eventType: string;
  canonical: string;
  payloadHash: string;
}

export type Anonymizer = (value: unknown) => unknown;

/**
 * Events this process prepared itself (here, or on its own ingest worker). Anything else
 * handed to DSMNode.append, by library code, is checked in full before it is chained.
 */
const sealed = new WeakSet<PreparedEvent>();

export function seal(ev: PreparedEvent): PreparedEvent {
  sealed.add(ev);
  return ev;
}

/** Throws EventError unless ev is what prepareEvent would have produced for its payload. */
export function checkPrepared(ev: PreparedEvent): void {
  if (sealed.has(ev)) return;
  if (typeof ev !== "object" || ev === null || typeof ev.canonical !== "string" || typeof ev.payloadHash !== "string") {
    throw new EventError("prepared event: not an event made by prepareEvent");
  }
  let payload: unknown;
  try {
    payload = JSON.parse(ev.canonical);
  } catch {
    throw new EventError("prepared event: payload is not JSON");
  }
  const again = finish(ev.eventType, payload);
  if (again.canonical !== ev.canonical) throw new EventError("prepared event: payload is not in canonical (RFC 8785) form");
  if (again.payloadHash !== ev.payloadHash) throw new EventError("prepared event: payloadHash does not match its payload");
}

export class EventError extends Error {}

export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

/**
 * Any event (emit, mitigation, library callers): IPs anonymised in the payload when configured,
 * except the indicators of a threat advisory or retraction, which exist to be shared in clear
 * (the rest of it, a free-text reason say, is anonymised like any payload).
 */
export function prepareEvent(eventType: string, payload: unknown, anonymize: Anonymizer | null): PreparedEvent {
  return seal(finish(eventType, anonymize ? anonymizeExceptIndicators(eventType, payload, anonymize) : payload));
}

function anonymizeExceptIndicators(eventType: string, payload: unknown, anonymize: Anonymizer): unknown {
  if (!isIntelEvent(eventType) || typeof payload !== "object" || payload === null || Array.isArray(payload) || !("indicators" in payload)) return anonymize(payload);
  const { indicators, ...rest } = payload as Record<string, unknown>;
  return { ...(anonymize(rest) as Record<string, unknown>), indicators };
}

/**
 * An input record (one ingested line). IPs are anonymised in the record itself, before
 * mapping, so nothing derived from it (event_id, indicators) sees the clear addresses;
 * the record's canonical text, computed once for event_id, is reused for the payload.
 */
export function prepareRecord(record: Record<string, unknown>, format: InputFormat, anonymize: Anonymizer | null): PreparedEvent {
  const rec = anonymize ? (anonymize(record) as Record<string, unknown>) : record;
  const ev = toSecurityEvent(rec, format);
  return seal(finish(ev.eventType, ev.payload, new Map([[ev.payload.original, ev.originalCanonical]])));
}

/** One ingested line's outcome, in the order lines arrived. hits: the intel.rules it matched. */
export type LineResult = { source: string; line: number } & (
  | { event: PreparedEvent; hits?: RuleHit[] }
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
  rules: CompiledRules | null = null,
): LineResult {
  if (error !== undefined) return { source, line, error };
  if (text!.trim() === "") return { source, line, skipped: "empty line" };
  try {
    const record = parseJsonLine(text!);
    const event = prepareRecord(record, format, anonymize);
    // On the clear record: anonymisation made a copy, so the addresses here are the real ones.
    const hits = rules === null ? null : matchRecord(rules, event.eventType, record);
    return hits === null ? { source, line, event } : { source, line, event, hits };
  } catch (e) {
    return { source, line, error: e instanceof Error ? e.message : String(e) };
  }
}

function finish(eventType: string, payload: unknown, known?: ReadonlyMap<object, string>): PreparedEvent {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new EventError("payload must be a JSON object");
  }
  if (typeof eventType !== "string" || !EVENT_TYPE_RE.test(eventType)) {
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
