// The values of the intel section that the scalar rules of config.ts cannot express:
// intel.rules (a list of mappings) and intel.local_networks (a list of CIDR ranges).
// Pure. The config layer sits below protocol, so the category and severity names of an
// advisory are repeated here; src/intel/rules.ts fails to compile if the two drift apart.
import { formatCidr, parseCidr } from "../encoding/ip.ts";
import { parseDuration } from "../encoding/duration.ts";

export const RULE_CATEGORIES = ["c2", "malware", "scan", "exploit", "bruteforce", "beaconing", "other"] as const;
export const RULE_SEVERITIES = ["critical", "high", "medium", "low"] as const;
/** The advisory TTL bounds (protocol/advisory.ts MIN_TTL_S, MAX_TTL_S; the tests hold them equal). */
export const RULE_TTL_MIN_S = 60;
export const RULE_TTL_MAX_S = 30 * 86400;
/** Bounds that keep a threshold's memory small: at most `count` times kept per indicator. */
export const THRESHOLD_MAX_COUNT = 1000;
export const THRESHOLD_MAX_WINDOW_S = 86400;
export const MAX_RULES = 64;

/**
 * Where a rule takes its indicator from, in the clear record:
 *   src_ip / dest_ip    Suricata src_ip / dest_ip, Zeek id.orig_h / id.resp_h (a notice's src / dst)
 *   alert.source.ip     Suricata 7's alert.source.ip (the rule's idea of the attacker), else src_ip
 *   seen.indicator      a Zeek intel hit's seen.indicator, scoped by seen.indicator_type
 */
export const RULE_INDICATORS = ["src_ip", "dest_ip", "alert.source.ip", "seen.indicator"] as const;
export type RuleIndicator = (typeof RULE_INDICATORS)[number];

export interface IntelRuleMatch {
  /** The microblock event type, e.g. suricata.alert, zeek.notice, zeek.intel. */
  event_type: string;
  /** Suricata alert.severity values (1 is the most severe). */
  severity?: number[];
  /** Suricata alert.category texts. */
  categories?: string[];
  /** Suricata alert.signature_id values. */
  signature_ids?: number[];
  /** Zeek notice names (note), e.g. Scan::Port_Scan. */
  notes?: string[];
}

export interface IntelRuleConfig {
  name: string;
  match: IntelRuleMatch;
  indicator: RuleIndicator;
  category: (typeof RULE_CATEGORIES)[number];
  severity: (typeof RULE_SEVERITIES)[number];
  confidence: number;
  /** Seconds. */
  ttl: number;
  /** Advise once `count` matching events with the same indicator fall within `window` seconds; null: at the first. */
  threshold: { count: number; window: number } | null;
}

/** A problem in one rule: its index (0-based) and the key inside it, when known. */
export class RuleProblem extends Error {
  constructor(message: string, readonly item: number | null = null, readonly key: string | null = null) {
    super(message);
  }
}

const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const EVENT_TYPE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const ALERT_TYPES = ["suricata.alert", "suricata.drop"];
const RULE_KEYS = ["name", "match", "indicator", "category", "severity", "confidence", "ttl", "threshold"];
const MATCH_KEYS = ["event_type", "severity", "categories", "signature_ids", "notes"];

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const shown = (v: unknown): string => (v === null || v === undefined ? "nothing" : Array.isArray(v) ? "a list" : isMapping(v) ? "a mapping" : JSON.stringify(v));

function unknownKey(key: string, known: readonly string[]): string {
  return `unknown key ${JSON.stringify(key)}; known keys: ${known.join(", ")}`;
}

/** intel.rules: a YAML list of rule mappings, each checked in full; names are unique. */
export function parseIntelRules(value: unknown): IntelRuleConfig[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw new RuleProblem(`expected a list of rules (- name: ...), got ${shown(value)}`);
  if (value.length > MAX_RULES) throw new RuleProblem(`at most ${MAX_RULES} rules, got ${value.length}`);
  const names = new Map<string, number>();
  return value.map((item, i) => {
    const rule = parseRule(item, i);
    const first = names.get(rule.name);
    if (first !== undefined) throw new RuleProblem(`rule name ${JSON.stringify(rule.name)} is also rule ${first + 1}'s: names must be unique`, i, "name");
    names.set(rule.name, i);
    return rule;
  });
}

