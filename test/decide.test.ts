import { describe, expect, test } from "bun:test";
import { decide, decisionId, explain, type DecideInput, type FinalizedIntel } from "../src/intel/decide.ts";
import { makeAdvisory, makeRetraction, parseIndicatorText } from "../src/protocol/advisory.ts";
import { DEFAULT_INTEL, type IntelPolicy } from "../src/protocol/genesis.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);
const C = "c".repeat(64);
const T0 = Date.parse("2026-12-01T00:00:00.000Z");
const D = 60_000; // epoch length
const endOf = (e: number) => T0 + (e + 1) * D;

let leaf = 0;
function advise(node: string, epoch: number, indicator: string, extra: Partial<Parameters<typeof makeAdvisory>[0]> = {}): FinalizedIntel {
  const payload = makeAdvisory({ indicators: [parseIndicatorText(indicator)], category: "c2", ttl: 3600, ...extra });
  return { leaf: leaf++, id: (leaf).toString(16).padStart(64, "0"), node_id: node, epoch, event_type: "threat.advisory", payload };
}
function retract(node: string, epoch: number, indicator: string): FinalizedIntel {
  return { leaf: leaf++, id: leaf.toString(16).padStart(64, "0"), node_id: node, epoch, event_type: "threat.retract", payload: makeRetraction([parseIndicatorText(indicator)]) };
}
function input(entries: FinalizedIntel[], epoch: number, policy: Partial<IntelPolicy> = {}, quarantined: string[] = []): DecideInput {
  return { policy: { ...DEFAULT_INTEL, ...policy }, epoch, atMs: endOf(epoch), epochEndMs: endOf, entries, quarantined: (n) => quarantined.includes(n) };
}

