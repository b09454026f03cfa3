// A full disk under `dsm ingest`: a real tmpfs of a few MiB, filled by the ingest itself.
// dsm must stop with one clear error, keep every event it acknowledged, and leave a
// ledger that still verifies. Mounting needs root (CI and this workplace run as root);
// elsewhere the test says why it cannot run instead of passing silently.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanEnv, ndjson, requireBinary, runDsm } from "./helpers/e2e.ts";

const root = mkdtempSync(join(tmpdir(), "dsm-fulldisk-"));
const mnt = join(root, "mnt");
let mounted = false;

beforeAll(() => {
  requireBinary();
  Bun.spawnSync(["mkdir", "-p", mnt]);
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", mnt], { stderr: "pipe" });
  mounted = r.exitCode === 0;
  if (!mounted) console.warn(`full-disk test needs root to mount a tmpfs: ${r.stderr.toString().trim()}`);
});

afterAll(() => {
  if (mounted) Bun.spawnSync(["umount", "-l", mnt]);
  rmSync(root, { recursive: true, force: true });
});

test("ingest onto a full disk: one clear error, every acknowledged event kept, the ledger verifies", async () => {
  expect(mounted).toBe(true);
  // Small batches, so several commit before the disk fills (one of 1000 would not fit at all).
  const env = cleanEnv(root, { DSM_DATA_DIR: join(mnt, "node"), DSM_LEDGER_BATCH_MAX_EVENTS: "50" });
  expect((await runDsm(["init"], env)).code).toBe(0);
  // ~6 KB per line: 1,500 lines are three times the disk.
  const lines: string[] = [];
  for (let i = 0; i < 1500; i++) {
    lines.push(JSON.stringify({ event_type: "filler", n: i, blob: `${i}:`.padEnd(6000, String.fromCharCode(97 + (i % 26))) }));
  }
  const r = await runDsm(["ingest", "--json"], env, { stdin: lines.join("\n") + "\n", timeoutMs: 60_000 });
  expect(r.code).toBe(1);
  const errors = r.errLines.filter((l) => !l.includes("empty line") && !l.includes("SOFTWARE identity key"));
  expect(errors).toHaveLength(1);
  // Under --json the one error line is {"error","code"}.
  const error = JSON.parse(errors[0]!) as { error: string; code: number };
  expect(error.code).toBe(1);
  expect(error.error).toMatch(/(full|space)/i);
  expect(error.error).toMatch(/\d+ events were stored and acknowledged/);

  const acked = ndjson<{ id?: string; seq?: number }>(r.stdout).filter((x) => x.id);
  expect(acked.length).toBeGreaterThan(0);
  expect(acked.length).toBeLessThan(lines.length);
  expect(acked.map((x) => x.seq)).toEqual(acked.map((_, i) => i + 1));

  // Every acknowledged id is stored, and nothing beyond them: no partial batch.
  const log = await runDsm(["log", "--json", "--limit", "0", "--oldest-first"], env);
  expect(log.code).toBe(0);
  const stored = ndjson<{ id: string }>(log.stdout).map((m) => m.id);
  expect(stored).toEqual(acked.map((x) => x.id!));

  const verify = await runDsm(["verify", "--json"], env);
  expect(verify.code).toBe(0);
  expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, microblocks: acked.length });
}, 90_000);
