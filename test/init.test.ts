// What `dsm init` leaves a node as, seen through the compiled binary: the software-key
// warning (once per process; none with --quiet or DSM_QUIET=1), and the role: the card's
// role is what dsm run says, an edge is the validator of its own local one-node mesh and
// says so, and dsm genesis refuses an edge's card saying how to make a validator. And the
// data dir: --data-dir needs a value, and an existing dir must be private.
// Needs dist/dsm: `bun run build` first.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { join } from "node:path";
import { cleanEnv, DSM, expectOneLineError, makeNode, requireBinary, runDsm, TempNode } from "./helpers/e2e.ts";

const SOFTWARE = /SOFTWARE/;
const nodes: TempNode[] = [];

function node(): TempNode {
  const n = new TempNode({ DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0" });
  nodes.push(n);
  return n;
}

afterAll(() => {
  for (const n of nodes) n.cleanup();
});

/** Starts dsm run, returns its first log line (the "listening on" one), then stops it. */
async function runFirstLine(n: TempNode, extra: string[] = []): Promise<string> {
  const proc = Bun.spawn([DSM, "run", ...extra], { env: n.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const reader = proc.stderr.getReader();
  const dec = new TextDecoder();
  let text = "";
  const until = Date.now() + 15_000;
  try {
    while (!text.includes("\n") && Date.now() < until) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value);
    }
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  const line = text.split("\n")[0]!;
  if (!line.includes("listening on")) throw new Error(`dsm run did not start: ${text}`);
  return line;
}

describe("the software-key warning", () => {
  test("dsm init and dsm ingest print it once each; --quiet, -q and DSM_QUIET=1 print none; errors still print", async () => {
    requireBinary();
    const n = node();
    const init = await n.ok(["init"]);
    expect(init.errLines.filter((l) => SOFTWARE.test(l))).toHaveLength(1);

    const lines = '{"event":"probe","n":1}\n{"event":"probe","n":2}\n';
    for (const workers of [{}, { DSM_NO_WORKERS: "1" }]) {
      const ingest = await n.run(["ingest"], { stdin: lines, env: workers });
      expect(ingest.code).toBe(0);
      expect(ingest.errLines.filter((l) => SOFTWARE.test(l))).toEqual(["dsm ingest: signing with a SOFTWARE identity key (no TPM): protect the data dir like a private key"]);
      expect(ingest.errLines.filter((l) => !SOFTWARE.test(l))).toHaveLength(1); // the summary
    }
    for (const [args, env] of [[["--quiet"], {}], [["-q"], {}], [[], { DSM_QUIET: "1" }]] as const) {
      const quiet = await n.run(["ingest", ...args], { stdin: lines, env });
      expect(quiet.code).toBe(0);
      expect(quiet.errLines.filter((l) => SOFTWARE.test(l))).toEqual([]);
      expect(quiet.errLines).toHaveLength(1);
      expect(quiet.errLines[0]).toStartWith("dsm ingest: 2 lines: 2 stored");
    }
    // A rejected line is an error, not a warning: --quiet keeps it.
    const bad = await n.run(["ingest", "--quiet"], { stdin: "not json\n" });
    expect(bad.code).toBe(3);
    expect(bad.errLines.some((l) => l.includes("stdin:1"))).toBe(true);
    expect(bad.errLines.filter((l) => SOFTWARE.test(l))).toEqual([]);

    const quietInit = await node().run(["init", "--quiet"]);
    expect(quietInit.code).toBe(0);
    expect(quietInit.stderr).toBe("");
    // Errors still print under --quiet.
    const again = await n.run(["init", "--quiet"]);
    expect(again.code).toBe(1);
    expect(again.errLines).toHaveLength(1);
    expect(again.errLines[0]).toContain("already exists");
  }, 60_000);
});

describe("roles", () => {
  test("an edge made by dsm init runs as the validator of its local one-node mesh and says so; a validator says validator", async () => {
    requireBinary();
    const edge = node();
    const init = JSON.parse((await edge.ok(["init", "--json", "--quiet"])).stdout) as { role: string; node_id: string };
    expect(init.role).toBe("edge");
    const line = await runFirstLine(edge);
    expect(line).toStartWith(`dsm run: edge, validator of its local one-node mesh ${init.node_id.slice(0, 16)}… peer `);

    const v = node();
    const vInit = JSON.parse((await v.ok(["init", "--json", "--quiet", "--role", "validator"])).stdout) as { role: string; node_id: string };
    expect(await runFirstLine(v)).toStartWith(`dsm run: validator ${vInit.node_id.slice(0, 16)}… peer `);
  }, 60_000);

  test("dsm genesis refuses an edge's card and says to use dsm init --role validator; a validator's card is taken; an edge in a real mesh runs as an edge", async () => {
    requireBinary();
    const edge = node();
    await edge.ok(["init", "--quiet"]);
    const edgeCard = path.join(edge.root, "edge.card");
    fs.writeFileSync(edgeCard, (await edge.ok(["card", "--json"])).stdout);
    const refused = await edge.run(["genesis", "--name", "lab", "--validator", edgeCard]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.errLines).toHaveLength(1);
    expect(refused.errLines[0]).toContain(`card 1 (${edgeCard}): node `);
    expect(refused.errLines[0]).toContain("has role edge");
    expect(refused.errLines[0]).toContain("dsm init --role validator");

    const v = node();
    await v.ok(["init", "--quiet", "--role", "validator"]);
    const vCard = path.join(v.root, "v.card");
    fs.writeFileSync(vCard, (await v.ok(["card", "--json"])).stdout);
    const genesis = path.join(v.root, "genesis.json");
    await v.ok(["genesis", "--name", "lab", "--validator", vCard, "--admission", "open", "-o", genesis]);

    const joined = node();
    const j = JSON.parse((await joined.ok(["init", "--json", "--quiet", "--genesis", genesis])).stdout) as { node_id: string };
    expect(await runFirstLine(joined)).toStartWith(`dsm run: edge ${j.node_id.slice(0, 16)}… peer `);
  }, 60_000);
});

// ---------------------------------------------------------------------------
describe("dsm init --data-dir: a value is required", () => {
  test("--data-dir with no value or an empty value is an error, never the default dir", async () => {
    const home = mkdtempSync(join(tmpdir(), "dsm-e2e-"));
    try {
      const env = cleanEnv(home); // no DSM_DATA_DIR: the default would be $HOME/.dsm
      for (const args of [["init", "--data-dir"], ["init", "--data-dir", ""], ["init", "--data-dir="]]) {
        const r = await runDsm(args, env);
        expectOneLineError(r, "init", /--data-dir needs a value/);
      }
      // --json is taken as the option it is (so the error is the --json form of the same line).
      const r = await runDsm(["init", "--data-dir", "--json"], env);
      expect(r.code).toBe(1);
      expect(r.errLines).toHaveLength(1);
      expect(JSON.parse(r.errLines[0]!)).toEqual({ error: "--data-dir needs a value", code: 1 });
      expect(existsSync(join(home, ".dsm"))).toBe(false);
      expect(readdirSync(home)).toEqual([]);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------
describe("dsm init: a private data dir", () => {
  test("an existing 0777 dir: exit 1 naming chmod, no keys written; after chmod 700 init works", async () => {
    const node = await makeNode({ init: false });
    try {
      mkdirSync(node.dataDir);
      chmodSync(node.dataDir, 0o777);
      const r = await node.run(["init"]);
      expectOneLineError(r, "init", new RegExp(`writable by other users .*chmod 700 ${node.dataDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
      expect(readdirSync(node.dataDir)).toEqual([]);
      chmodSync(node.dataDir, 0o700);
      await node.ok(["init"]);
      expect(existsSync(join(node.dataDir, "identity.pem"))).toBe(true);
    } finally {
      node.cleanup();
    }
  });
});
