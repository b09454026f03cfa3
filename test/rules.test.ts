// intel.rules as pure functions (src/intel/rules.ts): what matches, which indicator is
// taken, local networks, thresholds over the events' own times, and one live advisory per
// indicator per rule. Rules are written as an operator writes them, through the config parser.
import { describe, expect, test } from "bun:test";
import { parseIntelRules, RULE_CATEGORIES, RULE_SEVERITIES, RULE_TTL_MAX_S, RULE_TTL_MIN_S } from "../src/config/intel-rules.ts";
import { defaultConfig } from "../src/config/config.ts";
import { compileRules, eventTimeMs, matchRecord, RuleEngine, type RuleHit } from "../src/intel/rules.ts";
import { ADVISORY_EVENT, CATEGORIES, makeAdvisory, MAX_TTL_S, MIN_TTL_S, parseIntelPayload, SEVERITIES } from "../src/protocol/advisory.ts";
import { ATTACKER, C2_ALERTS, SCANNER, scanAlerts, VICTIM, ZEEK_INTEL, ZEEK_NOTICE } from "./helpers/intel-fixtures.ts";

const LOCAL = defaultConfig().intel.local_networks;
const rulesOf = (yamlish: unknown[]) => parseIntelRules(yamlish);
const id = (n: number) => n.toString(16).padStart(64, "0");
const NOW = Date.UTC(2026, 5, 26, 16, 0, 0);

describe("the config's names are the advisory's", () => {
  test("categories, severities and ttl bounds agree with src/protocol/advisory.ts", () => {
    expect([...RULE_CATEGORIES]).toEqual([...CATEGORIES]);
    expect([...RULE_SEVERITIES]).toEqual([...SEVERITIES]);
    expect([RULE_TTL_MIN_S, RULE_TTL_MAX_S]).toEqual([MIN_TTL_S, MAX_TTL_S]);
  });
});

