// The mesh log end to end with the compiled binary: a validator with 1 s epochs and open
// admission, three edges joined with init --genesis that ingest the bundled samples and
// emit events, export/import to the validator, two checkpoints (the second chained to the
// first), inclusion proofs for an event of each edge (against the latest and the first
// checkpoint), a consistency proof between the two, all checked offline with
// `dsm verify-proof`; then one-byte flips at seeded positions over each bundle never
// verify, and a bundle checked against another mesh's genesis fails.
// Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { checkpointDigestHex } from "../src/protocol/checkpoint.ts";
import type { FinalityCertificate } from "../src/protocol/certificate.ts";
import { prng, removeDir, requireBinary, runDsm, tempDir } from "./helpers/spawn-dsm.ts";

const SAMPLES = path.resolve(import.meta.dir, "../config/samples");
const SURICATA = path.join(SAMPLES, "suricata-eve.ndjson");
const ZEEK = path.join(SAMPLES, "zeek-notice.ndjson");
const lineCount = (f: string) => fs.readFileSync(f, "utf8").split("\n").filter((l) => l.trim() !== "").length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const EDGES = ["e1", "e2", "e3"] as const;
type Edge = (typeof EDGES)[number];

let root: string;
let genesisFile: string;
let otherGenesis: string;
let V: string;
const vEnv = () => ({ DSM_MESH_GENESIS: genesisFile });
const dir = (name: string) => path.join(root, name);

async function ok(args: string[], env?: Record<string, string>): Promise<string> {
  const r = await runDsm(args, { env });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function emit(d: string, type: string, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++) await ok(["emit", "--data-dir", d, "--event-type", type, "--payload", JSON.stringify({ i, note: `${type} number ${i}` })]);
}

/** Validator node + genesis (1 s epochs, open admission, genesis time 10 s ago). */
async function makeMesh(name: string): Promise<{ validator: string; genesis: string }> {
  const validator = dir(`${name}-validator`);
  await ok(["init", "--data-dir", validator, "--role", "validator", "--json"]);
  const cardFile = path.join(root, `${name}-card.json`);
  fs.writeFileSync(cardFile, await ok(["card", "--data-dir", validator, "--json"]));
  const genesis = path.join(root, `${name}-genesis.json`);
  const t0 = new Date(Math.floor((Date.now() - 10_000) / 1000) * 1000).toISOString();
  await ok(["genesis", "--name", name, "--validator", cardFile, "--epoch-duration", "1", "--genesis-time", t0, "--admission", "open", "-o", genesis]);
  return { validator, genesis };
}

/** Exports an edge's full log and returns the file and the microblock ids in it. */
async function exportEdge(e: Edge, round: number): Promise<{ file: string; ids: string[] }> {
  const file = path.join(root, `${e}-export-${round}.ndjson`);
  await ok(["export", "--data-dir", dir(e), "-o", file]);
  const ids = fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l))
    .filter((r) => r.kind === "microblock")
    .map((r) => r.microblock.id as string);
  return { file, ids };
}

async function importAll(files: string[]): Promise<void> {
  const r = await runDsm(["import", "--data-dir", V, "--json", ...files], { env: vEnv() });
  if (r.code !== 0) throw new Error(`dsm import failed (${r.code}): ${r.stderr}`);
  const summary = JSON.parse(r.stdout);
  expect(summary.ok).toBe(true);
  expect(summary.rejected).toBe(0);
  expect(summary.fork).toBe(0);
}

async function checkpoint(): Promise<{ cert: FinalityCertificate; stderr: string }> {
  const r = await runDsm(["checkpoint", "--data-dir", V, "--json"], { env: vEnv() });
  expect(r.code).toBe(0);
  return { cert: JSON.parse(r.stdout), stderr: r.stderr };
}

async function proveInclusion(id: string, file: string, epoch?: number): Promise<void> {
  const args = ["proof", "inclusion", id, "--data-dir", V, "-o", file];
  if (epoch !== undefined) args.push("--checkpoint", String(epoch));
  await ok(args, vEnv());
  expect(fs.existsSync(file)).toBe(true);
}

const verifyProof = (file: string, genesis = genesisFile) => runDsm(["verify-proof", file, "--genesis", genesis]);
const lines = (s: string) => s.split("\n").filter((l) => l.trim() !== "");

const ids: Record<Edge, string[]> = { e1: [], e2: [], e3: [] };
const firstRoundIds: Record<Edge, string[]> = { e1: [], e2: [], e3: [] };
let counts1 = 0;
let counts2 = 0;
let first: FinalityCertificate;
let second: FinalityCertificate;
const bundles: string[] = [];

