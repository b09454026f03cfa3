// The seed's event-handler API, over DSMNode: what an integration calls from code
// instead of piping lines into dsm ingest.
import type { Microblock } from "../protocol/microblock.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { formatTime } from "../encoding/time.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import type { EventPayload } from "../ingest/records.ts";
import type { Anonymizer } from "../ingest/prepare.ts";
import { isHex } from "../encoding/hex.ts";
import { formatDuration } from "../encoding/duration.ts";
import { ADVISORY_EVENT, type Category, CATEGORIES, type Indicator, indicatorText, makeAdvisory, MAX_TTL_S, MIN_TTL_S, normalizeIndicator } from "../protocol/advisory.ts";
import { compileRules, isLocal } from "../intel/rules.ts";
import type { DSMNode } from "./node.ts";

export class SecurityEventHandler {
  constructor(private readonly node: DSMNode) {}

  /** A Suricata EVE record (alert, anomaly, drop, ...), as parsed JSON. */
  onSuricataAlert(record: Record<string, unknown>): Promise<Microblock> {
    return this.#record(record, "suricata");
  }

  /** A Zeek JSON log record (notice, weird, intel, ...). */
  onZeekNotice(record: Record<string, unknown>): Promise<Microblock> {
    return this.#record(record, "zeek");
  }

  /** The same path as dsm ingest: IPs anonymised before event_id is derived. */
  async #record(record: Record<string, unknown>, format: "suricata" | "zeek"): Promise<Microblock> {
    const [mb] = await this.node.append([this.node.prepareRecord(record, format)]);
    return mb!;
  }
}

export const MITIGATION_ACTIONS = ["block", "rate_limit", "alert", "quarantine"] as const;
export type MitigationAction = (typeof MITIGATION_ACTIONS)[number];

export const MITIGATION_SCOPES = ["ip", "range"] as const;
export type MitigationScope = (typeof MITIGATION_SCOPES)[number];

export interface Mitigation {
  action: MitigationAction;
  target: string;
  success?: boolean;
  reason?: string;
  /** Seconds the action holds (a block for 4h: 14400). A successful block with one also advises the mesh. */
  duration?: number;
  /** What the target is: one address, or a CIDR range. Default: range when the target has a "/", else ip. */
  scope?: MitigationScope;
  /** The category of the advisory a block with a duration makes (default other). */
  category?: Category;
}

/** The outcome of a mitigation record: its microblock, and the advisory it made (or why none). */
export interface MitigationRecorded {
  mitigation: Microblock;
  advisory: Microblock | null;
  /** The indicators the advisory names (none without one). */
  indicators: Indicator[];
  /** Why a successful block with a duration made no advisory (its target is a local address). */
  noAdvisory?: string;
}

/**
 * Builds the payload of a mitigation record: the same shape as ingested events. With an
 * anonymiser, the record is anonymised first, so event_id is not a hash of a clear IP.
 */
export function mitigationPayload(threat: string | null, m: Mitigation, nowMs: number, anonymize: Anonymizer | null = null): EventPayload {
  if (!MITIGATION_ACTIONS.includes(m.action)) throw new Error(`unknown mitigation action "${m.action}" (${MITIGATION_ACTIONS.join(", ")})`);
  if (typeof m.target !== "string" || m.target.length === 0 || m.target.length > 1024) {
    throw new Error("mitigation target must be 1-1024 characters");
  }
  if (m.duration !== undefined && (!Number.isSafeInteger(m.duration) || m.duration <= 0)) throw new Error(`mitigation duration must be a positive number of seconds, got ${m.duration}`);
  if (m.scope !== undefined && !MITIGATION_SCOPES.includes(m.scope)) throw new Error(`unknown mitigation scope "${m.scope}" (${MITIGATION_SCOPES.join(", ")})`);
  const success = m.success ?? true;
  let original: Record<string, unknown> = {
    action: m.action,
    target: m.target,
    status: success ? "executed" : "failed",
    time: formatTime(nowMs),
  };
  if (threat) original.threat = threat;
  if (m.reason) original.reason = m.reason;
  if (m.duration !== undefined) original.duration = m.duration;
  if (m.scope !== undefined) original.scope = m.scope;
  if (anonymize) original = anonymize(original) as Record<string, unknown>;
  const indicators: Record<string, string | number> = { action: m.action, target: original.target as string };
  if (threat) indicators.threat = original.threat as string;
  if (m.duration !== undefined) indicators.duration = m.duration;
  if (m.scope !== undefined) indicators.scope = m.scope;
  return {
    event_id: sha256Hex(canonicalize(original)).slice(0, 32),
    source: "mitigation",
    // A mitigation that failed leaves a threat unanswered: that is what an operator must see first.
    severity: success ? "info" : "high",
    category: "mitigation",
    indicators,
    original,
  };
}

