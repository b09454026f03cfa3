// Threat advisories made by an edge, end to end through the compiled binary dist/dsm (run
// `bun run build` before `bun test test/e2e-advise.test.ts` by hand): dsm advise / retract,
// the advisory of dsm mitigation --action block --duration, and intel.rules inside dsm
// ingest, with privacy.anonymize_ips on where it matters: the alert's payload names neither
// the attacker nor the victim in clear, the advisory names the attacker in clear and never
// the victim.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADVISORY_EVENT, type Indicator, parseIntelPayload, RETRACT_EVENT } from "../src/protocol/advisory.ts";
import { expectOneLineError, ndjson, show, type TempNode, withTempNode } from "./helpers/e2e.ts";
import { ATTACKER, C2_ALERTS, ndjsonLines, SCANNER, scanAlerts, VICTIM } from "./helpers/intel-fixtures.ts";

const HEX64 = /^[0-9a-f]{64}$/;
const TOKEN = /^ip-[0-9a-f]{32}$/;

/** Writes the node's dsm.yaml (the keys given; every other keeps its default). */
function configure(node: TempNode, yaml: string): void {
  writeFileSync(join(node.dataDir, "dsm.yaml"), yaml);
}

const ANONYMIZE = "privacy:\n  anonymize_ips: true\n";
const RULES = `intel:
  rules:
    - name: c2
      match:
        event_type: suricata.alert
        severity: [1]
        categories: ["A Network Trojan was detected"]
      indicator: alert.source.ip
      category: c2
      severity: critical
      ttl: 4h
    - name: scanner
      match: { event_type: suricata.alert, signature_ids: [2001219] }
      category: scan
      ttl: 1h
      threshold: { count: 3, window: 1m }
`;

/** This node's microblocks of one type, oldest first. */
async function ofType(node: TempNode, type: string): Promise<{ id: string; seq: number }[]> {
  const r = await node.ok(["log", "--type", type, "--limit", "0", "--oldest-first", "--json"]);
  return ndjson<{ id: string; seq: number }>(r.stdout);
}

