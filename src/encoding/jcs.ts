// RFC 8785 JSON Canonicalization Scheme. Everything dsm hashes or signs goes through here.
//
// JSON.stringify already does what JCS asks of primitives: ES6 number formatting,
// and string escaping of exactly '"', '\\' and the C0 controls (short forms or
// lowercase \u00xx). JCS adds: object keys sorted by UTF-16 code units, no
// non-finite numbers, no lone surrogates, nothing that JSON cannot represent.

export class CanonicalJsonError extends Error {}

export function canonicalize(value: unknown): string {
  const out: string[] = [];
  write(value, out, 0);
  return out.join("");
}

const encoder = new TextEncoder();
export function canonicalBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalize(value));
}

const MAX_DEPTH = 128;

function write(value: unknown, out: string[], depth: number): void {
  if (depth > MAX_DEPTH) throw new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH}`);
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw new CanonicalJsonError("string contains a lone surrogate");
      out.push(JSON.stringify(value));
      return;
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`number ${value} has no JSON form`);
      out.push(JSON.stringify(value));
      return;
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "object": {
      if (value === null) {
        out.push("null");
        return;
      }
      if (Array.isArray(value)) {
        out.push("[");
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out.push(",");
          write(value[i], out, depth + 1);
        }
        out.push("]");
        return;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new CanonicalJsonError(`cannot canonicalize a ${proto?.constructor?.name ?? "non-plain"} object`);
      }
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is exactly what RFC 8785 section 3.2.3 requires.
      const keys = Object.keys(obj).sort();
      out.push("{");
      let first = true;
      for (const key of keys) {
        const v = obj[key];
        if (v === undefined) continue; // as JSON.stringify: an absent member
        if (!first) out.push(",");
        first = false;
        if (!key.isWellFormed()) throw new CanonicalJsonError("key contains a lone surrogate");
        out.push(JSON.stringify(key), ":");
        write(v, out, depth + 1);
      }
      out.push("}");
      return;
    }
    default:
      throw new CanonicalJsonError(`cannot canonicalize a ${typeof value}`);
  }
}
