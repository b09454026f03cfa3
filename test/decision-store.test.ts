// The decision set bouncers are served (src/ledger/decision-store.ts) on real SQLite files:
// replace() diffs by id and journals, inside a caller's transaction or alone; the stream
// answer per bouncer cursor (new, deleted once, expired as deleted, dedup by value);
// CrowdSec's ip/range/contains query; the journal pruned and a pruned cursor resent all.
import { afterAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as path from "node:path";
import { Ledger } from "../src/ledger/ledger.ts";
import { BouncerStore } from "../src/ledger/bouncer-store.ts";
import { DecisionStore, DecisionStoreError, JOURNAL_MAX_AGE_MS, queryRange } from "../src/ledger/decision-store.ts";
import type { Decision } from "../src/protocol/decision.ts";
import type { Category, Scope } from "../src/protocol/advisory.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

const MESH = "11".repeat(32);
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0, 0);
const H = 3_600_000;

function dec(scope: Scope, value: string, untilMs: number, category: Category = "c2", reporters = ["aa".repeat(32), "bb".repeat(32)]): Decision {
  const until = new Date(untilMs).toISOString();
  const id = crypto.createHash("sha256").update(`${scope}|${value}|${until}`).digest().readUIntBE(0, 6);
  return { id, scope, value, category, severity: "high", since: new Date(T0).toISOString(), until, epoch: 1, reporters, advisories: ["cc".repeat(32)] };
}

function open(): { ledger: Ledger; store: DecisionStore; file: string } {
  const file = path.join(tempDir(), "ledger.sqlite");
  const ledger = Ledger.open(file);
  return { ledger, store: new DecisionStore(ledger, MESH), file };
}

const values = (ds: readonly Decision[]) => ds.map((d) => d.value).sort();

