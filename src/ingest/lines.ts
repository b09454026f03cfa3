// Splits a byte stream into lines in constant memory: an oversized line is dropped as
// it streams past (only its length is counted), and every line is decoded as strict
// UTF-8, so a bad byte rejects one line, never the stream.

export type LineEvent = { no: number; text: string } | { no: number; error: string };

const NL = 0x0a;
const CR = 0x0d;
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export class LineSplitter {
  #parts: Uint8Array[] = [];
  #size = 0;
  #oversized = false;
  #no = 0;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Uint8Array, emit: (e: LineEvent) => void): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NL, start);
      const end = nl === -1 ? chunk.length : nl;
      this.#take(chunk.subarray(start, end));
      if (nl === -1) return;
      this.#complete(emit);
      start = nl + 1;
    }
  }

  /** End of input: a last line without a newline still counts. */
  end(emit: (e: LineEvent) => void): void {
    if (this.#size > 0 || this.#oversized) this.#complete(emit);
  }

  #take(part: Uint8Array): void {
    if (part.length === 0) return;
    this.#size += part.length;
    if (this.#oversized) return;
    if (this.#size > this.maxBytes + 1) {
      // +1 leaves room for a CR of a CRLF line ending exactly at the limit.
      this.#oversized = true;
      this.#parts = [];
      return;
    }
    // The chunk buffer may be reused by the reader: keep a copy.
    this.#parts.push(part.slice());
  }

  #complete(emit: (e: LineEvent) => void): void {
    const no = ++this.#no;
    const size = this.#size;
    const parts = this.#parts;
    const oversized = this.#oversized;
    this.#parts = [];
    this.#size = 0;
    this.#oversized = false;
    if (oversized) {
      emit({ no, error: `line too long (${size} bytes, limit ${this.maxBytes})` });
      return;
    }
    let bytes = parts.length === 1 ? parts[0]! : concat(parts, size);
    if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
    if (bytes.length > this.maxBytes) {
      emit({ no, error: `line too long (${bytes.length} bytes, limit ${this.maxBytes})` });
      return;
    }
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      emit({ no, error: "not valid UTF-8" });
      return;
    }
    emit({ no, text });
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
