// End-to-end tests of the compiled binary: every test drives dist/dsm through real
// pipes against a fresh temporary data directory. `bun run test` builds the binary
// first; run `bun run build` before `bun test test/e2e-cli.test.ts` by hand.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pkg from "../package.json" with { type: "json" };
import { DSM, expectOneLineError as expectCommandError, makeNode, ndjson, requireBinary, type RunResult, type TempNode, withTempNode } from "./helpers/e2e.ts";
import { SURICATA_ALERT } from "./helpers/fixtures.ts";

const VECTORS = new URL("vectors/events/", import.meta.url);
const HEX64 = /^[0-9a-f]{64}$/;
const TOKEN = /^ip-[0-9a-f]{32}$/;

type IngestResult = { source: string; line: number; id?: string; seq?: number; error?: string; skipped?: string };
type Microblock = { id: string; seq: number; node_id: string; event_type: string; timestamp: string; prev: string; payload_hash: string };
type Shown = { microblock: Microblock; payload: any; key_certificate: any };

// ---------------------------------------------------------------------------
// Small helpers over the binary

async function logAll(node: TempNode, extra: string[] = []): Promise<Microblock[]> {
  const r = await node.ok(["log", "--json", "--limit", "0", ...extra]);
  return ndjson<Microblock>(r.stdout);
}

async function show(node: TempNode, ref: string): Promise<Shown> {
  const r = await node.ok(["show", "--json", ref]);
  return JSON.parse(r.stdout) as Shown;
}

async function expectVerifies(node: TempNode): Promise<void> {
  const r = await node.run(["verify"]);
  expect(r.stderr + r.stdout).not.toContain("FAILED");
  expect(r.code).toBe(0);
  expect(r.stdout).toStartWith("OK");
}

/** A failure: exit 1, exactly one line on stderr, nothing on stdout. */
function expectOneLineError(r: RunResult, code = 1): string {
  expect(r.code).toBe(code);
  expect(r.errLines).toHaveLength(1);
  expect(r.stdout).toBe("");
  return r.errLines[0]!;
}

function countBy<T>(items: T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const it of items) out[key(it)] = (out[key(it)] ?? 0) + 1;
  return out;
}

/** Physical 1-based numbers of the non-blank lines of a file's text (split on \n). */
function nonBlankLineNumbers(text: string): number[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop(); // the text after the final newline is not a line
  const out: number[] = [];
  lines.forEach((l, i) => {
    if (l.trim() !== "") out.push(i + 1);
  });
  return out;
}

function blankLineNumbers(text: string): number[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const out: number[] = [];
  lines.forEach((l, i) => {
    if (l.trim() === "") out.push(i + 1);
  });
  return out;
}

/** Reads newline-terminated lines from a stream, keeping what is left over between calls. */
class LineReader {
  #reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> };
  #buf = "";
  #decoder = new TextDecoder();
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }
  /** The next line, or null at EOF or after timeoutMs. */
  async next(timeoutMs: number): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#buf.includes("\n")) {
      const left = deadline - Date.now();
      if (left <= 0) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), left)));
      const r = await Promise.race([this.#pending ??= this.#reader.read(), timeout]);
      clearTimeout(timer);
      if (r === "timeout") return null;
      this.#pending = null;
      if (r.done || !r.value) return null;
      this.#buf += this.#decoder.decode(r.value, { stream: true });
    }
    const i = this.#buf.indexOf("\n");
    const line = this.#buf.slice(0, i);
    this.#buf = this.#buf.slice(i + 1);
    return line;
  }
  // A read still in flight after a timeout is kept for the next call, so no chunk is lost.
  #pending: Promise<{ done: boolean; value?: Uint8Array }> | null = null;
  async rest(): Promise<string> {
    let out = this.#buf;
    this.#buf = "";
    for (;;) {
      const r = await (this.#pending ?? this.#reader.read());
      this.#pending = null;
      if (r.done || !r.value) return out + this.#decoder.decode();
      out += this.#decoder.decode(r.value, { stream: true });
    }
  }
}

// ---------------------------------------------------------------------------
// Sample vectors

const SURICATA_DIR = fileURLToPath(new URL("suricata/", VECTORS));
const ZEEK_DIR = fileURLToPath(new URL("zeek/", VECTORS));
const listLogs = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".log")).sort() : []);
const SURICATA_FILES = listLogs(SURICATA_DIR);
const ZEEK_FILES = listLogs(ZEEK_DIR);

// Zeek JSON does not name its log stream; what each sample file is, independently of dsm.
const ZEEK_TYPES: Record<string, string> = {
  "conn.log": "zeek.conn",
  "connection-json.log": "zeek.conn",
  "dns-json.log": "zeek.dns",
  "intel-json.log": "zeek.intel",
  "notice-json.log": "zeek.notice",
  "ssl-json.log": "zeek.ssl",
  "ssl-with-ja3-and-custom-fields-json.log": "zeek.ssl",
  "weird-json.log": "zeek.weird",
};

function expectedTypes(kind: "suricata" | "zeek", file: string, text: string): Record<string, number> {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (kind === "suricata") return countBy(lines, (l) => `suricata.${(JSON.parse(l) as { event_type: string }).event_type}`);
  return { [ZEEK_TYPES[file]!]: lines.length };
}

test("dist/dsm is built and the sample vectors are present", () => {
  requireBinary(); // "run bun run build first"
  expect(statSync(DSM).mode & 0o111).not.toBe(0);
  expect(SURICATA_FILES).toContain("eve-alerts.log");
  expect(SURICATA_FILES.length).toBeGreaterThanOrEqual(5);
  expect(ZEEK_FILES.length).toBeGreaterThanOrEqual(8);
  for (const f of ZEEK_FILES) expect(Object.keys(ZEEK_TYPES)).toContain(f);
});

// ---------------------------------------------------------------------------
// 1. Real samples

