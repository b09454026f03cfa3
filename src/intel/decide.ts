// Decisions (DESIGN.md section 12, docs/PROTOCOL.md "Decisions"): a pure, deterministic
// function of the finalized advisories and retractions, the finalized quarantine decisions
// and the genesis policy. Time is the mesh's, never a clock: an advisory holds from the end
// of the epoch whose checkpoint first included it, for its TTL (capped), and the set is
// evaluated at the end of the epoch of the checkpoint in question. So two nodes with the
// same finalized checkpoints compute the same bytes.
import { cidrContains, cidrOverlaps, formatCidr, parseCidr, type Cidr } from "../encoding/ip.ts";
import { formatTime } from "../encoding/time.ts";
import { ADVISORY_EVENT, CATEGORIES, type Category, indicatorText, type Indicator, type IntelPayload, parseIntelPayload, RETRACT_EVENT, SEVERITIES, type AdvisorySeverity } from "../protocol/advisory.ts";
import type { Decision } from "../protocol/decision.ts";
import type { IntelPolicy } from "../protocol/genesis.ts";

/** Never a decision, whatever the genesis says: this host, link-local, multicast, unspecified, broadcast. */
export const BUILTIN_NEVER_BLOCK = ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "fe80::/10", "ff00::/8"] as const;
/** A range wider than this (a /8 of the Internet, say) is refused: one advisory must not black out a continent. */
export const MIN_PREFIX = { 4: 16, 6: 32 } as const;

/** One finalized threat.advisory or threat.retract, as every node holds it (src/ledger/intel-store.ts). */
export interface FinalizedIntel {
  leaf: number;
  id: string;
  node_id: string;
  /** Epoch of the checkpoint that first included it. */
  epoch: number;
  event_type: string;
  /** The payload as stored; parsed here, and one that does not parse counts for nothing. */
  payload: unknown;
}

export interface DecideInput {
  policy: IntelPolicy;
  /** The checkpoint the set is as of: its epoch, and the end of that epoch (ms). */
  epoch: number;
  atMs: number;
  /** End (ms) of an epoch: when advice finalized in it starts to hold. */
  epochEndMs: (epoch: number) => number;
  /** Finalized advisories and retractions of epochs <= `epoch`, in leaf order. */
  entries: readonly FinalizedIntel[];
  /** Whether a node is quarantined by a finalized decision as of `epoch`. */
  quarantined: (nodeId: string) => boolean;
}

export type AdviceStatus = "counted" | "expired" | "retracted" | "superseded" | "quarantined" | "malformed";

export interface AdviceExplained {
  id: string;
  leaf: number;
  node_id: string;
  epoch: number;
  from: string;
  until: string;
  category: Category;
  severity: AdvisorySeverity;
  trusted: boolean;
  status: AdviceStatus;
}

export interface Explanation {
  indicator: Indicator;
  /** The decision it is, or null with the reason it is not. */
  decision: Decision | null;
  refused: string | null;
  advice: AdviceExplained[];
  min_reporters: number;
  epoch: number;
}

interface Advice {
  entry: FinalizedIntel;
  payload: Extract<IntelPayload, { kind: "advisory" }>;
  fromMs: number;
  untilMs: number;
}

interface IndicatorState {
  indicator: Indicator;
  /** The live word of each reporter on it: its latest advice, or none after a retraction. */
  current: Map<string, Advice>;
  /** Everything said about it, for explain. */
  history: { advice: Advice | null; entry: FinalizedIntel; status?: AdviceStatus }[];
}

/** The policy's never_block as ranges (built-ins first); the genesis parser has checked them. */
export function neverBlock(policy: IntelPolicy): Cidr[] {
  return [...BUILTIN_NEVER_BLOCK, ...policy.never_block].map((c) => parseCidr(c)!);
}

