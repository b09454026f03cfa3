// Proof bundles built from a real ledger verify offline against the genesis alone, and
// every single-character change inside any value of a bundle is rejected.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultConfig } from "../src/config/config.ts";
import { makeLocalGenesis, parseGenesis, type Genesis } from "../src/protocol/genesis.ts";
import { DSMNode } from "../src/node/node.ts";
import { buildAlone } from "../src/consensus/alone.ts";
import { CheckpointBuilder } from "../src/log/builder.ts";
import { epochAt } from "../src/protocol/checkpoint.ts";
import { consistencyBundle, inclusionBundle } from "../src/log/bundle.ts";
import { type ProofBundle, verifyBundle } from "../src/log/verify-bundle.ts";
import { BundleError } from "../src/protocol/certificate.ts";
import type { Microblock } from "../src/protocol/microblock.ts";
import { DSM, requireBinary } from "./helpers/e2e.ts";
import { prng } from "./helpers/prng.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-proof-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

let genesis: Genesis;
let genesisFile: string;
let bundles: { name: string; bundle: ProofBundle }[] = [];
let ids: string[] = [];
let epochs: number[] = [];

beforeAll(async () => {
  const dir = path.join(root, "node");
  await DSMNode.init({ dataDir: dir, config: defaultConfig() });
  const card = JSON.parse(fs.readFileSync(path.join(dir, "card.json"), "utf8"));
  genesis = { ...makeLocalGenesis(card, Date.now() - 5_000), epoch_duration: 1 };
  genesisFile = path.join(root, "genesis.json");
  fs.writeFileSync(genesisFile, JSON.stringify(genesis));
  const config = defaultConfig();
  config.mesh.genesis = genesisFile;
  const blsSecret = new Uint8Array(fs.readFileSync(path.join(dir, "bls.key")));
  const node = DSMNode.open(dir, config);
  try {
    const builder = new CheckpointBuilder(node.ledger, node.policy);
    const first: Microblock[] = [];
    for (let i = 0; i < 5; i++) first.push(await node.createMicroblock({ eventType: "test.event", payload: { i, note: `first ${i}` } }));
    const e1 = epochAt(node.genesis, Date.parse(first.at(-1)!.timestamp));
    await Bun.sleep(1100);
    expect(buildAlone(builder, e1, blsSecret, 0).status).toBe("created");
    const second: Microblock[] = [];
    for (let i = 0; i < 6; i++) second.push(await node.createMicroblock({ eventType: "test.other", payload: { j: i, ok: i % 2 === 0 } }));
    const e2 = epochAt(node.genesis, Date.parse(second.at(-1)!.timestamp));
    await Bun.sleep(1100);
    expect(buildAlone(builder, e2, blsSecret, 0).status).toBe("created");
    epochs = [e1, e2];
    ids = [...first, ...second].map((m) => m.id);

    // A microblock not yet checkpointed cannot be proven.
    const late = await node.createMicroblock({ eventType: "test.event", payload: { late: true } });
    expect(() => inclusionBundle(node.ledger, builder, late.id)).toThrow(/not yet in a checkpoint/);
    // Nor can a second-epoch event in the first checkpoint.
    expect(() => inclusionBundle(node.ledger, builder, second[0]!.id, e1)).toThrow(/not yet in a checkpoint/);

    for (const k of [0, 2, 4]) bundles.push({ name: `first[${k}]@latest`, bundle: inclusionBundle(node.ledger, builder, first[k]!.id) });
    bundles.push({ name: "first[3]@e1", bundle: inclusionBundle(node.ledger, builder, first[3]!.id, e1) });
    for (const k of [0, 5]) bundles.push({ name: `second[${k}]@e2`, bundle: inclusionBundle(node.ledger, builder, second[k]!.id, e2) });
    bundles.push({ name: "consistency", bundle: consistencyBundle(builder, e1, e2) });
  } finally {
    node.close();
  }
}, 30_000);

test("bundles verify and say what they prove", () => {
  expect(parseGenesis(JSON.parse(JSON.stringify(genesis)), { checkPop: true })).toBeTruthy();
  for (const { name, bundle } of bundles) {
    const s = verifyBundle(JSON.parse(JSON.stringify(bundle)), genesis);
    expect(s.type).toBe(bundle.type);
    if (s.type === "inclusion" && bundle.type === "inclusion") {
      expect(s.id).toBe(bundle.microblock.id);
      expect(s.signed).toBe(1);
      expect(s.validators).toBe(1);
      expect(ids.indexOf(s.id)).toBe(s.leaf_index);
      expect(s.message).toContain(`is leaf ${s.leaf_index} of checkpoint epoch`);
    } else if (s.type === "consistency") {
      expect(s.older.epoch).toBe(epochs[0]!);
      expect(s.newer.epoch).toBe(epochs[1]!);
      expect(s.older.tree_size).toBe(5);
      expect(s.newer.tree_size).toBe(11);
    }
    expect(s.message.includes("\n")).toBe(false);
    void name;
  }
});

