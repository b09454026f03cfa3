// The daemon's log lines (src/mesh/daemon-log.ts): levels, text for a person with the
// syslog priority journald reads, one JSON object a line for shippers.
import { describe, expect, test } from "bun:test";
import { createLogger, formatLine } from "../src/mesh/daemon-log.ts";

const at = () => new Date("2026-12-01T12:00:00.000Z");

function collect(opts: Partial<Parameters<typeof createLogger>[0]> = {}) {
  const lines: string[] = [];
  const log = createLogger({ format: "text", level: "info", write: (l) => void lines.push(l), now: at, ...opts });
  return { log, lines };
}

describe("daemon log lines", () => {
  test("text: info plain, warnings and errors tagged; below the level dropped", () => {
    const { log, lines } = collect();
    log("debug", "not shown");
    log("info", "epoch 3 finalized");
    log("warn", "peer refused");
    log("error", "certificate NOT KEPT");
    expect(lines).toEqual(["dsm run: epoch 3 finalized\n", "dsm run: warning: peer refused\n", "dsm run: error: certificate NOT KEPT\n"]);
  });

  test("text under journald: the sd-daemon priority prefix", () => {
    const { log, lines } = collect({ journal: true, level: "debug" });
    log("debug", "a");
    log("info", "b");
    log("warn", "c");
    log("error", "d");
    expect(lines.map((l) => l.slice(0, 3))).toEqual(["<7>", "<6>", "<4>", "<3>"]);
  });

  test("json: one object a line, fields kept, ts/level/msg cannot be overwritten by a field", () => {
    const { log, lines } = collect({ format: "json", level: "warn" });
    log("info", "dropped");
    log("warn", "peer refused", { peer_id: "12D3KooW", level: "debug", msg: "forged", ts: "x" });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith("\n")).toBe(true);
    expect(JSON.parse(lines[0]!)).toEqual({ peer_id: "12D3KooW", ts: "2026-12-01T12:00:00.000Z", level: "warn", msg: "peer refused" });
  });

  test("a message with a newline stays one line, text or JSON", () => {
    expect(formatLine("warn", "gossip: failed\n    at x (y.ts:1)", undefined, { format: "text" })).toBe("dsm run: warning: gossip: failed at x (y.ts:1)");
    const line = formatLine("error", "two\nlines", undefined, { format: "json", now: at });
    expect(line.includes("\n")).toBe(false);
    expect(JSON.parse(line).msg).toBe("two\nlines");
  });
});
