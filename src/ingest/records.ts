// One input line -> one security event. Knows Suricata EVE and Zeek JSON logs and
// accepts any other JSON object as a generic event. Pure: no I/O, no clock.
import { canonicalize, CanonicalJsonError } from "../encoding/jcs.ts";

export type InputFormat = "auto" | "suricata" | "zeek" | "json";
export type Severity = "critical" | "high" | "medium" | "low" | "info";
export type Indicators = Record<string, string | number | boolean>;

export interface EventPayload {
  event_id: string;
  source: string;
  severity: Severity;
  category: string;
  indicators: Indicators;
  original: Record<string, unknown>;
}

export interface SecurityEvent {
  eventType: string;
  payload: EventPayload;
  /** RFC 8785 text of payload.original, already computed for event_id: reused, not redone. */
  originalCanonical: string;
}

/** The message is a short lowercase reason; callers print it as "line N: <reason>". */
export class RecordError extends Error {
  override name = "RecordError";
}

type JsonObject = Record<string, unknown>;
// What each format decides; event_id and original are added the same way for all.
type Built = Omit<EventPayload, "event_id" | "original"> & { eventType: string };

// ---------------------------------------------------------------------------
// Parsing

// A number token can only lose precision if its integer part has 16+ digits, so
// lines without such a run skip the (much slower) source-aware reviver.
const LONG_DIGIT_RUN = /\d{16,}/g;
const MAX_SAFE_DIGITS = String(Number.MAX_SAFE_INTEGER);
const INTEGER_TEXT = /^-?\d+$/;

type SourceReviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;
const parseWithReviver = JSON.parse as (text: string, reviver: SourceReviver) => unknown;

function keepUnsafeIntegersAsText(_key: string, value: unknown, context?: { source?: string }): unknown {
  // Suricata's 64-bit flow_id must survive byte-exact: it joins events of one flow.
  if (typeof value !== "number" || Number.isSafeInteger(value)) return value;
  const source = context?.source;
  // JSON forbids leading zeros, so the source text already is the canonical decimal form.
  return source !== undefined && INTEGER_TEXT.test(source) ? source : value;
}

function mayHaveUnsafeInteger(line: string): boolean {
  for (const match of line.matchAll(LONG_DIGIT_RUN)) {
    // 16 digits is exactly the width of MAX_SAFE_INTEGER; equal-width decimal strings compare like numbers.
    if (match[0].length > MAX_SAFE_DIGITS.length || match[0] > MAX_SAFE_DIGITS) return true;
  }
  return false;
}

export function parseJsonLine(line: string): Record<string, unknown> {
  // Files saved by Windows tools often start with a BOM, which JSON.parse rejects.
  const text = line.charCodeAt(0) === 0xfeff ? line.slice(1) : line;
  if (text.trim() === "") throw new RecordError("malformed JSON: empty line");
  let value: unknown;
  try {
    value = mayHaveUnsafeInteger(text) ? parseWithReviver(text, keepUnsafeIntegersAsText) : JSON.parse(text);
  } catch (err) {
    // Zeek writes tab-separated logs unless told otherwise: say how, not just "not JSON".
    if (text.startsWith("#separator") || text.startsWith("#fields") || (text.includes("\t") && !text.trimStart().startsWith("{"))) {
      throw new RecordError("not JSON: a Zeek tab-separated log line? dsm reads Zeek's JSON logs (redef LogAscii::use_json = T; in local.zeek)");
    }
    throw new RecordError(`malformed JSON: ${shortParseReason(err)}`);
  }
  if (!isObject(value)) throw new RecordError(`expected a JSON object, got ${jsonKind(value)}`);
  return value;
}

