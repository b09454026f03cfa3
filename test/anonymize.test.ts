import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { createIpAnonymizer } from "../src/ingest/anonymize.ts";
import { parseJsonLine, toSecurityEvent } from "../src/ingest/records.ts";

const VECTORS = new URL("vectors/events/", import.meta.url);
const SURICATA_FILES = ["eve-small.log", "eve-alerts.log", "eve-6.0.log", "eve-dns-4.1.4.log", "eve-metadata.log"];
const ZEEK_FILES = [
  "notice-json.log",
  "connection-json.log",
  "conn.log",
  "dns-json.log",
  "weird-json.log",
  "intel-json.log",
  "ssl-json.log",
  "ssl-with-ja3-and-custom-fields-json.log",
];

const SECRET_A = new TextEncoder().encode("test secret A, 32 bytes long....");
const SECRET_B = new TextEncoder().encode("test secret B, 32 bytes long....");
const TOKEN_RE = /^ip-[0-9a-f]{32}$/;
// Deliberately looser than the anonymizer's own pattern: any dotted quad of 1-3
// digit groups counts as a leak candidate, and node:net decides.
const LOOSE_IPV4 = /\d{1,3}(?:\.\d{1,3}){3}/g;

function records(dir: "suricata" | "zeek", file: string): Record<string, unknown>[] {
  const text = readFileSync(new URL(`${dir}/${file}`, VECTORS), "utf8");
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => parseJsonLine(line));
}

function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) for (const item of value) strings(item, out);
  else if (typeof value === "object" && value !== null) for (const item of Object.values(value)) strings(item, out);
  return out;
}

function expectedToken(secret: Uint8Array, ip: string): string {
  return `ip-${createHmac("sha256", secret).update(ip).digest("hex").slice(0, 32)}`;
}

describe("tokens", () => {
  test("are ip- plus 32 hex chars of HMAC-SHA256(secret, ip as written)", () => {
    const anonymize = createIpAnonymizer(SECRET_A);
    for (const ip of ["10.0.0.1", "192.168.86.85", "fe80::1", "2001:db8::1"]) {
      const token = anonymize(ip);
      expect(token).toMatch(TOKEN_RE);
      expect(token).toBe(expectedToken(SECRET_A, ip));
    }
  });

  test("the same IP gets the same token for one secret, a different one for another", () => {
    const a1 = createIpAnonymizer(SECRET_A);
    const a2 = createIpAnonymizer(SECRET_A);
    const b = createIpAnonymizer(SECRET_B);
    expect(a1("10.0.0.1")).toBe(a1("10.0.0.1"));
    expect(a1("10.0.0.1")).toBe(a2("10.0.0.1"));
    expect(a1("10.0.0.1")).not.toBe(b("10.0.0.1"));
    expect(a1("10.0.0.1")).not.toBe(a1("10.0.0.2"));
  });

  test("a token inside a sentence equals the token of the bare address", () => {
    const anonymize = createIpAnonymizer(SECRET_A);
    expect(anonymize("host 10.0.0.1 scanned")).toBe(`host ${anonymize("10.0.0.1")} scanned`);
  });

  test("tokens stay stable past the cache bound", () => {
    const anonymize = createIpAnonymizer(SECRET_A);
    const first = anonymize("10.0.0.1");
    for (let i = 0; i < 5000; i++) anonymize(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(anonymize("10.0.0.1")).toBe(first);
  });

  test("changing the caller's secret buffer afterwards does not change tokens", () => {
    const secret = Uint8Array.from(SECRET_A);
    const anonymize = createIpAnonymizer(secret);
    const before = anonymize("10.0.0.1");
    secret.fill(0);
    expect(anonymize("10.0.0.1")).toBe(before);
  });
});

describe("what is replaced", () => {
  const anonymize = createIpAnonymizer(SECRET_A);
  const tok = (ip: string): string => expectedToken(SECRET_A, ip);

  test("whole-string IPv4 and IPv6 addresses", () => {
    expect(anonymize("192.168.1.1")).toBe(tok("192.168.1.1"));
    expect(anonymize("fe80::1")).toBe(tok("fe80::1"));
    expect(anonymize("2001:db8::1")).toBe(tok("2001:db8::1"));
    expect(anonymize("::ffff:10.0.0.1")).toBe(tok("::ffff:10.0.0.1"));
    expect(anonymize("2607:f8b0:4006:0805:0000:0000:0000:200e")).toMatch(TOKEN_RE);
  });

  test("IPv4 inside longer strings, including a sentence-ending dot and a port", () => {
    expect(anonymize("192.168.1.1 scanned 15 hosts")).toBe(`${tok("192.168.1.1")} scanned 15 hosts`);
    expect(anonymize("10.0.0.1:443")).toBe(`${tok("10.0.0.1")}:443`);
    expect(anonymize("from 10.0.0.1.")).toBe(`from ${tok("10.0.0.1")}.`);
    expect(anonymize("a,10.0.0.1,b")).toBe(`a,${tok("10.0.0.1")},b`);
    expect(anonymize("net 10.1.0.0/16")).toBe(`net ${tok("10.1.0.0")}/16`);
    // Zero-padded octets are still addresses to a reader.
    expect(anonymize("010.000.000.001")).toBe(tok("010.000.000.001"));
  });

  test("IPv6 inside longer strings", () => {
    expect(anonymize("[2001:db8::1]:443")).toBe(`[${tok("2001:db8::1")}]:443`);
    expect(anonymize("from fe80::4ef:15cf:769f:ff21.")).toBe(`from ${tok("fe80::4ef:15cf:769f:ff21")}.`);
  });

  test("non-addresses are left alone", () => {
    for (const text of [
      "1.2.3",
      "999.1.1.1",
      "256.1.1.1",
      // Five dotted parts are a version or an OID, not an address.
      "1.2.3.4.5",
      "version 1.2.3.4.5 released",
      "2018-07-05T15:07:20.910626-0400",
      "00:03:2d:3f:e5:63",
      "Mozilla/5.0 (X11; Linux x86_64) Chrome/67.0.3396.99",
      "TLS 1.2",
      "",
    ]) {
      expect(anonymize(text)).toBe(text);
    }
  });

  test("numbers, booleans, null and keys are untouched; input is not mutated", () => {
    const input = { "id.orig_h": "10.0.0.1", "10.0.0.2": 5, n: 1.5, b: false, z: null, list: ["10.0.0.3", 7, true] };
    const frozen = structuredClone(input);
    const out = anonymize(input) as Record<string, unknown>;
    expect(input).toEqual(frozen);
    expect(out).not.toBe(input);
    expect(out).toEqual({
      "id.orig_h": tok("10.0.0.1"),
      "10.0.0.2": 5,
      n: 1.5,
      b: false,
      z: null,
      list: [tok("10.0.0.3"), 7, true],
    });
    expect(anonymize(42)).toBe(42);
    expect(anonymize(null)).toBe(null);
  });

  test("a __proto__ key stays an own data property", () => {
    const out = anonymize(JSON.parse('{"__proto__":"10.0.0.1"}')) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(out, "__proto__")?.value).toBe(tok("10.0.0.1"));
  });
});