describe("dsm advise and dsm retract", () => {
  test("one threat.advisory with every --indicator, canonical, that parses as an advisory; a retraction likewise", async () => {
    await withTempNode(async (node) => {
      const alert = await node.ok(["emit", "--json", "--event-type", "honeypot.login", "--payload", '{"src_ip":"203.0.113.9"}']);
      const evidence = ndjson<{ id: string }>(alert.stdout)[0]!.id;
      const r = await node.ok([
        "advise", "--indicator", "ip:203.0.113.9", "--indicator", "2001:DB8::0:1", "--indicator", "domain:Evil.Example.",
        "--category", "c2", "--ttl", "4h", "--severity", "critical", "--confidence", "95", "--evidence", evidence, "--reason", "beacon every 60 s", "--json",
      ]);
      const out = ndjson<{ id: string; seq: number; node_id: string; indicators: unknown }>(r.stdout)[0]!;
      expect(out.id).toMatch(HEX64);
      expect(out.node_id).toMatch(HEX64);
      expect(out.seq).toBe(2);
      const indicators: Indicator[] = [{ scope: "ip", value: "203.0.113.9" }, { scope: "ip", value: "2001:db8::1" }, { scope: "domain", value: "evil.example" }];
      expect(out.indicators).toEqual(indicators);
      const s = await show(node, out.id);
      expect(s.microblock.event_type).toBe(ADVISORY_EVENT);
      expect(parseIntelPayload(s.payload, ADVISORY_EVENT)).toEqual({
        v: 1, kind: "advisory", indicators, category: "c2", severity: "critical", confidence: 95, ttl: 14400, evidence: [evidence], reason: "beacon every 60 s",
      });
      expect(r.errLines.filter((l) => l.includes("evidence"))).toEqual([]); // the evidence is in this ledger

      const plain = await node.ok(["advise", "--indicator", "198.51.100.0/24", "--category", "scan", "--ttl", "90m"]);
      expect(plain.outLines).toHaveLength(1);
      expect(plain.outLines[0]).toMatch(HEX64);
      expect(parseIntelPayload((await show(node, plain.outLines[0]!)).payload, ADVISORY_EVENT)).toMatchObject({ indicators: [{ scope: "range", value: "198.51.100.0/24" }], severity: "high", confidence: 80, ttl: 5400, evidence: [] });

      const t = await node.ok(["retract", "--indicator", "ip:203.0.113.9", "--indicator", "domain:evil.example", "--reason", "false positive", "--json"]);
      const rt = ndjson<{ id: string; indicators: unknown }>(t.stdout)[0]!;
      const rs = await show(node, rt.id);
      expect(rs.microblock.event_type).toBe(RETRACT_EVENT);
      expect(parseIntelPayload(rs.payload, RETRACT_EVENT)).toEqual({ v: 1, kind: "retract", indicators: [indicators[0]!, indicators[2]!], reason: "false positive" });
    });
  });

  test("bad values: one clear line naming the value and what is allowed; nothing signed", async () => {
    await withTempNode(async (node) => {
      const base = ["--category", "c2", "--ttl", "4h"];
      expectOneLineError(await node.run(["advise", "--indicator", "ip:203.0.113.x", ...base]), "advise", /ip:203\.0\.113\.x: not an IPv4 or IPv6 address/);
      expectOneLineError(await node.run(["advise", "--indicator", "host:evil", ...base]), "advise", /SCOPE one of ip, range, domain, ja3, sid/);
      expectOneLineError(await node.run(["advise", "--indicator", "203.0.113.9", "--category", "spam", "--ttl", "4h"]), "advise", /--category must be one of c2, malware, scan, exploit, bruteforce, beaconing, other, got "spam"/);
      expectOneLineError(await node.run(["advise", "--indicator", "203.0.113.9", "--category", "c2", "--ttl", "10s"]), "advise", /--ttl must be a duration from 1m to 30d .* got "10s"/);
      expectOneLineError(await node.run(["advise", "--indicator", "203.0.113.9", "--category", "c2", "--ttl", "4 hours"]), "advise", /--ttl .* got "4 hours"/);
      expectOneLineError(await node.run(["advise", "--indicator", "203.0.113.9", ...base, "--confidence", "101"]), "advise", /--confidence must be an integer from 0 to 100/);
      expectOneLineError(await node.run(["advise", "--indicator", "203.0.113.9", ...base, "--evidence", "abc"]), "advise", /--evidence must be a microblock id \(64 hex digits\), got "abc"/);
      expectOneLineError(await node.run(["advise", "--indicator", "203.0.113.9", "--indicator", "ip:203.0.113.9", ...base]), "advise", /ip:203\.0\.113\.9 is given twice/);
      expectOneLineError(await node.run(["retract", "--indicator", "nope"]), "retract", /write SCOPE:VALUE/);
      expect(await ofType(node, "threat")).toEqual([]);
    });
  });

  test("a local address is refused unless --force; an evidence id from elsewhere is a warning, not an error", async () => {
    await withTempNode(async (node) => {
      for (const local of ["ip:10.1.2.3", "192.168.7.7", "range:10.0.0.0/7", "fe80::1", "ip:127.0.0.1"]) {
        expectOneLineError(await node.run(["advise", "--indicator", local, "--category", "c2", "--ttl", "4h"]), "advise", /is inside intel\.local_networks .*--force/);
      }
      expect(await ofType(node, "threat")).toEqual([]);
      const forced = await node.ok(["advise", "--indicator", "ip:10.1.2.3", "--category", "c2", "--ttl", "4h", "--force"]);
      expect(forced.outLines[0]).toMatch(HEX64);
      const other = "ab".repeat(32);
      const w = await node.ok(["advise", "--indicator", "ip:203.0.113.9", "--category", "c2", "--ttl", "4h", "--evidence", other.toUpperCase()]);
      expect(w.errLines).toContain(`dsm advise: evidence ${other} is not in this node's ledger (it may be another node's microblock)`);
      expect((await show(node, w.outLines[0]!)).payload.evidence).toEqual([other]);
      // A site's own public prefix, once listed, is protected the same way.
      configure(node, "intel:\n  local_networks: [203.0.113.0/24]\n");
      expectOneLineError(await node.run(["advise", "--indicator", "ip:203.0.113.9", "--category", "c2", "--ttl", "4h"]), "advise", /ip:203\.0\.113\.9 is inside intel\.local_networks/);
    });
  });
});

