// dsm mitigation end to end: each test drives the compiled binary dist/dsm against a fresh
// temporary data dir (`bun run test` builds it first; run `bun run build` before
// `bun test test/e2e-mitigation.test.ts` by hand).
import { describe, expect, test } from "bun:test";
import { ndjson, show, withTempNode } from "./helpers/e2e.ts";

// ---------------------------------------------------------------------------
describe('dsm mitigation: option values that start with "-"', () => {
  test('--reason "-x happened": a value that starts with "-" is a value, and it is stored', async () => {
    await withTempNode(async (node) => {
      const r = await node.ok(["mitigation", "--action", "block", "--target", "x", "--reason", "-x happened", "--json"]);
      const [out] = ndjson<{ id: string }>(r.stdout);
      const s = await show(node, out!.id);
      expect(s.payload.original.reason).toBe("-x happened");
      expect(s.payload.original.target).toBe("x");
    });
  });
});
