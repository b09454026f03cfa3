// Parsing JSON that is signed or verified. RFC 8785 (JCS) is defined on I-JSON (RFC 7493),
// which forbids duplicate member names: JSON.parse keeps the last of two, so a signer and a
// verifier reading one text could see different objects. Every untrusted JSON text that
// dsm signs, verifies or stores goes through parseJson, which refuses duplicates.

export class JsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JsonError";
  }
}

/** JSON.parse, refusing a text in which any object names a member twice. Throws JsonError. */
export function parseJson(text: string, what = "JSON"): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new JsonError(`${what}: ${(e as Error).message}`);
  }
  // Only a text with an object in it can repeat a name; most lines are one object, and the
  // scan below runs once over the text JSON.parse already accepted.
  if (typeof value === "object" && value !== null) {
    const dup = duplicateMember(text);
    if (dup !== null) throw new JsonError(`${what}: member name ${JSON.stringify(dup)} appears twice in one object (I-JSON, RFC 7493)`);
  }
  return value;
}

/**
 * The first member name that appears twice in one object of `text` (valid JSON), or null.
 * A single pass: a stack of the names seen in each open object; strings are skipped with
 * their escapes, and a key is a string followed by ':'.
 */
export function duplicateMember(text: string): string | null {
  const stack: (Set<string> | null)[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) stack.push(new Set());
    else if (c === 0x5b /* [ */) stack.push(null);
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      const names = stack.at(-1);
      if (!names) continue; // a string in an array or at the top: not a name
      let j = i + 1;
      while (j < n && (text.charCodeAt(j) === 0x20 || text.charCodeAt(j) === 0x0a || text.charCodeAt(j) === 0x0d || text.charCodeAt(j) === 0x09)) j++;
      if (text.charCodeAt(j) !== 0x3a /* : */) continue; // a value, not a name
      const raw = text.slice(start, i + 1);
      // Two spellings of one name ("a" and "\u0061") are one name: compare decoded.
      const name = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
      if (names.has(name)) return name;
      names.add(name);
    }
  }
  return null;
}
