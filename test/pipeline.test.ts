// IngestPipeline (src/ingest/pipeline.ts) on a real node: input-order results, group commit,
// the batchMaxMs timer, stats, and what a fatal storage error leaves acknowledged.
import { afterAll, describe, expect, test } from "bun:test";
import type { Microblock } from "../src/protocol/microblock.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { verifyLedger } from "../src/ledger/verify.ts";
import { type IngestOptions, IngestPipeline } from "../src/ingest/pipeline.ts";
import type { DSMNode, PreparedEvent } from "../src/node/node.ts";
import { chunkStream, cleanupTempDirs, closeQuietly, makeNode } from "./helpers/node.ts";
import { parseIntelRules } from "../src/config/intel-rules.ts";
import { compileRules, RuleEngine } from "../src/intel/rules.ts";
import { ATTACKER, C2_ALERTS, ndjsonLines } from "./helpers/intel-fixtures.ts";

afterAll(cleanupTempDirs);

type Result = { source: string; line: number; id?: string; seq?: number; error?: string };

function pipelineFor(node: DSMNode, opts: Partial<IngestOptions> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const p = new IngestPipeline(node, {
    format: "json",
    maxLineBytes: 1024,
    batchMaxEvents: 1000,
    batchMaxMs: 50,
    json: true,
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    ...opts,
  });
  const results = (): Result[] =>
    out
      .join("")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Result);
  return { p, out, err, results };
}

/** Records every node.append call (the batch sizes) and passes it through unchanged. */
function countAppends(node: DSMNode): number[] {
  const sizes: number[] = [];
  const original = node.append.bind(node);
  node.append = (events: PreparedEvent[]) => {
    sizes.push(events.length);
    return original(events);
  };
  return sizes;
}

const jsonLine = (i: number) => JSON.stringify({ event_type: "alert", n: i, src_ip: "192.0.2.1" });
const enc = new TextEncoder();

async function withNode<T>(fn: (node: DSMNode, dataDir: string) => Promise<T>): Promise<T> {
  const { node, dataDir } = await makeNode();
  try {
    return await fn(node, dataDir);
  } finally {
    closeQuietly(node);
  }
}

describe("results", () => {
  test("one JSON result per line, in input order: ids for good lines, errors for bad ones, interleaved", async () => {
    await withNode(async (node) => {
      const { p, results, err } = pipelineFor(node, { batchMaxEvents: 2 });
      const input = [
        enc.encode(jsonLine(1) + "\n"), // 1 good
        enc.encode("{not json\n"), // 2 bad
        enc.encode(jsonLine(3) + "\n"), // 3 good
        enc.encode("[1,2]\n"), // 4 bad: not an object
        enc.encode("\n"), // 5 empty: skipped
        enc.encode(jsonLine(6) + "\n"), // 6 good
        new Uint8Array([0x7b, 0xff, 0x7d, 0x0a]), // 7 bad: invalid UTF-8
        enc.encode("x".repeat(2000) + "\n"), // 8 bad: too long
        enc.encode(jsonLine(9) + "\n" + jsonLine(10) + "\n" + "null\n"), // 9, 10 good, 11 bad
        enc.encode(jsonLine(12)), // 12 good, no final newline
      ];
      // cut the whole input into 5-byte chunks so lines and batches straddle reads
      const all = new Uint8Array(input.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of input) all.set(c, (o += c.length) - c.length);
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < all.length; i += 5) chunks.push(all.subarray(i, i + 5));
      await p.consume(chunkStream(chunks), "eve.json");
      await p.finish();

      const r = results();
      expect(r.map((x) => x.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      expect(r.find((x) => x.line === 5)).toMatchObject({ skipped: "empty line" });
      expect(r.every((x) => x.source === "eve.json")).toBe(true);
      const good = r.filter((x) => x.id !== undefined);
      expect(good.map((x) => x.line)).toEqual([1, 3, 6, 9, 10, 12]);
      expect(good.map((x) => x.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(r.filter((x) => x.error !== undefined).map((x) => x.line)).toEqual([2, 4, 7, 8, 11]);
      expect(r.find((x) => x.line === 2)!.error).toMatch(/malformed JSON/);
      expect(r.find((x) => x.line === 4)!.error).toMatch(/expected a JSON object, got array/);
      expect(r.find((x) => x.line === 7)!.error).toBe("not valid UTF-8");
      expect(r.find((x) => x.line === 8)!.error).toMatch(/line too long/);
      // each reported id is stored, with the payload of that line
      for (const g of good) {
        const mb = node.ledger.byId(g.id!)!;
        expect(mb.seq).toBe(g.seq!);
        const payload = JSON.parse(node.ledger.payload(mb.payload_hash)!);
        expect(payload.original.n).toBe(g.line);
        expect(mb.event_type).toBe("json.alert");
      }
      expect(node.ledger.counts().microblocks).toBe(6);
      // stderr: one line per rejected or empty line, naming source and line
      expect(err.filter((e) => /^dsm ingest: eve\.json:\d+: /.test(e)).length).toBe(6);
      expect(err.some((e) => e === "dsm ingest: eve.json:5: empty line skipped")).toBe(true);
    });
  });

  test("without json: nothing on stdout", async () => {
    await withNode(async (node) => {
      const { p, out } = pipelineFor(node, { json: false });
      await p.consume(chunkStream([jsonLine(1) + "\nbad\n"]), "stdin");
      const s = await p.finish();
      expect(out).toEqual([]);
      expect(s).toMatchObject({ lines: 2, stored: 1, rejected: 1 });
    });
  });

  test("an error line arriving while an earlier batch is still committing is reported after it", async () => {
    await withNode(async (node) => {
      // A slow commit, as when the signing key is re-certified by a TPM (20-100 ms per signature).
      const original = node.append.bind(node);
      node.append = async (events: PreparedEvent[]) => {
        await Bun.sleep(100);
        return original(events);
      };
      const { p, results } = pipelineFor(node, { batchMaxMs: 10 });
      let step = 0;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          step += 1;
          if (step === 1) c.enqueue(enc.encode(jsonLine(1) + "\n"));
          else if (step === 2) {
            await Bun.sleep(40); // the batch timer has fired; its commit is in flight
            c.enqueue(enc.encode("not json\n"));
          } else c.close();
        },
      });
      await p.consume(stream, "s");
      await p.finish();
      expect(results().map((x) => x.line)).toEqual([1, 2]);
    });
  });
});

