// LineSplitter (src/ingest/lines.ts): lines out of arbitrary byte chunks, in constant memory,
// strict UTF-8 per line, a size limit per line, and line numbers that never drift.
import { describe, expect, test } from "bun:test";
import { type LineEvent, LineSplitter } from "../src/ingest/lines.ts";

const enc = new TextEncoder();
const bytes = (...parts: (string | number[])[]) => {
  const arrays = parts.map((p) => (typeof p === "string" ? enc.encode(p) : new Uint8Array(p)));
  return new Uint8Array(Buffer.concat(arrays));
};

function split(chunks: Uint8Array[], maxBytes = 1024): LineEvent[] {
  const s = new LineSplitter(maxBytes);
  const out: LineEvent[] = [];
  const emit = (e: LineEvent) => out.push(e);
  for (const c of chunks) s.push(c, emit);
  s.end(emit);
  return out;
}

const whole = (b: Uint8Array, max?: number) => split([b], max);
const byteByByte = (b: Uint8Array, max?: number) => split(Array.from(b, (x) => new Uint8Array([x])), max);
const texts = (evs: LineEvent[]) => evs.map((e) => ("text" in e ? e.text : `ERR:${e.error}`));
const isErr = (e: LineEvent | undefined): e is { no: number; error: string } => e !== undefined && "error" in e;

/** Every way of cutting b into two chunks, plus byte-by-byte, gives the same events as one chunk. */
function expectChunkingInvariant(b: Uint8Array, max?: number): LineEvent[] {
  const ref = whole(b, max);
  for (let i = 0; i <= b.length; i++) {
    const got = split([b.subarray(0, i), b.subarray(i)], max);
    if (JSON.stringify(got) !== JSON.stringify(ref)) expect({ splitAt: i, got }).toEqual({ splitAt: i, got: ref });
  }
  expect(byteByByte(b, max)).toEqual(ref);
  return ref;
}

describe("splitting", () => {
  test("a sample gives the same lines at every split point and byte by byte", () => {
    const sample = bytes('{"a":1}\n', "plain line\r\n", "\n", "\r\n", "中文 😀 é\n", [0xff], "\n", "last without newline");
    const ref = expectChunkingInvariant(sample);
    expect(ref).toEqual([
      { no: 1, text: '{"a":1}' },
      { no: 2, text: "plain line" },
      { no: 3, text: "" },
      { no: 4, text: "" },
      { no: 5, text: "中文 😀 é" },
      { no: 6, error: "not valid UTF-8" },
      { no: 7, text: "last without newline" },
    ]);
  });

  test("CRLF and lone CR", () => {
    expect(whole(bytes("a\r\nb\r\n"))).toEqual([
      { no: 1, text: "a" },
      { no: 2, text: "b" },
    ]);
    // only one CR, directly before LF, is a line ending; others are content
    expect(texts(whole(bytes("a\rb\n", "c\r\r\n", "\rd\n")))).toEqual(["a\rb", "c\r", "\rd"]);
    // a trailing CR at end of input is the end of a CRLF line cut short
    expect(texts(whole(bytes("x\r")))).toEqual(["x"]);
  });

  test("last line without newline counts; a final newline adds no empty line", () => {
    expect(texts(whole(bytes("a\nb")))).toEqual(["a", "b"]);
    expect(texts(whole(bytes("a\nb\n")))).toEqual(["a", "b"]);
    expect(whole(bytes(""))).toEqual([]);
    expect(split([])).toEqual([]);
    expect(split([new Uint8Array(0), new Uint8Array(0)])).toEqual([]);
  });

  test("empty lines are lines, numbered", () => {
    expect(whole(bytes("\n\n\n"))).toEqual([
      { no: 1, text: "" },
      { no: 2, text: "" },
      { no: 3, text: "" },
    ]);
    expect(whole(bytes("a\n\nb\n\n"))).toEqual([
      { no: 1, text: "a" },
      { no: 2, text: "" },
      { no: 3, text: "b" },
      { no: 4, text: "" },
    ]);
  });

  test("many lines in one chunk and one line over many chunks", () => {
    const lines = Array.from({ length: 1000 }, (_, i) => `line ${i} ${"x".repeat(i % 50)}`);
    const b = enc.encode(lines.join("\n") + "\n");
    expect(texts(whole(b, 100))).toEqual(lines);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < b.length; i += 7) chunks.push(b.subarray(i, i + 7));
    const evs = split(chunks, 100);
    expect(texts(evs)).toEqual(lines);
    expect(evs.map((e) => e.no)).toEqual(lines.map((_, i) => i + 1));
  });

  test("a reused read buffer does not corrupt held line fragments", () => {
    const s = new LineSplitter(100);
    const out: LineEvent[] = [];
    const buf = new Uint8Array(4);
    for (const part of ["abcd", "efgh", "ij\nk", "lmn\n"]) {
      buf.set(enc.encode(part));
      s.push(buf, (e) => out.push(e));
    }
    s.end((e) => out.push(e));
    expect(texts(out)).toEqual(["abcdefghij", "klmn"]);
  });
});

