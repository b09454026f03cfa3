// The seed's threat-intel query (queryThreatIntel): finalized advisories and retractions,
// filtered, as records a person or a SIEM reads. Only what a checkpoint finalized: a
// node's own advice still waiting for one is not intelligence of the mesh yet.
import { formatTime } from "../encoding/time.ts";
import { type Category, type FinalizedIntelRow, indicatorText, type Indicator, type IntelPayload, parseIntelPayload } from "../protocol/advisory.ts";
import { epochBounds } from "../protocol/checkpoint.ts";
import { type Genesis, intelPolicy } from "../protocol/genesis.ts";

export interface IntelQuery {
  category?: Category;
  /** Finalized at or after (ms). */
  sinceMs?: number;
  nodeId?: string;
  /** scope:value, canonical. */
  indicator?: string;
  kind?: "advisory" | "retract";
}

export interface IntelRecord {
  id: string;
  node_id: string;
  seq: number;
  leaf: number;
  /** The checkpoint that finalized it, and the end of its epoch (when the advice starts to hold). */
  epoch: number;
  finalized_at: string;
  /** The reporter's own time in its microblock. */
  timestamp: string;
  kind: IntelPayload["kind"];
  indicators: Indicator[];
  category?: Category;
  severity?: string;
  confidence?: number;
  ttl?: number;
  /** When its advice stops holding: finalized_at + min(ttl, the genesis's max_ttl). */
  until?: string;
  evidence?: string[];
  reason?: string;
  rule?: string;
}

/** Newest first. Rows whose payload does not parse are left out: they count for nothing. */
export function queryIntel(rows: readonly FinalizedIntelRow[], genesis: Genesis, q: IntelQuery): IntelRecord[] {
  const maxTtl = intelPolicy(genesis).max_ttl;
  const out: IntelRecord[] = [];
  for (const r of rows) {
    let p: IntelPayload;
    try {
      p = parseIntelPayload(r.payload, r.event_type);
    } catch {
      continue;
    }
    const fromMs = epochBounds(genesis, r.epoch).endMs;
    if (q.sinceMs !== undefined && fromMs < q.sinceMs) continue;
    if (q.kind !== undefined && p.kind !== q.kind) continue;
    if (q.nodeId !== undefined && !r.node_id.startsWith(q.nodeId)) continue;
    if (q.category !== undefined && (p.kind !== "advisory" || p.category !== q.category)) continue;
    if (q.indicator !== undefined && !p.indicators.some((i) => indicatorText(i) === q.indicator)) continue;
    const rec: IntelRecord = { id: r.id, node_id: r.node_id, seq: r.seq, leaf: r.leaf, epoch: r.epoch, finalized_at: formatTime(fromMs), timestamp: r.microblock.timestamp, kind: p.kind, indicators: p.indicators };
    if (p.kind === "advisory") {
      Object.assign(rec, { category: p.category, severity: p.severity, confidence: p.confidence, ttl: p.ttl, until: formatTime(fromMs + Math.min(p.ttl, maxTtl) * 1000), evidence: p.evidence });
      if (p.rule !== undefined) rec.rule = p.rule;
    }
    if (p.reason !== undefined) rec.reason = p.reason;
    out.push(rec);
  }
  return out.sort((a, b) => b.leaf - a.leaf);
}
