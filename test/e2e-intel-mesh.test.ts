// The threat-intelligence mesh across processes (issue 15, "What must be shown"): four
// validators (f = 1, q = 3) and three edges, each `dist/dsm run` on 127.0.0.1 with 2 s epochs.
// Edges A and B carry an intel.rules entry (Suricata alerts of severity 1 -> a c2 advisory on
// src_ip, ttl 60 s, the shortest an advisory may hold); edge C serves decisions.listen to the
// real Debian crowdsec-custom-bouncer, keyed by `dsm bouncers add`, whose script logs each
// call with its time. In sequence, on one mesh:
//   1. A and B ingest alerts from one attacker: C's bouncer is told `add` within one epoch + 5 s
//      of the end of the epoch whose checkpoint finalized the second advisory (and the decision
//      holds from exactly that epoch end); it is told `del` once the TTL has run out, not before.
//   2. Poisoning fails: one reporter alone, a genesis never_block address from all three edges
//      and loopback (dsm advise --force) from two give no decision on any node, though every
//      node holds the finalized advisories; B's retraction withdraws its vote (decision gone,
//      `del`); a quorum's quarantine of B withdraws B's votes on every node (`del`), while A
//      and C's decision on another address stays. The quarantine waits for the TTL above to run
//      out (it would withdraw that decision too), so the test takes about 75 s.
//   3. All 7 nodes' `dsm decisions list --json` are byte-identical at the same epoch, with
//      decisions in force and at the end.
// Run `bun run build` first. Skipped when /usr/bin/crowdsec-custom-bouncer is absent
// (apt-get install -y --no-install-recommends crowdsec-custom-bouncer).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { killDaemons, startDaemon } from "./helpers/daemons.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

const BOUNCER = "/usr/bin/crowdsec-custom-bouncer";
const haveBouncer = fs.existsSync(BOUNCER);
if (!haveBouncer) console.warn(`test/e2e-intel-mesh.test.ts skipped: ${BOUNCER} is not installed (apt-get install -y --no-install-recommends crowdsec-custom-bouncer)`);
const EPOCH_S = 2;
const EPOCH_MS = EPOCH_S * 1000;
/** The bound of "What must be shown": one epoch plus 5 s after the checkpoint's epoch ended. */
const BOUND_MS = EPOCH_MS + 5000;
const RULE_TTL_S = 60;

// Indicators (documentation and benchmark ranges, never anyone's host).
const ATT = "203.0.113.9"; //   A and B's alerts (intel.rules), ttl 60 s: ban, then TTL runs out
const SOLO = "203.0.113.50"; // A alone (intel.rules): below min_reporters
const NEVER = "192.0.2.66"; //  A and B (intel.rules) and C (dsm advise), inside the genesis never_block 192.0.2.0/24
const LOOP = "127.0.0.1"; //    A and B, dsm advise --force: built-in never_block
const RETR = "203.0.113.20"; // A and B, ttl 1h; B retracts
const QUAR = "203.0.113.30"; // A and B, ttl 1h; B is quarantined by quorum
const KEEP = "198.51.100.77"; // A and C, ttl 1h: stays to the end

let root: string;
let env: Record<string, string>;
const V: string[] = [];
let A: string, B: string, C: string;
const ids = new Map<string, string>();
const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();
let genesisMs: number;
let bouncer: Subprocess | null = null;
let bouncerOut = "";
let callsFile: string;
const all = () => [...V, A, B, C];
const name = (d: string) => path.basename(d);

interface Decision {
  id: number;
  scope: string;
  value: string;
  category: string;
  since: string;
  until: string;
  epoch: number;
  reporters: string[];
  advisories: string[];
}
interface Listed {
  epoch: number | null;
  decisions: Decision[];
  raw: string;
}
interface IntelRecord {
  id: string;
  node_id: string;
  seq: number;
  epoch: number;
  kind: "advisory" | "retract";
  indicators: { scope: string; value: string }[];
}
interface Call {
  at: number;
  op: string;
  value: string;
  seconds: number;
  scenario: string;
  decision: Record<string, unknown>;
}

