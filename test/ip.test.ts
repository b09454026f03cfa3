// Canonical address text (RFC 5952 section 4 for IPv6, its examples as known answers) and
// exact CIDR containment: indicators from two edges name one host alike, and never_block
// is judged bit by bit.
import { describe, expect, test } from "bun:test";
import { canonicalIp, cidrContains, cidrOverlaps, formatCidr, parseCidr, parseIp } from "../src/encoding/ip.ts";

describe("canonicalIp", () => {
  test("RFC 5952 section 4: leading zeros dropped, longest zero run as ::, the first on a tie, a single zero group kept, lower case", () => {
    expect(canonicalIp("2001:0db8:0000:0000:0000:0000:0000:0001")).toBe("2001:db8::1");
    expect(canonicalIp("2001:db8:0:0:0:0:2:1")).toBe("2001:db8::2:1"); // 4.2.1
    expect(canonicalIp("2001:db8:0:1:1:1:1:1")).toBe("2001:db8:0:1:1:1:1:1"); // 4.2.2: one zero group stays
    expect(canonicalIp("2001:0:0:1:0:0:0:1")).toBe("2001:0:0:1::1"); // 4.2.3: the longest run
    expect(canonicalIp("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1"); // 4.2.3: the first of equal runs
    expect(canonicalIp("2001:DB8::ABCD")).toBe("2001:db8::abcd"); // 4.3
    expect(canonicalIp("::")).toBe("::");
    expect(canonicalIp("::1")).toBe("::1");
    expect(canonicalIp("fe80::")).toBe("fe80::");
    expect(canonicalIp("::ffff:192.0.2.1")).toBe("::ffff:c000:201");
  });
  test("IPv4 in plain dotted decimal only", () => {
    expect(canonicalIp("203.0.113.9")).toBe("203.0.113.9");
    expect(canonicalIp("0.0.0.0")).toBe("0.0.0.0");
    expect(canonicalIp("255.255.255.255")).toBe("255.255.255.255");
    for (const bad of ["010.0.0.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4/32", "fe80::1%eth0", "", "::g", "1::2::3"]) expect(canonicalIp(bad)).toBeNull();
  });
  test("parseIp gives the address as a number", () => {
    expect(parseIp("10.0.0.1")).toEqual({ family: 4, value: 0x0a000001n });
    expect(parseIp("::1")).toEqual({ family: 6, value: 1n });
  });
});

describe("CIDR", () => {
  test("host bits must be zero; a bare address is its /32 or /128; prefixes bounded", () => {
    expect(formatCidr(parseCidr("198.51.100.0/24")!)).toBe("198.51.100.0/24");
    expect(formatCidr(parseCidr("2001:DB8::/32")!)).toBe("2001:db8::/32");
    expect(parseCidr("198.51.100.1/24")).toBeNull();
    expect(formatCidr(parseCidr("192.0.2.7")!)).toBe("192.0.2.7/32");
    expect(parseCidr("10.0.0.0/33")).toBeNull();
    expect(parseCidr("10.0.0.0/08")).toBeNull();
    expect(formatCidr(parseCidr("0.0.0.0/0")!)).toBe("0.0.0.0/0");
  });
  test("containment and overlap, per family", () => {
    const c = (t: string) => parseCidr(t)!;
    expect(cidrContains(c("127.0.0.0/8"), c("127.1.2.3"))).toBe(true);
    expect(cidrContains(c("127.0.0.0/8"), c("128.0.0.1"))).toBe(false);
    expect(cidrContains(c("127.0.0.1"), c("127.0.0.0/8"))).toBe(false);
    expect(cidrOverlaps(c("127.0.0.1"), c("127.0.0.0/8"))).toBe(true);
    expect(cidrOverlaps(c("0.0.0.0/0"), c("::1"))).toBe(false);
    expect(cidrContains(c("fe80::/10"), c("febf:ffff::1"))).toBe(true);
    expect(cidrContains(c("fe80::/10"), c("fec0::1"))).toBe(false);
  });
});
