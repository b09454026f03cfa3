#!/usr/bin/env bun
// dsm: one binary for every role. Each subcommand lives in its own file under src/cli/
// and is loaded only when it runs, so `dsm ingest` pays nothing for the others.
import "../src/cli/no-color.ts";
import { type ArgsDef, type CommandDef, renderUsage, runCommand } from "citty";
import pkg from "../package.json" with { type: "json" };
import { CliError, type DsmCommand, EXIT } from "../src/cli/common.ts";

// Keys, ledgers and their WAL files must never be readable by other users.
process.umask(0o077);

const load = (m: Promise<{ default: DsmCommand }>) => () => m.then((x) => x.default);

const subCommands: Record<string, () => Promise<DsmCommand>> = {
  init: () => load(import("../src/cli/init.ts"))(),
  genesis: () => load(import("../src/cli/genesis.ts"))(),
  card: () => load(import("../src/cli/card.ts"))(),
  ingest: () => load(import("../src/cli/ingest.ts"))(),
  emit: () => load(import("../src/cli/emit.ts"))(),
  mitigation: () => load(import("../src/cli/mitigation.ts"))(),
  log: () => load(import("../src/cli/log.ts"))(),
  show: () => load(import("../src/cli/show.ts"))(),
  status: () => load(import("../src/cli/status.ts"))(),
  verify: () => load(import("../src/cli/verify.ts"))(),
  proof: () => load(import("../src/cli/proof.ts"))(),
  "verify-proof": () => load(import("../src/cli/verify-proof.ts"))(),
  checkpoint: () => load(import("../src/cli/checkpoint.ts"))(),
  export: () => load(import("../src/cli/export.ts"))(),
  import: () => load(import("../src/cli/import.ts"))(),
  run: () => load(import("../src/cli/run.ts"))(),
  peers: () => load(import("../src/cli/peers.ts"))(),
  attest: () => load(import("../src/cli/attest.ts"))(),
  quarantine: () => load(import("../src/cli/quarantine.ts"))(),
  demo: () => load(import("../src/cli/demo.ts"))(),
};

const main: DsmCommand = {
  meta: { name: "dsm", version: pkg.version, description: "HookProbe Decentralized Security Mesh: signed, hash-chained security events" },
  help: `Every command takes --config FILE, --data-dir DIR and --json. Data goes to stdout,
errors to stderr as one line. Environment: DSM_DATA_DIR, DSM_CONFIG, and
DSM_<SECTION>_<KEY> to override one config key (e.g. DSM_PRIVACY_ANONYMIZE_IPS=true).
ingest and verify use a second thread when there is a second core; DSM_NO_WORKERS=1 keeps
them on one.

EXIT STATUS  0 success, 1 error, 2 verification failed, 3 some input lines rejected,
4 dsm checkpoint: nothing new (or the checkpoint already existed).

GETTING STARTED
  dsm demo                                   the whole story on a throwaway node
  dsm init                                   create a node in ~/.dsm
  tail -F /var/log/suricata/eve.json | dsm ingest
  dsm verify`,
  subCommands,
};

async function run(argv: string[]): Promise<number> {
  const { cmd, parent, rest } = await resolve(main, argv);
  if (rest.includes("--help") || rest.includes("-h") || (cmd === main && rest.length === 0)) {
    process.stdout.write((await usage(cmd, parent)) + "\n");
    return EXIT.ok;
  }
  if (cmd === main && (rest[0] === "--version" || rest[0] === "-v")) {
    process.stdout.write(`dsm ${pkg.version}\n`);
    return EXIT.ok;
  }
  if (cmd === main) throw new CliError(`unknown command "${rest[0]}" (see: dsm --help)`);
  await checkFlags(cmd, rest);
  await runCommand(cmd as CommandDef, { rawArgs: rest });
  return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
}

async function resolve(root: DsmCommand, argv: string[]): Promise<{ cmd: DsmCommand; parent?: DsmCommand; rest: string[] }> {
  const name = argv[0];
  if (name && !name.startsWith("-") && root.subCommands) {
    const sub = (root.subCommands as Record<string, () => Promise<DsmCommand>>)[name];
    if (!sub) throw new CliError(`unknown command "${name}" (see: dsm --help)`);
    return { cmd: await sub(), parent: root, rest: argv.slice(1) };
  }
  return { cmd: root, rest: argv };
}

async function usage(cmd: DsmCommand, parent?: DsmCommand): Promise<string> {
  const text = await renderUsage(cmd as CommandDef, parent as CommandDef | undefined);
  return cmd.help ? `${text}\n\n${cmd.help}\n` : text;
}

/** citty ignores unknown flags; a typo in a security tool's flag must not pass silently. */
async function checkFlags(cmd: DsmCommand, rest: string[]): Promise<void> {
  const defs: ArgsDef = (typeof cmd.args === "function" ? await cmd.args() : await cmd.args) ?? {};
  const known = new Set<string>();
  for (const [name, def] of Object.entries(defs)) {
    if (def.type === "positional") continue;
    known.add(name);
    for (const a of [(def as { alias?: string | string[] }).alias ?? []].flat()) known.add(a);
    if (def.type === "boolean") known.add(`no-${name}`);
  }
  const takesValue = new Set(Object.entries(defs).filter(([, d]) => d.type === "string" || d.type === "enum").map(([n]) => n));
  for (let i = 0; i < rest.length; i++) {
    const tok = rest[i]!;
    if (tok === "--") break;
    const m = /^--?([^=]+)(=.*)?$/.exec(tok);
    if (!m || /^-\d/.test(tok)) continue;
    const name = m[1]!;
    if (!known.has(name)) throw new CliError(`unknown option ${tok.split("=")[0]} (see: dsm ${cmd.meta && "name" in cmd.meta ? cmd.meta.name : ""} --help)`);
    if (!takesValue.has(name)) continue;
    // The value is the next word even when it starts with "-" (--reason "-x happened"), but a
    // missing or empty value is an error: "--data-dir $EMPTY" must not mean the default dir.
    const value = m[2] !== undefined ? m[2].slice(1) : rest[i + 1];
    if (m[2] === undefined) i += 1;
    const nextIsOption = m[2] === undefined && value !== undefined && /^--/.test(value) && known.has(value.slice(2).split("=")[0]!);
    if (value === undefined || value === "" || nextIsOption) {
      throw new CliError(`--${name} needs a value`);
    }
  }
  for (const [name, def] of Object.entries(defs)) {
    if (def.type === "enum" && def.options) {
      const i = rest.findIndex((t) => t === `--${name}` || t.startsWith(`--${name}=`));
      if (i >= 0) {
        const v = rest[i]!.includes("=") ? rest[i]!.split("=")[1] : rest[i + 1];
        if (v === undefined || !def.options.includes(v)) {
          throw new CliError(`--${name} must be one of ${def.options.join(", ")}${v === undefined ? "" : `, got "${v}"`}`);
        }
      }
    }
  }
}

const commandName = process.argv[2] && !process.argv[2].startsWith("-") ? `dsm ${process.argv[2]}` : "dsm";
// No process.exit() on the way out: in Bun it drops stdout still queued for a slow pipe
// reader, and for `dsm ingest --json` those lines are the acknowledgements.
try {
  process.exitCode = await run(process.argv.slice(2));
} catch (e) {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${commandName}: ${msg.split("\n")[0]}\n`);
  if (process.env.DSM_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exitCode = e instanceof CliError ? e.exitCode : EXIT.error;
}
