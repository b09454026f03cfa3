// intel.rules: which ingested events make a threat advisory, and when. Pure: no I/O, and
// the clock is passed in. Two halves, because dsm ingest prepares lines on a worker thread:
// matchRecord runs there, on the clear record (before privacy.anonymize_ips hashes it), and
// yields hits (rule, indicator, event time); a RuleEngine on the writing thread counts
// thresholds and keeps one live advisory per indicator per rule, once the events that are
// its evidence have their microblock ids.
import type { IntelRuleConfig } from "../config/config.ts";
import { type Cidr, cidrOverlaps, parseCidr } from "../encoding/ip.ts";
import { formatDuration } from "../encoding/duration.ts";
import {
  type AdvisoryInput,
  type AdvisorySeverity,
  type Category,
  type Indicator,
  indicatorText,
  MAX_EVIDENCE,
  normalizeIndicator,
  type Scope,
} from "../protocol/advisory.ts";

// The config layer repeats the advisory's names (it sits below protocol): this fails to
// compile the day they differ.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const categoriesAgree: Same<IntelRuleConfig["category"], Category> = true;
const severitiesAgree: Same<IntelRuleConfig["severity"], AdvisorySeverity> = true;
void categoriesAgree, severitiesAgree;

/** What the worker hands back for one event: rule `rule` (its index) matched it, naming `indicator`. */
export interface RuleHit {
  rule: number;
  indicator: Indicator;
  /** The event's own time (Suricata timestamp, Zeek ts), null when it has none that reads. */
  atMs: number | null;
  /** A few words on what matched, for the advisory's reason ("sid 2024897"). No addresses. */
  detail: string;
}

/** Rules ready to match: plain data, so it crosses to the worker thread as it is. */
export interface CompiledRules {
  rules: IntelRuleConfig[];
  local: Cidr[];
}

export function compileRules(rules: readonly IntelRuleConfig[], localNetworks: readonly string[]): CompiledRules {
  return { rules: [...rules], local: localNetworks.map((n) => parseCidr(n)!).filter((c) => c !== null) };
}

