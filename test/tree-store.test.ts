// The ledger-backed Merkle log (src/log/tree-store.ts), cross-checked against the
// in-memory RFC 6962 reference (src/log/merkle.ts) on a real SQLite file.
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import * as path from "node:path";
import { Ledger } from "../src/ledger/ledger.ts";
import {
  consistencyProof,
  EMPTY_ROOT,
  inclusionProof,
  leafHash,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from "../src/log/merkle.ts";
import { TreeStore } from "../src/log/tree-store.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { prng } from "./helpers/prng.ts";

afterAll(cleanupTempDirs);

const N = 300;
/** Interior hash rows, read through a connection of its own as an outside reader would. */
const nodeRows = (file: string) => {
  const db = new Database(file);
  try {
    return (db.query("SELECT count(*) AS n FROM log_nodes").get() as { n: number }).n;
  } finally {
    db.close();
  }
};
const hex = (h: Uint8Array) => Buffer.from(h).toString("hex");
const hexes = (hs: Uint8Array[]) => hs.map(hex);
const randomId = () => crypto.getRandomValues(new Uint8Array(32));

/** A ledger with N leaves appended in seeded random batch sizes, its store, ids and leaf hashes. */
function build(seed: number) {
  const file = path.join(tempDir(), "ledger.sqlite");
  const ledger = Ledger.open(file);
  const store = new TreeStore(ledger);
  const rand = prng(seed);
  const ids: Uint8Array[] = [];
  const leaves: Uint8Array[] = [];
  const rootsSeen: string[] = [hex(store.root())];
  while (ids.length < N) {
    const k = Math.min(N - ids.length, Math.floor(rand() * 20)); // 0..19, empty batches included
    const batch = Array.from({ length: k }, randomId);
    const size = ledger.immediate(() => store.append(batch));
    for (const id of batch) {
      ids.push(id);
      leaves.push(leafHash(id));
    }
    expect(size).toBe(ids.length);
    expect(store.size()).toBe(ids.length);
    rootsSeen[ids.length] = hex(store.root());
  }
  return { file, ledger, store, ids, leaves, rootsSeen, rand };
}

describe("TreeStore", () => {
  const t = build(0x7e57);
  afterAll(() => t.ledger.close());

  test("root(size) equals rootOf for every size 0..300, and roots seen while appending stay put", () => {
    expect(hex(t.store.root(0))).toBe(hex(EMPTY_ROOT));
    for (let s = 0; s <= N; s++) {
      const want = hex(rootOf(t.leaves, 0, s));
      expect(hex(t.store.root(s))).toBe(want);
      if (t.rootsSeen[s] !== undefined) expect(t.rootsSeen[s]).toBe(want);
    }
    expect(hex(t.store.root())).toBe(hex(rootOf(t.leaves)));
    expect(() => t.store.root(N + 1)).toThrow(RangeError);
  });

  test("every inclusion proof for sizes 1..300 equals the in-memory proof and verifies", () => {
    // 45,150 proofs; the O(n) reference generator dominates, so compare bytes cheaply.
    let count = 0;
    const mismatches: string[] = [];
    for (let size = 1; size <= N; size++) {
      const root = t.store.root(size);
      for (let i = 0; i < size; i++) {
        const got = t.store.inclusionProof(i, size);
        if (!Buffer.concat(got).equals(Buffer.concat(inclusionProof(t.leaves, i, size)))) mismatches.push(`${i}/${size}`);
        verifyInclusion(t.leaves[i]!, i, size, got, root);
        count++;
      }
    }
    expect(mismatches).toEqual([]);
    expect(count).toBe((N * (N + 1)) / 2);
    expect(() => t.store.inclusionProof(5, 5)).toThrow(RangeError);
    expect(() => t.store.inclusionProof(0, N + 1)).toThrow(RangeError);
  }, 60_000);

  test("consistency proofs: all pairs for sizes 1..64, 4000 random pairs up to 300; equal and verify", () => {
    const roots = Array.from({ length: N + 1 }, (_, s) => t.store.root(s));
    const check = (s1: number, s2: number) => {
      const got = t.store.consistencyProof(s1, s2);
      expect(hexes(got)).toEqual(hexes(consistencyProof(t.leaves, s1, s2)));
      verifyConsistency(s1, s2, got, roots[s1]!, roots[s2]!);
    };
    for (let s2 = 1; s2 <= 64; s2++) for (let s1 = 1; s1 <= s2; s1++) check(s1, s2);
    for (let i = 0; i < 4000; i++) {
      const a = 1 + Math.floor(t.rand() * N);
      const b = 65 + Math.floor(t.rand() * (N - 64));
      check(Math.min(a, b), Math.max(a, b));
    }
    // Every pair that ends at the full size.
    for (let s1 = 1; s1 <= N; s1++) check(s1, N);
    expect(() => t.store.consistencyProof(0, 5)).toThrow(RangeError);
    expect(() => t.store.consistencyProof(6, 5)).toThrow(RangeError);
  }, 60_000);

  test("idAt", () => {
    for (let i = 0; i < N; i++) expect(hex(t.store.idAt(i)!)).toBe(hex(t.ids[i]!));
    expect(t.store.idAt(N)).toBeNull();
    expect(t.store.idAt(-1)).toBeNull();
  });

  test("a failed append leaves nothing half-written", () => {
    const before = t.store.size();
    const rootBefore = hex(t.store.root());
    const nodesBefore = nodeRows(t.file);
    // A bad id after good ones: nothing of the batch is written.
    expect(() => t.ledger.immediate(() => t.store.append([randomId(), randomId(), new Uint8Array(31)]))).toThrow(RangeError);
    // The caller's transaction rolls back an append that succeeded inside it.
    expect(() =>
      t.ledger.immediate(() => {
        t.store.append([randomId(), randomId(), randomId()]);
        throw new Error("abort");
      }),
    ).toThrow("abort");
    expect(t.store.size()).toBe(before);
    expect(hex(t.store.root())).toBe(rootBefore);
    expect(nodeRows(t.file)).toBe(nodesBefore);
  });

  test("historic roots and proofs stay correct after more appends; reopening gives the same log", () => {
    const extra = Array.from({ length: 37 }, randomId);
    t.ledger.immediate(() => t.store.append(extra));
    const leaves = [...t.leaves, ...extra.map(leafHash)];
    const n = leaves.length;
    expect(t.store.size()).toBe(n);
    for (let s = 0; s <= n; s++) expect(hex(t.store.root(s))).toBe(hex(rootOf(leaves, 0, s)));
    for (const s1 of [1, 7, 64, 128, 255, 256, 299, 300]) {
      expect(hexes(t.store.consistencyProof(s1, n))).toEqual(hexes(consistencyProof(leaves, s1, n)));
    }
    // Ids backed by one shared buffer (subarray views) bind correctly too.
    const buf = crypto.getRandomValues(new Uint8Array(32 * 5));
    const views = Array.from({ length: 5 }, (_, i) => buf.subarray(32 * i, 32 * (i + 1)));
    t.ledger.immediate(() => t.store.append(views));
    for (let i = 0; i < 5; i++) {
      expect(hex(t.store.idAt(n + i)!)).toBe(hex(views[i]!));
      leaves.push(leafHash(views[i]!));
    }

    const rootsBefore = Array.from({ length: leaves.length + 1 }, (_, s) => hex(t.store.root(s)));
    const reopened = Ledger.open(t.file);
    try {
      const again = new TreeStore(reopened);
      expect(again.size()).toBe(leaves.length);
      for (let s = 0; s <= leaves.length; s++) {
        expect(hex(again.root(s))).toBe(rootsBefore[s]!);
        expect(rootsBefore[s]!).toBe(hex(rootOf(leaves, 0, s)));
      }
      // Appending through the reopened handle continues the same tree.
      const more = Array.from({ length: 9 }, randomId);
      reopened.immediate(() => again.append(more));
      leaves.push(...more.map(leafHash));
      expect(hex(again.root())).toBe(hex(rootOf(leaves)));
      const i = leaves.length - 3;
      verifyInclusion(leaves[i]!, i, leaves.length, again.inclusionProof(i, leaves.length), again.root());
    } finally {
      reopened.close();
    }
  });
});
