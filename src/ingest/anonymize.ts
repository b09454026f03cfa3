// privacy.anonymize_ips: replace IP addresses by a keyed hash before a payload is
// hashed, signed or shared. Keyed so that peers without the secret cannot undo it
// by hashing all 2^32 IPv4 addresses; deterministic so one host still correlates
// across events of the same node.
import { createHmac } from "node:crypto";
import { isIP } from "node:net";

const CACHE_LIMIT = 4096;

// A dotted quad with octets 0-255 (zero padding allowed: some tools print
// "010.000.000.001", and missing one would leak it). Bounded so that a run like
// "1.2.3.4.5" (a version, an OID) is not an address: no digit, and no "digit."
// or ".digit", may touch either end. A sentence-ending "10.0.0.1." still matches.
const OCTET = "(?:25[0-5]|2[0-4]\\d|[01]?\\d?\\d)";
const EMBEDDED_IPV4 = new RegExp(`(?<!\\d|\\d\\.)${OCTET}(?:\\.${OCTET}){3}(?!\\d|\\.\\d)`, "g");

// Candidate IPv6 text: a maximal run of hex digits, colons and dots. One flat
// character class cannot backtrack, unlike a structured pattern, and node:net has
// the final say, which keeps times ("15:07:20") and MAC addresses (six groups, no
// "::") out. The run must not touch a letter, digit or underscore: Zeek names such as
// "SSH::Password_Guessing" and "Notice::ACTION_LOG" contain "::" and "ce::AC", which
// node:net accepts as IPv6, and must survive anonymisation intact.
const IPV6_CANDIDATE = /(?<![0-9A-Za-z_])[0-9A-Fa-f:.]{2,}(?![0-9A-Za-z_])/g;

export function createIpAnonymizer(secret: Uint8Array): (value: unknown) => unknown {
  // Copied so a caller reusing its buffer cannot change tokens mid-run.
  const key = Uint8Array.from(secret);
  const cache = new Map<string, string>();

  const token = (ip: string): string => {
    const hit = cache.get(ip);
    if (hit !== undefined) return hit;
    const made = `ip-${createHmac("sha256", key).update(ip).digest("hex").slice(0, 32)}`;
    // The same few hosts repeat across a log; a crude full reset keeps memory bounded
    // without the bookkeeping of an LRU.
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(ip, made);
    return made;
  };

  const anonymizeString = (text: string): string => {
    if (isIP(text) !== 0) return token(text);
    let out = text;
    if (out.indexOf(":") !== out.lastIndexOf(":")) out = out.replace(IPV6_CANDIDATE, (run) => replaceIpv6Run(run, token));
    if (out.includes(".")) out = out.replace(EMBEDDED_IPV4, token);
    return out;
  };

  const walk = (value: unknown, depth: number): unknown => {
    if (typeof value === "string") return anonymizeString(value);
    if (typeof value !== "object" || value === null) return value;
    // Parsed JSON cannot be cyclic; the bound only guards hand-built input.
    if (depth > 256) throw new RangeError("value nested too deeply to anonymize");
    if (Array.isArray(value)) return value.map((item) => walk(item, depth + 1));
    // fromEntries defines own properties, so a "__proto__" key stays data, not a prototype.
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, depth + 1)]));
  };

  return (value) => walk(value, 0);
}

function replaceIpv6Run(run: string, token: (ip: string) => string): string {
  if (run.indexOf(":") === run.lastIndexOf(":")) return run;
  // A run may start or end a sentence ("... from fe80::1."); those dots are not the address.
  const lead = /^\.*/.exec(run)?.[0].length ?? 0;
  const core = run.slice(lead).replace(/\.+$/, "");
  return isIP(core) === 6 ? run.slice(0, lead) + token(core) + run.slice(lead + core.length) : run;
}