describe("ingest of the real Suricata and Zeek samples", () => {
  const cases = [
    ...SURICATA_FILES.map((f) => ["suricata", f, join(SURICATA_DIR, f)] as const),
    ...ZEEK_FILES.map((f) => ["zeek", f, join(ZEEK_DIR, f)] as const),
  ];
  for (const [kind, file, path] of cases) {
    test(`${kind}/${file}`, async () => {
      const text = readFileSync(path, "utf8");
      const goodLines = nonBlankLineNumbers(text);
      const blankLines = blankLineNumbers(text);
      expect(goodLines.length).toBeGreaterThan(0);
      await withTempNode(async (node) => {
        const r = await node.run(["ingest", "--json", path]);
        expect(r.code).toBe(0);
        const all = ndjson<IngestResult>(r.stdout);
        // One result per input line: empty lines get {"skipped": "empty line"}.
        expect(all.filter((x) => x.skipped).map((x) => x.line)).toEqual(blankLines);
        const results = all.filter((x) => !x.skipped);
        expect(results).toHaveLength(goodLines.length);
        expect(results.map((x) => x.line)).toEqual(goodLines);
        for (const x of results) {
          expect(x.source).toBe(path);
          expect(x.error).toBeUndefined();
          expect(x.id).toMatch(HEX64);
        }
        const ids = results.map((x) => x.id!);
        expect(new Set(ids).size).toBe(ids.length);
        expect(results.map((x) => x.seq)).toEqual(goodLines.map((_, i) => i + 1));

        // stderr: an empty line is reported by position, nothing else is, plus the summary.
        const located = r.errLines.filter((l) => l.startsWith(`dsm ingest: ${path}:`));
        expect(located).toEqual(blankLines.map((n) => `dsm ingest: ${path}:${n}: empty line skipped`));
        expect(r.stderr).toContain(`${goodLines.length} stored, 0 rejected, ${blankLines.length} empty`);

        const stored = await logAll(node);
        expect(stored).toHaveLength(goodLines.length);
        expect(new Set(stored.map((m) => m.id))).toEqual(new Set(ids));
        expect(countBy(stored, (m) => m.event_type)).toEqual(expectedTypes(kind, file, text));

        // The first line's payload keeps the original record (when it has no 64-bit integers).
        const first = text.split("\n")[goodLines[0]! - 1]!;
        if (!/\d{16,}/.test(first)) {
          const shown = await show(node, ids[0]!);
          expect(shown.payload.original).toEqual(JSON.parse(first));
          expect(shown.payload.source).toBe(kind);
          expect(shown.microblock.event_type).toStartWith(`${kind}.`);
        }
        await expectVerifies(node);
      });
    });
  }

  test("eve-alerts.log: the trailing empty line is reported and does not change the exit code", async () => {
    const path = join(SURICATA_DIR, "eve-alerts.log");
    const text = readFileSync(path, "utf8");
    expect(text.endsWith("\n\n")).toBe(true);
    const last = text.split("\n").length - 1; // number of the empty last line
    await withTempNode(async (node) => {
      const r = await node.run(["ingest", path]); // human mode: no stdout data
      expect(r.code).toBe(0);
      expect(r.stdout).toBe("");
      expect(r.errLines).toContain(`dsm ingest: ${path}:${last}: empty line skipped`);
      expect(r.errLines.at(-1)).toMatch(/1 empty/);
    });
  });

  test("all samples concatenated through stdin, auto-detected", async () => {
    const all = [...SURICATA_FILES.map((f) => ["suricata", f, join(SURICATA_DIR, f)] as const), ...ZEEK_FILES.map((f) => ["zeek", f, join(ZEEK_DIR, f)] as const)];
    let input = "";
    let expectedCount = 0;
    const types: Record<string, number> = {};
    for (const [kind, file, path] of all) {
      const text = readFileSync(path, "utf8");
      input += text.endsWith("\n") ? text : text + "\n"; // some samples lack a final newline
      expectedCount += nonBlankLineNumbers(text).length;
      for (const [t, n] of Object.entries(expectedTypes(kind, file, text))) types[t] = (types[t] ?? 0) + n;
    }
    await withTempNode(async (node) => {
      const r = await node.run(["ingest", "--json"], { stdin: input });
      expect(r.code).toBe(0);
      const all = ndjson<IngestResult>(r.stdout);
      expect(all.filter((x) => x.skipped).map((x) => x.line)).toEqual(blankLineNumbers(input));
      const results = all.filter((x) => !x.skipped);
      expect(results).toHaveLength(expectedCount);
      expect(results.map((x) => x.line)).toEqual(nonBlankLineNumbers(input));
      for (const x of results) {
        expect(x.source).toBe("stdin");
        expect(x.id).toMatch(HEX64);
      }
      expect(new Set(results.map((x) => x.id)).size).toBe(expectedCount);
      const stored = await logAll(node);
      expect(stored).toHaveLength(expectedCount);
      expect(countBy(stored, (m) => m.event_type)).toEqual(types);
      await expectVerifies(node);
    });
  });
});

// ---------------------------------------------------------------------------
// 2. Bad lines

const GOOD_ALERT = { ...SURICATA_ALERT, timestamp: "2020-06-26T11:00:03.342282-0400" };
const GOOD_DNS = {
  timestamp: "2020-06-26T11:00:04.000000-0400",
  flow_id: 123,
  in_iface: "eth0",
  event_type: "dns",
  src_ip: "10.0.0.5",
  dest_ip: "10.0.0.53",
  proto: "UDP",
  dns: { type: "query", id: 1, rrname: "example.com", rrtype: "A" },
};
const GOOD_NOTICE = {
  ts: 1551393388.426472,
  note: "Scan::Port_Scan",
  msg: "216.160.83.57 scanned at least 15 unique ports of host 207.154.238.205 in 0m0s",
  sub: "remote",
  src: "216.160.83.57",
  dst: "207.154.238.205",
  actions: ["Notice::ACTION_LOG"],
};

function bytes(...parts: (string | Uint8Array)[]): Uint8Array {
  const enc = new TextEncoder();
  const arrays = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  return new Uint8Array(Buffer.concat(arrays));
}

