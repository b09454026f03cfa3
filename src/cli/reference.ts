// The command table read back as data, for dsm completion and dsm man: each command's
// options and positional arguments, as its args definition declares them.
import type { ArgsDef, CommandMeta } from "citty";
import type { DsmArgDef } from "./argv.ts";
import { commonArgs, type DsmCommand } from "./common.ts";

/**
 * The command table this reads, handed over by commands.ts when it loads: commands.ts
 * names dsm completion and dsm man, which read the table through here, so importing it
 * from here would make a circle.
 */
export interface CommandTable {
  main: DsmCommand;
  subCommands: Record<string, () => Promise<DsmCommand>>;
  VARIADIC: ReadonlySet<string>;
  REPEATABLE: Readonly<Record<string, readonly string[]>>;
}

let table: CommandTable | null = null;

export function setCommandTable(t: CommandTable): void {
  table = t;
}

function commandTable(): CommandTable {
  if (table === null) throw new Error("the command table was not loaded (import src/cli/commands.ts first)");
  return table;
}

/** Every subcommand, loaded, in table order (for completion and man). */
export async function allCommands(): Promise<[string, DsmCommand][]> {
  return Promise.all(Object.entries(commandTable().subCommands).map(async ([name, load]) => [name, await load()] as [string, DsmCommand]));
}

export interface OptionRef {
  name: string;
  /** One-letter aliases (-o). */
  short: string[];
  kind: "flag" | "value";
  /** enum: the allowed values. */
  choices?: string[];
  valueHint?: string;
  description: string;
  /** A boolean whose default is true: --no-NAME turns it off. */
  negatable: boolean;
  multiple: boolean;
}

export interface PositionalRef {
  name: string;
  valueHint: string;
  description: string;
  required: boolean;
  multiple: boolean;
  /** Literal words the argument takes (from a lowercase valueHint like "show" or "bash|zsh|fish"). */
  words: string[];
}

export interface CommandRef {
  name: string;
  description: string;
  help: string;
  options: OptionRef[];
  positionals: PositionalRef[];
}

async function argsOf(cmd: DsmCommand): Promise<ArgsDef> {
  return (typeof cmd.args === "function" ? await cmd.args() : await cmd.args) ?? {};
}

async function metaOf(cmd: DsmCommand): Promise<CommandMeta> {
  return (typeof cmd.meta === "function" ? await cmd.meta() : await cmd.meta) ?? {};
}

/** Hints that name a file (complete with file names) or a directory. */
export function hintKind(hint: string | undefined): "file" | "dir" | "other" {
  if (!hint) return "other";
  if (/^DIR$/.test(hint)) return "dir";
  return /FILE|BUNDLE|\.json|\.ndjson|CARD/.test(hint) ? "file" : "other";
}

function describe(name: string, meta: CommandMeta, help: string | undefined, defs: ArgsDef): CommandRef {
  const options: OptionRef[] = [];
  const positionals: PositionalRef[] = [];
  for (const [argName, raw] of Object.entries(defs)) {
    const def = raw as DsmArgDef;
    const multiple = Boolean(def.multiple) || (commandTable().REPEATABLE[name] ?? []).includes(argName);
    if (def.type === "positional") {
      const hint = def.valueHint ?? argName.toUpperCase();
      positionals.push({
        name: argName,
        valueHint: hint,
        description: def.description ?? "",
        required: def.required !== false,
        multiple,
        words: /^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$/.test(hint) ? hint.split("|") : [],
      });
      continue;
    }
    const alias = [(def as { alias?: string | string[] }).alias ?? []].flat();
    options.push({
      name: argName,
      short: alias.filter((a) => a.length === 1),
      kind: def.type === "string" || def.type === "enum" ? "value" : "flag",
      choices: def.type === "enum" ? ((def as { options?: string[] }).options ?? []) : undefined,
      valueHint: def.valueHint ?? (def.type === "enum" ? undefined : def.type === "string" ? "VALUE" : undefined),
      description: def.description ?? "",
      negatable: def.type === "boolean" && def.default === true,
      multiple,
    });
  }
  if (commandTable().VARIADIC.has(name) && positionals.length > 0) positionals[positionals.length - 1]!.multiple = true;
  else if (commandTable().VARIADIC.has(name)) {
    positionals.push({ name: "files", valueHint: "FILE", description: 'Input files ("-" is stdin)', required: false, multiple: true, words: [] });
  }
  return { name, description: meta.description ?? "", help: help ?? "", options, positionals };
}

/** Every subcommand, in table order. */
export async function commandRefs(): Promise<CommandRef[]> {
  const out: CommandRef[] = [];
  for (const [name, cmd] of await allCommands()) out.push(describe(name, await metaOf(cmd), cmd.help, await argsOf(cmd)));
  return out;
}

/** The options every command takes (common.ts commonArgs), before or after its name. */
export function commonOptionRefs(): OptionRef[] {
  return Object.entries(commonArgs).map(([name, def]) => ({
    name,
    short: [(def as { alias?: string }).alias ?? []].flat().filter((a) => a.length === 1),
    kind: def.type === "string" ? "value" : "flag",
    valueHint: (def as { valueHint?: string }).valueHint,
    description: def.description,
    negatable: false,
    multiple: false,
  }));
}

/** The top-level command: its description and help text. */
export async function mainRef(): Promise<{ description: string; help: string; version: string }> {
  const { main } = commandTable();
  const meta = await metaOf(main);
  return { description: meta.description ?? "", help: main.help ?? "", version: meta.version ?? "" };
}
