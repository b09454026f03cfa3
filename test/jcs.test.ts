// RFC 8785 (JCS) conformance for src/encoding/jcs.ts.
// Vectors: test/vectors/jcs (cyberphone/json-canonicalization, see its SOURCE.md); read in place.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { CanonicalJsonError, canonicalBytes, canonicalize } from "../src/encoding/jcs.ts";

const VECTORS = new URL("vectors/", import.meta.url);
const JCS = new URL("jcs/", VECTORS);
const CASES = ["arrays", "french", "structures", "unicode", "values", "weird"] as const;

const utf8 = new TextEncoder();
const readBytes = (rel: string) => new Uint8Array(readFileSync(new URL(rel, JCS)));
const readText = (rel: string) => readFileSync(new URL(rel, JCS), "utf8");
const hexToBytes = (hex: string) => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ""), "hex"));

function expectJcsError(value: unknown): void {
  expect(() => canonicalize(value)).toThrow(CanonicalJsonError);
  expect(() => canonicalBytes(value)).toThrow(CanonicalJsonError);
}

describe("JCS reference cases (input → output, outhex)", () => {
  for (const name of CASES) {
    test(name, () => {
      const input = readText(`input/${name}.json`);
      const expected = readBytes(`output/${name}.json`);
      const expectedHex = hexToBytes(readText(`outhex/${name}.txt`));
      // The shared data must be self-consistent before it can judge us.
      expect(expectedHex).toEqual(expected);

      const got = canonicalize(JSON.parse(input));
      expect(utf8.encode(got)).toEqual(expected);
      expect(canonicalBytes(JSON.parse(input))).toEqual(expected);
      expect(canonicalBytes(JSON.parse(input))).toEqual(expectedHex);
      // Canonical form is a fixed point.
      expect(canonicalize(JSON.parse(got))).toBe(got);
    });
  }
});

function doubleFromHex(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt("0x" + hex.padStart(16, "0")));
  return view.getFloat64(0);
}

function checkNumberFile(file: string, expectedLines: number): void {
  const lines = readText(file).split("\n").filter((l) => l.length > 0);
  expect(lines.length).toBe(expectedLines);
  const failures: string[] = [];
  let checked = 0;
  let nonFinite = 0;
  for (const line of lines) {
    const comma = line.indexOf(",");
    expect(comma).toBeGreaterThan(0);
    const hex = line.slice(0, comma);
    const want = line.slice(comma + 1);
    const d = doubleFromHex(hex);
    if (!Number.isFinite(d)) {
      nonFinite++;
      expect(() => canonicalize(d)).toThrow(CanonicalJsonError);
      continue;
    }
    const got = canonicalize(d);
    if (got !== want) failures.push(`${hex}: want ${want}, got ${got}`);
    // Round trip: the canonical text parses back to the same double (except -0, which becomes 0).
    if (!Object.is(d, -0) && JSON.parse(got) !== d) failures.push(`${hex}: ${got} does not parse back`);
    checked++;
  }
  expect(failures).toEqual([]);
  expect(checked + nonFinite).toBe(expectedLines);
}

describe("ES6 number serialisation", () => {
  test("es6_readme_samples.txt (7 lines)", () => checkNumberFile("es6_readme_samples.txt", 7));
  test("es6testfile_10k.txt (10,000 lines)", () => checkNumberFile("es6testfile_10k.txt", 10_000));

  test("NaN and ±Infinity are rejected, also when nested", () => {
    for (const n of [NaN, Infinity, -Infinity, doubleFromHex("7ff0000000000000"), doubleFromHex("fff8000000000001")]) {
      expectJcsError(n);
      expectJcsError([1, n]);
      expectJcsError({ a: { b: n } });
    }
  });

  test("-0 serialises as 0; boundaries", () => {
    expect(canonicalize(-0)).toBe("0");
    expect(canonicalize([-0, 0])).toBe("[0,0]");
    expect(canonicalize({ z: -0 })).toBe('{"z":0}');
    expect(canonicalize(1e21)).toBe("1e+21");
    expect(canonicalize(1e20)).toBe("100000000000000000000");
    expect(canonicalize(1e-7)).toBe("1e-7");
    expect(canonicalize(0.000001)).toBe("0.000001");
    expect(canonicalize(Number.MAX_VALUE)).toBe("1.7976931348623157e+308");
    expect(canonicalize(Number.MIN_VALUE)).toBe("5e-324");
    expect(canonicalize(-Number.MAX_SAFE_INTEGER)).toBe("-9007199254740991");
    expect(canonicalize(333333333.33333329)).toBe("333333333.3333333");
  });
});

