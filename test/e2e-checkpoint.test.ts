// `dsm checkpoint` end to end with the compiled binary: a one-validator mesh with 1 s
// epochs, checkpoints over two epochs (exit 0, then 4 when run again), the chain of prev
// digests, refused epochs, the C2SP note export, and a node that is not a validator.
// Also the pure note functions. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkpointDigestHex } from "../src/protocol/checkpoint.ts";
import type { FinalityCertificate } from "../src/protocol/certificate.ts";
import { checkpointNote, noteKeyHash, noteKeyName, parseNoteBody } from "../src/log/note.ts";
import { makeLocalGenesis, meshIdOf } from "../src/protocol/genesis.ts";
import { makeNode, runDsm, type TempNode } from "./helpers/e2e.ts";

const SAMPLES = join(import.meta.dir, "..", "config", "samples", "suricata-eve.ndjson");
const sampleCount = readFileSync(SAMPLES, "utf8").split("\n").filter((l) => l.trim() !== "").length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let node: TempNode;
let genesisFile: string;
let mesh: string;
let nodeEnv: Record<string, string>;
const dsm = (args: string[]) => runDsm(args, nodeEnv);

beforeAll(async () => {
  node = await makeNode({ init: false });
  await node.ok(["init", "--role", "validator"]);
  const card = await node.ok(["card", "--json"]);
  const cardFile = join(node.root, "card.json");
  writeFileSync(cardFile, card.stdout);
  genesisFile = join(node.root, "g.json");
  const t0 = new Date(Math.floor((Date.now() - 10_000) / 1000) * 1000).toISOString();
  await node.ok(["genesis", "--name", "t", "--validator", cardFile, "--epoch-duration", "1", "--genesis-time", t0, "-o", genesisFile]);
  mesh = meshIdOf(JSON.parse(readFileSync(genesisFile, "utf8")));
  nodeEnv = { ...node.env, DSM_MESH_GENESIS: genesisFile };
}, 30_000);

afterAll(() => node?.cleanup());

