// Decisions as files routers and IDSs load (`dsm decisions export`, DESIGN.md section 12,
// issue 15 "Without a bouncer"): for a cron line or a systemd path unit on a box that runs no
// CrowdSec bouncer. Pure: the text is a function of the decisions, the format and opts alone,
// with every list sorted, so two runs over the same decision set write the same bytes.
//
// Formats (the reasons, and what was checked against the real tools, are in each writer):
//   nftables          a file for `nft -f`: table inet dsm with sets v4 and v6 (interval, timeout)
//   ipset             input for `ipset restore`: hash:net sets dsm-v4 and dsm-v6, swapped in atomically
//   plain             one value per line (ip and range by default; any scopes on request)
//   suricata-dataset  ONE Suricata dataset file (one type per file): pass exactly one scope
//
// nftables and ipset elements carry a timeout (the seconds left until the decision's `until`
// at opts.nowMs), so the kernel drops them on time even when no new file comes; those two
// files therefore change every second, and they carry a "# dsm-digest:" line that changes
// only when the decision set does (values and absolute until times): a cron job compares
// that line and reloads only when it changed. plain and suricata-dataset files hold no time,
// so `cmp` on the whole file does.
import { createHash } from "node:crypto";
import { formatIp, parseCidr, type Cidr } from "../encoding/ip.ts";
import { parseTime } from "../encoding/time.ts";
import { SCOPES, type Scope } from "../protocol/advisory.ts";
import type { Decision } from "../protocol/decision.ts";

export const EXPORT_FORMATS = ["nftables", "ipset", "plain", "suricata-dataset"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  /** The time the file is for (ms since the epoch): decisions with until <= nowMs are left out; timeouts count from it. */
  nowMs: number;
  /**
   * nftables: the table's name (family inet), default "dsm". ipset: the prefix of the set
   * names (NAME-v4, NAME-v6), default "dsm". Letters, digits and "_", starting with a letter,
   * at most 23 characters (ipset names are at most 31 with "-v4-new"). Ignored by plain and
   * suricata-dataset.
   */
  name?: string;
  /**
   * Which scopes to write. nftables, ipset: ip and/or range (the default is both; other
   * scopes are refused, a firewall set holds addresses). plain: any (default ip and range).
   * suricata-dataset: exactly one, naming the dataset this file is (see SURICATA_DATASETS);
   * the caller writes one file per dataset.
   */
  scopes?: Scope[];
}

/** What a Suricata dataset file of each scope holds, and the rule that reads it. */
export const SURICATA_DATASETS = {
  // Suricata's "ip" type (7.0 and later) takes IPv4 and IPv6 addresses in one set and
  // matches both (DatasetLookupIPv6 accepts 4- and 16-byte buffers), so one file serves both.
  ip: { type: "ip", rule: 'alert ip any any -> any any (msg:"dsm decision: address"; ip.src; dataset:isset,dsm-ip, type ip, load dsm-ip.lst; sid:9000001; rev:1;)' },
  // "string" datasets are base64 per line; exact names (a subdomain does not match).
  domain: { type: "string", rule: 'alert dns any any -> any any (msg:"dsm decision: domain"; dns.query; dataset:isset,dsm-domain, type string, load dsm-domain.lst; sid:9000002; rev:1;)' },
  // "md5" datasets are 32 hex digits per line and match a 16-byte buffer: ja3.hash is the hash
  // as 32 characters of text, so the rule hashes ja3.string itself (to_md5), which is the JA3 hash.
  ja3: { type: "md5", rule: 'alert tls any any -> any any (msg:"dsm decision: JA3"; ja3.string; to_md5; dataset:isset,dsm-ja3, type md5, load dsm-ja3.lst; sid:9000003; rev:1;)' },
} as const satisfies Partial<Record<Scope, { type: string; rule: string }>>;
export type SuricataDatasetScope = keyof typeof SURICATA_DATASETS;

export interface ExportResult {
  /** The file's text (ends with a newline unless empty). */
  text: string;
  /** Lines of data (set elements, values) written. */
  entries: number;
  /** Active decisions of the requested scopes left out, and why: for the caller to say so (a Suricata dataset file cannot hold a comment). */
  omitted: { scope: Scope; count: number; reason: string }[];
  /**
   * "sha256:<hex>" that changes exactly when the file must be loaded again: nftables and ipset,
   * over the elements and their absolute until times (the "# dsm-digest:" line); plain and
   * suricata-dataset, over the lines (the same as comparing the files).
   */
  digest: string;
}

