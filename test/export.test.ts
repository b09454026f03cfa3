// dsm decisions export (src/intel/export.ts): the four formats from fixed decisions (expiry
// at nowMs, sorting, IPv6, ranges, overlaps), then the real tools: nft and ipset check and
// load the files inside a network namespace this test makes (never the host's own tables),
// twice, and read the sets back. Those parts are skipped, saying why, when not root or when
// nft / ipset / ip are missing (.ci/setup installs nftables and ipset as optional packages).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { formatCidr, type Cidr } from "../src/encoding/ip.ts";
import { disjointNets, EXPORT_FORMATS, exportDecisions, exportDecisionsResult, IPSET_MAX_TIMEOUT_S, SURICATA_DATASETS } from "../src/intel/export.ts";
import type { Scope } from "../src/protocol/advisory.ts";
import type { Decision } from "../src/protocol/decision.ts";

const NOW = Date.parse("2026-03-01T12:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();

/** A decision of `scope:value` holding `leftS` seconds after NOW (negative or 0: expired). */
function dec(scope: Scope, value: string, leftS: number, id = 1): Decision {
  return { id, scope, value, category: "c2", severity: "high", since: iso(NOW - 60_000), until: iso(NOW + leftS * 1000), epoch: 7, reporters: ["n1", "n2"], advisories: ["a1"] };
}

const FIXTURE: Decision[] = [
  dec("ip", "203.0.113.10", 3600),
  dec("ip", "203.0.113.9", 7200),
  dec("ip", "10.0.0.10", 600),
  dec("ip", "2001:db8::1", 900),
  dec("range", "198.51.100.0/24", 1800),
  dec("range", "2001:db8:ff00::/40", 1200),
  dec("ip", "192.0.2.1", 0), // until == now: expired
  dec("ip", "192.0.2.2", -5),
  dec("domain", "evil.example", 300),
  dec("domain", "c2.bad.example", 300),
  dec("ja3", "e7eca2baf4458d095b7f45da28c16c34", 300),
  dec("sid", "2024897", 300),
  dec("sid", "99", 300),
];

function shuffled<T>(a: readonly T[], seed: number): T[] {
  const out = [...a];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const body = (text: string) => text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));

describe("plain", () => {
  test("addresses and ranges, numeric order, IPv4 then IPv6, expired left out", () => {
    expect(exportDecisions(FIXTURE, "plain", { nowMs: NOW })).toBe(["10.0.0.10", "198.51.100.0/24", "203.0.113.9", "203.0.113.10", "2001:db8::1", "2001:db8:ff00::/40", ""].join("\n"));
  });
  test("a decision expires exactly at its until", () => {
    const d = [dec("ip", "203.0.113.9", 10)];
    expect(exportDecisions(d, "plain", { nowMs: NOW + 9_999 })).toBe("203.0.113.9\n");
    expect(exportDecisions(d, "plain", { nowMs: NOW + 10_000 })).toBe("");
  });
  test("--scope widens to other scopes, each value once, in scope order", () => {
    const text = exportDecisions([...FIXTURE, dec("domain", "evil.example", 900, 2)], "plain", { nowMs: NOW, scopes: ["sid", "domain", "ja3"] });
    expect(text).toBe("c2.bad.example\nevil.example\ne7eca2baf4458d095b7f45da28c16c34\n99\n2024897\n");
  });
  test("the same bytes whatever the input order", () => {
    const want = exportDecisions(FIXTURE, "plain", { nowMs: NOW, scopes: ["ip", "range", "domain"] });
    for (const seed of [1, 2, 3]) expect(exportDecisions(shuffled(FIXTURE, seed), "plain", { nowMs: NOW, scopes: ["ip", "range", "domain"] })).toBe(want);
  });
});