describe("dsm checkpoint", () => {
  let first: FinalityCertificate;

  test("builds the last closed epoch (exit 0); again changes nothing (exit 4, nothing on stdout)", async () => {
    const ing = await dsm(["ingest", SAMPLES]);
    expect(ing.code).toBe(0);
    await sleep(1100);
    const r = await dsm(["checkpoint"]);
    expect(r.code).toBe(0);
    first = JSON.parse(r.stdout);
    expect(r.stdout).toContain('\n  "checkpoint": {'); // pretty by default
    expect(first.type).toBe("F");
    expect(first.signers).toBe("80");
    expect(first.agg_sig).toMatch(/^[0-9a-f]{192}$/);
    expect(first.checkpoint.mesh).toBe(mesh);
    expect(first.checkpoint.tree_size).toBe(sampleCount);
    expect(first.checkpoint.prev).toBe("0".repeat(64));
    expect(Object.values(first.checkpoint.ranges)).toEqual([[1, sampleCount]]);
    expect(r.errLines).toEqual([
      `checkpoint epoch ${first.checkpoint.epoch}: tree_size ${sampleCount}, +${sampleCount} microblocks from 1 nodes, root ${first.checkpoint.root}`,
    ]);

    const again = await dsm(["checkpoint", "--epoch", String(first.checkpoint.epoch), "--json"]);
    expect(again.code).toBe(4);
    // Nothing on stdout: "dsm checkpoint >> checkpoints.ndjson" appends each certificate once.
    expect(again.stdout).toBe("");
    expect(again.stderr).toContain("already exists");
    // Plain again: the same epoch (exists) or a later one with nothing new; exit 4 either way.
    const plain = await dsm(["checkpoint", "--now"]);
    expect(plain.code).toBe(4);
    expect(plain.stdout).toBe("");
    const shown = await dsm(["checkpoint", "show", "--json"]);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual(first);
  }, 30_000);

  test("a later epoch extends the log: prev is the first checkpoint's digest", async () => {
    const e = await dsm(["emit", "--event-type", "honeypot.login", "--payload", '{"user":"root"}']);
    expect(e.code).toBe(0);
    const e2 = await dsm(["emit", "--event-type", "honeypot.login", "--payload", '{"user":"admin"}']);
    expect(e2.code).toBe(0);
    await sleep(1100);
    const r = await dsm(["checkpoint", "--json"]);
    expect(r.code).toBe(0);
    const second: FinalityCertificate = JSON.parse(r.stdout);
    expect(second.checkpoint.epoch).toBeGreaterThan(first.checkpoint.epoch);
    expect(second.checkpoint.prev).toBe(checkpointDigestHex(first.checkpoint));
    expect(second.checkpoint.tree_size).toBe(sampleCount + 2);
    expect(Object.values(second.checkpoint.ranges)).toEqual([[sampleCount + 1, sampleCount + 2]]);
    expect(r.errLines[0]).toContain(`+2 microblocks from 1 nodes`);

    const byEpoch = await dsm(["checkpoint", "show", String(first.checkpoint.epoch), "--json"]);
    expect(JSON.parse(byEpoch.stdout)).toEqual(first);
    const latest = await dsm(["checkpoint", "show", "--json"]);
    expect(JSON.parse(latest.stdout)).toEqual(second);

    const note = await dsm(["checkpoint", "show", "--format", "note"]);
    expect(note.code).toBe(0);
    const lines = note.stdout.split("\n");
    expect(lines[0]).toBe(`hookprobe.dsm/${mesh}`);
    expect(lines[1]).toBe(String(sampleCount + 2));
    expect(lines[2]).toBe(Buffer.from(second.checkpoint.root, "hex").toString("base64"));
    expect(lines[3]).toBe("");
    expect(lines[4]).toMatch(new RegExp(`^\u2014 hookprobe\\.dsm/${mesh.slice(0, 16)} [A-Za-z0-9+/]+=*$`));
    expect(parseNoteBody(note.stdout)).toEqual({ origin: `hookprobe.dsm/${mesh}`, size: sampleCount + 2, root: second.checkpoint.root });
    const noteJson = await dsm(["checkpoint", "show", "--format", "note", "--json"]);
    expect(noteJson.code).toBe(0);
    const parsed = JSON.parse(noteJson.stdout);
    expect(parsed.epoch).toBe(second.checkpoint.epoch);
    expect(parsed.note.trimEnd()).toBe(note.stdout.trimEnd());
  }, 30_000);

  test("refuses an epoch that has not closed, bad flags, and a missing checkpoint", async () => {
    const future = await dsm(["checkpoint", "--epoch", "99999999"]);
    expect(future.code).toBe(1);
    expect(future.errLines).toHaveLength(1);
    expect(future.stderr).toContain("in the future");
    expect(future.stdout).toBe("");
    const g = JSON.parse(readFileSync(genesisFile, "utf8"));
    const current = Math.floor((Date.now() - Date.parse(g.genesis_time)) / 1000);
    const open = await dsm(["checkpoint", "--epoch", String(current + 1)]);
    expect(open.code).toBe(1);
    expect((await dsm(["checkpoint", "--epoch", "-3"])).code).toBe(1);
    expect((await dsm(["checkpoint", "--epoch", "1", "--now"])).code).toBe(1);
    expect((await dsm(["checkpoint", "--format", "xml"])).code).toBe(1);
    const none = await dsm(["checkpoint", "show", "3"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("no checkpoint for epoch 3");
    // An old epoch before the latest checkpoint has nothing new.
    const old = await dsm(["checkpoint", "--epoch", "0"]);
    expect(old.code).toBe(4);
    expect(old.stdout).toBe("");
  }, 30_000);

  test("a node that is not a validator of the mesh refuses (exit 1)", async () => {
    const edge = await makeNode({ init: false });
    try {
      await edge.ok(["init", "--genesis", genesisFile]);
      const r = await edge.run(["checkpoint"]);
      expect(r.code).toBe(1);
      expect(r.errLines).toHaveLength(1);
      expect(r.stderr).toContain(`this node is not a validator of mesh ${mesh.slice(0, 16)}`);
      expect(r.stdout).toBe("");
      const show = await edge.run(["checkpoint", "show"]);
      expect(show.code).toBe(1);
    } finally {
      edge.cleanup();
    }
  }, 30_000);
});

describe("checkpoint note", () => {
  test("body round-trips; size and root match the certificate; key hash over 0xff || bls_pub", () => {
    const blsPub = "a".repeat(96);
    const genesis = { ...makeLocalGenesis({ node_id: "1".repeat(64), bls_pub: blsPub } as never, Date.UTC(2026, 0, 1)) };
    const root = "0f".repeat(32);
    const cert: FinalityCertificate = {
      v: 1,
      type: "F",
      checkpoint: { v: 1, type: "C", mesh: "ab".repeat(32), epoch: 7, prev: "0".repeat(64), tree_size: 1234, root, ranges: {} },
      signers: "80",
      agg_sig: "cd".repeat(96),
    };
    const text = checkpointNote(cert, genesis);
    const parsed = parseNoteBody(text);
    expect(parsed).toEqual({ origin: `hookprobe.dsm/${"ab".repeat(32)}`, size: 1234, root });
    const [body, sigs] = text.split("\n\n");
    expect(body).toBe(`hookprobe.dsm/${"ab".repeat(32)}\n1234\n${Buffer.from(root, "hex").toString("base64")}`);
    const m = /^\u2014 (\S+) (\S+)\n$/.exec(sigs!);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(noteKeyName(cert.checkpoint.mesh));
    expect(m![1]).toBe(`hookprobe.dsm/${"ab".repeat(8)}`);
    const blob = Buffer.from(m![2]!, "base64");
    expect(blob.length).toBe(4 + 96);
    const expected = createHash("sha256").update(Buffer.concat([Buffer.from(`${m![1]}\n`), Buffer.from([0xff]), Buffer.from(blsPub, "hex")])).digest();
    expect(Buffer.from(blob.subarray(0, 4))).toEqual(Buffer.from(expected.subarray(0, 4)));
    expect(Buffer.from(noteKeyHash(m![1]!, [Buffer.from(blsPub, "hex")]))).toEqual(Buffer.from(expected.subarray(0, 4)));
    expect(blob.subarray(4).toString("hex")).toBe(cert.agg_sig);
    // A body without signatures parses too; malformed ones do not.
    expect(parseNoteBody(`o\n0\n${Buffer.alloc(32).toString("base64")}\n`)).toEqual({ origin: "o", size: 0, root: "0".repeat(64) });
    expect(() => parseNoteBody("o\n01\nAAAA\n")).toThrow();
    expect(() => parseNoteBody(`o\n1\n${Buffer.alloc(31).toString("base64")}\n`)).toThrow();
  });
});
