// `dsm run` processes for the multi-process mesh tests: each started on a data dir with its
// stderr kept (for failure messages), resolved once run.json names its listen address.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { DSM } from "./e2e.ts";

/**
 * Starts `dsm run --data-dir dir` with `env`, bootstrapped to `bootstrap`; records the
 * process in `procs` and its stderr in `logs` (both keyed by dir). Resolves to the
 * daemon's dialable address (multiaddr with /p2p/), or throws with its stderr.
 */
export async function startDaemon(
  dir: string,
  env: Record<string, string>,
  bootstrap: string[],
  procs: Map<string, Subprocess>,
  logs: Map<string, string>,
  waitMs = 15_000,
): Promise<string> {
  fs.rmSync(path.join(dir, "run.json"), { force: true });
  const p = Bun.spawn([DSM, "run", "--data-dir", dir], { env: { ...env, DSM_GOSSIP_BOOTSTRAP_NODES: bootstrap.join(",") }, stdout: "ignore", stderr: "pipe" });
  procs.set(dir, p);
  logs.set(dir, "");
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of p.stderr as ReadableStream<Uint8Array>) logs.set(dir, logs.get(dir)! + dec.decode(chunk));
  })();
  for (const until = Date.now() + waitMs; Date.now() < until; ) {
    if (fs.existsSync(path.join(dir, "run.json"))) {
      const info = JSON.parse(fs.readFileSync(path.join(dir, "run.json"), "utf8")) as { addrs: string[]; peer_id: string };
      return `${info.addrs[0]}/p2p/${info.peer_id}`;
    }
    if (p.exitCode !== null) break;
    await Bun.sleep(50);
  }
  throw new Error(`dsm run in ${dir} did not start: ${logs.get(dir)}`);
}

/** Kills every daemon startDaemon recorded in `procs` and waits for each to exit. */
export async function killDaemons(procs: Map<string, Subprocess>): Promise<void> {
  for (const p of procs.values()) p.kill("SIGKILL");
  await Promise.all([...procs.values()].map((p) => p.exited));
}