describe("nftables text", () => {
  test("table, two sets, flush then elements with remaining seconds", () => {
    const r = exportDecisionsResult(FIXTURE, "nftables", { nowMs: NOW });
    const lines = body(r.text);
    expect(lines.slice(0, 12)).toEqual(["table inet dsm {", "\tset v4 {", "\t\ttype ipv4_addr", "\t\tflags interval, timeout", "\t}", "\tset v6 {", "\t\ttype ipv6_addr", "\t\tflags interval, timeout", "\t}", "}", "flush set inet dsm v4", "flush set inet dsm v6"]);
    expect(lines.slice(12)).toEqual([
      "add element inet dsm v4 {",
      "\t10.0.0.10 timeout 600s,",
      "\t198.51.100.0/24 timeout 1800s,",
      "\t203.0.113.9 timeout 7200s,",
      "\t203.0.113.10 timeout 3600s",
      "}",
      "add element inet dsm v6 {",
      "\t2001:db8::1 timeout 900s,",
      "\t2001:db8:ff00::/40 timeout 1200s",
      "}",
    ]);
    expect(r.entries).toBe(6);
    expect(r.text.startsWith("#!/usr/sbin/nft -f\n")).toBe(true);
    expect(r.text).toContain(`# dsm-digest: ${r.digest}\n`);
    // No chain: blocking is the operator's choice; the header shows how.
    expect(lines.some((l) => /chain|hook/.test(l))).toBe(false);
    expect(r.text).toContain("#       ip saddr @v4 counter drop");
  });
  test("the table is named by opts.name; empty sets get no add element", () => {
    const text = exportDecisions([], "nftables", { nowMs: NOW, name: "edge_block" });
    expect(body(text).slice(-3)).toEqual(["}", "flush set inet edge_block v4", "flush set inet edge_block v6"]);
    expect(text).not.toContain("add element");
  });
  test("timeouts count down, the digest does not; a renewed decision changes it", () => {
    const a = exportDecisionsResult(FIXTURE, "nftables", { nowMs: NOW });
    const b = exportDecisionsResult(FIXTURE, "nftables", { nowMs: NOW + 5_000 });
    expect(b.text).not.toBe(a.text);
    expect(b.text).toContain("203.0.113.9 timeout 7195s");
    expect(b.digest).toBe(a.digest);
    const renewed = exportDecisionsResult([...FIXTURE, dec("ip", "203.0.113.9", 9000, 5)], "nftables", { nowMs: NOW });
    expect(renewed.digest).not.toBe(a.digest);
    expect(renewed.text).toContain("203.0.113.9 timeout 9000s");
    // and an element with less than a second left is not written (a timeout rounds down)
    expect(exportDecisions([dec("ip", "203.0.113.9", 1)], "nftables", { nowMs: NOW + 500 })).not.toContain("203.0.113.9");
  });
  test("an address inside a range: dropped when the range outlasts it, else the range splits around it", () => {
    const covered = exportDecisions([dec("range", "203.0.113.0/24", 3600), dec("ip", "203.0.113.9", 60)], "nftables", { nowMs: NOW });
    expect(body(covered).filter((l) => l.startsWith("\t") && l.includes("timeout "))).toEqual(["\t203.0.113.0/24 timeout 3600s"]);
    const outlasting = exportDecisions([dec("range", "203.0.113.0/30", 60), dec("ip", "203.0.113.1", 3600)], "nftables", { nowMs: NOW });
    expect(body(outlasting).filter((l) => l.startsWith("\t") && l.includes("timeout "))).toEqual(["\t203.0.113.0 timeout 60s,", "\t203.0.113.1 timeout 3600s,", "\t203.0.113.2/31 timeout 60s"]);
  });
  test("disjointNets: disjoint, and every address keeps the latest until of the entries covering it", () => {
    let seed = 42;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let round = 0; round < 200; round++) {
      // Entries inside 10.0.0.0/24 so that they nest often.
      const input = Array.from({ length: 1 + rnd(6) }, () => {
        const prefix = 24 + rnd(9);
        const base = (0x0a000000n + BigInt(rnd(256))) & ~((1n << BigInt(32 - prefix)) - 1n);
        return { cidr: { family: 4, base, prefix } as Cidr, untilMs: NOW + (1 + rnd(5)) * 1000 };
      });
      const out = disjointNets(input);
      for (let i = 0; i < out.length; i++)
        for (let j = i + 1; j < out.length; j++) {
          const [a, b] = [out[i]!.cidr, out[j]!.cidr];
          const overlap = a.base <= b.base + (1n << BigInt(32 - b.prefix)) - 1n && b.base <= a.base + (1n << BigInt(32 - a.prefix)) - 1n;
          expect(overlap ? `${formatCidr(a)} overlaps ${formatCidr(b)}` : "").toBe("");
        }
      for (let host = 0n; host < 256n; host++) {
        const addr = 0x0a000000n + host;
        const inside = (c: Cidr) => addr >= c.base && addr < c.base + (1n << BigInt(32 - c.prefix));
        const want = Math.max(0, ...input.filter((n) => inside(n.cidr)).map((n) => n.untilMs));
        const got = Math.max(0, ...out.filter((n) => inside(n.cidr)).map((n) => n.untilMs));
        expect(got).toBe(want);
      }
    }
  });
});