describe("matchRecord", () => {
  const c2 = rulesOf([{ name: "c2", match: { event_type: "suricata.alert", severity: [1], categories: ["A Network Trojan was detected"] }, category: "c2", ttl: "4h" }]);

  test("severity and category must both hold; another event type never matches", () => {
    const c = compileRules(c2, LOCAL);
    expect(matchRecord(c, "suricata.alert", C2_ALERTS[0]!)).toEqual([{ rule: 0, indicator: { scope: "ip", value: ATTACKER }, atMs: Date.parse("2026-06-26T15:00:03.342Z"), detail: "suricata.alert sid 2024897" }]);
    expect(matchRecord(c, "suricata.alert", C2_ALERTS[2]!)).toBeNull(); // severity 2
    expect(matchRecord(c, "suricata.drop", C2_ALERTS[0]!)).toBeNull();
    const otherCategory = { ...C2_ALERTS[0]!, alert: { ...C2_ALERTS[0]!.alert, category: "Misc activity" } };
    expect(matchRecord(c, "suricata.alert", otherCategory)).toBeNull();
    const noAlert = { ...C2_ALERTS[0]!, alert: undefined };
    expect(matchRecord(c, "suricata.alert", noAlert)).toBeNull();
  });

  test("signature ids; several rules give several hits", () => {
    const rules = rulesOf([
      { name: "sid", match: { event_type: "suricata.alert", signature_ids: [2001219] }, category: "scan", ttl: "1h" },
      { name: "any", match: { event_type: "suricata.alert" }, category: "other", ttl: "1h" },
    ]);
    const c = compileRules(rules, LOCAL);
    expect(matchRecord(c, "suricata.alert", C2_ALERTS[2]!)!.map((h) => [h.rule, h.indicator.value])).toEqual([[0, SCANNER], [1, SCANNER]]);
    expect(matchRecord(c, "suricata.alert", C2_ALERTS[0]!)!.map((h) => h.rule)).toEqual([1]);
  });

  test("the victim's reply: src_ip is the victim (local, never advised), alert.source.ip the attacker", () => {
    const src = compileRules(c2, LOCAL);
    expect(matchRecord(src, "suricata.alert", C2_ALERTS[1]!)).toBeNull();
    const bySource = compileRules(rulesOf([{ ...c2[0], indicator: "alert.source.ip", match: c2[0]!.match }]), LOCAL);
    expect(matchRecord(bySource, "suricata.alert", C2_ALERTS[1]!)![0]!.indicator).toEqual({ scope: "ip", value: ATTACKER });
    // Without alert.source (Suricata 6, or a signature without a target), src_ip.
    expect(matchRecord(bySource, "suricata.alert", { ...C2_ALERTS[0]!, alert: { ...C2_ALERTS[0]!.alert, source: undefined } })![0]!.indicator.value).toBe(ATTACKER);
    const dest = compileRules(rulesOf([{ ...c2[0], indicator: "dest_ip", match: c2[0]!.match }]), LOCAL);
    expect(matchRecord(dest, "suricata.alert", C2_ALERTS[1]!)![0]!.indicator.value).toBe(ATTACKER);
    expect(matchRecord(dest, "suricata.alert", C2_ALERTS[0]!)).toBeNull(); // dest is the victim
  });

  test("local networks: empty list advises anything; a custom public prefix is protected too", () => {
    const none = compileRules(c2, []);
    expect(matchRecord(none, "suricata.alert", C2_ALERTS[1]!)![0]!.indicator.value).toBe(VICTIM);
    const ours = compileRules(c2, [...LOCAL, "203.0.113.0/24"]);
    expect(matchRecord(ours, "suricata.alert", C2_ALERTS[0]!)).toBeNull();
    const v6 = { ...C2_ALERTS[0]!, src_ip: "FE80::1" };
    expect(matchRecord(compileRules(c2, LOCAL), "suricata.alert", v6)).toBeNull();
    const v6public = { ...C2_ALERTS[0]!, src_ip: "2001:DB8:0:0::7" };
    expect(matchRecord(compileRules(c2, LOCAL), "suricata.alert", v6public)![0]!.indicator.value).toBe("2001:db8::7");
    // Not an address: no hit rather than a bad advisory.
    expect(matchRecord(compileRules(c2, LOCAL), "suricata.alert", { ...C2_ALERTS[0]!, src_ip: "ip-0123" })).toBeNull();
  });

  test("Zeek: a notice by its name, from id.orig_h; an intel hit by seen.indicator and its type", () => {
    const rules = rulesOf([
      { name: "ssh", match: { event_type: "zeek.notice", notes: ["SSH::Password_Guessing"] }, category: "bruteforce", ttl: "1h" },
      { name: "intel", match: { event_type: "zeek.intel" }, category: "malware", ttl: "1d" },
    ]);
    const c = compileRules(rules, LOCAL);
    expect(matchRecord(c, "zeek.notice", ZEEK_NOTICE)).toEqual([{ rule: 0, indicator: { scope: "ip", value: SCANNER }, atMs: 1782486000500, detail: "zeek.notice SSH::Password_Guessing" }]);
    expect(matchRecord(c, "zeek.notice", { ...ZEEK_NOTICE, note: "Scan::Port_Scan" })).toBeNull();
    expect(matchRecord(c, "zeek.intel", ZEEK_INTEL)![0]!.indicator).toEqual({ scope: "domain", value: "evil.example" });
    const addr = { ...ZEEK_INTEL, "seen.indicator": ATTACKER, "seen.indicator_type": "Intel::ADDR" };
    expect(matchRecord(c, "zeek.intel", addr)![0]!.indicator).toEqual({ scope: "ip", value: ATTACKER });
    const subnet = { ...ZEEK_INTEL, "seen.indicator": "198.51.100.0/24", "seen.indicator_type": "Intel::SUBNET" };
    expect(matchRecord(c, "zeek.intel", subnet)![0]!.indicator).toEqual({ scope: "range", value: "198.51.100.0/24" });
    // A range touching a local network is not advised; nor a type an advisory cannot carry.
    expect(matchRecord(c, "zeek.intel", { ...subnet, "seen.indicator": "10.0.0.0/7" })).toBeNull();
    expect(matchRecord(c, "zeek.intel", { ...ZEEK_INTEL, "seen.indicator_type": "Intel::URL", "seen.indicator": "evil.example/x" })).toBeNull();
    // Zeek's nested form ({ id: { orig_h } }) reads the same.
    const nested = { ts: ZEEK_NOTICE.ts, note: ZEEK_NOTICE.note, id: { orig_h: SCANNER, resp_h: VICTIM } };
    expect(matchRecord(c, "zeek.notice", nested)![0]!.indicator.value).toBe(SCANNER);
  });

  test("event times: Suricata's offset without colon, Zeek epoch seconds, ISO with Z; null otherwise", () => {
    expect(eventTimeMs({ timestamp: "2026-06-26T11:00:03.342282-0400" })).toBe(Date.parse("2026-06-26T15:00:03.342Z"));
    expect(eventTimeMs({ timestamp: "2026-06-26T15:00:03+00:00" })).toBe(Date.parse("2026-06-26T15:00:03Z"));
    expect(eventTimeMs({ ts: 1782486000.5 })).toBe(1782486000500);
    expect(eventTimeMs({ ts: "2026-06-26T15:00:03.5Z" })).toBe(Date.parse("2026-06-26T15:00:03.500Z"));
    expect(eventTimeMs({ timestamp: "yesterday" })).toBeNull();
    expect(eventTimeMs({})).toBeNull();
  });
});