describe("group commit", () => {
  test("batchMaxEvents=10, 35 lines one per read: 4 transactions of 10, 10, 10, 5", async () => {
    await withNode(async (node) => {
      const sizes = countAppends(node);
      const { p, results } = pipelineFor(node, { batchMaxEvents: 10, batchMaxMs: 60_000 });
      await p.consume(chunkStream(Array.from({ length: 35 }, (_, i) => jsonLine(i + 1) + "\n")), "s");
      // the last 5 are still pending: not stored, not acknowledged
      expect(sizes).toEqual([10, 10, 10]);
      expect(node.ledger.counts().microblocks).toBe(30);
      expect(results().length).toBe(30);
      expect(p.stats.stored).toBe(30);
      await p.finish();
      expect(sizes).toEqual([10, 10, 10, 5]);
      expect(results().length).toBe(35);
      // one transaction per batch: one timestamp per batch (docs/PROTOCOL.md), contiguous seqs
      const mbs = node.ledger.list({});
      expect(mbs.map((m) => m.seq)).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
      for (const [from, to] of [[0, 10], [10, 20], [20, 30], [30, 35]] as const) {
        expect(new Set(mbs.slice(from, to).map((m) => m.timestamp)).size).toBe(1);
      }
    });
  });

  test("batchMaxEvents=10, 35 lines in one read: no transaction holds more than 10 events", async () => {
    await withNode(async (node) => {
      const sizes = countAppends(node);
      const { p, results } = pipelineFor(node, { batchMaxEvents: 10, batchMaxMs: 60_000 });
      const text = Array.from({ length: 35 }, (_, i) => jsonLine(i + 1) + "\n").join("");
      await p.consume(chunkStream([text]), "s");
      await p.finish();
      expect(results().map((r) => r.seq)).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
      expect(sizes).toEqual([10, 10, 10, 5]);
    });
  });

  test("batchMaxMs: the first line is committed, visibly to another connection, before the second arrives", async () => {
    await withNode(async (node) => {
      const sizes = countAppends(node);
      const { p, results } = pipelineFor(node, { batchMaxEvents: 1000, batchMaxMs: 20 });
      let secondAt = 0;
      let step = 0;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          step += 1;
          if (step === 1) c.enqueue(enc.encode(jsonLine(1) + "\n"));
          else if (step === 2) {
            await Bun.sleep(300);
            secondAt = performance.now();
            c.enqueue(enc.encode(jsonLine(2) + "\n"));
          } else c.close();
        },
      });
      const t0 = performance.now();
      const consuming = p.consume(stream, "slow");
      await Bun.sleep(150);
      // A second connection (as `dsm log` in another process would use) sees line 1 already.
      const reader = Ledger.open(node.ledger.path, { readonly: true });
      try {
        expect(reader.counts().microblocks).toBe(1);
        expect(results().map((r) => r.line)).toEqual([1]);
        expect(secondAt).toBe(0);
        expect(p.stats.stored).toBe(1);
      } finally {
        reader.close();
      }
      await consuming;
      await p.finish();
      expect(secondAt - t0).toBeGreaterThanOrEqual(250);
      expect(sizes).toEqual([1, 1]);
      expect(results().map((r) => r.seq)).toEqual([1, 2]);
    });
  });
});