/**
 * What a mitigation advises the mesh: for a successful block with a duration, its target as
 * an indicator (checked against its scope) and the ttl; null for anything else; `local` when
 * the target is inside intel.local_networks (a victim or local host, never advised). Throws,
 * naming the problem, when the target is not an address or range of its scope, or the
 * duration is outside an advisory's ttl bounds: checked before anything is signed.
 */
export function mitigationAdvice(m: Mitigation, localNetworks: readonly string[]): { indicator: Indicator; ttl: number; local: boolean } | null {
  if (m.action !== "block" || m.success === false || m.duration === undefined) return null;
  if (m.category !== undefined && !CATEGORIES.includes(m.category)) throw new Error(`unknown advisory category "${m.category}" (${CATEGORIES.join(", ")})`);
  const scope = m.scope ?? (m.target.includes("/") ? "range" : "ip");
  let value: string;
  try {
    value = normalizeIndicator(scope, m.target);
  } catch (e) {
    throw new Error(`a block with a duration advises its target: ${(e as Error).message}`);
  }
  if (m.duration < MIN_TTL_S || m.duration > MAX_TTL_S) {
    throw new Error(`a block with a duration advises its target for that long: the duration must be ${formatDuration(MIN_TTL_S)} to ${formatDuration(MAX_TTL_S)}, got ${formatDuration(m.duration)}`);
  }
  const indicator: Indicator = { scope, value };
  return { indicator, ttl: m.duration, local: isLocal(compileRules([], localNetworks).local, indicator) };
}

export class MitigationLogger {
  constructor(private readonly node: DSMNode) {}

  /** threat: the microblock id (or any id) of the event that caused the action. The mitigation's microblock. */
  async onMitigationExecuted(threat: string | { id: string } | null, action: Mitigation): Promise<Microblock> {
    return (await this.record(threat, action)).mitigation;
  }

  /**
   * The mitigation record, and, for a successful block with a duration, a threat.advisory for
   * its target (in clear, even under privacy.anonymize_ips, which keeps hashing the target in
   * the mitigation record), written after it: its evidence is the mitigation's id, and the
   * threat's when that is a microblock id; its ttl the duration.
   */
  async record(threat: string | { id: string } | null, action: Mitigation): Promise<MitigationRecorded> {
    const threatId = threat === null ? null : typeof threat === "string" ? threat : threat.id;
    const advice = mitigationAdvice(action, this.node.config.intel.local_networks);
    const payload = mitigationPayload(threatId, action, Date.now(), this.node.anonymizer);
    const mitigation = await this.node.createMicroblock({ eventType: `mitigation.${action.action}`, payload });
    if (advice === null) return { mitigation, advisory: null, indicators: [] };
    if (advice.local) {
      return { mitigation, advisory: null, indicators: [], noAdvisory: `${indicatorText(advice.indicator)} is inside intel.local_networks: a local address is not advised to the mesh` };
    }
    const evidence = [mitigation.id];
    if (threatId !== null && isHex(threatId.toLowerCase(), 32) && threatId.toLowerCase() !== mitigation.id) evidence.push(threatId.toLowerCase());
    const advisory = await this.node.createMicroblock({
      eventType: ADVISORY_EVENT,
      payload: makeAdvisory({
        indicators: [advice.indicator],
        category: action.category ?? "other",
        ttl: advice.ttl,
        evidence,
        reason: `mitigation.block for ${formatDuration(advice.ttl)}`,
      }),
    });
    return { mitigation, advisory, indicators: [advice.indicator] };
  }
}