async function ok(args: string[], opts: { stdin?: string } = {}): Promise<string> {
  const r = await runDsm(args, env, opts);
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function diagnostics(): string {
  const tail = (s: string) => s.slice(-3000);
  return [...logs].map(([d, l]) => `--- ${name(d)}\n${tail(l)}`).join("\n") + `\n--- bouncer\n${tail(bouncerOut)}\n--- bouncer calls\n${fs.existsSync(callsFile) ? fs.readFileSync(callsFile, "utf8") : ""}`;
}

/** Polls fn over the given data dirs until pass() holds for every result. */
async function until<T>(dirs: string[], fn: (d: string) => Promise<T>, pass: (t: T) => boolean, what: string, timeoutMs = 30_000): Promise<T[]> {
  const end = Date.now() + timeoutMs;
  let last: T[] = [];
  while (Date.now() < end) {
    last = await Promise.all(dirs.map(fn));
    if (last.every(pass)) return last;
    await Bun.sleep(400);
  }
  throw new Error(`${what} not reached in ${timeoutMs} ms: ${JSON.stringify(last).slice(0, 4000)}\n${diagnostics()}`);
}

const list = async (d: string): Promise<Listed> => {
  const raw = await ok(["decisions", "list", "--data-dir", d, "--json"]);
  return { ...(JSON.parse(raw) as Omit<Listed, "raw">), raw };
};
const has = (l: Listed, value: string) => l.decisions.some((x) => x.value === value);
const intel = async (d: string) => JSON.parse(await ok(["intel", "query", "--data-dir", d, "--json"])) as IntelRecord[];
const explain = async (d: string, value: string) => JSON.parse(await ok(["decisions", "explain", `ip:${value}`, "--data-dir", d, "--json"])) as { decision: Decision | null; refused: string | null; advice: { node_id: string; status: string }[] };

/** Suricata EVE alert lines from `src` (severity 1, a c2 signature), `n` of them. */
function eve(src: string, n: number): string {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      timestamp: new Date().toISOString().replace("Z", "+0000"),
      flow_id: 1000 + i,
      event_type: "alert",
      src_ip: src,
      src_port: 40000 + i,
      dest_ip: "10.0.0.5",
      dest_port: 443,
      proto: "TCP",
      alert: { action: "allowed", gid: 1, signature_id: 2024897, rev: 3, signature: "ET MALWARE e2e C2 beacon", category: "A Network Trojan was detected", severity: 1 },
    }),
  ).join("\n") + "\n";
}
const ingest = (d: string, lines: string) => ok(["ingest", "--data-dir", d, "--format", "suricata"], { stdin: lines });
const advise = (d: string, value: string, extra: string[] = []) => ok(["advise", "--indicator", `ip:${value}`, "--category", "c2", "--ttl", "1h", "--data-dir", d, ...extra]);

/** What C's bouncer was told, in order: the script logs "<ms> <add|del> <value> <seconds> <scenario> <json>". */
function calls(): Call[] {
  if (!fs.existsSync(callsFile)) return [];
  return fs
    .readFileSync(callsFile, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const [at, op, value, seconds, scenario, ...rest] = l.split(" ");
      return { at: Number(at), op: op!, value: value!, seconds: Number(seconds), scenario: scenario!, decision: JSON.parse(rest.join(" ")) as Record<string, unknown> };
    });
}
async function told(op: "add" | "del", value: string, timeoutMs: number, after = 0): Promise<Call> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = calls().find((x) => x.op === op && x.value === value && x.at >= after);
    if (c) return c;
    if (Date.now() > end) throw new Error(`C's bouncer was not told "${op} ${value}" in ${timeoutMs} ms\n${diagnostics()}`);
    await Bun.sleep(200);
  }
}

/** Every node's decisions list at one epoch (polled until all agree on it): raw outputs. */
async function sameEpoch(minEpoch: number): Promise<Listed[]> {
  const end = Date.now() + 30_000;
  let last: Listed[] = [];
  while (Date.now() < end) {
    last = await Promise.all(all().map(list));
    const e = last[0]!.epoch;
    if (e !== null && e >= minEpoch && last.every((l) => l.epoch === e)) return last;
    await Bun.sleep(150);
  }
  throw new Error(`the 7 nodes never listed decisions at one epoch >= ${minEpoch}: ${last.map((l) => `${l.epoch}`).join(" ")}\n${diagnostics()}`);
}

const freePort = (): number => {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
};

/** Edits the data dir's dsm.yaml (as dsm init wrote it): one replaced text, which must be there. */
function configure(d: string, from: string, to: string): void {
  const f = path.join(d, "dsm.yaml");
  const text = fs.readFileSync(f, "utf8");
  if (!text.includes(from)) throw new Error(`${f} has no ${JSON.stringify(from)}`);
  fs.writeFileSync(f, text.replace(from, to));
}

