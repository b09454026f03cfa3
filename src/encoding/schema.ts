// Field checks for parsing untrusted objects into dsm types. Each failure names the
// object and field so an operator can tell which part of a file or message is wrong.
import { isHex } from "./hex.ts";
import { parseTime } from "./time.ts";

export class SchemaError extends Error {}

export type Obj = Record<string, unknown>;

export function expectObject(value: unknown, what: string): Obj {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SchemaError(`${what}: expected a JSON object`);
  }
  return value as Obj;
}

/** Exact schema: every required key present, nothing beyond required + optional. */
export function expectKeys(o: Obj, what: string, required: readonly string[], optional: readonly string[] = []): void {
  for (const k of required) if (!(k in o)) throw new SchemaError(`${what}: missing field "${k}"`);
  for (const k of Object.keys(o)) {
    if (!required.includes(k) && !optional.includes(k)) throw new SchemaError(`${what}: unexpected field "${k}"`);
  }
}

export function hexField(o: Obj, k: string, what: string, bytes: number): string {
  const v = o[k];
  if (!isHex(v, bytes)) throw new SchemaError(`${what}: "${k}" must be ${bytes * 2} lowercase hex characters`);
  return v;
}

/** Lowercase hex of 1 to `max` bytes (TPM structures, certificates: variable length, bounded). */
export function boundedHex(v: unknown, what: string, max: number): string {
  if (typeof v !== "string" || v.length === 0 || v.length > max * 2 || !/^(?:[0-9a-f]{2})+$/.test(v)) throw new SchemaError(`${what} must be lowercase hex of 1 to ${max} bytes`);
  return v;
}

export function intField(o: Obj, k: string, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new SchemaError(`${what}: "${k}" must be an integer from ${min} to ${max}`);
  }
  return v;
}

export function stringField(o: Obj, k: string, what: string, re: RegExp, hint: string): string {
  const v = o[k];
  if (typeof v !== "string" || !re.test(v)) throw new SchemaError(`${what}: "${k}" must be ${hint}`);
  return v;
}

export function timeField(o: Obj, k: string, what: string): number {
  const ms = parseTime(o[k]);
  if (ms === undefined) throw new SchemaError(`${what}: "${k}" must be an RFC 3339 UTC time with milliseconds`);
  return ms;
}

export function literalField<T extends string | number | boolean>(o: Obj, k: string, what: string, expected: T): T {
  if (o[k] !== expected) throw new SchemaError(`${what}: "${k}" must be ${JSON.stringify(expected)}`);
  return expected;
}

export function boolField(o: Obj, k: string, what: string): boolean {
  const v = o[k];
  if (typeof v !== "boolean") throw new SchemaError(`${what}: "${k}" must be true or false`);
  return v;
}