describe("no address survives in the samples", () => {
  const anonymize = createIpAnonymizer(SECRET_A);

  for (const [dir, files] of [
    ["suricata", SURICATA_FILES],
    ["zeek", ZEEK_FILES],
  ] as const) {
    for (const file of files) {
      test(`${dir}/${file}`, () => {
        for (const record of records(dir, file)) {
          const before = strings(record);
          const addresses = before.filter((s) => isIP(s) !== 0);
          const out = anonymize(record);
          const after = strings(out);
          const text = JSON.stringify(out);
          for (const ip of addresses) expect(text).not.toContain(`"${ip}"`);
          for (const s of after) {
            expect(isIP(s)).toBe(0);
            for (const match of s.matchAll(LOOSE_IPV4)) expect(isIP(match[0])).toBe(0);
          }
          // Same shape: only string values changed.
          expect(Object.keys(out as object)).toEqual(Object.keys(record));
          expect(after.length).toBe(before.length);
        }
      });
    }
  }

  test("the samples did contain addresses to begin with", () => {
    const all = SURICATA_FILES.flatMap((f) => records("suricata", f)).flatMap((r) => strings(r));
    expect(all.filter((s) => isIP(s) === 4).length).toBeGreaterThan(50);
    expect(all.filter((s) => isIP(s) === 6).length).toBeGreaterThan(0);
    // Zeek notice messages embed addresses in prose, which the whole-string check misses.
    const prose = strings(records("zeek", "notice-json.log")).filter((s) => isIP(s) === 0 && /\d+\.\d+\.\d+\.\d+/.test(s));
    expect(prose.length).toBeGreaterThan(0);
  });

  test("anonymizing before toSecurityEvent puts tokens in the indicators", () => {
    const [record] = records("zeek", "notice-json.log");
    const event = toSecurityEvent(anonymize(record) as Record<string, unknown>, "auto");
    expect(event.eventType).toBe("zeek.notice");
    expect(event.payload.indicators.src_ip).toBe(expectedToken(SECRET_A, "172.16.238.1"));
    expect(String(event.payload.indicators.msg)).toStartWith(`${expectedToken(SECRET_A, "172.16.238.1")} appears`);
  });
});
