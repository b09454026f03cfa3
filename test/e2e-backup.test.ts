// dsm backup with the compiled binary: a consistent copy of a data dir while another writer
// goes on, its manifest, its modes; and the restore the help text describes: a node
// restored from an older copy imports what it signed after the backup before it signs
// again, so its next microblock follows its real head and no fork is made.
import { afterAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

describe("dsm backup", () => {
  test("copies the data dir consistently (manifest, 0700/0600), refuses a non-empty target, and a restore that imports first makes no fork", async () => {
    requireBinary();
    const root = tempDir();
    const env = cleanEnv(root);
    const ok = async (args: string[]) => {
      const r = await runDsm(args, env);
      if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    };
    const A = path.join(root, "a");
    await ok(["init", "--data-dir", A]);
    for (let i = 0; i < 5; i++) await ok(["emit", "--data-dir", A, "--event-type", "alert", "--payload", JSON.stringify({ i })]);
    // A writer going on while the backup runs: the snapshot is consistent all the same.
    const writer = runDsm(["ingest", "--data-dir", A, "--format", "json"], env, { stdin: Array.from({ length: 300 }, (_, i) => JSON.stringify({ event_type: "alert", n: i })).join("\n") + "\n" });
    const B = path.join(root, "backup");
    const m = JSON.parse(await ok(["backup", B, "--data-dir", A, "--json"]));
    expect((await writer).code).toBe(0);
    const backedUpSeq = m.head.seq as number;
    expect(m.type).toBe("dsm-backup");
    expect(m.node_id).toMatch(/^[0-9a-f]{64}$/);
    expect(backedUpSeq).toBeGreaterThanOrEqual(5);
    expect(fs.statSync(B).mode & 0o777).toBe(0o700);
    for (const f of m.files as { name: string; bytes: number; sha256: string }[]) {
      const data = fs.readFileSync(path.join(B, f.name));
      expect(crypto.createHash("sha256").update(data).digest("hex")).toBe(f.sha256);
    }
    for (const secret of ["identity.pem", "libp2p.key", "bls.key", "privacy.key"]) expect(fs.statSync(path.join(B, secret)).mode & 0o777).toBe(0o600);
    // The copy is a ledger that verifies on its own.
    const R = path.join(root, "restored");
    fs.mkdirSync(R, { mode: 0o700 });
    for (const f of fs.readdirSync(B)) if (f !== "MANIFEST.json") fs.copyFileSync(path.join(B, f), path.join(R, f));
    expect(JSON.parse(await ok(["verify", "--data-dir", R, "--json"])).ok).toBe(true);
    const restoredHead = JSON.parse(await ok(["status", "--data-dir", R, "--json"])).head.seq as number;
    expect(restoredHead).toBeGreaterThanOrEqual(backedUpSeq);
    // Into a non-empty directory: refused, nothing written.
    const again = await runDsm(["backup", B, "--data-dir", A], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not an empty directory/);
    // The node went on after the backup; its disk dies; it is restored from the backup. It
    // imports what the mesh holds of it (here the original dir stands for a validator's copy)
    // before it signs: its next microblock follows the real head, and the copies agree.
    await ok(["emit", "--data-dir", A, "--event-type", "alert", "--payload", '{"after":1}']);
    const realHead = JSON.parse(await ok(["status", "--data-dir", A, "--json"])).head.seq as number;
    expect(realHead).toBeGreaterThan(restoredHead);
    const exported = path.join(root, "mesh.ndjson");
    await ok(["export", "--data-dir", A, "-o", exported]);
    await ok(["import", "--data-dir", R, exported]);
    expect(JSON.parse(await ok(["status", "--data-dir", R, "--json"])).head.seq).toBe(realHead);
    await ok(["emit", "--data-dir", R, "--event-type", "alert", "--payload", '{"restored":1}']);
    const back = path.join(root, "back.ndjson");
    await ok(["export", "--data-dir", R, "-o", back]);
    const imported = JSON.parse(await ok(["import", "--data-dir", A, back, "--json"]));
    expect(imported.forks).toEqual([]);
    expect(JSON.parse(await ok(["status", "--data-dir", A, "--json"])).head.seq).toBe(realHead + 1);
    expect(JSON.parse(await ok(["verify", "--data-dir", A, "--json"])).ok).toBe(true);
  }, 60_000);
});
