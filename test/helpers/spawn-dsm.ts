// Small helpers for the end-to-end tests that drive the compiled binary dist/dsm
// (e2e-durability, e2e-tamper, e2e-concurrency). Each test owns its temp data dirs.
import { Database } from "bun:sqlite";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Microblock } from "../../src/protocol/microblock.ts";
export { prng } from "./prng.ts";

export const REPO = path.resolve(import.meta.dir, "../..");
export const DSM = path.join(REPO, "dist", "dsm");

/** Fails loudly and early when the binary is missing. */
export function requireBinary(): void {
  if (!fs.existsSync(DSM)) throw new Error(`${DSM} is missing: run bun run build first`);
}

/** The environment for dsm: ours, minus any DSM_* the developer's shell may carry. */
export function dsmEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DSM_")) env[k] = v;
  return { ...env, ...extra };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs dist/dsm to completion. stdout is a pipe read concurrently, unless stdoutFile is
 * given (used for large outputs: see the slow-reader test in e2e-durability).
 */
export async function runDsm(
  args: string[],
  opts: { stdin?: string | Uint8Array; env?: Record<string, string>; stdoutFile?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const proc = Bun.spawn([DSM, ...args], {
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: opts.stdoutFile ? Bun.file(opts.stdoutFile) : "pipe",
    stderr: "pipe",
    env: dsmEnv(opts.env),
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([
    opts.stdoutFile ? Promise.resolve("") : new Response(proc.stdout as ReadableStream).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout: opts.stdoutFile ? fs.readFileSync(opts.stdoutFile, "utf8") : stdout, stderr };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `dsm-e2e-${prefix}-`));
}

export function removeDir(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

export interface InitInfo {
  node_id: string;
  mesh: string;
  data_dir: string;
}

/** `dsm init --data-dir DIR --json`. */
export async function initNode(dir: string): Promise<InitInfo> {
  const r = await runDsm(["init", "--data-dir", dir, "--json"]);
  if (r.code !== 0) throw new Error(`dsm init failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as InitInfo;
}

export function ledgerFile(dataDir: string): string {
  return path.join(dataDir, "ledger.sqlite");
}

/** One line of `dsm log --json`: a microblock as stored and sent. */
export type LogRow = Microblock;

/**
 * Every microblock, oldest first, via `dsm log --json --limit 0 --oldest-first`. The output
 * goes to a regular file: on a pipe, dsm currently loses output when the reader is slower
 * than dsm exits (pinned by its own test), and these checks are about the chain, not stdout.
 */
export async function logAll(dataDir: string, scratch: string): Promise<LogRow[]> {
  const out = path.join(scratch, `log-${process.hrtime.bigint()}.ndjson`);
  const r = await runDsm(["log", "--json", "--limit", "0", "--oldest-first", "--data-dir", dataDir], { stdoutFile: out });
  fs.rmSync(out, { force: true });
  if (r.code !== 0) throw new Error(`dsm log failed (${r.code}): ${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as LogRow);
}

/** Asserts-free check of one node's chain: returns the first problem, or null when gapless and linked. */
export function chainProblem(rows: LogRow[]): string | null {
  let prev = "0".repeat(64);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.seq !== i + 1) return `row ${i}: seq ${r.seq}, expected ${i + 1}`;
    if (r.prev !== prev) return `seq ${r.seq}: prev ${r.prev.slice(0, 16)}… does not link to ${prev.slice(0, 16)}…`;
    if (r.node_id !== rows[0]!.node_id) return `seq ${r.seq}: another node_id`;
    prev = r.id;
  }
  return null;
}

/** Opens the ledger read-only with bun:sqlite for inspection. */
export function inspect<T>(dataDir: string, fn: (db: Database) => T): T {
  const db = new Database(ledgerFile(dataDir), { readonly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** Checkpoints the WAL into the main file (TRUNCATE) so the .sqlite file alone is the ledger. */
export function checkpoint(file: string): void {
  const db = new Database(file);
  try {
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
}


/** A Suricata EVE alert line whose content is unique to (tag, i); the tag is in alert.signature. */
export function suricataLine(tag: string, i: number): string {
  return JSON.stringify({
    timestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString().replace("Z", "000+0000"),
    flow_id: 1_000_000_000 + i,
    in_iface: "eth0",
    event_type: "alert",
    src_ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    src_port: 1024 + (i % 60000),
    dest_ip: "192.0.2.10",
    dest_port: 443,
    proto: "TCP",
    alert: {
      action: "allowed",
      gid: 1,
      signature_id: 2_000_000 + (i % 1000),
      rev: 1,
      signature: `DSM-E2E ${tag} ${i}`,
      category: "Potentially Bad Traffic",
      severity: 1 + (i % 3),
    },
  });
}

/** The tag and index suricataLine put in a stored payload's alert.signature, or null. */
export function parseTag(signature: unknown): { tag: string; i: number } | null {
  if (typeof signature !== "string") return null;
  const m = /^DSM-E2E (\S+) (\d+)$/.exec(signature);
  return m ? { tag: m[1]!, i: Number(m[2]) } : null;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function hexToBlob(hex: string): Uint8Array {
  return Buffer.from(hex, "hex");
}