describe("bad lines amid good ones", () => {
  test("each bad line is reported and rejected, good ones are stored, exit 3", async () => {
    const huge = `{"x":"${"a".repeat(2 * 1024 * 1024)}"}`; // valid JSON, 2 MiB: only its length is wrong
    const input = bytes(
      JSON.stringify(GOOD_ALERT) + "\n", // 1 good
      '{"a":\n', // 2 malformed
      "[1,2]\n", // 3 array
      "42\n", // 4 number
      huge + "\n", // 5 too long
      bytes('{"x":"', new Uint8Array([0xff, 0xfe]), '"}\n'), // 6 invalid UTF-8
      "\n", // 7 empty
      JSON.stringify(GOOD_DNS) + "\r\n", // 8 good, CRLF
      JSON.stringify(GOOD_NOTICE), // 9 good, no final newline
    );
    await withTempNode(async (node) => {
      const r = await node.run(["ingest", "--json"], { stdin: input });
      expect(r.code).toBe(3);

      // stderr: one line per bad line, in order, naming stdin:<line> and the reason; no line echoes input.
      for (const l of r.errLines) expect(l.length).toBeLessThan(400);
      const located = r.errLines.filter((l) => /^dsm ingest: stdin:\d+: /.test(l));
      expect(located.map((l) => Number(/stdin:(\d+):/.exec(l)![1]))).toEqual([2, 3, 4, 5, 6, 7]);
      const reason = (n: number) => located.find((l) => l.startsWith(`dsm ingest: stdin:${n}: `))!;
      expect(reason(2)).toMatch(/malformed/i);
      expect(reason(3)).toMatch(/expected a JSON object.*array/);
      expect(reason(4)).toMatch(/expected a JSON object.*number/);
      expect(reason(5)).toMatch(/too long/);
      expect(reason(6)).toMatch(/UTF-8/);
      expect(reason(7)).toMatch(/empty/);
      expect(r.errLines.at(-1)).toMatch(/9 lines: 3 stored, 5 rejected, 1 empty/);

      // --json: one result per input line in input order; the empty line is "skipped".
      const results = ndjson<IngestResult>(r.stdout);
      expect(results.map((x) => x.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(results.find((x) => x.line === 7)).toMatchObject({ skipped: "empty line" });
      for (const x of results) expect(x.source).toBe("stdin");
      const byLine = new Map(results.map((x) => [x.line, x]));
      for (const n of [1, 8, 9]) {
        expect(byLine.get(n)!.id).toMatch(HEX64);
        expect(byLine.get(n)!.error).toBeUndefined();
      }
      for (const n of [2, 3, 4, 5, 6]) {
        expect(byLine.get(n)!.id).toBeUndefined();
        expect(reason(n)).toEndWith(byLine.get(n)!.error!); // the same reason on both channels
      }
      expect(results.filter((x) => x.id).map((x) => x.seq)).toEqual([1, 2, 3]);

      // Exactly the good lines are stored, whole.
      const stored = await logAll(node, ["--oldest-first"]);
      expect(stored.map((m) => m.event_type)).toEqual(["suricata.alert", "suricata.dns", "zeek.notice"]);
      expect(stored.map((m) => m.id)).toEqual([1, 8, 9].map((n) => byLine.get(n)!.id!));
      const originals = [GOOD_ALERT, GOOD_DNS, GOOD_NOTICE];
      for (const [i, m] of stored.entries()) {
        const s = await show(node, m.id);
        expect(s.payload.original).toEqual(originals[i]!);
        expect(JSON.stringify(s.payload)).not.toContain("\\r");
      }
      const status = JSON.parse((await node.ok(["status", "--json"])).stdout);
      expect(status.head.seq).toBe(3);
      expect(status.ledger.microblocks).toBe(3);
      await expectVerifies(node);
    });
  });

  test("only bad lines: nothing stored, exit 3, the stream is read to its end", async () => {
    await withTempNode(async (node) => {
      const r = await node.run(["ingest", "--json"], { stdin: "nope\n{\n[]\n" });
      expect(r.code).toBe(3);
      expect(ndjson<IngestResult>(r.stdout).map((x) => [x.line, x.id === undefined])).toEqual([[1, true], [2, true], [3, true]]);
      expect(await logAll(node)).toHaveLength(0);
      await expectVerifies(node);
    });
  });

  test("--format suricata rejects a Zeek line with a reason; --format zeek rejects an EVE line", async () => {
    await withTempNode(async (node) => {
      const r = await node.run(["ingest", "--json", "--format", "suricata"], { stdin: JSON.stringify(GOOD_NOTICE) + "\n" });
      expect(r.code).toBe(3);
      const [res] = ndjson<IngestResult>(r.stdout);
      expect(res!.line).toBe(1);
      expect(res!.id).toBeUndefined();
      expect(res!.error).toMatch(/suricata/i);
      expect(r.errLines.find((l) => l.startsWith("dsm ingest: stdin:"))).toMatch(/^dsm ingest: stdin:1: .*suricata/i);

      const z = await node.run(["ingest", "--json", "--format=zeek"], { stdin: JSON.stringify(GOOD_ALERT) + "\n" });
      expect(z.code).toBe(3);
      expect(ndjson<IngestResult>(z.stdout)[0]!.error).toMatch(/zeek/i);
      expect(await logAll(node)).toHaveLength(0);

      // The same Zeek line is accepted by --format zeek.
      const ok = await node.run(["ingest", "--json", "--format", "zeek"], { stdin: JSON.stringify(GOOD_NOTICE) + "\n" });
      expect(ok.code).toBe(0);
      expect((await logAll(node)).map((m) => m.event_type)).toEqual(["zeek.notice"]);
    });
  });

  test("--format with a value outside the list is an error, nothing is read", async () => {
    await withTempNode(async (node) => {
      const r = await node.run(["ingest", "--format", "csv"], { stdin: JSON.stringify(GOOD_ALERT) + "\n" });
      const line = expectOneLineError(r);
      expect(line).toContain("auto, suricata, zeek, json");
      expect(await logAll(node)).toHaveLength(0);
    });
  });
});

// ---------------------------------------------------------------------------
// 3. Big integers

test("3. a 64-bit flow_id is kept exactly, as a string; safe integers stay numbers", async () => {
  const big = `{"timestamp":"2020-06-26T11:00:03.342282-0400","flow_id":18446744073709551615,"in_iface":"eth0","event_type":"alert","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","alert":{"severity":2,"signature":"x","signature_id":9}}`;
  await withTempNode(async (node) => {
    const r = await node.ok(["ingest", "--json"], { stdin: `${big}\n${JSON.stringify(GOOD_ALERT)}\n` });
    const [a, b] = ndjson<IngestResult>(r.stdout);
    const s = await show(node, a!.id!);
    expect(s.payload.original.flow_id).toBe("18446744073709551615");
    expect(s.payload.indicators.flow_id).toBe("18446744073709551615");
    expect(s.payload.severity).toBe("high");
    const t = await show(node, b!.id!);
    expect(t.payload.original.flow_id).toBe(991192778198299);
    await expectVerifies(node);
  });
});

// ---------------------------------------------------------------------------
// 4. Privacy

describe("privacy.anonymize_ips", () => {
  const notices = readFileSync(join(ZEEK_DIR, "notice-json.log"), "utf8");
  // A Suricata alert from the host the second sample notice names in its msg.
  const alert = { ...GOOD_ALERT, src_ip: "216.160.83.57", dest_ip: "10.128.2.48" };
  const input = `${JSON.stringify(alert)}\n${notices}`;
  const ips = [...new Set(input.match(/\b\d{1,3}(?:\.\d{1,3}){3}\b/g))];

  async function ingestAll(node: TempNode): Promise<Shown[]> {
    const r = await node.ok(["ingest", "--json"], { stdin: input });
    const ids = ndjson<IngestResult>(r.stdout).map((x) => x.id!);
    expect(ids).toHaveLength(3);
    return Promise.all(ids.map((id) => show(node, id)));
  }

  test("with DSM_PRIVACY_ANONYMIZE_IPS=true no IP is stored and one IP gets one token", async () => {
    expect(ips).toEqual(expect.arrayContaining(["216.160.83.57", "207.154.238.205", "172.16.238.1", "172.16.238.136", "10.128.2.48"]));
    await withTempNode(
      async (node) => {
        const status = JSON.parse((await node.ok(["status", "--json"])).stdout);
        expect(status.anonymize_ips).toBe(true);
        const [sur, n1, n2] = await ingestAll(node);
        for (const s of [sur!, n1!, n2!]) {
          const text = JSON.stringify(s);
          for (const ip of ips) expect(text).not.toContain(ip);
        }
        const tok = sur!.payload.original.src_ip as string;
        expect(tok).toMatch(TOKEN);
        expect(sur!.payload.indicators.src_ip).toBe(tok);
        expect(sur!.payload.original.dest_ip).toMatch(TOKEN);
        expect(sur!.payload.original.dest_ip).not.toBe(tok);
        // 216.160.83.57 in the Zeek notice: same token in src and embedded in msg.
        expect(n2!.payload.original.src).toBe(tok);
        expect(n2!.payload.original.msg).toStartWith(`${tok} scanned at least 15 unique ports of host ip-`);
        expect(n1!.payload.original.src).toMatch(TOKEN);
        expect(n1!.payload.original.src).not.toBe(tok);

        // dsm emit payloads are anonymised too, with the same token.
        const e = await node.ok(["emit", "--event-type", "honeypot.login", "--payload", '{"user":"root","src_ip":"216.160.83.57"}']);
        const shown = await show(node, e.stdout.trim());
        expect(shown.payload).toEqual({ user: "root", src_ip: tok });
        await expectVerifies(node);
      },
      { env: { DSM_PRIVACY_ANONYMIZE_IPS: "true" } },
    );
  });

  test("without the setting the IPs are stored as they came", async () => {
    await withTempNode(async (node) => {
      const [sur, n1, n2] = await ingestAll(node);
      expect(sur!.payload.original.src_ip).toBe("216.160.83.57");
      expect(n2!.payload.original.src).toBe("216.160.83.57");
      expect(n2!.payload.original.msg).toStartWith("216.160.83.57 scanned");
      const all = JSON.stringify([sur, n1, n2]);
      for (const ip of ips) expect(all).toContain(ip);
    });
  });

  // PRODUCT BUG (fails until fixed): the IPv6 matcher takes "::" in "SSH::Password_Guessing"
  // and "ce::AC" in "Notice::ACTION_LOG" for IPv6 addresses and replaces them by tokens.
  test("anonymisation leaves non-IP text such as Zeek note names and actions intact", async () => {
    await withTempNode(
      async (node) => {
        const [, n1, n2] = await ingestAll(node);
        expect(n1!.payload.original.note).toBe("SSH::Password_Guessing");
        expect(n2!.payload.original.note).toBe("Scan::Port_Scan");
        expect(n1!.payload.indicators.note).toBe("SSH::Password_Guessing");
        expect(n1!.payload.original.actions).toEqual(["Notice::ACTION_LOG"]);
        expect(n2!.payload.original.actions).toEqual(["Notice::ACTION_LOG"]);
      },
      { env: { DSM_PRIVACY_ANONYMIZE_IPS: "true" } },
    );
  });
});

// ---------------------------------------------------------------------------
// 5. emit and mitigation

describe("dsm emit and dsm mitigation", () => {
  test("emit records the payload under the event type; bad input is one-line exit 1", async () => {
    await withTempNode(async (node) => {
      const payload = { user: "root", src_ip: "203.0.113.9", tries: 3, nested: { ok: true } };
      const r = await node.ok(["emit", "--event-type", "honeypot.login", "--payload", JSON.stringify(payload)]);
      const id = r.stdout.trim();
      expect(r.outLines).toHaveLength(1);
      expect(id).toMatch(HEX64);
      const s = await show(node, id);
      expect(s.microblock.id).toBe(id);
      expect(s.microblock.seq).toBe(1);
      expect(s.microblock.prev).toBe("0".repeat(64));
      expect(s.microblock.event_type).toBe("honeypot.login");
      expect(s.payload).toEqual(payload);
      expect(s.key_certificate.node_id).toBe(s.microblock.node_id);

      const j = await node.ok(["emit", "--json", "--event-type", "custom", "--payload", "-"], { stdin: '{"k":"from stdin"}\n' });
      const out = JSON.parse(j.stdout) as Record<string, unknown>;
      const id2 = String(out.id);
      expect(id2).toMatch(HEX64);
      expect(out).toEqual({ id: id2, seq: 2, node_id: s.microblock.node_id, event_type: "custom" });
      const s2 = await show(node, id2);
      expect(s2.payload).toEqual({ k: "from stdin" });
      expect(s2.microblock.prev).toBe(id);

      const bad = await node.run(["emit", "--event-type", "x", "--payload", "{bad"]);
      expect(expectOneLineError(bad)).toContain("--payload");
      const notObject = await node.run(["emit", "--event-type", "x", "--payload", "[1,2]"]);
      expect(expectOneLineError(notObject)).toMatch(/object/);
      const badType = await node.run(["emit", "--event-type", "Bad Type!", "--payload", "{}"]);
      expect(expectOneLineError(badType)).toMatch(/event type/);
      const tooLong = await node.run(["emit", "--event-type", "a".repeat(65), "--payload", "{}"]);
      expect(expectOneLineError(tooLong)).toMatch(/event type/);
      const missing = await node.run(["emit", "--event-type", "x"]);
      expect(expectOneLineError(missing)).toContain("payload");

      expect(await logAll(node)).toHaveLength(2);
      await expectVerifies(node);
    });
  });

  test("mitigation: executed and failed records with the handler's payload shape", async () => {
    await withTempNode(async (node) => {
      const threat = (await node.ok(["emit", "--event-type", "suricata.alert", "--payload", '{"sig":"x"}'])).stdout.trim();
      const before = Date.now();
      const r = await node.ok(["mitigation", "--action", "block", "--target", "203.0.113.9", "--threat", threat]);
      const id = r.stdout.trim();
      expect(id).toMatch(HEX64);
      const s = await show(node, id);
      expect(s.microblock.event_type).toBe("mitigation.block");
      expect(s.microblock.seq).toBe(2);
      expect(s.payload).toMatchObject({
        source: "mitigation",
        severity: "info",
        category: "mitigation",
        indicators: { action: "block", target: "203.0.113.9", threat },
        original: { action: "block", target: "203.0.113.9", status: "executed", threat },
      });
      expect(s.payload.event_id).toMatch(/^[0-9a-f]{32}$/);
      expect(s.payload.original.reason).toBeUndefined();
      const t = Date.parse(s.payload.original.time);
      expect(t).toBeGreaterThanOrEqual(before - 2000);
      expect(t).toBeLessThanOrEqual(Date.now() + 2000);

      const f = await node.ok(["mitigation", "--json", "--action", "rate_limit", "--target", "flow:42", "--failed", "--reason", "nft: resource busy"]);
      const out = JSON.parse(f.stdout) as { id: string; seq: number; event_type: string };
      const failedId = out.id;
      expect(failedId).toMatch(HEX64);
      expect(out.seq).toBe(3);
      expect(out.event_type).toBe("mitigation.rate_limit");
      const fs2 = await show(node, failedId);
      expect(fs2.payload).toMatchObject({
        severity: "high",
        indicators: { action: "rate_limit", target: "flow:42" },
        original: { action: "rate_limit", target: "flow:42", status: "failed", reason: "nft: resource busy" },
      });
      expect(fs2.payload.original.threat).toBeUndefined();
      expect(fs2.payload.indicators.threat).toBeUndefined();

      const bad = await node.run(["mitigation", "--action", "nuke", "--target", "x"]);
      const msg = expectOneLineError(bad);
      for (const a of ["block", "rate_limit", "alert", "quarantine"]) expect(msg).toContain(a);
      const noTarget = await node.run(["mitigation", "--action", "block"]);
      expect(expectOneLineError(noTarget)).toContain("target");

      expect((await logAll(node, ["--type", "mitigation"])).map((m) => m.event_type)).toEqual(["mitigation.rate_limit", "mitigation.block"]);
      await expectVerifies(node);
    });
  });
});

// ---------------------------------------------------------------------------
// 6. init and card

const KEY_FILES = ["identity.pem", "libp2p.key", "bls.key", "privacy.key"];
const mode = (p: string) => statSync(p).mode & 0o777;

test("6. init: refuses to overwrite, --force gives a new identity, private files are 0600", async () => {
  await withTempNode(
    async (node) => {
      const first = await node.run(["init", "--json"]);
      expect(first.code).toBe(0);
      const info = JSON.parse(first.stdout);
      expect(info.node_id).toMatch(HEX64);
      expect(info.key_kind).toBe("software");
      expect(first.stderr).toMatch(/software key/i);
      expect(mode(node.dataDir)).toBe(0o700);
      for (const f of KEY_FILES) expect({ f, mode: mode(join(node.dataDir, f)) }).toEqual({ f, mode: 0o600 });
      const pem = readFileSync(join(node.dataDir, "identity.pem"));

      await node.ok(["emit", "--event-type", "a", "--payload", "{}"]);
      for (const f of ["ledger.sqlite", "ledger.sqlite-wal"]) {
        if (existsSync(join(node.dataDir, f))) expect({ f, mode: mode(join(node.dataDir, f)) }).toEqual({ f, mode: 0o600 });
      }

      const again = await node.run(["init"]);
      expect(again.code).toBe(1);
      expect(again.errLines).toHaveLength(1);
      expect(again.stderr).toContain("--force");
      expect(readFileSync(join(node.dataDir, "identity.pem"))).toEqual(pem);
      expect(JSON.parse((await node.ok(["status", "--json"])).stdout).node_id).toBe(info.node_id);

      const forced = await node.run(["init", "--force", "--json"]);
      expect(forced.code).toBe(0);
      const info2 = JSON.parse(forced.stdout);
      expect(info2.node_id).toMatch(HEX64);
      expect(info2.node_id).not.toBe(info.node_id);
      expect(readFileSync(join(node.dataDir, "identity.pem"))).not.toEqual(pem);
      for (const f of KEY_FILES) expect({ f, mode: mode(join(node.dataDir, f)) }).toEqual({ f, mode: 0o600 });
      expect(mode(node.dataDir)).toBe(0o700);

      const card = JSON.parse((await node.ok(["card", "--json"])).stdout);
      expect(card.node_id).toBe(info2.node_id);
      expect(card.identity_pub).toMatch(/^0[23][0-9a-f]{64}$/); // SEC1 compressed P-256
      expect(card.bls_pub).toMatch(/^[0-9a-f]{96}$/); // 48-byte G1
      expect(card.bls_pop).toMatch(/^[0-9a-f]{192}$/); // 96-byte G2
      expect(card.sig).toMatch(/^[0-9a-f]{128}$/);
      expect(card.tpm).toBe(false);
      // The old chain stays verifiable next to the new identity.
      await node.ok(["emit", "--event-type", "b", "--payload", "{}"]);
      await expectVerifies(node);
    },
    { init: false },
  );
});

// ---------------------------------------------------------------------------
// 7. CLI hygiene

describe("command line hygiene", () => {
  test("unknown option, unknown command: exit 1 with one line", async () => {
    await withTempNode(async (node) => {
      expect(expectOneLineError(await node.run(["log", "--bogus"]))).toContain("--bogus");
      expect(expectOneLineError(await node.run(["status", "--jsn"]))).toContain("--jsn");
      const ing = await node.run(["ingest", "--formatt", "json"], { stdin: JSON.stringify(GOOD_ALERT) + "\n" });
      expect(expectOneLineError(ing)).toContain("--formatt");
      expect(await logAll(node)).toHaveLength(0);
      expect(expectOneLineError(await node.run(["frob"]))).toContain("frob");
      expect(expectOneLineError(await node.run(["--bogus"]))).toContain("--bogus");
    });
  });

  test("--help and --version exit 0 and print usage with EXIT STATUS", async () => {
    await withTempNode(
      async (node) => {
        const top = await node.run(["--help"]);
        expect(top.code).toBe(0);
        expect(top.stdout).toMatch(/USAGE/);
        expect(top.stdout).toContain("EXIT STATUS");
        for (const c of ["init", "ingest", "emit", "mitigation", "log", "show", "status", "verify"]) expect(top.stdout).toContain(c);
        const bare = await node.run([]);
        expect(bare.code).toBe(0);
        expect(bare.stdout).toContain("EXIT STATUS");
        const ing = await node.run(["ingest", "--help"]);
        expect(ing.code).toBe(0);
        expect(ing.stdout).toMatch(/USAGE/);
        expect(ing.stdout).toContain("EXIT STATUS");
        expect(ing.stdout).toContain("--format");
        expect((await node.run(["ingest", "-h"])).code).toBe(0);
        const v = await node.run(["--version"]);
        expect(v.code).toBe(0);
        expect(v.stdout.trim()).toBe(`dsm ${pkg.version}`);
      },
      { init: false },
    );
  });

  // PRODUCT BUG (fails until fixed): citty colours the usage unless NO_COLOR=1, TERM=dumb or
  // CI is set, so `dsm --help | grep` or `> file` gets ANSI escape codes.
  test("--help into a pipe carries no ANSI colour codes", async () => {
    await withTempNode(
      async (node) => {
        const env = { TERM: "xterm-256color", NO_COLOR: undefined, CI: undefined, TEST: undefined, FORCE_COLOR: undefined };
        for (const args of [["--help"], ["ingest", "--help"]]) {
          const r = await node.run(args, { env });
          expect(r.code).toBe(0);
          expect(r.stdout).not.toContain("\x1b[");
        }
      },
      { init: false, env: { TERM: "xterm-256color", NO_COLOR: undefined, CI: undefined, TEST: undefined, FORCE_COLOR: undefined } },
    );
  });

  test("status --json", async () => {
    await withTempNode(async (node) => {
      const s0 = JSON.parse((await node.ok(["status", "--json"])).stdout);
      expect(s0.node_id).toMatch(HEX64);
      expect(s0.key_kind).toBe("software");
      expect(s0.tpm).toBe(false);
      expect(s0.head).toBeNull();
      expect(s0.data_dir).toBe(node.dataDir);
      const card = JSON.parse((await node.ok(["card", "--json"])).stdout);
      expect(card.node_id).toBe(s0.node_id);
      await node.ok(["emit", "--event-type", "a", "--payload", "{}"]);
      const last = (await node.ok(["emit", "--event-type", "a", "--payload", '{"n":2}'])).stdout.trim();
      const s1 = JSON.parse((await node.ok(["status", "--json"])).stdout);
      expect(s1.head.seq).toBe(2);
      expect(s1.head.id).toBe(last);
      expect(s1.ledger.microblocks).toBe(2);
      // Human form flags the software key loudly.
      expect((await node.ok(["status"])).stdout).toMatch(/SOFTWARE KEY/);
    });
  });

  test("commands on a data dir without a node: exit 1 pointing to dsm init, nothing created", async () => {
    await withTempNode(
      async (node) => {
        const missing = join(node.root, "absent");
        const cmds = [
          ["status"],
          ["log"],
          ["verify"],
          ["card"],
          ["show", "abcdef12:1"],
          ["ingest"],
          ["emit", "--event-type", "a", "--payload", "{}"],
          ["mitigation", "--action", "block", "--target", "x"],
        ];
        for (const c of cmds) {
          const r = await node.run([...c, "--data-dir", missing], { stdin: JSON.stringify(GOOD_ALERT) + "\n" });
          expect({ c, code: r.code }).toEqual({ c, code: 1 });
          expect(r.errLines).toHaveLength(1);
          expect(r.stderr).toContain("dsm init");
        }
        expect(existsSync(missing)).toBe(false);
        // An existing but empty directory, named by DSM_DATA_DIR.
        const r = await node.run(["status"], { env: { DSM_DATA_DIR: node.root } });
        expect(expectOneLineError(r)).toContain("dsm init");
      },
      { init: false },
    );
  });

  test("show: by id, id prefix and NODE:SEQ; unknown refs exit 1", async () => {
    await withTempNode(async (node) => {
      const ids: string[] = [];
      for (let i = 1; i <= 3; i++) ids.push((await node.ok(["emit", "--event-type", "t", "--payload", `{"i":${i}}`])).stdout.trim());
      const nodeId = JSON.parse((await node.ok(["status", "--json"])).stdout).node_id as string;

      const byPrefixSeq = await show(node, `${nodeId.slice(0, 8)}:2`);
      expect(byPrefixSeq.microblock.id).toBe(ids[1]!);
      expect(byPrefixSeq.payload).toEqual({ i: 2 });
      expect((await show(node, `${nodeId}:3`)).microblock.id).toBe(ids[2]!);
      expect((await show(node, ids[0]!.slice(0, 10))).microblock.seq).toBe(1);
      const human = await node.ok(["show", ids[0]!]);
      expect(JSON.parse(human.stdout).microblock.id).toBe(ids[0]!);

      const other = ids[0]!.startsWith("f") ? "0" : "f";
      expect(expectOneLineError(await node.run(["show", other.repeat(64)]))).toContain(other.repeat(64));
      expectOneLineError(await node.run(["show", `${nodeId.slice(0, 8)}:99`]));
      expectOneLineError(await node.run(["show", "not-an-id"]));
      expectOneLineError(await node.run(["show"]));
    });
  });

  test("log: type prefix, --since/--until, seq range, ordering, limits", async () => {
    await withTempNode(async (node) => {
      await node.ok(["ingest", join(SURICATA_DIR, "eve-small.log")]); // seq 1..8, suricata.*
      await node.ok(["ingest", join(ZEEK_DIR, "notice-json.log")]); // seq 9..10, zeek.notice
      await node.ok(["emit", "--event-type", "suricatax.test", "--payload", "{}"]); // seq 11
      const n = 11;

      const all = await logAll(node);
      expect(all.map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => n - i)); // newest first
      const asc = await logAll(node, ["--oldest-first"]);
      expect(asc.map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));

      const sur = await logAll(node, ["--type", "suricata"]);
      expect(sur).toHaveLength(8);
      for (const m of sur) expect(m.event_type).toStartWith("suricata.");
      expect(await logAll(node, ["--type", "suricata.alert"])).toHaveLength(1);
      expect((await logAll(node, ["--type", "zeek"])).map((m) => m.event_type)).toEqual(["zeek.notice", "zeek.notice"]);
      expect(await logAll(node, ["--type", "suri"])).toHaveLength(0);
      expect((await logAll(node, ["--type", "suricatax"])).map((m) => m.seq)).toEqual([11]);

      expect(await logAll(node, ["--since", "1h"])).toHaveLength(n);
      expect(await logAll(node, ["--since", "2099-01-01T00:00:00Z"])).toHaveLength(0);
      expect(await logAll(node, ["--until", "1h"])).toHaveLength(0);
      expect(await logAll(node, ["--until", "2099-01-01T00:00:00Z"])).toHaveLength(n);
      expectOneLineError(await node.run(["log", "--since", "yesterday"]));

      expect((await logAll(node, ["--from-seq", "3", "--to-seq", "5"])).map((m) => m.seq)).toEqual([5, 4, 3]);
      expect((await logAll(node, ["--from-seq", "3", "--to-seq", "5", "--oldest-first"])).map((m) => m.seq)).toEqual([3, 4, 5]);
      expect((await logAll(node, ["--type", "suricata", "--from-seq", "7"])).map((m) => m.seq)).toEqual([8, 7]);

      const two = ndjson<Microblock>((await node.ok(["log", "--json", "--limit", "2"])).stdout);
      expect(two.map((m) => m.seq)).toEqual([11, 10]);
      expectOneLineError(await node.run(["log", "--limit", "abc"]));
      expectOneLineError(await node.run(["log", "--from-seq", "0"]));
      const human = await node.ok(["log", "--limit", "0"]);
      expect(human.outLines).toHaveLength(n);
    });
  });

  test("config: an unknown key is named; a valid file is applied", async () => {
    await withTempNode(async (node) => {
      const bad = join(node.root, "bad.yaml");
      writeFileSync(bad, "ingest:\n  formatt: json\n");
      const r = await node.run(["status", "--config", bad]);
      expect(expectOneLineError(r)).toContain("ingest.formatt");
      const viaEnv = await node.run(["log"], { env: { DSM_CONFIG: bad } });
      expect(expectOneLineError(viaEnv)).toContain("formatt");
      const ing = await node.run(["ingest", "--config", bad], { stdin: JSON.stringify(GOOD_ALERT) + "\n" });
      expectOneLineError(ing);
      expect(await logAll(node)).toHaveLength(0);

      const good = join(node.root, "good.yaml");
      writeFileSync(good, "privacy:\n  anonymize_ips: true\n");
      expect(JSON.parse((await node.ok(["status", "--json", "--config", good])).stdout).anonymize_ips).toBe(true);
      expectOneLineError(await node.run(["status", "--config", join(node.root, "nope.yaml")]));
    });
  });
});

