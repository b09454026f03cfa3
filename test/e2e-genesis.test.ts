// End-to-end tests of `dsm genesis` with the compiled binary: build a mesh genesis from
// three validators' cards, check the printed mesh id against sha256(JCS(file)), bind an
// edge to it with `dsm init --genesis`, and refuse bad cards. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalize } from "../src/encoding/jcs.ts";
import { signBody } from "../src/crypto/signed.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { buildGenesis, meshIdOf, parseGenesis } from "../src/protocol/genesis.ts";
import { cleanEnv, type RunResult, runDsm } from "./helpers/e2e.ts";

const HEX64 = /^[0-9a-f]{64}$/;

let root: string;
let env: Record<string, string>;
const cards: any[] = [];
const cardFiles: string[] = [];
let edgeCard: any;
let edgeCardFile: string;

const dsm = (args: string[]) => runDsm(args, env);
async function ok(args: string[]): Promise<RunResult> {
  const r = await dsm(args);
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r;
}
function meshOfFile(file: string): string {
  const genesis = JSON.parse(readFileSync(file, "utf8"));
  return new Bun.SHA256().update(canonicalize(genesis)).digest("hex");
}
/** The mesh id printed on stderr: "mesh <hex> (...)". */
function printedMesh(r: RunResult): string {
  const m = /^mesh ([0-9a-f]{64}) /.exec(r.errLines.at(-1) ?? "");
  if (!m) throw new Error(`no mesh id on stderr: ${r.stderr}`);
  return m[1]!;
}
/** A failure: exit 1 and one line on stderr. */
function oneLineError(r: RunResult): string {
  expect(r.code).toBe(1);
  expect(r.errLines).toHaveLength(1);
  expect(r.stdout).toBe("");
  return r.errLines[0]!;
}
function flipHexDigit(hex: string, at: number): string {
  const c = hex[at]!;
  return hex.slice(0, at) + (c === "0" ? "1" : "0") + hex.slice(at + 1);
}
let n = 0;
function tmpFile(name: string, content?: unknown): string {
  const f = join(root, `${++n}-${name}`);
  if (content !== undefined) writeFileSync(f, typeof content === "string" ? content : JSON.stringify(content, null, 2));
  return f;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "dsm-e2e-genesis-"));
  env = cleanEnv(root);
  await Promise.all(
    [1, 2, 3].map((i) => ok(["init", "--role", "validator", "--data-dir", join(root, `v${i}`)])).concat(ok(["init", "--role", "edge", "--data-dir", join(root, "edge0")])),
  );
  for (const i of [1, 2, 3]) {
    const r = await ok(["card", "--json", "--data-dir", join(root, `v${i}`)]);
    cards.push(JSON.parse(r.stdout));
    cardFiles.push(tmpFile(`v${i}-card.json`, r.stdout));
  }
  const r = await ok(["card", "--json", "--data-dir", join(root, "edge0")]);
  edgeCard = JSON.parse(r.stdout);
  edgeCardFile = tmpFile("edge0-card.json", r.stdout);
}, 60_000);

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe("dsm genesis", () => {
  test("builds the genesis from three cards; the printed mesh id is sha256(JCS(file)); an edge joins it", async () => {
    const out = tmpFile("genesis.json");
    // Validators in a deliberate non-sorted order: v3, v1, v2.
    const r = await ok(["genesis", "--name", "soc-eu", "--validator", cardFiles[2]!, "--validator", cardFiles[0]!, "--validator", cardFiles[1]!, "--epoch-duration", "60", "-o", out]);
    expect(r.stdout).toBe("");
    const mesh = printedMesh(r);
    expect(mesh).toMatch(HEX64);
    expect(mesh).toBe(meshOfFile(out));
    const text = readFileSync(out, "utf8");
    expect(text.endsWith("}\n")).toBe(true);
    expect(text).toContain('\n  "validators": [');
    const g = JSON.parse(text);
    expect(g.validators.map((c: any) => c.node_id)).toEqual([cards[2].node_id, cards[0].node_id, cards[1].node_id]);
    expect(g.validators[0]).toEqual(cards[2]);
    expect(g.name).toBe("soc-eu");
    expect(g.epoch_duration).toBe(60);
    expect(g.genesis_time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    expect(g.admission).toEqual({ policy: "allowlist", keys: [] });
    expect(g.attestation).toEqual({ required: false, pcrs: [], digests: [] });
    expect(meshIdOf(parseGenesis(g))).toBe(mesh);
    expect(statSync(out).mode & 0o777).toBe(0o644);

    const edgeDir = join(root, "edge-joined");
    const init = await ok(["init", "--genesis", out, "--data-dir", edgeDir, "--json"]);
    expect(JSON.parse(init.stdout).mesh).toBe(mesh);
    const st = JSON.parse((await ok(["status", "--json", "--data-dir", edgeDir])).stdout);
    expect(st.mesh).toBe(mesh);
    expect(st.mesh_name).toBe("soc-eu");
    // A validator listed in the genesis joins it too, and the same file gives the same id.
    expect(meshOfFile(join(edgeDir, "genesis.json"))).toBe(mesh);
  }, 30_000);

  test("positional cards, comma lists and --json; same inputs give the same mesh", async () => {
    const time = "2026-11-25T18:00:00Z";
    const a = await ok(["genesis", "--name", "lab", "--genesis-time", time, "--json", cardFiles[0]!, cardFiles[1]!]);
    const sa = JSON.parse(a.stdout);
    expect(sa).toMatchObject({ name: "lab", validators: 2, file: null });
    expect(sa.genesis.genesis_time).toBe("2026-11-25T18:00:00.000Z");
    expect(sa.mesh).toBe(meshIdOf(parseGenesis(sa.genesis)));
    const out = tmpFile("lab.json");
    const b = await ok(["genesis", "--name", "lab", "--genesis-time", time, "--json", `--validator=${cardFiles[0]},${cardFiles[1]}`, "-o", out]);
    const sb = JSON.parse(b.stdout);
    expect(sb.mesh).toBe(sa.mesh);
    expect(sb.file).toBe(out);
    expect(meshOfFile(out)).toBe(sa.mesh);
    // Without -o the genesis itself goes to stdout and the mesh id to stderr.
    const c = await ok(["genesis", "--name", "lab", "--genesis-time", time, cardFiles[0]!, "--validator", cardFiles[1]!]);
    expect(printedMesh(c)).toBe(sa.mesh);
    expect(JSON.parse(c.stdout)).toEqual(sa.genesis);
    // Order matters: it is the proposer order.
    const d = await ok(["genesis", "--name", "lab", "--genesis-time", time, "--json", cardFiles[1]!, cardFiles[0]!]);
    expect(JSON.parse(d.stdout).mesh).not.toBe(sa.mesh);
  }, 30_000);

  test("--admission allowlist --allow takes an edge card or an identity key; open admits all", async () => {
    const r = await ok(["genesis", "--name", "closed", "--json", "--admission", "allowlist", "--allow", edgeCardFile, "--allow", cards[1].identity_pub, cardFiles[0]!]);
    const g = JSON.parse(r.stdout).genesis;
    expect(g.admission).toEqual({ policy: "allowlist", keys: [edgeCard.identity_pub, cards[1].identity_pub] });
    const open = JSON.parse((await ok(["genesis", "--name", "open", "--json", "--admission", "open", cardFiles[0]!])).stdout).genesis;
    expect(open.admission).toEqual({ policy: "open" });
    expect(oneLineError(await dsm(["genesis", "--name", "x", "--admission", "open", "--allow", edgeCardFile, cardFiles[0]!]))).toContain("--allow needs --admission allowlist");
    // not a point on the curve (or not an identity key at all)
    const bad = oneLineError(await dsm(["genesis", "--name", "x", "--allow", "04" + "11".repeat(32), cardFiles[0]!]));
    expect(bad).toContain("--allow");
  }, 30_000);

  test("a tampered card is refused, naming the file", async () => {
    const popTampered = tmpFile("pop-tampered.json", { ...cards[1], bls_pop: flipHexDigit(cards[1].bls_pop, 40) });
    let e = oneLineError(await dsm(["genesis", "--name", "x", "--validator", cardFiles[0]!, "--validator", popTampered]));
    expect(e).toContain(`card 2 (${popTampered})`);
    expect(e).toContain("signature does not verify");
    const sigTampered = tmpFile("sig-tampered.json", { ...cards[0], sig: flipHexDigit(cards[0].sig, 10) });
    e = oneLineError(await dsm(["genesis", "--name", "x", sigTampered]));
    expect(e).toContain(`card 1 (${sigTampered})`);
    expect(e).toContain("signature");
    // A correctly signed card whose proof of possession is for another key: PoP check.
    const identity = SoftwareIdentityKey.load(join(root, "v1", "identity.pem"));
    const { sig: _sig, ...body } = cards[0];
    const resigned = await signBody("card", { ...body, bls_pop: cards[1].bls_pop }, identity);
    const popWrongKey = tmpFile("pop-wrong-key.json", resigned);
    e = oneLineError(await dsm(["genesis", "--name", "x", cardFiles[2]!, popWrongKey]));
    expect(e).toContain(`card 2 (${popWrongKey})`);
    expect(e).toContain("proof of possession");
  }, 30_000);

  test("duplicates, bad flags and unreadable input are one-line errors", async () => {
    let e = oneLineError(await dsm(["genesis", "--name", "x", "--validator", cardFiles[0]!, "--validator", cardFiles[1]!, "--validator", cardFiles[0]!]));
    expect(e).toContain(`card 3 (${cardFiles[0]})`);
    expect(e).toContain("duplicate validator");
    // the same card under another file name is still a duplicate
    const copy = tmpFile("copy.json", cards[1]);
    expect(oneLineError(await dsm(["genesis", "--name", "x", cardFiles[1]!, copy]))).toContain("duplicate validator");
    expect(oneLineError(await dsm(["genesis", "--name", "bad name!", cardFiles[0]!]))).toContain("--name");
    expect(oneLineError(await dsm(["genesis", cardFiles[0]!]))).toContain("--name");
    for (const v of ["0", "86401", "1.5", "abc", "-5"]) {
      expect(oneLineError(await dsm(["genesis", "--name", "x", "--epoch-duration", v, cardFiles[0]!]))).toContain("--epoch-duration");
    }
    expect(oneLineError(await dsm(["genesis", "--name", "x", "--genesis-time", "yesterday", cardFiles[0]!]))).toContain("--genesis-time");
    expect(oneLineError(await dsm(["genesis", "--name", "x"]))).toContain("no validator cards");
    const missing = join(root, "missing.json");
    expect(oneLineError(await dsm(["genesis", "--name", "x", missing]))).toBe(`dsm genesis: cannot read card ${missing}: no such file`);
    const malformed = tmpFile("malformed.json", "{ not json");
    expect(oneLineError(await dsm(["genesis", "--name", "x", malformed]))).toContain(`card ${malformed} is not valid JSON`);
    const notCard = tmpFile("not-card.json", { hello: 1 });
    expect(oneLineError(await dsm(["genesis", "--name", "x", cardFiles[0]!, notCard]))).toContain(`card 2 (${notCard})`);
    // a card without BLS keys cannot vote
    const { bls_pub: _p, bls_pop: _q, sig: _s, ...body } = cards[0];
    const noBls = tmpFile("no-bls.json", await signBody("card", body, SoftwareIdentityKey.load(join(root, "v1", "identity.pem"))));
    expect(oneLineError(await dsm(["genesis", "--name", "x", noBls]))).toContain("cannot vote");
    expect(oneLineError(await dsm(["genesis", "--name", "x", cardFiles[0]!, edgeCardFile]))).toBe(
      `dsm genesis: card 2 (${edgeCardFile}): node ${edgeCard.node_id.slice(0, 16)}… has role edge (dsm init's default); a genesis names validators, whose cards say role validator or both: make the validator with dsm init --role validator (an existing node: dsm init --force --role validator, which gives it a new identity)`,
    );
  }, 60_000);

  test("-o refuses to overwrite without --force", async () => {
    const out = tmpFile("exists.json", "precious\n");
    const e = oneLineError(await dsm(["genesis", "--name", "x", cardFiles[0]!, "-o", out]));
    expect(e).toContain("already exists");
    expect(readFileSync(out, "utf8")).toBe("precious\n");
    const r = await ok(["genesis", "--name", "x", cardFiles[0]!, "-o", out, "--force"]);
    expect(printedMesh(r)).toBe(meshOfFile(out));
    expect(existsSync(out)).toBe(true);
  }, 30_000);
});

describe("buildGenesis", () => {
  test("defaults, order, and what parseGenesis accepts", () => {
    const g = buildGenesis({ name: "m1", validators: [cards[1], cards[0]], admission: "open", nowMs: 1_700_000_000_999 });
    expect(g.genesis_time).toBe("2023-11-14T22:13:20.000Z");
    expect(g.epoch_duration).toBe(300);
    expect(g.validators.map((c) => c.node_id)).toEqual([cards[1].node_id, cards[0].node_id]);
    expect(meshIdOf(parseGenesis(JSON.parse(JSON.stringify(g))))).toBe(meshIdOf(g));
    expect(() => buildGenesis({ name: "m1", validators: [] })).toThrow("at least one validator");
    expect(() => buildGenesis({ name: "m1", validators: [cards[0]], epochDurationS: 0 })).toThrow("epoch duration");
    expect(() => buildGenesis({ name: "-m", validators: [cards[0]] })).toThrow("name");
    expect(() => buildGenesis({ name: "m", validators: [cards[0], cards[0]], sources: ["a.json", "b.json"] })).toThrow("card 2 (b.json)");
    expect(() => buildGenesis({ name: "m", validators: [cards[0]], allow: ["zz"] })).toThrow("allowed key");
  });
});