describe("dsm mitigation --action block --duration: the mesh is advised", () => {
  test("under anonymize_ips the mitigation hashes its target, the advisory names it in clear with the mitigation and the threat as evidence", async () => {
    await withTempNode(async (node) => {
      configure(node, ANONYMIZE);
      const e = await node.ok(["ingest", "--json", "--format", "suricata"], { stdin: ndjsonLines([C2_ALERTS[0]!]) });
      const alertId = ndjson<{ id: string }>(e.stdout)[0]!.id;
      const r = await node.ok(["mitigation", "--action", "block", "--target", ATTACKER, "--duration", "4h", "--scope", "ip", "--category", "c2", "--threat", alertId, "--json"]);
      const out = ndjson<{ id: string; event_type: string; advisory: { id: string; seq: number; indicators: unknown } }>(r.stdout)[0]!;
      expect(out.event_type).toBe("mitigation.block");
      const m = await show(node, out.id);
      expect(m.payload.original).toMatchObject({ action: "block", status: "executed", duration: 14400, scope: "ip", threat: alertId });
      expect(m.payload.original.target).toMatch(TOKEN);
      expect(m.payload.indicators).toMatchObject({ duration: 14400, scope: "ip" });
      expect(JSON.stringify(m.payload)).not.toContain(ATTACKER);

      expect(out.advisory.indicators).toEqual([{ scope: "ip", value: ATTACKER }]);
      const a = await show(node, out.advisory.id);
      expect(a.microblock.event_type).toBe(ADVISORY_EVENT);
      expect(a.microblock.seq).toBe(m.microblock.seq + 1);
      expect(parseIntelPayload(a.payload, ADVISORY_EVENT)).toMatchObject({
        indicators: [{ scope: "ip", value: ATTACKER }],
        category: "c2",
        ttl: 14400,
        evidence: [out.id, alertId],
      });
      expect(JSON.stringify(a.payload)).not.toContain(VICTIM);
    });
  });

  test("a range; no advisory for --failed, for a block without --duration, nor for a local target (a warning says why)", async () => {
    await withTempNode(async (node) => {
      const range = await node.ok(["mitigation", "--action", "block", "--target", "198.51.100.0/24", "--duration", "1d"]);
      expect(range.outLines).toHaveLength(2);
      expect((await show(node, range.outLines[1]!)).payload).toMatchObject({ indicators: [{ scope: "range", value: "198.51.100.0/24" }], category: "other", ttl: 86400, evidence: [range.outLines[0]] });

      const failed = await node.ok(["mitigation", "--action", "block", "--target", ATTACKER, "--duration", "4h", "--failed", "--json"]);
      expect(ndjson<{ advisory: unknown }>(failed.stdout)[0]!.advisory).toBeNull();
      expect((await node.ok(["mitigation", "--action", "block", "--target", ATTACKER])).outLines).toHaveLength(1);
      const local = await node.ok(["mitigation", "--action", "block", "--target", VICTIM, "--duration", "4h"]);
      expect(local.outLines).toHaveLength(1);
      expect(local.errLines).toContain(`dsm mitigation: no advisory: ip:${VICTIM} is inside intel.local_networks: a local address is not advised to the mesh`);
      expect((await ofType(node, ADVISORY_EVENT)).length).toBe(1);

      // Refused before anything is signed: a target the advisory cannot carry, a ttl out of bounds.
      expectOneLineError(await node.run(["mitigation", "--action", "block", "--target", "user:bob", "--duration", "4h"]), "mitigation", /not an IPv4 or IPv6 address/);
      expectOneLineError(await node.run(["mitigation", "--action", "block", "--target", ATTACKER, "--duration", "31d"]), "mitigation", /the duration must be 1m to 30d, got 31d/);
      expectOneLineError(await node.run(["mitigation", "--action", "block", "--target", ATTACKER, "--duration", "soon"]), "mitigation", /--duration must be a duration .* got "soon"/);
      expectOneLineError(await node.run(["mitigation", "--action", "block", "--target", ATTACKER, "--scope", "range", "--duration", "4h"]), "mitigation", /range:203\.0\.113\.66: not a CIDR range/);
      expect((await ofType(node, "mitigation")).length).toBe(4);
    });
  });
});