function parseRule(item: unknown, i: number): IntelRuleConfig {
  const fail = (key: string | null, message: string): never => {
    throw new RuleProblem(message, i, key);
  };
  if (!isMapping(item)) return fail(null, `expected a mapping (name, match, category, ttl, ...), got ${shown(item)}`);
  for (const k of Object.keys(item)) if (!RULE_KEYS.includes(k)) fail(k, unknownKey(k, RULE_KEYS));
  const name = item.name;
  if (typeof name !== "string" || !RULE_NAME.test(name)) fail("name", `expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got ${shown(name)}`);
  const match = parseMatch(item.match, fail);
  const indicator = item.indicator ?? (match.event_type === "zeek.intel" ? "seen.indicator" : "src_ip");
  if (!(RULE_INDICATORS as readonly unknown[]).includes(indicator)) fail("indicator", `expected one of ${RULE_INDICATORS.join(", ")}, got ${shown(indicator)}`);
  if (indicator === "alert.source.ip" && !ALERT_TYPES.includes(match.event_type)) fail("indicator", `alert.source.ip is read from Suricata alerts: match.event_type must be ${ALERT_TYPES.join(" or ")}`);
  if (indicator === "seen.indicator" && match.event_type !== "zeek.intel") fail("indicator", "seen.indicator is read from Zeek intel hits: match.event_type must be zeek.intel");
  if (!(RULE_CATEGORIES as readonly unknown[]).includes(item.category)) fail("category", `expected one of ${RULE_CATEGORIES.join(", ")}, got ${shown(item.category)}`);
  const severity = item.severity ?? "high";
  if (!(RULE_SEVERITIES as readonly unknown[]).includes(severity)) fail("severity", `expected one of ${RULE_SEVERITIES.join(", ")}, got ${shown(severity)}`);
  const confidence = item.confidence ?? 80;
  if (typeof confidence !== "number" || !Number.isInteger(confidence) || confidence < 0 || confidence > 100) fail("confidence", `expected an integer between 0 and 100, got ${shown(confidence)}`);
  const ttl = durationOf(item.ttl, RULE_TTL_MIN_S, RULE_TTL_MAX_S, (m) => fail("ttl", m));
  let threshold: IntelRuleConfig["threshold"] = null;
  if (item.threshold !== undefined && item.threshold !== null) {
    const t = item.threshold;
    if (!isMapping(t)) return fail("threshold", `expected a mapping { count: N, window: DURATION }, got ${shown(t)}`);
    for (const k of Object.keys(t)) if (k !== "count" && k !== "window") fail(`threshold.${k}`, unknownKey(k, ["count", "window"]));
    const count = t.count;
    if (typeof count !== "number" || !Number.isInteger(count) || count < 1 || count > THRESHOLD_MAX_COUNT) fail("threshold.count", `expected an integer between 1 and ${THRESHOLD_MAX_COUNT}, got ${shown(count)}`);
    const window = durationOf(t.window, 1, THRESHOLD_MAX_WINDOW_S, (m) => fail("threshold.window", m));
    threshold = { count: count as number, window };
  }
  return {
    name: name as string,
    match,
    indicator: indicator as RuleIndicator,
    category: item.category as IntelRuleConfig["category"],
    severity: severity as IntelRuleConfig["severity"],
    confidence: confidence as number,
    ttl,
    threshold,
  };
}

function parseMatch(m: unknown, fail: (key: string | null, message: string) => never): IntelRuleMatch {
  if (!isMapping(m)) return fail("match", `expected a mapping with at least event_type (e.g. { event_type: suricata.alert, severity: [1] }), got ${shown(m)}`);
  for (const k of Object.keys(m)) if (!MATCH_KEYS.includes(k)) fail(`match.${k}`, unknownKey(k, MATCH_KEYS));
  const type = m.event_type;
  if (typeof type !== "string" || !EVENT_TYPE.test(type)) fail("match.event_type", `expected an event type such as suricata.alert, zeek.notice or zeek.intel, got ${shown(type)}`);
  const out: IntelRuleMatch = { event_type: type as string };
  const alertOnly = (key: string) => {
    if (!ALERT_TYPES.includes(out.event_type)) fail(`match.${key}`, `${key} is read from Suricata alerts: match.event_type must be ${ALERT_TYPES.join(" or ")}`);
  };
  if (m.severity !== undefined) {
    alertOnly("severity");
    out.severity = listOf(m.severity, (v) => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 255, "Suricata alert severities (integers 1-255, 1 the most severe)", (msg) => fail("match.severity", msg));
  }
  if (m.categories !== undefined) {
    alertOnly("categories");
    out.categories = listOf(m.categories, (v) => typeof v === "string" && v !== "", "Suricata alert categories (non-empty texts)", (msg) => fail("match.categories", msg));
  }
  if (m.signature_ids !== undefined) {
    alertOnly("signature_ids");
    out.signature_ids = listOf(m.signature_ids, (v) => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 0xffffffff, "signature ids (integers 1-4294967295)", (msg) => fail("match.signature_ids", msg));
  }
  if (m.notes !== undefined) {
    if (out.event_type !== "zeek.notice") fail("match.notes", "notes are read from Zeek notices: match.event_type must be zeek.notice");
    out.notes = listOf(m.notes, (v) => typeof v === "string" && v !== "", "Zeek notice names (e.g. Scan::Port_Scan)", (msg) => fail("match.notes", msg));
  }
  return out;
}

