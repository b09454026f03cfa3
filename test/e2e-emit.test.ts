// dsm emit end to end: each test drives the compiled binary dist/dsm against a fresh
// temporary data dir (`bun run test` builds it first; run `bun run build` before
// `bun test test/e2e-emit.test.ts` by hand).
import { describe, expect, test } from "bun:test";
import { expectOneLineError, ndjson, show, withTempNode } from "./helpers/e2e.ts";

// ---------------------------------------------------------------------------
describe("dsm emit --payload: integers beyond 2^53 kept exactly", () => {
  test('--payload \'{"flow_id":1234567890123456789}\' stores flow_id as the string "1234567890123456789"', async () => {
    await withTempNode(async (node) => {
      const r = await node.ok(["emit", "--json", "--event-type", "suricata.flow", "--payload", '{"flow_id":1234567890123456789,"n":42}']);
      const [out] = ndjson<{ id: string }>(r.stdout);
      const s = await show(node, out!.id);
      expect(s.payload).toEqual({ flow_id: "1234567890123456789", n: 42 });
      const bad = await node.run(["emit", "--event-type", "x", "--payload", "{nope"]);
      expectOneLineError(bad, "emit", /^dsm emit: --payload: malformed JSON/);
    });
  });
});
