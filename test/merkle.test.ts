// RFC 6962 / RFC 9162 Merkle tree: src/log/merkle.ts.
// Vectors: test/vectors/rfc6962 (transparency-dev/merkle testdata, see its SOURCE.md), read in place.
// The subtree vectors (subtreeinclusion/, subtreeconsistency/) are for [start,end) range proofs, which
// this module does not implement; they are not run here (nor carried in test/vectors).
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import {
  EMPTY_ROOT,
  HASH_SIZE,
  ProofError,
  consistencyProof,
  consistencyProofLength,
  inclusionProof,
  inclusionProofLength,
  leafHash,
  nodeHash,
  rootFromInclusionProof,
  rootOf,
  rootsFromConsistencyProof,
  verifyConsistency,
  verifyInclusion,
} from "../src/log/merkle.ts";
import { prng } from "./helpers/prng.ts";

const VECTORS = new URL("vectors/rfc6962/", import.meta.url);

const b64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
const fromHex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const sha256 = (b: Uint8Array) => new Uint8Array(new Bun.CryptoHasher("sha256").update(b).digest());

type InclusionCase = {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
};
type ConsistencyCase = {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
};

function loadCases<T>(dir: string): { file: string; c: T }[] {
  const base = new URL(dir, VECTORS);
  const files = (readdirSync(base, { recursive: true }) as string[])
    .filter((f) => f.endsWith(".json"))
    .sort();
  return files.map((file) => ({ file: `${dir}${file}`, c: JSON.parse(readFileSync(new URL(file, base), "utf8")) as T }));
}

// --- Naive reference, straight from the recursive RFC 9162 definitions ------

function largestPow2Below(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
function refMTH(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha256(new Uint8Array(0));
  if (d.length === 1) return d[0]!; // d holds leaf hashes already
  const k = largestPow2Below(d.length);
  return sha256(new Uint8Array([1, ...refMTH(d.slice(0, k)), ...refMTH(d.slice(k))]));
}
function refPATH(m: number, d: Uint8Array[]): Uint8Array[] {
  if (d.length === 1) return [];
  const k = largestPow2Below(d.length);
  return m < k
    ? [...refPATH(m, d.slice(0, k)), refMTH(d.slice(k))]
    : [...refPATH(m - k, d.slice(k)), refMTH(d.slice(0, k))];
}
function refSUBPROOF(m: number, d: Uint8Array[], b: boolean): Uint8Array[] {
  if (m === d.length) return b ? [] : [refMTH(d)];
  const k = largestPow2Below(d.length);
  return m <= k
    ? [...refSUBPROOF(m, d.slice(0, k), b), refMTH(d.slice(k))]
    : [...refSUBPROOF(m - k, d.slice(k), false), refMTH(d.slice(0, k))];
}

function leavesFor(n: number, seed: number): Uint8Array[] {
  const rnd = prng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const data = new Uint8Array(1 + Math.floor(rnd() * 8));
    for (let j = 0; j < data.length; j++) data[j] = Math.floor(rnd() * 256);
    out.push(leafHash(data));
  }
  return out;
}

function flipped(h: Uint8Array, bit: number): Uint8Array {
  const c = new Uint8Array(h);
  c[bit >> 3]! ^= 1 << (bit & 7);
  return c;
}

const hexList = (l: Uint8Array[]) => l.map(toHex);

// ---------------------------------------------------------------------------

