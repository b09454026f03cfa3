// What every subcommand shares: the common flags, config resolution, output, and the
// rule that a failure is one line on stderr and a documented exit code.
import * as fs from "node:fs";
import { pemCertificates } from "../crypto/x509.ts";
import { parseJson } from "../encoding/json.ts";
import * as os from "node:os";
import type { ArgsDef, CommandDef } from "citty";
import { type DsmConfig, resolveConfig } from "../config/config.ts";
import { DSMNode } from "../node/node.ts";

export const EXIT = {
  ok: 0,
  error: 1,
  /** dsm verify found a problem: the ledger was altered or is inconsistent. */
  verifyFailed: 2,
  /** dsm ingest stored every good line but rejected some. */
  partial: 3,
  /** dsm checkpoint had nothing new to checkpoint, or the epoch's checkpoint already existed. */
  nothingNew: 4,
} as const;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.error) {
    super(message);
  }
}

export const commonArgs = {
  config: { type: "string", description: "Config file (default: $DSM_CONFIG, else <data-dir>/dsm.yaml, else /etc/dsm/dsm.yaml, else built-in defaults)", valueHint: "FILE" },
  "data-dir": { type: "string", description: "Node data directory (default: $DSM_DATA_DIR, else ~/.dsm)", valueHint: "DIR" },
  json: { type: "boolean", description: "Machine-readable JSON on stdout" },
  quiet: { type: "boolean", alias: "q", description: "No warnings on stderr (errors still print); also DSM_QUIET=1" },
} as const satisfies ArgsDef;

export type CommonArgs = { config?: string; "data-dir"?: string; json?: boolean; quiet?: boolean };

export interface Context {
  config: DsmConfig;
  dataDir: string;
  configPath: string | null;
  json: boolean;
}

export function context(args: CommonArgs): Context {
  // Through the environment, so worker threads and child processes stay quiet too.
  if (args.quiet) process.env.DSM_QUIET = "1";
  const r = resolveConfig({ configPath: args.config, dataDir: args["data-dir"], env: process.env, home: os.homedir() });
  return { ...r, json: Boolean(args.json) };
}

/** Opens the node for the duration of fn and always closes the ledger. */
export async function withNode<T>(ctx: Context, fn: (node: DSMNode) => Promise<T> | T, opts: { readonly?: boolean } = {}): Promise<T> {
  const node = DSMNode.open(ctx.dataDir, ctx.config, opts);
  try {
    return await fn(node);
  } finally {
    node.close();
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}

export function print(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

export function warn(text: string): void {
  process.stderr.write(text.endsWith("\n") ? text : text + "\n");
}

const warned = new Set<string>();

/**
 * A warning (advice, not an error or a report): printed once per process however many
 * times it is raised, and not at all with --quiet or DSM_QUIET=1.
 */
export function warning(text: string): void {
  if (isQuiet() || warned.has(text)) return;
  warned.add(text);
  warn(text);
}

export function isQuiet(): boolean {
  const q = process.env.DSM_QUIET;
  return q !== undefined && q !== "" && q !== "0" && q !== "false";
}

/** A command definition with a long help text shown after citty's usage by --help. */
export type DsmCommand = CommandDef<any> & { help?: string };

export function command<const T extends ArgsDef>(def: CommandDef<T> & { help?: string }): DsmCommand {
  return def as DsmCommand;
}

/** Parses an integer flag strictly: "12abc" is an error, not 12. */
export function intArg(value: string | undefined, flag: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value))) {
    throw new CliError(`--${flag} must be an integer >= ${min}, got "${value}"`);
  }
  return Number(value);
}

/** Parses a time flag: RFC 3339, or a relative age like 15m, 2h, 7d. */
export function timeArg(value: string | undefined, flag: string, nowMs = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const bad = () => new CliError(`--${flag} must be an RFC 3339 time with Z or an offset (2026-11-25T18:00:00Z) or an age like 30m, 2h, 7d; got "${value}"`);
  const rel = /^(\d{1,9})(s|m|h|d)$/.exec(value);
  if (rel) {
    const ms = nowMs - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as "s" | "m" | "h" | "d"];
    if (Number.isNaN(new Date(ms).getTime())) throw bad(); // beyond the range of dates
    return ms;
  }
  // An explicit zone is required: the same command must select the same rows in any TZ.
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.exec(value);
  if (!m) throw bad();
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? "0"].map(Number) as number[];
  // Date.parse rolls Feb 30 over into March: check the calendar fields themselves.
  const probe = new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
  if (probe.getUTCMonth() !== mo! - 1 || probe.getUTCDate() !== d! || h! > 23 || mi! > 59 || s! > 59) throw bad();
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw bad();
  return ms;
}

/** Reads and parses a JSON file; errors name the file and say what is wrong, in one line. */
/** The certificates of a PEM file (DER), for a flag's value; a clear CliError naming the flag otherwise. */
export function readPemFile(file: string, flag: string): Uint8Array[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return pemCertificates(text);
  } catch (e) {
    throw new CliError(`${flag} ${file}: ${(e as Error).message}`);
  }
}

export function readJsonFile(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "permission denied" : (code ?? (e as Error).message);
    throw new CliError(`cannot read ${what} ${file}: ${why}`);
  }
  try {
    return parseJson(text, "x");
  } catch (e) {
    throw new CliError(`${what} ${file} is not valid JSON: ${(e as Error).message.replace(/^x: /, "").split("\n")[0]}`);
  }
}
