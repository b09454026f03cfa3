// Decision computation (src/intel/decide.ts) over BENCH_DECIDE_N finalized advisories (default
// 100,000: two reporters for each of N/2 addresses), against a baseline of the least any
// implementation must do in the same run: parse and schema-check every payload once. Each
// node runs it once per checkpoint; what it adds to decision latency is this ratio times
// the parse time, beside the epoch and the finality round.
import { decide, type FinalizedIntel } from "../src/intel/decide.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { makeAdvisory, parseIntelPayload } from "../src/protocol/advisory.ts";
import { DEFAULT_INTEL } from "../src/protocol/genesis.ts";
import { envInt, gc, now, say } from "./lib.ts";

export async function runDecide(): Promise<{ n: number; decisions: number; decide_ms: number; baseline_ms: number; ratio: number }> {
  const n = envInt("BENCH_DECIDE_N", 100_000);
  say(`\ndecide: ${n} finalized advisories, 2 reporters per address`);
  const t0 = Date.parse("2026-12-01T00:00:00.000Z");
  const endOf = (e: number) => t0 + (e + 1) * 60_000;
  const reporters = ["a".repeat(64), "b".repeat(64)];
  // Payloads as a ledger hands them over: parsed from their stored text.
  const entries: FinalizedIntel[] = Array.from({ length: n }, (_, i) => {
    const host = i >> 1;
    const value = `198.${18 + (host >> 16)}.${(host >> 8) & 255}.${host & 255}`;
    const text = canonicalize(makeAdvisory({ indicators: [{ scope: "ip", value }], category: "scan", ttl: 3600 }));
    return { leaf: i, id: i.toString(16).padStart(64, "0"), node_id: reporters[i & 1]!, epoch: 1, event_type: "threat.advisory", payload: JSON.parse(text) };
  });
  const input = { policy: { ...DEFAULT_INTEL, max_decisions: n }, epoch: 1, atMs: endOf(1), epochEndMs: endOf, entries, quarantined: () => false };
  const best = (f: () => unknown) => {
    let ms = Infinity;
    for (let r = 0; r < 3; r++) {
      gc();
      const s = now();
      f();
      ms = Math.min(ms, now() - s);
    }
    return ms;
  };
  const baseline = best(() => {
    for (const e of entries) parseIntelPayload(e.payload, e.event_type);
  });
  let count = 0;
  const ms = best(() => (count = decide(input).length));
  const ratio = ms / baseline;
  say(`  decide ${ms.toFixed(0)} ms for ${count} decisions; baseline (parse every payload) ${baseline.toFixed(0)} ms; ratio ${ratio.toFixed(2)}x`);
  return { n, decisions: count, decide_ms: Math.round(ms), baseline_ms: Math.round(baseline), ratio: Number(ratio.toPrecision(3)) };
}

if (import.meta.main) await runDecide();
