// Advisory and retraction payloads (src/protocol/advisory.ts): one canonical text per
// indicator, and an exact schema: anything a peer could use to count one host twice, or to
// slip in an unknown field, is refused with the field named.
import { describe, expect, test } from "bun:test";
import { makeAdvisory, makeRetraction, normalizeIndicator, parseIndicatorText, parseIntelPayload } from "../src/protocol/advisory.ts";

describe("indicators", () => {
  test("each scope's canonical form", () => {
    expect(normalizeIndicator("ip", " 2001:DB8::0001 ")).toBe("2001:db8::1");
    expect(normalizeIndicator("range", "2001:db8::/32")).toBe("2001:db8::/32");
    expect(normalizeIndicator("domain", "Evil.Example.")).toBe("evil.example");
    expect(normalizeIndicator("ja3", "E7D705A3286E19EA42F587B344EE6865")).toBe("e7d705a3286e19ea42f587b344ee6865");
    expect(normalizeIndicator("sid", "2024897")).toBe("2024897");
    for (const [scope, bad] of [["ip", "010.0.0.1"], ["range", "198.51.100.1/24"], ["range", "198.51.100.0"], ["domain", "localhost"], ["domain", "-x.example"], ["ja3", "abc"], ["sid", "0"], ["sid", "4294967296"]] as const) {
      expect(() => normalizeIndicator(scope, bad)).toThrow(`indicator ${scope}:${bad}`);
    }
  });
  test("SCOPE:VALUE, or a bare address or range", () => {
    expect(parseIndicatorText("ip:203.0.113.9")).toEqual({ scope: "ip", value: "203.0.113.9" });
    expect(parseIndicatorText("203.0.113.9")).toEqual({ scope: "ip", value: "203.0.113.9" });
    expect(parseIndicatorText("::1")).toEqual({ scope: "ip", value: "::1" });
    expect(parseIndicatorText("198.51.100.0/24")).toEqual({ scope: "range", value: "198.51.100.0/24" });
    expect(parseIndicatorText("domain:evil.example")).toEqual({ scope: "domain", value: "evil.example" });
    expect(() => parseIndicatorText("url:http://x")).toThrow(/SCOPE:VALUE with SCOPE one of ip, range, domain, ja3, sid/);
  });
});

describe("payloads", () => {
  const good = () => makeAdvisory({ indicators: [{ scope: "ip", value: "203.0.113.9" }], category: "c2", ttl: 3600, evidence: ["a".repeat(64)] });
  test("made payloads parse; defaults filled", () => {
    expect(good()).toEqual({ v: 1, kind: "advisory", indicators: [{ scope: "ip", value: "203.0.113.9" }], category: "c2", severity: "high", confidence: 80, ttl: 3600, evidence: ["a".repeat(64)] });
    expect(makeRetraction([{ scope: "domain", value: "evil.example" }], "false positive")).toEqual({ v: 1, kind: "retract", indicators: [{ scope: "domain", value: "evil.example" }], reason: "false positive" });
  });
  test("refused: a second spelling, a duplicate, unknown fields and values, bounds", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ indicators: [{ scope: "ip", value: "2001:DB8::1" }] }, /not in canonical form/],
      [{ indicators: [{ scope: "ip", value: "203.0.113.9" }, { scope: "ip", value: "203.0.113.9" }] }, /listed twice/],
      [{ indicators: [] }, /1 to 64 indicators/],
      [{ indicators: [{ scope: "url", value: "x" }] }, /"scope" must be one of/],
      [{ category: "spam" }, /"category" must be one of c2, malware/],
      [{ severity: "info" }, /"severity"/],
      [{ ttl: 59 }, /"ttl" must be an integer from 60 to 2592000/],
      [{ confidence: 101 }, /"confidence"/],
      [{ evidence: ["a".repeat(64), "a".repeat(64)] }, /lists an id twice/],
      [{ evidence: ["xyz"] }, /"evidence" must list/],
      [{ rule: "bad rule" }, /"rule"/],
      [{ extra: 1 }, /unexpected field "extra"/],
      [{ kind: "retract" }, /"kind" must be "advisory"/],
    ];
    for (const [change, why] of cases) expect(() => parseIntelPayload({ ...good(), ...change }, "threat.advisory")).toThrow(why);
    expect(() => parseIntelPayload(good(), "threat.retract")).toThrow(/unexpected field/);
    expect(() => parseIntelPayload(good(), "suricata.alert")).toThrow(/not an intel event type/);
  });
});
