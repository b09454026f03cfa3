// The command table: every subcommand, loaded only when it runs (so `dsm ingest` pays
// nothing for the others), and the top-level command. bin/dsm.ts dispatches from it;
// dsm completion and dsm man generate their output from it.
import pkg from "../../package.json" with { type: "json" };
import type { DsmCommand } from "./common.ts";
import { setCommandTable } from "./reference.ts";

const load = (m: Promise<{ default: DsmCommand }>) => m.then((x) => x.default);

export const subCommands: Record<string, () => Promise<DsmCommand>> = {
  init: () => load(import("./init.ts")),
  genesis: () => load(import("./genesis.ts")),
  card: () => load(import("./card.ts")),
  ingest: () => load(import("./ingest.ts")),
  emit: () => load(import("./emit.ts")),
  mitigation: () => load(import("./mitigation.ts")),
  advise: () => load(import("./advise.ts")),
  retract: () => load(import("./retract.ts")),
  log: () => load(import("./log.ts")),
  show: () => load(import("./show.ts")),
  status: () => load(import("./status.ts")),
  verify: () => load(import("./verify.ts")),
  proof: () => load(import("./proof.ts")),
  "verify-proof": () => load(import("./verify-proof.ts")),
  checkpoint: () => load(import("./checkpoint.ts")),
  export: () => load(import("./export.ts")),
  import: () => load(import("./import.ts")),
  run: () => load(import("./run.ts")),
  peers: () => load(import("./peers.ts")),
  attest: () => load(import("./attest.ts")),
  quarantine: () => load(import("./quarantine.ts")),
  bouncers: () => load(import("./bouncers.ts")),
  decisions: () => load(import("./decisions.ts")),
  intel: () => load(import("./intel.ts")),
  validators: () => load(import("./validators.ts")),
  backup: () => load(import("./backup.ts")),
  recover: () => load(import("./recover.ts")),
  demo: () => load(import("./demo.ts")),
  version: () => load(import("./version.ts")),
  completion: () => load(import("./completion.ts")),
  man: () => load(import("./man.ts")),
};

/**
 * Commands that read their arguments from citty's args._ without declaring a positional
 * (FILE...): any number of positional arguments is theirs. A command that declares its
 * positionals needs no entry (a positional with `multiple: true` takes the rest).
 */
export const VARIADIC = new Set(["ingest", "import", "genesis"]);

/**
 * Options of commands whose files this table does not own that take a list, until their
 * defs say `multiple: true` (genesis collects them from its raw arguments itself).
 */
export const REPEATABLE: Record<string, readonly string[]> = { genesis: ["validator", "allow", "trusted-reporter", "never-block"] };

export const main: DsmCommand = {
  meta: { name: "dsm", version: pkg.version, description: "HookProbe Decentralized Security Mesh: signed, hash-chained security events" },
  help: `Every command takes --config FILE, --data-dir DIR, --json and -q/--quiet, after its name
or before it (dsm --data-dir DIR status). Data goes to stdout, errors to stderr as one line; with
--json an error is one JSON object on stderr: {"error":"...","code":N}. Environment:
DSM_DATA_DIR, DSM_CONFIG, and DSM_<SECTION>_<KEY> to override one config key (e.g.
DSM_PRIVACY_ANONYMIZE_IPS=true). ingest and verify use a second thread when there is a
second core; DSM_NO_WORKERS=1 keeps them on one. DSM_DEBUG=1 adds a stack trace to errors.

EXIT STATUS  0 success, 1 error, 2 verification failed, 3 some input lines rejected,
4 dsm checkpoint: nothing new (or the checkpoint already existed), 141 stdout was a pipe
whose reader went away (dsm log | head), as for a tool killed by SIGPIPE.

GETTING STARTED
  dsm demo                                   the whole story on a throwaway node
  dsm init                                   create a node in ~/.dsm
  tail -F /var/log/suricata/eve.json | dsm ingest
  dsm verify

SHELL COMPLETION AND MANUAL
  source <(dsm completion bash)              or zsh, fish
  dsm man > dsm.1 && man -l dsm.1`,
  subCommands,
};

setCommandTable({ main, subCommands, VARIADIC, REPEATABLE });
