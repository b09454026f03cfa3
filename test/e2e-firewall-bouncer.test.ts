// A real bouncer, not ours, in nftables mode (issue 15 "What must be shown"): Debian's
// crowdsec-firewall-bouncer pulls dsm's CrowdSec-compatible decisions API
// (src/intel/lapi.ts over a DecisionStore and a BouncerStore in a real ledger) and builds its
// nft sets, all inside a network namespace this test makes (never the host's own tables).
// The API runs inside the namespace too (a bun child under ip netns exec), on 127.0.0.1.
// Skipped, saying why, when not root, or when ip, nft or crowdsec-firewall-bouncer are
// missing (apt-get install -y --no-install-recommends crowdsec-firewall-bouncer: its
// Recommends pull crowdsec, whose postinst fails here).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const isRoot = process.getuid?.() === 0;
const bouncerBin = Bun.which("crowdsec-firewall-bouncer");
const skip = !isRoot
  ? "not root (needs ip netns)"
  : !Bun.which("ip")
    ? "ip (iproute2) is not installed"
    : !Bun.which("nft")
      ? "nft is not installed (apt-get install nftables)"
      : !bouncerBin
        ? "crowdsec-firewall-bouncer is not installed (apt-get install -y --no-install-recommends crowdsec-firewall-bouncer)"
        : "";
if (skip) console.log(`e2e-firewall-bouncer.test.ts: skipped: ${skip}`);

const NS = `dsm-test-fwb-${process.pid}`;
const ROOT = path.resolve(import.meta.dir, "..");
let dir = "";
let nsMade = false;
const children: ChildProcess[] = [];