function listOf<T>(v: unknown, ok: (x: unknown) => boolean, what: string, fail: (m: string) => never): T[] {
  if (!Array.isArray(v) || v.length === 0) return fail(`expected a non-empty list of ${what}, got ${shown(v)}`);
  const bad = v.findIndex((x) => !ok(x));
  if (bad >= 0) fail(`item ${bad + 1}: expected one of ${what}, got ${shown(v[bad])}`);
  return v as T[];
}

function durationOf(v: unknown, min: number, max: number, fail: (m: string) => never): number {
  // A bare YAML number is seconds, as parseDuration reads a bare number.
  const s = typeof v === "number" && Number.isInteger(v) ? v : typeof v === "string" ? parseDuration(v) : null;
  if (s === null || s < min || s > max) return fail(`expected a duration between ${min}s and ${max}s such as 90s, 30m, 4h, 7d, got ${shown(v)}`);
  return s;
}

/**
 * intel.local_networks: a YAML list of CIDR ranges (a bare address is its /32 or /128), or,
 * from an environment variable, the same list comma-separated. Returned canonical.
 */
export function parseNetworkList(value: unknown, fromText: boolean): string[] {
  const items = fromText && typeof value === "string" ? value.split(",").map((s) => s.trim()).filter((s) => s !== "") : value;
  if (!Array.isArray(items)) throw new RuleProblem(`expected a list of CIDR ranges (e.g. [10.0.0.0/8, fc00::/7])${fromText ? " or a comma-separated text" : ""}, got ${shown(value)}`);
  return items.map((x, i) => {
    const c = typeof x === "string" ? parseCidr(x.trim()) : null;
    if (c === null) throw new RuleProblem(`item ${i + 1}: expected a CIDR range with its host bits zero (e.g. 192.168.0.0/16), got ${shown(x)}`);
    return formatCidr(c);
  });
}

// ---------------------------------------------------------------------------------------------
// Lines of list items, for errors: the YAML parser gives values, not positions.

/**
 * The 1-based lines where the block sequence under the key on line `keyLine` starts each item
 * ("- ..."), in order; empty for a flow list ([...]) or when nothing is found.
 */
export function sequenceItemLines(lines: readonly string[], keyLine: number): number[] {
  const keyIndent = indentOf(lines[keyLine - 1] ?? "");
  const out: number[] = [];
  let itemIndent = -1;
  for (let i = keyLine; i < lines.length; i++) {
    const text = lines[i]!;
    const ind = indentOf(text);
    if (ind >= text.length || text[ind] === "#") continue;
    const isItem = text[ind] === "-" && (ind + 1 === text.length || text[ind + 1] === " ");
    // A block sequence may sit at its key's own column; anything else at or left of it ends the value.
    if (ind < keyIndent || (ind === keyIndent && !isItem)) break;
    if (isItem && (itemIndent < 0 || ind === itemIndent)) {
      itemIndent = ind;
      out.push(i + 1);
    } else if (itemIndent >= 0 && ind < itemIndent) break;
  }
  return out;
}

/**
 * The line (1-based, in [from, to)) that sets the key path `keys` inside the sequence item
 * starting on line `from`: each key at the column of the item's own keys, then deeper than
 * its parent. The last line found when a key is not (a flow mapping, say); the item's line at least.
 */
export function keyPathLine(lines: readonly string[], from: number, to: number, keys: readonly string[]): number {
  const first = lines[from - 1] ?? "";
  const dash = indentOf(first);
  // "- name: x": the item's keys start after the dash and its blanks.
  let col = dash + 1;
  while (first[col] === " ") col++;
  let line = from;
  let exact = true;
  for (const key of keys) {
    let found: number | null = null;
    for (let n = line; n < to && n <= lines.length && found === null; n++) {
      const text = lines[n - 1]!;
      const at = n === from ? col : indentOf(text);
      if (!new RegExp(`^${escapeRe(key)}\\s*:`).test(text.slice(at))) continue;
      if (exact ? at === col : at > col) {
        found = n;
        col = at;
      }
    }
    if (found === null) return line;
    line = found;
    exact = false;
  }
  return line;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function indentOf(line: string): number {
  let i = 0;
  while (line[i] === " ") i++;
  return i;
}
