// Machine output a script can rely on (issue 11): every command's --json output, run with the
// compiled binary on a small offline mesh (init, ingest, emit, mitigation, export, import into
// a second node, genesis, checkpoints on a one-validator mesh, proofs, verify-proof, log,
// show, status, card, verify, quarantine, attest on a software TPM, demo, version), then `dsm run` on
// the validator and the same questions asked of the daemon (status, peers, checkpoint) and of
// its control API directly. Every stdout line must be JSON, and every key at every depth must
// be snake_case (no /[a-z][A-Z]/) unless it is on the whitelist below. The command table of
// bin/dsm.ts is read from its source: a command without a case here fails the test.
// docs/JSON.md documents the shapes. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { cleanEnv, DSM, requireBinary, runDsm, type RunResult } from "./helpers/e2e.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { haveSwtpm, startSwtpm, type Swtpm } from "./helpers/swtpm.ts";

const SAMPLES = path.join(import.meta.dir, "..", "config", "samples");
const CAMEL = /[a-z][A-Z]/;

/**
 * Protocol-defined camelCase field names in signed or hashed objects, by command, as exact
 * key paths ("a.b[].c"). None: DESIGN.md sections 3 (genesis, G), 4 (node card N, key
 * certificate K), 5 (microblock M), 6 (checkpoint C, finality certificate F) and 7
 * (attestation, quarantine record Q), and docs/PROTOCOL.md's refinements of them (proof
 * bundles, consensus messages), name every field in snake_case, so nothing is whitelisted.
 * A future protocol field in camelCase goes here, with the DESIGN.md section that defines it.
 */
const PROTOCOL_CAMEL: Record<string, readonly string[]> = {};

/**
 * Subtrees whose keys are not dsm's but the event source's: `payload.original` is the input
 * record as parsed (docs/PROTOCOL.md "Payload shape"), hashed into payload_hash (DESIGN.md
 * section 5), so its keys are whatever Suricata, Zeek or the user wrote. Exempt only at the
 * top of an output line (show, an export line, an inclusion proof bundle, /proof). The
 * test ingests one such record with a camelCase key ("userAgent") to prove the exemption is
 * exact. (dsm emit's --payload is user data too; the test's emit payloads are snake_case.)
 */
const USER_DATA = new Set(["payload.original"]);

/**
 * Commands of the command table with no --json output, so no case here, each with why.
 * Every other command has a case: `run` prints nothing on stdout, so its case is the
 * daemon's answers (dsm status/peers/checkpoint --json with the daemon running, and its
 * control API); `demo` runs as `demo --no-mesh --json` (the mesh part starts six daemons,
 * too slow for this test; MeshDemoResult's fields are snake_case and e2e-demo.test.ts reads
 * them). An entry for a command not (or no longer) in the table is harmless.
 */
const SKIP: Record<string, string> = {
  completion: "prints a shell completion script (bash, zsh, fish): --json does not apply",
  man: "prints a roff manual page: --json does not apply",
};

/**
 * The command names of the dsm command table, parsed from source (importing bin/dsm.ts would
 * run the CLI): bin/dsm.ts's subCommands, or the module it imports subCommands from.
 */
function commandTable(): string[] {
  const bin = path.join(import.meta.dir, "..", "bin", "dsm.ts");
  let src = fs.readFileSync(bin, "utf8");
  const from = /import\s*\{[^}]*\bsubCommands\b[^}]*\}\s*from\s*"([^"]+)"/.exec(src);
  if (from) src = fs.readFileSync(path.resolve(path.dirname(bin), from[1]!), "utf8");
  const block = /(?:const|let) subCommands\b.*?=\s*\{\n([\s\S]*?)\n\};/.exec(src);
  if (!block) throw new Error("bin/dsm.ts: no subCommands table found");
  const names = [...block[1]!.matchAll(/^\s*"?([a-z][a-z0-9-]*)"?\s*:\s*\(\)\s*=>/gm)].map((m) => m[1]!);
  if (names.length === 0) throw new Error("bin/dsm.ts: the subCommands table lists no command");
  return names;
}

/** Every key path at any depth matching CAMEL that is neither protocol-whitelisted nor inside user data. */
function camelKeys(command: string, value: unknown, at = ""): string[] {
  const out: string[] = [];
  const walk = (v: unknown, p: string) => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x, `${p}[]`);
      return;
    }
    if (v === null || typeof v !== "object") return;
    for (const [k, child] of Object.entries(v)) {
      const kp = p === "" ? k : `${p}.${k}`;
      if (USER_DATA.has(kp)) continue;
      if (CAMEL.test(k) && !(PROTOCOL_CAMEL[command] ?? []).includes(kp)) out.push(`${command}: ${kp}`);
      walk(child, kp);
    }
  };
  walk(value, at);
  return out;
}

