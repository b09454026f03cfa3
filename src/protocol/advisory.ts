// Threat advisories and retractions (DESIGN.md section 12, docs/PROTOCOL.md "Threat
// intelligence"): the payloads of microblocks of type threat.advisory and threat.retract,
// and the indicators they name. Indicators are shared in clear: that is their purpose.
// Pure: parsing turns untrusted JSON into these types or a SchemaError.
import { expectKeys, expectObject, intField, literalField, SchemaError } from "../encoding/schema.ts";
import { canonicalIp, formatCidr, parseCidr } from "../encoding/ip.ts";
import { isHex } from "../encoding/hex.ts";
import type { Microblock } from "./microblock.ts";

export const ADVISORY_EVENT = "threat.advisory";
export const RETRACT_EVENT = "threat.retract";

export const SCOPES = ["ip", "range", "domain", "ja3", "sid"] as const;
export type Scope = (typeof SCOPES)[number];
export const CATEGORIES = ["c2", "malware", "scan", "exploit", "bruteforce", "beaconing", "other"] as const;
export type Category = (typeof CATEGORIES)[number];
export const SEVERITIES = ["critical", "high", "medium", "low"] as const;
export type AdvisorySeverity = (typeof SEVERITIES)[number];

export interface Indicator {
  scope: Scope;
  /** Canonical: see normalizeIndicator. */
  value: string;
}

export interface AdvisoryPayload {
  v: 1;
  kind: "advisory";
  indicators: Indicator[];
  category: Category;
  severity: AdvisorySeverity;
  /** 0-100: how sure the reporter is. Recorded and shown; a decision counts reporters, not confidence. */
  confidence: number;
  /** Seconds the advice holds, from the checkpoint that finalizes it. */
  ttl: number;
  /** Ids of the microblocks that are its evidence (the Suricata alert, the Zeek notice). */
  evidence: string[];
  reason?: string;
  /** The intel.rules entry that made it, when a rule did. */
  rule?: string;
}

export interface RetractPayload {
  v: 1;
  kind: "retract";
  /** Withdraws this reporter's earlier advice on these indicators. */
  indicators: Indicator[];
  reason?: string;
}

export type IntelPayload = AdvisoryPayload | RetractPayload;

export const MAX_INDICATORS = 64;
export const MAX_EVIDENCE = 64;
export const MIN_TTL_S = 60;
export const MAX_TTL_S = 30 * 86400;
const MAX_REASON = 256;
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** One text per indicator, whoever wrote it: addresses in RFC 5952 / dotted form, ranges with host bits zero, names in lower case. */
export function normalizeIndicator(scope: Scope, raw: string): string {
  const text = raw.trim();
  switch (scope) {
    case "ip": {
      const ip = canonicalIp(text);
      if (ip === null) throw new SchemaError(`indicator ip:${raw}: not an IPv4 or IPv6 address`);
      return ip;
    }
    case "range": {
      const c = parseCidr(text);
      if (c === null || !text.includes("/")) throw new SchemaError(`indicator range:${raw}: not a CIDR range with its host bits zero (e.g. 203.0.113.0/24)`);
      return formatCidr(c);
    }
    case "domain": {
      const d = text.toLowerCase().replace(/\.$/, "");
      if (!DOMAIN.test(d) || !d.includes(".")) throw new SchemaError(`indicator domain:${raw}: not a domain name`);
      return d;
    }
    case "ja3": {
      const h = text.toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(h)) throw new SchemaError(`indicator ja3:${raw}: a JA3 hash is 32 hex digits`);
      return h;
    }
    case "sid": {
      if (!/^[1-9]\d{0,9}$/.test(text) || +text > 0xffffffff) throw new SchemaError(`indicator sid:${raw}: a signature id is a positive 32-bit integer`);
      return text;
    }
  }
}

/** "ip:203.0.113.9", "range:198.51.100.0/24", "domain:evil.example", "ja3:<hash>", "sid:2024897". A bare address is an ip, a bare CIDR a range. */
export function parseIndicatorText(text: string): Indicator {
  const colon = text.indexOf(":");
  const head = colon < 0 ? "" : text.slice(0, colon);
  if ((SCOPES as readonly string[]).includes(head)) return { scope: head as Scope, value: normalizeIndicator(head as Scope, text.slice(colon + 1)) };
  if (canonicalIp(text) !== null) return { scope: "ip", value: normalizeIndicator("ip", text) };
  if (parseCidr(text) !== null && text.includes("/")) return { scope: "range", value: normalizeIndicator("range", text) };
  throw new SchemaError(`indicator ${JSON.stringify(text)}: write SCOPE:VALUE with SCOPE one of ${SCOPES.join(", ")} (e.g. ip:203.0.113.9)`);
}

export function indicatorText(i: Indicator): string {
  return `${i.scope}:${i.value}`;
}