describe("size limit", () => {
  const MAX = 16;

  test("a line of exactly maxBytes passes, maxBytes+1 is rejected", () => {
    const ok = "a".repeat(MAX);
    const long = "a".repeat(MAX + 1);
    for (const run of [whole, byteByByte]) {
      expect(run(bytes(ok, "\n"), MAX)).toEqual([{ no: 1, text: ok }]);
      const r = run(bytes(long, "\nnext\n"), MAX);
      expect(isErr(r[0])).toBe(true);
      expect((r[0] as { error: string }).error).toMatch(/line too long .*limit 16/);
      expect(r[1]).toEqual({ no: 2, text: "next" });
      // the same at end of input, without a newline
      expect(run(bytes(ok), MAX)).toEqual([{ no: 1, text: ok }]);
      expect(isErr(run(bytes(long), MAX)[0])).toBe(true);
    }
  });

  test("the limit counts bytes, not characters", () => {
    const ok = "é".repeat(MAX / 2); // 16 bytes
    expect(whole(bytes(ok, "\n"), MAX)).toEqual([{ no: 1, text: ok }]);
    expect(isErr(whole(bytes(ok + "a", "\n"), MAX)[0])).toBe(true);
  });

  test("CRLF at the limit: the CR does not count; one more byte does", () => {
    const ok = "b".repeat(MAX);
    const long = "b".repeat(MAX + 1);
    for (const run of [whole, byteByByte]) {
      expect(run(bytes(ok, "\r\n"), MAX)).toEqual([{ no: 1, text: ok }]);
      expect(run(bytes(ok, "\r"), MAX)).toEqual([{ no: 1, text: ok }]); // cut-short CRLF at end of input
      expect(isErr(run(bytes(long, "\r\n"), MAX)[0])).toBe(true);
      // a CR that is content (not before LF) counts
      expect(isErr(run(bytes(ok.slice(1), "\r", "b", "\n"), MAX)[0])).toBe(true);
      expect(isErr(run(bytes(ok, "\r\r\n"), MAX)[0])).toBe(true);
    }
    expectChunkingInvariant(bytes(ok, "\r\n", long, "\r\n", ok, "\r\n"), MAX);
  });

  test("an oversized line spanning many chunks is rejected once; the next line is fine", () => {
    const chunks = [enc.encode("first\n"), ...Array.from({ length: 100 }, () => enc.encode("y".repeat(10))), enc.encode("\nafter\n")];
    const evs = split(chunks, MAX);
    expect(evs.length).toBe(3);
    expect(evs[0]).toEqual({ no: 1, text: "first" });
    expect(evs[1]!.no).toBe(2);
    expect((evs[1] as { error: string }).error).toMatch(/line too long \(1000 bytes, limit 16\)/);
    expect(evs[2]).toEqual({ no: 3, text: "after" });
    // oversized at end of input, no newline
    const tail = split([enc.encode("ok\n"), enc.encode("z".repeat(40)), enc.encode("z".repeat(40))], MAX);
    expect(tail.map((e) => [e.no, "text" in e])).toEqual([
      [1, true],
      [2, false],
    ]);
  });

  test("50 MB in one line with a 1 KiB limit: rejected once, fast, without holding the bytes", () => {
    const chunk = new Uint8Array(64 * 1024).fill(0x78); // one buffer, pushed again and again
    const chunks = (50 * 1024 * 1024) / chunk.length;
    const s = new LineSplitter(1024);
    const out: LineEvent[] = [];
    const emit = (e: LineEvent) => out.push(e);
    s.push(enc.encode("before\n"), emit);
    Bun.gc(true);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    for (let i = 0; i < chunks; i++) s.push(chunk, emit);
    Bun.gc(true);
    const grew = process.memoryUsage().rss - rss0; // measured while the line is still open
    s.push(enc.encode("\nafter\n"), emit);
    s.end(emit);
    const ms = performance.now() - t0;
    expect(out.length).toBe(3);
    expect(out[0]).toEqual({ no: 1, text: "before" });
    expect((out[1] as { error: string }).error).toBe(`line too long (${50 * 1024 * 1024} bytes, limit 1024)`);
    expect(out[2]).toEqual({ no: 3, text: "after" });
    expect(ms).toBeLessThan(3000);
    expect(grew).toBeLessThan(20 * 1024 * 1024); // keeping the line would cost 50 MB
  });
});