test("a mesh that never changed its validator set: bundles carry no set_changes and keep the fields they always had", () => {
  for (const { name, bundle } of bundles) {
    expect("set_changes" in bundle).toBe(false);
    const want = bundle.type === "inclusion" ? ["v", "type", "microblock", "key_certificate", "payload", "leaf_index", "proof", "certificate"] : ["v", "type", "older", "newer", "proof"];
    expect(Object.keys(bundle)).toEqual(want);
    const s = verifyBundle(JSON.parse(JSON.stringify(bundle)), genesis);
    const signed = s.type === "inclusion" ? [s] : [s.older, s.newer];
    for (const f of signed) expect([f.set_from_epoch, f.set_version]).toEqual([0, 0]);
    expect(s.message).not.toContain("set in force");
    void name;
  }
  // An empty chain is not a way of writing "none": it is left out.
  const inc = bundles.find((b) => b.bundle.type === "inclusion")!.bundle;
  expect(rejects(JSON.stringify({ ...inc, set_changes: [] }), genesis)).toMatch(/"set_changes" must be a non-empty list/);
  // A chain naming a checkpoint that changed nothing is refused, even the genesis set's own.
  const cons = bundles.find((b) => b.bundle.type === "consistency")!.bundle as Extract<ProofBundle, { type: "consistency" }>;
  expect(rejects(JSON.stringify({ ...inc, set_changes: [cons.older] }), genesis)).toMatch(/^set change 1 \(epoch \d+\): its checkpoint finalizes no set change$/);
});

/** Text positions inside JSON values (string contents that are not keys, numbers, literals). */
function valuePositions(text: string): number[] {
  const out: number[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      let k = j + 1;
      while (text[k] === " " || text[k] === "\n") k++;
      if (text[k] !== ":") for (let p = i + 1; p < j; p++) out.push(p);
      i = j + 1;
    } else if (/[-0-9a-z]/.test(c)) {
      let j = i;
      while (j < text.length && /[-+.0-9a-zA-Z]/.test(text[j]!)) j++;
      for (let p = i; p < j; p++) out.push(p);
      i = j;
    } else i++;
  }
  return out;
}

const rng = prng;

function rejects(text: string, g: Genesis): string | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "parse error";
  }
  try {
    verifyBundle(value, g);
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(BundleError);
    expect((e as Error).message.includes("\n")).toBe(false);
    return (e as Error).message;
  }
}

test("one changed character anywhere inside a value is rejected", () => {
  const rand = rng(0xd5e1);
  const HEX = "0123456789abcdef";
  let tried = 0;
  for (const { name, bundle } of bundles) {
    const text = JSON.stringify(bundle, null, 2);
    const positions = valuePositions(text);
    // ~200 positions over all bundles, plus every position of the first bundle's proof and certificate.
    const picks = new Set<number>();
    const want = Math.ceil(200 / bundles.length) + 10;
    while (picks.size < Math.min(want, positions.length)) picks.add(positions[Math.floor(rand() * positions.length)]!);
    for (const p of picks) {
      const old = text[p]!;
      let ch = HEX[Math.floor(rand() * 16)]!;
      if (ch === old) ch = HEX[(HEX.indexOf(ch) + 1) % 16]!;
      const mutated = text.slice(0, p) + ch + text.slice(p + 1);
      const why = rejects(mutated, genesis);
      if (why === null) throw new Error(`${name}: changing position ${p} (${JSON.stringify(text.slice(p - 20, p + 5))}) from ${old} to ${ch} still verifies`);
      tried++;
    }
  }
  expect(tried).toBeGreaterThanOrEqual(200);
});

test("every hex character of the proof hashes and the aggregate signature matters", () => {
  const { bundle } = bundles.find((b) => b.name === "second[5]@e2")!;
  const text = JSON.stringify(bundle);
  const spans: [number, number][] = [];
  for (const key of ['"agg_sig":"', '"proof":["']) {
    const at = text.indexOf(key) + key.length;
    spans.push([at, text.indexOf("]", at) > 0 && key.startsWith('"proof') ? text.indexOf("]", at) : text.indexOf('"', at)]);
  }
  let n = 0;
  for (const [a, b] of spans) {
    for (let p = a; p < b; p++) {
      if (!/[0-9a-f]/.test(text[p]!)) continue;
      const ch = text[p] === "0" ? "1" : "0";
      expect(rejects(text.slice(0, p) + ch + text.slice(p + 1), genesis)).not.toBeNull();
      n++;
    }
  }
  expect(n).toBeGreaterThan(192);
});

