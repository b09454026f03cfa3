// Node configuration: config/dsm.yaml (embedded) overlaid by an optional user file, ${VAR} expansion
// inside that file, then DSM_<SECTION>_<KEY> environment overrides. Everything is pure except
// resolveConfig, which is the only place that touches the file system.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
// A text import, so `bun build --compile` embeds the shipped file and the binary needs no install tree.
import embeddedDefaultText from "../../config/dsm.yaml" with { type: "text" };
import { type IntelRuleConfig, keyPathLine, parseIntelRules, parseNetworkList, RuleProblem, sequenceItemLines } from "./intel-rules.ts";

export type { IntelRuleConfig } from "./intel-rules.ts";

export interface DsmConfig {
  node: { role: "edge" | "validator" | "both"; data_dir: string };
  identity: { kind: "software" | "tpm"; tcti: string; tpm_handle: number };
  keys: { signing_key_lifetime_s: number };
  ledger: { file: string; batch_max_events: number; batch_max_ms: number; busy_timeout_ms: number };
  ingest: { format: "auto" | "suricata" | "zeek" | "json"; max_line_bytes: number };
  privacy: { anonymize_ips: boolean; withhold_payloads: boolean };
  mesh: { genesis: string; max_clock_skew_s: number };
  consensus: { signature_timeout_s: number; quorum_threshold: number };
  gossip: { host: string; port: number; bootstrap_nodes: string; max_message_bytes: number; batch_max_ms: number };
  metrics: { port: number; listen: string };
  control: { port: number; token_file: string };
  attestation: { interval_epochs: number; timeout_s: number };
  logging: { format: "text" | "json"; level: "debug" | "info" | "warn" | "error" };
  intel: { rules: IntelRuleConfig[]; local_networks: string[] };
  decisions: { listen: string };
}

/**
 * One line, fit to print as-is to an operator: `<source>: <key path>: <problem>`, where a source
 * that is a file names the line when it is known (`config /etc/dsm/dsm.yaml:12: gossip.port: ...`);
 * YAML syntax errors and duplicate keys are `config <file>:<line>: <problem>`.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export const DEFAULT_CONFIG_TEXT: string = embeddedDefaultText;

// ---------------------------------------------------------------------------------------------
// Schema. Typed against DsmConfig so that adding a key to the interface without a rule here (or
// giving a number key a string rule) fails to compile.

interface IntRule { readonly type: "int"; readonly min: number; readonly max: number }
interface BoolRule { readonly type: "bool" }
interface StringRule { readonly type: "string" }
interface EnumRule<T extends string> { readonly type: "enum"; readonly values: readonly T[] }
/** A list of CIDR ranges, kept canonical (intel-rules.ts parseNetworkList). */
interface NetworksRule { readonly type: "networks" }
/** intel.rules: a list of mappings (intel-rules.ts parseIntelRules). */
interface IntelRulesRule { readonly type: "intel_rules" }
type Rule = IntRule | BoolRule | StringRule | EnumRule<string> | NetworksRule | IntelRulesRule;

// Wrapped in [] so unions such as "edge" | "validator" are not distributed into one rule each.
type RuleFor<T> = [T] extends [boolean] ? BoolRule
  : [T] extends [number] ? IntRule
  : [T] extends [readonly IntelRuleConfig[]] ? IntelRulesRule
  : [T] extends [readonly string[]] ? NetworksRule
  : [string] extends [T] ? StringRule
  : [T] extends [string] ? EnumRule<T>
  : never;

type Schema = { readonly [S in keyof DsmConfig]: { readonly [K in keyof DsmConfig[S]]: RuleFor<DsmConfig[S][K]> } };

const int = (min: number, max: number): IntRule => ({ type: "int", min, max });
const BOOL: BoolRule = { type: "bool" };
const STR: StringRule = { type: "string" };
const oneOf = <T extends string>(...values: T[]): EnumRule<T> => ({ type: "enum", values });

const SCHEMA: Schema = {
  node: { role: oneOf("edge", "validator", "both"), data_dir: STR },
  identity: { kind: oneOf("software", "tpm"), tcti: STR, tpm_handle: int(0x81000000, 0x81ffffff) },
  keys: { signing_key_lifetime_s: int(60, 31_536_000) },
  ledger: { file: STR, batch_max_events: int(1, 100_000), batch_max_ms: int(1, 60_000), busy_timeout_ms: int(0, 600_000) },
  ingest: { format: oneOf("auto", "suricata", "zeek", "json"), max_line_bytes: int(1024, 67_108_864) },
  privacy: { anonymize_ips: BOOL, withhold_payloads: BOOL },
  mesh: { genesis: STR, max_clock_skew_s: int(0, 86_400) },
  consensus: { signature_timeout_s: int(1, 3600), quorum_threshold: int(0, 1024) },
  gossip: { host: STR, port: int(0, 65535), bootstrap_nodes: STR, max_message_bytes: int(65536, 16_777_216), batch_max_ms: int(1, 10_000) },
  metrics: { port: int(0, 65535), listen: STR },
  control: { port: int(0, 65535), token_file: STR },
  attestation: { interval_epochs: int(0, 1_000_000), timeout_s: int(1, 600) },
  logging: { format: oneOf("text", "json"), level: oneOf("debug", "info", "warn", "error") },
  intel: { rules: { type: "intel_rules" }, local_networks: { type: "networks" } },
  decisions: { listen: STR },
};

