// Shared helpers for `bun run bench`: synthetic Suricata EVE alerts, timing,
// temp dirs and table output. Nothing here asserts a speed: every figure is
// printed next to a baseline measured in the same run.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// ---------------------------------------------------------------------------
// Sizes and environment

/** BENCH_N scales every size; BENCH_M overrides the verify ledger size on its own. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw.replace(/_/g, ""));
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

// ---------------------------------------------------------------------------
// Timing

export function now(): number {
  return performance.now();
}

export function gc(): void {
  Bun.gc(true);
}

export function rssMiB(): number {
  return process.memoryUsage().rss / (1024 * 1024);
}

// ---------------------------------------------------------------------------
// Temp dirs

const tempDirs: string[] = [];

export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dsm-bench-${label}-`));
  tempDirs.push(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  // BENCH_KEEP=1 leaves the data dirs and daemon logs for a look afterwards.
  if (!process.env.BENCH_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  else console.error(`[bench] kept ${dir}`);
  const i = tempDirs.indexOf(dir);
  if (i >= 0) tempDirs.splice(i, 1);
}

export function cleanupTempDirs(): void {
  for (const dir of tempDirs.splice(0)) removeTempDir(dir);
}

// A crash or ^C must not leave hundreds of MB of ledgers in /tmp.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    cleanupTempDirs();
    process.exit(130);
  });
}
process.on("exit", cleanupTempDirs);

// ---------------------------------------------------------------------------
// Deterministic random numbers (mulberry32): the same N gives the same data.

export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** [0, 1) */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  hex(chars: number): string {
    let s = "";
    while (s.length < chars) s += Math.floor(this.next() * 0x100000000).toString(16).padStart(8, "0");
    return s.slice(0, chars);
  }
}

// ---------------------------------------------------------------------------
// Synthetic Suricata EVE alerts, modelled on Suricata 6/7 output (ET Open rules,
// metadata block, per-protocol sub-objects, flow counters, escaped slashes).

interface Sig {
  sid: number;
  rev: number;
  msg: string;
  category: string;
  severity: number;
  proto: "http" | "tls" | "dns" | "ssh" | "smb" | "none";
  port: number;
}

const SIGS: readonly Sig[] = [
  { sid: 2013028, rev: 7, msg: "ET POLICY curl User-Agent Outbound", category: "Attempted Information Leak", severity: 2, proto: "http", port: 80 },
  { sid: 2024897, rev: 4, msg: "ET USER_AGENTS Go HTTP Client User-Agent", category: "Misc activity", severity: 3, proto: "http", port: 80 },
  { sid: 2019401, rev: 11, msg: "ET POLICY Vulnerable Java Version 1.8.x Detected", category: "Potential Corporate Privacy Violation", severity: 2, proto: "http", port: 8080 },
  { sid: 2034647, rev: 2, msg: "ET EXPLOIT Apache log4j RCE Attempt (http ldap) (CVE-2021-44228)", category: "Attempted Administrator Privilege Gain", severity: 1, proto: "http", port: 80 },
  { sid: 2031502, rev: 3, msg: "ET WEB_SERVER Possible SQL Injection Attempt UNION SELECT", category: "Web Application Attack", severity: 1, proto: "http", port: 443 },
  { sid: 2027865, rev: 4, msg: "ET INFO Observed DNS Query to .cloud TLD", category: "Potentially Bad Traffic", severity: 2, proto: "dns", port: 53 },
  { sid: 2022918, rev: 3, msg: "ET INFO DNS Query for Suspicious .top Domain", category: "Potentially Bad Traffic", severity: 2, proto: "dns", port: 53 },
  { sid: 2014702, rev: 5, msg: "ET DNS Non-DNS or Non-Compliant DNS traffic on DNS port Opcode 6 or 7 set", category: "Potentially Bad Traffic", severity: 3, proto: "dns", port: 53 },
  { sid: 2028371, rev: 2, msg: "ET JA3 Hash - Possible Malware - Cobalt Strike Beacon", category: "A Network Trojan was detected", severity: 1, proto: "tls", port: 443 },
  { sid: 2033966, rev: 1, msg: "ET INFO Observed Discord Domain in TLS SNI (discord .com)", category: "Misc activity", severity: 3, proto: "tls", port: 443 },
  { sid: 2035466, rev: 2, msg: "ET POLICY Observed Telegram API Domain in TLS SNI", category: "Potential Corporate Privacy Violation", severity: 2, proto: "tls", port: 443 },
  { sid: 2001219, rev: 20, msg: "ET SCAN Potential SSH Scan", category: "Attempted Information Leak", severity: 2, proto: "ssh", port: 22 },
  { sid: 2006435, rev: 8, msg: "ET SCAN LibSSH Based Frequent SSH Connections Likely BruteForce Attack", category: "Attempted Administrator Privilege Gain", severity: 1, proto: "ssh", port: 22 },
  { sid: 2025649, rev: 3, msg: "ET EXPLOIT Possible ETERNALBLUE Probe MS17-010 (MSF style)", category: "Attempted Administrator Privilege Gain", severity: 1, proto: "smb", port: 445 },
  { sid: 2010935, rev: 3, msg: "ET SCAN Suspicious inbound to MSSQL port 1433", category: "Potentially Bad Traffic", severity: 2, proto: "none", port: 1433 },
  { sid: 2010937, rev: 3, msg: "ET SCAN Suspicious inbound to mySQL port 3306", category: "Potentially Bad Traffic", severity: 2, proto: "none", port: 3306 },
  { sid: 2402000, rev: 6791, msg: "ET DROP Dshield Block Listed Source group 1", category: "Misc Attack", severity: 2, proto: "none", port: 23 },
  { sid: 2522326, rev: 5047, msg: "ET TOR Known Tor Relay/Router (Not Exit) Node Traffic group 327", category: "Misc Attack", severity: 2, proto: "none", port: 9001 },
];