describe("ipset text", () => {
  test("create -exist, fill a temporary set, swap it in, destroy it; per family", () => {
    const r = exportDecisionsResult(FIXTURE, "ipset", { nowMs: NOW });
    const create4 = "hash:net family inet hashsize 1024 maxelem 16777216 timeout 0 -exist";
    const create6 = "hash:net family inet6 hashsize 1024 maxelem 16777216 timeout 0 -exist";
    expect(body(r.text)).toEqual([
      `create dsm-v4 ${create4}`,
      `create dsm-v4-new ${create4}`,
      "flush dsm-v4-new",
      "add dsm-v4-new 10.0.0.10 timeout 600",
      "add dsm-v4-new 198.51.100.0/24 timeout 1800",
      "add dsm-v4-new 203.0.113.9 timeout 7200",
      "add dsm-v4-new 203.0.113.10 timeout 3600",
      "swap dsm-v4-new dsm-v4",
      "destroy dsm-v4-new",
      `create dsm-v6 ${create6}`,
      `create dsm-v6-new ${create6}`,
      "flush dsm-v6-new",
      "add dsm-v6-new 2001:db8::1 timeout 900",
      "add dsm-v6-new 2001:db8:ff00::/40 timeout 1200",
      "swap dsm-v6-new dsm-v6",
      "destroy dsm-v6-new",
    ]);
  });
  test("overlaps kept (hash:net allows them), /0 as two /1, timeouts capped at ipset's maximum", () => {
    const text = exportDecisions([dec("range", "0.0.0.0/0", 30 * 86400), dec("ip", "203.0.113.9", 60), dec("range", "203.0.113.0/24", 120)], "ipset", { nowMs: NOW, name: "x" });
    expect(body(text).filter((l) => l.startsWith("add "))).toEqual([`add x-v4-new 0.0.0.0/1 timeout ${IPSET_MAX_TIMEOUT_S}`, `add x-v4-new 128.0.0.0/1 timeout ${IPSET_MAX_TIMEOUT_S}`, "add x-v4-new 203.0.113.0/24 timeout 120", "add x-v4-new 203.0.113.9 timeout 60"]);
    // An address named as ip and as a /32 range is one entry, with the later until.
    const twice = exportDecisions([dec("ip", "203.0.113.9", 60), dec("range", "203.0.113.9/32", 90)], "ipset", { nowMs: NOW });
    expect(body(twice).filter((l) => l.startsWith("add "))).toEqual(["add dsm-v4-new 203.0.113.9 timeout 90"]);
  });
});

describe("suricata-dataset", () => {
  test("ip: IPv4 and IPv6 addresses, one per line, no comment; ranges left out and counted", () => {
    const r = exportDecisionsResult(FIXTURE, "suricata-dataset", { nowMs: NOW, scopes: ["ip"] });
    expect(r.text).toBe("10.0.0.10\n203.0.113.9\n203.0.113.10\n2001:db8::1\n");
    expect(r.omitted).toEqual([{ scope: "range", count: 2, reason: "Suricata datasets hold single addresses, not ranges" }]);
    expect(SURICATA_DATASETS.ip.type).toBe("ip");
  });
  test("domain: base64 of the name per line (type string)", () => {
    const text = exportDecisions(FIXTURE, "suricata-dataset", { nowMs: NOW, scopes: ["domain"] });
    const lines = body(text);
    expect(lines.map((l) => Buffer.from(l, "base64").toString("utf8"))).toEqual(["c2.bad.example", "evil.example"]);
    for (const l of lines) expect(l).toMatch(/^[A-Za-z0-9+/]+={0,2}$/);
    expect(text.endsWith("\n")).toBe(true); // Suricata 7 cuts each line's last character, the newline it expects
  });
  test("ja3: the hash in hex (type md5)", () => {
    expect(exportDecisions(FIXTURE, "suricata-dataset", { nowMs: NOW, scopes: ["ja3"] })).toBe("e7eca2baf4458d095b7f45da28c16c34\n");
    expect(SURICATA_DATASETS.ja3.rule).toContain("ja3.string; to_md5; dataset:isset,dsm-ja3, type md5");
  });
  test("one dataset per file: no scope, two scopes, range and sid are refused with the reason", () => {
    expect(() => exportDecisions(FIXTURE, "suricata-dataset", { nowMs: NOW })).toThrow(/one dataset \(one type\) per file: pass exactly one scope, ip \(type ip\), domain \(type string\), ja3 \(type md5\)/);
    expect(() => exportDecisions(FIXTURE, "suricata-dataset", { nowMs: NOW, scopes: ["ip", "domain"] })).toThrow(/exactly one scope/);
    expect(() => exportDecisions(FIXTURE, "suricata-dataset", { nowMs: NOW, scopes: ["range"] })).toThrow(/single addresses, not ranges/);
    expect(() => exportDecisions(FIXTURE, "suricata-dataset", { nowMs: NOW, scopes: ["sid"] })).toThrow(/not a dataset value/);
  });
});

