// dsm log end to end: each test drives the compiled binary dist/dsm against a fresh
// temporary data dir (`bun run test` builds it first; run `bun run build` before
// `bun test test/e2e-log.test.ts` by hand).
import { describe, expect, test } from "bun:test";
import { expectOneLineError, withTempNode } from "./helpers/e2e.ts";

// ---------------------------------------------------------------------------
describe("dsm log --since and --until: times are checked", () => {
  test("--since: a zone is required, calendar fields are checked, huge ages are refused cleanly", async () => {
    await withTempNode(async (node) => {
      await node.ok(["emit", "--event-type", "test.event", "--payload", "{}"]);
      for (const bad of ["2026-11-26T01:29:00", "2026-02-30T00:00:00Z", "99999999999d"]) {
        const r = await node.run(["log", "--since", bad]);
        expectOneLineError(r, "log", /--since must be an RFC 3339 time with Z or an offset/);
        expect(r.errLines[0]).toContain(`got "${bad}"`);
        expect(r.stderr).not.toContain("Invalid Date");
        expect(r.stdout).toBe("");
      }
      const ok = await node.run(["log", "--json", "--since", "2026-11-26T01:29:00+01:00", "--until", "2999-01-01T00:00:00Z"]);
      expect(ok.code).toBe(0);
    });
  });
});
