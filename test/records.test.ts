import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { canonicalize } from "../src/encoding/jcs.ts";
import {
  detectFormat,
  parseJsonLine,
  RecordError,
  toSecurityEvent,
  type InputFormat,
  type SecurityEvent,
  type Severity,
} from "../src/ingest/records.ts";

// The samples are public fixtures carried in test/vectors/events (see SOURCE.md and LICENSE there).
const VECTORS = new URL("vectors/events/", import.meta.url);

const SURICATA_FILES = ["eve-small.log", "eve-alerts.log", "eve-6.0.log", "eve-dns-4.1.4.log", "eve-metadata.log"];
// Zeek JSON does not name its stream, so the expected kind comes from the file name.
const ZEEK_FILES: Record<string, string> = {
  "notice-json.log": "notice",
  "connection-json.log": "conn",
  "conn.log": "conn",
  "dns-json.log": "dns",
  "weird-json.log": "weird",
  "intel-json.log": "intel",
  "ssl-json.log": "ssl",
  "ssl-with-ja3-and-custom-fields-json.log": "ssl",
};

const EVENT_TYPE_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

function lines(dir: "suricata" | "zeek", file: string): string[] {
  const text = readFileSync(new URL(`${dir}/${file}`, VECTORS), "utf8");
  // The ingest caller skips blank lines (eve-alerts.log ends with one); do the same.
  return text.split("\n").filter((line) => line.trim() !== "");
}