function parseIndicators(v: unknown, what: string): Indicator[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_INDICATORS) throw new SchemaError(`${what}: "indicators" must list 1 to ${MAX_INDICATORS} indicators`);
  const seen = new Set<string>();
  return v.map((x, n) => {
    const o = expectObject(x, `${what} indicator ${n + 1}`);
    expectKeys(o, `${what} indicator ${n + 1}`, ["scope", "value"]);
    if (!(SCOPES as readonly unknown[]).includes(o.scope)) throw new SchemaError(`${what} indicator ${n + 1}: "scope" must be one of ${SCOPES.join(", ")}`);
    if (typeof o.value !== "string" || o.value.length > 256) throw new SchemaError(`${what} indicator ${n + 1}: "value" must be a string`);
    const scope = o.scope as Scope;
    // Canonical on the wire: a second spelling of one host would count as a second indicator.
    if (normalizeIndicator(scope, o.value) !== o.value) throw new SchemaError(`${what} indicator ${n + 1}: ${scope}:${o.value} is not in canonical form`);
    const key = `${scope}:${o.value}`;
    if (seen.has(key)) throw new SchemaError(`${what}: indicator ${key} is listed twice`);
    seen.add(key);
    return { scope, value: o.value };
  });
}

function optionalText(o: Record<string, unknown>, k: string, what: string, max: number): void {
  if (!(k in o)) return;
  const v = o[k];
  if (typeof v !== "string" || v.length === 0 || v.length > max) throw new SchemaError(`${what}: "${k}" must be 1 to ${max} characters`);
}

/** Exact schema of a threat.advisory or threat.retract payload. */
export function parseIntelPayload(value: unknown, eventType: string): IntelPayload {
  const what = eventType === RETRACT_EVENT ? "retraction" : "advisory";
  const o = expectObject(value, what);
  literalField(o, "v", what, 1);
  if (eventType === RETRACT_EVENT) {
    expectKeys(o, what, ["v", "kind", "indicators"], ["reason"]);
    literalField(o, "kind", what, "retract");
    parseIndicators(o.indicators, what);
    optionalText(o, "reason", what, MAX_REASON);
    return o as unknown as RetractPayload;
  }
  if (eventType !== ADVISORY_EVENT) throw new SchemaError(`${eventType} is not an intel event type`);
  expectKeys(o, what, ["v", "kind", "indicators", "category", "severity", "confidence", "ttl", "evidence"], ["reason", "rule"]);
  literalField(o, "kind", what, "advisory");
  parseIndicators(o.indicators, what);
  if (!(CATEGORIES as readonly unknown[]).includes(o.category)) throw new SchemaError(`${what}: "category" must be one of ${CATEGORIES.join(", ")}`);
  if (!(SEVERITIES as readonly unknown[]).includes(o.severity)) throw new SchemaError(`${what}: "severity" must be one of ${SEVERITIES.join(", ")}`);
  intField(o, "confidence", what, 0, 100);
  intField(o, "ttl", what, MIN_TTL_S, MAX_TTL_S);
  if (!Array.isArray(o.evidence) || o.evidence.length > MAX_EVIDENCE || !o.evidence.every((e) => isHex(e, 32))) {
    throw new SchemaError(`${what}: "evidence" must list at most ${MAX_EVIDENCE} microblock ids (64 hex digits)`);
  }
  if (new Set(o.evidence).size !== o.evidence.length) throw new SchemaError(`${what}: "evidence" lists an id twice`);
  optionalText(o, "reason", what, MAX_REASON);
  if ("rule" in o && (typeof o.rule !== "string" || !RULE_NAME.test(o.rule))) throw new SchemaError(`${what}: "rule" must be 1-64 letters, digits, '.', '_' or '-'`);
  return o as unknown as AdvisoryPayload;
}

export interface AdvisoryInput {
  indicators: Indicator[];
  category: Category;
  severity?: AdvisorySeverity;
  confidence?: number;
  ttl: number;
  evidence?: string[];
  reason?: string;
  rule?: string;
}

/** A payload from already-normalized parts, checked by the same parser that checks a peer's. */
export function makeAdvisory(a: AdvisoryInput): AdvisoryPayload {
  const p: AdvisoryPayload = {
    v: 1,
    kind: "advisory",
    indicators: a.indicators,
    category: a.category,
    severity: a.severity ?? "high",
    confidence: a.confidence ?? 80,
    ttl: a.ttl,
    evidence: a.evidence ?? [],
  };
  if (a.reason !== undefined) p.reason = a.reason;
  if (a.rule !== undefined) p.rule = a.rule;
  return parseIntelPayload(p, ADVISORY_EVENT) as AdvisoryPayload;
}

export function makeRetraction(indicators: Indicator[], reason?: string): RetractPayload {
  const p: RetractPayload = { v: 1, kind: "retract", indicators };
  if (reason !== undefined) p.reason = reason;
  return parseIntelPayload(p, RETRACT_EVENT) as RetractPayload;
}

export function isIntelEvent(eventType: string): boolean {
  return eventType === ADVISORY_EVENT || eventType === RETRACT_EVENT;
}

/** A finalized intel microblock as a node holds it (src/ledger/intel-store.ts). */
export interface FinalizedIntelRow {
  leaf: number;
  id: string;
  node_id: string;
  seq: number;
  /** Epoch of the checkpoint that first included it: its range names the seq. */
  epoch: number;
  event_type: string;
  microblock: Microblock;
  payload: unknown;
  payloadCanonical: string;
}
