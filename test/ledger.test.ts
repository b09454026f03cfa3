// The SQLite ledger (src/ledger/ledger.ts): real files in temp dirs, real microblocks from real
// nodes where chain validity matters, hand-made rows where only storage is under test (the ledger
// is storage only: it does not validate rows). verifyLedger's own cases are in test/verify.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Microblock } from "../src/protocol/microblock.ts";
import { toHex, ZERO_HASH } from "../src/encoding/hex.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { Ledger, LedgerError } from "../src/ledger/ledger.ts";
import { MIGRATIONS } from "../src/ledger/schema.ts";
import { verifyLedger } from "../src/ledger/verify.ts";
import { DSMNode } from "../src/node/node.ts";
import { cleanupTempDirs, closeQuietly, makeNode, tempDir, testConfig } from "./helpers/node.ts";
import { useScratch } from "./helpers/scratch.ts";

afterAll(cleanupTempDirs);

const rnd = (n: number) => toHex(new Uint8Array(crypto.randomBytes(n)));
const file = () => path.join(tempDir(), "ledger.sqlite");
const pragma = (db: Database | Ledger, name: Parameters<Ledger["pragma"]>[0]) => (db instanceof Ledger ? db.pragma(name) : Object.values(db.query(`PRAGMA ${name}`).get() as object)[0]);

const MESH = "11".repeat(32);
const NODE_A = "aa".repeat(32);
const NODE_B = "bb".repeat(32);
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0, 0);

/** A storage row: right shapes, arbitrary content. */
function row(nodeId: string, seq: number, prev: string, tsMs: number, eventType: string, id = rnd(32)): Microblock {
  return {
    v: 1,
    type: "M",
    mesh: MESH,
    node_id: nodeId,
    seq,
    prev,
    timestamp: new Date(tsMs).toISOString(),
    event_type: eventType,
    payload_hash: rnd(32),
    key: "cc".repeat(32),
    id,
    sig: rnd(64),
  };
}