/** The keys of a value, recursively, as a sorted list of paths (the shape, not the values). */
function shape(value: unknown, p = ""): string[] {
  if (Array.isArray(value)) return [...new Set(value.flatMap((x) => shape(x, `${p}[]`)))].sort();
  if (value === null || typeof value !== "object") return [p];
  return Object.entries(value).flatMap(([k, v]) => shape(v, p === "" ? k : `${p}.${k}`)).sort();
}

interface Output {
  command: string;
  label: string;
  lines: string[];
}
const outputs: Output[] = [];
const covered = new Set<string>();

function record(command: string, label: string, text: string): void {
  covered.add(command);
  outputs.push({ command, label, lines: text.split("\n").filter((l) => l.trim() !== "") });
}

let root: string;
let env: Record<string, string>;
let genesisFile: string;
const dir = (n: string) => path.join(root, n);
const file = (n: string) => path.join(root, n);
const inMesh = () => ({ DSM_MESH_GENESIS: genesisFile });
let swtpm: (Swtpm & { ekCa?: import("./helpers/swtpm.ts").EkCa }) | null = null;
let daemon: Subprocess | null = null;

/** Runs dsm, expects an exit code, records its stdout under the command name. */
async function json(args: string[], opts: { code?: number | number[]; stdin?: string; env?: Record<string, string>; record?: boolean } = {}): Promise<RunResult> {
  const r = await runDsm(args, { ...env, ...(opts.env ?? inMesh()) }, { stdin: opts.stdin, timeoutMs: 60_000 });
  const codes = [opts.code ?? 0].flat();
  if (!codes.includes(r.code)) throw new Error(`dsm ${args.join(" ")} exited ${r.code}, expected ${codes.join(" or ")}: ${r.stderr.trim()}`);
  if (opts.record !== false) record(args[0]!, args.join(" "), r.stdout);
  return r;
}
const parse = <T = any>(r: RunResult): T => JSON.parse(r.stdout) as T;

let aId: string;
let bId: string;
let camelEventId: string;
let offlineStatus: Record<string, unknown>;
let offlineCert: Record<string, unknown>;

beforeAll(async () => {
  requireBinary();
  root = tempDir("dsm-json-");
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "2" });
  // The validator A, its card, a one-validator genesis with 1 s epochs that started 10 s ago.
  aId = parse(await json(["init", "--data-dir", dir("A"), "--role", "validator", "--json"], { env: {} })).node_id;
  fs.writeFileSync(file("A.card"), (await json(["card", "--data-dir", dir("A"), "--json"], { env: {} })).stdout);
  genesisFile = file("genesis.json");
  const t0 = new Date(Math.floor((Date.now() - 10_000) / 1000) * 1000).toISOString();
  const g = ["genesis", "--name", "json-test", "--validator", file("A.card"), "--admission", "open", "--epoch-duration", "1", "--genesis-time", t0];
  await json([...g, "-o", genesisFile, "--json"], { env: {} });
  await json([...g, "--json"], { env: {} }); // without -o the summary carries the genesis itself
  bId = parse(await json(["init", "--data-dir", dir("B"), "--genesis", genesisFile, "--role", "edge", "--json"], { env: {} })).node_id;
}, 60_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill("SIGKILL");
    await daemon.exited;
  }
  if (swtpm) {
    await swtpm.stop();
    fs.rmSync(swtpm.stateDir, { recursive: true, force: true });
  }
  cleanupTempDirs();
});

