// Lowercase hex is the only encoding DESIGN.md allows for hashes, keys and signatures.
const HEX_RE = /^(?:[0-9a-f]{2})*$/;

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** Strict decode: lowercase, even length, optional exact byte length. Throws on anything else. */
export function fromHex(hex: string, bytes?: number): Uint8Array {
  if (typeof hex !== "string" || !HEX_RE.test(hex)) throw new Error("not lowercase hex");
  if (bytes !== undefined && hex.length !== bytes * 2) throw new Error(`expected ${bytes} bytes of hex, got ${hex.length / 2}`);
  return new Uint8Array(Buffer.from(hex, "hex"));
}

export function isHex(value: unknown, bytes: number): value is string {
  return typeof value === "string" && value.length === bytes * 2 && HEX_RE.test(value);
}

/** A compressed SEC1 P-256 public key in hex: 33 bytes, the first 02 or 03. */
export function isCompressedKeyHex(value: unknown): value is string {
  return isHex(value, 33) && (value.startsWith("02") || value.startsWith("03"));
}

export const ZERO_HASH = "0".repeat(64);