describe("replace", () => {
  test("diffs by id, journals every change, keeps scope/value/id order, and says which epoch", () => {
    const { ledger, store } = open();
    expect(store.asOf()).toBeNull();
    expect(store.current()).toEqual([]);
    const a = dec("ip", "203.0.113.9", T0 + 4 * H);
    const b = dec("range", "198.51.100.0/24", T0 + 2 * H);
    const c = dec("domain", "evil.example", T0 + H);
    const d = dec("ip", "192.0.2.1", T0 + H);
    let r = store.replace([a, b, c], 7, T0);
    expect(values(r.added)).toEqual(values([a, b, c]));
    expect(r.removed).toEqual([]);
    expect(store.asOf()).toBe(7);
    expect(store.current().map((x) => `${x.scope}:${x.value}`)).toEqual(["domain:evil.example", "ip:203.0.113.9", "range:198.51.100.0/24"]);
    r = store.replace([a, c, d], 8, T0 + 1000);
    expect(r.added).toEqual([d]);
    expect(r.removed).toEqual([b]);
    expect(store.count()).toBe(3);
    expect(store.lastSeq()).toBe(5);
    // Same set again: nothing to journal.
    r = store.replace([d, c, a], 9, T0 + 2000);
    expect(r).toEqual({ added: [], removed: [] });
    expect(store.lastSeq()).toBe(5);
    // A changed until is a new id: remove + add.
    const a2 = dec("ip", "203.0.113.9", T0 + 5 * H);
    r = store.replace([a2, c, d], 10, T0 + 3000);
    expect(r).toEqual({ added: [a2], removed: [a] });
    // The same id with one more reporter: stored, not an add or a removal.
    const c2 = { ...c, reporters: [...c.reporters, "dd".repeat(32)] };
    r = store.replace([a2, c2, d], 11, T0 + 4000);
    expect(r).toEqual({ added: [], removed: [] });
    expect(store.current().find((x) => x.id === c.id)!.reporters).toHaveLength(3);
    ledger.close();
  });

  test("refuses a set with a repeated id, an unknown scope or a bad until, and stores nothing", () => {
    const { ledger, store } = open();
    const a = dec("ip", "203.0.113.9", T0 + H);
    expect(() => store.replace([a, a], 1, T0)).toThrow(DecisionStoreError);
    expect(() => store.replace([{ ...a, scope: "asn" as Scope }], 1, T0)).toThrow(/unknown scope/);
    expect(() => store.replace([{ ...a, until: "tomorrow" }], 1, T0)).toThrow(/RFC 3339/);
    expect(store.asOf()).toBeNull();
    expect(store.count()).toBe(0);
    ledger.close();
  });

  test("inside a caller's transaction: its commit keeps the change, its rollback undoes it (and the view follows)", () => {
    const { ledger, store } = open();
    const a = dec("ip", "203.0.113.9", T0 + H);
    const b = dec("ip", "203.0.113.10", T0 + H);
    ledger.immediate(() => {
      store.replace([a], 1, T0);
      expect(store.current()).toEqual([a]);
    });
    expect(store.current()).toEqual([a]);
    expect(() =>
      ledger.immediate(() => {
        store.replace([b], 2, T0 + 1000);
        expect(values(store.current())).toEqual([b.value]);
        throw new Error("the checkpoint's commit failed");
      }),
    ).toThrow("commit failed");
    expect(store.current()).toEqual([a]);
    expect(store.asOf()).toBe(1);
    // The next replace after the rollback is diffed against what was committed.
    expect(store.replace([a, b], 2, T0 + 2000)).toEqual({ added: [b], removed: [] });
    // A rolled-back replace and a committed one that reach the same journal seq: the view
    // of the first is never taken for the second.
    const c = dec("ip", "203.0.113.11", T0 + H);
    const seq = store.lastSeq();
    expect(() =>
      ledger.immediate(() => {
        store.replace([a, c], 3, T0 + 3000);
        throw new Error("rolled back");
      }),
    ).toThrow("rolled back");
    const d = dec("ip", "203.0.113.12", T0 + H);
    store.replace([a, d], 3, T0 + 4000);
    expect(store.lastSeq()).toBe(seq + 2);
    expect(values(store.current())).toEqual(values([a, d]));
    ledger.close();
  });

  test("another connection (dsm decisions, the bouncer API in dsm run) sees each replace, its view kept up to date from the journal", () => {
    const { ledger, store, file } = open();
    const other = Ledger.open(file);
    const reader = new DecisionStore(other, MESH);
    const bouncers = new BouncerStore(ledger, MESH);
    bouncers.add("fw");
    // A cursor at 0 keeps the journal (nothing is pruned while a bouncer still needs it).
    bouncers.pulled("fw", { seq: 0, ms: T0 });
    const a = dec("ip", "203.0.113.9", T0 + H);
    const b = dec("ip", "203.0.113.10", T0 + H);
    store.replace([a], 1, T0);
    expect(reader.current()).toEqual([a]);
    store.replace([b], 2, T0 + 1000);
    expect(reader.current()).toEqual([b]);
    expect(reader.asOf()).toBe(2);
    other.close();
    ledger.close();
    const again = new DecisionStore(Ledger.open(file), MESH);
    expect(again.current()).toEqual([b]);
  });
});

