// The README's first command ends in `dsm demo`: it must tell the truth on a fresh box.
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanEnv, runDsm } from "./helpers/e2e.ts";

const SAMPLES = new URL("../config/samples/", import.meta.url);

function signerCount(bitfield: string): number {
  return [...Buffer.from(bitfield, "hex")].reduce((n, b) => n + b.toString(2).replaceAll("0", "").length, 0);
}

function lineCount(file: string): number {
  return readFileSync(new URL(file, SAMPLES), "utf8").split("\n").filter((l) => l.trim()).length;
}

test("dsm demo: samples stored, ledger verified, a one-byte tamper caught, a local mesh finalizes them, nothing left behind", async () => {
  const home = mkdtempSync(join(tmpdir(), "dsm-demo-test-"));
  try {
    const r = await runDsm(["demo", "--json"], cleanEnv(home, { TMPDIR: home }), { timeoutMs: 90_000 });
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.ingested.stored).toBe(lineCount("suricata-eve.ndjson") + lineCount("zeek-notice.ndjson"));
    expect(s.ingested.rejected).toBe(0);
    expect(s.verify).toMatchObject({ ok: true, microblocks: s.ingested.stored + 1, problems: [] });
    expect(s.mitigation.threat).toMatch(/^[0-9a-f]{64}$/);
    expect(s.tamper_check.detected).toBe(true);
    expect(s.tamper_check.first_problem).toMatch(/does not match payload_hash/);
    // Part 2: the local mesh of six processes finalized the edges' events and a proof verified.
    expect(s.mesh_demo).toMatchObject({ validators: 4, edges: 2, identical_everywhere: true, proof: { verified: true } });
    expect(s.mesh_demo.tree_size).toBe(s.mesh_demo.events);
    expect(s.mesh_demo.events).toBe(s.ingested.stored);
    expect(signerCount(s.mesh_demo.signers)).toBeGreaterThanOrEqual(3);
    // The throwaway node is gone.
    expect([...new Bun.Glob("dsm-demo-*").scanSync({ cwd: home, onlyFiles: false })]).toEqual([]);

    const kept = await runDsm(["demo", "--json", "--keep", "--no-mesh"], cleanEnv(home, { TMPDIR: home }));
    expect(kept.code).toBe(0);
    const dir = JSON.parse(kept.stdout).data_dir as string;
    expect(existsSync(join(dir, "ledger.sqlite"))).toBe(true);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}, 120_000);