describe("strings", () => {
  // Independent statement of RFC 8785 §3.2.2.2: escape '"', '\\' and U+0000..U+001F
  // (\b \t \n \f \r short forms, otherwise \u00xx lowercase); everything else literal.
  function referenceString(s: string): string {
    let out = '"';
    for (const ch of s) {
      const c = ch.codePointAt(0)!;
      if (ch === '"') out += '\\"';
      else if (ch === "\\") out += "\\\\";
      else if (c === 0x08) out += "\\b";
      else if (c === 0x09) out += "\\t";
      else if (c === 0x0a) out += "\\n";
      else if (c === 0x0c) out += "\\f";
      else if (c === 0x0d) out += "\\r";
      else if (c < 0x20) out += "\\u" + c.toString(16).padStart(4, "0");
      else out += ch;
    }
    return out + '"';
  }

  test("every BMP non-surrogate code unit, alone and as a key", () => {
    const failures: number[] = [];
    for (let c = 0; c <= 0xffff; c++) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      const s = String.fromCharCode(c);
      if (canonicalize(s) !== referenceString(s)) failures.push(c);
      if (canonicalize({ [s]: 1 }) !== "{" + referenceString(s) + ":1}") failures.push(c);
    }
    expect(failures).toEqual([]);
  });

  test("specific escapes", () => {
    expect(canonicalize("\u0000\u001f\u007f\u2028\u2029\ufeff/")).toBe('"\\u0000\\u001f\u007f\u2028\u2029\ufeff/"');
    expect(canonicalize('a"b\\c\b\t\n\f\r')).toBe('"a\\"b\\\\c\\b\\t\\n\\f\\r"');
    expect(canonicalize("\u000b")).toBe('"\\u000b"');
    // Supplementary-plane characters and combining sequences pass through as UTF-8, not normalised.
    expect(canonicalBytes("\ud83d\ude00")).toEqual(new Uint8Array([0x22, 0xf0, 0x9f, 0x98, 0x80, 0x22]));
    expect(canonicalize("e\u0301")).toBe('"e\u0301"');
    expect(canonicalize("\u00e9")).not.toBe(canonicalize("e\u0301"));
  });

  test("lone surrogates are rejected in values and keys", () => {
    for (const bad of ["\ud800", "\udfff", "a\ud83d", "\ude00b", "\ude00\ud83d"]) {
      expectJcsError(bad);
      expectJcsError([bad]);
      expectJcsError({ ok: bad });
      expectJcsError({ [bad]: 1 });
      expectJcsError({ nested: { [bad]: "v" } });
    }
    // A proper pair is fine.
    expect(canonicalize({ "\ud83d\ude00": "\ud83d\ude00" })).toBe('{"\ud83d\ude00":"\ud83d\ude00"}');
  });
});