describe("UTF-8", () => {
  const bad: [string, number[]][] = [
    ["lone 0xff", [0x61, 0xff, 0x62]],
    ["lone continuation byte", [0x80]],
    ["truncated 3-byte sequence at line end", [0x61, 0xe4, 0xb8]],
    ["truncated 4-byte sequence at line end", [0xf0, 0x9f, 0x98]],
    ["overlong NUL 0xc0 0x80", [0xc0, 0x80]],
    ["overlong '/' 0xe0 0x80 0xaf", [0xe0, 0x80, 0xaf]],
    ["UTF-16 surrogate 0xed 0xa0 0x80", [0xed, 0xa0, 0x80]],
    ["beyond U+10FFFF 0xf4 0x90 0x80 0x80", [0xf4, 0x90, 0x80, 0x80]],
  ];

  for (const [name, seq] of bad) {
    test(`rejected: ${name}; the next line is fine`, () => {
      for (const run of [whole, byteByByte]) {
        const evs = run(bytes("ok\n", seq, "\n", "next\n"));
        expect(evs).toEqual([
          { no: 1, text: "ok" },
          { no: 2, error: "not valid UTF-8" },
          { no: 3, text: "next" },
        ]);
      }
    });
  }

  test("a truncated multibyte sequence at end of input is rejected", () => {
    expect(whole(bytes("ok\n", [0xe4, 0xb8]))).toEqual([
      { no: 1, text: "ok" },
      { no: 2, error: "not valid UTF-8" },
    ]);
  });

  test("no replacement characters ever appear: decoding is strict", () => {
    const evs = whole(bytes([0xff, 0x0a, 0xef, 0xbf, 0xbd, 0x0a])); // the second line is a real U+FFFD
    expect(evs).toEqual([
      { no: 1, error: "not valid UTF-8" },
      { no: 2, text: "\ufffd" },
    ]);
  });

  test("valid multibyte characters split across chunks at every byte decode right", () => {
    const line = "é中😀\u{10ffff}ß";
    const b = bytes(line, "\n", line);
    const ref = expectChunkingInvariant(b);
    expect(ref).toEqual([
      { no: 1, text: line },
      { no: 2, text: line },
    ]);
    // three-way splits inside the 4-byte emoji
    const e = enc.encode("😀\n");
    for (let i = 1; i < 4; i++) for (let j = i + 1; j < 4; j++) expect(texts(split([e.subarray(0, i), e.subarray(i, j), e.subarray(j)]))).toEqual(["😀"]);
  });
});

test("line numbers stay right through every kind of line", () => {
  const MAX = 8;
  const b = bytes("good\n", "\n", [0xff], "\n", "x".repeat(20), "\n", "ok\r\n", "\r\n", "y".repeat(MAX), "\r\n", "end");
  const evs = expectChunkingInvariant(b, MAX);
  expect(evs.map((e) => [e.no, "text" in e ? e.text : "ERR"])).toEqual([
    [1, "good"],
    [2, ""],
    [3, "ERR"],
    [4, "ERR"],
    [5, "ok"],
    [6, ""],
    [7, "y".repeat(MAX)],
    [8, "end"],
  ]);
});