/** The file for `format`; see exportDecisionsResult for the counts the caller may print. Throws a plain Error on bad options. */
export function exportDecisions(decisions: readonly Decision[], format: ExportFormat, opts: ExportOptions): string {
  return exportDecisionsResult(decisions, format, opts).text;
}

const NAME = /^[A-Za-z][A-Za-z0-9_]{0,22}$/;
const ADDRESS_SCOPES: readonly Scope[] = ["ip", "range"];
/** ipset's timeout is at most 2147483 s (about 24.8 days; `ipset add ... timeout 2592000` says "out of range 0-2147483"). */
export const IPSET_MAX_TIMEOUT_S = 2_147_483;
/**
 * maxelem of the ipset sets: fixed, because `create -exist` fails when a set of that name
 * exists with another maxelem (hashsize, which grows, is not compared: checked with ipset
 * 7.17). 2^24 is above genesis intel.max_decisions' ceiling (10 000 000); it allocates nothing.
 */
export const IPSET_MAXELEM = 16_777_216;

export function exportDecisionsResult(decisions: readonly Decision[], format: ExportFormat, opts: ExportOptions): ExportResult {
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new Error(`export format ${JSON.stringify(format)}: use one of ${EXPORT_FORMATS.join(", ")}`);
  if (!Number.isFinite(opts.nowMs)) throw new Error("export: nowMs must be a time in milliseconds");
  const name = opts.name ?? "dsm";
  if (!NAME.test(name)) throw new Error(`export name ${JSON.stringify(name)}: letters, digits and _, starting with a letter, at most 23 characters`);
  for (const s of opts.scopes ?? []) if (!(SCOPES as readonly string[]).includes(s)) throw new Error(`export scope ${JSON.stringify(s)}: use one of ${SCOPES.join(", ")}`);
  const active = activeDecisions(decisions, opts.nowMs);
  switch (format) {
    case "nftables":
      return nftables(active, addressScopes(format, opts.scopes), name, opts.nowMs);
    case "ipset":
      return ipset(active, addressScopes(format, opts.scopes), name, opts.nowMs);
    case "plain":
      return plain(active, opts.scopes ?? ADDRESS_SCOPES);
    case "suricata-dataset":
      return suricataDataset(active, opts.scopes);
  }
}

interface Active {
  scope: Scope;
  value: string;
  untilMs: number;
}

/** Decisions still in force at nowMs; one entry per (scope, value), holding the latest until (a renewed decision and its predecessor can both be listed). */
function activeDecisions(decisions: readonly Decision[], nowMs: number): Active[] {
  const byKey = new Map<string, Active>();
  for (const d of decisions) {
    const untilMs = parseTime(d.until);
    if (untilMs === undefined) throw new Error(`decision ${d.id} (${d.scope}:${d.value}): until ${JSON.stringify(d.until)} is not an RFC 3339 ms time`);
    if (untilMs <= nowMs) continue;
    const key = `${d.scope}:${d.value}`;
    const seen = byKey.get(key);
    if (!seen || untilMs > seen.untilMs) byKey.set(key, { scope: d.scope, value: d.value, untilMs });
  }
  return [...byKey.values()];
}

function addressScopes(format: ExportFormat, scopes: Scope[] | undefined): readonly Scope[] {
  const s = scopes ?? ADDRESS_SCOPES;
  const bad = s.filter((x) => !ADDRESS_SCOPES.includes(x));
  if (bad.length > 0) throw new Error(`export --format ${format} holds addresses: scope ${bad.join(", ")} cannot be written (use ip and/or range, or --format plain / suricata-dataset)`);
  if (s.length === 0) throw new Error(`export --format ${format}: no scope chosen (use ip and/or range)`);
  return s;
}

interface Net {
  cidr: Cidr;
  untilMs: number;
}

function nets(active: readonly Active[], scopes: readonly Scope[]): Net[] {
  return active
    .filter((a) => scopes.includes(a.scope))
    .map((a) => {
      const cidr = parseCidr(a.value);
      if (!cidr) throw new Error(`decision ${a.scope}:${a.value}: not a canonical address or range`);
      return { cidr, untilMs: a.untilMs };
    });
}

/** Address order: family, then network address, then prefix (shorter first). Numeric, so 10.0.0.9 sorts before 10.0.0.10. */
function compareNets(a: Net, b: Net): number {
  if (a.cidr.family !== b.cidr.family) return a.cidr.family - b.cidr.family;
  if (a.cidr.base !== b.cidr.base) return a.cidr.base < b.cidr.base ? -1 : 1;
  return a.cidr.prefix - b.cidr.prefix || a.untilMs - b.untilMs;
}