const HOSTS = ["example.net", "cdn.example.org", "api.telegram.org", "discord.com", "update.vendor-cloud.cloud", "x9f3k2.top", "login.corp.example", "files.example.com"];
const AGENTS = ["curl/7.88.1", "Go-http-client/1.1", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "python-requests/2.31.0", "Java/1.8.0_181"];
const URLS = ["/", "/index.php?id=1%20UNION%20SELECT%201,2,3--", "/api/v1/status", "/${jndi:ldap://198.51.100.7:1389/a}", "/wp-login.php", "/static/app.js?v=3.2.1"];
const TARGETS = [["Client_Endpoint"], ["Server"], ["Web_Server"], ["SMB_Server"]];

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function privateIp(r: Rng): string {
  return r.next() < 0.6 ? `192.168.${r.int(0, 15)}.${r.int(2, 254)}` : `10.${r.int(0, 31)}.${r.int(0, 255)}.${r.int(2, 254)}`;
}

function publicIp(r: Rng): string {
  if (r.next() < 0.05) return `2001:db8:${r.hex(4)}:${r.hex(4)}::${r.hex(3)}`;
  return `${r.pick([23, 45, 52, 93, 104, 142, 151, 172, 185, 198, 203, 216])}.${r.int(0, 255)}.${r.int(0, 255)}.${r.int(1, 254)}`;
}

