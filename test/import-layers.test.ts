// The direction of src/: each domain (a folder under src/) sits on a layer, and imports
// point only down or across. Wire formats are at the bottom, the CLI at the top. This test
// reads the import lines of every file under src/ (static imports, re-exports and dynamic
// import()s, types included: a type import upward ties the layers just the same) and fails
// on any import from a lower layer to a higher one, and on any cycle between domains.
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";

/** The layer order, written once: a domain may import its own layer and those before it. */
export const LAYERS: readonly (readonly string[])[] = [
  ["encoding", "fs", "runtime", "config"],
  ["crypto"],
  ["protocol"],
  ["identity", "tpm"],
  ["ledger"],
  ["chain"],
  ["log", "ingest", "intel"],
  ["consensus"],
  ["node"],
  ["mesh"],
  ["cli"],
];

const SRC = path.resolve(import.meta.dir, "..", "src");
/** Files directly in src/: the library's face, above every domain. */
const TOP = LAYERS.length;

export interface Edge {
  from: string;
  to: string;
  line: number;
}

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith(".ts") ? [p] : [];
  });
}

/** Every relative import of every file under `root`, as paths relative to it. */
export function importEdges(root: string): Edge[] {
  const edges: Edge[] = [];
  const spec = /(?:^|[^\w.])(?:import|export)\s[^;]*?\sfrom\s*["'](\.[^"']+)["']|(?:^|[^\w.])import\s*["'](\.[^"']+)["']|\bimport\(\s*["'](\.[^"']+)["']\s*\)/g;
  for (const file of sources(root)) {
    const text = fs.readFileSync(file, "utf8");
    for (const m of text.matchAll(spec)) {
      const target = path.resolve(path.dirname(file), m[1] ?? m[2] ?? m[3]!);
      const line = text.slice(0, m.index).split("\n").length;
      edges.push({ from: path.relative(root, file), to: path.relative(root, target), line });
    }
  }
  return edges;
}

export function domainOf(rel: string): string | null {
  if (rel.startsWith("..")) return null; // outside src/ (package.json, config/): no domain
  const parts = rel.split(path.sep);
  return parts.length === 1 ? "" : parts[0]!;
}

export function layerOf(domain: string): number | undefined {
  if (domain === "") return TOP;
  const i = LAYERS.findIndex((g) => g.includes(domain));
  return i < 0 ? undefined : i;
}

/** Imports from a lower layer to a higher one, and imports of or from a domain with no layer. */
export function upward(edges: Edge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const a = domainOf(e.from);
    const b = domainOf(e.to);
    if (a === null || b === null || a === b) continue;
    const la = layerOf(a);
    const lb = layerOf(b);
    if (la === undefined || lb === undefined) out.push(`${e.from}:${e.line} -> ${e.to}: domain "${la === undefined ? a : b}" has no layer in LAYERS`);
    else if (lb > la) out.push(`${e.from}:${e.line} -> ${e.to}: layer ${la} (${a}) imports layer ${lb} (${b})`);
  }
  return out;
}

/** Cycles in the graph of domains (one import between two files makes an arrow). */
export function domainCycles(edges: Edge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    const a = domainOf(e.from);
    const b = domainOf(e.to);
    if (a === null || b === null || a === b || a === "" || b === "") continue;
    if (!next.has(a)) next.set(a, new Set());
    next.get(a)!.add(b);
  }
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (d: string) => {
    state.set(d, "open");
    stack.push(d);
    for (const n of next.get(d) ?? []) {
      if (state.get(n) === "open") cycles.push([...stack.slice(stack.indexOf(n)), n]);
      else if (!state.has(n)) visit(n);
    }
    stack.pop();
    state.set(d, "done");
  };
  for (const d of [...next.keys()].sort()) if (!state.has(d)) visit(d);
  return cycles;
}

describe("the import direction of src/", () => {
  const edges = importEdges(SRC);

  test("the check reads the imports (and would see one running up)", () => {
    expect(edges.length).toBeGreaterThan(200);
    const planted: Edge[] = [{ from: "protocol/genesis.ts", to: "mesh/daemon.ts", line: 1 }];
    expect(upward(planted)).toEqual(["protocol/genesis.ts:1 -> mesh/daemon.ts: layer 2 (protocol) imports layer 9 (mesh)"]);
    expect(domainCycles([...planted, { from: "mesh/daemon.ts", to: "protocol/genesis.ts", line: 1 }])).toEqual([["mesh", "protocol", "mesh"]]);
  });

  test("every domain under src/ has a layer", () => {
    const domains = fs.readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(domains.filter((d) => layerOf(d) === undefined)).toEqual([]);
  });

  test("no import runs from a lower layer to a higher one", () => {
    expect(upward(edges)).toEqual([]);
  });

  test("no cycle between domains", () => {
    expect(domainCycles(edges)).toEqual([]);
  });

  test("protocol/ imports only encoding/ and crypto/ (and itself)", () => {
    const out = edges.filter((e) => domainOf(e.from) === "protocol" && !["protocol", "encoding", "crypto"].includes(domainOf(e.to) ?? "?"));
    expect(out.map((e) => `${e.from}:${e.line} -> ${e.to}`)).toEqual([]);
  });
});
