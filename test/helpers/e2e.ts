// Shared helper for end-to-end tests: they drive the real compiled binary dist/dsm
// through real pipes, each against a fresh temporary data directory.
import { expect } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Subprocess } from "bun";
import { envWithoutDsm } from "../../src/runtime/env.ts";

/** Absolute path of the compiled binary under test. */
export const DSM = fileURLToPath(new URL("../../dist/dsm", import.meta.url));

/** Throws a clear error when the binary has not been built. */
export function requireBinary(): void {
  if (!existsSync(DSM)) throw new Error(`${DSM} is missing: run bun run build first`);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Non-empty stderr lines. */
  errLines: string[];
  /** Non-empty stdout lines. */
  outLines: string[];
}

export type Stdin = string | Uint8Array | Blob | ReadableStream<Uint8Array>;

export interface RunOptions {
  stdin?: Stdin;
  /** Extra environment; undefined values remove a variable. */
  env?: Record<string, string | undefined>;
  /** Kill the process after this long (default 20 s) and fail. */
  timeoutMs?: number;
}

/**
 * The environment every dsm process gets: the caller's, minus every DSM_* variable
 * (so the developer's own DSM_DATA_DIR or privacy override cannot leak in), with
 * HOME pointed at `home` so a test can never touch a real ~/.dsm.
 */
export function cleanEnv(home: string, extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env = envWithoutDsm({ HOME: home });
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function toStdin(stdin: Stdin | undefined): Blob | ReadableStream<Uint8Array> | "ignore" {
  if (stdin === undefined) return "ignore";
  if (typeof stdin === "string" || stdin instanceof Uint8Array) return new Blob([stdin]);
  return stdin;
}

/** Runs dsm to completion and collects its output. */
export async function runDsm(args: string[], env: Record<string, string>, opts: RunOptions = {}): Promise<RunResult> {
  requireBinary();
  const proc = Bun.spawn([DSM, ...args], {
    stdin: toStdin(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...env, ...definedOnly(opts.env) },
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, opts.timeoutMs ?? 20_000);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (timedOut) throw new Error(`dsm ${args.join(" ")} timed out; stderr: ${stderr}`);
    return { code, stdout, stderr, errLines: nonEmptyLines(stderr), outLines: nonEmptyLines(stdout) };
  } finally {
    clearTimeout(timer);
  }
}

function definedOnly(env: Record<string, string | undefined> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env ?? {})) if (v !== undefined) out[k] = v;
  return out;
}

export function nonEmptyLines(text: string): string[] {
  return text.split("\n").filter((l) => l.trim() !== "");
}

/** Parses NDJSON stdout. */
export function ndjson<T = Record<string, unknown>>(text: string): T[] {
  return nonEmptyLines(text).map((l) => JSON.parse(l) as T);
}

/** A temporary directory holding one node's data dir, removed by cleanup(). */
export class TempNode {
  readonly root: string;
  readonly dataDir: string;
  readonly env: Record<string, string>;

  constructor(extraEnv: Record<string, string | undefined> = {}) {
    this.root = mkdtempSync(join(tmpdir(), "dsm-e2e-"));
    // A subdirectory that dsm init creates itself, so its mode is dsm's doing.
    this.dataDir = join(this.root, "node");
    this.env = cleanEnv(this.root, { DSM_DATA_DIR: this.dataDir, ...extraEnv });
  }

  /** Runs dsm with DSM_DATA_DIR set to this node's data dir. */
  run(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return runDsm(args, this.env, opts);
  }

  /** Runs dsm and fails unless it exits 0; returns the result. */
  async ok(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const r = await this.run(args, opts);
    if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  }

  /** Spawns dsm without waiting, for streaming tests. The caller owns the process. */
  spawn(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Subprocess<"pipe", "pipe", "pipe"> {
    requireBinary();
    return Bun.spawn([DSM, ...args], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...this.env, ...definedOnly(opts.env) },
    });
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A fresh temp node, initialised with `dsm init` unless init is false. */
export async function makeNode(opts: { init?: boolean; env?: Record<string, string | undefined> } = {}): Promise<TempNode> {
  const node = new TempNode(opts.env);
  if (opts.init !== false) {
    try {
      await node.ok(["init"]);
    } catch (e) {
      node.cleanup();
      throw e;
    }
  }
  return node;
}

/**
 * Runs fn with a fresh initialised node and always removes the node afterwards.
 * Processes fn spawned must be finished by then.
 */
export async function withTempNode<T>(
  fn: (node: TempNode) => Promise<T>,
  opts: { init?: boolean; env?: Record<string, string | undefined> } = {},
): Promise<T> {
  const node = await makeNode(opts);
  try {
    return await fn(node);
  } finally {
    node.cleanup();
  }
}

/** One clear line on stderr from the named command, exit 1. */
export function expectOneLineError(r: RunResult, command: string, message: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.errLines).toHaveLength(1);
  expect(r.errLines[0]).toStartWith(`dsm ${command}: `);
  expect(r.errLines[0]).toMatch(message);
}

/** What `dsm show REF --json` prints. */
export type Shown = { microblock: { id: string; seq: number; event_type: string }; payload: any; key_certificate: any };

/** `dsm show REF --json`, parsed (fails unless it exits 0). */
export async function show(node: TempNode, ref: string): Promise<Shown> {
  const r = await node.ok(["show", ref, "--json"]);
  return JSON.parse(r.stdout) as Shown;
}