function date(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}_${pad2(d.getUTCMonth() + 1)}_${pad2(d.getUTCDate())}`;
}

/** One EVE alert object (as Suricata would write it, before slash escaping). */
export function eveAlert(r: Rng, i: number, baseMs: number): Record<string, unknown> {
  const sig = r.pick(SIGS);
  const tsMs = baseMs + i * 37 + r.int(0, 36);
  const usec = String(r.int(0, 999)).padStart(3, "0");
  const ts = new Date(tsMs).toISOString().replace("Z", `${usec}+0000`);
  const startTs = new Date(tsMs - r.int(0, 5000)).toISOString().replace("Z", `${usec}+0000`);
  const inbound = sig.proto === "none" || sig.proto === "smb" || (sig.proto === "ssh" && r.next() < 0.7) || sig.category === "Web Application Attack";
  const inner = privateIp(r);
  const outer = publicIp(r);
  const eph = r.int(32768, 60999);
  const [srcIp, srcPort, destIp, destPort] = inbound ? [outer, eph, inner, sig.port] : [inner, eph, outer, sig.port];
  const proto = sig.proto === "dns" ? "UDP" : "TCP";
  const created = date(Date.UTC(2010 + (sig.sid % 12), sig.sid % 12, 1 + (sig.sid % 27)));
  const rec: Record<string, unknown> = {
    timestamp: ts,
    // Suricata masks flow ids to 51 bits so that JSON readers keep them exact.
    flow_id: r.int(0, 2 ** 19 - 1) * 2 ** 32 + r.int(0, 2 ** 32 - 1),
    in_iface: r.pick(["eth0", "enp0s3", "br-lan", "wan0"]),
    event_type: "alert",
    src_ip: srcIp,
    src_port: srcPort,
    dest_ip: destIp,
    dest_port: destPort,
    proto,
    alert: {
      action: r.next() < 0.9 ? "allowed" : "blocked",
      gid: 1,
      signature_id: sig.sid,
      rev: sig.rev,
      signature: sig.msg,
      category: sig.category,
      severity: sig.severity,
      metadata: {
        ...(r.next() < 0.3 ? { attack_target: r.pick(TARGETS) } : {}),
        created_at: [created],
        signature_severity: [sig.severity === 1 ? "Major" : sig.severity === 2 ? "Minor" : "Informational"],
      },
    },
  };
  const host = r.pick(HOSTS);
  switch (sig.proto) {
    case "http":
      rec.tx_id = r.int(0, 3);
      rec.http = {
        hostname: host,
        url: r.pick(URLS),
        http_user_agent: r.pick(AGENTS),
        http_method: r.pick(["GET", "GET", "POST", "HEAD"]),
        protocol: "HTTP/1.1",
        status: r.pick([200, 200, 301, 404, 500]),
        length: r.int(0, 40000),
      };
      rec.app_proto = "http";
      break;
    case "tls":
      rec.tls = {
        subject: `CN=${host}`,
        issuerdn: r.pick(["C=US, O=Let's Encrypt, CN=R3", "C=US, O=Google Trust Services LLC, CN=GTS CA 1C3"]),
        sni: host,
        version: r.pick(["TLS 1.2", "TLS 1.3"]),
        ja3: { hash: r.hex(32) },
      };
      rec.app_proto = "tls";
      break;
    case "dns":
      rec.dns = { type: "query", id: r.int(0, 65535), rrname: `${r.hex(6)}.${host}`, rrtype: r.pick(["A", "AAAA", "TXT", "HTTPS"]), tx_id: 0, opcode: 0 };
      rec.app_proto = "dns";
      break;
    case "ssh":
      rec.ssh = { client: { proto_version: "2.0", software_version: r.pick(["libssh_0.9.6", "OpenSSH_8.2p1", "Go"]) }, server: { proto_version: "2.0", software_version: "OpenSSH_9.2p1" } };
      rec.app_proto = "ssh";
      break;
    case "smb":
      rec.smb = { id: r.int(1, 50), dialect: "NT LM 0.12", command: "SMB1_COMMAND_NEGOTIATE_PROTOCOL", status: "STATUS_SUCCESS", session_id: 0, tree_id: 0 };
      rec.app_proto = "smb";
      break;
    case "none":
      rec.app_proto = "failed";
      break;
  }
  const pktsToServer = r.int(1, 40);
  const pktsToClient = r.int(0, 40);
  rec.flow = {
    pkts_toserver: pktsToServer,
    pkts_toclient: pktsToClient,
    bytes_toserver: pktsToServer * r.int(60, 1400),
    bytes_toclient: pktsToClient * r.int(60, 1400),
    start: startTs,
  };
  return rec;
}

/** N EVE lines (no trailing newline on each). Suricata (jansson) escapes '/', so we do too. */
export function eveLines(n: number, seed = 0x5eed): string[] {
  const r = new Rng(seed);
  const base = Date.UTC(2026, 10, 25, 18, 0, 0);
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) out[i] = JSON.stringify(eveAlert(r, i, base)).replaceAll("/", "\\/");
  return out;
}

/** One buffer of newline-terminated lines. */
export function joinLines(lines: readonly string[]): Uint8Array {
  return new TextEncoder().encode(lines.join("\n") + "\n");
}

/** A ReadableStream over buf in fixed-size chunks, as a file or pipe would deliver it. */
export function chunkedStream(buf: Uint8Array, chunkBytes = 64 * 1024): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (off >= buf.length) {
        controller.close();
        return;
      }
      controller.enqueue(buf.subarray(off, Math.min(buf.length, off + chunkBytes)));
      off += chunkBytes;
    },
  });
}

// ---------------------------------------------------------------------------
// Output

export function fmtRate(perSec: number): string {
  if (!Number.isFinite(perSec)) return "-";
  return perSec >= 100_000 ? `${(perSec / 1000).toFixed(0)}k/s` : perSec >= 1000 ? `${(perSec / 1000).toFixed(1)}k/s` : `${perSec.toFixed(0)}/s`;
}

export function fmtUs(us: number): string {
  return us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2);
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}x` : "-";
}

/** A plain aligned table: first column left, the rest right. */
export function table(title: string, header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join("  ");
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [`\n${title}`, line(header), rule, ...cells.slice(1).map(line)].join("\n");
}

export function say(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

/** Progress notes go to stderr so stdout stays the report. */
export function note(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}