describe("stats", () => {
  test("lines, stored, rejected, empty, firstSeq and lastSeq", async () => {
    await withNode(async (node) => {
      await node.createMicroblock({ eventType: "json", payload: { before: true } }); // seq 1 exists already
      const { p } = pipelineFor(node, { batchMaxEvents: 3 });
      expect(p.stats).toEqual({ lines: 0, stored: 0, rejected: 0, empty: 0, advisories: 0, firstSeq: null, lastSeq: null });
      const text = [jsonLine(1), "", "oops", jsonLine(2), "   ", jsonLine(3), "42", jsonLine(4), jsonLine(5), ""].join("\n");
      await p.consume(chunkStream([text]), "a");
      await p.consume(chunkStream(["\n", jsonLine(6) + "\n"]), "b");
      const s = await p.finish();
      // a: 9 lines (2 empty, 2 bad: "oops" and "42"); b: an empty line and one good line
      expect(s).toEqual({ lines: 11, stored: 6, rejected: 2, empty: 3, advisories: 0, firstSeq: 2, lastSeq: 7 });
      expect(node.ledger.head(node.mesh, node.nodeId)!.seq).toBe(7);
    });
  });

  test("a stream of only bad and empty lines stores nothing", async () => {
    await withNode(async (node) => {
      const sizes = countAppends(node);
      const { p, results } = pipelineFor(node);
      await p.consume(chunkStream(["bad\n\n[]\n"]), "x");
      const s = await p.finish();
      expect(s).toEqual({ lines: 3, stored: 0, rejected: 2, empty: 1, advisories: 0, firstSeq: null, lastSeq: null });
      expect(sizes.filter((n) => n > 0)).toEqual([]);
      expect(results().map((r) => r.line)).toEqual([1, 2, 3]);
      expect(node.ledger.counts().microblocks).toBe(0);
    });
  });
});

describe("fatal errors", () => {
  test("the ledger closing mid-stream surfaces from consume and finish; nothing after the last acknowledged line counts as stored", async () => {
    await withNode(async (node) => {
      const { p, results } = pipelineFor(node, { batchMaxEvents: 5, batchMaxMs: 60_000 });
      let step = 0;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          step += 1;
          if (step === 1) c.enqueue(enc.encode(Array.from({ length: 5 }, (_, i) => jsonLine(i + 1) + "\n").join("")));
          else if (step === 2) {
            // The stream asks for the next chunk early; wait until the first batch is acknowledged.
            for (let i = 0; i < 400 && results().length < 5; i++) await Bun.sleep(5);
            node.ledger.close(); // storage goes away between two reads
            c.enqueue(enc.encode(Array.from({ length: 5 }, (_, i) => jsonLine(i + 6) + "\n").join("")));
          } else if (step === 3) c.enqueue(enc.encode(jsonLine(11) + "\nbad\n"));
          else c.close();
        },
      });
      let consumeError: unknown;
      await p.consume(stream, "s").catch((e) => (consumeError = e));
      expect(consumeError).toBeInstanceOf(Error);
      expect(String(consumeError)).toMatch(/closed/i);
      expect(p.fatal).toBe(consumeError as Error);
      await expect(p.finish()).rejects.toBe(consumeError);

      const r = results();
      expect(r.map((x) => x.line)).toEqual([1, 2, 3, 4, 5]);
      expect(r.every((x) => x.id !== undefined)).toBe(true);
      expect(p.stats.stored).toBe(5);
      expect(p.stats.lastSeq).toBe(5);

      // what the file holds is exactly what was acknowledged
      const l = Ledger.open(node.ledger.path);
      try {
        const mbs = l.list({});
        expect(mbs.map((m: Microblock) => m.id)).toEqual(r.map((x) => x.id!));
        expect((await verifyLedger(l, { ownNodeId: node.nodeId })).problems).toEqual([]);
      } finally {
        l.close();
      }
    });
  });
});

describe("intel.rules (issue 15)", () => {
  const rules = parseIntelRules([{ name: "c2", match: { event_type: "suricata.alert", severity: [1] }, indicator: "alert.source.ip", category: "c2", ttl: "4h" }]);

  for (const worker of [false, true]) {
    test(`${worker ? "on the worker" : "on one thread"}: the advisory is appended after the batch holding its evidence, and counted`, async () => {
      await withNode(async (node) => {
        const sizes = countAppends(node);
        const { p, results } = pipelineFor(node, {
          format: "suricata",
          maxLineBytes: 1 << 20,
          worker,
          intel: { rules: compileRules(rules, node.config.intel.local_networks), engine: new RuleEngine(rules), now: () => Date.UTC(2026, 5, 26, 16) },
        });
        await p.consume(chunkStream([enc.encode(ndjsonLines(C2_ALERTS))]), "eve");
        const s = await p.finish();
        expect([s.stored, s.advisories]).toEqual([3, 1]);
        // One batch of the three lines, then one of the advisory.
        expect(sizes).toEqual([3, 1]);
        const out = results() as any[];
        expect(out.map((o) => ("advisory" in o ? "advisory" : o.line))).toEqual([1, 2, 3, "advisory"]);
        const a = out[3].advisory;
        expect(a).toMatchObject({ seq: 4, rule: "c2", indicators: [{ scope: "ip", value: ATTACKER }], evidence: [out[0].id] });
        expect(node.ledger.byId(a.id)!.event_type).toBe("threat.advisory");
      });
    });
  }
});