describe("hashing", () => {
  test("empty root, leaf and node hash prefixes", () => {
    expect(toHex(EMPTY_ROOT)).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(toHex(rootOf([]))).toBe(toHex(EMPTY_ROOT));
    const data = new Uint8Array([1, 2, 3]);
    expect(toHex(leafHash(data))).toBe(toHex(sha256(new Uint8Array([0, 1, 2, 3]))));
    const l = leafHash(new Uint8Array([1]));
    const r = leafHash(new Uint8Array([2]));
    expect(toHex(nodeHash(l, r))).toBe(toHex(sha256(new Uint8Array([1, ...l, ...r]))));
    // nodeHash reuses a scratch buffer; results must not alias it.
    const a = nodeHash(l, r);
    const b = nodeHash(r, l);
    expect(toHex(a)).not.toBe(toHex(b));
    expect(() => nodeHash(l, new Uint8Array(31))).toThrow(RangeError);
    expect(() => rootOf([l, new Uint8Array(33)])).toThrow(RangeError);
  });

  test("roots.json: rootOf(leafHash(leaves[0..n))) for n = 0..8", () => {
    const v = JSON.parse(readFileSync(new URL("roots.json", VECTORS), "utf8")) as {
      leaves_hex: string[];
      roots_hex: string[];
    };
    expect(v.roots_hex.length).toBe(9);
    const leaves = v.leaves_hex.map((h) => leafHash(fromHex(h)));
    for (let n = 0; n <= 8; n++) {
      expect(toHex(rootOf(leaves.slice(0, n)))).toBe(v.roots_hex[n]!);
      expect(toHex(rootOf(leaves, 0, n))).toBe(v.roots_hex[n]!);
    }
  });

  test("node_hashes.json: every perfect subtree of the 8-leaf tree", () => {
    const leaves = (
      JSON.parse(readFileSync(new URL("roots.json", VECTORS), "utf8")) as { leaves_hex: string[] }
    ).leaves_hex.map((h) => leafHash(fromHex(h)));
    const v = JSON.parse(readFileSync(new URL("node_hashes.json", VECTORS), "utf8")) as {
      node_hashes_hex: string[][];
    };
    let count = 0;
    v.node_hashes_hex.forEach((level, lv) => {
      level.forEach((want, i) => {
        const w = 2 ** lv;
        expect(toHex(rootOf(leaves, i * w, (i + 1) * w))).toBe(want);
        count++;
      });
    });
    expect(count).toBe(15);
  });

  test("rootOf matches the recursive MTH for sizes 0..300", () => {
    const leaves = leavesFor(300, 7);
    for (let n = 0; n <= 300; n++) expect(toHex(rootOf(leaves.slice(0, n)))).toBe(toHex(refMTH(leaves.slice(0, n))));
  });
});

describe("transparency-dev vectors", () => {
  const inclusion = loadCases<InclusionCase>("inclusion/");
  const consistency = loadCases<ConsistencyCase>("consistency/");

  test("vector counts", () => {
    expect(inclusion.length).toBe(98);
    expect(consistency.length).toBe(98);
    expect(inclusion.filter((x) => !x.c.wantErr).length).toBe(6);
    expect(consistency.filter((x) => !x.c.wantErr).length).toBe(6);
  });

  test.each(inclusion.map((x) => [x.file, x.c] as const))("inclusion %s", (_file, c) => {
    const run = () =>
      verifyInclusion(b64(c.leafHash), c.leafIdx, c.treeSize, (c.proof ?? []).map(b64), b64(c.root));
    if (c.wantErr) expect(run).toThrow(ProofError);
    else expect(run).not.toThrow();
  });

  test.each(consistency.map((x) => [x.file, x.c] as const))("consistency %s", (_file, c) => {
    const run = () => verifyConsistency(c.size1, c.size2, (c.proof ?? []).map(b64), b64(c.root1), b64(c.root2));
    if (c.wantErr) expect(run).toThrow(ProofError);
    else expect(run).not.toThrow();
  });

  test("happy-path proofs are what the generator produces over the 8 test leaves", () => {
    const leaves = (
      JSON.parse(readFileSync(new URL("roots.json", VECTORS), "utf8")) as { leaves_hex: string[] }
    ).leaves_hex.map((h) => leafHash(fromHex(h)));
    for (const { c } of inclusion) {
      if (c.wantErr || c.treeSize > 8 || c.desc !== "happy path") continue;
      const p = inclusionProof(leaves, c.leafIdx, c.treeSize);
      expect(p.map((h) => Buffer.from(h).toString("base64"))).toEqual(c.proof ?? []);
    }
    for (const { c } of consistency) {
      if (c.wantErr || c.size2 > 8 || c.desc !== "happy path") continue;
      const p = consistencyProof(leaves, c.size1, c.size2);
      expect(p.map((h) => Buffer.from(h).toString("base64"))).toEqual(c.proof ?? []);
    }
  });
});