test("failures name what failed", () => {
  const inc = bundles.find((b) => b.bundle.type === "inclusion")!.bundle as Extract<ProofBundle, { type: "inclusion" }>;
  const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x));

  const noSigners = clone(inc);
  noSigners.certificate.signers = "00";
  expect(rejects(JSON.stringify(noSigners), genesis)).toBe("finality certificate: 0 of 1 validators signed, quorum is 1");

  const extraBit = clone(inc);
  extraBit.certificate.signers = "c0";
  expect(rejects(JSON.stringify(extraBit), genesis)).toMatch(/sets bit 1, but there are only 1 validators/);

  const wrongIndex = clone(inc);
  wrongIndex.leaf_index += 1;
  expect(rejects(JSON.stringify(wrongIndex), genesis)).toMatch(/^inclusion proof does not lead to the checkpoint root/);

  const badPayload = clone(inc);
  badPayload.payload = { i: 999 };
  expect(rejects(JSON.stringify(badPayload), genesis)).toMatch(/payload does not match payload_hash/);

  // A withheld payload still proves the microblock.
  const withheld = clone(inc);
  withheld.payload = null;
  expect(rejects(JSON.stringify(withheld), genesis)).toBeNull();

  const cons = clone(bundles.find((b) => b.bundle.type === "consistency")!.bundle as Extract<ProofBundle, { type: "consistency" }>);
  const swapped = { ...cons, older: cons.newer, newer: cons.older };
  expect(rejects(JSON.stringify(swapped), genesis)).toMatch(/is after the newer one's/);
  cons.proof = [];
  expect(rejects(JSON.stringify(cons), genesis)).toMatch(/^consistency proof does not show/);
});

test("another genesis rejects every bundle", () => {
  const other: Genesis = { ...genesis, name: "other-mesh" };
  const longer: Genesis = { ...genesis, epoch_duration: 2 };
  for (const g of [other, longer]) {
    for (const { bundle } of bundles) expect(rejects(JSON.stringify(bundle), g)).toMatch(/mesh/);
  }
});

test("dist/dsm verify-proof: 0 on a good bundle, 2 after one flipped byte, 1 on garbage", async () => {
  // `bun run test` builds dist/dsm before any test runs.
  requireBinary();
  const bin = DSM;
  const env = { ...process.env, DSM_DATA_DIR: path.join(root, "no-such-dir") };
  const run = (file: string) => Bun.spawnSync([bin, "verify-proof", file, "--genesis", genesisFile], { env, stdout: "pipe", stderr: "pipe" });
  const { bundle } = bundles.find((b) => b.name === "second[0]@e2")!;
  const good = path.join(root, "good.json");
  const text = JSON.stringify(bundle, null, 2);
  fs.writeFileSync(good, text);
  const ok = run(good);
  expect(ok.stderr.toString()).toBe("");
  expect(ok.exitCode).toBe(0);
  expect(ok.stdout.toString()).toMatch(/^OK: microblock [0-9a-f]{64} \(node [0-9a-f]{12}…, seq 6\) is leaf 5 of checkpoint epoch \d+ \(tree_size 11\), final with 1\/1 validators\n  node key: no node card in the bundle: its trust links are not shown\n$/);
  const at = text.indexOf('"root": "') + 9 + 7;
  const bad = path.join(root, "bad.json");
  fs.writeFileSync(bad, text.slice(0, at) + (text[at] === "0" ? "1" : "0") + text.slice(at + 1));
  const failed = run(bad);
  expect(failed.exitCode).toBe(2);
  expect(failed.stderr.toString().trim().split("\n")).toHaveLength(1);
  const cons = path.join(root, "cons.json");
  fs.writeFileSync(cons, JSON.stringify(bundles.find((b) => b.name === "consistency")!.bundle));
  const c = run(cons);
  expect(c.exitCode).toBe(0);
  expect(c.stdout.toString()).toMatch(/^OK: checkpoint epoch \d+ \(tree_size 11\) extends checkpoint epoch \d+ \(tree_size 5\), both final with 1\/1 and 1\/1 validators\n$/);
  fs.writeFileSync(bad, "{not json");
  expect(run(bad).exitCode).toBe(1);
  expect(run(path.join(root, "missing.json")).exitCode).toBe(1);
}, 120_000);