function sameNet(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base === b.base && a.prefix === b.prefix;
}

/** "203.0.113.9" for a single address (how nft and ipset print it back), "198.51.100.0/24" for a range. */
function netText(c: Cidr): string {
  return c.prefix === (c.family === 4 ? 32 : 128) ? formatIp(c.family, c.base) : `${formatIp(c.family, c.base)}/${c.prefix}`;
}

/**
 * The same addresses, each blocked until the latest until of any entry covering it, as
 * disjoint CIDRs: an nftables interval set refuses overlapping elements ("conflicting
 * intervals specified", nft 1.0.6), and a range plus an address inside it is a normal
 * decision set (two reporters, two indicators). An entry inside one that outlasts it is
 * dropped; one that outlasts the range around it splits the range (range minus the inner
 * block becomes its sibling blocks, each with the range's time). Walks a binary trie of the
 * prefixes: O(entries x address bits).
 */
export function disjointNets(input: readonly Net[]): Net[] {
  const out: Net[] = [];
  for (const family of [4, 6] as const) {
    const width = family === 4 ? 32 : 128;
    const items = input.filter((n) => n.cidr.family === family).sort(compareNets);
    const walk = (base: bigint, prefix: number, inherited: number, inside: Net[]): void => {
      let until = inherited;
      const deeper: Net[] = [];
      for (const n of inside) {
        if (n.cidr.prefix === prefix) until = Math.max(until, n.untilMs);
        else deeper.push(n);
      }
      const outlasting = deeper.filter((n) => n.untilMs > until);
      if (outlasting.length === 0) {
        if (until > 0) out.push({ cidr: { family, base, prefix }, untilMs: until });
        return;
      }
      if (until === 0 && outlasting.length === 1) {
        out.push(outlasting[0]!); // nothing around it: the entry as it is
        return;
      }
      const half = 1n << BigInt(width - prefix - 1);
      walk(base, prefix + 1, until, outlasting.filter((n) => n.cidr.base < base + half));
      walk(base + half, prefix + 1, until, outlasting.filter((n) => n.cidr.base >= base + half));
    };
    if (items.length > 0) walk(0n, 0, 0, items);
  }
  return out;
}

function digestOf(lines: readonly string[]): string {
  const h = createHash("sha256");
  for (const l of lines) h.update(`${l}\n`);
  return `sha256:${h.digest("hex")}`;
}