describe("rules", () => {
  const leaves = leavesFor(10, 1);
  const root = rootOf(leaves);
  const root4 = rootOf(leaves, 0, 4);
  const root7 = rootOf(leaves, 0, 7);

  test("inclusion: index >= size, bad numbers, wrong lengths", () => {
    const p = inclusionProof(leaves, 3);
    expect(() => verifyInclusion(leaves[3]!, 3, 10, p, root)).not.toThrow();
    expect(() => verifyInclusion(leaves[3]!, 10, 10, p, root)).toThrow(/out of range/);
    expect(() => verifyInclusion(leaves[0]!, 0, 0, [], EMPTY_ROOT)).toThrow(ProofError);
    expect(() => verifyInclusion(leaves[3]!, -1, 10, p, root)).toThrow(ProofError);
    expect(() => verifyInclusion(leaves[3]!, 3.5, 10, p, root)).toThrow(ProofError);
    expect(() => verifyInclusion(leaves[3]!, 3, 10, p.slice(1), root)).toThrow(/wrong inclusion proof length/);
    expect(() => verifyInclusion(leaves[3]!, 3, 10, [...p, root], root)).toThrow(/wrong inclusion proof length/);
    expect(() => verifyInclusion(leaves[3]!.subarray(1), 3, 10, p, root)).toThrow(/leaf hash is 31 bytes/);
    expect(() => verifyInclusion(leaves[3]!, 3, 10, p, new Uint8Array([...root, 0]))).toThrow(/root is 33 bytes/);
    const bad = [...p];
    bad[1] = new Uint8Array(31);
    expect(() => verifyInclusion(leaves[3]!, 3, 10, bad, root)).toThrow(/proof element 1 is 31 bytes/);
    expect(() => verifyInclusion(leaves[2]!, 3, 10, p, root)).toThrow(/gives root/);
    expect(() => inclusionProof(leaves, 10)).toThrow(RangeError);
    expect(() => inclusionProof(leaves, 5, 5)).toThrow(RangeError);
    expect(() => inclusionProof(leaves, 0, 11)).toThrow(RangeError);
  });

  test("consistency: size rules, equal sizes, lengths", () => {
    const p = consistencyProof(leaves, 7, 10);
    expect(() => verifyConsistency(7, 10, p, root7, root)).not.toThrow();
    expect(() => verifyConsistency(10, 7, p, root, root7)).toThrow(/greater than/);
    expect(() => verifyConsistency(0, 10, [], EMPTY_ROOT, root)).toThrow(/empty tree/);
    expect(() => verifyConsistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)).toThrow(/empty tree/);
    expect(() => verifyConsistency(10, 10, [], root, root)).not.toThrow();
    expect(() => verifyConsistency(10, 10, [root], root, root)).toThrow(/want 0/);
    expect(() => verifyConsistency(10, 10, [], root, root7)).toThrow(/roots differ/);
    expect(() => verifyConsistency(7, 10, p.slice(1), root7, root)).toThrow(/wrong consistency proof length/);
    expect(() => verifyConsistency(7, 10, [...p, root], root7, root)).toThrow(/wrong consistency proof length/);
    expect(() => verifyConsistency(7, 10, [], root7, root)).toThrow(/wrong consistency proof length/);
    expect(() => verifyConsistency(7, 10, p, root7.subarray(0, 16), root)).toThrow(/root1 is 16 bytes/);
    expect(() => verifyConsistency(7, 10, p, root7, root.subarray(0, 16))).toThrow(/root2 is 16 bytes/);
    const bad = [...p];
    bad[0] = new Uint8Array(33);
    expect(() => verifyConsistency(7, 10, bad, root7, root)).toThrow(/proof element 0 is 33 bytes/);
    expect(() => verifyConsistency(7, 10, p, root, root7)).toThrow(/gives root1/);
    // size1 a power of two: root1 seeds the proof
    const p4 = consistencyProof(leaves, 4, 10);
    expect(() => verifyConsistency(4, 10, p4, root4, root)).not.toThrow();
    expect(() => verifyConsistency(4, 10, p4, root7, root)).toThrow(ProofError);
    expect(() => rootsFromConsistencyProof(10, 10, [], root)).toThrow(ProofError);
    expect(() => consistencyProof(leaves, 0, 5)).toThrow(RangeError);
    expect(() => consistencyProof(leaves, 6, 5)).toThrow(RangeError);
    expect(() => consistencyProof(leaves, 1, 11)).toThrow(RangeError);
    expect(consistencyProof(leaves, 5, 5)).toEqual([]);
  });

  // Independent closed form (bit decomposition, in BigInt): inclusion length is
  // inner + border with inner = bitlen(index ^ (size - 1)), border = popcount(index >> inner);
  // consistency drops the trailing-zero levels of size1 and adds the seed unless size1 is 2^k.
  const bitlen = (x: bigint) => x.toString(2).replace(/^0+/, "").length;
  const popcount = (x: bigint) => x.toString(2).split("1").length - 1;
  const trailingZeros = (x: bigint) => {
    let z = 0;
    while ((x & 1n) === 0n) (x >>= 1n), z++;
    return z;
  };
  const inclLen = (index: number, size: number) => {
    const inner = bitlen(BigInt(index) ^ BigInt(size - 1));
    return inner + popcount(BigInt(index) >> BigInt(inner));
  };
  const consLen = (size1: number, size2: number) => {
    const shift = trailingZeros(BigInt(size1));
    const inner = bitlen(BigInt(size1 - 1) ^ BigInt(size2 - 1)) - shift;
    const border = popcount(BigInt(size1 - 1) >> BigInt(inner + shift));
    return (BigInt(size1) === 1n << BigInt(shift) ? 0 : 1) + inner + border;
  };

  test("proof lengths match the closed form, small and beyond 2^32", () => {
    for (let size = 1; size <= 64; size++) {
      for (let i = 0; i < size; i++) expect(inclusionProofLength(i, size)).toBe(inclLen(i, size));
      for (let s1 = 1; s1 < size; s1++) expect(consistencyProofLength(s1, size)).toBe(consLen(s1, size));
    }
    const size = 2 ** 40 + 3;
    expect(inclusionProofLength(2 ** 40 + 2, size)).toBe(2);
    expect(inclusionProofLength(0, size)).toBe(41); // 40 inside the left 2^40 subtree + the right 3-leaf root
    const rnd = prng(99);
    for (let k = 0; k < 2000; k++) {
      const s2 = 2 + Math.floor(rnd() * (2 ** 52));
      const s1 = 1 + Math.floor(rnd() * (s2 - 1));
      const idx = Math.floor(rnd() * s2);
      expect(inclusionProofLength(idx, s2)).toBe(inclLen(idx, s2));
      expect(consistencyProofLength(s1, s2)).toBe(consLen(s1, s2));
    }
  });
});