function run(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8", timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status ?? -1, out: r.stdout ?? "", err: r.stderr ?? String(r.error ?? "") };
}
function ok(r: { code: number; out: string; err: string }, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${`${r.err}${r.out}`.slice(0, 2000)}`);
  return r.out;
}
const inNs = (args: string[]) => run(["ip", "netns", "exec", NS, ...args]);

/** Started in the namespace: the decisions API over a fresh ledger, with a few decisions and one bouncer; prints its key and port, then takes commands on stdin. */
const SERVER = `
import { Ledger } from ${JSON.stringify(path.join(ROOT, "src/ledger/ledger.ts"))};
import { DecisionStore } from ${JSON.stringify(path.join(ROOT, "src/ledger/decision-store.ts"))};
import { BouncerStore } from ${JSON.stringify(path.join(ROOT, "src/ledger/bouncer-store.ts"))};
import { startDecisionsApi } from ${JSON.stringify(path.join(ROOT, "src/intel/lapi.ts"))};
const mesh = "ab".repeat(32);
const ledger = Ledger.open(process.argv[2]);
const decisions = new DecisionStore(ledger, mesh);
const bouncers = new BouncerStore(ledger, mesh);
const { key } = bouncers.add("fw");
const iso = (ms) => new Date(ms).toISOString();
const dec = (id, scope, value, leftS) => ({ id, scope, value, category: "c2", severity: "high", since: iso(Date.now() - 1000), until: iso(Date.now() + leftS * 1000), epoch: 3, reporters: ["n1", "n2"], advisories: ["a" + id] });
const sets = {
  first: [dec(1, "ip", "203.0.113.9", 3600), dec(2, "ip", "2001:db8::9", 1800), dec(3, "range", "198.51.100.0/24", 900), dec(4, "domain", "evil.example", 900)],
  second: [dec(1, "ip", "203.0.113.9", 3600), dec(5, "ip", "192.0.2.77", 600)],
};
let epoch = 3;
decisions.replace(sets.first, epoch, Date.now());
const server = startDecisionsApi({ decisions, bouncers, hostname: "127.0.0.1", port: 0, onPull: (b, startup, count) => console.log("pull " + b + " " + startup + " " + count) });
console.log("ready " + server.port + " " + key);
for await (const line of console) {
  if (sets[line.trim()]) { decisions.replace(sets[line.trim()], ++epoch, Date.now()); console.log("replaced " + line.trim()); }
}
`;

let api: ChildProcess | null = null;
let apiOut = "";
async function waitFor(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

beforeAll(() => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-fwb-"));
  ok(run(["ip", "netns", "add", NS]), `ip netns add ${NS}`);
  nsMade = true;
  ok(inNs(["ip", "link", "set", "lo", "up"]), "ip link set lo up");
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (nsMade) run(["ip", "netns", "delete", NS]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The elements of the bouncer's set, as nft lists them (without the counting-down expires). */
function bouncerSet(family: "ip" | "ip6", table: string, set: string): string[] {
  const j = JSON.parse(ok(inNs(["nft", "-j", "list", "set", family, table, set]), "nft list set")) as { nftables: { set?: { elem?: { elem: { val: unknown } }[] } }[] };
  return (j.nftables.find((x) => x.set)!.set!.elem ?? []).map(({ elem }) => String(elem.val)).sort();
}

test.skipIf(skip !== "")(
  "crowdsec-firewall-bouncer (nftables mode, in a network namespace) builds its sets from dsm's decisions API and follows a change",
  async () => {
    const script = path.join(dir, "server.ts");
    fs.writeFileSync(script, SERVER);
    api = spawn("ip", ["netns", "exec", NS, process.execPath, script, path.join(dir, "ledger.sqlite")], { stdio: ["pipe", "pipe", "pipe"] });
    children.push(api);
    api.stdout!.on("data", (b) => (apiOut += b));
    api.stderr!.on("data", (b) => (apiOut += b));
    await waitFor("the decisions API", () => /ready \d+ \S+/.test(apiOut) || api!.exitCode !== null, 20_000);
    const [, port, key] = /ready (\d+) (\S+)/.exec(apiOut) ?? [];
    if (!port) throw new Error(`decisions API did not start: ${apiOut}`);

    const config = [
      "mode: nftables",
      `pid_dir: ${dir}/`,
      "update_frequency: 1s",
      "daemonize: false",
      "log_mode: stdout",
      "log_level: info",
      `api_url: http://127.0.0.1:${port}/`,
      `api_key: ${key}`,
      "disable_ipv6: false",
      "deny_action: DROP",
      "deny_log: false",
      "supported_decisions_types:",
      "  - ban",
      "blacklists_ipv4: crowdsec-blacklists",
      "blacklists_ipv6: crowdsec6-blacklists",
      "nftables:",
      "  ipv4:",
      "    enabled: true",
      "    set-only: false",
      "    table: crowdsec",
      "    chain: crowdsec-chain",
      "  ipv6:",
      "    enabled: true",
      "    set-only: false",
      "    table: crowdsec6",
      "    chain: crowdsec6-chain",
      "prometheus:",
      "  enabled: false",
      "  listen_addr: 127.0.0.1",
      "  listen_port: 60601",
      "",
    ].join("\n");
    const cfg = path.join(dir, "bouncer.yaml");
    fs.writeFileSync(cfg, config);
    let bouncerOut = "";
    const bouncer = spawn("ip", ["netns", "exec", NS, bouncerBin!, "-c", cfg], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(bouncer);
    bouncer.stdout!.on("data", (b) => (bouncerOut += b));
    bouncer.stderr!.on("data", (b) => (bouncerOut += b));

    const v4 = () => (inNs(["nft", "list", "set", "ip", "crowdsec", "crowdsec-blacklists"]).code === 0 ? bouncerSet("ip", "crowdsec", "crowdsec-blacklists") : []);
    try {
      await waitFor("the bouncer's first sets", () => v4().includes("203.0.113.9"), 20_000);
      const ruleset = ok(inNs(["nft", "list", "ruleset"]), "nft list ruleset");
      console.log(`e2e-firewall-bouncer: the bouncer's ruleset in ${NS}:\n${ruleset}`);
      // 0.0.25's nftables backend makes its sets without the interval flag: a Range decision
      // becomes its network address only (198.51.100.0/24 -> 198.51.100.0), as the bouncer logs.
      expect(v4()).toEqual(["198.51.100.0", "203.0.113.9"]);
      expect(bouncerSet("ip6", "crowdsec6", "crowdsec6-blacklists")).toEqual(["2001:db8::9"]);
      expect(ruleset).toContain("ip saddr @crowdsec-blacklists");
      expect(apiOut).toMatch(/pull fw true 3/); // the domain decision is not a CrowdSec scope: 3 of 4 sent

      // The next checkpoint's set: two decisions withdrawn, one added; the bouncer's next pull follows.
      api.stdin!.write("second\n");
      await waitFor("the bouncer to follow the change", () => v4().join(" ") === "192.0.2.77 203.0.113.9", 20_000);
      await waitFor("the IPv6 deletion", () => bouncerSet("ip6", "crowdsec6", "crowdsec6-blacklists").length === 0, 10_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- bouncer ---\n${bouncerOut.slice(-3000)}\n--- api ---\n${apiOut.slice(-3000)}`);
    } finally {
      bouncer.kill("SIGTERM");
    }
    // The host has no crowdsec table: everything happened in the namespace.
    expect(run(["nft", "list", "tables"]).out).not.toContain("crowdsec");
  },
  90_000,
);