function ingest(line: string, format: InputFormat = "auto"): SecurityEvent {
  return toSecurityEvent(parseJsonLine(line), format);
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

function expectRecordError(fn: () => unknown, message: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(RecordError);
  const text = (caught as Error).message;
  if (typeof message === "string") expect(text).toBe(message);
  else expect(text).toMatch(message);
}

describe("parseJsonLine", () => {
  test("a normal line parses exactly like JSON.parse", () => {
    for (const file of SURICATA_FILES) {
      for (const line of lines("suricata", file)) expect(parseJsonLine(line)).toEqual(JSON.parse(line));
    }
  });

  test("flow_ids of the samples stay numbers (all are safe integers)", () => {
    const record = parseJsonLine(lines("suricata", "eve-alerts.log")[0] ?? "");
    expect(record.flow_id).toBe(2191386088856669);
  });

  test("a 64-bit flow_id keeps its exact decimal text", () => {
    expect(parseJsonLine('{"flow_id": 18446744073709551615}')).toEqual({ flow_id: "18446744073709551615" });
  });

  test("unsafe integers anywhere are kept as text, everything else untouched", () => {
    const record = parseJsonLine(
      '{"a":[9007199254740993,-9007199254740993,9007199254740991],"b":{"c":12345678901234567890},' +
        '"f":0.12345678901234567,"s":"12345678901234567890","n":1,"big":9007199254740992}',
    );
    expect(record).toEqual({
      a: ["9007199254740993", "-9007199254740993", 9007199254740991],
      b: { c: "12345678901234567890" },
      f: 0.12345678901234567,
      s: "12345678901234567890",
      n: 1,
      big: "9007199254740992",
    });
  });

  test("a 16-digit safe integer next to an unsafe one stays a number", () => {
    const record = parseJsonLine('{"flow_id":2191386088856669,"x":99999999999999999999}');
    expect(record.flow_id).toBe(2191386088856669);
    expect(record.x).toBe("99999999999999999999");
  });

  test("floats and exponents with long digit runs stay numbers", () => {
    expect(parseJsonLine('{"a":12345678901234567890.5,"b":12345678901234567890e2}')).toEqual({
      a: 12345678901234567890.5,
      b: 12345678901234567890e2,
    });
  });

  test("a leading byte-order mark is ignored", () => {
    expect(parseJsonLine('\ufeff{"a":1}')).toEqual({ a: 1 });
  });

  test("truncated JSON is a RecordError naming the problem", () => {
    const full = lines("suricata", "eve-small.log")[0] ?? "";
    expectRecordError(() => parseJsonLine(full.slice(0, 60)), /^malformed JSON: \S/);
    expectRecordError(() => parseJsonLine('{"a":'), "malformed JSON: unexpected EOF");
    expectRecordError(() => parseJsonLine('{"a":1,}'), /^malformed JSON: /);
    expectRecordError(() => parseJsonLine('{"a":1} trailing'), /^malformed JSON: /);
    expectRecordError(() => parseJsonLine("nope"), /^malformed JSON: /);
    // Zeek's default tab-separated log: the error says how to get JSON instead.
    expectRecordError(() => parseJsonLine("#separator \\x09"), /LogAscii::use_json = T/);
    expectRecordError(() => parseJsonLine("1700000000.123456\tCx1\t10.0.0.1\t52000"), /^not JSON: a Zeek tab-separated log line\?/);
    expectRecordError(() => parseJsonLine(""), "malformed JSON: empty line");
    expectRecordError(() => parseJsonLine("   "), "malformed JSON: empty line");
  });

  test("malformed reasons are short single lines", () => {
    const err = (() => {
      try {
        parseJsonLine(`{"a":"${"x".repeat(500)}`);
      } catch (e) {
        return e as Error;
      }
      throw new Error("expected a throw");
    })();
    expect(err.message.length).toBeLessThanOrEqual(100);
    expect(err.message).not.toContain("\n");
  });

  test("valid JSON that is not an object is rejected with its kind", () => {
    expectRecordError(() => parseJsonLine("[1,2,3]"), "expected a JSON object, got array");
    expectRecordError(() => parseJsonLine("null"), "expected a JSON object, got null");
    expectRecordError(() => parseJsonLine("42"), "expected a JSON object, got number");
    expectRecordError(() => parseJsonLine("18446744073709551615"), "expected a JSON object, got string");
    expectRecordError(() => parseJsonLine('"text"'), "expected a JSON object, got string");
    expectRecordError(() => parseJsonLine("true"), "expected a JSON object, got boolean");
  });
});

describe("detectFormat on the samples", () => {
  for (const file of SURICATA_FILES) {
    test(`suricata/${file}: every line is suricata`, () => {
      const all = lines("suricata", file);
      expect(all.length).toBeGreaterThan(0);
      for (const line of all) expect(detectFormat(parseJsonLine(line))).toBe("suricata");
    });
  }
  for (const file of Object.keys(ZEEK_FILES)) {
    test(`zeek/${file}: every line is zeek`, () => {
      const all = lines("zeek", file);
      expect(all.length).toBeGreaterThan(0);
      for (const line of all) expect(detectFormat(parseJsonLine(line))).toBe("zeek");
    });
  }

  test("a Suricata stats record (no flow, no interface) is still suricata", () => {
    const stats = lines("suricata", "eve-small.log").find((l) => l.includes('"event_type":"stats"')) ?? "";
    const record = parseJsonLine(stats);
    expect("flow_id" in record || "src_ip" in record || "in_iface" in record).toBe(false);
    expect(detectFormat(record)).toBe("suricata");
  });

  test("anything else is json", () => {
    expect(detectFormat({ message: "hello" })).toBe("json");
    expect(detectFormat({ event_type: "alert" })).toBe("json");
    expect(detectFormat({ event_type: "alert", timestamp: "2020-01-01T00:00:00Z" })).toBe("json");
    expect(detectFormat({ ts: 12, foo: 1 })).toBe("json");
    expect(detectFormat({ ts: "yesterday", uid: "C1" })).toBe("json");
    expect(detectFormat({ ts: 12, uid: "C1" })).toBe("zeek");
    // An EVE-shaped record whose event_type cannot become an eventType is not EVE.
    expect(detectFormat({ event_type: "User Login", timestamp: "t", src_ip: "1.2.3.4" })).toBe("json");
  });
});

describe("Suricata samples", () => {
  for (const file of SURICATA_FILES) {
    test(`suricata/${file}: one event per line, eventType from event_type`, () => {
      const all = lines("suricata", file);
      // Independent of the parser: read event_type off the raw text.
      const expected = countBy(all, (line) => `suricata.${/"event_type":"([a-z_]+)"/.exec(line)?.[1]}`);
      const events = all.map((line) => ingest(line, "auto"));
      expect(events.length).toBe(all.length);
      expect(countBy(events, (e) => e.eventType)).toEqual(expected);
      for (const e of events) {
        expect(e.eventType).toMatch(EVENT_TYPE_RE);
        expect(e.payload.source).toBe("suricata");
      }
      // Naming the format gives the same events as detecting it.
      expect(all.map((line) => ingest(line, "suricata"))).toEqual(events);
    });
  }

  test("per-file counts match the fixture inventory", () => {
    const summary = Object.fromEntries(
      SURICATA_FILES.map((f) => [f, countBy(lines("suricata", f).map((l) => ingest(l)), (e) => e.eventType)]),
    );
    expect(summary).toEqual({
      "eve-small.log": {
        "suricata.ssh": 1,
        "suricata.alert": 1,
        "suricata.http": 1,
        "suricata.tls": 1,
        "suricata.fileinfo": 1,
        "suricata.dns": 1,
        "suricata.flow": 1,
        "suricata.stats": 1,
      },
      "eve-alerts.log": { "suricata.alert": 21, "suricata.tls": 1 },
      "eve-6.0.log": { "suricata.alert": 1 },
      "eve-dns-4.1.4.log": { "suricata.dns": 24 },
      "eve-metadata.log": { "suricata.alert": 1 },
    });
  });

  test("alert severity maps 1/2/3 to critical/high/medium", () => {
    const mapping: Record<string, Severity> = { "1": "critical", "2": "high", "3": "medium" };
    const seen: Record<string, number> = {};
    for (const file of SURICATA_FILES) {
      for (const line of lines("suricata", file)) {
        if (!line.includes('"event_type":"alert"')) continue;
        const raw = /"severity":(\d+)/.exec(line)?.[1] ?? "";
        const event = ingest(line);
        expect(event.payload.severity).toBe(mapping[raw] ?? "low");
        seen[event.payload.severity] = (seen[event.payload.severity] ?? 0) + 1;
      }
    }
    expect(seen).toEqual({ critical: 1, high: 8, medium: 15 });
  });

  test("alert category and rule indicators come from the alert object", () => {
    for (const file of SURICATA_FILES) {
      for (const line of lines("suricata", file)) {
        const event = ingest(line);
        if (event.eventType !== "suricata.alert") continue;
        const original = event.payload.original;
        const alert = original.alert as Record<string, unknown>;
        // One sample alert has category "", which falls back to the event type.
        expect(event.payload.category).toBe((alert.category as string) || "alert");
        const ind = event.payload.indicators;
        for (const key of ["signature_id", "signature", "gid", "rev", "action"] as const) expect(ind[key]).toBe(alert[key] as never);
        for (const key of ["src_ip", "src_port", "dest_ip", "dest_port", "proto", "flow_id"] as const) {
          expect(ind[key]).toBe(original[key] as never);
        }
      }
    }
  });

  test("an empty alert category falls back to \"alert\"", () => {
    const line = lines("suricata", "eve-alerts.log").find((l) => l.includes('"category":""')) ?? "";
    expect(line).not.toBe("");
    expect(ingest(line).payload.category).toBe("alert");
  });

  test("a known alert, field by field", () => {
    const line = lines("suricata", "eve-small.log").find((l) => l.includes('"event_type":"alert"')) ?? "";
    const event = ingest(line);
    expect(event.eventType).toBe("suricata.alert");
    expect(event.payload.severity).toBe("critical");
    expect(event.payload.category).toBe("Potential Corporate Privacy Violation");
    expect(event.payload.indicators).toEqual({
      src_ip: "192.168.86.85",
      src_port: 55641,
      dest_ip: "192.168.156.70",
      dest_port: 443,
      proto: "TCP",
      flow_id: 904992230150281,
      app_proto: "tls",
      signature_id: 2024833,
      signature: "ET POLICY Observed IP Lookup Domain (l2 .io in TLS SNI)",
      gid: 1,
      rev: 3,
      action: "allowed",
      server_name: "l2.io",
      tls_version: "TLS 1.2",
    });
  });

  test("telemetry types are info with the event_type as category", () => {
    for (const line of lines("suricata", "eve-small.log")) {
      const event = ingest(line);
      if (event.eventType === "suricata.alert") continue;
      const type = event.payload.original.event_type as string;
      expect(event.payload.severity).toBe("info");
      expect(event.payload.category).toBe(type);
    }
  });

  test("dns records carry the query name and type", () => {
    for (const line of lines("suricata", "eve-dns-4.1.4.log")) {
      const event = ingest(line);
      const dns = event.payload.original.dns as Record<string, unknown>;
      expect(event.payload.category).toBe("dns");
      expect(event.payload.indicators.query).toBe(dns.rrname as string);
      expect(event.payload.indicators.qtype).toBe(dns.rrtype as string);
    }
  });

  test("TLS records with reversed key order yield ja3 hashes and SNI", () => {
    const tls = lines("suricata", "eve-alerts.log")
      .map((l) => ingest(l))
      .filter((e) => "ja3" in e.payload.indicators);
    expect(tls.length).toBe(2);
    for (const e of tls) {
      const raw = e.payload.original.tls as { ja3: { hash: string }; ja3s: { hash: string }; sni: string };
      expect(e.payload.indicators.ja3).toBe(raw.ja3.hash);
      expect(e.payload.indicators.ja3s).toBe(raw.ja3s.hash);
      expect(e.payload.indicators.server_name).toBe(raw.sni);
    }
  });

  test("anomaly records are medium with anomaly details", () => {
    const event = toSecurityEvent(
      {
        timestamp: "2020-01-01T00:00:00.000000+0000",
        flow_id: 1,
        event_type: "anomaly",
        src_ip: "10.0.0.1",
        anomaly: { type: "decode", event: "ipv4.trunc_pkt", layer: "ipv4" },
      },
      "auto",
    );
    expect(event.eventType).toBe("suricata.anomaly");
    expect(event.payload.severity).toBe("medium");
    expect(event.payload.category).toBe("anomaly");
    expect(event.payload.indicators).toEqual({
      src_ip: "10.0.0.1",
      flow_id: 1,
      anomaly_type: "decode",
      anomaly_event: "ipv4.trunc_pkt",
      anomaly_layer: "ipv4",
    });
  });

  test("drop with an alert maps like an alert; unknown alert severity is low", () => {
    const base = { timestamp: "2020-01-01T00:00:00+0000", in_iface: "eth0" };
    const drop = toSecurityEvent({ ...base, event_type: "drop", alert: { severity: 1, category: "Exploit", signature_id: 7 } }, "auto");
    expect(drop.eventType).toBe("suricata.drop");
    expect(drop.payload.severity).toBe("critical");
    expect(drop.payload.category).toBe("Exploit");
    expect(drop.payload.indicators.signature_id).toBe(7);
    const bare = toSecurityEvent({ ...base, event_type: "drop", drop: { len: 60 } }, "auto");
    expect(bare.payload.severity).toBe("low");
    expect(bare.payload.category).toBe("drop");
    const sev4 = toSecurityEvent({ ...base, event_type: "alert", alert: { severity: 4 } }, "auto");
    expect(sev4.payload.severity).toBe("low");
    expect(sev4.payload.category).toBe("alert");
    const noAlert = toSecurityEvent({ ...base, event_type: "alert" }, "suricata");
    expect(noAlert.payload.severity).toBe("low");
    expect(noAlert.payload.category).toBe("alert");
  });

  test("a 64-bit flow_id survives into the indicators exactly", () => {
    const line = `{"timestamp":"2020-01-01T00:00:00+0000","flow_id":18446744073709551615,"event_type":"flow","src_ip":"10.0.0.1"}`;
    const event = ingest(line);
    expect(event.payload.indicators.flow_id).toBe("18446744073709551615");
    expect(event.payload.original.flow_id).toBe("18446744073709551615");
  });
});

describe("Zeek samples", () => {
  for (const [file, kind] of Object.entries(ZEEK_FILES)) {
    test(`zeek/${file}: every line is zeek.${kind}`, () => {
      const all = lines("zeek", file);
      const events = all.map((line) => ingest(line));
      expect(countBy(events, (e) => e.eventType)).toEqual({ [`zeek.${kind}`]: all.length });
      for (const e of events) {
        expect(e.payload.source).toBe("zeek");
        expect(e.payload.category).toBe(kind);
        expect(e.eventType).toMatch(EVENT_TYPE_RE);
      }
      // Naming the format gives the same events as detecting it.
      expect(all.map((line) => ingest(line, "zeek"))).toEqual(events);
    });
  }

  test("line counts per file", () => {
    const counts = Object.fromEntries(Object.keys(ZEEK_FILES).map((f) => [f, lines("zeek", f).length]));
    expect(counts).toEqual({
      "notice-json.log": 2,
      "connection-json.log": 5,
      "conn.log": 2,
      "dns-json.log": 3,
      "weird-json.log": 1,
      "intel-json.log": 1,
      "ssl-json.log": 3,
      "ssl-with-ja3-and-custom-fields-json.log": 1,
    });
  });

  test("connection endpoints map from id.* fields", () => {
    for (const file of ["conn.log", "connection-json.log", "dns-json.log", "ssl-json.log", "weird-json.log", "intel-json.log"]) {
      for (const line of lines("zeek", file)) {
        const { indicators, original } = ingest(line).payload;
        expect(indicators.uid).toBe(original.uid as string);
        expect(indicators.src_ip).toBe(original["id.orig_h"] as string);
        expect(indicators.src_port).toBe(original["id.orig_p"] as number);
        expect(indicators.dest_ip).toBe(original["id.resp_h"] as string);
        expect(indicators.dest_port).toBe(original["id.resp_p"] as number);
      }
    }
  });

  test("notices are high, with note, msg and hosts from src/dst", () => {
    const [first, second] = lines("zeek", "notice-json.log").map((l) => ingest(l));
    expect(first?.payload.severity).toBe("high");
    expect(first?.payload.indicators).toEqual({
      src_ip: "172.16.238.1",
      note: "SSH::Password_Guessing",
      msg: "172.16.238.1 appears to be guessing SSH passwords (seen in 30 connections).",
    });
    expect(second?.payload.indicators.note).toBe("Scan::Port_Scan");
    expect(second?.payload.indicators.dest_ip).toBe("207.154.238.205");
  });

  test("weird is low, intel is high with the indicator, conn/dns/ssl are info", () => {
    const weird = ingest(lines("zeek", "weird-json.log")[0] ?? "");
    expect(weird.payload.severity).toBe("low");
    expect(weird.payload.indicators.name).toBe("dns_unmatched_reply");
    expect(weird.payload.indicators.peer).toBe("worker-6");

    const intel = ingest(lines("zeek", "intel-json.log")[0] ?? "");
    expect(intel.payload.severity).toBe("high");
    expect(intel.payload.indicators.indicator).toBe("198.41.0.4");
    expect(intel.payload.indicators.indicator_type).toBe("Intel::ADDR");
    expect(intel.payload.indicators.matched).toBe("Intel::ADDR");

    for (const file of ["conn.log", "connection-json.log", "dns-json.log", "ssl-json.log"]) {
      for (const line of lines("zeek", file)) expect(ingest(line).payload.severity).toBe("info");
    }
    const dns = ingest(lines("zeek", "dns-json.log")[1] ?? "");
    expect(dns.payload.indicators.query).toBe("_googlecast._tcp.local");
    expect(dns.payload.indicators.qtype).toBe("PTR");

    const ssl = ingest(lines("zeek", "ssl-with-ja3-and-custom-fields-json.log")[0] ?? "");
    expect(ssl.payload.indicators.ja3).toBe("74927e242d6c3febf8cb9cab10a7f889");
    expect(ssl.payload.indicators.tls_version).toBe("TLSv12");
    expect(ssl.payload.indicators.validation_status).toBe("self signed certificate");
    const sni = ingest(lines("zeek", "ssl-json.log")[0] ?? "");
    expect(sni.payload.indicators.server_name).toBe("dd625ffb4fc54735b281862aa1cd6cd4.us-west1.gcp.cloud.es.io");
  });

  test("an ISO-8601 ts is accepted", () => {
    const line = lines("zeek", "connection-json.log").find((l) => l.startsWith('{"ts":"')) ?? "";
    expect(line).not.toBe("");
    expect(ingest(line).eventType).toBe("zeek.conn");
  });

  test("a zeek record of an unknown stream is zeek.log", () => {
    const event = toSecurityEvent({ ts: 1.5, uid: "CX", "id.orig_h": "10.0.0.1", fuid: "F1" }, "auto");
    expect(event.eventType).toBe("zeek.log");
    expect(event.payload.severity).toBe("info");
    expect(event.payload.category).toBe("log");
  });
});

describe("generic json", () => {
  test("severity words are honoured case-insensitively, anything else is info", () => {
    expect(toSecurityEvent({ severity: "HIGH", msg: "x" }, "auto").payload.severity).toBe("high");
    expect(toSecurityEvent({ severity: "Critical" }, "json").payload.severity).toBe("critical");
    expect(toSecurityEvent({ severity: "urgent" }, "json").payload.severity).toBe("info");
    expect(toSecurityEvent({ severity: 1 }, "json").payload.severity).toBe("info");
    expect(toSecurityEvent({}, "json").payload.severity).toBe("info");
  });

  test("eventType is json, or json.<type> for a well-formed type tag", () => {
    expect(toSecurityEvent({ a: 1 }, "auto").eventType).toBe("json");
    expect(toSecurityEvent({ type: "login" }, "auto").eventType).toBe("json.login");
    expect(toSecurityEvent({ event_type: "auth.fail", type: "x" }, "json").eventType).toBe("json.auth.fail");
    expect(toSecurityEvent({ type: "User Login" }, "auto").eventType).toBe("json");
    expect(toSecurityEvent({ type: "x".repeat(33) }, "auto").eventType).toBe("json");
    expect(toSecurityEvent({ type: 5 }, "auto").eventType).toBe("json");
    const event = toSecurityEvent({ type: "login", src_ip: "10.1.1.1", user: "root", nested: { a: 1 } }, "auto");
    expect(event.payload.source).toBe("json");
    expect(event.payload.category).toBe("generic");
    expect(event.payload.indicators).toEqual({ src_ip: "10.1.1.1", user: "root" });
  });

  test("an EVE record forced to json keeps its event_type as the tag", () => {
    const line = lines("suricata", "eve-6.0.log")[0] ?? "";
    const event = ingest(line, "json");
    expect(event.eventType).toBe("json.alert");
    expect(event.payload.severity).toBe("info");
  });
});

describe("format mismatches and bad records", () => {
  test("--format suricata rejects a record without event_type", () => {
    const zeekLine = lines("zeek", "conn.log")[0] ?? "";
    expectRecordError(() => ingest(zeekLine, "suricata"), "not a Suricata EVE record: missing event_type");
    expectRecordError(() => toSecurityEvent({ event_type: 3 }, "suricata"), "not a Suricata EVE record: missing event_type");
  });

  test("--format suricata rejects an event_type that cannot name an event", () => {
    expectRecordError(() => toSecurityEvent({ event_type: "Alert!" }, "suricata"), /^unsupported Suricata event_type: /);
    expectRecordError(() => toSecurityEvent({ event_type: "" }, "suricata"), /^unsupported Suricata event_type: /);
    expectRecordError(() => toSecurityEvent({ event_type: "a".repeat(56) }, "suricata"), /^unsupported Suricata event_type: /);
    expect(toSecurityEvent({ event_type: "a".repeat(55) }, "suricata").eventType).toMatch(EVENT_TYPE_RE);
  });

  test("--format zeek rejects a record without a usable ts", () => {
    const eveLine = lines("suricata", "eve-small.log")[0] ?? "";
    expectRecordError(() => ingest(eveLine, "zeek"), "not a Zeek record: missing ts");
    expectRecordError(() => toSecurityEvent({ ts: "soon", uid: "C1" }, "zeek"), /^not a Zeek record: ts is neither/);
    expectRecordError(() => toSecurityEvent({ ts: null }, "zeek"), /^not a Zeek record: ts is neither/);
  });

  test("a record that cannot be canonicalized is a RecordError", () => {
    expectRecordError(() => ingest('{"msg":"\\ud800"}'), /^cannot canonicalize record: /);
  });
});

describe("payload", () => {
  test("event_id is the first 32 hex chars of sha256(JCS(original)), distinct per line", () => {
    const ids = new Set<string>();
    let total = 0;
    for (const [dir, files] of [
      ["suricata", SURICATA_FILES],
      ["zeek", Object.keys(ZEEK_FILES)],
    ] as const) {
      for (const file of files) {
        for (const line of lines(dir, file)) {
          const event = ingest(line);
          const expected = createHash("sha256").update(canonicalize(JSON.parse(line))).digest("hex").slice(0, 32);
          expect(event.payload.event_id).toBe(expected);
          expect(event.payload.event_id).toMatch(/^[0-9a-f]{32}$/);
          ids.add(event.payload.event_id);
          total++;
        }
      }
    }
    // The samples hold no duplicate lines, so every id must differ.
    expect(ids.size).toBe(total);
  });

  test("event_id ignores key order and whitespace", () => {
    const a = ingest('{"b":1, "a":[1,2]}');
    const b = ingest('{"a":[1,2],"b":1}');
    expect(a.payload.event_id).toBe(b.payload.event_id);
  });

  test("original is the parsed record itself and the payload has exactly the contract keys", () => {
    const record = parseJsonLine(lines("suricata", "eve-alerts.log")[0] ?? "");
    const event = toSecurityEvent(record, "auto");
    expect(event.payload.original).toBe(record);
    expect(Object.keys(event.payload).sort()).toEqual(["category", "event_id", "indicators", "original", "severity", "source"]);
    expect(Object.keys(event).sort()).toEqual(["eventType", "originalCanonical", "payload"]);
    expect(event.originalCanonical).toBe(canonicalize(record));
  });

  test("indicator values are flat scalars", () => {
    for (const file of SURICATA_FILES) {
      for (const line of lines("suricata", file)) {
        for (const value of Object.values(ingest(line).payload.indicators)) {
          expect(["string", "number", "boolean"]).toContain(typeof value);
        }
      }
    }
  });
});

test("throughput of parseJsonLine + toSecurityEvent on eve-alerts.log (printed, not asserted)", () => {
  const sample = lines("suricata", "eve-alerts.log");
  const rounds = 500;
  let n = 0;
  for (let i = 0; i < 50; i++) for (const line of sample) toSecurityEvent(parseJsonLine(line), "auto");
  const start = Bun.nanoseconds();
  for (let i = 0; i < rounds; i++) {
    for (const line of sample) {
      toSecurityEvent(parseJsonLine(line), "auto");
      n++;
    }
  }
  const seconds = (Bun.nanoseconds() - start) / 1e9;
  const bigLine = '{"timestamp":"2020-01-01T00:00:00+0000","flow_id":18446744073709551615,"event_type":"flow","src_ip":"10.0.0.1"}';
  const bigStart = Bun.nanoseconds();
  for (let i = 0; i < 20000; i++) toSecurityEvent(parseJsonLine(bigLine), "auto");
  const bigSeconds = (Bun.nanoseconds() - bigStart) / 1e9;
  console.log(
    `ingest throughput: ${Math.round(n / seconds)} lines/s on eve-alerts.log x${rounds}; ` +
      `${Math.round(20000 / bigSeconds)} lines/s for short lines needing the big-integer reviver`,
  );
  expect(n).toBe(rounds * sample.length);
});