describe("round trips against the recursive reference (seeded)", () => {
  function checkInclusion(leaves: Uint8Array[], index: number, size: number, flips: boolean): void {
    const p = inclusionProof(leaves, index, size);
    expect(hexList(p)).toEqual(hexList(refPATH(index, leaves.slice(0, size))));
    expect(p.length).toBe(inclusionProofLength(index, size));
    const root = rootOf(leaves, 0, size);
    verifyInclusion(leaves[index]!, index, size, p, root);
    expect(toHex(rootFromInclusionProof(leaves[index]!, index, size, p))).toBe(toHex(root));
    if (!flips) return;
    for (let i = 0; i < p.length; i++) {
      const bad = [...p];
      bad[i] = flipped(p[i]!, (i * 37 + index) % 256);
      expect(() => verifyInclusion(leaves[index]!, index, size, bad, root)).toThrow(ProofError);
    }
    expect(() => verifyInclusion(leaves[index]!, index, size, p, flipped(root, index % 256))).toThrow(ProofError);
    expect(() => verifyInclusion(flipped(leaves[index]!, 3), index, size, p, root)).toThrow(ProofError);
  }

  function checkConsistency(leaves: Uint8Array[], size1: number, size2: number, flips: boolean): void {
    const p = consistencyProof(leaves, size1, size2);
    const want = size1 === size2 ? [] : refSUBPROOF(size1, leaves.slice(0, size2), true);
    expect(hexList(p)).toEqual(hexList(want));
    if (size1 < size2) expect(p.length).toBe(consistencyProofLength(size1, size2));
    const root1 = rootOf(leaves, 0, size1);
    const root2 = rootOf(leaves, 0, size2);
    verifyConsistency(size1, size2, p, root1, root2);
    if (!flips) return;
    for (let i = 0; i < p.length; i++) {
      const bad = [...p];
      bad[i] = flipped(p[i]!, (i * 41 + size1) % 256);
      expect(() => verifyConsistency(size1, size2, bad, root1, root2)).toThrow(ProofError);
    }
    expect(() => verifyConsistency(size1, size2, p, flipped(root1, size2 % 256), root2)).toThrow(ProofError);
    expect(() => verifyConsistency(size1, size2, p, root1, flipped(root2, size1 % 256))).toThrow(ProofError);
  }

  const SMALL = 40;
  const leaves = leavesFor(300, 42);

  test(`every inclusion proof for sizes 1..${SMALL}, with bit flips`, () => {
    let n = 0;
    for (let size = 1; size <= SMALL; size++) {
      for (let index = 0; index < size; index++, n++) checkInclusion(leaves, index, size, true);
    }
    expect(n).toBe((SMALL * (SMALL + 1)) / 2);
  });

  test(`every consistency proof for 1 <= size1 <= size2 <= ${SMALL}, with bit flips`, () => {
    let n = 0;
    for (let size2 = 1; size2 <= SMALL; size2++) {
      for (let size1 = 1; size1 <= size2; size1++, n++) checkConsistency(leaves, size1, size2, true);
    }
    expect(n).toBe((SMALL * (SMALL + 1)) / 2);
  });

  test("every inclusion and consistency proof for sizes 1..300 equals the naive recursive definition", () => {
    // RFC 6962 section 2.1's PATH and SUBPROOF, literally, over index ranges of one leaf
    // list; MTH is memoised per range so the 90k proofs take seconds, not minutes.
    const memo = new Map<number, Uint8Array>();
    const MTH = (lo: number, hi: number): Uint8Array => {
      const key = lo * 1024 + hi;
      let h = memo.get(key);
      if (!h) {
        const n = hi - lo;
        const k = n === 1 ? 0 : 2 ** Math.floor(Math.log2(n - 1));
        h = n === 1 ? leaves[lo]! : nodeHash(MTH(lo, lo + k), MTH(lo + k, hi));
        memo.set(key, h);
      }
      return h;
    };
    const split = (n: number) => 2 ** Math.floor(Math.log2(n - 1));
    const PATH = (m: number, lo: number, hi: number): Uint8Array[] => {
      const n = hi - lo;
      if (n === 1) return [];
      const k = split(n);
      return m < k ? [...PATH(m, lo, lo + k), MTH(lo + k, hi)] : [...PATH(m - k, lo + k, hi), MTH(lo, lo + k)];
    };
    const SUBPROOF = (m: number, lo: number, hi: number, b: boolean): Uint8Array[] => {
      const n = hi - lo;
      if (m === n) return b ? [] : [MTH(lo, hi)];
      const k = split(n);
      return m <= k ? [...SUBPROOF(m, lo, lo + k, b), MTH(lo + k, hi)] : [...SUBPROOF(m - k, lo + k, hi, false), MTH(lo, lo + k)];
    };
    let n = 0;
    for (let size = 1; size <= 300; size++) {
      expect(toHex(rootOf(leaves, 0, size))).toBe(toHex(MTH(0, size)));
      for (let index = 0; index < size; index++, n++) {
        expect(hexList(inclusionProof(leaves, index, size))).toEqual(hexList(PATH(index, 0, size)));
      }
      for (let size1 = 1; size1 < size; size1++, n++) {
        expect(hexList(consistencyProof(leaves, size1, size))).toEqual(hexList(SUBPROOF(size1, 0, size, true)));
      }
    }
    expect(n).toBe((300 * 301) / 2 + (300 * 299) / 2);
  }, 120_000);

  test("random sizes up to 300", () => {
    const rnd = prng(20240601);
    for (let i = 0; i < 300; i++) {
      const size = 1 + Math.floor(rnd() * 300);
      checkInclusion(leaves, Math.floor(rnd() * size), size, i % 4 === 0);
      const size1 = 1 + Math.floor(rnd() * size);
      checkConsistency(leaves, size1, size, i % 4 === 0);
    }
  });

  test("proofs against an older tree size verify against that size's root only", () => {
    const p = inclusionProof(leaves, 5, 100);
    verifyInclusion(leaves[5]!, 5, 100, p, rootOf(leaves, 0, 100));
    expect(() => verifyInclusion(leaves[5]!, 5, 101, p, rootOf(leaves, 0, 101))).toThrow(ProofError);
    expect(() => verifyInclusion(leaves[5]!, 5, 100, p, rootOf(leaves, 0, 101))).toThrow(ProofError);
  });
});

