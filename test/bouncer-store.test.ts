// Bouncers and their keys (src/ledger/bouncer-store.ts) on a real SQLite file: a key is
// shown once and only its SHA-256 is stored; names are checked and unique; the stream
// cursor and what was seen last persist across connections (dsm bouncers from another
// process, a restarted dsm run).
import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import * as crypto from "node:crypto";
import * as path from "node:path";
import { Ledger } from "../src/ledger/ledger.ts";
import { agentOf, BouncerError, BouncerStore } from "../src/ledger/bouncer-store.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

const MESH = "11".repeat(32);
const OTHER_MESH = "22".repeat(32);
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0, 0);

function open(): { ledger: Ledger; store: BouncerStore; file: string } {
  const file = path.join(tempDir(), "ledger.sqlite");
  const ledger = Ledger.open(file);
  return { ledger, store: new BouncerStore(ledger, MESH), file };
}

describe("BouncerStore", () => {
  test("add gives a 32-byte base64url key once; the file holds its SHA-256 and never the key", () => {
    const { ledger, store, file } = open();
    const { name, key } = store.add("edge-fw.1", T0);
    expect(name).toBe("edge-fw.1");
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(key, "base64url")).toHaveLength(32);
    expect(store.add("other").key).not.toBe(key);
    ledger.close();
    const db = new Database(file, { readonly: true });
    const row = db.query("SELECT key_hash FROM bouncers WHERE name = ?").get("edge-fw.1") as { key_hash: Uint8Array };
    expect(Buffer.from(row.key_hash)).toEqual(crypto.createHash("sha256").update(key).digest());
    const raw = Buffer.from(db.serialize()).toString("latin1");
    expect(raw.includes(key)).toBe(false);
    db.close();
  });

  test("names are 1-64 of A-Z a-z 0-9 . _ - and unique per mesh; duplicates are refused clearly", () => {
    const { ledger, store } = open();
    for (const bad of ["", "a b", "x/y", "é", "a".repeat(65), "key;drop"]) expect(() => store.add(bad)).toThrow(BouncerError);
    store.add("a".repeat(64));
    store.add("fw");
    expect(() => store.add("fw")).toThrow(/a bouncer named fw exists already/);
    // Another mesh in the same ledger has its own names.
    expect(new BouncerStore(ledger, OTHER_MESH).add("fw").name).toBe("fw");
    expect(store.list().map((b) => b.name)).toEqual(["a".repeat(64), "fw"]);
    ledger.close();
  });

  test("authenticate finds the bouncer of a key, and nothing for a wrong, empty, absent or deleted one", () => {
    const { ledger, store } = open();
    const fw = store.add("fw", T0);
    const lua = store.add("nginx", T0);
    expect(store.authenticate(fw.key)?.name).toBe("fw");
    expect(store.authenticate(lua.key)?.name).toBe("nginx");
    expect(store.authenticate(fw.key.slice(0, -1) + (fw.key.endsWith("A") ? "B" : "A"))).toBeNull();
    expect(store.authenticate("")).toBeNull();
    expect(store.authenticate(null)).toBeNull();
    expect(store.authenticate("x".repeat(10_000))).toBeNull();
    // A key of another mesh is no key here.
    const other = new BouncerStore(ledger, OTHER_MESH).add("fw");
    expect(store.authenticate(other.key)).toBeNull();
    expect(store.delete("fw")).toBe(true);
    expect(store.delete("fw")).toBe(false);
    expect(store.authenticate(fw.key)).toBeNull();
    ledger.close();
  });

  test("the cursor and what was last seen persist, seen at most once a minute unless the address or agent changed", () => {
    const { ledger, store, file } = open();
    store.add("fw", T0);
    let b = store.get("fw")!;
    expect(b).toEqual({ name: "fw", created_ms: T0, cursor: null, seen_ms: null, ip: null, type: null, version: null });
    store.seen(b, "127.0.0.1", "crowdsec-custom-bouncer/v0.0.15-debian", T0 + 1000);
    store.pulled("fw", { seq: 42, ms: T0 + 1000 });
    b = store.get("fw")!;
    expect(b).toMatchObject({ cursor: { seq: 42, ms: T0 + 1000 }, seen_ms: T0 + 1000, ip: "127.0.0.1", type: "crowdsec-custom-bouncer", version: "v0.0.15-debian" });
    store.seen(b, "127.0.0.1", "crowdsec-custom-bouncer/v0.0.15-debian", T0 + 20_000);
    expect(store.get("fw")!.seen_ms).toBe(T0 + 1000);
    store.seen(b, "192.0.2.4", "crowdsec-custom-bouncer/v0.0.15-debian", T0 + 21_000);
    expect(store.get("fw")!).toMatchObject({ seen_ms: T0 + 21_000, ip: "192.0.2.4" });
    ledger.close();
    const again = new BouncerStore(Ledger.open(file), MESH);
    expect(again.get("fw")!.cursor).toEqual({ seq: 42, ms: T0 + 1000 });
  });

  test("User-Agent splits as CrowdSec splits it", () => {
    expect(agentOf("crowdsec-firewall-bouncer/v0.0.28")).toEqual({ type: "crowdsec-firewall-bouncer", version: "v0.0.28" });
    expect(agentOf("curl")).toEqual({ type: "curl", version: "N/A" });
    expect(agentOf("a/b/c")).toEqual({ type: "a/b/c", version: "N/A" });
    expect(agentOf(null)).toEqual({ type: "", version: "N/A" });
    expect(agentOf("x\u0000y/1")).toEqual({ type: "x?y", version: "1" });
  });
});
