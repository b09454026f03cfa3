// Whether a pid a data dir names (run.json, head-check.json) is still a `dsm run`. A daemon
// killed without its cleanup leaves its pid behind, and pids are reused: by any process,
// often another dsm one (an ingest, an emit). So the process must be alive, be dsm, and be
// running the `run` command; otherwise a one-shot command would take a stranger for the
// daemon and skip its own checks.
import * as fs from "node:fs";

export function isDsmDaemon(pid: unknown): pid is number {
  if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) return false;
  let cmdline: string;
  try {
    process.kill(pid, 0);
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch (e) {
    // Another user's process: alive, but nothing more can be known; count it, as before.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  return commandOf(cmdline.split("\0")) === "run";
}

/** The dsm subcommand of a command line (program, then options before or after it), or null when it is not dsm's. */
function commandOf(args: string[]): string | null {
  const at = args.findIndex((a) => /dsm/.test(a));
  if (at < 0) return null;
  for (let i = at + 1; i < args.length; i++) {
    const a = args[i]!;
    // The common options that take a value, as `dsm --data-dir DIR run` gives them.
    if (a === "--data-dir" || a === "--config") i++;
    else if (!a.startsWith("-")) return a;
  }
  return null;
}