// ---------------------------------------------------------------------------
// 8. Streaming

describe("streaming ingest", () => {
  test("a line is acknowledged while stdin stays open; closing stdin exits 0", async () => {
    const node = await makeNode();
    const proc = node.spawn(["ingest", "--json"]);
    try {
      const out = new LineReader(proc.stdout);
      proc.stdin.write(JSON.stringify(GOOD_ALERT) + "\n");
      proc.stdin.flush();
      const first = await out.next(2000);
      expect(first).not.toBeNull();
      const r1 = JSON.parse(first!) as IngestResult;
      expect(r1).toMatchObject({ source: "stdin", line: 1, seq: 1 });
      expect(r1.id).toMatch(HEX64);
      // Acknowledged means committed: another process sees it while the stream is still open.
      expect((await logAll(node)).map((m) => m.id)).toEqual([r1.id!]);
      expect(proc.exitCode).toBeNull();

      proc.stdin.write(JSON.stringify(GOOD_DNS) + "\n");
      proc.stdin.flush();
      const second = await out.next(2000);
      expect(second).not.toBeNull();
      expect(JSON.parse(second!)).toMatchObject({ line: 2, seq: 2 });

      proc.stdin.end();
      const code = await Promise.race([proc.exited, Bun.sleep(5000).then(() => "timeout")]);
      expect(code).toBe(0);
      expect(await out.rest()).toBe("");
      expect(await new Response(proc.stderr).text()).toContain("2 lines: 2 stored, 0 rejected");
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
      await proc.exited;
      node.cleanup();
    }
  });

  // PRODUCT BUG (fails until fixed): the SIGTERM handler calls cancel() on a stream that is
  // locked by its reader, which rejects (and is ignored), so the pending read() never ends:
  // `tail -F eve.json | dsm ingest` does not exit on SIGTERM until another line arrives.
  test("SIGTERM while stdin stays open: what was read is committed, exit promptly", async () => {
    const node = await makeNode({ env: { DSM_LEDGER_BATCH_MAX_MS: "60000" } });
    const proc = node.spawn(["ingest", "--json"]);
    try {
      const out = new LineReader(proc.stdout);
      for (let i = 1; i <= 3; i++) proc.stdin.write(`{"n":${i}}\n`);
      proc.stdin.flush();
      // With a 60 s batch window nothing is committed yet, but the lines have been read.
      expect(await out.next(500)).toBeNull();
      proc.kill("SIGTERM");
      const code = await Promise.race([proc.exited, Bun.sleep(3000).then(() => "still running 3 s after SIGTERM")]);
      // 143, not 0: a script must tell a partial ingest from a complete one.
      expect(code).toBe(143);
      const results = ndjson<IngestResult>(await out.rest());
      expect(results.map((x) => x.seq)).toEqual([1, 2, 3]);
      expect(await logAll(node)).toHaveLength(3);
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
      try {
        proc.stdin.end();
      } catch {}
      await proc.exited;
      node.cleanup();
    }
  });
});

