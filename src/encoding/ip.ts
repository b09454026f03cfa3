// IP addresses and CIDR ranges as numbers, for indicators and never_block: one canonical
// text per address (so two nodes that advise the same host name it alike) and exact
// containment. Pure.
import { isIP } from "node:net";

export interface Cidr {
  family: 4 | 6;
  /** The network address (host bits zero). */
  base: bigint;
  prefix: number;
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** An address as (family, value), or null. IPv4 must be plain dotted decimal: "010.0.0.1" is refused, not guessed. */
export function parseIp(text: string): { family: 4 | 6; value: bigint } | null {
  const m = V4.exec(text);
  if (m) return { family: 4, value: BigInt(((+m[1]! << 24) >>> 0) + (+m[2]! << 16) + (+m[3]! << 8) + +m[4]!) };
  if (text.length > 45 || isIP(text) !== 6 || text.includes("%")) return null;
  return { family: 6, value: ipv6Value(text) };
}

function ipv6Value(text: string): bigint {
  let head = text;
  let tail4: bigint | null = null;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = parseIp(text.slice(lastColon + 1));
    tail4 = v4!.value;
    head = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [left, right] = head.includes("::") ? head.split("::") : [head, undefined];
  const l = left ? left.split(":") : [];
  const r = right === undefined ? [] : right ? right.split(":") : [];
  const groups = right === undefined ? l : [...l, ...Array(8 - l.length - r.length).fill("0"), ...r];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  if (tail4 !== null) v = (v & ~0xffffffffn) | tail4;
  return v;
}

export function formatIp(family: 4 | 6, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join(".");
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // RFC 5952: the longest run of two or more zero groups (the first such) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** The canonical text of an address, or null when it is not one. */
export function canonicalIp(text: string): string | null {
  const ip = parseIp(text);
  return ip ? formatIp(ip.family, ip.value) : null;
}

const bits = (family: 4 | 6): number => (family === 4 ? 32 : 128);

/** "a.b.c.d/n" or "v6/n" with host bits zero; a bare address is its /32 or /128. Null when malformed or when host bits are set. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const width = bits(ip.family);
  let prefix = width;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || +p > width) return null;
    prefix = +p;
  }
  const cidr: Cidr = { family: ip.family, base: ip.value, prefix };
  return (ip.value & hostMask(cidr)) === 0n ? cidr : null;
}

function hostMask(c: Cidr): bigint {
  return (1n << BigInt(bits(c.family) - c.prefix)) - 1n;
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.base)}/${c.prefix}`;
}

/** True when every address of `inner` is in `outer`. */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.prefix < outer.prefix) return false;
  return (inner.base & ~hostMask(outer)) === outer.base;
}

/** True when the two ranges share an address (one then contains the other). */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}