/** Why an ip or range indicator may never be a decision, or null. */
export function blockRefusal(indicator: Indicator, never: readonly Cidr[]): string | null {
  if (indicator.scope !== "ip" && indicator.scope !== "range") return null;
  const c = parseCidr(indicator.value);
  if (!c) return "not an address";
  if (c.prefix < MIN_PREFIX[c.family]) return `ranges wider than /${MIN_PREFIX[c.family]} are never blocked`;
  const hit = never.find((n) => (indicator.scope === "ip" ? cidrContains(n, c) : cidrOverlaps(n, c)));
  return hit ? `in never_block (${formatCidr(hit)})` : null;
}

/** A safe integer from (scope, value, until): the same on every node, new when until moves. */
export function decisionId(scope: string, value: string, until: string): number {
  const h = new Bun.CryptoHasher("sha256").update(`dsm-decision\0${scope}\0${value}\0${until}`).digest();
  // 52 bits: a positive safe integer, as CrowdSec's bouncers expect an int id.
  return (h[0]! & 0x0f) * 2 ** 48 + h.readUIntBE(1, 6);
}

function fold(input: DecideInput): Map<string, IndicatorState> {
  const maxTtlMs = input.policy.max_ttl * 1000;
  const states = new Map<string, IndicatorState>();
  const stateOf = (i: Indicator): IndicatorState => {
    const key = indicatorText(i);
    let s = states.get(key);
    if (!s) states.set(key, (s = { indicator: i, current: new Map(), history: [] }));
    return s;
  };
  for (const entry of input.entries) {
    if (entry.epoch > input.epoch) continue;
    let payload: IntelPayload;
    try {
      if (entry.event_type !== ADVISORY_EVENT && entry.event_type !== RETRACT_EVENT) continue;
      payload = parseIntelPayload(entry.payload, entry.event_type);
    } catch {
      continue;
    }
    for (const indicator of payload.indicators) {
      const s = stateOf(indicator);
      const before = s.current.get(entry.node_id);
      if (before) {
        const h = s.history.find((x) => x.advice === before);
        if (h) h.status = payload.kind === "retract" ? "retracted" : "superseded";
      }
      if (payload.kind === "retract") {
        s.current.delete(entry.node_id);
        s.history.push({ advice: null, entry });
        continue;
      }
      const fromMs = input.epochEndMs(entry.epoch);
      const advice: Advice = { entry, payload, fromMs, untilMs: fromMs + Math.min(payload.ttl * 1000, maxTtlMs) };
      s.current.set(entry.node_id, advice);
      s.history.push({ advice, entry });
    }
  }
  return states;
}

interface Judged {
  decision: Decision | null;
  refused: string | null;
  counted: Set<Advice>;
}

function judge(s: IndicatorState, input: DecideInput, never: readonly Cidr[], trusted: ReadonlySet<string>): Judged {
  const live = [...s.current.values()].filter((a) => a.untilMs > input.atMs && !input.quarantined(a.entry.node_id));
  const counted = new Set(live);
  const refusal = blockRefusal(s.indicator, never);
  if (refusal) return { decision: null, refused: refusal, counted };
  const k = input.policy.min_reporters;
  let untilMs = -Infinity;
  let sinceMs = Infinity;
  const byUntil = [...live].sort((a, b) => b.untilMs - a.untilMs);
  // Held as long as k reporters' advice is: until the k-th latest expiry.
  if (byUntil.length >= k) {
    untilMs = byUntil[k - 1]!.untilMs;
    sinceMs = [...live].map((a) => a.fromMs).sort((a, b) => a - b)[k - 1]!;
  }
  for (const a of live) {
    if (!trusted.has(a.entry.node_id)) continue;
    untilMs = Math.max(untilMs, a.untilMs);
    sinceMs = Math.min(sinceMs, a.fromMs);
  }
  if (!(untilMs > input.atMs)) {
    return { decision: null, refused: live.length === 0 ? "no live advice" : `${live.length} of the ${k} reporters needed`, counted };
  }
  const decidingEpoch = live.filter((a) => a.fromMs <= sinceMs).reduce((e, a) => (a.fromMs === sinceMs ? Math.max(e, a.entry.epoch) : e), -1);
  const until = formatTime(untilMs);
  const decision: Decision = {
    id: decisionId(s.indicator.scope, s.indicator.value, until),
    scope: s.indicator.scope,
    value: s.indicator.value,
    category: commonest(live.map((a) => a.payload.category)),
    severity: SEVERITIES[Math.min(...live.map((a) => SEVERITIES.indexOf(a.payload.severity)))]!,
    since: formatTime(sinceMs),
    until,
    epoch: decidingEpoch,
    reporters: [...new Set(live.map((a) => a.entry.node_id))].sort(),
    advisories: live.map((a) => a.entry).sort((a, b) => a.leaf - b.leaf).map((e) => e.id),
  };
  return { decision, refused: null, counted };
}