// The schema viewed untyped, for walking documents whose keys are not yet known to be valid.
const SECTIONS = SCHEMA as unknown as Readonly<Record<string, Readonly<Record<string, Rule>>>>;
const SECTION_NAMES = Object.keys(SECTIONS);

function hasOwn(obj: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

function sectionRules(section: string): Readonly<Record<string, Rule>> | undefined {
  return hasOwn(SECTIONS, section) ? SECTIONS[section] : undefined;
}

function ruleFor(section: string, key: string): Rule | undefined {
  const rules = sectionRules(section);
  return rules && hasOwn(rules, key) ? rules[key] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Errors. Inner helpers throw Invalid with just the problem; the caller that knows the source and
// key path turns it into a ConfigError, so no helper has to thread both through.

class Invalid extends Error {}

function configError(source: string, path: string, problem: string): ConfigError {
  return new ConfigError(`${source}: ${path}: ${problem}`);
}

function atPath<T>(source: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Invalid) throw configError(source, path, e.message);
    throw e;
  }
}

/** Renders a value for a message; JSON quoting keeps strings with newlines on one line. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing (null)";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return JSON.stringify(value);
  return String(value);
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Levenshtein distance; names here are short, so the plain O(n*m) table is fine. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function unknownSectionProblem(name: string): string {
  // A key written at top level, outside its section, is the likeliest slip after a typo.
  const owner = SECTION_NAMES.find((s) => ruleFor(s, name) !== undefined);
  const guess = owner ? `${owner}.${name}` : closest(name, SECTION_NAMES);
  const hint = guess ? ` (did you mean ${guess}?)` : "";
  return `unknown section${hint}; known sections: ${SECTION_NAMES.join(", ")}`;
}

function unknownKeyProblem(section: string, key: string, spell: (section: string, key: string) => string): string {
  const keys = Object.keys(sectionRules(section) ?? {});
  const near = closest(key, keys);
  const elsewhere = SECTION_NAMES.find((s) => s !== section && ruleFor(s, key) !== undefined);
  const guess = near ? spell(section, near) : elsewhere ? spell(elsewhere, key) : undefined;
  const hint = guess ? ` (did you mean ${guess}?)` : "";
  return `unknown key${hint}; known keys in ${section}: ${keys.join(", ")}`;
}

// ---------------------------------------------------------------------------------------------
// Values.

function expectedText(rule: Rule, fromText: boolean): string {
  switch (rule.type) {
    case "int":
      return `an integer between ${rule.min} and ${rule.max}`;
    case "bool":
      return fromText ? "true, false, 1 or 0" : "true or false";
    case "enum":
      return `one of ${rule.values.join(", ")}`;
    case "string":
      return "a string";
    case "networks":
      return "a list of CIDR ranges";
    case "intel_rules":
      return "a list of rules";
  }
}

const INTEGER_TEXT = /^-?[0-9]+$/;
/** Hex in an environment variable too (DSM_IDENTITY_TPM_HANDLE=0x81000100), as YAML reads it in the file. */
const HEX_TEXT = /^0x[0-9a-fA-F]+$/;

/**
 * Checks a value against its rule. `fromText` is set when the value came from an environment
 * variable (an override or a ${VAR} expansion): then numbers and booleans arrive as strings and are
 * converted; a plain quoted "50" in the file is still a type error, as YAML typing is the file's job.
 */
function checkValue(rule: Rule, value: unknown, fromText: boolean, origin = ""): unknown {
  const fail = (): never => {
    throw new Invalid(`expected ${expectedText(rule, fromText)}, got ${describe(value)}${origin}`);
  };
  switch (rule.type) {
    case "int": {
      let n = value;
      if (fromText && typeof value === "string") n = INTEGER_TEXT.test(value) || HEX_TEXT.test(value) ? Number(value) : NaN;
      if (typeof n !== "number" || !Number.isInteger(n) || n < rule.min || n > rule.max) return fail();
      return n;
    }
    case "bool": {
      if (typeof value === "boolean") return value;
      if (fromText && (value === "true" || value === "1")) return true;
      if (fromText && (value === "false" || value === "0")) return false;
      return fail();
    }
    case "enum":
      return typeof value === "string" && rule.values.includes(value) ? value : fail();
    case "string":
      return typeof value === "string" ? value : fail();
    case "networks":
      return listValue(() => parseNetworkList(value, fromText));
    case "intel_rules":
      // From an environment variable: the same list, written as YAML flow text.
      return listValue(() => parseIntelRules(fromText && typeof value === "string" ? parseYamlText(value) : value));
  }
}

/** A list value's problem as Invalid; a rule's index and key lead the message (the file's own errors add the line). */
function listValue<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof RuleProblem)) throw e;
    throw new Invalid(e.item === null ? e.message : `rule ${e.item + 1}${e.key ? `: ${e.key}` : ""}: ${e.message}`);
  }
}

