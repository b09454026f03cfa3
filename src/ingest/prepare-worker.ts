// Ingest's second thread: splits, parses, maps, anonymises, canonicalises and hashes
// lines (and matches them against intel.rules, on the clear record) while the main thread signs and commits the previous batch. Results come back
// in input order, one message per chunk. Listed as a build entrypoint so it is inside
// the compiled binary.
import { createIpAnonymizer } from "./anonymize.ts";
import { LineSplitter } from "./lines.ts";
import { type Anonymizer, type LineResult, prepareLine } from "./prepare.ts";
import type { InputFormat } from "./records.ts";
import type { CompiledRules } from "../intel/rules.ts";

export type ToWorker =
  | { kind: "init"; format: InputFormat; maxLineBytes: number; anonymizeSecret: Uint8Array | null; rules: CompiledRules | null }
  | { kind: "chunk"; source: string; bytes: Uint8Array }
  | { kind: "end"; source: string };

export type FromWorker = { kind: "results"; results: LineResult[] } | { kind: "ended"; source: string; results: LineResult[] };

declare const self: Worker;

let format: InputFormat = "auto";
let maxLineBytes = 1 << 20;
let anonymize: Anonymizer | null = null;
let rules: CompiledRules | null = null;
const splitters = new Map<string, LineSplitter>();

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  if (msg.kind === "init") {
    format = msg.format;
    maxLineBytes = msg.maxLineBytes;
    anonymize = msg.anonymizeSecret ? createIpAnonymizer(msg.anonymizeSecret) : null;
    rules = msg.rules;
    return;
  }
  let splitter = splitters.get(msg.source);
  if (!splitter) splitters.set(msg.source, (splitter = new LineSplitter(maxLineBytes)));
  const results: LineResult[] = [];
  const onLine = (l: { no: number; text?: string; error?: string }) =>
    results.push(prepareLine(msg.source, l.no, l.text, l.error, format, anonymize, rules));
  if (msg.kind === "chunk") {
    splitter.push(msg.bytes, onLine);
    self.postMessage({ kind: "results", results } satisfies FromWorker);
  } else {
    splitter.end(onLine);
    splitters.delete(msg.source);
    self.postMessage({ kind: "ended", source: msg.source, results } satisfies FromWorker);
  }
};
