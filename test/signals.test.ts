// SIGTERM and SIGINT for the commands that work through an input (src/cli/signals.ts),
// with the compiled binary: dsm ingest from a file, from stdin redirected from a file and
// from a pipe, dsm import and dsm verify stop within a second, exit 143 or 130 (never 0),
// and keep every acknowledged line. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { cleanEnv, DSM, requireBinary, runDsm } from "./helpers/e2e.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

const LINES = 150_000;
let root: string;
let env: Record<string, string>;
let input: string;

beforeAll(() => {
  requireBinary();
  root = tempDir("dsm-signals-");
  env = cleanEnv(root, { DSM_QUIET: "1" });
  input = path.join(root, "events.ndjson");
  const fd = fs.openSync(input, "w");
  for (let i = 0; i < LINES; i += 10_000) {
    const lines: string[] = [];
    for (let j = i; j < Math.min(LINES, i + 10_000); j++) lines.push(JSON.stringify({ event_type: "alert", src_ip: "10.0.0.1", n: j }));
    fs.writeSync(fd, lines.join("\n") + "\n");
  }
  fs.closeSync(fd);
});

afterAll(() => cleanupTempDirs());

async function init(name: string, extra: string[] = []): Promise<string> {
  const dir = path.join(root, name);
  const r = await runDsm(["init", "--data-dir", dir, ...extra], env);
  if (r.code !== 0) throw new Error(r.stderr);
  return dir;
}

async function microblocks(dir: string): Promise<number> {
  const r = await runDsm(["status", "--data-dir", dir, "--json"], env);
  return JSON.parse(r.stdout).ledger.microblocks as number;
}

interface Stopped {
  code: number;
  ms: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs dsm, waits until it has printed `readyAfter` stdout lines (so it is well into its
 * input) or `delayMs`, sends the signal(s) and measures the time to exit.
 */
async function interrupt(args: string[], opts: { stdin?: "file" | "pipe"; signal: "SIGTERM" | "SIGINT"; delayMs: number; twice?: boolean }): Promise<Stopped> {
  const proc = Bun.spawn([DSM, ...args], {
    env,
    stdin: opts.stdin === "file" ? Bun.file(input) : opts.stdin === "pipe" ? "pipe" : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (opts.stdin === "pipe") {
    // A pipe that always has more: the writer outruns the reader.
    const sink = proc.stdin as import("bun").FileSink;
    void (async () => {
      const text = fs.readFileSync(input);
      try {
        for (let off = 0; off < text.length; off += 1 << 16) {
          sink.write(text.subarray(off, off + (1 << 16)));
          await sink.flush();
        }
        sink.end();
      } catch {
        // the reader went away: that is the point
      }
    })();
  }
  const out = new Response(proc.stdout).text();
  const err = new Response(proc.stderr).text();
  await Bun.sleep(opts.delayMs);
  expect(proc.exitCode).toBeNull(); // still working: the signal stops it mid-input
  const t0 = performance.now();
  proc.kill(opts.signal);
  if (opts.twice) proc.kill(opts.signal);
  const killer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const code = await proc.exited;
  const ms = performance.now() - t0;
  clearTimeout(killer);
  return { code, ms, stdout: await out, stderr: await err };
}

/** Every acknowledged line is in the ledger, and the ledger verifies. */
async function expectAcknowledgedKept(dir: string, stdout: string): Promise<number> {
  const acks = stdout.split("\n").filter((l) => l.includes('"id"')).length;
  expect(acks).toBeGreaterThan(0);
  expect(acks).toBeLessThan(LINES);
  expect(await microblocks(dir)).toBe(acks);
  const v = await runDsm(["verify", "--data-dir", dir], env, { timeoutMs: 60_000 });
  expect(v.code).toBe(0);
  return acks;
}

describe("dsm ingest stops within a second and says it did not finish", () => {
  for (const [how, stdin, signal, expected] of [
    ["a file argument, SIGTERM", undefined, "SIGTERM", 143],
    ["a file argument, SIGINT", undefined, "SIGINT", 130],
    ["stdin redirected from a file, SIGTERM", "file", "SIGTERM", 143],
    ["stdin from a pipe that never runs dry, SIGINT", "pipe", "SIGINT", 130],
  ] as const) {
    test(how, async () => {
      const dir = await init(`ingest-${how.replace(/\W+/g, "-")}`);
      const args = ["ingest", "--data-dir", dir, "--format", "json", "--json", ...(stdin === undefined ? [input] : [])];
      const r = await interrupt(args, { stdin, signal, delayMs: 1500 });
      expect(r.code).toBe(expected);
      expect(r.ms).toBeLessThan(1000);
      expect(r.stderr).toContain(`(stopped by ${signal}: the rest of the input was not read`);
      await expectAcknowledgedKept(dir, r.stdout);
    }, 60_000);
  }

  test("a second signal exits at once, still losing nothing acknowledged", async () => {
    const dir = await init("ingest-twice");
    const r = await interrupt(["ingest", "--data-dir", dir, "--format", "json", "--json", input], { signal: "SIGINT", delayMs: 1500, twice: true });
    expect(r.code).toBe(130);
    expect(r.ms).toBeLessThan(1000);
    // Lines acknowledged before the exit are stored; a batch not yet committed was never acknowledged.
    const acks = r.stdout.split("\n").filter((l) => l.includes('"id"')).length;
    expect(await microblocks(dir)).toBeGreaterThanOrEqual(acks);
  }, 60_000);
});

describe("dsm import and dsm verify", () => {
  let source: string;
  let exportFile: string;

  beforeAll(async () => {
    source = await init("source");
    const ing = await runDsm(["ingest", "--data-dir", source, "--format", "json", input], env, { timeoutMs: 120_000 });
    expect(ing.code).toBe(0);
    exportFile = path.join(root, "source.ndjson");
    const ex = await runDsm(["export", "--data-dir", source, "-o", exportFile], env, { timeoutMs: 60_000 });
    expect(ex.code).toBe(0);
  }, 180_000);

  test("dsm import FILE, SIGTERM: 143 within a second, what it stored verifies", async () => {
    const dir = await init("importer", ["--genesis", path.join(source, "genesis.json")]);
    const r = await interrupt(["import", "--data-dir", dir, "--json", exportFile], { signal: "SIGTERM", delayMs: 1500 });
    expect(r.code).toBe(143);
    expect(r.ms).toBeLessThan(1000);
    const summary = JSON.parse(r.stdout);
    expect(summary.ok).toBe(false);
    expect(summary.stopped_by).toBe("SIGTERM");
    expect(summary.stored).toBeGreaterThan(0);
    expect(summary.stored).toBeLessThan(LINES);
    expect(await microblocks(dir)).toBe(summary.stored);
    expect((await runDsm(["verify", "--data-dir", dir], env, { timeoutMs: 60_000 })).code).toBe(0);
  }, 60_000);

  test("dsm verify, SIGINT: 130 within a second, INCOMPLETE, never OK", async () => {
    const r = await interrupt(["verify", "--data-dir", source, "--json"], { signal: "SIGINT", delayMs: 700 });
    expect(r.code).toBe(130);
    expect(r.ms).toBeLessThan(1000);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ ok: false, complete: false, problem_count: 0 });
    expect(report.microblocks).toBeLessThan(LINES);
    expect(r.stderr).toContain("stopped by SIGINT after");
    const text = await interrupt(["verify", "--data-dir", source], { signal: "SIGTERM", delayMs: 700 });
    expect(text.code).toBe(143);
    expect(text.stdout).toStartWith("INCOMPLETE (stopped by SIGTERM)");
  }, 60_000);
});