function shortParseReason(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  const reason = raw.replace(/^JSON Parse error:\s*/i, "").trim() || "syntax error";
  const lowered = reason.charAt(0).toLowerCase() + reason.slice(1);
  return lowered.length > 80 ? `${lowered.slice(0, 77)}...` : lowered;
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------
// Format detection

// event types become part of eventType ("suricata." + 55 = 64 chars max).
const SURICATA_TYPE = /^[a-z0-9][a-z0-9_.-]{0,54}$/;
const GENERIC_TYPE = /^[a-z0-9_.-]{1,32}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;

export function detectFormat(record: Record<string, unknown>): "suricata" | "zeek" | "json" {
  if (looksLikeEve(record)) return "suricata";
  if (looksLikeZeek(record)) return "zeek";
  return "json";
}

function looksLikeEve(record: JsonObject): boolean {
  const type = record.event_type;
  if (typeof type !== "string" || !SURICATA_TYPE.test(type)) return false;
  if (typeof record.timestamp !== "string") return false;
  // stats records carry no flow or interface; like every EVE record they carry
  // an object named after their event_type, which is the fallback signal.
  return "flow_id" in record || "src_ip" in record || "in_iface" in record || isObject(record[type]);
}

function hasZeekTime(record: JsonObject): boolean {
  const ts = record.ts;
  return (typeof ts === "number" && Number.isFinite(ts)) || (typeof ts === "string" && ISO_TIME.test(ts));
}

function looksLikeZeek(record: JsonObject): boolean {
  if (!hasZeekTime(record)) return false;
  return "uid" in record || "id.orig_h" in record || zeekKind(record) !== "log";
}

// ---------------------------------------------------------------------------
// Event construction

export function toSecurityEvent(record: Record<string, unknown>, format: InputFormat): SecurityEvent {
  const chosen = format === "auto" ? detectFormat(record) : format;
  let built: Built;
  switch (chosen) {
    case "suricata":
      built = suricataEvent(record);
      break;
    case "zeek":
      built = zeekEvent(record);
      break;
    case "json":
      built = genericEvent(record);
      break;
    default:
      throw new RecordError(`unknown input format: ${String(chosen)}`);
  }
  const { eventType, ...rest } = built;
  const originalCanonical = canonicalRecord(record);
  return {
    eventType,
    payload: { event_id: Bun.SHA256.hash(originalCanonical, "hex").slice(0, 32), ...rest, original: record },
    originalCanonical,
  };
}

function canonicalRecord(record: JsonObject): string {
  let canonical: string;
  try {
    canonical = canonicalize(record);
  } catch (err) {
    // Lone surrogates and absurd nesting parse fine but cannot be hashed or signed.
    if (err instanceof CanonicalJsonError) throw new RecordError(`cannot canonicalize record: ${err.message}`);
    throw err;
  }
  return canonical;
}

// --- Suricata EVE -----------------------------------------------------------

function suricataEvent(record: JsonObject): Built {
  const type = record.event_type;
  if (typeof type !== "string") throw new RecordError("not a Suricata EVE record: missing event_type");
  if (!SURICATA_TYPE.test(type)) throw new RecordError(`unsupported Suricata event_type: ${JSON.stringify(type.slice(0, 40))}`);

  const indicators: Indicators = {};
  pick(indicators, record, ["src_ip", "src_port", "dest_ip", "dest_port", "proto", "flow_id", "app_proto"]);
  const base = { eventType: `suricata.${type}`, source: "suricata" };

  if (type === "alert" || type === "drop") {
    const alert = isObject(record.alert) ? record.alert : undefined;
    if (alert) pick(indicators, alert, ["signature_id", "signature", "gid", "rev", "action"]);
    const category = nonEmptyString(alert?.category) ?? type;
    // Without an alert object there is no rule severity to go by; a drop is still an
    // IPS action, so it ranks above telemetry, like an alert of unknown priority.
    const severity = alert ? suricataSeverity(alert.severity) : "low";
    addPerType(indicators, record, type);
    return { ...base, severity, category, indicators };
  }
  if (type === "anomaly") {
    const anomaly = isObject(record.anomaly) ? record.anomaly : {};
    copyAs(indicators, anomaly, { type: "anomaly_type", event: "anomaly_event", layer: "anomaly_layer" });
    return { ...base, severity: "medium", category: "anomaly", indicators };
  }
  addPerType(indicators, record, type);
  return { ...base, severity: "info", category: type, indicators };
}

function suricataSeverity(value: unknown): Severity {
  switch (value) {
    case 1:
      return "critical";
    case 2:
      return "high";
    case 3:
      return "medium";
    default:
      return "low";
  }
}

// Protocol details that identify what the event is about. Alerts carry the same
// sub-objects (http, tls, dns) as the matching telemetry, so they get them too.
function addPerType(indicators: Indicators, record: JsonObject, type: string): void {
  if (isObject(record.dns)) copyAs(indicators, record.dns, { rrname: "query", rrtype: "qtype", rcode: "rcode" });
  const http = isObject(record.http) ? record.http : undefined;
  if (http) copyAs(indicators, http, { hostname: "hostname", url: "url", http_method: "http_method", status: "status" });
  const tls = isObject(record.tls) ? record.tls : undefined;
  if (tls) {
    copyAs(indicators, tls, { sni: "server_name", version: "tls_version" });
    setIfScalar(indicators, "ja3", isObject(tls.ja3) ? tls.ja3.hash : undefined);
    setIfScalar(indicators, "ja3s", isObject(tls.ja3s) ? tls.ja3s.hash : undefined);
  }
  if (type === "ssh" && isObject(record.ssh)) {
    const ssh = record.ssh;
    setIfScalar(indicators, "client_software", isObject(ssh.client) ? ssh.client.software_version : undefined);
    setIfScalar(indicators, "server_software", isObject(ssh.server) ? ssh.server.software_version : undefined);
  }
  if (type === "fileinfo" && isObject(record.fileinfo)) {
    copyAs(indicators, record.fileinfo, { filename: "filename", sha256: "file_sha256", size: "file_size" });
  }
  if (type === "flow" && isObject(record.flow)) {
    copyAs(indicators, record.flow, { state: "flow_state", reason: "flow_reason" });
  }
}

// --- Zeek ---------------------------------------------------------------------

type ZeekKind = "notice" | "weird" | "intel" | "conn" | "dns" | "ssl" | "log";

const ZEEK_SEVERITY: Record<ZeekKind, Severity> = {
  notice: "high",
  weird: "low",
  intel: "high",
  conn: "info",
  dns: "info",
  ssl: "info",
  log: "info",
};

// Zeek JSON does not name its log stream, so the kind is read off the fields
// each stream is known to carry, most specific (and most severe) first.
function zeekKind(record: JsonObject): ZeekKind {
  const has = (key: string): boolean => key in record;
  if (has("note")) return "notice";
  if (has("name") && (has("notice") || has("peer"))) return "weird";
  if (has("seen.indicator") || has("matched")) return "intel";
  if (has("conn_state") || has("history") || (has("duration") && has("proto"))) return "conn";
  if (has("query") || has("qtype_name")) return "dns";
  if (has("cipher") || (has("version") && (has("server_name") || has("validation_status")))) return "ssl";
  return "log";
}

function zeekEvent(record: JsonObject): Built {
  if (!("ts" in record)) throw new RecordError("not a Zeek record: missing ts");
  if (!hasZeekTime(record)) throw new RecordError("not a Zeek record: ts is neither epoch seconds nor an ISO-8601 time");
  const kind = zeekKind(record);
  const indicators: Indicators = {};
  pick(indicators, record, ["uid"]);
  copyAs(indicators, record, { "id.orig_h": "src_ip", "id.orig_p": "src_port", "id.resp_h": "dest_ip", "id.resp_p": "dest_port" });
  pick(indicators, record, ["proto"]);

  switch (kind) {
    case "notice":
      // Notices raised outside a connection name their hosts in src/dst instead of id.*.
      if (!("src_ip" in indicators)) setIfScalar(indicators, "src_ip", record.src);
      if (!("dest_ip" in indicators)) setIfScalar(indicators, "dest_ip", record.dst);
      if (!("src_port" in indicators)) setIfScalar(indicators, "src_port", record.p);
      pick(indicators, record, ["note", "msg"]);
      break;
    case "weird":
      pick(indicators, record, ["name", "peer"]);
      break;
    case "intel":
      copyAs(indicators, record, { "seen.indicator": "indicator", "seen.indicator_type": "indicator_type", "seen.where": "seen_where" });
      setIfScalar(indicators, "matched", joinStrings(record.matched));
      break;
    case "conn":
      pick(indicators, record, ["service", "conn_state"]);
      break;
    case "dns":
      copyAs(indicators, record, { query: "query", qtype_name: "qtype", rcode_name: "rcode" });
      break;
    case "ssl":
      copyAs(indicators, record, { server_name: "server_name", version: "tls_version", validation_status: "validation_status", ja3: "ja3", ja3s: "ja3s" });
      break;
    case "log":
      break;
  }
  return { eventType: `zeek.${kind}`, source: "zeek", severity: ZEEK_SEVERITY[kind], category: kind, indicators };
}

function joinStrings(value: unknown): string | undefined {
  if (!Array.isArray(value)) return typeof value === "string" ? value : undefined;
  const strings = value.filter((v): v is string => typeof v === "string");
  return strings.length > 0 ? strings.join(",") : undefined;
}

// --- Generic JSON -------------------------------------------------------------

const SEVERITIES: ReadonlySet<string> = new Set<Severity>(["critical", "high", "medium", "low", "info"]);

function genericEvent(record: JsonObject): Built {
  // A well-formed type tag is kept so generic producers can still be told apart;
  // anything else collapses to plain "json" rather than failing the line.
  const tag = [record.event_type, record.type].find((v): v is string => typeof v === "string" && GENERIC_TYPE.test(v));
  const declared = typeof record.severity === "string" ? record.severity.toLowerCase() : "";
  const severity = SEVERITIES.has(declared) ? (declared as Severity) : "info";
  const indicators: Indicators = {};
  pick(indicators, record, ["src_ip", "src_port", "dest_ip", "dest_port", "proto", "host", "user"]);
  return { eventType: tag === undefined ? "json" : `json.${tag}`, source: "json", severity, category: "generic", indicators };
}

// --- Indicator helpers --------------------------------------------------------

function setIfScalar(target: Indicators, key: string, value: unknown): void {
  if (typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value))) {
    target[key] = value;
  }
}

function pick(target: Indicators, from: JsonObject, keys: readonly string[]): void {
  for (const key of keys) setIfScalar(target, key, from[key]);
}

function copyAs(target: Indicators, from: JsonObject, mapping: Readonly<Record<string, string>>): void {
  for (const [fromKey, toKey] of Object.entries(mapping)) setIfScalar(target, toKey, from[fromKey]);
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}
