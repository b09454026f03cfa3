// The seed's event-handler API, over DSMNode: what an integration calls from code
// instead of piping lines into dsm ingest.
import type { Microblock } from "../protocol/microblock.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { formatTime } from "../encoding/time.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import type { EventPayload } from "../ingest/records.ts";
import type { Anonymizer } from "../ingest/prepare.ts";
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

export interface Mitigation {
  action: MitigationAction;
  target: string;
  success?: boolean;
  reason?: string;
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
  const success = m.success ?? true;
  let original: Record<string, unknown> = {
    action: m.action,
    target: m.target,
    status: success ? "executed" : "failed",
    time: formatTime(nowMs),
  };
  if (threat) original.threat = threat;
  if (m.reason) original.reason = m.reason;
  if (anonymize) original = anonymize(original) as Record<string, unknown>;
  const indicators: Record<string, string> = { action: m.action, target: original.target as string };
  if (threat) indicators.threat = original.threat as string;
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

export class MitigationLogger {
  constructor(private readonly node: DSMNode) {}

  /** threat: the microblock id (or any id) of the event that caused the action. */
  onMitigationExecuted(threat: string | { id: string } | null, action: Mitigation): Promise<Microblock> {
    const threatId = threat === null ? null : typeof threat === "string" ? threat : threat.id;
    const payload = mitigationPayload(threatId, action, Date.now(), this.node.anonymizer);
    return this.node.createMicroblock({ eventType: `mitigation.${action.action}`, payload });
  }
}
