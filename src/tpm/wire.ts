// Reading TPM 2.0 wire format (Part 2: big-endian, no padding, TPM2B = u16 size || bytes):
// every read is bounds-checked, and errors name the structure and the field.

export class WireReader {
  private off = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {}

  private need(n: number, field: string): void {
    const left = this.buf.length - this.off;
    if (n > left) throw new Error(`${this.what} truncated: ${field} needs ${n} bytes at offset ${this.off}, ${left} left`);
  }
  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.off++]!;
  }
  u16(field: string): number {
    this.need(2, field);
    const v = (this.buf[this.off]! << 8) | this.buf[this.off + 1]!;
    this.off += 2;
    return v;
  }
  u32(field: string): number {
    this.need(4, field);
    const b = this.buf;
    const o = this.off;
    this.off += 4;
    return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  }
  u64(field: string): bigint {
    const hi = this.u32(field);
    const lo = this.u32(field);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  bytes(n: number, field: string): Uint8Array {
    this.need(n, field);
    const out = this.buf.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }
  /** TPM2B: u16 size || bytes, size at most max. */
  tpm2b(field: string, max: number): Uint8Array {
    const size = this.u16(`${field} size`);
    if (size > max) throw new Error(`${this.what}: ${field} is ${size} bytes, at most ${max} allowed`);
    return this.bytes(size, field);
  }
  /** Everything not read yet. */
  rest(): Uint8Array {
    return this.bytes(this.buf.length - this.off, "rest");
  }
  end(): void {
    const left = this.buf.length - this.off;
    if (left !== 0) throw new Error(`${this.what}: ${left} trailing byte(s) after offset ${this.off}`);
  }
}
