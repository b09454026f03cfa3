// The pure checkpoint rules of DESIGN.md section 6, over random chains: deterministic
// whatever order the chains come in, and exactly the microblocks the rules select.
import { describe, expect, test } from "bun:test";
import { type ChainCandidates, epochAt, epochBounds, makeCheckpointBody, parseCheckpoint, planCheckpoint } from "../src/protocol/checkpoint.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { prng } from "./helpers/prng.ts";
import type { Genesis } from "../src/protocol/genesis.ts";

const hex = (rand: () => number, bytes = 32) => Array.from({ length: bytes }, () => Math.floor(rand() * 256).toString(16).padStart(2, "0")).join("");

function randomChains(rand: () => number): { chains: ChainCandidates[]; endMs: number } {
  const endMs = 1_000_000;
  const chains: ChainCandidates[] = [];
  const n = 1 + Math.floor(rand() * 12);
  for (let i = 0; i < n; i++) {
    const lastIncluded = Math.floor(rand() * 5);
    const rows: ChainCandidates["rows"] = [];
    let ts = 900_000 + Math.floor(rand() * 90_000);
    let seq = lastIncluded + 1;
    const len = Math.floor(rand() * 20);
    for (let k = 0; k < len; k++) {
      if (rand() < 0.05) seq += 1; // a gap: a late arrival not stored yet
      ts += Math.floor(rand() * 8_000); // some fall after the epoch end
      rows.push({ seq, id: hex(rand), timestampMs: ts });
      seq += 1;
    }
    const c: ChainCandidates = { nodeId: hex(rand), lastIncluded, rows };
    if (rand() < 0.15 && rows.length) c.quarantinedFrom = rows[Math.floor(rand() * rows.length)]!.seq;
    chains.push(c);
  }
  return { chains, endMs };
}

/** The rule, stated naively, for comparison. */
function naive(chains: ChainCandidates[], endMs: number): string[] {
  const out: string[] = [];
  for (const c of [...chains].sort((a, b) => Buffer.compare(Buffer.from(a.nodeId, "hex"), Buffer.from(b.nodeId, "hex")))) {
    for (let i = 0; i < c.rows.length; i++) {
      const r = c.rows[i]!;
      const contiguous = r.seq === c.lastIncluded + 1 + i;
      if (!contiguous || r.timestampMs >= endMs || (c.quarantinedFrom !== undefined && r.seq >= c.quarantinedFrom)) break;
      out.push(r.id);
    }
  }
  return out;
}

describe("planCheckpoint", () => {
  test("2,000 random ledgers: order-independent, and exactly the ids the rules select, in bytewise node order", () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const rand = prng(seed);
      const { chains, endMs } = randomChains(rand);
      const a = planCheckpoint(chains, endMs);
      const shuffled = [...chains].sort(() => rand() - 0.5);
      const b = planCheckpoint(shuffled, endMs);
      expect(canonicalize(b)).toBe(canonicalize(a));
      expect(a.ids).toEqual(naive(chains, endMs));
      const total = Object.values(a.ranges).reduce((s, [f, t]) => s + t - f + 1, 0);
      expect(total).toBe(a.ids.length);
      for (const c of chains) {
        const r = a.ranges[c.nodeId];
        if (r) expect(r[0]).toBe(c.lastIncluded + 1);
      }
    }
  });

  test("nothing new gives empty ranges", () => {
    expect(planCheckpoint([{ nodeId: "aa".repeat(32), lastIncluded: 3, rows: [] }], 10)).toEqual({ ranges: {}, ids: [] });
  });
});

describe("epochs and the checkpoint body", () => {
  const genesis = { genesis_time: "2026-11-25T00:00:00.000Z", epoch_duration: 300 } as Genesis;
  test("epoch e is [t0 + eD, t0 + (e+1)D)", () => {
    const t0 = Date.parse(genesis.genesis_time);
    expect(epochBounds(genesis, 0)).toEqual({ startMs: t0, endMs: t0 + 300_000 });
    expect(epochAt(genesis, t0)).toBe(0);
    expect(epochAt(genesis, t0 + 299_999)).toBe(0);
    expect(epochAt(genesis, t0 + 300_000)).toBe(1);
    expect(epochAt(genesis, t0 - 1)).toBe(-1);
  });

  test("body round trip and strict parsing", () => {
    const body = makeCheckpointBody({ mesh: "ab".repeat(32), epoch: 3, prev: null, treeSize: 5, root: new Uint8Array(32), ranges: { ["cd".repeat(32)]: [1, 5] } });
    expect(parseCheckpoint(JSON.parse(JSON.stringify(body)))).toEqual(body);
    expect(() => parseCheckpoint({ ...body, extra: 1 })).toThrow(/unexpected field/);
    expect(() => parseCheckpoint({ ...body, ranges: { ["cd".repeat(32)]: [5, 1] } })).toThrow(/from_seq/);
    expect(() => parseCheckpoint({ ...body, ranges: { nothex: [1, 1] } })).toThrow(/node id/);
  });
});