/** True when the address or range shares an address with a local network: never advised. */
export function isLocal(local: readonly Cidr[], indicator: Indicator): boolean {
  if (indicator.scope !== "ip" && indicator.scope !== "range") return false;
  const c = parseCidr(indicator.value);
  return c !== null && local.some((n) => cidrOverlaps(n, c));
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Zeek's intel types that name something an advisory can carry. */
const ZEEK_INTEL_SCOPES: Readonly<Record<string, Scope>> = {
  "Intel::ADDR": "ip",
  "Intel::SUBNET": "range",
  "Intel::DOMAIN": "domain",
  "Intel::JA3": "ja3",
};

/**
 * The hits of one event, of type `eventType` (as the ingest mapping named it), read from the
 * clear record; null when no rule matched. Local addresses and values that are not a valid
 * indicator give no hit.
 */
export function matchRecord(c: CompiledRules, eventType: string, record: Obj): RuleHit[] | null {
  let hits: RuleHit[] | null = null;
  for (let i = 0; i < c.rules.length; i++) {
    const rule = c.rules[i]!;
    if (rule.match.event_type !== eventType || !conditionsHold(rule, record)) continue;
    const indicator = indicatorOf(rule, record);
    if (indicator === null || isLocal(c.local, indicator)) continue;
    (hits ??= []).push({ rule: i, indicator, atMs: eventTimeMs(record), detail: detailOf(rule, record) });
  }
  return hits;
}

function conditionsHold(rule: IntelRuleConfig, record: Obj): boolean {
  const m = rule.match;
  if (m.severity || m.categories || m.signature_ids) {
    const alert = isObj(record.alert) ? record.alert : null;
    if (alert === null) return false;
    if (m.severity && !m.severity.includes(alert.severity as number)) return false;
    if (m.categories && !m.categories.includes(alert.category as string)) return false;
    if (m.signature_ids && !m.signature_ids.includes(alert.signature_id as number)) return false;
  }
  if (m.notes && !m.notes.includes(record.note as string)) return false;
  return true;
}

/** A Zeek field written flat ("id.orig_h", the JSON writer's default) or nested ({ id: { orig_h } }). */
function zeekField(record: Obj, outer: string, inner: string): unknown {
  const flat = record[`${outer}.${inner}`];
  if (flat !== undefined) return flat;
  const o = record[outer];
  return isObj(o) ? o[inner] : undefined;
}

function address(v: unknown): Indicator | null {
  if (typeof v !== "string") return null;
  try {
    return { scope: "ip", value: normalizeIndicator("ip", v) };
  } catch {
    return null;
  }
}

function indicatorOf(rule: IntelRuleConfig, r: Obj): Indicator | null {
  switch (rule.indicator) {
    case "src_ip":
      return address(r.src_ip ?? zeekField(r, "id", "orig_h") ?? r.src);
    case "dest_ip":
      return address(r.dest_ip ?? zeekField(r, "id", "resp_h") ?? r.dst);
    case "alert.source.ip": {
      // Suricata 7 names the attacker of signatures that say so (target:dest_ip and the like).
      const source = isObj(r.alert) && isObj(r.alert.source) ? r.alert.source.ip : undefined;
      return address(source ?? r.src_ip);
    }
    case "seen.indicator": {
      const scope = ZEEK_INTEL_SCOPES[zeekField(r, "seen", "indicator_type") as string];
      const value = zeekField(r, "seen", "indicator");
      if (scope === undefined || typeof value !== "string") return null;
      try {
        // Zeek writes an Intel::SUBNET like any CIDR; a bare address there is its /32.
        return { scope, value: normalizeIndicator(scope, scope === "range" && !value.includes("/") ? `${value}/${value.includes(":") ? 128 : 32}` : value) };
      } catch {
        return null;
      }
    }
  }
}

function detailOf(rule: IntelRuleConfig, r: Obj): string {
  const alert = isObj(r.alert) ? r.alert : null;
  if (alert && typeof alert.signature_id === "number") return `${rule.match.event_type} sid ${alert.signature_id}`;
  if (typeof r.note === "string" && /^[\w:.-]{1,64}$/.test(r.note)) return `${rule.match.event_type} ${r.note}`;
  const type = zeekField(r, "seen", "indicator_type");
  if (typeof type === "string" && type in ZEEK_INTEL_SCOPES) return `${rule.match.event_type} ${type}`;
  return rule.match.event_type;
}

// Suricata: 2026-06-26T11:00:03.342282-0400 (no colon in the offset); Zeek: epoch seconds, or ISO 8601.
const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$/;

/** The event's time in ms, or null when it has none that reads. */
export function eventTimeMs(r: Obj): number | null {
  const t = r.timestamp ?? r.ts;
  if (typeof t === "number") return Number.isFinite(t) && t > 0 ? Math.round(t * 1000) : null;
  if (typeof t !== "string") return null;
  const m = ISO.exec(t);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as number[];
  const ms = Number(`0.${m[7] ?? "0"}`) * 1000;
  let off = 0;
  if (m[8] && m[8] !== "Z") {
    const z = m[8].replace(":", "");
    off = (z[0] === "-" ? -1 : 1) * (Number(z.slice(1, 3)) * 60 + Number(z.slice(3, 5))) * 60_000;
  }
  const v = Date.UTC(y!, mo! - 1, d!, h!, mi!, s!) + Math.floor(ms) - off;
  return Number.isFinite(v) ? v : null;
}

// ---------------------------------------------------------------------------------------------
// Thresholds and deduplication.

/** An advisory this node made by a rule, as read back from its ledger (recent.ts). */
export interface IssuedAdvisory {
  rule: string;
  indicators: Indicator[];
  /** When it was made (its microblock's timestamp). */
  atMs: number;
  ttl: number;
}

export interface EngineLimits {
  /** Indicators whose recent events a threshold rule follows (least recently seen dropped first). */
  maxTracked: number;
  /** Live advisories remembered for deduplication (expired ones dropped first, then the oldest). */
  maxLive: number;
}

export const DEFAULT_LIMITS: EngineLimits = { maxTracked: 4096, maxLive: 65_536 };

interface Track {
  /** The last `count` event times and their microblock ids, oldest first. */
  times: number[];
  ids: string[];
}

export class RuleEngine {
  readonly #rules: readonly IntelRuleConfig[];
  readonly #limits: EngineLimits;
  /** Per rule index: indicator text -> recent events (threshold rules only). */
  readonly #tracks: Map<string, Track>[];
  /** rule name + "\n" + indicator text -> when its live advisory was made, and its ttl. */
  readonly #live = new Map<string, { atMs: number; ttl: number }>();

  constructor(rules: readonly IntelRuleConfig[], limits: EngineLimits = DEFAULT_LIMITS) {
    this.#rules = rules;
    this.#limits = limits;
    this.#tracks = rules.map(() => new Map());
  }

  /** This node's earlier advisories (from its ledger, after a restart): they count as live. */
  seed(issued: readonly IssuedAdvisory[]): void {
    const names = new Set(this.#rules.map((r) => r.name));
    for (const a of [...issued].sort((x, y) => x.atMs - y.atMs)) {
      if (!names.has(a.rule)) continue;
      for (const i of a.indicators) this.#remember(`${a.rule}\n${indicatorText(i)}`, a.atMs, a.ttl, a.atMs);
    }
  }

  /** Live advisories remembered (for tests and status). */
  get liveCount(): number {
    return this.#live.size;
  }

  /**
   * One hit, whose event is microblock `evidence`, at wall-clock time nowMs: the advisory to
   * make now, or null (below its threshold, or one made earlier by this rule is still fresh:
   * less than half its ttl old). Thresholds count by the events' own times, so a file read
   * long after it was written counts as it happened; freshness is by the clock, as a ttl is.
   */
  observe(hit: RuleHit, evidence: string, nowMs: number): AdvisoryInput | null {
    const rule = this.#rules[hit.rule];
    if (rule === undefined) return null;
    const key = indicatorText(hit.indicator);
    let ids = [evidence];
    let reason = hit.detail;
    if (rule.threshold) {
      const t = this.#track(hit.rule, key);
      t.times.push(hit.atMs ?? nowMs);
      t.ids.push(evidence);
      if (t.times.length > rule.threshold.count) {
        t.times.shift();
        t.ids.shift();
      }
      if (t.times.length < rule.threshold.count) return null;
      // Out-of-order times are possible (several sensors, one file): the span of the kept ones.
      if (Math.max(...t.times) - Math.min(...t.times) > rule.threshold.window * 1000) return null;
      ids = t.ids.slice(-MAX_EVIDENCE);
      reason = `${rule.threshold.count} events in ${formatDuration(rule.threshold.window)} (${hit.detail})`;
    }
    const liveKey = `${rule.name}\n${key}`;
    const live = this.#live.get(liveKey);
    if (live && nowMs < live.atMs + (live.ttl * 1000) / 2) return null;
    this.#remember(liveKey, nowMs, rule.ttl, nowMs);
    return {
      indicators: [hit.indicator],
      category: rule.category,
      severity: rule.severity,
      confidence: rule.confidence,
      ttl: rule.ttl,
      evidence: [...new Set(ids)],
      reason: reason.slice(0, 256),
      rule: rule.name,
    };
  }

  #track(rule: number, key: string): Track {
    const tracks = this.#tracks[rule]!;
    let t = tracks.get(key);
    if (t) tracks.delete(key); // re-inserted below: the map's order is least recently seen first
    else t = { times: [], ids: [] };
    tracks.set(key, t);
    if (tracks.size > this.#limits.maxTracked) tracks.delete(tracks.keys().next().value!);
    return t;
  }

  #remember(key: string, atMs: number, ttl: number, nowMs: number): void {
    this.#live.delete(key);
    this.#live.set(key, { atMs, ttl });
    if (this.#live.size <= this.#limits.maxLive) return;
    for (const [k, v] of this.#live) if (v.atMs + v.ttl * 1000 <= nowMs) this.#live.delete(k);
    while (this.#live.size > this.#limits.maxLive) this.#live.delete(this.#live.keys().next().value!);
  }
}