test("measure: rootOf over 1,000,000 leaf hashes (printed, not asserted)", () => {
  const n = 1_000_000;
  const leaves: Uint8Array[] = new Array(n);
  const seed = new Uint8Array(8);
  const view = new DataView(seed.buffer);
  for (let i = 0; i < n; i++) {
    view.setUint32(0, i);
    leaves[i] = leafHash(seed);
  }
  const t0 = performance.now();
  const root = rootOf(leaves);
  const ms = performance.now() - t0;
  console.log(`rootOf(1,000,000 leaf hashes): ${ms.toFixed(0)} ms, root ${toHex(root)}`);
  expect(root.length).toBe(HASH_SIZE);
});

describe("MerkleTree (library class)", () => {
  test("same roots and proofs as the functions, and they verify", async () => {
    const { MerkleTree } = await import("../src/index.ts");
    const entries = Array.from({ length: 37 }, (_, i) => new Uint8Array(32).fill(i));
    const tree = new MerkleTree(entries);
    const leaves = entries.map((e) => leafHash(e));
    expect(tree.size).toBe(37);
    expect(toHex(tree.root())).toBe(toHex(rootOf(leaves)));
    for (const size of [1, 5, 16, 37]) {
      expect(toHex(tree.root(size))).toBe(toHex(rootOf(leaves.slice(0, size))));
      for (let i = 0; i < size; i++) verifyInclusion(leaves[i]!, i, size, tree.inclusionProof(i, size), tree.root(size));
      if (size < 37) verifyConsistency(size, 37, tree.consistencyProof(size), tree.root(size), tree.root());
    }
  });
});