describe("stream", () => {
  test("a cursor gets what changed: new once, a removal and an expiry as deleted once, nothing for what it never had", () => {
    const { ledger, store } = open();
    const a = dec("ip", "203.0.113.9", T0 + 4 * H);
    const b = dec("range", "198.51.100.0/24", T0 + H);
    const soon = dec("ip", "192.0.2.7", T0 + 60_000);
    store.replace([a, b, soon], 1, T0);
    // Never pulled: the whole active set, as CrowdSec sends a bouncer without a last pull.
    let s = store.stream({ cursor: null, startup: false, nowMs: T0 });
    expect(s.full).toBe(true);
    expect(values(s.new)).toEqual(values([a, b, soon]));
    expect(s.deleted).toEqual([]);
    let cursor = s.cursor;
    expect(cursor).toEqual({ seq: 3, ms: T0 });
    // Nothing changed.
    s = store.stream({ cursor, startup: false, nowMs: T0 + 5000 });
    expect([s.new, s.deleted, s.full]).toEqual([[], [], false]);
    cursor = s.cursor;
    // One added, one removed, and a third added and removed between two pulls (never held).
    const c = dec("ip", "203.0.113.50", T0 + 2 * H);
    const ghost = dec("ip", "203.0.113.66", T0 + 2 * H);
    store.replace([a, soon, c, ghost], 2, T0 + 6000);
    store.replace([a, soon, c], 3, T0 + 7000);
    s = store.stream({ cursor, startup: false, nowMs: T0 + 10_000 });
    expect(s.new).toEqual([c]);
    expect(s.deleted).toEqual([b]);
    cursor = s.cursor;
    // soon expires with no checkpoint in between: deleted once, by the clock.
    s = store.stream({ cursor, startup: false, nowMs: T0 + 61_000 });
    expect(s.new).toEqual([]);
    expect(s.deleted).toEqual([soon]);
    cursor = s.cursor;
    s = store.stream({ cursor, startup: false, nowMs: T0 + 70_000 });
    expect([s.new, s.deleted]).toEqual([[], []]);
    // A checkpoint that then drops the expired decision owes no second deletion.
    store.replace([a, c], 4, T0 + 80_000);
    s = store.stream({ cursor: s.cursor, startup: false, nowMs: T0 + 90_000 });
    expect([s.new, s.deleted]).toEqual([[], []]);
    // Expired decisions are never new, even to a bouncer that never pulled.
    expect(values(store.stream({ cursor: null, startup: true, nowMs: T0 + 90_000 }).new)).toEqual(values([a, c]));
    ledger.close();
  });

  test("startup=true sends the whole active set and the deletions a bouncer that kept its state is owed", () => {
    const { ledger, store } = open();
    const a = dec("ip", "203.0.113.9", T0 + 4 * H);
    const b = dec("ip", "203.0.113.10", T0 + 4 * H);
    store.replace([a, b], 1, T0);
    const cursor = store.stream({ cursor: null, startup: true, nowMs: T0 }).cursor;
    store.replace([a], 2, T0 + 1000);
    const s = store.stream({ cursor, startup: true, nowMs: T0 + 2000 });
    expect(s.new).toEqual([a]);
    expect(s.deleted).toEqual([b]);
    expect(s.full).toBe(false);
    ledger.close();
  });

  test("one decision per value, the longest; a value still held changes its decision in new, not with a deletion", () => {
    const { ledger, store } = open();
    const short = dec("ip", "203.0.113.9", T0 + H, "scan");
    const long = dec("ip", "203.0.113.9", T0 + 3 * H, "c2");
    store.replace([short, long], 1, T0);
    let s = store.stream({ cursor: null, startup: true, nowMs: T0 });
    expect(s.new).toEqual([long]);
    // Without dedup (dedup=false), both.
    expect(store.stream({ cursor: null, startup: true, nowMs: T0, dedup: false }).new).toHaveLength(2);
    store.replace([short], 2, T0 + 1000);
    s = store.stream({ cursor: s.cursor, startup: false, nowMs: T0 + 2000 });
    expect(s.new).toEqual([short]);
    expect(s.deleted).toEqual([]);
    store.replace([], 3, T0 + 3000);
    s = store.stream({ cursor: s.cursor, startup: false, nowMs: T0 + 4000 });
    expect(s.new).toEqual([]);
    expect(s.deleted).toEqual([short]);
    ledger.close();
  });

  test("a filter (scopes, scenarios) decides what a bouncer holds, on both sides of the diff", () => {
    const { ledger, store } = open();
    const ip = dec("ip", "203.0.113.9", T0 + H);
    const dom = dec("domain", "evil.example", T0 + H);
    store.replace([ip, dom], 1, T0);
    const onlyIp = (d: Decision) => d.scope === "ip" || d.scope === "range";
    let s = store.stream({ cursor: null, startup: true, nowMs: T0, filter: onlyIp });
    expect(s.new).toEqual([ip]);
    store.replace([], 2, T0 + 1000);
    s = store.stream({ cursor: s.cursor, startup: false, nowMs: T0 + 2000, filter: onlyIp });
    expect(s.deleted).toEqual([ip]);
    ledger.close();
  });
});