// ---------------------------------------------------------------------------
// Which key files a command needs, and which identity key it signs with. These cases check
// the one error line with test/helpers/e2e.ts's expectOneLineError(r, command, message),
// imported as expectCommandError and named expectOneLineError inside their describe (this
// file's own expectOneLineError(r, code) is a different check).

async function microblockCount(node: TempNode): Promise<number> {
  return JSON.parse((await node.ok(["status", "--json"])).stdout).ledger.microblocks;
}

describe("read-only commands need no secrets", () => {
  const ALERT = SURICATA_ALERT;
  const expectOneLineError = expectCommandError;

  test("with identity.pem, bls.key, privacy.key and libp2p.key gone: verify, log, show, status, card work; emit fails clearly", async () => {
    await withTempNode(
      async (node) => {
        const ing = await node.ok(["ingest", "--json"], { stdin: JSON.stringify(ALERT) + "\n" });
        const [res] = ndjson<{ id: string }>(ing.stdout);
        expect(res!.id).toMatch(HEX64);
        await node.ok(["emit", "--event-type", "test.event", "--payload", '{"n":1}']);
        for (const f of ["identity.pem", "bls.key", "privacy.key", "libp2p.key"]) {
          expect(existsSync(join(node.dataDir, f))).toBe(true);
          rmSync(join(node.dataDir, f));
        }

        const verify = await node.run(["verify", "--json"]);
        expect(verify.code).toBe(0);
        const report = JSON.parse(verify.stdout);
        expect(report).toMatchObject({ ok: true, microblocks: 2, problem_count: 0 });

        const log = await node.run(["log", "--json"]);
        expect(log.code).toBe(0);
        expect(ndjson(log.stdout)).toHaveLength(2);

        const shown = await node.run(["show", res!.id, "--json"]);
        expect(shown.code).toBe(0);
        const payload = JSON.parse(shown.stdout).payload;
        expect(payload.original.src_ip).toMatch(TOKEN); // ingested with anonymisation on
        expect(shown.stdout).not.toContain("10.137.3.54");

        const status = await node.run(["status", "--json"]);
        expect(status.code).toBe(0);
        expect(JSON.parse(status.stdout)).toMatchObject({ key_kind: "software", anonymize_ips: true, ledger: { microblocks: 2 } });
        expect((await node.run(["status"])).code).toBe(0);

        const card = await node.run(["card", "--json"]);
        expect(card.code).toBe(0);
        expect(JSON.parse(card.stdout).node_id).toBe(JSON.parse(status.stdout).node_id);

        const emit = await node.run(["emit", "--event-type", "test.event", "--payload", '{"n":2}']);
        expectOneLineError(emit, "emit", /identity key .*identity\.pem.* not found/);
        expect(emit.stdout).toBe("");
        expect(await microblockCount(node)).toBe(2);
      },
      { env: { DSM_PRIVACY_ANONYMIZE_IPS: "true" } },
    );
  });
});

describe("identity.kind tpm on a software node is refused, never silently signed with the software key", () => {
  const expectOneLineError = expectCommandError;

  test("DSM_IDENTITY_KIND=tpm dsm emit / mitigation on a software node: exit 1, one clear line, nothing stored", async () => {
    await withTempNode(async (node) => {
      await node.ok(["emit", "--event-type", "test.event", "--payload", "{}"]);
      const tpm = { env: { DSM_IDENTITY_KIND: "tpm" } };
      const emit = await node.run(["emit", "--event-type", "test.event", "--payload", '{"n":2}'], tpm);
      expectOneLineError(emit, "emit", /identity\.kind is tpm, but the node in .* has a software identity key/);
      expect(emit.stdout).toBe("");
      const mit = await node.run(["mitigation", "--action", "block", "--target", "x"], tpm);
      expectOneLineError(mit, "mitigation", /identity\.kind is tpm, but the node in .* has a software identity key/);
      expect(await microblockCount(node)).toBe(1);
    });
  });
});