beforeAll(async () => {
  requireBinary();
  root = tempDir("meshlog");
  const mesh = await makeMesh("meshlog");
  V = mesh.validator;
  genesisFile = mesh.genesis;
  otherGenesis = (await makeMesh("other")).genesis;
  await Promise.all(EDGES.map((e) => ok(["init", "--data-dir", dir(e), "--genesis", genesisFile, "--json"])));
  await Promise.all([
    ok(["ingest", "--data-dir", dir("e1"), SURICATA]),
    ok(["ingest", "--data-dir", dir("e2"), ZEEK]),
    emit(dir("e3"), "honeypot.login", 0, 4),
  ]);
  counts1 = lineCount(SURICATA) + lineCount(ZEEK) + 4;
}, 30_000);

afterAll(() => removeDir(root));

describe("mesh log: edges → validator → checkpoints → proofs", () => {
  test("first round: three exports imported, checkpoint covers every event", async () => {
    const ex = await Promise.all(EDGES.map((e) => exportEdge(e, 1)));
    EDGES.forEach((e, i) => {
      firstRoundIds[e] = ex[i]!.ids;
      ids[e] = ex[i]!.ids;
    });
    expect(ex.reduce((n, x) => n + x.ids.length, 0)).toBe(counts1);
    await importAll(ex.map((x) => x.file));
    await sleep(1100);
    const { cert, stderr } = await checkpoint();
    first = cert;
    expect(first.type).toBe("F");
    expect(first.checkpoint.tree_size).toBe(counts1);
    expect(first.checkpoint.prev).toBe("0".repeat(64));
    expect(Object.keys(first.checkpoint.ranges)).toHaveLength(3);
    expect(stderr).toContain(`+${counts1} microblocks from 3 nodes`);
  }, 30_000);

  test("second round: more events on two edges, re-imported full exports, chained checkpoint", async () => {
    await Promise.all([emit(dir("e1"), "test.e1", 0, 2), emit(dir("e3"), "honeypot.login", 4, 3)]);
    const ex = await Promise.all(EDGES.map((e) => exportEdge(e, 2)));
    EDGES.forEach((e, i) => (ids[e] = ex[i]!.ids));
    counts2 = counts1 + 5;
    expect(ex.reduce((n, x) => n + x.ids.length, 0)).toBe(counts2);
    await importAll(ex.map((x) => x.file));
    await sleep(1100);
    const { cert, stderr } = await checkpoint();
    second = cert;
    expect(second.checkpoint.epoch).toBeGreaterThan(first.checkpoint.epoch);
    expect(second.checkpoint.tree_size).toBe(counts2);
    expect(second.checkpoint.prev).toBe(checkpointDigestHex(first.checkpoint));
    expect(stderr).toContain(`+5 microblocks from 2 nodes`);
    // Nothing new now.
    await sleep(1100);
    const again = await runDsm(["checkpoint", "--data-dir", V], { env: vEnv() });
    expect(again.code).toBe(4);
  }, 30_000);

  test("inclusion proofs for an event of each edge verify offline (latest and first checkpoint)", async () => {
    for (const e of EDGES) {
      // The last event: for e1 and e3 it is in the second checkpoint only.
      const id = ids[e][ids[e].length - 1]!;
      const file = path.join(root, `incl-${e}.json`);
      await proveInclusion(id, file);
      const r = await verifyProof(file);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      // The second line: the validator holds no card of these software edges (it enrolled none).
      expect(lines(r.stdout)).toEqual([expect.stringMatching(/^OK: microblock /), "  node key: no node card in the bundle: its trust links are not shown"]);
      expect(r.stdout).toStartWith(`OK: microblock ${id} `);
      expect(r.stdout).toContain(`checkpoint epoch ${second.checkpoint.epoch} (tree_size ${counts2})`);
      expect(r.stdout).not.toContain("payload withheld");
      bundles.push(file);

      // An event from the first round, against the first checkpoint.
      const old = firstRoundIds[e][Math.floor(firstRoundIds[e].length / 2)]!;
      const oldFile = path.join(root, `incl-${e}-first.json`);
      await proveInclusion(old, oldFile, first.checkpoint.epoch);
      const r1 = await verifyProof(oldFile);
      expect(r1.code).toBe(0);
      expect(r1.stdout).toStartWith(`OK: microblock ${old} `);
      expect(r1.stdout).toContain(`checkpoint epoch ${first.checkpoint.epoch} (tree_size ${counts1})`);
      bundles.push(oldFile);
    }
    // An event only in the second checkpoint is not in the first.
    const late = ids.e3[ids.e3.length - 1]!;
    const notYet = await runDsm(["proof", "inclusion", late, "--data-dir", V, "--checkpoint", String(first.checkpoint.epoch)], { env: vEnv() });
    expect(notYet.code).toBe(1);
    expect(notYet.stderr).toContain("not yet in a checkpoint");
    expect(notYet.stdout).toBe("");
  }, 30_000);

  test("consistency proof between the two checkpoints verifies", async () => {
    const file = path.join(root, "consistency.json");
    await ok(["proof", "consistency", String(first.checkpoint.epoch), String(second.checkpoint.epoch), "--data-dir", V, "-o", file], vEnv());
    const r = await verifyProof(file);
    expect(r.code).toBe(0);
    expect(lines(r.stdout)).toHaveLength(1);
    expect(r.stdout).toStartWith(
      `OK: checkpoint epoch ${second.checkpoint.epoch} (tree_size ${counts2}) extends checkpoint epoch ${first.checkpoint.epoch} (tree_size ${counts1})`,
    );
    bundles.push(file);
  }, 30_000);

  test("a bundle checked against another mesh's genesis fails (exit 2)", async () => {
    expect(bundles.length).toBe(7);
    for (const file of [bundles[0]!, bundles[bundles.length - 1]!]) {
      const r = await verifyProof(file, otherGenesis);
      expect(r.code).toBe(2);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toContain("FAILED");
    }
  }, 30_000);

  test("flipping one byte anywhere in a bundle never verifies", async () => {
    const rand = prng(0x3e5410);
    const HEX = "0123456789abcdef";
    const flip = (c: string): string => {
      const pick = (alphabet: string) => {
        let d = c;
        while (d === c) d = alphabet[Math.floor(rand() * alphabet.length)]!;
        return d;
      };
      if (/[0-9a-f]/.test(c)) return pick(HEX);
      if (/[a-z]/.test(c)) return pick("abcdefghijklmnopqrstuvwxyz");
      if (/[A-Z]/.test(c)) return pick("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
      return String.fromCharCode(c.charCodeAt(0) ^ 1);
    };
    let semantic = 0;
    let unreadable = 0;
    const passed: string[] = [];
    // 25 positions in each bundle against the latest checkpoint and in the consistency
    // bundle; 15 in each bundle against the first checkpoint (same shape), to keep the
    // run short: every verify-proof checks a BLS aggregate signature.
    let total = 0;
    for (const file of bundles) {
      // DSM_FLIPS: positions per bundle (the README's test command runs fewer).
      const flips = Number(process.env.DSM_FLIPS ?? 25);
      const PER = file.endsWith("-first.json") ? Math.ceil((flips * 3) / 5) : flips;
      total += PER;
      const text = fs.readFileSync(file, "utf8");
      expect(/^[\x00-\x7f]*$/.test(text)).toBe(true); // ASCII: one char is one byte
      const variant = path.join(root, "variant.json");
      const runs: Promise<void>[] = [];
      for (let k = 0; k < PER; k++) {
        // One position in each of PER equal slices: spread over the whole file.
        const lo = Math.floor((k * text.length) / PER);
        const hi = Math.floor(((k + 1) * text.length) / PER);
        const pos = lo + Math.floor(rand() * (hi - lo));
        const mutated = text.slice(0, pos) + flip(text[pos]!) + text.slice(pos + 1);
        const vf = `${variant}.${path.basename(file)}.${k}`;
        fs.writeFileSync(vf, mutated);
        runs.push(
          verifyProof(vf).then((r) => {
            if (r.code === 0) passed.push(`${path.basename(file)} @${pos} '${text[pos]}'→'${mutated[pos]}': ${r.stdout.trim()}`);
            else if (r.code === 2) {
              semantic++;
              expect(lines(r.stderr)).toHaveLength(1);
              expect(r.stderr).toStartWith("dsm verify-proof: FAILED: ");
              expect(r.stdout).toBe("");
            } else {
              expect(r.code).toBe(1);
              unreadable++;
              expect(lines(r.stderr)).toHaveLength(1);
            }
          }),
        );
        if (runs.length >= 3) await Promise.all(runs.splice(0));
      }
      await Promise.all(runs);
    }
    expect(passed).toEqual([]);
    expect(semantic + unreadable).toBe(total);
    expect(semantic).toBeGreaterThan(total / 2);
    expect(unreadable).toBeGreaterThan(0);
  }, 150_000); // 65 verify-proof processes, each a BLS pairing check: ~20 s alone, far more on a loaded machine
});