describe("intel.rules in dsm ingest", () => {
  test("matching alerts advise their attacker in clear, with the alerts' microblock ids as evidence; the alerts stay anonymised; a second ingest within the ttl advises nothing again", async () => {
    await withTempNode(async (node) => {
      configure(node, ANONYMIZE + RULES);
      const lines = ndjsonLines([...C2_ALERTS, ...scanAlerts(3)]);
      const r = await node.ok(["ingest", "--json"], { stdin: lines });
      const out = ndjson<any>(r.stdout);
      const acks = out.filter((o) => "line" in o);
      const advisories = out.filter((o) => "advisory" in o).map((o) => o.advisory);
      expect(acks.map((a) => a.line)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(r.errLines).toContain(`dsm ingest: 6 lines: 6 stored, 0 rejected, 0 empty, 2 advisories, seq 1..6`);

      // c2: the first alert (the reply names the same attacker by alert.source.ip, within its ttl);
      // scanner: the third of its alerts within a minute (line 3 is one too, by its own time
      // 15:00:05Z; lines 4 and 5 are at 15:00:00Z and :01), the three its evidence; line 6 adds none.
      expect(advisories.map((a) => [a.rule, a.indicators])).toEqual([
        ["c2", [{ scope: "ip", value: ATTACKER }]],
        ["scanner", [{ scope: "ip", value: SCANNER }]],
      ]);
      expect(advisories[0].evidence).toEqual([acks[0].id]);
      expect(advisories[1].evidence).toEqual([acks[2].id, acks[3].id, acks[4].id]);
      // Written after their evidence, in this run.
      expect(advisories.map((a) => a.seq)).toEqual([7, 8]);

      for (const a of advisories) {
        const s = await show(node, a.id);
        const p = parseIntelPayload(s.payload, ADVISORY_EVENT);
        expect(p).toMatchObject({ kind: "advisory", rule: a.rule, indicators: a.indicators, evidence: a.evidence });
        const text = JSON.stringify(s.payload);
        expect(text).not.toContain(VICTIM);
        expect(text).not.toMatch(/10\.20\.30\.\d+/);
      }
      expect((await show(node, advisories[0].id)).payload).toMatchObject({ category: "c2", severity: "critical", ttl: 14400 });
      for (const ack of acks) {
        const text = JSON.stringify((await show(node, ack.id)).payload);
        for (const ip of [ATTACKER, VICTIM, SCANNER]) expect(text).not.toContain(ip);
        expect(text).not.toMatch(/10\.20\.30\.\d+/);
      }

      // The same lines again, a new process: the ledger says both advisories are still fresh.
      const again = await node.ok(["ingest", "--json"], { stdin: lines });
      expect(ndjson<any>(again.stdout).filter((o) => "advisory" in o)).toEqual([]);
      expect(again.errLines).toContain(`dsm ingest: 6 lines: 6 stored, 0 rejected, 0 empty, 0 advisories, seq 9..14`);
      expect((await ofType(node, ADVISORY_EVENT)).map((a) => a.id)).toEqual(advisories.map((a) => a.id));
      expect((await node.ok(["verify"])).code).toBe(0);
    });
  });

  test("without rules the ingest summary and output are as before; a rule on dest_ip never advises the victim", async () => {
    await withTempNode(async (node) => {
      const lines = ndjsonLines(C2_ALERTS);
      const plain = await node.ok(["ingest"], { stdin: lines });
      expect(plain.errLines).toContain("dsm ingest: 3 lines: 3 stored, 0 rejected, 0 empty, seq 1..3");
      configure(node, "intel:\n  rules:\n    - name: victims\n      match: { event_type: suricata.alert }\n      indicator: dest_ip\n      category: other\n      ttl: 1h\n");
      const r = await node.ok(["ingest", "--json"], { stdin: lines });
      const advisories = ndjson<any>(r.stdout).filter((o) => "advisory" in o).map((o) => o.advisory);
      // Line 2's dest_ip is the attacker; lines 1 and 3 go to local hosts.
      expect(advisories.map((a) => a.indicators)).toEqual([[{ scope: "ip", value: ATTACKER }]]);
    });
  });

  test("a bad rule stops dsm ingest before it reads a line, naming the file's line", async () => {
    await withTempNode(async (node) => {
      configure(node, "intel:\n  rules:\n    - name: c2\n      match: { event_type: suricata.alert }\n      category: c2\n      ttl: forever\n");
      const r = await node.run(["ingest"], { stdin: ndjsonLines(C2_ALERTS) });
      expect(r.code).toBe(1);
      expect(r.errLines).toEqual([`dsm ingest: config ${join(node.dataDir, "dsm.yaml")}:6: intel.rules[1].ttl: expected a duration between 60s and 2592000s such as 90s, 30m, 4h, 7d, got "forever"`]);
      configure(node, "");
      expect(await ofType(node, "suricata")).toEqual([]);
    });
  });
});
