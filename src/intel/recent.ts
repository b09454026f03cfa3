// The advisories this node's rules made lately, read back from its own ledger, so that a
// restarted `dsm ingest` does not advise again what it advised a minute ago. From the first
// microblock younger than the longest rule ttl (found by bisection on seq: a chain's
// timestamps do not go back), only this node's intel microblocks are read, through the
// ledger's index of them, so the cost is the advisories', not the chain's.
import type { Ledger } from "../ledger/ledger.ts";
import { IntelStore } from "../ledger/intel-store.ts";
import { parseJson } from "../encoding/json.ts";
import { parseTime } from "../encoding/time.ts";
import { ADVISORY_EVENT, type AdvisoryPayload, parseIntelPayload } from "../protocol/advisory.ts";
import type { IssuedAdvisory } from "./rules.ts";

export function recentRuleAdvisories(
  ledger: Ledger,
  mesh: string,
  nodeId: string,
  nowMs: number,
  maxTtlS: number,
): IssuedAdvisory[] {
  const head = ledger.head(mesh, nodeId);
  if (head === null || maxTtlS <= 0) return [];
  const since = nowMs - maxTtlS * 1000;
  const out: IssuedAdvisory[] = [];
  // The first seq at or after `since`.
  let lo = 1;
  let hi = head.seq + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const t = parseTime(ledger.bySeq(mesh, nodeId, mid)?.timestamp);
    if (t !== undefined && t < since) lo = mid + 1;
    else hi = mid;
  }
  for (const seq of new IntelStore(ledger, mesh).intelSeqs(nodeId, lo, head.seq)) {
    const mb = ledger.bySeq(mesh, nodeId, seq)!;
    if (mb.event_type !== ADVISORY_EVENT) continue;
    const atMs = parseTime(mb.timestamp);
    if (atMs === undefined || atMs < since) continue;
    const text = ledger.payload(mb.payload_hash);
    if (text === null) continue;
    let p: AdvisoryPayload;
    try {
      p = parseIntelPayload(parseJson(text, "payload"), ADVISORY_EVENT) as AdvisoryPayload;
    } catch {
      continue; // not ours to judge here: dsm verify reports a bad payload
    }
    if (p.rule !== undefined) out.push({ rule: p.rule, indicators: p.indicators, atMs, ttl: p.ttl });
  }
  return out;
}
