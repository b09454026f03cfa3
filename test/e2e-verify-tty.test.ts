// dsm verify draws a progress bar on a terminal, and only there: a pipe or a file gets none.
// A real pseudo-terminal comes from util-linux `script`.
import { expect, test } from "bun:test";
import { DSM, withTempNode } from "./helpers/e2e.ts";

test("progress bar on a TTY, none on a pipe", async () => {
  await withTempNode(async (node) => {
    const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ n: i })).join("\n") + "\n";
    await node.ok(["ingest"], { stdin: lines });

    const piped = await node.run(["verify"]);
    expect(piped.code).toBe(0);
    expect(piped.stderr).not.toContain("verifying [");

    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const tty = Bun.spawn(["script", "-qec", `${quote(DSM)} verify`, "/dev/null"], { env: node.env, stdout: "pipe", stderr: "pipe" });
    const out = await new Response(tty.stdout).text();
    expect(await tty.exited).toBe(0);
    expect(out).toContain("verifying [");
    expect(out).toContain("100% 5000/5000");
    expect(out).toMatch(/OK: 5000 microblocks/);
  });
}, 60_000);