describe("--json output is snake_case everywhere", () => {
  test("the walker finds camelCase keys at any depth and exempts exactly the whitelisted paths", () => {
    expect(camelKeys("x", { a: [{ b: { fooBar: 1 } }] })).toEqual(["x: a[].b.fooBar"]);
    expect(camelKeys("x", { payload: { original: { userAgent: "a" } } })).toEqual([]);
    expect(camelKeys("x", { payload: { userAgent: "a" } })).toEqual(["x: payload.userAgent"]);
    expect(camelKeys("x", { nested: { payload: { original: { userAgent: "a" } } } })).toEqual(["x: nested.payload.original.userAgent"]);
    expect(camelKeys("x", { snake_case: 1, "suricata.alert": 2, ab12: 3, ABC: 4 })).toEqual([]);
  });

  test("ingest, emit, mitigation, log, show, status, verify, export, import", async () => {
    const samples = ["suricata-eve.ndjson", "zeek-notice.ndjson"].map((f) => path.join(SAMPLES, f));
    const acks = await json(["ingest", "--data-dir", dir("A"), "--json", ...samples]);
    expect(acks.outLines.length).toBeGreaterThan(0);
    // A stored line (its record has a camelCase key: user data), a rejected one, an empty one: exit 3.
    const mixed = await json(["ingest", "--data-dir", dir("A"), "--format", "json", "--json"], {
      stdin: '{"event_type":"login","user":"root","userAgent":"curl/8"}\nnot json\n\n',
      code: 3,
    });
    const kinds = mixed.outLines.map((l) => Object.keys(JSON.parse(l)).sort().join(","));
    expect(kinds).toEqual(["id,line,seq,source", "error,line,source", "line,skipped,source"]);
    camelEventId = JSON.parse(mixed.outLines[0]!).id;
    const e = parse(await json(["emit", "--data-dir", dir("A"), "--event-type", "honeypot.login", "--payload", '{"user":"admin","src_ip":"203.0.113.9"}', "--json"]));
    await json(["mitigation", "--data-dir", dir("A"), "--action", "block", "--target", "203.0.113.9", "--threat", e.id, "--json"]);
    await json(["mitigation", "--data-dir", dir("A"), "--action", "alert", "--target", "203.0.113.9", "--failed", "--reason", "nft failed", "--json"]);
    expect((await json(["log", "--data-dir", dir("A"), "--json", "--limit", "0"])).outLines.length).toBeGreaterThan(3);
    expect(parse(await json(["show", camelEventId, "--data-dir", dir("A"), "--json"])).payload.original.userAgent).toBe("curl/8");
    await json(["show", `${aId.slice(0, 8)}:1`, "--data-dir", dir("A"), "--json"]);
    offlineStatus = parse(await json(["status", "--data-dir", dir("A"), "--json"]));
    expect(offlineStatus.daemon).toBeNull();
    expect(parse(await json(["verify", "--data-dir", dir("A"), "--json"])).ok).toBe(true);
    await json(["export", "--data-dir", dir("A"), "-o", file("A.ndjson"), "--json"]);
    await json(["export", "--data-dir", dir("A"), "--json"]); // without -o: the NDJSON itself
    await json(["export", "--data-dir", dir("A"), "--no-payloads", "-o", file("A-np.ndjson"), "--json"]);
    // Into the edge B: first without payloads, then with them (payloads_filled), then B's own.
    expect(parse(await json(["import", "--data-dir", dir("B"), file("A-np.ndjson"), "--json"])).ok).toBe(true);
    expect(parse(await json(["import", "--data-dir", dir("B"), file("A.ndjson"), "--json"])).payloads_filled).toBeGreaterThan(0);
    await json(["emit", "--data-dir", dir("B"), "--event-type", "json", "--payload", '{"k":1}', "--json"]);
    await json(["export", "--data-dir", dir("B"), "-o", file("B.ndjson"), "--json"]);
    await json(["import", "--data-dir", dir("A"), file("B.ndjson"), "--json"]);
    await json(["status", "--data-dir", dir("B"), "--json"]);
    await json(["verify", "--data-dir", dir("B"), "--json"]);
  }, 120_000);

  let epochs: number[] = [];
  test("checkpoint, checkpoint show, proof inclusion and consistency, verify-proof", async () => {
    await Bun.sleep(1100); // the epoch holding the microblocks above closes
    const c1 = parse(await json(["checkpoint", "--data-dir", dir("A"), "--json"]));
    offlineCert = c1;
    await json(["emit", "--data-dir", dir("A"), "--event-type", "honeypot.login", "--payload", '{"user":"guest"}', "--json"]);
    await Bun.sleep(1100);
    const c2 = parse(await json(["checkpoint", "--data-dir", dir("A"), "--json"]));
    epochs = [c1.checkpoint.epoch, c2.checkpoint.epoch];
    await json(["checkpoint", "--data-dir", dir("A"), "--epoch", String(epochs[1]), "--json"], { code: 4 }); // exists: printed again
    await json(["checkpoint", "show", "--data-dir", dir("A"), "--json"]);
    await json(["checkpoint", "show", String(epochs[0]), "--data-dir", dir("A"), "--json"]);
    expect(Object.keys(parse(await json(["checkpoint", "show", "--format", "note", "--data-dir", dir("A"), "--json"])))).toEqual(["epoch", "note"]);
    const inc = await json(["proof", "inclusion", camelEventId, "--data-dir", dir("A"), "--json"]);
    fs.writeFileSync(file("inclusion.json"), inc.stdout);
    const con = await json(["proof", "consistency", String(epochs[0]), String(epochs[1]), "--data-dir", dir("A"), "--json"]);
    fs.writeFileSync(file("consistency.json"), con.stdout);
    expect(parse(await json(["verify-proof", file("inclusion.json"), "--genesis", genesisFile, "--json"])).ok).toBe(true);
    expect(parse(await json(["verify-proof", file("consistency.json"), "--genesis", genesisFile, "--json"])).ok).toBe(true);
    const bad = JSON.parse(inc.stdout);
    bad.leaf_index += 1;
    fs.writeFileSync(file("bad.json"), JSON.stringify(bad));
    expect(parse(await json(["verify-proof", file("bad.json"), "--genesis", genesisFile, "--json"], { code: 2 })).ok).toBe(false);
  }, 60_000);

  test("quarantine add, import, list, lift", async () => {
    const q = await json(["quarantine", "add", bId, "--detail", "test", "--data-dir", dir("A"), "--json"]);
    fs.writeFileSync(file("q.json"), q.stdout);
    expect(parse(await json(["quarantine", "import", file("q.json"), "--data-dir", dir("A"), "--json"]))).toEqual({ records: 1, added: 0 });
    // A request, not yet a decision: the next checkpoint takes it (this validator alone is the quorum).
    const listed = parse(await json(["quarantine", "list", "--data-dir", dir("A"), "--json"]));
    expect(listed.quarantined).toEqual([]);
    expect(listed.pending).toEqual([{ node_id: bId, action: "quarantine", validators: [0], needed: 0, requests: [expect.objectContaining({ type: "Q", basis: 0 })] }]);
    await json(["quarantine", "lift", bId, "--detail", "test over", "--data-dir", dir("A"), "--json"], { code: 1, record: false }); // nothing to lift yet
    await json(["quarantine", "--data-dir", dir("A"), "--json"]);
  }, 30_000);

  test("validators: the set in force, its history, pending requests", async () => {
    const v = parse(await json(["validators", "--data-dir", dir("A"), "--json"]));
    expect(v.current.validators.map((c: { node_id: string }) => c.node_id)).toEqual([aId]);
    expect(v.history).toHaveLength(1);
    expect(v.pending).toEqual([]);
  }, 30_000);

  test("advise, retract, intel query, decisions list, explain, export, bouncers", async () => {
    const a = parse(await json(["advise", "--indicator", "ip:203.0.113.9", "--category", "c2", "--ttl", "1h", "--data-dir", dir("A"), "--json"]));
    expect(a.indicators).toEqual([{ scope: "ip", value: "203.0.113.9" }]);
    parse(await json(["retract", "--indicator", "ip:203.0.113.9", "--data-dir", dir("A"), "--json"]));
    await json(["checkpoint", "--data-dir", dir("A"), "--json"], { code: [0, 4], record: false });
    const q = parse(await json(["intel", "query", "--data-dir", dir("A"), "--json"]));
    expect(Array.isArray(q)).toBe(true);
    expect(parse(await json(["decisions", "list", "--data-dir", dir("A"), "--json"]))).toMatchObject({ decisions: [] });
    const x = parse(await json(["decisions", "explain", "ip:203.0.113.9", "--data-dir", dir("A"), "--json"]));
    expect(x).toMatchObject({ indicator: { scope: "ip", value: "203.0.113.9" }, decision: null, min_reporters: 2 });
    const out = file("dsm.nft");
    expect(parse(await json(["decisions", "export", "--format", "nftables", "--output", out, "--data-dir", dir("A"), "--json"]))).toMatchObject({ entries: 0, changed: true });
    const b = parse(await json(["bouncers", "add", "fw1", "--data-dir", dir("A"), "--json"]));
    expect(b.name).toBe("fw1");
    expect(parse(await json(["bouncers", "list", "--data-dir", dir("A"), "--json"]))).toBeDefined();
    await json(["bouncers", "delete", "fw1", "--data-dir", dir("A"), "--json"]);
  }, 60_000);

  test("backup: the manifest", async () => {
    const m = parse(await json(["backup", file("backup-A"), "--data-dir", dir("A"), "--json"]));
    expect(m.type).toBe("dsm-backup");
  }, 30_000);

  test("attest: --golden, an answer, verify (ok and failed, with a quarantine record) on a software TPM", async () => {
    if (!haveSwtpm()) throw new Error("swtpm is not installed (apt-get install swtpm swtpm-tools tpm2-tools; .ci/run does)");
    swtpm = await startSwtpm({ ekCa: file("ek-ca") });
    fs.writeFileSync(file("ek-root.pem"), swtpm.ekCa!.root + swtpm.ekCa!.intermediate);
    await json(["init", "--data-dir", dir("T"), "--role", "validator", "--tpm", swtpm.tcti, "--json"], { env: {} });
    fs.writeFileSync(file("T.card"), (await json(["card", "--data-dir", dir("T"), "--json"], { env: {} })).stdout);
    const policy = await json(["attest", "--golden", "--data-dir", dir("T"), "--json"], { env: {} });
    fs.writeFileSync(file("policy.json"), policy.stdout);
    await json(["attest", "--ek", "--data-dir", dir("T"), "--json"], { env: {} });
    const g2 = file("genesis-tpm.json");
    await json(["genesis", "--name", "json-tpm", "--validator", file("T.card"), "--pcr-policy", file("policy.json"), "--ek-root", file("ek-root.pem"), "-o", g2, "--json"], { env: {} });
    const nonce = "11".repeat(32);
    const tEnv = { DSM_MESH_GENESIS: g2 };
    // T enrolls itself, with files, as an air-gapped verifier would enroll it.
    const challenge = await json(["attest", "enroll-challenge", file("T.card"), "--data-dir", dir("T"), "--json"], { env: tEnv });
    fs.writeFileSync(file("c.json"), challenge.stdout);
    const enrollAnswer = await json(["attest", "enroll-answer", file("c.json"), "--data-dir", dir("T"), "--json"], { env: tEnv });
    fs.writeFileSync(file("a.json"), enrollAnswer.stdout);
    expect(parse(await json(["attest", "enroll-verify", file("a.json"), "--data-dir", dir("T"), "--json"], { env: tEnv })).ok).toBe(true);
    const answer = await json(["attest", "--data-dir", dir("T"), "--nonce", nonce, "--json"], { env: tEnv });
    fs.writeFileSync(file("answer.json"), answer.stdout);
    const tId = parse(await json(["card", "--data-dir", dir("T"), "--json"], { env: tEnv })).node_id as string;
    expect(parse(await json(["attest", "verify", file("answer.json"), "--node", tId, "--genesis", g2, "--data-dir", dir("T"), "--nonce", nonce, "--json"], { env: tEnv })).ok).toBe(true);
    const failed = parse(await json(["attest", "verify", file("answer.json"), "--node", tId, "--data-dir", dir("T"), "--nonce", "22".repeat(32), "--quarantine", "--json"], { env: tEnv, code: 2 }));
    expect(failed.ok).toBe(false);
    expect(failed.quarantine?.type).toBe("Q");
  }, 60_000);

  test("demo --no-mesh --json; version --json", async () => {
    await json(["demo", "--no-mesh", "--json"], { env: {} });
    if (commandTable().includes("version")) await json(["version", "--json"], { env: {} });
  }, 60_000);

  test("dsm run: status, peers and checkpoint answered by the daemon, same shapes as without it; the control API", async () => {
    fs.rmSync(path.join(dir("A"), "run.json"), { force: true });
    let log = "";
    daemon = Bun.spawn([DSM, "run", "--data-dir", dir("A"), "--json"], { env: { ...env, ...inMesh() }, stdout: "pipe", stderr: "pipe" });
    const stderrDone = (async () => {
      for await (const chunk of daemon!.stderr as ReadableStream<Uint8Array>) log += new TextDecoder().decode(chunk);
    })();
    const stdout = new Response(daemon.stdout as ReadableStream<Uint8Array>).text();
    for (let i = 0; i < 300 && !fs.existsSync(path.join(dir("A"), "run.json")); i++) {
      if (daemon.exitCode !== null) break;
      await Bun.sleep(50);
    }
    if (!fs.existsSync(path.join(dir("A"), "run.json"))) throw new Error(`dsm run did not start: ${log}`);

    const status = parse(await json(["status", "--data-dir", dir("A"), "--json"]));
    expect(status.daemon).not.toBeNull();
    // recover asks the running validator for an edge's chain head (nothing to fetch back here).
    const info = JSON.parse(fs.readFileSync(path.join(dir("A"), "run.json"), "utf8")) as { addrs: string[]; peer_id: string };
    const rec = parse(await json(["recover", "--data-dir", dir("B"), "--json", "--timeout", "10"], { env: { ...inMesh(), DSM_GOSSIP_BOOTSTRAP_NODES: `${info.addrs[0]}/p2p/${info.peer_id}` } }));
    expect(rec).toMatchObject({ node_id: bId, recovered: 0 });
    const { daemon: d, ...rest } = status;
    const { daemon: _none, ...offlineRest } = offlineStatus;
    expect(shape(rest)).toEqual(shape(offlineRest));
    expect(d.node_id).toBe(aId);
    await json(["peers", "--data-dir", dir("A"), "--json"]);
    // Something new for the daemon to finalize, in an epoch that has closed: dsm checkpoint
    // prints the daemon's certificate (exit 0). Asked again: nothing new, exit 4, no stdout.
    await json(["emit", "--data-dir", dir("A"), "--event-type", "honeypot.login", "--payload", '{"user":"daemon"}', "--json"]);
    await Bun.sleep(1100);
    const cert = parse(await json(["checkpoint", "--data-dir", dir("A"), "--wait", "20", "--json"]));
    expect((await json(["checkpoint", "--data-dir", dir("A"), "--json"], { code: 4 })).stdout).toBe("");
    const noRanges = (p: string) => !p.startsWith("checkpoint.ranges.");
    expect(shape(cert).filter(noRanges)).toEqual(shape(offlineCert).filter(noRanges));

    // The control API itself: every endpoint, and an error.
    const sock = path.join(dir("A"), "control.sock");
    const get = async (q: string, expectStatus = 200) => {
      const res = await fetch(`http://dsm${q}`, { unix: sock } as RequestInit);
      const text = await res.text();
      expect(res.status, `${q}: ${text}`).toBe(expectStatus);
      record("run", `control GET ${q}`, text);
      return JSON.parse(text);
    };
    expect((await get("/status")).node_id).toBe(aId);
    await get("/peers");
    expect((await get(`/microblocks?node=${aId}&from=1&limit=5`)).microblocks).toHaveLength(5);
    const latest = await get("/checkpoint");
    await get(`/checkpoint?epoch=${latest.checkpoint.epoch}`);
    await get("/certificates?after=0");
    expect((await get(`/proof?id=${camelEventId}`)).payload.original.userAgent).toBe("curl/8");
    await get("/checkpoint/wait?seconds=1");
    expect(Object.keys(await get("/no-such-endpoint", 404))).toEqual(["error"]);

    daemon.kill("SIGTERM");
    expect(await daemon.exited).toBe(0);
    // dsm run prints nothing on stdout; with --json its log lines on stderr are JSON objects
    // for log shippers ({...fields, ts, level, msg}): checked like any output.
    record("run", "dsm run --json (stdout)", await stdout);
    await stderrDone;
    expect(log).toContain('"level":"info"');
    record("run", "dsm run --json (stderr log lines)", log);
  }, 90_000);

  test("every stdout line is JSON, and every key is snake_case", () => {
    const problems: string[] = [];
    let lines = 0;
    for (const o of outputs) {
      for (const [i, line] of o.lines.entries()) {
        lines++;
        let v: unknown;
        try {
          v = JSON.parse(line);
        } catch {
          problems.push(`${o.command}: (${o.label}) line ${i + 1} is not JSON: ${line.slice(0, 80)}`);
          continue;
        }
        problems.push(...camelKeys(o.command, v).map((p) => `${p}   (${o.label})`));
      }
    }
    // DSM_TEST_JSON_DUMP=FILE keeps every output seen, for checking docs/JSON.md against it.
    if (process.env.DSM_TEST_JSON_DUMP) fs.writeFileSync(process.env.DSM_TEST_JSON_DUMP, JSON.stringify(outputs, null, 1));
    expect(lines).toBeGreaterThan(100);
    expect([...new Set(problems)]).toEqual([]);
  });

  test("every command in bin/dsm.ts has a case here (or a commented skip)", () => {
    const table = commandTable();
    expect(table).toContain("ingest");
    const missing = table.filter((c) => !covered.has(c) && !(c in SKIP));
    expect(missing).toEqual([]);
    // A whitelist entry for a command that no longer exists is stale.
    expect(Object.keys(PROTOCOL_CAMEL).filter((c) => !table.includes(c))).toEqual([]);
  });
});
