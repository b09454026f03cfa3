// The command line as dsm reads it, before and besides citty: which tokens are options
// (and their values), which are positional arguments, and which options were repeated.
// citty (0.2.2) hands its arguments to node:util parseArgs with strict: false and without
// `multiple`, so on its own it ignores unknown options, ignores stray arguments and keeps
// only the last of a repeated option. bin/dsm.ts refuses all three with scanArgs before
// citty runs, and a command whose option takes a list reads every value with optionValues.
import type { ArgDef, ArgsDef } from "citty";
import { CliError } from "./common.ts";

/**
 * An option definition as dsm commands may write it: citty's, plus `multiple: true` for an
 * option that may be given more than once (read its values with optionValues), or for a
 * positional that takes every remaining argument.
 */
export type DsmArgDef = ArgDef & { multiple?: boolean };

export interface ScannedOption {
  /** The option's name as defined (an alias is resolved to it). */
  name: string;
  /** What was typed, without "=value": --type, -o, --no-payloads. */
  flag: string;
  /** The value of an option that takes one. */
  value?: string;
  /** --no-NAME of a boolean. */
  negated: boolean;
}

export interface Scanned {
  options: ScannedOption[];
  /** Positional arguments in order, including every word after "--". */
  positionals: string[];
}

/** The defs' options (not positionals), by every name they answer to (name and aliases). */
function optionIndex(defs: ArgsDef): Map<string, { name: string; def: DsmArgDef }> {
  const index = new Map<string, { name: string; def: DsmArgDef }>();
  for (const [name, def] of Object.entries(defs)) {
    if (def.type === "positional") continue;
    index.set(name, { name, def });
    for (const a of [(def as { alias?: string | string[] }).alias ?? []].flat()) index.set(a, { name, def });
  }
  return index;
}

const takesValue = (def: ArgDef) => def.type === "string" || def.type === "enum";

/**
 * Splits the arguments of one command into options and positionals, and refuses an
 * unknown option or an option without its value. `usage` names the command in errors
 * ("dsm log").
 */
export function scanArgs(defs: ArgsDef, args: readonly string[], usage: string): Scanned {
  const index = optionIndex(defs);
  const out: Scanned = { options: [], positionals: [] };
  for (let i = 0; i < args.length; i++) {
    const tok = args[i]!;
    if (tok === "--") {
      out.positionals.push(...args.slice(i + 1));
      break;
    }
    const m = /^--?([^=]+)(=[^]*)?$/.exec(tok);
    if (!m || tok === "-") {
      out.positionals.push(tok); // "-" is stdin for the commands that read files
      continue;
    }
    let name = m[1]!;
    let found = index.get(name);
    let negated = false;
    if (!found && name.startsWith("no-") && index.get(name.slice(3))?.def.type === "boolean") {
      found = index.get(name.slice(3));
      negated = true;
    }
    // node:util parseArgs reads "-json" as -j -s -o -n: a long name needs two dashes.
    if (!found || (!tok.startsWith("--") && m[1]!.length > 1)) throw new CliError(`unknown option ${tok.split("=")[0]} (see: ${usage} --help)`);
    name = found.name;
    const flag = tok.split("=")[0]!;
    // parseArgs reads -o=x as -o with the value "=x".
    if (!tok.startsWith("--") && m[2] !== undefined) throw new CliError(`write ${flag} VALUE or --${name}=VALUE, not ${tok}`);
    if (!takesValue(found.def)) {
      out.options.push({ name, flag, negated });
      continue;
    }
    // The value is the next word even when it starts with "-" (--reason "-x happened"), but a
    // missing or empty value is an error: "--data-dir $EMPTY" must not mean the default dir.
    const value = m[2] !== undefined ? m[2].slice(1) : args[i + 1];
    if (m[2] === undefined) i += 1;
    const nextIsOption = m[2] === undefined && value !== undefined && /^--/.test(value) && index.has(value.slice(2).split("=")[0]!);
    if (value === undefined || value === "" || nextIsOption) throw new CliError(`${flag} needs a value`);
    const options = (found.def as { options?: string[] }).options;
    if (found.def.type === "enum" && options && !options.includes(value)) {
      throw new CliError(`--${name} must be one of ${options.join(", ")}, got "${value}"`);
    }
    out.options.push({ name, flag, value, negated: false });
  }
  return out;
}

/**
 * The rules citty does not enforce: an option given twice is an error unless its def says
 * `multiple: true` (a boolean may be repeated as itself, not with its --no- form), and a
 * positional argument the command does not declare is an error. `variadic` is for a command
 * that reads its arguments from args._ without declaring them.
 */
export function checkArgs(defs: ArgsDef, args: readonly string[], usage: string, opts: { variadic?: boolean } = {}): Scanned {
  const scanned = scanArgs(defs, args, usage);
  const seen = new Map<string, ScannedOption>();
  for (const o of scanned.options) {
    const def = defs[o.name] as DsmArgDef;
    const first = seen.get(o.name);
    if (first === undefined) {
      seen.set(o.name, o);
      continue;
    }
    if (def.multiple) continue;
    if (def.type === "boolean") {
      if (first.negated !== o.negated) throw new CliError(`${first.flag} and ${o.flag} contradict each other`);
      continue;
    }
    throw new CliError(first.flag === o.flag ? `${o.flag} given twice` : `${first.flag} and ${o.flag} are the same option, given twice`);
  }
  const declared = Object.values(defs).filter((d) => d.type === "positional") as DsmArgDef[];
  const variadic = opts.variadic || declared.some((d) => d.multiple);
  if (!variadic && scanned.positionals.length > declared.length) {
    throw new CliError(`unexpected argument "${scanned.positionals[declared.length]}" (see: ${usage} --help)`);
  }
  return scanned;
}

/**
 * Every value of an option, in command-line order: for an option marked `multiple: true`,
 * which citty would reduce to its last value. `rawArgs` is the command's own arguments
 * (citty's context.rawArgs), `defs` its args definition.
 */
export function optionValues(defs: ArgsDef, rawArgs: readonly string[], name: string): string[] {
  return scanArgs(defs, rawArgs, "dsm")
    .options.filter((o) => o.name === name && o.value !== undefined)
    .map((o) => o.value!);
}

/**
 * Takes the options every command shares (commonArgs: --config, --data-dir, --json, --quiet,
 * and their aliases) off the front of argv, for `dsm --data-dir X status`:
 * `dsm --json --data-dir X log --limit 5` -> { leading: [--json, --data-dir, X], rest: [log, --limit, 5] }.
 * Stops at the first word that is not one of them (the command, --help, --version, or an
 * unknown option, which the caller refuses). Values are checked later, with the command's.
 */
export function splitLeading(argv: readonly string[], common: ArgsDef): { leading: string[]; rest: string[] } {
  const index = optionIndex(common);
  let i = 0;
  for (; i < argv.length; i++) {
    const m = /^--?([^=]+)(=[^]*)?$/.exec(argv[i]!);
    const found = m ? index.get(m[1]!) : undefined;
    const short = !argv[i]!.startsWith("--");
    if (found === undefined || short !== (m![1]!.length === 1)) break; // -q and --quiet, not --q or -quiet
    if (takesValue(found.def) && m![2] === undefined) i += 1;
  }
  const end = Math.min(i, argv.length);
  return { leading: argv.slice(0, end), rest: argv.slice(end) };
}

/** Whether --json was given (before any "--"): errors are then a JSON object on stderr. */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).some((t) => t === "--json" || t === "--json=true");
}
