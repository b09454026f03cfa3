// The advisories this node's rules made lately, read back from its own ledger, so that a
// restarted `dsm ingest` does not advise again what it advised a minute ago. Bounded: the
// ledger offers no lookup of one chain's advisories by time, so the newest microblocks of
// this node's chain are read, from the first one younger than the longest rule ttl (found by
// bisection on seq: a chain's timestamps do not go back) and at most SCAN_LIMIT of them
// (50k take ~0.4 s on a 2-core x86 machine).
import type { Ledger } from "../ledger/ledger.ts";
import { parseJson } from "../encoding/json.ts";
import { parseTime } from "../encoding/time.ts";
import { ADVISORY_EVENT, type AdvisoryPayload, parseIntelPayload } from "../protocol/advisory.ts";
import type { IssuedAdvisory } from "./rules.ts";

/** Microblocks of this node's chain looked at, newest first (a busy edge writes ~1000/s). */
export const SCAN_LIMIT = 50_000;

export function recentRuleAdvisories(
  ledger: Ledger,
  mesh: string,
  nodeId: string,
  nowMs: number,
  maxTtlS: number,
  scanLimit = SCAN_LIMIT,
): IssuedAdvisory[] {
  const head = ledger.head(mesh, nodeId);
  if (head === null || maxTtlS <= 0) return [];
  const since = nowMs - maxTtlS * 1000;
  const out: IssuedAdvisory[] = [];
  // The first seq at or after `since`, within the scan window.
  let lo = Math.max(1, head.seq - scanLimit + 1);
  let hi = head.seq + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const t = parseTime(ledger.bySeq(mesh, nodeId, mid)?.timestamp);
    if (t !== undefined && t < since) lo = mid + 1;
    else hi = mid;
  }
  for (const page of ledger.chainPages(mesh, nodeId, lo, 1000)) {
    for (const mb of page) {
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
  }
  return out;
}
