// The export/import file format (`dsm export`, `dsm import`): NDJSON, one record a line.
//
//   {"kind":"key_certificate","certificate":{...K, as stored}}
//   {"kind":"microblock","microblock":{...body, id, sig},"payload":{...}|null}
//
// payload is null when withheld (--no-payloads, or not held by the exporter). A chain's
// key certificates come before the first of its microblocks they cover. This module
// only frames and unframes lines: every signature, chain and admission rule is the
// Receiver's (src/chain/accept.ts), which the importer runs on each record.
import type { Microblock } from "../protocol/microblock.ts";
import { parseJson } from "../encoding/json.ts";
import { type Ledger, withoutLocalFields } from "../ledger/ledger.ts";

/** A line longer than this is rejected unread (a payload is at most ingest.max_line_bytes). */
export const MAX_EXCHANGE_LINE_BYTES = 8 * 1024 * 1024;

export type ExchangeRecord =
  | { kind: "key_certificate"; certificate: Record<string, unknown> }
  | { kind: "microblock"; microblock: Record<string, unknown>; payload: Record<string, unknown> | null };

export class ExchangeLineError extends Error {
  constructor(readonly line: string, readonly reason: string) {
    super(`${line}: ${reason}`);
  }
}

/** The certificate line: the stored canonical text is embedded as is. */
export function certificateLine(certificateJson: string): string {
  return `{"kind":"key_certificate","certificate":${certificateJson}}\n`;
}

/**
 * The microblock line. payloadJson is the payload's stored RFC 8785 text (embedded as is,
 * so its hash is unchanged), or null when withheld.
 */
export function microblockLine(mb: Microblock, payloadJson: string | null): string {
  // Only the stored/sent fields, whatever local bookkeeping the caller's object carries.
  const sent = withoutLocalFields(mb);
  return `{"kind":"microblock","microblock":${JSON.stringify(sent)},"payload":${payloadJson ?? "null"}}\n`;
}

/**
 * A node's microblocks from a seq as exchange lines, in chunks of at most maxBytes (a
 * single line over it goes alone). Each chunk stands alone: it carries the certificate of
 * every key it uses before that key's first microblock. The mesh's gossip batches and its
 * /dsm/sync/1 answers are this text.
 */
export function* exchangeChunks(
  ledger: Ledger,
  mesh: string,
  nodeId: string,
  fromSeq: number,
  maxBytes: number,
  opts: { payloads?: boolean | ((eventType: string) => boolean) } = {},
): Generator<{ text: string; lastSeq: number; count: number }> {
  const want = opts.payloads ?? true;
  const payloads = typeof want === "function" ? want : () => want;
  let text = "";
  let lastSeq = 0;
  let count = 0;
  const keys = new Set<string>();
  const certLines = new Map<string, string>();
  const certLineOf = (key: string): string => {
    let line = certLines.get(key);
    if (line === undefined) {
      const cert = ledger.keyCert(key);
      line = cert === null ? "" : certificateLine(cert);
      certLines.set(key, line);
    }
    return line;
  };
  for (const page of ledger.chainPages(mesh, nodeId, fromSeq)) {
    for (const mb of page) {
      const mbLine = microblockLine(mb, payloads(mb.event_type) ? ledger.payload(mb.payload_hash) : null);
      if (text !== "" && text.length + mbLine.length + (keys.has(mb.key) ? 0 : certLineOf(mb.key).length) > maxBytes) {
        yield { text, lastSeq, count };
        text = "";
        count = 0;
        keys.clear();
      }
      if (!keys.has(mb.key)) text += certLineOf(mb.key);
      keys.add(mb.key);
      text += mbLine;
      lastSeq = mb.seq;
      count++;
    }
  }
  if (text !== "") yield { text, lastSeq, count };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function exactKeys(o: Record<string, unknown>, where: string, keys: readonly string[]): void {
  for (const k of keys) if (!Object.hasOwn(o, k)) throw new ExchangeLineError(where, `missing field "${k}"`);
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new ExchangeLineError(where, `unexpected field "${k}"`);
}

/**
 * One untrusted line (without its newline) to a record. `where` names it in errors
 * ("FILE:LINE"). The envelope is checked exactly; the certificate's and microblock's own
 * schemas, signatures and chain rules are checked by the Receiver.
 */
export function parseExchangeLine(text: string, where: string, maxBytes = MAX_EXCHANGE_LINE_BYTES): ExchangeRecord {
  if (text.length > maxBytes || Buffer.byteLength(text, "utf8") > maxBytes) {
    throw new ExchangeLineError(where, `line too long (limit ${maxBytes} bytes)`);
  }
  let value: unknown;
  try {
    value = parseJson(text, "line");
  } catch (e) {
    throw new ExchangeLineError(where, `not valid JSON: ${(e as Error).message.replace(/^line: /, "")}`);
  }
  if (!isObject(value)) throw new ExchangeLineError(where, "expected a JSON object");
  switch (value.kind) {
    case "key_certificate": {
      exactKeys(value, where, ["kind", "certificate"]);
      if (!isObject(value.certificate)) throw new ExchangeLineError(where, `"certificate" must be a JSON object`);
      return { kind: "key_certificate", certificate: value.certificate };
    }
    case "microblock": {
      exactKeys(value, where, ["kind", "microblock", "payload"]);
      if (!isObject(value.microblock)) throw new ExchangeLineError(where, `"microblock" must be a JSON object`);
      if (value.payload !== null && !isObject(value.payload)) throw new ExchangeLineError(where, `"payload" must be a JSON object or null`);
      return { kind: "microblock", microblock: value.microblock, payload: value.payload };
    }
    default:
      throw new ExchangeLineError(where, `"kind" must be "key_certificate" or "microblock"`);
  }
}