describe("Ledger.open", () => {
  test("creates the file with WAL, synchronous=FULL, foreign keys, user_version = migrations", () => {
    const f = file();
    const l = Ledger.open(f);
    try {
      expect(fs.existsSync(f)).toBe(true);
      expect(pragma(l, "journal_mode")).toBe("wal");
      expect(pragma(l, "synchronous")).toBe(2);
      expect(pragma(l, "foreign_keys")).toBe(1);
      expect(pragma(l, "user_version")).toBe(MIGRATIONS.length);
      expect(MIGRATIONS.length).toBeGreaterThan(0);
      expect(l.counts()).toEqual({ microblocks: 0, payloads: 0, keyCerts: 0, chains: 0, forkEvidence: 0 });
    } finally {
      l.close();
    }
    // WAL is a property of the file: a plain connection sees it too
    const raw = new Database(f);
    expect(pragma(raw, "journal_mode")).toBe("wal");
    raw.close();
  });

  test("busy_timeout is applied", () => {
    const l = Ledger.open(file(), { busyTimeoutMs: 1234 });
    expect(pragma(l, "busy_timeout")).toBe(1234);
    l.close();
  });

  test("a fresh file is migrated under the write lock (fails fast while another writer holds it)", () => {
    const f = file();
    const holder = new Database(f, { create: true });
    holder.exec("PRAGMA journal_mode = WAL");
    holder.exec("BEGIN IMMEDIATE");
    try {
      expect(() => Ledger.open(f, { busyTimeoutMs: 0 })).toThrow(LedgerError);
    } finally {
      holder.exec("ROLLBACK");
      holder.close();
    }
    Ledger.open(f, { busyTimeoutMs: 0 }).close();
  });

  test("reopening does not re-migrate: data kept, version kept, no write lock needed", async () => {
    const f = file();
    const l1 = Ledger.open(f);
    l1.insertPayload("01".repeat(32), "{}");
    l1.insertMicroblock(row(NODE_A, 1, ZERO_HASH, T0, "x"), T0);
    l1.close();
    // Another writer holds the lock: a migration would need it and fail with busy_timeout 0.
    const holder = new Database(f);
    holder.exec("BEGIN IMMEDIATE");
    try {
      const l2 = Ledger.open(f, { busyTimeoutMs: 0 });
      expect(pragma(l2, "user_version")).toBe(MIGRATIONS.length);
      expect(l2.counts().microblocks).toBe(1);
      expect(l2.hasPayload("01".repeat(32))).toBe(true);
      l2.close();
    } finally {
      holder.exec("ROLLBACK");
      holder.close();
    }
    const l3 = Ledger.open(f);
    expect(l3.counts()).toMatchObject({ microblocks: 1, payloads: 1, chains: 1 });
    l3.close();
  });

  test("a ledger with a newer schema version is refused with a clear message, and left alone", () => {
    const f = file();
    const raw = new Database(f, { create: true });
    raw.exec(`PRAGMA user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    let err: unknown;
    try {
      Ledger.open(f).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LedgerError);
    expect((err as Error).message).toMatch(new RegExp(`schema version ${MIGRATIONS.length + 1} is newer than this dsm understands \\(${MIGRATIONS.length}\\); upgrade dsm`));
    expect(() => Ledger.open(f, { readonly: true })).toThrow(new RegExp(`schema version ${MIGRATIONS.length + 1}, expected ${MIGRATIONS.length}`));
    const check = new Database(f);
    expect(pragma(check, "user_version")).toBe(MIGRATIONS.length + 1);
    expect(check.query("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get()).toEqual({ n: 0 });
    check.close();
  });

  test("readonly open of a missing file errors and creates nothing", () => {
    const f = path.join(tempDir(), "sub", "missing.sqlite");
    expect(() => Ledger.open(f, { readonly: true })).toThrow(/not found/);
    expect(fs.existsSync(f)).toBe(false);
    expect(fs.existsSync(path.dirname(f))).toBe(false);
  });

  test("readonly open of an existing ledger reads but cannot write", () => {
    const f = file();
    const w = Ledger.open(f);
    w.insertMicroblock(row(NODE_A, 1, ZERO_HASH, T0, "x"), T0);
    const r = Ledger.open(f, { readonly: true });
    try {
      expect(r.counts().microblocks).toBe(1);
      expect(() => r.insertPayload("02".repeat(32), "{}")).toThrow();
    } finally {
      r.close();
      w.close();
    }
  });
});

describe("Ledger.immediate", () => {
  test("commits when fn returns, visibly to another connection", async () => {
    const f = file();
    const l = Ledger.open(f);
    const other = Ledger.open(f);
    const out = await l.immediate(() => {
      l.insertPayload("03".repeat(32), '{"a":1}');
      expect(l.inTransaction).toBe(true);
      return 42;
    });
    expect(out).toBe(42);
    expect(l.inTransaction).toBe(false);
    expect(other.payload("03".repeat(32))).toBe('{"a":1}');
    l.close();
    other.close();
  });

  test("rolls back when fn throws: nothing stored, the error propagates", () => {
    const l = Ledger.open(file());
    expect(() =>
      l.immediate(() => {
        l.insertPayload("04".repeat(32), "{}");
        l.insertMicroblock(row(NODE_A, 1, ZERO_HASH, T0, "x"), T0);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(l.inTransaction).toBe(false);
    expect(l.hasPayload("04".repeat(32))).toBe(false);
    expect(l.counts()).toMatchObject({ microblocks: 0, chains: 0 });

    // immediate() is synchronous: a transaction is never held across an await.
    expect(l.immediate(() => 7)).toBe(7);
    expect(l.hasPayload("05".repeat(32))).toBe(false);
    // and the connection is usable afterwards
    l.immediate(() => l.insertPayload("06".repeat(32), "{}"));
    expect(l.hasPayload("06".repeat(32))).toBe(true);
    l.close();
  });
});

describe("constraints and payloads", () => {
  test("unique (chain, seq) and unique id", () => {
    const l = Ledger.open(file());
    const a1 = row(NODE_A, 1, ZERO_HASH, T0, "x");
    l.insertMicroblock(a1, T0);
    expect(() => l.insertMicroblock({ ...a1, id: rnd(32) }, T0)).toThrow(/UNIQUE/); // same chain and seq
    expect(() => l.insertMicroblock(row(NODE_A, 2, a1.id, T0, "x", a1.id), T0)).toThrow(/UNIQUE/); // same id
    expect(() => l.insertMicroblock(row(NODE_B, 1, ZERO_HASH, T0, "x", a1.id), T0)).toThrow(/UNIQUE/); // same id, other chain
    // same seq in another chain, or another mesh, is fine
    l.insertMicroblock(row(NODE_B, 1, ZERO_HASH, T0, "x"), T0);
    l.insertMicroblock({ ...row(NODE_A, 1, ZERO_HASH, T0, "x"), mesh: "22".repeat(32) }, T0);
    expect(l.counts()).toMatchObject({ microblocks: 3, chains: 3 });
    l.close();
  });

  test("payloads are stored once per hash, byte-exact", () => {
    const l = Ledger.open(file());
    const body = canonicalize({ b: [1, "é"], a: null });
    const h = toHex(new Uint8Array(crypto.createHash("sha256").update(body).digest()));
    l.insertPayload(h, body);
    l.insertPayload(h, body);
    l.insertPayload(h, Buffer.from(body));
    expect(l.counts().payloads).toBe(1);
    expect(l.payload(h)).toBe(body);
    expect(l.payload("00".repeat(32))).toBeNull();
    l.close();
  });

  test("a node storing two events with the same payload keeps one payload row", async () => {
    const { node } = await makeNode();
    try {
      const a = await node.createMicroblock({ eventType: "json", payload: { same: 1 } });
      const b = await node.createMicroblock({ eventType: "json", payload: { same: 1 } });
      expect(a.payload_hash).toBe(b.payload_hash);
      expect(a.id).not.toBe(b.id);
      expect(node.ledger.counts()).toMatchObject({ microblocks: 2, payloads: 1, keyCerts: 1, chains: 1 });
    } finally {
      closeQuietly(node);
    }
  });
});

describe("queries", () => {
  // Node A: 6 microblocks, node B: 3, inserted interleaved so rowid order is not per-node order.
  const f = file();
  const l = Ledger.open(f);
  const types = { A: ["suricata.alert", "suricata.dns", "suricatax", "zeek.notice", "suricata", "json"], B: ["suricata.alert", "json.x", "zeek.weird"] };
  const A: Microblock[] = [];
  const B: Microblock[] = [];
  const ids = ["abc1", "abc2", "abd0", "0000", "1111", "2222", "3333", "4444", "5555"];
  let k = 0;
  const nextId = () => ids[k++]! + rnd(30);
  for (let i = 0; i < 6; i++) {
    const a = row(NODE_A, i + 1, A[i - 1]?.id ?? ZERO_HASH, T0 + i * 1000, types.A[i]!, nextId());
    l.insertMicroblock(a, T0 + i);
    A.push(a);
    if (i < 3) {
      const b = row(NODE_B, i + 1, B[i - 1]?.id ?? ZERO_HASH, T0 + i * 1000 + 500, types.B[i]!, nextId());
      l.insertMicroblock(b, T0 + i);
      B.push(b);
    }
  }
  // Insertion order: A1 B1 A2 B2 A3 B3 A4 A5 A6
  const all = [A[0], B[0], A[1], B[1], A[2], B[2], A[3], A[4], A[5]].map((m) => m!.id);
  const idsOf = (ms: { id: string }[]) => ms.map((m) => m.id);
  afterAll(() => l.close());

  test("list() with no filter: every row, arrival order, as stored", () => {
    const got = l.list({});
    expect(idsOf(got)).toEqual(all);
    const { rowid, received_at, ...mb } = got[0]!;
    expect(mb).toEqual(A[0]!);
    expect(rowid).toBeGreaterThan(0);
    expect(received_at).toBe(T0);
    for (let i = 1; i < got.length; i++) expect(got[i]!.rowid).toBeGreaterThan(got[i - 1]!.rowid);
  });

  test("nodeId and seq range", () => {
    expect(idsOf(l.list({ nodeId: NODE_A }))).toEqual(idsOf(A));
    expect(idsOf(l.list({ nodeId: NODE_B }))).toEqual(idsOf(B));
    expect(l.list({ nodeId: "cc".repeat(32) })).toEqual([]);
    expect(l.list({ nodeId: NODE_A, fromSeq: 2, toSeq: 4 }).map((m) => m.seq)).toEqual([2, 3, 4]);
    expect(l.list({ fromSeq: 3 }).map((m) => `${m.node_id.slice(0, 2)}${m.seq}`)).toEqual(["aa3", "bb3", "aa4", "aa5", "aa6"]);
    expect(l.list({ toSeq: 1 }).length).toBe(2);
  });

  test('eventType "suricata" matches itself and suricata.*, not suricatax', () => {
    const got = l.list({ eventType: "suricata" }).map((m) => m.event_type);
    expect(got).toEqual(["suricata.alert", "suricata.alert", "suricata.dns", "suricata"]);
    expect(l.list({ eventType: "suricata.alert" }).length).toBe(2);
    expect(l.list({ eventType: "suricatax" }).map((m) => m.event_type)).toEqual(["suricatax"]);
    expect(l.list({ eventType: "zeek" }).map((m) => m.event_type)).toEqual(["zeek.weird", "zeek.notice"]);
    expect(l.list({ eventType: "json" }).map((m) => m.event_type)).toEqual(["json.x", "json"]);
    expect(l.list({ eventType: "suri" })).toEqual([]);
    // LIKE wildcards in the filter are literal
    expect(l.list({ eventType: "sur%" })).toEqual([]);
    expect(l.list({ eventType: "suricat_" })).toEqual([]);
    expect(l.list({ eventType: "%" })).toEqual([]);
  });

  test("since (inclusive) and until (exclusive)", () => {
    // timestamps: A at T0 + 0,1000,...,5000; B at T0 + 500, 1500, 2500
    expect(l.list({ sinceMs: T0 + 2000 }).map((m) => m.timestamp)).toEqual(
      [2000, 2500, 3000, 4000, 5000].map((d) => new Date(T0 + d).toISOString()),
    );
    expect(l.list({ untilMs: T0 + 1000 }).map((m) => m.timestamp)).toEqual([0, 500].map((d) => new Date(T0 + d).toISOString()));
    expect(idsOf(l.list({ sinceMs: T0 + 1000, untilMs: T0 + 2000 }))).toEqual([A[1]!.id, B[1]!.id]);
    expect(l.list({ sinceMs: T0 + 1001, untilMs: T0 + 1500 })).toEqual([]);
  });

  test("descending, limit and afterRowid paging", () => {
    expect(idsOf(l.list({ descending: true }))).toEqual([...all].reverse());
    expect(idsOf(l.list({ limit: 3 }))).toEqual(all.slice(0, 3));
    expect(l.list({ limit: 0 })).toEqual([]);
    for (const descending of [false, true]) {
      const pages: string[] = [];
      let after: number | undefined;
      for (let n = 0; n < 10; n++) {
        const page = l.list({ limit: 4, afterRowid: after, descending });
        if (page.length === 0) break;
        expect(page.length).toBeLessThanOrEqual(4);
        pages.push(...idsOf(page));
        after = page[page.length - 1]!.rowid;
      }
      expect(pages).toEqual(descending ? [...all].reverse() : all);
    }
    // filters combine with paging
    const first = l.list({ nodeId: NODE_A, limit: 2 });
    expect(idsOf(l.list({ nodeId: NODE_A, afterRowid: first[1]!.rowid }))).toEqual(idsOf(A.slice(2)));
  });

  test("byIdPrefix: odd and even prefixes, full ids, limit, no match", () => {
    expect(idsOf(l.byIdPrefix("abc", 10)).sort()).toEqual([all[0]!, all[1]!].sort());
    expect(idsOf(l.byIdPrefix("ab", 10)).sort()).toEqual([all[0]!, all[1]!, all[2]!].sort());
    expect(idsOf(l.byIdPrefix("abc1", 10))).toEqual([all[0]!]);
    expect(idsOf(l.byIdPrefix("a", 10)).length).toBe(3);
    expect(l.byIdPrefix("ab", 1).length).toBe(1);
    expect(idsOf(l.byIdPrefix(all[4]!, 10))).toEqual([all[4]!]);
    expect(l.byIdPrefix("fff", 10)).toEqual([]);
    expect(l.byId(all[3]!)!.id).toBe(all[3]!);
    expect(l.byId("ff".repeat(32))).toBeNull();
  });

  test("head(), bySeq(), counts(), eventTypeCounts()", () => {
    expect(l.head(MESH, NODE_A)).toEqual({ seq: 6, id: A[5]!.id, timestamp: A[5]!.timestamp });
    expect(l.head(MESH, NODE_B)).toEqual({ seq: 3, id: B[2]!.id, timestamp: B[2]!.timestamp });
    expect(l.head(MESH, "cc".repeat(32))).toBeNull();
    expect(l.head("22".repeat(32), NODE_A)).toBeNull();
    expect(l.bySeq(MESH, NODE_B, 2)!.id).toBe(B[1]!.id);
    expect(l.bySeq(MESH, NODE_B, 4)).toBeNull();
    expect(l.counts()).toEqual({ microblocks: 9, payloads: 0, keyCerts: 0, chains: 2, forkEvidence: 0 });
    const etc = l.eventTypeCounts();
    expect(etc).toEqual({ "suricata.alert": 2, json: 1, "json.x": 1, suricata: 1, "suricata.dns": 1, suricatax: 1, "zeek.notice": 1, "zeek.weird": 1 });
    // most frequent first, then by name
    expect(Object.keys(etc)).toEqual(["suricata.alert", "json", "json.x", "suricata", "suricata.dns", "suricatax", "zeek.notice", "zeek.weird"]);
  });

  test("a chain with a key certificate but no microblocks has no head", () => {
    const l2 = Ledger.open(file());
    l2.insertKeyCert(MESH, NODE_A, "dd".repeat(32), 1, "{}", T0);
    expect(l2.head(MESH, NODE_A)).toBeNull();
    expect(l2.counts()).toMatchObject({ chains: 1, keyCerts: 1, microblocks: 0 });
    expect(l2.keyCert("dd".repeat(32))).toBe("{}");
    expect(l2.keyCert("ee".repeat(32))).toBeNull();
    l2.close();
  });
});

describe("two Ledger connections on one file, through two DSMNode instances", () => {
  async function twoNodes(busyTimeoutMs: number) {
    const config = testConfig((c) => {
      c.ledger.busy_timeout_ms = busyTimeoutMs;
    });
    const { node: a, dataDir } = await makeNode({ config });
    const b = DSMNode.open(dataDir, config);
    expect(a.ledger).not.toBe(b.ledger);
    expect(a.ledger.path).toBe(b.ledger.path);
    return { a, b };
  }

  async function expectGapless(node: DSMNode, n: number) {
    const chain = node.ledger.list({ nodeId: node.nodeId });
    expect(chain.map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    chain.forEach((m, i) => expect(m.prev).toBe(i === 0 ? ZERO_HASH : chain[i - 1]!.id));
    const report = await verifyLedger(node.ledger, { ownNodeId: node.nodeId });
    expect(report.problems).toEqual([]);
    expect(report.microblocks).toBe(n);
  }

  test("alternating appends (each awaited) make one gapless chain, one certificate per writer", async () => {
    const { a, b } = await twoNodes(10_000);
    try {
      const seqs: number[] = [];
      for (let i = 0; i < 20; i++) {
        const w = i % 3 === 0 ? b : a;
        const [m1, m2] = await w.append([w.prepare("json", { i, part: 1 }), w.prepare("json", { i, part: 2 })]);
        seqs.push(m1!.seq, m2!.seq);
      }
      expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      await expectGapless(a, 40);
      await expectGapless(b, 40);
      // each connection certified its own signing key, starting at the seq it first wrote
      const certs = [...a.ledger.iterateKeyCerts()];
      expect(certs.map((c) => c.first_seq)).toEqual([1, 3]);
      expect(new Set(a.ledger.list({}).map((m) => m.key)).size).toBe(2);
    } finally {
      closeQuietly(a);
      closeQuietly(b);
    }
  });

  test("concurrent appends from both connections in one process all commit, gapless", async () => {
    // Short busy timeout: a writer that waits on the other connection in the same process
    // blocks the event loop, so the lock holder cannot finish (see the report).
    const { a, b } = await twoNodes(250);
    try {
      const results = await Promise.allSettled([
        a.createMicroblock({ eventType: "json", payload: { w: "a", i: 1 } }),
        b.createMicroblock({ eventType: "json", payload: { w: "b", i: 1 } }),
        a.createMicroblock({ eventType: "json", payload: { w: "a", i: 2 } }),
        b.createMicroblock({ eventType: "json", payload: { w: "b", i: 2 } }),
      ]);
      const failures = results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason));
      expect(failures).toEqual([]);
      await expectGapless(a, 4);
    } finally {
      closeQuietly(a);
      closeQuietly(b);
    }
  });
});

describe("Ledger.immediate nested in a transaction", () => {
  test("a savepoint: an inner failure undoes only the inner part, the outer commit keeps the rest", () => {
    const dir = tempDir();
    try {
      const l = Ledger.open(path.join(dir, "ledger.sqlite"));
      l.immediate(() => {
        l.immediate(() => l.insertPayload("01".repeat(32), "{}"));
        expect(() =>
          l.immediate(() => {
            l.insertPayload("02".repeat(32), "{}");
            throw new Error("inner");
          }),
        ).toThrow("inner");
        l.insertPayload("03".repeat(32), "{}");
      });
      expect([l.hasPayload("01".repeat(32)), l.hasPayload("02".repeat(32)), l.hasPayload("03".repeat(32))]).toEqual([true, false, true]);
      expect(l.inTransaction).toBe(false);
      l.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------
describe("Ledger.immediate forgets chain ids created in a rolled-back transaction", () => {
  const { newNode, freshLedger } = useScratch("dsm-ledger-rollback-");

  test("after a rollback that created the chain row, the node's next write succeeds", async () => {
    const { node } = await newNode("rollback");
    expect(node.ledger.counts().chains).toBe(0);
    expect(() =>
      node.ledger.immediate(() => {
        node.ledger.chainOf(node.mesh, node.nodeId, true);
        throw new Error("abort after creating the chain row");
      }),
    ).toThrow("abort after creating the chain row");
    expect(node.ledger.counts().chains).toBe(0);
    const mb = await node.createMicroblock({ eventType: "test.event", payload: { after: "rollback" } });
    expect(mb.seq).toBe(1);
    expect(node.ledger.counts()).toMatchObject({ chains: 1, microblocks: 1, keyCerts: 1 });
    expect((await verifyLedger(node.ledger, { ownNodeId: node.nodeId })).problems).toEqual([]);
  });

  test("the same through a bare ledger: a received microblock is stored after the rollback", async () => {
    const { node: src } = await newNode("rollback-src");
    const mb = await src.createMicroblock({ eventType: "test.event", payload: { x: 1 } });
    const l = freshLedger();
    expect(() =>
      l.immediate(() => {
        l.chainOf(mb.mesh, mb.node_id, true);
        throw new Error("abort");
      }),
    ).toThrow("abort");
    l.immediate(() => l.insertMicroblock(mb, Date.now()));
    expect(l.byId(mb.id)?.seq).toBe(1);
  });
});
