// End to end: `dsm export` on edges, `dsm import` on the validator of the same mesh, with
// the compiled binary, temp data dirs and real pipes. Files arrive out of order (a split
// export imported in reverse), tampered lines are rejected one by one, a node of another
// mesh is refused, and a node that forks its chain is caught and quarantined.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { DSM, dsmEnv, removeDir, requireBinary, runDsm, tempDir } from "./helpers/spawn-dsm.ts";

const SAMPLES = path.resolve(import.meta.dir, "../config/samples");
const SURICATA = path.join(SAMPLES, "suricata-eve.ndjson");
const ZEEK = path.join(SAMPLES, "zeek-notice.ndjson");
const lineCount = (f: string) => fs.readFileSync(f, "utf8").split("\n").filter((l) => l.trim() !== "").length;

let root: string;
let genesisFile: string;
let V: string;
const vEnv = () => ({ DSM_MESH_GENESIS: genesisFile });
const dir = (name: string) => path.join(root, name);
const file = (name: string) => path.join(root, name);

interface Summary {
  ok: boolean;
  lines: number;
  certificates: number;
  stored: number;
  filled: number;
  duplicate: number;
  gap: number;
  fork: number;
  rejected: number;
  reasons: Record<string, number>;
  missing: { node_id: string; from: number; to: number; held: number }[];
  forks: { node_id: string; seq: number }[];
  quarantine: { type: string; node_id: string; action: string; from_seq: number; reason: string }[];
}

