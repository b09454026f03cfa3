// RFC 8785 JSON Canonicalization Scheme. Everything dsm hashes or signs goes through here.
//
// JSON.stringify already does what JCS asks of primitives: ES6 number formatting,
// and string escaping of exactly '"', '\\' and the C0 controls (short forms or
// lowercase \u00xx). JCS adds: object keys sorted by UTF-16 code units, no
// non-finite numbers, no lone surrogates, nothing that JSON cannot represent.
// This is the ingest hot path, so plain strings skip JSON.stringify entirely.

export class CanonicalJsonError extends Error {}

const MAX_DEPTH = 128;
// Anything that needs escaping, or may be half of a surrogate pair, takes the slow path.
const NEEDS_CARE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * known: canonical text the caller already has for objects inside value (ingest hashes
 * the input record for its event_id, then canonicalises the payload that contains it:
 * the record is serialised once). Passed per call, so nothing stale can outlive it.
 */
export function canonicalize(value: unknown, known?: ReadonlyMap<object, string>): string {
  return write(value, 0, known);
}

const encoder = new TextEncoder();
export function canonicalBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalize(value));
}

function string(s: string): string {
  if (!NEEDS_CARE.test(s)) return '"' + s + '"';
  if (!s.isWellFormed()) throw new CanonicalJsonError("string contains a lone surrogate");
  return JSON.stringify(s);
}

function write(value: unknown, depth: number, known?: ReadonlyMap<object, string>): string {
  if (depth > MAX_DEPTH) throw new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH}`);
  switch (typeof value) {
    case "string":
      return string(value);
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`number ${value} has no JSON form`);
      return "" + value; // Number::toString is the ES6 form JCS requires; -0 gives "0"
    case "boolean":
      return value ? "true" : "false";
    case "object": {
      if (value === null) return "null";
      if (known) {
        const cached = known.get(value);
        if (cached !== undefined) return cached;
      }
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ",";
          if (!(i in value) || value[i] === undefined) throw new CanonicalJsonError("array holds undefined or a hole");
          out += write(value[i], depth + 1, known);
        }
        return out + "]";
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new CanonicalJsonError(`cannot canonicalize a ${proto?.constructor?.name ?? "non-plain"} object`);
      }
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is exactly what RFC 8785 section 3.2.3 requires.
      const keys = Object.keys(obj).sort();
      let out = "{";
      let first = true;
      for (const key of keys) {
        const v = obj[key];
        if (v === undefined) continue; // as JSON.stringify: an absent member
        out += (first ? "" : ",") + string(key) + ":" + write(v, depth + 1, known);
        first = false;
      }
      return out + "}";
    }
    default:
      throw new CanonicalJsonError(`cannot canonicalize a ${typeof value}`);
  }
}