describe("RuleEngine: thresholds", () => {
  const scan = rulesOf([{ name: "scanner", match: { event_type: "suricata.alert", signature_ids: [2001219] }, category: "scan", ttl: "1h", threshold: { count: 5, window: "10s" } }]);
  const c = compileRules(scan, LOCAL);
  const hitsOf = (records: Record<string, unknown>[]) => records.map((r) => matchRecord(c, "suricata.alert", r)![0]!);

  test("advises at the count-th event within the window, with every one of them as evidence", () => {
    const e = new RuleEngine(scan);
    const hits = hitsOf(scanAlerts(5));
    expect(hits.slice(0, 4).map((h, i) => e.observe(h, id(i), NOW))).toEqual([null, null, null, null]);
    const a = e.observe(hits[4]!, id(4), NOW)!;
    expect(a).toEqual({
      indicators: [{ scope: "ip", value: SCANNER }],
      category: "scan",
      severity: "high",
      confidence: 80,
      ttl: 3600,
      evidence: [0, 1, 2, 3, 4].map(id),
      reason: "5 events in 10s (suricata.alert sid 2001219)",
      rule: "scanner",
    });
    expect(parseIntelPayload(makeAdvisory(a), ADVISORY_EVENT)).toMatchObject({ rule: "scanner", evidence: a.evidence });
  });

  test("the window is by the events' own times: five events over more than 10 s do not advise, the next five close together do", () => {
    const e = new RuleEngine(scan);
    const slow = hitsOf(scanAlerts(5).map((r, i) => ({ ...r, timestamp: new Date(Date.UTC(2026, 5, 26, 15, 0, 0) + i * 3000).toISOString() })));
    expect(slow.map((h, i) => e.observe(h, id(i), NOW))).toEqual([null, null, null, null, null]);
    // 15:00:20 to :24: the kept five span 17, 13, 11, 10... seconds, until the last five are all new.
    const more = hitsOf(scanAlerts(5, Date.UTC(2026, 5, 26, 15, 0, 20)));
    expect(more.slice(0, 3).map((h, i) => e.observe(h, id(10 + i), NOW))).toEqual([null, null, null]);
    // At :23 the five kept are :12, :20, :21, :22, :23: 11 s.
    expect(e.observe(more[3]!, id(13), NOW)).toBeNull();
    expect(e.observe(more[4]!, id(14), NOW)!.evidence).toEqual([10, 11, 12, 13, 14].map(id));
  });

  test("counted per indicator: five events from five sources advise nothing", () => {
    const e = new RuleEngine(scan);
    const hits = hitsOf(scanAlerts(5).map((r, i) => ({ ...r, src_ip: `198.51.100.${100 + i}` })));
    expect(hits.map((h, i) => e.observe(h, id(i), NOW))).toEqual([null, null, null, null, null]);
  });

  test("bounded memory: past maxTracked indicators the least recently seen is forgotten", () => {
    const e = new RuleEngine(scan, { maxTracked: 2, maxLive: 100 });
    const a = hitsOf(scanAlerts(5));
    for (let i = 0; i < 4; i++) expect(e.observe(a[i]!, id(i), NOW)).toBeNull();
    // Two other sources push the scanner out...
    for (const [n, src] of [[20, "198.51.100.200"], [21, "198.51.100.201"]] as const) {
      expect(e.observe({ ...a[0]!, indicator: { scope: "ip", value: src } }, id(n), NOW)).toBeNull();
    }
    // ... so its fifth event is its first again.
    expect(e.observe(a[4]!, id(4), NOW)).toBeNull();
  });

  test("an event without a time counts at the clock's time", () => {
    const e = new RuleEngine(scan);
    const h: RuleHit = { ...hitsOf(scanAlerts(1))[0]!, atMs: null };
    for (let i = 0; i < 4; i++) expect(e.observe(h, id(i), NOW + i)).toBeNull();
    expect(e.observe(h, id(4), NOW + 4)).not.toBeNull();
  });
});