async function ok(args: string[], env?: Record<string, string>): Promise<string> {
  const r = await runDsm(args, { env });
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function initEdge(name: string, genesis: string | null = genesisFile): Promise<string> {
  const d = dir(name);
  await ok(["init", "--data-dir", d, "--json", ...(genesis ? ["--genesis", genesis] : [])]);
  return d;
}

async function emit(d: string, type: string, n: number, env?: Record<string, string>): Promise<void> {
  for (let i = 0; i < n; i++) await ok(["emit", "--data-dir", d, "--event-type", type, "--payload", JSON.stringify({ i, note: `${type} number ${i}` })], env);
}

async function importInto(d: string, files: string[], env?: Record<string, string>) {
  const r = await runDsm(["import", "--data-dir", d, "--json", ...files], { env });
  let summary: Summary | null = null;
  try {
    summary = JSON.parse(r.stdout) as Summary;
  } catch {
    throw new Error(`dsm import printed no summary (${r.code}): ${r.stderr}`);
  }
  return { ...r, summary };
}

async function verify(d: string, env?: Record<string, string>) {
  const r = await runDsm(["verify", "--data-dir", d, "--json"], { env });
  return { code: r.code, report: JSON.parse(r.stdout) as { ok: boolean; microblocks: number; chains: number; payloads_withheld: number; fork_evidence: number }, stderr: r.stderr };
}

const readLines = (f: string) => fs.readFileSync(f, "utf8").split("\n").filter((l) => l !== "");
const writeLines = (f: string, lines: string[]) => fs.writeFileSync(f, lines.map((l) => l + "\n").join(""));

let counts = { e1: 0, e2: 0, e3: 0 };
let nodeIds: Record<string, string> = {};

beforeAll(async () => {
  requireBinary();
  root = tempDir("exchange");
  V = dir("validator");
  await ok(["init", "--data-dir", V, "--role", "validator", "--json"]);
  const card = JSON.parse(await ok(["card", "--data-dir", V, "--json"]));
  genesisFile = file("genesis.json");
  const genesis = {
    v: 1,
    type: "G",
    name: "exchange-test",
    genesis_time: new Date(Math.floor(Date.now() / 1000) * 1000).toISOString(),
    epoch_duration: 300,
    validators: [card],
    admission: { policy: "open" },
    attestation: { required: false, pcrs: [], digests: [] },
  };
  fs.writeFileSync(genesisFile, JSON.stringify(genesis, null, 2));

  const [e1, e2, e3] = await Promise.all([initEdge("e1"), initEdge("e2"), initEdge("e3")]);
  await Promise.all([
    (async () => {
      await ok(["ingest", "--data-dir", e1, SURICATA, ZEEK]);
      await emit(e1, "test.e1", 3);
    })(),
    (async () => {
      await ok(["ingest", "--data-dir", e2, SURICATA]);
      await emit(e2, "test.e2", 2);
    })(),
    (async () => {
      await ok(["ingest", "--data-dir", e3, ZEEK]);
      await emit(e3, "test.e3", 5);
    })(),
  ]);
  counts = { e1: lineCount(SURICATA) + lineCount(ZEEK) + 3, e2: lineCount(SURICATA) + 2, e3: lineCount(ZEEK) + 5 };
  for (const n of ["e1", "e2", "e3"]) nodeIds[n] = JSON.parse(await ok(["card", "--data-dir", dir(n), "--json"])).node_id;
}, 120_000);

afterAll(() => removeDir(root));

describe("dsm export / dsm import", () => {
  test("export format: certificates before microblocks, payloads or null, atomic -o", async () => {
    const r = await runDsm(["export", "--data-dir", dir("e1"), "-o", file("e1.ndjson")]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`dsm export: ${counts.e1} microblocks`);
    const lines = readLines(file("e1.ndjson")).map((l) => JSON.parse(l));
    const seenKeys = new Set<string>();
    let seq = 0;
    for (const rec of lines) {
      if (rec.kind === "key_certificate") {
        expect(Object.keys(rec).sort()).toEqual(["certificate", "kind"]);
        seenKeys.add(JSON.stringify(rec.certificate.signing_pub));
        continue;
      }
      expect(rec.kind).toBe("microblock");
      expect(Object.keys(rec).sort()).toEqual(["kind", "microblock", "payload"]);
      expect(rec.microblock.seq).toBe(++seq);
      expect(rec.payload).not.toBeNull();
      expect(rec.microblock).not.toHaveProperty("rowid");
    }
    expect(seq).toBe(counts.e1);
    expect(lines[0].kind).toBe("key_certificate");
    expect(seenKeys.size).toBeGreaterThanOrEqual(1);
    // No temp file left behind.
    expect(fs.readdirSync(root).filter((f) => f.includes(".tmp-"))).toEqual([]);

    const np = await runDsm(["export", "--data-dir", dir("e2"), "--no-payloads"]);
    expect(np.code).toBe(0);
    const recs = np.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(recs.filter((x) => x.kind === "microblock").every((x) => x.payload === null)).toBe(true);
    expect(recs.filter((x) => x.kind === "microblock").length).toBe(counts.e2);

    const from = await runDsm(["export", "--data-dir", dir("e3"), "--from-seq", "4"]);
    const mbs = from.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(mbs[0].kind).toBe("key_certificate");
    expect(mbs.filter((x) => x.kind === "microblock").map((x) => x.microblock.seq)[0]).toBe(4);
  }, 60_000);

  test("validator imports three edges out of order, gaps fill, verify counts everything", async () => {
    // e3's export split in two, the second half imported first.
    await ok(["export", "--data-dir", dir("e3"), "-o", file("e3.ndjson")]);
    const e3 = readLines(file("e3.ndjson"));
    const half = Math.ceil(e3.length / 2);
    writeLines(file("e3a.ndjson"), e3.slice(0, half));
    writeLines(file("e3b.ndjson"), e3.slice(half));

    // e2 with --no-payloads through a real pipe: dsm export | dsm import -, then the rest.
    const exp = Bun.spawn([DSM, "export", "--data-dir", dir("e2"), "--no-payloads"], { stdout: "pipe", stderr: "pipe", env: dsmEnv() });
    const imp = Bun.spawn([DSM, "import", "--data-dir", V, "--json", "-"], { stdin: exp.stdout, stdout: "pipe", stderr: "pipe", env: dsmEnv(vEnv()) });
    const [out, err, code, expCode] = await Promise.all([new Response(imp.stdout).text(), new Response(imp.stderr).text(), imp.exited, exp.exited]);
    expect(expCode).toBe(0);
    expect(code, err).toBe(0);
    const piped = JSON.parse(out) as Summary;
    expect(piped.stored).toBe(counts.e2);

    const r = await importInto(V, [file("e3b.ndjson"), file("e1.ndjson"), file("e3a.ndjson")], vEnv());
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary!.stored).toBe(counts.e1 + counts.e3);
    expect(r.summary!.filled).toBeGreaterThan(0); // the second half waited for the first
    expect(r.summary!.rejected).toBe(0);
    expect(r.summary!.missing).toEqual([]);

    const v = await verify(V, vEnv());
    expect(v.code, v.stderr).toBe(0);
    expect(v.report.microblocks).toBe(counts.e1 + counts.e2 + counts.e3);
    expect(v.report.chains).toBe(3);
    // Payloads are stored by hash: e2's Suricata events are the same as e1's (same payload
    // bytes), so only e2's own emits lack a payload.
    expect(v.report.payloads_withheld).toBe(2);

    // Again: everything is a duplicate.
    const again = await importInto(V, [file("e1.ndjson"), file("e3.ndjson")], vEnv());
    expect(again.code, again.stderr).toBe(0);
    expect(again.summary!.stored).toBe(0);
    expect(again.summary!.duplicate).toBe(counts.e1 + counts.e3);

    // The validator re-exports another node's chain; the chain round-trips.
    const re = await runDsm(["export", "--data-dir", V, "--node", nodeIds.e1!.slice(0, 10)], { env: vEnv() });
    expect(re.code, re.stderr).toBe(0);
    expect(re.stdout).toBe(fs.readFileSync(file("e1.ndjson"), "utf8"));
    const all = await runDsm(["export", "--data-dir", V, "--node", "all", "--no-payloads"], { env: vEnv() });
    expect(all.stdout.trim().split("\n").filter((l) => l.includes('"kind":"microblock"')).length).toBe(counts.e1 + counts.e2 + counts.e3);
  }, 120_000);

  test("missing seqs are reported, then filled by a later import", async () => {
    const R = await initEdge("r-missing");
    const e3 = readLines(file("e3.ndjson"));
    // Keep the certificate, drop microblocks seq 2..3.
    const cut = e3.filter((l) => !/"seq":(2|3),/.test(l));
    writeLines(file("e3-holes.ndjson"), cut);
    const r = await importInto(R, [file("e3-holes.ndjson")]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`node ${nodeIds.e3}: missing seq 2..3`);
    expect(r.summary!.stored).toBe(1);
    expect(r.summary!.gap).toBe(counts.e3 - 3);
    const fill = await importInto(R, [file("e3.ndjson")]);
    expect(fill.code, fill.stderr).toBe(0);
    expect(fill.summary!.stored).toBe(counts.e3 - 1);
  }, 60_000);

  test("a tampered line is rejected with its reason, the rest is stored", async () => {
    const R = await initEdge("r-tamper");
    const lines = readLines(file("e1.ndjson"));
    const lastNo = lines.length; // 1-based line number of the last microblock
    const last = lines[lastNo - 1]!;
    const variants: [string, (l: string) => string, string][] = [
      ["event_type", (l) => l.replace(/"event_type":"test\.e1"/, '"event_type":"test.e2"'), "id"],
      [
        "signature",
        (l) => l.replace(/"sig":"([0-9a-f])/, (_m, c: string) => `"sig":"${c === "0" ? "1" : "0"}`),
        "signature",
      ],
      ["payload", (l) => l.replace(/"note":"test\.e1 number 2"/, '"note":"test.e1 number 3"'), "payload_hash"],
    ];
    let first = true;
    for (const [name, tamper, reason] of variants) {
      const bad = tamper(last);
      expect(bad, name).not.toBe(last);
      const f = file(`e1-${name}.ndjson`);
      writeLines(f, [...lines.slice(0, -1), bad]);
      const r = await importInto(R, [f]);
      expect(r.code, name).toBe(3);
      expect(r.stderr).toContain(`${f}:${lastNo}: ${reason}:`);
      expect(r.summary!.rejected).toBe(1);
      expect(r.summary!.reasons).toEqual({ [reason]: 1 });
      expect(first ? r.summary!.stored : r.summary!.duplicate).toBe(counts.e1 - 1);
      first = false;
    }
    const good = await importInto(R, [file("e1.ndjson")]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.summary!.stored).toBe(1);
    // Garbage lines: named, counted, never fatal.
    const g = file("garbage.ndjson");
    fs.writeFileSync(g, 'not json\n{"kind":"microblock"}\n[1]\n{"kind":"key_certificate","certificate":{},"extra":1}\n');
    const gr = await importInto(R, [g]);
    expect(gr.code).toBe(3);
    expect(gr.summary!.reasons).toEqual({ format: 4 });
    for (let i = 1; i <= 4; i++) expect(gr.stderr).toContain(`${g}:${i}: format:`);
  }, 60_000);

  test("an edge of another mesh is rejected: mesh", async () => {
    const X = await initEdge("foreign", null);
    await emit(X, "test.foreign", 2);
    await ok(["export", "--data-dir", X, "-o", file("foreign.ndjson")]);
    const r = await importInto(V, [file("foreign.ndjson")], vEnv());
    expect(r.code).toBe(3);
    expect(r.summary!.stored).toBe(0);
    // Every line: two key certificates (one per emit process) and two microblocks.
    expect(r.summary!.reasons).toEqual({ mesh: readLines(file("foreign.ndjson")).length });
    expect(r.summary!.reasons.mesh).toBe(4);
    expect(r.stderr).toMatch(/foreign\.ndjson:1: mesh: /);
  }, 60_000);

  test("a fork is reported, both kept as evidence, and the node is quarantined", async () => {
    const F = await initEdge("forker");
    const F2 = dir("forker-copy");
    fs.cpSync(F, F2, { recursive: true });
    fs.chmodSync(F2, 0o700);
    await emit(F, "test.fork-a", 3);
    await emit(F2, "test.fork-b", 4);
    await ok(["export", "--data-dir", F, "-o", file("fork-a.ndjson")]);
    await ok(["export", "--data-dir", F2, "-o", file("fork-b.ndjson")]);
    const a = await importInto(V, [file("fork-a.ndjson")], vEnv());
    expect(a.code, a.stderr).toBe(0);
    expect(a.summary!.stored).toBe(3);
    const b = await importInto(V, [file("fork-b.ndjson")], vEnv());
    expect(b.code).toBe(3);
    expect(b.stderr).toMatch(/FORK: node [0-9a-f]{64} signed two different microblocks for seq 1/);
    expect(b.summary!.fork).toBe(1);
    expect(b.summary!.forks[0]!.seq).toBe(1);
    // Fork evidence proves itself: the forker is quarantined at the fork seq with no request signed.
    expect(b.summary!.quarantine as unknown).toEqual([{ node_id: b.summary!.forks[0]!.node_id, from_seq: 1, reason: "fork" }]);
    const listed = JSON.parse(await ok(["quarantine", "list", "--data-dir", V, "--json"], vEnv()));
    expect(listed.quarantined).toEqual([{ node_id: b.summary!.forks[0]!.node_id, from_seq: 1, reason: expect.stringContaining("fork") }]);
    expect(b.summary!.reasons).toEqual({ quarantined: 3 });
    expect(b.stderr).toMatch(/fork-b\.ndjson:\d+: quarantined: /);
    const v = await verify(V, vEnv());
    expect(v.report.fork_evidence).toBe(1);
    // Even the honest copy's microblocks are refused now.
    await emit(F, "test.fork-a", 1);
    await ok(["export", "--data-dir", F, "--from-seq", "4", "-o", file("fork-a2.ndjson")]);
    const later = await importInto(V, [file("fork-a2.ndjson")], vEnv());
    expect(later.code).toBe(3);
    expect(later.summary!.reasons).toEqual({ quarantined: 1 });
  }, 60_000);

  test("fatal errors exit 1", async () => {
    const r = await runDsm(["import", "--data-dir", V, file("nope.ndjson")], { env: vEnv() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no such file");
    const e = await runDsm(["export", "--data-dir", dir("e1"), "-o", path.join(root, "no-dir", "x.ndjson")]);
    expect(e.code).toBe(1);
  });
});