function parseYamlText(text: string): unknown {
  try {
    return Bun.YAML.parse(text);
  } catch (e) {
    throw new Invalid(`not YAML: ${(e instanceof Error ? e.message : String(e)).replace(/^YAML Parse error:\s*/, "")}`);
  }
}

// ---------------------------------------------------------------------------------------------
// ${VAR} expansion. A small recursive-descent reader, so a default may itself hold a reference:
// ${A:-${B:-x}}. Defaults are read even when not used (to find their end) but only evaluated when
// used, as in the shell, so an unset variable in an unused default is not an error. An unset variable
// is only reported once the whole value has parsed, so a syntax error is never hidden behind it.

type Env = Readonly<Record<string, string | undefined>>;

interface Cursor { readonly text: string; pos: number; references: number; unset?: string }

const NAME_START = /[A-Za-z_]/;
const NAME_PART = /[A-Za-z0-9_]/;

function readVarName(cur: Cursor): string {
  let end = cur.pos;
  while (end < cur.text.length && NAME_PART.test(cur.text[end]!)) end++;
  const name = cur.text.slice(cur.pos, end);
  cur.pos = end;
  return name;
}

/** Reads up to the end of the text, or, inside a default, up to and including its closing brace. */
function readText(cur: Cursor, env: Env, live: boolean, inDefault: boolean): string {
  let out = "";
  while (cur.pos < cur.text.length) {
    const ch = cur.text[cur.pos]!;
    if (inDefault && ch === "}") {
      cur.pos++;
      return out;
    }
    if (ch !== "$") {
      out += ch;
      cur.pos++;
      continue;
    }
    const next = cur.text[cur.pos + 1];
    if (next === "$") {
      out += "$";
      cur.pos += 2;
    } else if (next === "{") {
      out += readReference(cur, env, live);
    } else if (next !== undefined && NAME_START.test(next)) {
      // Only the braced form expands; leaving $HOME as literal text would be a silent surprise.
      cur.pos++;
      const name = readVarName(cur);
      throw new Invalid(`"$${name}" is not expanded: write \${${name}}, or $$ for a literal $`);
    } else {
      out += "$";
      cur.pos++;
    }
  }
  if (inDefault) throw unterminated(cur);
  return out;
}

function unterminated(cur: Cursor): Invalid {
  return new Invalid(`unterminated "\${" in ${JSON.stringify(cur.text)}`);
}

function readReference(cur: Cursor, env: Env, live: boolean): string {
  cur.pos += 2; // past "${"
  cur.references++;
  const name = readVarName(cur);
  if (cur.pos >= cur.text.length) throw unterminated(cur);
  if (name === "" || !NAME_START.test(name[0]!)) {
    if (!cur.text.includes("}", cur.pos)) throw unterminated(cur);
    throw new Invalid(`invalid variable reference in ${JSON.stringify(cur.text)}: a name must match [A-Za-z_][A-Za-z0-9_]*`);
  }
  const value = env[name];
  if (cur.text[cur.pos] === "}") {
    cur.pos++;
    if (live && value === undefined) cur.unset ??= name;
    return value ?? "";
  }
  if (cur.text.startsWith(":-", cur.pos)) {
    cur.pos += 2;
    const useDefault = value === undefined || value === "";
    const fallback = readText(cur, env, live && useDefault, true);
    return useDefault ? fallback : value;
  }
  if (!cur.text.includes("}", cur.pos)) throw unterminated(cur);
  throw new Invalid(`unsupported reference in ${JSON.stringify(cur.text)}: only \${${name}} and \${${name}:-default} are supported`);
}

/** Expands ${VAR}, ${VAR:-default} and $$ in one string. `references` tells whether any variable was used. */
function expandVars(text: string, env: Env): { value: string; references: number } {
  const cur: Cursor = { text, pos: 0, references: 0 };
  const value = readText(cur, env, true, false);
  if (cur.unset !== undefined) {
    throw new Invalid(`environment variable ${cur.unset} is not set (use \${${cur.unset}:-default})`);
  }
  return { value, references: cur.references };
}

// ---------------------------------------------------------------------------------------------
// Documents.

type Overlay = Record<string, Record<string, unknown>>;

/** A parsed file, with the line (1-based) of each "section" and "section.key" it sets. */
interface YamlDocument { doc: unknown; lines: ReadonlyMap<string, number>; text: readonly string[] }

/**
 * Parses YAML; every error names its line: `<source>:<line>: <problem>`. Bun.YAML reports
 * neither where a syntax error is nor a key given twice (the last one silently wins), so:
 * - a syntax error is on the line after the longest prefix of whole lines that still parses
 *   (an unclosed quote or bracket: the line that opens it);
 * - once the text parses, scanKeys walks its keys for their lines and refuses a key repeated
 *   in one mapping, at any depth.
 */