/** Whole seconds left at nowMs, rounded down so no element outlives its decision; 0 means "less than a second" (left out: a timeout of 0 would mean "never" to ipset). */
function secondsLeft(untilMs: number, nowMs: number): number {
  return Math.floor((untilMs - nowMs) / 1000);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * nftables. Loading twice must replace, in one transaction, and must not undo what the
 * operator added. `nft -f` applies a whole file as one transaction, so the file declares the
 * table and its sets (`table inet dsm { set v4 {...} }` creates them, or is a no-op when they
 * exist with the same definition), flushes both sets and adds the elements: a packet sees
 * the old set or the new, never an empty one. The other idiom, deleting the table first (on
 * nft 1.0.6, Debian 12, `destroy table` does not parse: it came in nft 1.0.8, so it is
 * `table inet dsm` then `delete table inet dsm`), would also delete the chain that uses the
 * sets: nftables sets are table-scoped, so a chain that references @v4 must live in this
 * table, and flushing the sets leaves that chain alone. The file adds no chain (blocking is
 * the operator's choice); its header shows the rule to add.
 */
function nftables(active: readonly Active[], scopes: readonly Scope[], table: string, nowMs: number): ExportResult {
  const all = disjointNets(nets(active, scopes)).filter((n) => secondsLeft(n.untilMs, nowMs) >= 1);
  const digest = digestOf(all.map((n) => `${netText(n.cidr)} ${iso(n.untilMs)}`));
  const v4 = all.filter((n) => n.cidr.family === 4);
  const v6 = all.filter((n) => n.cidr.family === 6);
  const lines = [
    "#!/usr/sbin/nft -f",
    `# dsm decisions for nftables: ${v4.length} IPv4 and ${v6.length} IPv6 elements (${scopes.join(", ")}), timeouts counted from ${iso(nowMs)}`,
    `# dsm-digest: ${digest}`,
    "# (the digest changes only when the decisions do; the timeouts change every second: compare the digest to reload only on change)",
    "#",
    `# Load: nft -f FILE. Loading again replaces the contents of sets v4 and v6 of table inet ${table} in one`,
    "# transaction and leaves the rest of the table alone. This file adds no rule: nftables sets are",
    "# table-scoped, so reference them from a chain of this table, in your own nftables.conf, e.g.",
    `#   table inet ${table} {`,
    "#     chain input {",
    "#       type filter hook input priority filter - 10; policy accept;",
    "#       ip saddr @v4 counter drop",
    "#       ip6 saddr @v6 counter drop",
    "#     }",
    "#   }",
    "# (a router: the same in a chain of type filter hook forward).",
    `table inet ${table} {`,
    "\tset v4 {",
    "\t\ttype ipv4_addr",
    "\t\tflags interval, timeout",
    "\t}",
    "\tset v6 {",
    "\t\ttype ipv6_addr",
    "\t\tflags interval, timeout",
    "\t}",
    "}",
    `flush set inet ${table} v4`,
    `flush set inet ${table} v6`,
  ];
  for (const [set, elems] of [["v4", v4], ["v6", v6]] as const) {
    if (elems.length === 0) continue; // "add element ... { }" is a syntax error
    lines.push(`add element inet ${table} ${set} {`);
    elems.forEach((n, i) => lines.push(`\t${netText(n.cidr)} timeout ${secondsLeft(n.untilMs, nowMs)}s${i < elems.length - 1 ? "," : ""}`));
    lines.push("}");
  }
  return { text: `${lines.join("\n")}\n`, entries: all.length, omitted: [], digest };
}

/**
 * ipset. `ipset restore` is not one transaction, so the atomic step is `swap`: fill a
 * temporary set, swap it with the live one (iptables rules follow the name), destroy the
 * temporary. `create -exist` makes the first load and every later one the same file; the
 * temporary is flushed first in case an interrupted load left it behind. hash:net holds
 * addresses and ranges alike and allows overlaps, so entries are written as decided, except
 * a /0, which hash:net refuses ("CIDR parameter ... is invalid") and which becomes its two /1
 * halves. Timeouts are capped at IPSET_MAX_TIMEOUT_S: an entry may then leave the set before
 * its decision ends, until the next export re-arms it (run it more often than every 24 days).
 */
function ipset(active: readonly Active[], scopes: readonly Scope[], prefix: string, nowMs: number): ExportResult {
  const all = nets(active, scopes)
    .flatMap((n): Net[] => {
      if (n.cidr.prefix > 0) return [n];
      const top = 1n << BigInt((n.cidr.family === 4 ? 32 : 128) - 1);
      return [
        { cidr: { family: n.cidr.family, base: 0n, prefix: 1 }, untilMs: n.untilMs },
        { cidr: { family: n.cidr.family, base: top, prefix: 1 }, untilMs: n.untilMs },
      ];
    })
    .sort(compareNets)
    // One line per entry, the latest until (ip:a.b.c.d and range:a.b.c.d/32 are one entry, and a second add of it fails the restore).
    .filter((n, i, a) => i === a.length - 1 || !sameNet(n.cidr, a[i + 1]!.cidr))
    .filter((n) => secondsLeft(n.untilMs, nowMs) >= 1);
  if (all.length > IPSET_MAXELEM) throw new Error(`export --format ipset: ${all.length} entries exceed the sets' maxelem ${IPSET_MAXELEM}`);
  const digest = digestOf(all.map((n) => `${netText(n.cidr)} ${iso(n.untilMs)}`));
  const v4 = all.filter((n) => n.cidr.family === 4);
  const v6 = all.filter((n) => n.cidr.family === 6);
  const lines = [
    `# dsm decisions for ipset: ${v4.length} IPv4 and ${v6.length} IPv6 entries (${scopes.join(", ")}), timeouts counted from ${iso(nowMs)}`,
    `# dsm-digest: ${digest}`,
    "# (the digest changes only when the decisions do; the timeouts change every second: compare the digest to reload only on change)",
    "#",
    `# Load: ipset restore -f FILE. Each set is filled as ${prefix}-v4-new / ${prefix}-v6-new and swapped in at once. Use, e.g.:`,
    `#   iptables  -I INPUT -m set --match-set ${prefix}-v4 src -j DROP`,
    `#   ip6tables -I INPUT -m set --match-set ${prefix}-v6 src -j DROP`,
  ];
  for (const [suffix, family, elems] of [["v4", "inet", v4], ["v6", "inet6", v6]] as const) {
    const live = `${prefix}-${suffix}`;
    const tmp = `${live}-new`;
    const create = `hash:net family ${family} hashsize 1024 maxelem ${IPSET_MAXELEM} timeout 0 -exist`;
    lines.push(`create ${live} ${create}`, `create ${tmp} ${create}`, `flush ${tmp}`);
    for (const n of elems) lines.push(`add ${tmp} ${netText(n.cidr)} timeout ${Math.min(secondsLeft(n.untilMs, nowMs), IPSET_MAX_TIMEOUT_S)}`);
    lines.push(`swap ${tmp} ${live}`, `destroy ${tmp}`);
  }
  return { text: `${lines.join("\n")}\n`, entries: all.length, omitted: [], digest };
}

/** Sort key of a value within its scope: addresses numerically (ip and range interleaved), sids as numbers, the rest as text. */
function compareActive(a: Active, b: Active): number {
  const sa = ADDRESS_SCOPES.includes(a.scope);
  const sb = ADDRESS_SCOPES.includes(b.scope);
  if (sa && sb) return compareNets({ cidr: parseCidr(a.value)!, untilMs: 0 }, { cidr: parseCidr(b.value)!, untilMs: 0 });
  if (a.scope !== b.scope) return SCOPES.indexOf(a.scope) - SCOPES.indexOf(b.scope);
  if (a.scope === "sid") return +a.value - +b.value;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/**
 * plain: the values, one per line, nothing else (no header: the readers of such lists, a
 * shell loop, a firewall's URL table, grep -f, take every line as a value). Addresses first
 * (IPv4, IPv6, numerically, a range as CIDR), then the other scopes asked for in SCOPES order.
 */
function plain(active: readonly Active[], scopes: readonly Scope[]): ExportResult {
  const chosen = active.filter((a) => scopes.includes(a.scope)).sort(compareActive);
  const values = chosen.map((a) => a.value).filter((v, i, a) => i === 0 || v !== a[i - 1]);
  return { text: values.length ? `${values.join("\n")}\n` : "", entries: values.length, omitted: [], digest: digestOf(values) };
}

/**
 * One Suricata dataset file (doc/userguide/rules/datasets.rst "File formats"; the loaders
 * in src/datasets.c of Suricata 7 and rust/src/detect/datasets.rs of 8): one value per line,
 * "ip" as the address's text, "string" as base64, "md5" as hex. What the loaders do decided
 * the rest:
 * - No comment and no header: a "#" line is not an address (inet_pton fails) nor base64, and
 *   a bad line is a FatalErrorOnInit (fatal when engine.init-failure-fatal is set). So what
 *   is left out is returned in `omitted`, for the caller to print.
 * - No ranges: addresses are read with inet_pton (Suricata 7) or Ipv4Addr/Ipv6Addr::from_str
 *   (8), neither takes a CIDR. Range decisions are left out of the ip dataset and counted.
 * - Every line ends with a newline: Suricata 7 cuts the last character of each line (the
 *   newline it expects) before parsing.
 * - An empty file is valid (no lines: an empty set).
 * The file holds one type, so `scopes` must name exactly one of SURICATA_DATASETS' scopes.
 */
function suricataDataset(active: readonly Active[], scopes: Scope[] | undefined): ExportResult {
  const usage = `export --format suricata-dataset writes one dataset (one type) per file: pass exactly one scope, ${Object.entries(SURICATA_DATASETS)
    .map(([s, d]) => `${s} (type ${d.type})`)
    .join(", ")}, and write one file for each`;
  if (!scopes || scopes.length !== 1) throw new Error(usage);
  const scope = scopes[0]!;
  if (scope === "range") throw new Error(`export --format suricata-dataset: Suricata datasets hold single addresses, not ranges (its loaders parse each line with inet_pton); range decisions are left out of the ip dataset. ${usage}`);
  if (scope === "sid") throw new Error(`export --format suricata-dataset: a signature id is not a dataset value (use --format plain --scope sid). ${usage}`);
  const chosen = active.filter((a) => a.scope === scope).sort(compareActive);
  const lines = chosen.map((a) => (scope === "domain" ? Buffer.from(a.value, "utf8").toString("base64") : a.value));
  const omitted: ExportResult["omitted"] = [];
  const ranges = active.filter((a) => a.scope === "range").length;
  if (scope === "ip" && ranges > 0) omitted.push({ scope: "range", count: ranges, reason: "Suricata datasets hold single addresses, not ranges" });
  return { text: lines.length ? `${lines.join("\n")}\n` : "", entries: lines.length, omitted, digest: digestOf(lines) };
}