describe("objects and ordering", () => {
  test("RFC 8785 §3.2.3 sorting example (UTF-16 code units)", () => {
    const input = {
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis",
    };
    expect(canonicalize(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  test("UTF-16 order differs from code point order above U+FFFF", () => {
    // U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FB33 although its code point is larger.
    expect(canonicalize({ "\ufb33": 1, "\ud83d\ude00": 2 })).toBe('{"\ud83d\ude00":2,"\ufb33":1}');
    expect(canonicalize({ "\uffff": 1, "\u{10000}": 2 })).toBe('{"\u{10000}":2,"\uffff":1}');
  });

  test("integer-like keys sort as strings, not numerically", () => {
    expect(canonicalize({ 10: "a", 9: "b", 1: "c", "": "d", a: "e", "-1": "f" })).toBe(
      '{"":"d","-1":"f","1":"c","10":"a","9":"b","a":"e"}',
    );
  });

  test("prefix keys and case", () => {
    expect(canonicalize({ ab: 1, a: 2, B: 3, b: 4, aa: 5 })).toBe('{"B":3,"a":2,"aa":5,"ab":1,"b":4}');
  });

  test("undefined members are dropped like JSON.stringify", () => {
    expect(canonicalize({ a: undefined, b: 1, c: undefined })).toBe('{"b":1}');
    expect(canonicalize({ a: undefined })).toBe("{}");
    expect(canonicalize({ x: { y: undefined } })).toBe('{"x":{}}');
    expect(canonicalize({ a: undefined, b: 1 })).toBe(JSON.stringify({ a: undefined, b: 1 }));
  });

  test("null-prototype objects and __proto__ keys from JSON.parse", () => {
    const o = Object.create(null);
    o.b = 1;
    o.a = [true, false, null];
    expect(canonicalize(o)).toBe('{"a":[true,false,null],"b":1}');
    expect(canonicalize(JSON.parse('{"b":2,"__proto__":{"x":1},"a":1}'))).toBe('{"__proto__":{"x":1},"a":1,"b":2}');
  });

  test("symbol-keyed and non-enumerable properties are ignored", () => {
    const o: Record<string | symbol, unknown> = { a: 1 };
    o[Symbol("s")] = 2;
    Object.defineProperty(o, "hidden", { value: 3, enumerable: false });
    expect(canonicalize(o)).toBe('{"a":1}');
  });

  test("primitives and empty containers", () => {
    expect(canonicalize(null)).toBe("null");
    expect(canonicalize(true)).toBe("true");
    expect(canonicalize(false)).toBe("false");
    expect(canonicalize("")).toBe('""');
    expect(canonicalize([])).toBe("[]");
    expect(canonicalize({})).toBe("{}");
    expect(canonicalize([[], {}, [{}]])).toBe("[[],{},[{}]]");
  });

  test("key order of the input does not matter", () => {
    const a = { z: 1, y: { b: [3, { d: 1, c: 2 }], a: "x" }, x: null };
    const b = { x: null, y: { a: "x", b: [3, { c: 2, d: 1 }] }, z: 1 };
    expect(canonicalize(a)).toBe(canonicalize(b));
    expect(canonicalize(a)).toBe('{"x":null,"y":{"a":"x","b":[3,{"c":2,"d":1}]},"z":1}');
  });
});

describe("values JSON cannot represent are rejected", () => {
  test("undefined, functions, symbols, bigint", () => {
    expectJcsError(undefined);
    expectJcsError(() => 1);
    expectJcsError(function named() {});
    expectJcsError(Symbol("x"));
    expectJcsError(1n);
    expectJcsError({ a: 1n });
    expectJcsError({ f: () => 1 });
    expectJcsError({ s: Symbol("x") });
    expectJcsError([() => 1]);
    // An object with toJSON is not special-cased: its toJSON member is a function.
    expectJcsError({ toJSON: () => "x" });
  });

  test("undefined (and holes) inside arrays are rejected rather than turned into null", () => {
    // JSON.stringify would silently write null here; dsm rejects instead (documented behaviour).
    expectJcsError([undefined]);
    expectJcsError([1, , 2]); // eslint-disable-line no-sparse-arrays
    expectJcsError(new Array(3));
  });

  test("class instances and boxed primitives", () => {
    class Foo {
      a = 1;
    }
    for (const v of [
      new Date(0),
      new Map([["a", 1]]),
      new Set([1]),
      new Foo(),
      new Uint8Array([1, 2]),
      new ArrayBuffer(2),
      /re/,
      new Error("x"),
      Promise.resolve(1),
      new Number(1),
      new String("s"),
      new Boolean(true),
      Object(1n),
    ]) {
      expectJcsError(v);
      expectJcsError({ v });
      expectJcsError([v]);
    }
  });

  test("error type and message", () => {
    try {
      canonicalize({ when: new Date(0) });
      throw new Error("did not throw");
    } catch (e) {
      expect(e).toBeInstanceOf(CanonicalJsonError);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toContain("Date");
    }
  });
});

describe("nesting depth", () => {
  const nestArrays = (n: number, inner: unknown = []) => {
    let v: unknown = inner;
    for (let i = 1; i < n; i++) v = [v];
    return v; // n arrays deep
  };
  const nestObjects = (n: number) => {
    let v: unknown = {};
    for (let i = 1; i < n; i++) v = { k: v };
    return v;
  };

  test("moderate nesting is accepted", () => {
    expect(canonicalize(nestArrays(100))).toBe("[".repeat(100) + "]".repeat(100));
    expect(canonicalize(nestObjects(100))).toBe('{"k":'.repeat(99) + "{}" + "}".repeat(99));
  });

  test("exact limit: 129 nested containers accepted, 130 rejected (depth counted from 0)", () => {
    // MAX_DEPTH = 128 with the top level at depth 0. A scalar inside the innermost container
    // counts as one more level.
    expect(() => canonicalize(nestArrays(129))).not.toThrow();
    expectJcsError(nestArrays(130));
    expectJcsError(nestArrays(129, [1]));
    expect(() => canonicalize(nestArrays(128, [1]))).not.toThrow();
    expect(() => canonicalize(nestObjects(129))).not.toThrow();
    expectJcsError(nestObjects(130));
  });

  test("very deep input fails with CanonicalJsonError, not a stack overflow", () => {
    expectJcsError(nestArrays(200));
    expectJcsError(nestObjects(10_000));
    expectJcsError(JSON.parse("[".repeat(5000) + "]".repeat(5000)));
  });

  test("cycles are rejected", () => {
    const a: Record<string, unknown> = { x: 1 };
    a.self = a;
    expectJcsError(a);
    const arr: unknown[] = [];
    arr.push(arr);
    expectJcsError(arr);
  });
});

describe("canonicalBytes", () => {
  test("is the UTF-8 encoding of canonicalize", () => {
    const v = { "€": ["ö", "\ud83d\ude00", 1.5, -0, null], a: "\u0000" };
    expect(canonicalBytes(v)).toEqual(utf8.encode(canonicalize(v)));
    expect(canonicalBytes(v)).toBeInstanceOf(Uint8Array);
  });
});
