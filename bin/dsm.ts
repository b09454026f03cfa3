#!/usr/bin/env bun
// dsm: one binary for every role. Each subcommand lives in its own file under src/cli/
// (the table is src/cli/commands.ts) and is loaded only when it runs, so `dsm ingest`
// pays nothing for the others.
import "../src/cli/no-color.ts";
import { type ArgsDef, type CommandDef, renderUsage, runCommand } from "citty";
import pkg from "../package.json" with { type: "json" };
import { checkArgs, type DsmArgDef, splitLeading, wantsJson } from "../src/cli/argv.ts";
import { main, REPEATABLE, subCommands, VARIADIC } from "../src/cli/commands.ts";
import { CliError, commonArgs, type DsmCommand, EXIT } from "../src/cli/common.ts";
import { installOutputGuards, reportFailure, setErrorContext } from "../src/cli/output.ts";

// Keys, ledgers and their WAL files must never be readable by other users.
process.umask(0o077);
// A closed stdout pipe ends dsm quietly (141), a write error is one line (exit 1), and no
// failure prints a stack trace: see src/cli/output.ts.
installOutputGuards();

async function run(argv: string[]): Promise<number> {
  // Common options may come before the command name: `dsm --data-dir X status`.
  const { leading, rest: after } = splitLeading(argv, commonArgs);
  const name = after[0];
  if (name !== undefined && !name.startsWith("-")) {
    const load = subCommands[name];
    if (!load) throw new CliError(`unknown command "${name}" (see: dsm --help)`);
    setErrorContext({ command: `dsm ${name}` });
    const cmd = await load();
    const rest = [...leading, ...after.slice(1)];
    if (helpAsked(rest)) {
      process.stdout.write((await usage(cmd, main)) + "\n");
      return EXIT.ok;
    }
    await checkFlags(name, cmd, rest);
    await runCommand(cmd as CommandDef, { rawArgs: rest });
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  }
  if ((name === undefined && leading.length === 0) || helpAsked(after)) {
    process.stdout.write((await usage(main)) + "\n");
    return EXIT.ok;
  }
  if (name === "--version" || name === "-v") {
    const version = (await import("../src/cli/version.ts")).default;
    const rest = [...leading, ...after.slice(1)];
    checkArgs(await argsOf(version), rest, "dsm --version");
    if (!wantsJson(rest)) process.stdout.write(`dsm ${pkg.version}\n`);
    else await runCommand(version as CommandDef, { rawArgs: rest });
    return EXIT.ok;
  }
  if (name === undefined) throw new CliError(`${leading[0]} needs a command after it (see: dsm --help)`);
  throw new CliError(`unknown option ${name.split("=")[0]} (see: dsm --help)`);
}

/** --help or -h anywhere before "--" (even next to a bad option: help is what was asked for). */
function helpAsked(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((t) => t === "--help" || t === "-h");
}

async function usage(cmd: DsmCommand, parent?: DsmCommand): Promise<string> {
  const text = await renderUsage(cmd as CommandDef, parent as CommandDef | undefined);
  return cmd.help ? `${text}\n\n${cmd.help}\n` : text;
}

async function argsOf(cmd: DsmCommand): Promise<ArgsDef> {
  return (typeof cmd.args === "function" ? await cmd.args() : await cmd.args) ?? {};
}

/**
 * citty ignores unknown options, stray arguments and all but the last of a repeated option;
 * in a security tool a typo must not pass silently (`dsm log suricata.alert` listing
 * everything). See src/cli/argv.ts for the rules.
 */
async function checkFlags(name: string, cmd: DsmCommand, rest: string[]): Promise<void> {
  const defs: Record<string, DsmArgDef> = { ...(await argsOf(cmd)) };
  for (const o of REPEATABLE[name] ?? []) if (defs[o]) defs[o] = { ...defs[o], multiple: true };
  checkArgs(defs, rest, `dsm ${name}`, { variadic: VARIADIC.has(name) });
}

// No process.exit() on the way out: in Bun it drops stdout still queued for a slow pipe
// reader, and for `dsm ingest --json` those lines are the acknowledgements.
const argv = process.argv.slice(2);
setErrorContext({ json: wantsJson(argv) });
try {
  process.exitCode = await run(argv);
} catch (e) {
  reportFailure(e);
}