describe("decide", () => {
  test("one reporter is not enough; two distinct reporters make a decision that holds until the 2nd latest expiry", () => {
    const a = advise(A, 1, "ip:203.0.113.9");
    expect(decide(input([a], 1))).toEqual([]);
    const a2 = advise(A, 2, "ip:203.0.113.9"); // the same reporter again: still one reporter
    expect(decide(input([a, a2], 2))).toEqual([]);
    const b = advise(B, 3, "ip:203.0.113.9", { ttl: 600, category: "scan", severity: "critical" });
    const [d] = decide(input([a, a2, b], 3));
    expect(d!.reporters).toEqual([A, B]);
    expect(d!.advisories).toEqual([a2.id, b.id]); // a was superseded by a2
    expect(d!.until).toBe(new Date(endOf(3) + 600_000).toISOString());
    expect(d!.since).toBe(new Date(endOf(3)).toISOString());
    expect(d!.epoch).toBe(3);
    expect(d!.severity).toBe("critical");
    expect(d!.category).toBe("c2"); // tie 1:1 goes to the order of CATEGORIES
    expect(d!.id).toBe(decisionId("ip", "203.0.113.9", d!.until));
    expect(Number.isSafeInteger(d!.id)).toBe(true);
  });

  test("advice of a later checkpoint than the one evaluated does not count", () => {
    const entries = [advise(A, 1, "ip:198.51.100.7"), advise(B, 5, "ip:198.51.100.7")];
    expect(decide(input(entries, 4))).toEqual([]);
    expect(decide(input(entries, 5))).toHaveLength(1);
  });

  test("expiry: the decision is gone once fewer than min_reporters are live", () => {
    const entries = [advise(A, 1, "ip:198.51.100.7", { ttl: 120 }), advise(B, 1, "ip:198.51.100.7")];
    expect(decide(input(entries, 1))).toHaveLength(1);
    expect(decide(input(entries, 3))).toEqual([]); // A's 120 s ran out at the end of epoch 3
  });

  test("a trusted node's single advice suffices; min_reporters may be raised", () => {
    const a = advise(A, 1, "range:198.51.100.0/24");
    expect(decide(input([a], 1, { trusted: [A] }))).toHaveLength(1);
    const b = advise(B, 1, "range:198.51.100.0/24");
    expect(decide(input([a, b], 1, { min_reporters: 3 }))).toEqual([]);
    expect(decide(input([a, b, advise(C, 1, "range:198.51.100.0/24")], 1, { min_reporters: 3 }))).toHaveLength(1);
  });

  test("never_block: built-in addresses, the genesis's ranges, overlapping and over-wide ranges never become decisions", () => {
    for (const ind of ["ip:127.0.0.1", "ip:::1", "ip:169.254.1.1", "ip:224.0.0.5", "ip:fe80::1", "range:0.0.0.0/0", "range:10.0.0.0/8", "range:100.64.0.0/10"]) {
      const entries = [advise(A, 1, ind), advise(B, 1, ind), advise(C, 1, ind)];
      expect(decide(input(entries, 1, { trusted: [A] }))).toEqual([]);
    }
    const e = [advise(A, 1, "ip:192.0.2.10"), advise(B, 1, "ip:192.0.2.10")];
    expect(decide(input(e, 1))).toHaveLength(1);
    expect(decide(input(e, 1, { never_block: ["192.0.2.0/24"] }))).toEqual([]);
    const x = explain(input(e, 1, { never_block: ["192.0.2.0/24"] }), parseIndicatorText("ip:192.0.2.10"));
    expect(x.decision).toBeNull();
    expect(x.refused).toContain("never_block (192.0.2.0/24)");
  });

  test("a retraction withdraws its reporter's vote; advice after it counts again", () => {
    const ind = "ip:203.0.113.50";
    const base = [advise(A, 1, ind), advise(B, 1, ind)];
    const r = retract(B, 2, ind);
    expect(decide(input([...base, r], 2))).toEqual([]);
    const x = explain(input([...base, r], 2), parseIndicatorText(ind));
    expect(x.advice.map((a) => a.status)).toEqual(["counted", "retracted"]);
    expect(decide(input([...base, r, advise(B, 3, ind)], 3))).toHaveLength(1);
  });

  test("a quarantined reporter's advice no longer counts", () => {
    const ind = "domain:evil.example";
    const entries = [advise(A, 1, ind), advise(B, 1, ind)];
    expect(decide(input(entries, 1))).toHaveLength(1);
    expect(decide(input(entries, 1, {}, [B]))).toEqual([]);
    expect(explain(input(entries, 1, {}, [B]), parseIndicatorText(ind)).advice.map((a) => a.status)).toEqual(["counted", "quarantined"]);
  });

  test("max_ttl caps what an advisory's TTL asks for", () => {
    const ind = "ip:203.0.113.77";
    const [d] = decide(input([advise(A, 1, ind, { ttl: 86400 }), advise(B, 1, ind, { ttl: 86400 })], 1, { max_ttl: 3600 }));
    expect(Date.parse(d!.until) - endOf(1)).toBe(3_600_000);
  });

  test("a payload that does not parse counts for nothing", () => {
    const good = advise(A, 1, "ip:203.0.113.8");
    const bad = { ...advise(B, 1, "ip:203.0.113.8"), payload: { v: 1, kind: "advisory", indicators: [{ scope: "ip", value: "203.0.113.008" }] } };
    expect(decide(input([good, bad], 1))).toEqual([]);
  });

  test("the cap keeps the most corroborated, and the output is sorted by indicator whatever the input", () => {
    const e = [advise(A, 1, "ip:203.0.113.2"), advise(B, 1, "ip:203.0.113.2"), advise(A, 1, "ip:203.0.113.1"), advise(B, 1, "ip:203.0.113.1"), advise(C, 1, "ip:203.0.113.1")];
    const capped = decide(input(e, 1, { max_decisions: 1 }));
    expect(capped.map((d) => d.value)).toEqual(["203.0.113.1"]);
    const all = decide(input(e, 1));
    expect(all.map((d) => d.value)).toEqual(["203.0.113.1", "203.0.113.2"]);
    expect(JSON.stringify(decide(input(e, 1)))).toBe(JSON.stringify(all));
  });
});