describe("find (GET /v1/decisions)", () => {
  const { ledger, store } = open();
  const ip = dec("ip", "203.0.113.9", T0 + H);
  const r24 = dec("range", "203.0.113.0/24", T0 + H);
  const r16 = dec("range", "203.0.0.0/16", T0 + H);
  const v6 = dec("ip", "2001:db8::1", T0 + H);
  const v6r = dec("range", "2001:db8::/32", T0 + H);
  const gone = dec("ip", "203.0.113.77", T0 - 1000);
  const dom = dec("domain", "evil.example", T0 + H);
  store.replace([ip, r24, r16, v6, v6r, gone, dom], 1, T0);
  const ids = (ds: Decision[]) => ds.map((d) => d.value).sort();

  test("ip: the Ip decision equal to it and the Range decisions holding it", () => {
    expect(ids(store.find({ ip: "203.0.113.9" }, T0))).toEqual(["203.0.0.0/16", "203.0.113.0/24", "203.0.113.9"]);
    expect(ids(store.find({ ip: "203.0.113.10" }, T0))).toEqual(["203.0.0.0/16", "203.0.113.0/24"]);
    expect(ids(store.find({ ip: "2001:db8::1" }, T0))).toEqual(["2001:db8::/32", "2001:db8::1"]);
    // IPv4 never matches IPv6 decisions; expired ones are gone.
    expect(ids(store.find({ ip: "203.0.113.77" }, T0))).toEqual(["203.0.0.0/16", "203.0.113.0/24"]);
  });

  test("range: with contains, the ranges holding it; contains=false, the Ip and Range decisions inside it", () => {
    expect(ids(store.find({ range: "203.0.113.0/24" }, T0))).toEqual(["203.0.0.0/16", "203.0.113.0/24"]);
    expect(ids(store.find({ range: "203.0.113.0/24", contains: false }, T0))).toEqual(["203.0.113.0/24", "203.0.113.9"]);
    expect(ids(store.find({ range: "203.0.0.0/8", contains: false }, T0))).toEqual(["203.0.0.0/16", "203.0.113.0/24", "203.0.113.9"]);
    // Host bits are cleared, as CrowdSec's parser does.
    expect(queryRange("203.0.113.9/24")).toEqual(queryRange("203.0.113.0/24"));
  });

  test("scope and value are exact; a malformed ip or range is an error", () => {
    expect(store.find({ scope: "domain" }, T0)).toEqual([dom]);
    expect(store.find({ value: "203.0.113.9" }, T0)).toEqual([ip]);
    expect(store.find({ scope: "range", value: "203.0.113.9" }, T0)).toEqual([]);
    expect(() => store.find({ ip: "203.0.113" }, T0)).toThrow(DecisionStoreError);
    expect(() => store.find({ range: "203.0.113.0/33" }, T0)).toThrow(/not an IP address or CIDR range/);
  });

  afterAll(() => ledger.close());
});

describe("the journal stays bounded", () => {
  test("pruned past the oldest bouncer cursor once an hour old, past any cursor after 7 days; a cursor pruned past gets the whole set", () => {
    const { ledger, store } = open();
    const bouncers = new BouncerStore(ledger, MESH);
    const a = dec("ip", "203.0.113.9", T0 + 4 * H);
    const b = dec("ip", "203.0.113.10", T0 + 4 * H);
    const c = dec("ip", "203.0.113.11", T0 + 30 * 24 * H);
    store.replace([a, b], 1, T0);
    expect(store.journalSize()).toBe(2);
    // Two hours on, no bouncer has pulled: nobody needs those entries.
    store.replace([a, b], 2, T0 + 2 * H);
    expect(store.journalSize()).toBe(0);
    bouncers.add("fw");
    const first = store.stream({ cursor: null, startup: true, nowMs: T0 + 2 * H });
    bouncers.pulled("fw", first.cursor);
    store.replace([a, c], 3, T0 + 3 * H);
    expect(store.journalSize()).toBe(2);
    const s = store.stream({ cursor: first.cursor, startup: false, nowMs: T0 + 3 * H + 1000 });
    expect([s.new, s.deleted, s.full]).toEqual([[c], [b], false]);
    bouncers.pulled("fw", s.cursor);
    // fw is past both entries and they are over an hour old: gone; the new one stays.
    store.replace([c], 4, T0 + 5 * H);
    expect(store.journalSize()).toBe(1);
    // A week on, entries go whatever the cursors; such a cursor is then sent the whole set.
    store.replace([a, c], 5, T0 + 6 * H);
    store.replace([c], 6, T0 + 6 * H + JOURNAL_MAX_AGE_MS + 1);
    expect(store.journalSize()).toBe(1);
    const late = store.stream({ cursor: bouncers.get("fw")!.cursor, startup: false, nowMs: T0 + 6 * H + JOURNAL_MAX_AGE_MS + 2 });
    expect([late.new, late.deleted, late.full]).toEqual([[c], [], true]);
    ledger.close();
  });
});
