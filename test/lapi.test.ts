// The CrowdSec bouncer API (src/intel/lapi.ts) over real SQLite stores on 127.0.0.1: the
// protocol as CrowdSec's own server speaks it (403 {"message":"access forbidden"}, the
// stream's new/deleted per bouncer cursor, null for an empty GET /v1/decisions, Go
// durations, Ip/Range only), the cursor surviving a restart, then the real Debian
// crowdsec-custom-bouncer pulling from it and running a script for each add and del.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Server } from "bun";
import { Ledger } from "../src/ledger/ledger.ts";
import { BouncerStore } from "../src/ledger/bouncer-store.ts";
import { DecisionStore } from "../src/ledger/decision-store.ts";
import { goDurationSigned, MAX_URL, startDecisionsApi } from "../src/intel/lapi.ts";
import type { Decision } from "../src/protocol/decision.ts";
import type { Category, Scope } from "../src/protocol/advisory.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

const MESH = "11".repeat(32);
const H = 3_600_000;
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0, 0);

function dec(scope: Scope, value: string, untilMs: number, category: Category = "c2"): Decision {
  const until = new Date(untilMs).toISOString();
  const id = crypto.createHash("sha256").update(`${scope}|${value}|${until}`).digest().readUIntBE(0, 6);
  return { id, scope, value, category, severity: "high", since: new Date(untilMs - H).toISOString(), until, epoch: 3, reporters: ["aa".repeat(32), "bb".repeat(32)], advisories: ["cc".repeat(32)] };
}

interface Api {
  ledger: Ledger;
  decisions: DecisionStore;
  bouncers: BouncerStore;
  server: Server<undefined>;
  url: string;
  logs: string[];
  pulls: [string, boolean, number][];
}

function startApi(file: string, now?: () => number): Api {
  const ledger = Ledger.open(file);
  const decisions = new DecisionStore(ledger, MESH);
  const bouncers = new BouncerStore(ledger, MESH);
  const logs: string[] = [];
  const pulls: [string, boolean, number][] = [];
  const server = startDecisionsApi({ decisions, bouncers, hostname: "127.0.0.1", port: 0, now, log: (l, m) => logs.push(`${l} ${m}`), onPull: (...a) => pulls.push(a) });
  return { ledger, decisions, bouncers, server, url: `http://127.0.0.1:${server.port}`, logs, pulls };
}

function stopApi(api: Api): void {
  api.server.stop(true);
  api.ledger.close();
}

async function call(api: Api, p: string, key: string | null, init: RequestInit = {}): Promise<{ status: number; text: string; json: any; headers: Headers }> {
  const headers = new Headers(init.headers);
  if (key !== null) headers.set("X-Api-Key", key);
  if (!headers.has("user-agent")) headers.set("user-agent", "dsm-test/1.0");
  const r = await fetch(api.url + p, { ...init, headers });
  const text = await r.text();
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, text, json, headers: r.headers };
}

