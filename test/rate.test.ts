// RateWindow (src/runtime/rate.ts): at most `limit` events per key in any window.
import { describe, expect, test } from "bun:test";
import { RateWindow } from "../src/runtime/rate.ts";

describe("RateWindow", () => {
  test("at most limit events per key in any window, keys apart, the window sliding", () => {
    const r = new RateWindow(60_000);
    const t0 = 1_000_000;
    expect([1, 2, 3].map((i) => r.take("a", 3, t0 + i))).toEqual([true, true, true]);
    expect(r.take("a", 3, t0 + 10)).toBe(false);
    expect(r.take("b", 3, t0 + 10)).toBe(true); // another key has its own budget
    expect(r.take("a", 3, t0 + 60_000)).toBe(false); // the first is 59.999 s old: still in the window
    expect(r.take("a", 3, t0 + 60_001)).toBe(true); // now it has slid out
    expect(r.take("a", 3, t0 + 60_002)).toBe(true);
    expect(r.take("a", 3, t0 + 60_003)).toBe(true);
    expect(r.take("a", 3, t0 + 60_004)).toBe(false);
  });

  test("refused events are not counted, and the number of keys is bounded", () => {
    const r = new RateWindow(1000, 2);
    expect(r.take("a", 1, 0)).toBe(true);
    for (let i = 0; i < 10; i++) expect(r.take("a", 1, 10 + i)).toBe(false);
    expect(r.take("a", 1, 1001)).toBe(true); // only the one taken at 0 counted
    r.take("b", 1, 1002);
    r.take("c", 1, 1003); // three keys in a map of two: the least recently used ("a") goes
    expect(r.take("a", 1, 1004)).toBe(true);
  });
});