describe("errors", () => {
  test("firewall formats hold addresses; names and formats are checked", () => {
    expect(() => exportDecisions(FIXTURE, "nftables", { nowMs: NOW, scopes: ["domain"] })).toThrow(/holds addresses: scope domain/);
    expect(() => exportDecisions(FIXTURE, "ipset", { nowMs: NOW, scopes: [] })).toThrow(/no scope chosen/);
    expect(() => exportDecisions(FIXTURE, "nftables", { nowMs: NOW, name: "dsm; flush ruleset" })).toThrow(/export name/);
    expect(() => exportDecisions(FIXTURE, "pf" as never, { nowMs: NOW })).toThrow(/use one of nftables, ipset, plain, suricata-dataset/);
    expect(() => exportDecisions([{ ...dec("ip", "203.0.113.9", 10), until: "tomorrow" }], "plain", { nowMs: NOW })).toThrow(/not an RFC 3339 ms time/);
    expect(EXPORT_FORMATS).toEqual(["nftables", "ipset", "plain", "suricata-dataset"]);
  });
});

// ---- the real tools, inside a network namespace of this test ----

const isRoot = process.getuid?.() === 0;
const nft = Bun.which("nft");
const ipsetBin = Bun.which("ipset");
const ipBin = Bun.which("ip");
const NS = `dsm-test-${process.pid}`;
const whyNot = (tool: string | null, name: string) => (!isRoot ? "not root (needs ip netns)" : !ipBin ? "ip (iproute2) is not installed" : !tool ? `${name} is not installed (apt-get install ${name === "nft" ? "nftables" : name})` : "");
const nftSkip = whyNot(nft, "nft");
const ipsetSkip = whyNot(ipsetBin, "ipset");
if (nftSkip) console.log(`export.test.ts: skipping the nft tests: ${nftSkip}`);
if (ipsetSkip) console.log(`export.test.ts: skipping the ipset tests: ${ipsetSkip}`);