describe("RuleEngine: one live advisory per indicator per rule", () => {
  const rules = rulesOf([
    { name: "c2", match: { event_type: "suricata.alert", severity: [1] }, indicator: "alert.source.ip", category: "c2", severity: "critical", ttl: "4h" },
    { name: "c2-too", match: { event_type: "suricata.alert", severity: [1] }, indicator: "alert.source.ip", category: "c2", ttl: "2h" },
  ]);
  const c = compileRules(rules, LOCAL);
  const [h0, h1] = matchRecord(c, "suricata.alert", C2_ALERTS[0]!)!;
  const H = 3600_000;

  test("no second advisory until half its ttl has passed, then a refresh; each rule its own", () => {
    const e = new RuleEngine(rules);
    const first = e.observe(h0!, id(1), NOW)!;
    expect(first).toMatchObject({ rule: "c2", ttl: 14400, severity: "critical", evidence: [id(1)], reason: "suricata.alert sid 2024897" });
    expect(e.observe(h0!, id(2), NOW + 1)).toBeNull();
    expect(e.observe(h0!, id(3), NOW + 2 * H - 1)).toBeNull();
    expect(e.observe(h1!, id(4), NOW)).toMatchObject({ rule: "c2-too" });
    expect(e.observe(h0!, id(5), NOW + 2 * H)).toMatchObject({ rule: "c2", evidence: [id(5)] });
    expect(e.observe(h0!, id(6), NOW + 3 * H)).toBeNull();
    // Another indicator is its own.
    expect(e.observe({ ...h0!, indicator: { scope: "ip", value: "192.0.2.9" } }, id(7), NOW + 3 * H)).not.toBeNull();
  });

  test("seeded with this node's earlier advisories (a restart), they count as live; other rules' do not", () => {
    const e = new RuleEngine(rules);
    e.seed([
      { rule: "c2", indicators: [{ scope: "ip", value: ATTACKER }], atMs: NOW - H, ttl: 14400 },
      { rule: "gone", indicators: [{ scope: "ip", value: ATTACKER }], atMs: NOW, ttl: 14400 },
    ]);
    expect(e.liveCount).toBe(1);
    expect(e.observe(h0!, id(1), NOW)).toBeNull();
    expect(e.observe(h1!, id(2), NOW)).not.toBeNull();
    expect(e.observe(h0!, id(3), NOW + H)).not.toBeNull(); // 2 h after the seeded one: half of 4 h
  });

  test("bounded: past maxLive, expired entries go first, then the oldest", () => {
    const e = new RuleEngine(rules, { maxTracked: 10, maxLive: 2 });
    const at = (v: string) => ({ ...h0!, indicator: { scope: "ip" as const, value: v } });
    expect(e.observe(at("192.0.2.1"), id(1), NOW)).not.toBeNull();
    expect(e.observe(at("192.0.2.2"), id(2), NOW + 5 * H)).not.toBeNull(); // the first has expired by now
    expect(e.observe(at("192.0.2.3"), id(3), NOW + 5 * H)).not.toBeNull();
    expect(e.liveCount).toBe(2);
    expect(e.observe(at("192.0.2.2"), id(4), NOW + 5 * H)).toBeNull();
    expect(e.observe(at("192.0.2.3"), id(5), NOW + 5 * H)).toBeNull();
  });
});