describe("the bouncer API, as CrowdSec's LAPI answers", () => {
  let api: Api;
  let key: string;
  let clock = T0;
  const a = dec("ip", "203.0.113.9", T0 + 4 * H + 12_000 + 400);
  const r24 = dec("range", "198.51.100.0/24", T0 + 2 * H, "scan");
  const v6 = dec("ip", "2001:db8::66", T0 + H, "exploit");
  const dom = dec("domain", "evil.example", T0 + H);
  const ja3 = dec("ja3", "e7d705a3286e19ea42f587b344ee6865", T0 + H);
  const soon = dec("ip", "192.0.2.7", T0 + 30_000, "bruteforce");
  let file: string;

  beforeAll(() => {
    file = path.join(tempDir(), "ledger.sqlite");
    api = startApi(file, () => clock);
    key = api.bouncers.add("fw").key;
    api.decisions.replace([a, r24, v6, dom, ja3, soon], 3, T0);
  });
  afterAll(() => stopApi(api));

  test("no key or a wrong one: 403 {\"message\":\"access forbidden\"}, on every endpoint and method, logged without the key", async () => {
    for (const p of ["/v1/decisions/stream?startup=true", "/v1/decisions", "/v1/decisions?ip=203.0.113.9"]) {
      for (const k of [null, "wrong", key.slice(0, 20)]) {
        const r = await call(api, p, k);
        expect(r.status).toBe(403);
        expect(r.json).toEqual({ message: "access forbidden" });
      }
      expect((await call(api, p, "wrong", { method: "HEAD" })).status).toBe(403);
    }
    expect(api.logs.some((l) => l.startsWith("warn") && l.includes("403"))).toBe(true);
    expect(api.logs.join("\n")).not.toContain(key);
    expect(api.bouncers.get("fw")!.cursor).toBeNull();
  });

  test("startup=true: every active Ip and Range decision, CrowdSec's fields in its order, Go durations as of now", async () => {
    clock = T0;
    const r = await call(api, "/v1/decisions/stream?startup=true", key);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("application/json");
    expect(Object.keys(r.json)).toEqual(["new", "deleted"]);
    expect(r.json.deleted).toEqual([]);
    const byValue = Object.fromEntries((r.json.new as any[]).map((d) => [d.value, d]));
    expect(Object.keys(byValue).sort()).toEqual(["192.0.2.7", "198.51.100.0/24", "2001:db8::66", "203.0.113.9"]);
    expect(byValue["203.0.113.9"]).toEqual({ duration: "4h0m12s", id: a.id, origin: "dsm", scenario: "dsm/c2", scope: "Ip", type: "ban", until: a.until, value: "203.0.113.9" });
    expect(Object.keys(byValue["203.0.113.9"])).toEqual(["duration", "id", "origin", "scenario", "scope", "type", "until", "value"]);
    expect(byValue["198.51.100.0/24"]).toMatchObject({ scope: "Range", duration: "2h0m0s", scenario: "dsm/scan" });
    expect(byValue["192.0.2.7"].duration).toBe("30s");
    expect(api.pulls.at(-1)).toEqual(["fw", true, 4]);
    expect(api.bouncers.get("fw")).toMatchObject({ cursor: { seq: api.decisions.lastSeq(), ms: T0 }, ip: "127.0.0.1", type: "dsm-test", version: "1.0" });
  });

  test("an increment: nothing new is [] and []; an added decision in new; a removed and an expired one in deleted, once", async () => {
    clock = T0 + 5000;
    let r = await call(api, "/v1/decisions/stream", key);
    expect(r.text).toBe('{"new":[],"deleted":[]}');
    const b = dec("ip", "203.0.113.10", T0 + H, "malware");
    api.decisions.replace([a, v6, dom, ja3, soon, b], 4, T0 + 6000);
    clock = T0 + 10_000;
    r = await call(api, "/v1/decisions/stream?startup=false", key);
    expect(r.json.new.map((d: any) => d.value)).toEqual(["203.0.113.10"]);
    expect(r.json.deleted.map((d: any) => d.value)).toEqual(["198.51.100.0/24"]);
    // soon expires between two pulls, with no checkpoint: deleted, duration negative as CrowdSec's.
    clock = T0 + 31_000;
    r = await call(api, "/v1/decisions/stream", key);
    expect(r.json.new).toEqual([]);
    expect(r.json.deleted).toEqual([{ duration: "-1s", id: soon.id, origin: "dsm", scenario: "dsm/bruteforce", scope: "Ip", type: "ban", until: soon.until, value: "192.0.2.7" }]);
    clock = T0 + 40_000;
    expect((await call(api, "/v1/decisions/stream", key)).text).toBe('{"new":[],"deleted":[]}');
  });

  test("scopes (default ip,range, case-insensitive), origins and scenarios filter what a bouncer is sent", async () => {
    const other = api.bouncers.add("scoped").key;
    clock = T0 + 41_000;
    const values = async (q: string) => ((await call(api, `/v1/decisions/stream?startup=true${q}`, other)).json.new as any[]).map((d) => d.value).sort();
    expect(await values("")).toEqual(["2001:db8::66", "203.0.113.10", "203.0.113.9"]);
    expect(await values("&scopes=Ip")).toEqual(["2001:db8::66", "203.0.113.10", "203.0.113.9"]);
    expect(await values("&scopes=range")).toEqual([]);
    // domain, ja3 and sid are not served to bouncers, even when asked for.
    expect(await values("&scopes=ip,domain,ja3")).toEqual(["2001:db8::66", "203.0.113.10", "203.0.113.9"]);
    expect(await values("&origins=crowdsec,cscli")).toEqual([]);
    expect(await values("&origins=cscli,dsm")).toHaveLength(3);
    expect(await values("&scenarios_containing=MALWARE,exploit")).toEqual(["2001:db8::66", "203.0.113.10"]);
    expect(await values("&scenarios_not_containing=c2")).toEqual(["2001:db8::66", "203.0.113.10"]);
  });

  test("GET /v1/decisions: ip matches Ip decisions and the Ranges holding it, range with contains=false what is inside; empty is null", async () => {
    clock = T0 + 42_000;
    const r24b = dec("range", "203.0.113.0/24", T0 + H);
    api.decisions.replace([...api.decisions.current(), r24b], 5, T0 + 42_000);
    const values = async (q: string) => {
      const r = await call(api, `/v1/decisions${q}`, key);
      expect(r.status).toBe(200);
      return r.json === null ? null : (r.json as any[]).map((d) => `${d.scope}:${d.value}`).sort();
    };
    expect(await values("?ip=203.0.113.9")).toEqual(["Ip:203.0.113.9", "Range:203.0.113.0/24"]);
    expect(await values("?ip=203.0.113.200")).toEqual(["Range:203.0.113.0/24"]);
    expect(await values("?ip=192.0.2.200")).toBeNull();
    expect((await call(api, "/v1/decisions?ip=192.0.2.200", key)).text).toBe("null");
    expect(await values("?range=203.0.113.0/24&contains=false")).toEqual(["Ip:203.0.113.10", "Ip:203.0.113.9", "Range:203.0.113.0/24"]);
    expect(await values("?range=203.0.113.0/24")).toEqual(["Range:203.0.113.0/24"]);
    expect(await values("?scope=range")).toEqual(["Range:203.0.113.0/24"]);
    expect(await values("?scope=ip&value=2001:DB8::66")).toEqual(["Ip:2001:db8::66"]);
    expect(await values("?type=captcha")).toBeNull();
    expect(await values("?value=evil.example")).toBeNull();
    expect(await values("?ip=2001:db8::66")).toEqual(["Ip:2001:db8::66"]);
    const bad = await call(api, "/v1/decisions?ip=203.0.113", key);
    expect(bad.status).toBe(400);
    expect(bad.json.message).toContain("not an IP address");
    expect((await call(api, "/v1/decisions?ip=203.0.113.9&contains=maybe", key)).status).toBe(400);
    // A live query moves no stream cursor.
    expect(api.bouncers.get("fw")!.cursor!.ms).toBe(T0 + 40_000);
  });

  test("HEAD answers 200 with no body and moves no cursor", async () => {
    const before = api.bouncers.get("fw")!.cursor;
    for (const p of ["/v1/decisions/stream?startup=true", "/v1/decisions", "/v1/decisions?ip=203.0.113.9"]) {
      const r = await call(api, p, key, { method: "HEAD" });
      expect(r.status).toBe(200);
      expect(r.text).toBe("");
    }
    expect(api.bouncers.get("fw")!.cursor).toEqual(before);
  });

  test("only GET and HEAD, known paths, a bounded URL, no browsers; every error is JSON", async () => {
    const post = await call(api, "/v1/decisions", key, { method: "POST", body: "{}" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect(post.json.message).toContain("GET and HEAD");
    expect((await call(api, "/v1/decisions", key, { method: "DELETE" })).status).toBe(405);
    const nf = await call(api, "/v1/alerts", key);
    expect(nf.status).toBe(404);
    expect(nf.json.message).toContain("/v1/alerts");
    const long = await call(api, `/v1/decisions?ip=${"1".repeat(MAX_URL)}`, key);
    expect(long.status).toBe(414);
    expect(long.json.message).toContain("longer than");
    const browser = await call(api, "/v1/decisions/stream", key, { headers: { origin: "http://evil.example" } });
    expect(browser.status).toBe(403);
  });

  test("the cursor is persisted: a restarted API neither resends the set nor forgets a deletion", async () => {
    const removed = api.decisions.current().find((d) => d.value === "203.0.113.10")!;
    stopApi(api);
    clock = T0 + 50_000;
    api = startApi(file, () => clock);
    const rest = api.decisions.current().filter((d) => d.id !== removed.id);
    api.decisions.replace(rest, 6, T0 + 50_000);
    stopApi(api);
    api = startApi(file, () => clock);
    const r = await call(api, "/v1/decisions/stream", key);
    // The range added before the restart, then the removal.
    expect(r.json.new.map((d: any) => d.value)).toEqual(["203.0.113.0/24"]);
    expect(r.json.deleted.map((d: any) => d.value)).toEqual(["203.0.113.10"]);
  });
});

test("Go durations as time.Duration.Round(time.Second).String() prints them", () => {
  expect(goDurationSigned(0)).toBe("0s");
  expect(goDurationSigned(499)).toBe("0s");
  expect(goDurationSigned(500)).toBe("1s");
  expect(goDurationSigned(-500)).toBe("-1s");
  expect(goDurationSigned(-499)).toBe("0s");
  expect(goDurationSigned(59_000)).toBe("59s");
  expect(goDurationSigned(3_600_000)).toBe("1h0m0s");
  expect(goDurationSigned(4 * H + 12_400)).toBe("4h0m12s");
  expect(goDurationSigned(-65_000)).toBe("-1m5s");
  expect(goDurationSigned(100 * H)).toBe("100h0m0s");
});

// ---------------------------------------------------------------------------
// The real bouncer: Debian's crowdsec-custom-bouncer (apt-get install -y
// --no-install-recommends crowdsec-custom-bouncer; .ci/setup installs it when it can).

const BOUNCER_BIN = "/usr/bin/crowdsec-custom-bouncer";
const haveBouncer = fs.existsSync(BOUNCER_BIN);
if (!haveBouncer) console.warn(`lapi.test.ts: skipping the crowdsec-custom-bouncer test: ${BOUNCER_BIN} is not installed (apt-get install -y --no-install-recommends crowdsec-custom-bouncer)`);

interface RealBouncer {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  calls: string;
  output: () => string;
}

function runBouncer(dir: string, url: string, key: string): RealBouncer {
  fs.mkdirSync(dir, { recursive: true });
  const calls = path.join(dir, "calls.tsv");
  const script = path.join(dir, "record.sh");
  fs.writeFileSync(calls, "");
  // Called as: script add|del VALUE DURATION_SECONDS SCENARIO DECISION_JSON
  fs.writeFileSync(script, `#!/bin/sh\nprintf '%s\\t%s\\t%s\\t%s\\t%s\\n' "$1" "$2" "$3" "$4" "$5" >> '${calls}'\n`, { mode: 0o755 });
  const config = path.join(dir, "crowdsec-custom-bouncer.yaml");
  fs.writeFileSync(
    config,
    [
      `bin_path: ${script}`,
      "feed_via_stdin: false",
      "total_retries: 0",
      "scenarios_containing: []",
      "scenarios_not_containing: []",
      "origins: []",
      `piddir: ${dir}`,
      "update_frequency: 1s",
      "cache_retention_duration: 2s",
      "daemonize: false",
      "log_mode: stdout",
      "log_level: info",
      `api_url: ${url}/`,
      `api_key: ${key}`,
      "prometheus:",
      "  enabled: false",
      "  listen_addr: 127.0.0.1",
      "  listen_port: 60602",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  const proc = Bun.spawn([BOUNCER_BIN, "-c", config], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let out = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) out += new TextDecoder().decode(chunk);
  };
  void drain(proc.stdout);
  void drain(proc.stderr);
  return { proc, calls, output: () => out };
}

/** The script's calls so far: [action, value, seconds, scenario, json]. */
function callsOf(b: RealBouncer): string[][] {
  return fs
    .readFileSync(b.calls, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => l.split("\t"));
}

async function until(what: string, cond: () => boolean, b: RealBouncer[], ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; bouncer output:\n${b.map((x) => x.output()).join("\n---\n")}`);
    await Bun.sleep(100);
  }
}

describe("the real crowdsec-custom-bouncer", () => {
  const started: RealBouncer[] = [];
  let api: Api | undefined;
  afterAll(async () => {
    for (const b of started) {
      b.proc.kill("SIGKILL");
      await b.proc.exited;
    }
    if (api) stopApi(api);
  });

  test.skipIf(!haveBouncer)(
    "is told to ban what the mesh decided, then to unban a removed and an expired decision; a wrong key gets nothing",
    async () => {
      const dir = tempDir();
      api = startApi(path.join(dir, "ledger.sqlite"));
      const now = Date.now();
      const ip = dec("ip", "203.0.113.9", now + H);
      const range = dec("range", "198.51.100.0/24", now + H, "scan");
      const dom = dec("domain", "evil.example", now + H);
      const toRemove = dec("ip", "203.0.113.20", now + H, "malware");
      const soon = dec("ip", "192.0.2.7", now + 6000, "bruteforce");
      api.decisions.replace([ip, range, dom, toRemove, soon], 1, now);
      const fw = runBouncer(path.join(dir, "good"), api.url, api.bouncers.add("custom").key);
      const bad = runBouncer(path.join(dir, "bad"), api.url, "not-a-key-" + "x".repeat(33));
      started.push(fw, bad);
      const has = (action: string, value: string) => callsOf(fw).some((c) => c[0] === action && c[1] === value);

      // Startup: the Ip and Range decisions, never the domain.
      await until("the startup adds", () => ["203.0.113.9", "198.51.100.0/24", "203.0.113.20", "192.0.2.7"].every((v) => has("add", v)), started);
      const add = callsOf(fw).find((c) => c[1] === "203.0.113.9")!;
      expect(add[0]).toBe("add");
      expect(Number(add[2])).toBeGreaterThan(3500);
      expect(Number(add[2])).toBeLessThanOrEqual(3600);
      expect(add[3]).toBe("dsm/c2");
      expect(JSON.parse(add[4]!)).toMatchObject({ id: ip.id, origin: "dsm", scope: "Ip", type: "ban", value: "203.0.113.9", scenario: "dsm/c2" });
      expect(callsOf(fw).find((c) => c[1] === "198.51.100.0/24")![3]).toBe("dsm/scan");
      expect(api.bouncers.get("custom")).toMatchObject({ type: "crowdsec-custom-bouncer" });

      // A checkpoint adds one and removes one.
      const added = dec("ip", "203.0.113.50", Date.now() + H, "exploit");
      api.decisions.replace([ip, range, dom, soon, added], 2, Date.now());
      await until("the new decision and the removal", () => has("add", "203.0.113.50") && has("del", "203.0.113.20"), started);
      // soon runs out with no checkpoint in between: the bouncer is told to delete it.
      await until("the expiry", () => has("del", "192.0.2.7"), started);

      const calls = callsOf(fw);
      expect(calls.some((c) => c[1] === "evil.example")).toBe(false);
      // Each told once: no add or del repeated.
      const keys = calls.map((c) => `${c[0]} ${c[1]}`);
      expect(new Set(keys).size).toBe(keys.length);
      expect(keys.filter((k) => k.startsWith("del")).sort()).toEqual(["del 192.0.2.7", "del 203.0.113.20"]);

      // The bouncer with a wrong key was refused (403) and its script never ran.
      await until("the wrong key's 403", () => api!.logs.some((l) => l.includes("403") && l.includes("unknown X-Api-Key")), started);
      expect(callsOf(bad)).toEqual([]);
      expect(bad.output()).toMatch(/forbidden|403/i);
      expect(api.logs.join("\n")).not.toContain("not-a-key-");
    },
    60_000,
  );
});