function run(args: string[], input?: string): { code: number; out: string; err: string } {
  const r = spawnSync(args[0]!, args.slice(1), { input, encoding: "utf8", timeout: 60_000, maxBuffer: 256 * 1024 * 1024 });
  return { code: r.status ?? -1, out: r.stdout ?? "", err: r.stderr ?? String(r.error ?? "") };
}
/** In the test's namespace only: `ip netns exec NS ...`. */
function inNs(args: string[], input?: string) {
  return run(["ip", "netns", "exec", NS, ...args], input);
}
function ok(r: { code: number; out: string; err: string }, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${`${r.err}${r.out}`.slice(0, 2000)}`);
  return r.out;
}

let dir = "";
let nsMade = false;
beforeAll(() => {
  if (nftSkip && ipsetSkip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-export-"));
  ok(run(["ip", "netns", "add", NS]), `ip netns add ${NS}`);
  nsMade = true;
});
afterAll(() => {
  if (nsMade) run(["ip", "netns", "delete", NS]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
}

interface NftElem {
  val: string | { prefix: { addr: string; len: number } };
  timeout: number;
}
/** The set's elements as "addr[/len] timeout", read back with nft -j inside the namespace. */
function nftSet(table: string, set: string): string[] {
  const j = JSON.parse(ok(inNs(["nft", "-j", "list", "set", "inet", table, set]), "nft list set")) as { nftables: { set?: { elem?: { elem: NftElem }[] } }[] };
  const s = j.nftables.find((x) => x.set)!.set!;
  return (s.elem ?? []).map(({ elem }) => `${typeof elem.val === "string" ? elem.val : `${elem.val.prefix.addr}/${elem.val.prefix.len}`} ${elem.timeout}`);
}

describe.skipIf(nftSkip !== "")("nft (inside a network namespace)", () => {
  test("nft -c accepts the file; loading it twice succeeds and leaves the new contents; a chain of the operator survives", () => {
    const first = write("first.nft", exportDecisions(FIXTURE, "nftables", { nowMs: NOW }));
    ok(inNs(["nft", "-c", "-f", first]), "nft -c -f first");
    ok(inNs(["nft", "-f", first]), "nft -f first");
    expect(nftSet("dsm", "v4")).toEqual(["10.0.0.10 600", "198.51.100.0/24 1800", "203.0.113.9 7200", "203.0.113.10 3600"]);
    expect(nftSet("dsm", "v6")).toEqual(["2001:db8::1 900", "2001:db8:ff00::/40 1200"]);
    ok(inNs(["nft", "-f", first]), "nft -f first, again");
    expect(nftSet("dsm", "v4")).toHaveLength(4);

    // The operator's rule, in this table as the header says.
    const rule = write("rule.nft", "table inet dsm {\n\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\tip saddr @v4 counter drop\n\t\tip6 saddr @v6 counter drop\n\t}\n}\n");
    ok(inNs(["nft", "-f", rule]), "nft -f rule");

    // A later set: 203.0.113.10 and the IPv6 range gone, a range with an address inside it that outlasts it.
    const later = [dec("ip", "203.0.113.9", 7000), dec("ip", "10.0.0.10", 500), dec("range", "198.51.100.0/30", 60), dec("ip", "198.51.100.1", 3600), dec("ip", "2001:db8::1", 800)];
    const second = write("second.nft", exportDecisions(later, "nftables", { nowMs: NOW }));
    ok(inNs(["nft", "-c", "-f", second]), "nft -c -f second");
    ok(inNs(["nft", "-f", second]), "nft -f second");
    expect(nftSet("dsm", "v4")).toEqual(["10.0.0.10 500", "198.51.100.0 60", "198.51.100.1 3600", "198.51.100.2/31 60", "203.0.113.9 7000"]);
    expect(nftSet("dsm", "v6")).toEqual(["2001:db8::1 800"]);
    const ruleset = ok(inNs(["nft", "list", "chain", "inet", "dsm", "input"]), "nft list chain");
    expect(ruleset).toContain("ip saddr @v4");

    // An empty decision set empties the sets.
    ok(inNs(["nft", "-f", write("empty.nft", exportDecisions([], "nftables", { nowMs: NOW }))]), "nft -f empty");
    expect(nftSet("dsm", "v4")).toEqual([]);
    expect(nftSet("dsm", "v6")).toEqual([]);
  });

  test("the set blocks: a TCP connection from a listed address fails, and succeeds once it is no longer listed", () => {
    // 203.0.113.9 on the namespace's lo; a connection to it from the namespace comes from it
    // (the kernel picks the destination as source on lo); the input chain of the test above drops @v4.
    ok(inNs(["ip", "link", "set", "lo", "up"]), "ip link set lo up");
    ok(inNs(["ip", "addr", "add", "203.0.113.9/32", "dev", "lo"]), "ip addr add");
    const probe = `
      const net = require("node:net");
      net.createServer((s) => s.end("hi")).listen(18181, "203.0.113.9", () => {
        const c = net.connect({ host: "203.0.113.9", port: 18181, timeout: 1500 });
        c.on("data", () => { console.log("connected"); process.exit(0); });
        c.on("timeout", () => { console.log("timeout"); process.exit(0); });
        c.on("error", (e) => { console.log("error " + e.code); process.exit(0); });
      });`;
    const connect = () => ok(inNs([process.execPath, "-e", probe]), "probe").trim();
    // Decisions for the real clock (the fixture's are for NOW, which the wall clock may have passed).
    const live = (value: string): Decision => ({ ...dec("ip", value, 0), until: iso(Date.now() + 600_000) });
    ok(inNs(["nft", "-f", write("block.nft", exportDecisions([live("203.0.113.9")], "nftables", { nowMs: Date.now() }))]), "nft -f block");
    expect(connect()).toBe("timeout");
    ok(inNs(["nft", "-f", write("unblock.nft", exportDecisions([live("203.0.113.10")], "nftables", { nowMs: Date.now() }))]), "nft -f unblock");
    expect(connect()).toBe("connected");
    expect(ok(inNs(["nft", "list", "chain", "inet", "dsm", "input"]), "nft list chain")).toMatch(/ip saddr @v4 counter packets [1-9]\d* bytes/);
  }, 30_000);

  test("20 000 decisions load in one transaction", () => {
    const many = Array.from({ length: 20_000 }, (_, i) => dec("ip", `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 600 + (i % 50), i));
    const f = write("many.nft", exportDecisions(many, "nftables", { nowMs: NOW, name: "dsm_many" }));
    const t0 = performance.now();
    ok(inNs(["nft", "-f", f]), "nft -f many");
    ok(inNs(["nft", "-f", f]), "nft -f many, again");
    const ms = performance.now() - t0;
    expect(nftSet("dsm_many", "v4")).toHaveLength(20_000);
    console.log(`export.test.ts: nft loaded 20 000 elements twice in ${ms.toFixed(0)} ms`);
  }, 60_000);
});