function parseYaml(text: string, source: string): YamlDocument {
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(text);
  } catch (e) {
    const lines = splitLines(text);
    let reason = (e instanceof Error ? e.message : String(e)).replace(/^YAML Parse error:\s*/, "").replace(/\s+/g, " ");
    if (/^unexpected EOF$/i.test(reason)) reason = "unexpected end of file (a quote or bracket opened here is not closed?)";
    reason = reason.charAt(0).toLowerCase() + reason.slice(1);
    throw new ConfigError(`${source}:${syntaxErrorLine(lines)}: invalid YAML: ${reason}`);
  }
  const textLines = splitLines(text);
  const scan = scanKeys(textLines);
  if (scan.duplicate) {
    const { key, line, first } = scan.duplicate;
    throw new ConfigError(`${source}:${line}: duplicate key ${JSON.stringify(key)} (first at line ${first})`);
  }
  return { doc, lines: scan.lines, text: textLines };
}

function splitLines(text: string): string[] {
  return text.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/);
}

function yamlParses(text: string): boolean {
  try {
    Bun.YAML.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** 1 + the number of leading lines that still parse on their own; only called on a text that does not. */
function syntaxErrorLine(lines: readonly string[]): number {
  for (let n = lines.length - 1; n > 0; n--) {
    if (yamlParses(lines.slice(0, n).join("\n"))) return n + 1;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Key scan: a reader of just enough YAML structure to know, in a text Bun.YAML has accepted,
// which mapping each key belongs to and on which line it is. Block mappings are told apart by
// their indentation; a sequence entry ("- ") starts a new mapping; flow mappings ({a: 1}) are
// read character by character; the insides of quoted, block (| >) and multi-line plain scalars
// are skipped. Explicit "? " keys and "<<" merge keys are not checked.

interface KeyScan {
  /** "section" or "section.key" to its line, for keys whose parents are all mapping keys. */
  lines: Map<string, number>;
  duplicate?: { key: string; line: number; first: number };
}

/** A block mapping at its indentation, or (seq) the block sequence whose entries start at that column. */
interface BlockScope { indent: number; keys: Map<string, number>; path: string[] | null; last?: string; seq?: boolean }

const DOCUMENT_MARKER = /^(---|\.\.\.)([ \t]|$)/;
const isBlank = (c: string | undefined): boolean => c === " " || c === "\t";

function indentOf(line: string): number {
  let i = 0;
  while (line[i] === " ") i++;
  return i;
}

function skipBlanks(line: string, pos: number): number {
  while (isBlank(line[pos])) pos++;
  return pos;
}

/** Skips node properties: anchors (&a) and tags (!t, !!str), each followed by blanks. */
function skipProperties(line: string, pos: number): number {
  while (line[pos] === "&" || line[pos] === "!") {
    while (pos < line.length && !isBlank(line[pos])) pos++;
    pos = skipBlanks(line, pos);
  }
  return pos;
}

function unquote(raw: string): string {
  if (raw.startsWith("'")) return raw.slice(1, -1).replaceAll("''", "'");
  try {
    return JSON.parse(raw) as string;
  } catch {
    return raw.slice(1, -1);
  }
}

function scanKeys(lines: readonly string[]): KeyScan {
  const result: KeyScan = { lines: new Map() };
  let scopes: BlockScope[] = [];

  const record = (keys: Map<string, number>, path: string[] | null, key: string, line: number): void => {
    if (result.duplicate) return;
    const first = keys.get(key);
    if (first !== undefined && key !== "<<") {
      result.duplicate = { key, line, first };
      return;
    }
    keys.set(key, line);
    if (path !== null) {
      const name = [...path, key].join(".");
      if (!result.lines.has(name)) result.lines.set(name, line);
    }
  };

  /** Lines after `from` that still belong to a node owned by column `owner`: blank or deeper. */
  const skipDeeper = (from: number, owner: number): number => {
    let j = from;
    while (j < lines.length && !DOCUMENT_MARKER.test(lines[j]!) && (lines[j]!.trim() === "" || indentOf(lines[j]!) > owner)) j++;
    return j;
  };

  // Flow collections and quoted scalars may span lines: a cursor over the whole text.
  interface Cursor { line: number; col: number }
  const at = (c: Cursor): string | undefined => {
    const text = lines[c.line];
    if (text === undefined) return undefined;
    return c.col < text.length ? text[c.col] : "\n";
  };
  const next = (c: Cursor): void => {
    if (c.col < lines[c.line]!.length) c.col++;
    else {
      c.line++;
      c.col = 0;
    }
  };
  /** Skips blanks, line breaks and comments. */
  const skipSpace = (c: Cursor): void => {
    for (;;) {
      const ch = at(c);
      if (ch === undefined) return;
      if (ch === " " || ch === "\t" || ch === "\n") next(c);
      else if (ch === "#" && (c.col === 0 || isBlank(lines[c.line]![c.col - 1]))) {
        c.col = lines[c.line]!.length;
      } else return;
    }
  };
  /** At an opening quote: moves past the closing one; returns the text with its quotes (lines joined by \n). */
  const readQuoted = (c: Cursor): string => {
    const quote = at(c)!;
    let raw = quote;
    next(c);
    for (;;) {
      const ch = at(c);
      if (ch === undefined) return raw;
      next(c);
      raw += ch;
      if (quote === '"' && ch === "\\") {
        const escaped = at(c);
        if (escaped === undefined) return raw;
        raw += escaped;
        next(c);
      } else if (ch === quote) {
        if (quote === "'" && at(c) === "'") {
          raw += "'";
          next(c);
        } else return raw;
      }
    }
  };
  const FLOW_END = new Set([",", "]", "}", "\n"]);
  /** A plain scalar in flow context: up to , ] } a ": " or " #". */
  const readFlowPlain = (c: Cursor): string => {
    let raw = "";
    for (;;) {
      const ch = at(c);
      if (ch === undefined || FLOW_END.has(ch)) break;
      if (ch === ":") {
        const after = lines[c.line]![c.col + 1];
        if (after === undefined || isBlank(after) || after === "," || after === "]" || after === "}" || after === "[" || after === "{") break;
      }
      if (ch === "#" && raw !== "" && isBlank(raw[raw.length - 1])) break;
      raw += ch;
      next(c);
    }
    return raw.trim();
  };
  const skipFlowProperties = (c: Cursor): void => {
    for (;;) {
      skipSpace(c);
      const ch = at(c);
      if (ch !== "&" && ch !== "!") return;
      while (at(c) !== undefined && !FLOW_END.has(at(c)!) && !isBlank(at(c))) next(c);
    }
  };
  /** One flow node; `path` is its place when it is a mapping under mapping keys only. */
  const flowNode = (c: Cursor, path: string[] | null): void => {
    skipFlowProperties(c);
    const ch = at(c);
    if (ch === "{") flowCollection(c, "}", path);
    else if (ch === "[") flowCollection(c, "]", null);
    else if (ch === '"' || ch === "'") readQuoted(c);
    else readFlowPlain(c);
  };
  /** At { or [: reads to the matching close. In a mapping, records each key. */
  const flowCollection = (c: Cursor, close: "}" | "]", path: string[] | null): void => {
    next(c);
    const keys = new Map<string, number>();
    for (let guard = 0; guard < 1_000_000; guard++) {
      skipFlowProperties(c);
      const ch = at(c);
      if (ch === undefined) return;
      if (ch === close) {
        next(c);
        return;
      }
      if (ch === ",") {
        next(c);
        continue;
      }
      const line = c.line + 1;
      let key: string | undefined;
      if (ch === "?" && isBlank(lines[c.line]![c.col + 1])) {
        next(c); // explicit key: not checked
        flowNode(c, null);
      } else if (ch === "{" || ch === "[") {
        flowNode(c, null); // a collection as a key: not checked
      } else if (ch === '"' || ch === "'") {
        key = unquote(readQuoted(c));
      } else {
        const start = { ...c };
        key = readFlowPlain(c);
        if (c.line === start.line && c.col === start.col) next(c); // no progress: never loop
      }
      skipSpace(c);
      const isPair = at(c) === ":";
      if (isPair) {
        next(c);
        skipSpace(c);
        const v = at(c);
        if (v !== undefined && v !== "," && v !== close) flowNode(c, close === "}" && key !== undefined && path !== null ? [...path, key] : null);
      }
      // In a sequence, "a: 1" is a one-pair mapping of its own: nothing to compare it with.
      if (close === "}" && key !== undefined) record(keys, path, key, line);
    }
  };

  /** A block key at `pos` of line i, if there is one: its text and the position after its colon. */
  const blockKey = (text: string, pos: number): { key: string; after: number } | null => {
    const ch = text[pos]!;
    if (ch === '"' || ch === "'") {
      // A quoted key is on one line: find its closing quote on this one.
      let end = pos + 1;
      for (; end < text.length; end++) {
        if (ch === '"' && text[end] === "\\") end++;
        else if (text[end] === ch) {
          if (ch === "'" && text[end + 1] === "'") end++;
          else break;
        }
      }
      if (end >= text.length) return null;
      const colon = skipBlanks(text, end + 1);
      if (text[colon] !== ":" || !(colon + 1 === text.length || isBlank(text[colon + 1]))) return null;
      return { key: unquote(text.slice(pos, end + 1)), after: colon + 1 };
    }
    if ("[]{}#&*!|>%@`,".includes(ch)) return null;
    if ((ch === "?" || ch === ":" || ch === "-") && (pos + 1 === text.length || isBlank(text[pos + 1]))) return null;
    for (let c = pos; c < text.length; c++) {
      if (text[c] === "#" && isBlank(text[c - 1])) return null;
      if (text[c] === ":" && (c + 1 === text.length || isBlank(text[c + 1]))) return { key: text.slice(pos, c).trimEnd(), after: c + 1 };
    }
    return null;
  };

  /** The value starting at `pos` of line i (its owner at column `owner`); returns the next line to read. */
  const blockValue = (i: number, pos: number, owner: number, path: string[] | null): number => {
    const text = lines[i]!;
    pos = skipProperties(text, skipBlanks(text, pos));
    if (pos >= text.length || text[pos] === "#") return i + 1; // the value is the block below
    let last = i;
    const ch = text[pos];
    if (ch === '"' || ch === "'" || ch === "{" || ch === "[") {
      const c: Cursor = { line: i, col: pos };
      if (ch === '"' || ch === "'") readQuoted(c);
      else flowCollection(c, ch === "{" ? "}" : "]", ch === "{" ? path : null);
      last = c.col === 0 && c.line > i ? c.line - 1 : c.line;
    }
    // A block scalar's content, a plain scalar's continuation lines: deeper than the owner.
    return skipDeeper(last + 1, owner);
  };

  let i = 0;
  while (i < lines.length && !result.duplicate) {
    const text = lines[i]!;
    if (DOCUMENT_MARKER.test(text)) {
      scopes = [];
      i++;
      continue;
    }
    let pos = indentOf(text);
    if (pos >= text.length || text[pos] === "#" || (pos === 0 && text[0] === "%")) {
      i++;
      continue;
    }
    let dash = -1;
    while (text[pos] === "-" && (pos + 1 === text.length || isBlank(text[pos + 1]))) {
      // A new entry: what the previous entry held (deeper) is closed; the sequence stays open.
      dash = pos;
      scopes = scopes.filter((s) => s.indent <= dash);
      const top = scopes[scopes.length - 1];
      if (!top || !top.seq || top.indent !== dash) scopes.push({ indent: dash, keys: new Map(), path: null, seq: true });
      pos = skipBlanks(text, pos + 1);
    }
    if (pos >= text.length || text[pos] === "#") {
      i++;
      continue;
    }
    const start = skipProperties(text, pos);
    const key = start < text.length ? blockKey(text, start) : null;
    if (!key) {
      i = blockValue(i, pos, dash >= 0 ? dash : pos - 1, null);
      continue;
    }
    // A key at a sequence's column ends that sequence ("key:\n- a\nnext: b").
    scopes = scopes.filter((s) => s.indent < start || (s.indent === start && !s.seq));
    let scope = scopes[scopes.length - 1];
    if (!scope || scope.indent < start) {
      const parent = scope;
      const path = !parent ? [] : !parent.seq && parent.path !== null && parent.last !== undefined ? [...parent.path, parent.last] : null;
      scope = { indent: start, keys: new Map(), path };
      scopes.push(scope);
    }
    record(scope.keys, scope.path, key.key, i + 1);
    scope.last = key.key;
    i = blockValue(i, key.after, start, scope.path === null ? null : [...scope.path, key.key]);
  }
  return result;
}

/** Validates a parsed document and returns just the keys it sets, already expanded and typed. */
function readDocument({ doc, lines, text }: YamlDocument, file: string, env: Env): Overlay {
  const overlay: Overlay = {};
  // The source names the line when the scan found one: `config /etc/dsm/dsm.yaml:12`.
  const at = (path: string): string => (lines.has(path) ? `${file}:${lines.get(path)}` : file);
  if (doc === null || doc === undefined) return overlay; // empty file, or comments only
  if (!isMapping(doc)) {
    throw configError(file, "top level", `expected a mapping of sections (${SECTION_NAMES.join(", ")}), got ${describe(doc)}`);
  }
  for (const [section, body] of Object.entries(doc)) {
    if (!sectionRules(section)) throw configError(at(section), section, unknownSectionProblem(section));
    // A section whose keys are all commented out parses as null; that is an empty section.
    if (body === null || body === undefined) continue;
    if (!isMapping(body)) throw configError(at(section), section, `expected a mapping of keys, got ${describe(body)}`);
    const values: Record<string, unknown> = {};
    for (const [key, raw] of Object.entries(body)) {
      const path = `${section}.${key}`;
      const rule = ruleFor(section, key);
      const source = at(path);
      if (!rule) throw configError(source, path, unknownKeyProblem(section, key, (s, k) => `${s}.${k}`));
      if (rule.type === "intel_rules" && typeof raw !== "string") {
        values[key] = rulesAt(raw, text, lines.get(path), file, path);
        continue;
      }
      values[key] = atPath(source, path, () => {
        if (typeof raw !== "string") return checkValue(rule, raw, false);
        const { value, references } = expandVars(raw, env);
        const origin = references > 0 ? ` (expanded from ${JSON.stringify(raw)})` : "";
        return checkValue(rule, value, references > 0, origin);
      });
    }
    overlay[section] = values;
  }
  return overlay;
}

/**
 * intel.rules from the file, its errors naming the line of the bad key inside the bad rule
 * (else the rule's "- " line, else the line of intel.rules): `config f.yaml:48: intel.rules[2].ttl: ...`.
 */
function rulesAt(raw: unknown, text: readonly string[], keyLine: number | undefined, file: string, path: string): IntelRuleConfig[] {
  try {
    return parseIntelRules(raw);
  } catch (e) {
    if (!(e instanceof RuleProblem)) throw e;
    let line = keyLine;
    let where = path;
    if (e.item !== null) {
      where = `${path}[${e.item + 1}]${e.key ? `.${e.key}` : ""}`;
      const items = keyLine === undefined ? [] : sequenceItemLines(text, keyLine);
      const start = items[e.item];
      if (start !== undefined) {
        const end = items[e.item + 1] ?? text.length + 1;
        // match.severity: the "severity:" under this rule's "match:", not the rule's own.
        line = keyPathLine(text, start, end, e.key?.split(".") ?? []);
      }
    }
    throw configError(line === undefined ? file : `${file}:${line}`, where, e.message);
  }
}

function overlay(base: DsmConfig, top: Overlay): DsmConfig {
  const out = structuredClone(base) as unknown as Overlay;
  for (const [section, values] of Object.entries(top)) Object.assign(out[section]!, values);
  return out as unknown as DsmConfig;
}

const DEFAULT_SOURCE = "config <built-in default>";
let cachedDefaults: DsmConfig | undefined;

/** The shipped defaults, parsed on first use; a fresh copy each call so callers may mutate it. */
export function defaultConfig(): DsmConfig {
  if (!cachedDefaults) {
    const top = readDocument(parseYaml(DEFAULT_CONFIG_TEXT, DEFAULT_SOURCE), DEFAULT_SOURCE, {});
    for (const section of SECTION_NAMES) {
      for (const key of Object.keys(sectionRules(section)!)) {
        // Only reachable if config/dsm.yaml and SCHEMA drift apart: a build defect, caught by the tests.
        if (!top[section] || !hasOwn(top[section], key)) throw configError(DEFAULT_SOURCE, `${section}.${key}`, "missing from the shipped defaults");
      }
    }
    cachedDefaults = top as unknown as DsmConfig;
  }
  return structuredClone(cachedDefaults);
}

/**
 * Parses one config file's text over the defaults. `source` names the file in errors (a path, as a
 * rule); `env` feeds ${VAR} expansion only: DSM_* overrides are applyEnvOverrides' job.
 */
export function parseConfig(text: string, source: string, env: Env): DsmConfig {
  const label = `config ${source}`;
  return overlay(defaultConfig(), readDocument(parseYaml(text, label), label, env));
}

// ---------------------------------------------------------------------------------------------
// Environment overrides.

// Not overrides: they pick the data directory and the config file (see resolveConfig).
const RESERVED_ENV = new Set(["DSM_DATA_DIR", "DSM_CONFIG"]);
const OVERRIDE_NAME = /^DSM_([^_]+)_(.+)$/;

function envName(section: string, key: string): string {
  return `DSM_${section}_${key}`.toUpperCase();
}

/**
 * Applies DSM_<SECTION>_<KEY> variables. Section names have no underscore, so the first underscore
 * after DSM_ splits section from key. A variable naming a known section but an unknown key is an
 * error (it is almost certainly a typo); any other DSM_* variable is not ours and is ignored.
 */
export function applyEnvOverrides(config: DsmConfig, env: Env): DsmConfig {
  const top: Overlay = {};
  for (const name of Object.keys(env).sort()) {
    const raw = env[name];
    if (raw === undefined || RESERVED_ENV.has(name)) continue;
    const m = OVERRIDE_NAME.exec(name);
    if (!m) continue;
    const section = m[1]!.toLowerCase();
    const key = m[2]!.toLowerCase();
    if (!sectionRules(section)) continue;
    const source = `environment variable ${name}`;
    const path = `${section}.${key}`;
    const rule = ruleFor(section, key);
    if (!rule) throw configError(source, path, unknownKeyProblem(section, key, envName));
    if (section === "node" && key === "data_dir") {
      // Two variables for one directory, with different precedence, would only breed confusion.
      throw configError(source, path, "use DSM_DATA_DIR to choose the data directory");
    }
    (top[section] ??= {})[key] = atPath(source, path, () => checkValue(rule, raw, true));
  }
  return overlay(config, top);
}

// ---------------------------------------------------------------------------------------------
// Resolution: the I/O edge.

export interface ResolvedConfig { config: DsmConfig; dataDir: string; configPath: string | null }

export interface ResolveOptions {
  /** --config */
  configPath?: string;
  /** --data-dir */
  dataDir?: string;
  env: Env;
  /** The user's home directory, for ~/ and the default data directory. */
  home: string;
  /** Base for relative --config, --data-dir, DSM_CONFIG and DSM_DATA_DIR; defaults to process.cwd(). */
  cwd?: string;
  /** The system-wide config file, read when no other is found; default SYSTEM_CONFIG_PATH, null: none. */
  systemConfig?: string | null;
}

/** Where a system install keeps its config (README "As a systemd service"). */
export const SYSTEM_CONFIG_PATH = "/etc/dsm/dsm.yaml";

/** Expands a leading ~ or ~/ only; ~user is left alone, as dsm has no business reading passwd. */
function expandHome(path: string, home: string): string {
  if (path !== "~" && !path.startsWith("~/")) return path;
  if (home === "") throw new Invalid(`cannot expand ~ in ${JSON.stringify(path)}: home directory unknown (set HOME, or use an absolute path)`);
  return path === "~" ? home : join(home, path.slice(2));
}

/** Empty strings mean "not given": an exported-but-empty variable is a common shell accident. */
function given(value: string | undefined): value is string {
  return value !== undefined && value !== "";
}

function readConfigFile(path: string, hint: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ConfigError(`config file not found: ${path}${hint}`);
    throw new ConfigError(`config ${path}: cannot read: ${code ?? (e instanceof Error ? e.message : String(e))}`);
  }
}

/**
 * Finds and loads the configuration. Config file, the first that applies: --config, DSM_CONFIG,
 * <data dir>/dsm.yaml when present, the system file (/etc/dsm/dsm.yaml) when present, else the
 * built-in default alone. Data dir: --data-dir, else DSM_DATA_DIR, else node.data_dir of the
 * config file when that is named (--config, DSM_CONFIG) or the system file, else ~/.dsm; so
 * without a flag or DSM_DATA_DIR the data-dir file is looked for in ~/.dsm only, and a system
 * file whose node.data_dir says /var/lib/dsm makes every plain `dsm ...` use /var/lib/dsm.
 * The returned config has node.data_dir set to the resolved data dir, and ~/ expanded in
 * ledger.file, mesh.genesis and control.token_file (which otherwise stay as written, for
 * callers to resolve against the data dir).
 */
export function resolveConfig(opts: ResolveOptions): ResolvedConfig {
  const { env, home } = opts;
  const cwd = opts.cwd ?? process.cwd();
  const systemConfig = opts.systemConfig === undefined ? SYSTEM_CONFIG_PATH : opts.systemConfig;
  const tilde = (p: string, source: string, path: string): string => atPath(source, path, () => expandHome(p, home));
  const absolute = (p: string, source: string, path: string): string => resolve(cwd, tilde(p, source, path));

  // Each candidate keeps its origin, so a bad value is reported under the name the user typed.
  const flagOrEnvDataDir = given(opts.dataDir) ? { value: opts.dataDir, source: "option", path: "--data-dir" }
    : given(env.DSM_DATA_DIR) ? { value: env.DSM_DATA_DIR, source: "environment variable", path: "DSM_DATA_DIR" }
    : undefined;
  const explicitPath = given(opts.configPath) ? { value: opts.configPath, source: "option", path: "--config" }
    : given(env.DSM_CONFIG) ? { value: env.DSM_CONFIG, source: "environment variable", path: "DSM_CONFIG" }
    : undefined;
  const homeDataDir = (): string => absolute("~/.dsm", "data dir", "default ~/.dsm");
  const givenDataDir = (): string | undefined => flagOrEnvDataDir && absolute(flagOrEnvDataDir.value, flagOrEnvDataDir.source, flagOrEnvDataDir.path);

  /** A file outside the data dir (named, or the system file): its node.data_dir may choose the data dir. */
  const loadOutside = (path: string, hint: string): { configPath: string; fileConfig: DsmConfig; dataDir: string } => {
    const fileConfig = parseConfig(readConfigFile(path, hint), path, env);
    const fromFile = fileConfig.node.data_dir;
    const dataDir = givenDataDir() ?? (fromFile !== "" ? resolve(dirname(path), tilde(fromFile, `config ${path}`, "node.data_dir")) : homeDataDir());
    return { configPath: path, fileConfig, dataDir };
  };

  let configPath: string | null = null;
  let fileConfig: DsmConfig;
  let dataDir: string;

  if (explicitPath !== undefined) {
    const hint = explicitPath.path === "DSM_CONFIG" ? " (from DSM_CONFIG)" : "";
    ({ configPath, fileConfig, dataDir } = loadOutside(absolute(explicitPath.value, explicitPath.source, explicitPath.path), hint));
  } else {
    dataDir = givenDataDir() ?? homeDataDir();
    const candidate = join(dataDir, "dsm.yaml");
    if (existsSync(candidate)) {
      configPath = candidate;
      fileConfig = parseConfig(readConfigFile(candidate, ""), candidate, env);
      // The data dir was fixed before this file was found, so it cannot move it; say so rather than ignore it.
      const fromFile = fileConfig.node.data_dir;
      if (fromFile !== "") {
        const wanted = resolve(dataDir, tilde(fromFile, `config ${candidate}`, "node.data_dir"));
        if (wanted !== dataDir) {
          throw configError(`config ${candidate}`, "node.data_dir", `cannot move the data dir from inside it (${dataDir}); use --data-dir, DSM_DATA_DIR, or --config with a file outside it`);
        }
      }
    } else if (systemConfig !== null && existsSync(systemConfig)) {
      // Present but unreadable (or a directory) is an error, not a reason to fall back to defaults.
      ({ configPath, fileConfig, dataDir } = loadOutside(resolve(cwd, systemConfig), ""));
    } else {
      fileConfig = defaultConfig();
    }
  }

  const config = applyEnvOverrides(fileConfig, env);
  config.node.data_dir = dataDir;
  const where = configPath === null ? "config <built-in default>" : `config ${configPath}`;
  config.ledger.file = tilde(config.ledger.file, where, "ledger.file");
  config.mesh.genesis = tilde(config.mesh.genesis, where, "mesh.genesis");
  config.control.token_file = tilde(config.control.token_file, where, "control.token_file");
  return { config, dataDir, configPath };
}