const RULE = `  rules:
    - name: e2e-c2
      match: { event_type: suricata.alert, severity: [1] }
      indicator: src_ip
      category: c2
      severity: critical
      ttl: ${RULE_TTL_S}s
`;

beforeAll(async () => {
  if (!haveBouncer) return;
  requireBinary();
  root = tempDir("dsm-intel-");
  callsFile = path.join(root, "bouncer-calls.log");
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "1" });
  const booting = Date.now();
  for (let i = 0; i < 4; i++) V.push(path.join(root, `v${i}`));
  const cards = V.map((d) => `${d}.card`);
  await Promise.all(
    V.map(async (d, i) => {
      await ok(["init", "--data-dir", d, "--role", "validator"]);
      fs.writeFileSync(cards[i]!, await ok(["card", "--data-dir", d, "--json"]));
    }),
  );
  const genesisFile = path.join(root, "genesis.json");
  genesisMs = Math.floor(Date.now() / 1000) * 1000 - 2000;
  await ok(["genesis", "--name", "intel", ...cards.flatMap((c) => ["--validator", c]), "--admission", "open", "--epoch-duration", String(EPOCH_S), "--genesis-time", new Date(genesisMs).toISOString(), "--never-block", "192.0.2.0/24", "-o", genesisFile]);
  // The genesis intel policy: min_reporters stays the default 2; one never_block range of its own.
  expect((JSON.parse(fs.readFileSync(genesisFile, "utf8")) as { intel?: unknown }).intel).toEqual({ never_block: ["192.0.2.0/24"] });
  env.DSM_MESH_GENESIS = genesisFile;
  [A, B, C] = ["a", "b", "c"].map((n) => path.join(root, `edge-${n}`)) as [string, string, string];
  await Promise.all(
    [A, B, C].map(async (d) => {
      await ok(["init", "--data-dir", d, "--genesis", genesisFile, "--role", "edge"]);
      ids.set(d, (JSON.parse(await ok(["card", "--data-dir", d, "--json"])) as { node_id: string }).node_id);
    }),
  );
  for (const d of [A, B]) configure(d, "  rules: []\n", RULE);
  const port = freePort();
  configure(C, `  listen: ""`, `  listen: "127.0.0.1:${port}"`);

  const boot: string[] = [];
  for (const d of all()) boot.push(await startDaemon(d, env, [...boot], procs, logs));
  console.log(`7 nodes initialised and running in ${Date.now() - booting} ms`);
  // A bouncer added beside the running node, as an operator would.
  const made = JSON.parse(await ok(["bouncers", "add", "e2e-custom", "--data-dir", C, "--json"])) as { name: string; key: string };
  expect(made.name).toBe("e2e-custom");
  const key = made.key;

  // The real bouncer, its keys as the Debian package ships them (/etc/crowdsec/bouncers/),
  // in the foreground, logging to stdout, no prometheus listener.
  const script = path.join(root, "bouncer-script.sh");
  fs.writeFileSync(script, `#!/bin/sh\nprintf '%s %s\\n' "$(date +%s%3N)" "$*" >> '${callsFile}'\n`, { mode: 0o755 });
  const cfg = path.join(root, "crowdsec-custom-bouncer.yaml");
  fs.writeFileSync(
    cfg,
    [
      `bin_path: ${script}`,
      "feed_via_stdin: false",
      "total_retries: 0",
      "scenarios_containing: []",
      "scenarios_not_containing: []",
      "origins: []",
      `piddir: ${root}/`,
      "update_frequency: 1s",
      "cache_retention_duration: 10s",
      "daemonize: false",
      "log_mode: stdout",
      `log_dir: ${root}/`,
      "log_level: info",
      "log_compression: false",
      "log_max_size: 100",
      "log_max_backups: 3",
      "log_max_age: 30",
      `api_url: http://127.0.0.1:${port}/`,
      `api_key: ${key}`,
      "prometheus:",
      "  enabled: false",
      "  listen_addr: 127.0.0.1",
      "  listen_port: 60602",
      "",
    ].join("\n"),
  );
  bouncer = Bun.spawn([BOUNCER, "-c", cfg], { stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin", HOME: root } });
  for (const s of [bouncer.stdout, bouncer.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of s) bouncerOut += dec.decode(chunk);
    })();
  }
  // The bouncer's startup pull answered (an empty set), and it is still running.
  for (const end = Date.now() + 15_000; !/Processing new and deleted decisions/.test(bouncerOut); ) {
    if (bouncer.exitCode !== null || Date.now() > end) throw new Error(`crowdsec-custom-bouncer did not start against 127.0.0.1:${port}\n${diagnostics()}`);
    await Bun.sleep(100);
  }
  // C's daemon authenticated it by its key: a stream pull from 127.0.0.1 by the custom bouncer.
  const [seen] = await until(
    [C],
    async (d) => (JSON.parse(await ok(["bouncers", "list", "--data-dir", d, "--json"])) as { bouncers: { name: string; last_pull: string | null; ip: string | null; type: string | null }[] }).bouncers,
    (bs) => bs.length === 1 && bs[0]!.last_pull !== null,
    "the bouncer's first pull, on C",
    10_000,
  );
  expect(seen![0]).toMatchObject({ name: "e2e-custom", ip: "127.0.0.1", type: "crowdsec-custom-bouncer" });
}, 120_000);

