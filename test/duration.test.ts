// Durations as operators write them, and as Go prints them for CrowdSec's bouncers.
import { describe, expect, test } from "bun:test";
import { formatDuration, goDuration, parseDuration } from "../src/encoding/duration.ts";

describe("durations", () => {
  test("operators' durations and Go's", () => {
    expect(parseDuration("4h")).toBe(14400);
    expect(parseDuration("1h30m")).toBe(5400);
    expect(parseDuration("90")).toBe(90);
    for (const bad of ["", "0", "4x", "h", "-1h", "1.5h", "0s"]) expect(parseDuration(bad)).toBeNull();
    expect(goDuration(14_352_000)).toBe("3h59m12s");
    expect(goDuration(59_000)).toBe("59s");
    expect(goDuration(3_600_000)).toBe("1h0m0s");
    expect(goDuration(-5)).toBe("0s");
    expect(formatDuration(5400)).toBe("1h30m");
    expect(parseDuration(formatDuration(93_784))).toBe(93_784);
  });
});