/** `ipset save NAME` inside the namespace: the entries as "addr timeout", and whether the set exists. */
function ipsetEntries(name: string): string[] | null {
  const r = inNs(["ipset", "save", name]);
  if (r.code !== 0) return null;
  return r.out
    .split("\n")
    .filter((l) => l.startsWith(`add ${name} `))
    .map((l) => {
      const [, , addr, , t] = l.split(" ");
      return `${addr} ${t}`;
    })
    .sort();
}

describe.skipIf(ipsetSkip !== "")("ipset (inside a network namespace)", () => {
  test("ipset restore takes the file twice; the new contents replace the old; no temporary set is left", () => {
    // Timeouts tick while the test runs: compare addresses, and each timeout within 5 s.
    const addrs = (e: string[] | null) => (e ?? []).map((x) => x.split(" ")[0]).sort();
    const first = write("first.ipset", exportDecisions(FIXTURE, "ipset", { nowMs: NOW }));
    ok(inNs(["ipset", "restore", "-f", first]), "ipset restore first");
    ok(inNs(["ipset", "restore", "-f", first]), "ipset restore first, again");
    expect(addrs(ipsetEntries("dsm-v4"))).toEqual(["10.0.0.10", "198.51.100.0/24", "203.0.113.10", "203.0.113.9"]);
    expect(addrs(ipsetEntries("dsm-v6"))).toEqual(["2001:db8::1", "2001:db8:ff00::/40"]);
    const t = Object.fromEntries((ipsetEntries("dsm-v4") ?? []).map((x) => x.split(" ")));
    expect(+t["203.0.113.9"]!).toBeGreaterThan(7195);
    expect(+t["203.0.113.9"]!).toBeLessThanOrEqual(7200);

    const later = [dec("ip", "203.0.113.9", 60), dec("range", "203.0.113.9/32", 70), dec("range", "203.0.113.0/24", 30 * 86400), dec("range", "::/0", 100)];
    const second = write("second.ipset", exportDecisions(later, "ipset", { nowMs: NOW }));
    ok(inNs(["ipset", "restore", "-f", second]), "ipset restore second");
    expect(addrs(ipsetEntries("dsm-v4"))).toEqual(["203.0.113.0/24", "203.0.113.9"]);
    expect(addrs(ipsetEntries("dsm-v6"))).toEqual(["8000::/1", "::/1"]);
    expect(ipsetEntries("dsm-v4-new")).toBeNull();
    expect(ipsetEntries("dsm-v6-new")).toBeNull();

    // A temporary set left by an interrupted load (filled, not swapped) does not break the next one.
    ok(inNs(["ipset", "restore"], "create dsm-v4-new hash:net family inet hashsize 1024 maxelem 16777216 timeout 0\nadd dsm-v4-new 192.0.2.77 timeout 100\n"), "ipset: leftover temporary set");
    ok(inNs(["ipset", "restore", "-f", second]), "ipset restore second, after a leftover");
    expect(addrs(ipsetEntries("dsm-v4"))).toEqual(["203.0.113.0/24", "203.0.113.9"]);
    expect(ipsetEntries("dsm-v4-new")).toBeNull();
  });

  test("ipset sets live in the namespace, not on the host", () => {
    const host = run(["ipset", "list", "-n"]);
    expect(host.out.split("\n")).not.toContain("dsm-v4");
  });
});