afterAll(async () => {
  if (bouncer) {
    bouncer.kill("SIGKILL");
    await bouncer.exited;
  }
  await killDaemons(procs);
  cleanupTempDirs();
});

/** End (ms) of epoch e: epoch e is [genesis + e * D, genesis + (e + 1) * D). */
const epochEnd = (e: number) => genesisMs + (e + 1) * EPOCH_MS;

/** When (ms) each line matching `re` (its first group a number) first showed in a daemon's log. */
function watchLog(dir: string, re: RegExp): { seen: Map<number, number>; stop: () => void } {
  const seen = new Map<number, number>();
  const g = new RegExp(re.source, "g");
  const timer = setInterval(() => {
    for (const m of (logs.get(dir) ?? "").matchAll(g)) if (!seen.has(Number(m[1]))) seen.set(Number(m[1]), Date.now());
  }, 25);
  return { seen, stop: () => clearInterval(timer) };
}

let attack: Decision;
let attackAdd: Call;

describe.skipIf(!haveBouncer)(`threat intelligence across a mesh of processes, served to the real ${BOUNCER}`, () => {
  test("A and B's alerts from one attacker: C's bouncer bans it within one epoch + 5 s of the checkpoint", async () => {
    const t0 = Date.now();
    const finalizedOnV0 = watchLog(V[0]!, /epoch (\d+) finalized/);
    const decidedOnC = watchLog(C, /decisions as of epoch (\d+)/);
    await Promise.all([ingest(A, eve(ATT, 3)), ingest(B, eve(ATT, 2))]);
    attackAdd = await told("add", ATT, 40_000);
    finalizedOnV0.stop();
    decidedOnC.stop();
    const [onC] = await until([C], list, (l) => has(l, ATT), "the decision on C");
    attack = onC!.decisions.find((d) => d.value === ATT)!;
    expect(attack).toMatchObject({ scope: "ip", category: "c2", reporters: [ids.get(A)!, ids.get(B)!].sort() });
    expect(attack.advisories).toHaveLength(2);

    // The checkpoint that finalized the second advisory: the later of the two, as a validator
    // holds them, and its certificate covers that advisory's microblock.
    const recs = (await intel(V[0]!)).filter((r) => r.kind === "advisory" && r.indicators.some((i) => i.value === ATT));
    expect(recs.map((r) => r.id).sort()).toEqual([...attack.advisories].sort());
    const second = recs.reduce((a, b) => (b.epoch > a.epoch ? b : a));
    expect(attack.epoch).toBe(second.epoch);
    const cert = JSON.parse(await ok(["checkpoint", "show", String(second.epoch), "--data-dir", V[1]!, "--json"])) as { checkpoint: { ranges: Record<string, [number, number]> } };
    const range = cert.checkpoint.ranges[second.node_id]!;
    expect(range[0] <= second.seq && second.seq <= range[1]).toBe(true);
    // The decision holds from the end of that epoch, while both advisories hold: each for the
    // rule's TTL from the end of the epoch whose checkpoint first included it.
    const end = epochEnd(attack.epoch);
    expect(Date.parse(attack.since)).toBe(end);
    expect(Date.parse(attack.until)).toBe(Math.min(...recs.map((r) => epochEnd(r.epoch))) + RULE_TTL_S * 1000);

    const late = attackAdd.at - end;
    const step = (m: Map<number, number>) => (m.has(attack.epoch) ? `${m.get(attack.epoch)! - end} ms` : "unseen");
    console.log(
      `ban of ${ATT} on C's bouncer: ${late} ms after the end of epoch ${attack.epoch} (the checkpoint with the second advisory); bound ${BOUND_MS} ms; ` +
        `v0 logged the epoch finalized at +${step(finalizedOnV0.seen)}, C its decisions as of it at +${step(decidedOnC.seen)}; ${attackAdd.at - t0} ms after the alerts were ingested`,
    );
    expect(late).toBeLessThanOrEqual(BOUND_MS);
    expect(attackAdd.scenario).toBe("dsm/c2");
    expect(attackAdd.seconds).toBeGreaterThan(0);
    expect(attackAdd.seconds).toBeLessThanOrEqual(RULE_TTL_S);
    expect(attackAdd.decision).toMatchObject({ origin: "dsm", type: "ban", scope: "Ip", value: ATT, scenario: "dsm/c2", until: attack.until });
  }, 60_000);

  test("poisoning fails: one reporter alone, never_block and loopback give no decision on any node", async () => {
    // Loopback is a local network: dsm advise refuses it without --force.
    const refused = await runDsm(["advise", "--indicator", `ip:${LOOP}`, "--category", "c2", "--ttl", "1h", "--data-dir", A], env);
    expect(refused.code).toBe(1);
    // Each node's advice in this order; the last three of A and B come after the poisoning
    // attempts in their chains, so once every node decides on them, each node's checkpoints
    // cover all of A's and B's advice (a chain is finalized in order).
    await Promise.all([
      (async () => {
        await ingest(A, eve(SOLO, 2) + eve(NEVER, 2));
        await advise(A, LOOP, ["--force"]);
        for (const v of [RETR, QUAR, KEEP]) await advise(A, v);
      })(),
      (async () => {
        await ingest(B, eve(NEVER, 2));
        await advise(B, LOOP, ["--force"]);
        for (const v of [RETR, QUAR]) await advise(B, v);
      })(),
      (async () => {
        await advise(C, NEVER);
        await advise(C, KEEP);
      })(),
    ]);
    const lists = await until(all(), list, (l) => has(l, RETR) && has(l, QUAR) && has(l, KEEP), "the decisions on RETR, QUAR and KEEP on every node", 40_000);
    for (const [i, l] of lists.entries()) {
      for (const v of [SOLO, NEVER, LOOP]) expect({ node: name(all()[i]!), value: v, decided: has(l, v) }).toEqual({ node: name(all()[i]!), value: v, decided: false });
    }
    // Not for want of advice: every node holds it, finalized, at or before the epoch it lists.
    const held = await Promise.all(all().map(intel));
    for (const [i, recs] of held.entries()) {
      const of = (v: string) => recs.filter((r) => r.kind === "advisory" && r.indicators.some((x) => x.value === v));
      expect({ node: name(all()[i]!), solo: of(SOLO).map((r) => r.node_id), never: new Set(of(NEVER).map((r) => r.node_id)), loop: new Set(of(LOOP).map((r) => r.node_id)) }).toEqual({
        node: name(all()[i]!),
        solo: [ids.get(A)!],
        never: new Set([ids.get(A)!, ids.get(B)!, ids.get(C)!]),
        loop: new Set([ids.get(A)!, ids.get(B)!]),
      });
      for (const v of [SOLO, NEVER, LOOP]) for (const r of of(v)) expect(r.epoch).toBeLessThanOrEqual(lists[i]!.epoch!);
    }
    const [solo, never, loop] = await Promise.all([SOLO, NEVER, LOOP].map((v) => explain(C, v)));
    expect(solo!.decision).toBeNull();
    expect(solo!.refused).toMatch(/1 of the 2/);
    expect(never!.decision).toBeNull();
    expect(never!.refused).toMatch(/never_block \(192\.0\.2\.0\/24\)/);
    expect(loop!.decision).toBeNull();
    expect(loop!.refused).toMatch(/never_block \(127\.0\.0\.0\/8\)/);
    for (const v of [RETR, QUAR, KEEP]) await told("add", v, BOUND_MS);
    expect(calls().filter((c) => [SOLO, NEVER, LOOP].includes(c.value))).toEqual([]);
  }, 90_000);

  test("a retraction withdraws its reporter's vote: the decision goes on every node, the bouncer is told del", async () => {
    const t0 = Date.now();
    await ok(["retract", "--indicator", `ip:${RETR}`, "--data-dir", B]);
    await until(all(), list, (l) => !has(l, RETR) && has(l, QUAR) && has(l, KEEP), "RETR withdrawn on every node");
    const del = await told("del", RETR, BOUND_MS, t0);
    console.log(`retraction: C's bouncer told del ${RETR} ${del.at - t0} ms after dsm retract`);
    const e = await explain(C, RETR);
    expect(e.decision).toBeNull();
    expect(e.advice.find((a) => a.node_id === ids.get(B))!.status).toBe("retracted");
    expect(e.advice.find((a) => a.node_id === ids.get(A))!.status).toBe("counted");
  }, 60_000);

  test("every node's decisions list --json is byte-identical at the same epoch, with decisions in force", async () => {
    const lists = await sameEpoch(0);
    for (const [i, l] of lists.entries()) expect({ node: name(all()[i]!), raw: l.raw }).toEqual({ node: name(all()[i]!), raw: lists[0]!.raw });
    expect(lists[0]!.decisions.map((d) => d.value).sort()).toEqual([ATT, QUAR, KEEP].sort());
    console.log(`7 nodes byte-identical at epoch ${lists[0]!.epoch}: ${lists[0]!.decisions.length} decisions, ${lists[0]!.raw.length} bytes`);
  }, 60_000);

  test("the ban ends when the TTL runs out: C's bouncer is told del, not before", async () => {
    const untilMs = Date.parse(attack.until);
    const del = await told("del", ATT, Math.max(0, untilMs - Date.now()) + BOUND_MS + 5000);
    console.log(`expiry: C's bouncer told del ${ATT} ${del.at - untilMs} ms after its until (${attack.until}); bound ${BOUND_MS} ms`);
    expect(del.at).toBeGreaterThanOrEqual(untilMs);
    expect(del.at - untilMs).toBeLessThanOrEqual(BOUND_MS);
    expect(calls().filter((c) => c.value === ATT).map((c) => c.op)).toEqual(["add", "del"]);
    // The lists drop it with the first checkpoint whose epoch ends at or after its until
    // (until then they show the set as of their checkpoint, expired entry included). An idle
    // mesh makes no checkpoint: one event on C makes the next one.
    await ingest(C, JSON.stringify({ timestamp: new Date().toISOString().replace("Z", "+0000"), event_type: "flow", src_ip: "10.0.0.7", dest_ip: "10.0.0.5", proto: "TCP" }) + "\n");
    await until(all(), list, (l) => l.epoch !== null && untilMs <= epochEnd(l.epoch) && !has(l, ATT), "ATT gone from every node's list");
  }, 120_000);

  test("a quorum's quarantine of one of two reporters withdraws the decision on every node; the bouncer is told del", async () => {
    const t0 = Date.now();
    const b = ids.get(B)!;
    for (const v of [0, 1, 2]) await ok(["quarantine", "add", b, "--detail", `e2e: validator ${v}: B poisons`, "--data-dir", V[v]!]);
    await until(all(), list, (l) => !has(l, QUAR), "QUAR withdrawn on every node", 40_000);
    const del = await told("del", QUAR, BOUND_MS, t0);
    // The quorum's decision, as the validator that did not ask holds it.
    const q = JSON.parse(await ok(["quarantine", "list", "--data-dir", V[3]!, "--json"])) as { quarantined: { node_id: string }[] };
    expect(q.quarantined.map((x) => x.node_id)).toEqual([b]);
    console.log(`quarantine: C's bouncer told del ${QUAR} ${del.at - t0} ms after the third validator's request was made`);
    // Only B's votes: A and C's decision stands.
    for (const l of await Promise.all(all().map(list))) expect(l.decisions.map((d) => d.value)).toEqual([KEEP]);
    const e = await explain(C, QUAR);
    expect(e.decision).toBeNull();
    expect(e.advice.find((a) => a.node_id === b)!.status).toBe("quarantined");
    expect(calls().some((c) => c.op === "del" && c.value === KEEP)).toBe(false);
  }, 90_000);

  test("at the end, all 7 nodes' decisions list --json are byte-identical at the same epoch", async () => {
    const lists = await sameEpoch(0);
    for (const [i, l] of lists.entries()) expect({ node: name(all()[i]!), raw: l.raw }).toEqual({ node: name(all()[i]!), raw: lists[0]!.raw });
    expect(lists[0]!.decisions.map((d) => [d.value, d.reporters])).toEqual([[KEEP, [ids.get(A)!, ids.get(C)!].sort()]]);
    expect(calls().filter((c) => [SOLO, NEVER, LOOP].includes(c.value))).toEqual([]);
    expect(bouncer!.exitCode).toBeNull();
  }, 60_000);
});
