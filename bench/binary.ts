// The compiled binary end to end, for reference only (not a ratio target):
// `cat file | dist/dsm ingest` of N lines, process start and stdin pipe included.
import * as fs from "node:fs";
import * as path from "node:path";
import { envWithoutDsm } from "../src/runtime/env.ts";
import { eveLines, fmtRate, note, now, removeTempDir, say, table, tempDir } from "./lib.ts";

export interface BinarySummary {
  n: number;
  eps: number;
  wallMs: number;
  startupMs: number;
  binaryAgeMin: number;
}


async function run(cmd: string[], env: Record<string, string>): Promise<{ code: number; stderr: string; ms: number }> {
  const t0 = now();
  const proc = Bun.spawn(cmd, { env, stdout: "ignore", stderr: "pipe" });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  return { code, stderr, ms: now() - t0 };
}

export async function runBinary(root: string, n: number): Promise<BinarySummary | null> {
  const bin = path.join(root, "dist", "dsm");
  if (!fs.existsSync(bin)) {
    say("\n3. dist/dsm not found: skipped (bun run build to include it)");
    return null;
  }
  const binaryAgeMin = (Date.now() - fs.statSync(bin).mtimeMs) / 60_000;
  const dir = tempDir("binary");
  try {
    const file = path.join(dir, "eve.json");
    const dataDir = path.join(dir, "node");
    fs.writeFileSync(file, eveLines(n, 0xb1).join("\n") + "\n");
    const env = envWithoutDsm();
    const init = await run([bin, "init", "--data-dir", dataDir], env);
    if (init.code !== 0) throw new Error(`dsm init failed (${init.code}): ${init.stderr.trim()}`);
    // Process start alone: an empty input.
    const empty = path.join(dir, "empty.json");
    fs.writeFileSync(empty, "");
    const start = await run(["sh", "-c", `cat "${empty}" | "${bin}" ingest --data-dir "${dataDir}"`], env);
    note(`binary: cat ${n} lines | dist/dsm ingest`);
    const r = await run(["sh", "-c", `cat "${file}" | "${bin}" ingest --data-dir "${dataDir}"`], env);
    if (r.code !== 0) throw new Error(`dsm ingest exited ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    const summary = r.stderr.trim().split("\n").pop() ?? "";
    const eps = (n * 1000) / r.ms;
    say(
      table(
        `3. Compiled binary, end to end (reference; dist/dsm built ${binaryAgeMin.toFixed(0)} min ago)`,
        ["command", "wall", "events/s"],
        [
          [`cat ${n} lines | dist/dsm ingest`, `${(r.ms / 1000).toFixed(2)} s`, fmtRate(eps)],
          ["cat (empty) | dist/dsm ingest: process start", `${start.ms.toFixed(0)} ms`, "-"],
        ],
      ),
    );
    say(`   dsm said: ${summary}`);
    return { n, eps, wallMs: r.ms, startupMs: start.ms, binaryAgeMin };
  } finally {
    removeTempDir(dir);
  }
}