function commonest(categories: Category[]): Category {
  const n = new Map<Category, number>();
  for (const c of categories) n.set(c, (n.get(c) ?? 0) + 1);
  // Ties go to the order of CATEGORIES, so no node's Map order decides.
  return [...CATEGORIES].sort((a, b) => (n.get(b) ?? 0) - (n.get(a) ?? 0) || CATEGORIES.indexOf(a) - CATEGORIES.indexOf(b))[0]!;
}

const rankOf = (d: Decision): number[] => [-d.reporters.length, SEVERITIES.indexOf(d.severity), Date.parse(d.since)];

function byRank(a: Decision, b: Decision): number {
  const ra = rankOf(a);
  const rb = rankOf(b);
  for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i]! - rb[i]!;
  return byIndicator(a, b);
}

function byIndicator(a: Decision, b: Decision): number {
  return a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/**
 * The decision set as of a checkpoint, sorted by scope then value, at most
 * policy.max_decisions (the most corroborated, then the most severe, then the oldest).
 */
export function decide(input: DecideInput): Decision[] {
  const never = neverBlock(input.policy);
  const trusted = new Set(input.policy.trusted);
  const out: Decision[] = [];
  for (const s of fold(input).values()) {
    const j = judge(s, input, never, trusted);
    if (j.decision) out.push(j.decision);
  }
  return capped(out, input.policy.max_decisions).sort(byIndicator);
}

function capped(decisions: Decision[], max: number): Decision[] {
  return decisions.length <= max ? decisions : decisions.sort(byRank).slice(0, max);
}

/** What dsm decisions explain shows: every word on one indicator and what came of it. */
export function explain(input: DecideInput, indicator: Indicator): Explanation {
  const never = neverBlock(input.policy);
  const trusted = new Set(input.policy.trusted);
  const states = fold(input);
  const s = states.get(indicatorText(indicator)) ?? { indicator, current: new Map(), history: [] };
  const j = judge(s, input, never, trusted);
  let decision = j.decision;
  let refused = j.refused;
  if (decision) {
    // Also judged against the cap, which needs the whole set.
    const all = decide(input);
    if (!all.some((d) => d.id === decision!.id)) [decision, refused] = [null, `over the cap of ${input.policy.max_decisions} decisions`];
  }
  const advice: AdviceExplained[] = s.history.flatMap((h) => {
      const a = h.advice;
      if (a === null) return [];
      let status: AdviceStatus = h.status ?? "counted";
      if (status === "counted") {
        if (input.quarantined(a.entry.node_id)) status = "quarantined";
        else if (a.untilMs <= input.atMs) status = "expired";
      }
      return {
        id: a.entry.id,
        leaf: a.entry.leaf,
        node_id: a.entry.node_id,
        epoch: a.entry.epoch,
        from: formatTime(a.fromMs),
        until: formatTime(a.untilMs),
        category: a.payload.category,
        severity: a.payload.severity,
        trusted: trusted.has(a.entry.node_id),
        status,
      };
  });
  return { indicator: s.indicator, decision, refused, advice, min_reporters: input.policy.min_reporters, epoch: input.epoch };
}
