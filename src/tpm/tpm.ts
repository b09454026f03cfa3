// Safe TPM 2.0 operations over the raw tpm2-tss bindings (ffi/tss2.ts). Inputs are built in
// TPM wire format (big-endian, as TPM 2.0 Part 2 defines them) and turned into C structs by
// libtss2-mu; outputs are marshalled back to wire bytes and freed at once, so no C struct
// layout is ever assumed here. Every TSS2_RC becomes a TpmError naming the call and the
// library's own decoded text. Calls are synchronous: each blocks the event loop for its
// duration (about 1 ms on swtpm, 20-100 ms on a real chip).

import type { Pointer } from "bun:ffi";
import {
  cSetenv,
  LIBRARIES,
  ESYS_TR_NONE,
  ESYS_TR_PASSWORD,
  ESYS_TR_PCR0,
  ESYS_TR_RH_ENDORSEMENT,
  ESYS_TR_RH_OWNER,

  openTss2,
  STRUCT_BYTES,
  TPM2_CAP_HANDLES,
  TPM2_HR_PERSISTENT,
  TPM2_SU_CLEAR,
  type Tss2Libraries,
} from "../../ffi/tss2.ts";
import { TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_SHA256, TPM_ECC_NIST_P256, TPMA_OBJECT } from "./quote.ts";

export class TpmError extends Error {
  constructor(
    message: string,
    /** The TSS2_RC, when a call returned one. */
    readonly rc?: number,
  ) {
    super(message);
    this.name = "TpmError";
  }
}

const TPM2_RC_INITIALIZE = 0x100; // TPM2_Startup on a started TPM: fine
/** TSS2_TCTI_RC_IO_ERROR: the TCTI could not talk to the TPM (nothing listening, or the peer hung up). */
const TCTI_RC_IO_ERROR = 0xa000a;
export const TPM2_RC_HANDLE_EMPTY = 0x18b; // nothing at that persistent handle

/** Big-endian wire-format writer. */
class Wire {
  #b: number[] = [];
  u8(v: number): this {
    this.#b.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v >> 8).u8(v);
  }
  u32(v: number): this {
    return this.u16(v >>> 16).u16(v & 0xffff);
  }
  bytes(b: Uint8Array): this {
    for (const x of b) this.#b.push(x);
    return this;
  }
  /** TPM2B: u16 size, then the bytes. */
  sized(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }
  done(): Uint8Array {
    return Uint8Array.from(this.#b);
  }
}

/**
 * TPMT_PUBLIC template of an ECDSA P-256 / SHA-256 signing key; restricted for an attestation
 * key. A primary key is derived from the hierarchy's seed and the template, so the same
 * template gives the same key: `unique` (random bytes) makes a new one.
 */
export function eccSigningTemplate(restricted: boolean, unique: Uint8Array = new Uint8Array(0)): Uint8Array {
  const A = TPMA_OBJECT;
  const attrs = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.sign | (restricted ? A.restricted : 0);
  return new Wire()
    .u16(TPM_ALG_ECC)
    .u16(TPM_ALG_SHA256)
    .u32(attrs)
    .sized(new Uint8Array(0)) // authPolicy
    .u16(TPM_ALG_NULL) // symmetric
    .u16(TPM_ALG_ECDSA) // scheme
    .u16(TPM_ALG_SHA256)
    .u16(TPM_ECC_NIST_P256)
    .u16(TPM_ALG_NULL) // kdf
    .sized(unique) // unique.x
    .sized(new Uint8Array(0)) // unique.y
    .done();
}

/** TPML_PCR_SELECTION of one sha256 bank selecting `pcrs`. */
export function pcrSelection(pcrs: readonly number[]): Uint8Array {
  const bits = new Uint8Array(3);
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p > 23) throw new TpmError(`PCR index ${p} is not 0-23`);
    bits[p >> 3]! |= 1 << (p & 7);
  }
  return new Wire().u32(1).u16(TPM_ALG_SHA256).u8(3).bytes(bits).done();
}

export type Hierarchy = "owner" | "endorsement";

export class Tpm {
  readonly #lib: Tss2Libraries;
  readonly #tctiCtx: BigUint64Array;
  readonly #esysCtx: BigUint64Array;
  #closed = false;

  private constructor(
    lib: Tss2Libraries,
    tctiCtx: BigUint64Array,
    esysCtx: BigUint64Array,
    readonly tcti: string,
  ) {
    this.#lib = lib;
    this.#tctiCtx = tctiCtx;
    this.#esysCtx = esysCtx;
  }

  /**
   * Opens a TPM by TCTI string (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`,
   * `tabrmd`; empty for the library's default) and runs TPM2_Startup.
   */
  static open(tcti: string, opts: { libraries?: Record<keyof typeof LIBRARIES, string> } = {}): Tpm {
    let lib: Tss2Libraries;
    try {
      // The library's own log lines would duplicate our one-line errors on stderr; an
      // operator who wants them sets TSS2_LOG before starting dsm.
      if (process.env.TSS2_LOG === undefined) cSetenv("TSS2_LOG", "all+NONE", false);
      lib = openTss2(opts.libraries);
    } catch (e) {
      const missing = (e as { library?: string }).library ?? "tpm2-tss";
      throw new TpmError(
        `the TPM library ${missing} is not installed (${(e as Error).message.split("\n")[0]}); on Debian install: apt-get install libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0 libtss2-rc0 (plus libtss2-tcti-swtpm0 for swtpm)`,
      );
    }
    if (!/^[A-Za-z0-9_-]*(:[\x20-\x7e]*)?$/.test(tcti)) throw new TpmError(`TCTI ${JSON.stringify(tcti)} is not of the form name[:config], e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321`);
    const tctiCtx = new BigUint64Array(1);
    const conf = tcti === "" ? null : Buffer.from(`${tcti}\0`);
    let rc = lib.tcti.Tss2_TctiLdr_Initialize(conf, tctiCtx);
    if (rc !== 0) {
      // An IO failure is the TPM not answering, whether it shows here or in Esys_Initialize
      // below (a peer that accepts, then hangs up, can fail at either): say so the same way.
      const unreachable = rc === TCTI_RC_IO_ERROR ? `TPM at "${tcti}" is not reachable: ` : "";
      throw new TpmError(`${unreachable}cannot open TCTI "${tcti || "(default)"}": ${decode(lib, rc)} (check identity.tcti; is the TPM present and its driver or simulator running?)`, rc);
    }
    const esysCtx = new BigUint64Array(1);
    rc = lib.esys.Esys_Initialize(esysCtx, ptrOf(tctiCtx), null);
    if (rc !== 0) {
      lib.tcti.Tss2_TctiLdr_Finalize(tctiCtx);
      throw new TpmError(`TPM at "${tcti}" is not reachable: Esys_Initialize: ${decode(lib, rc)}`, rc);
    }
    const tpm = new Tpm(lib, tctiCtx, esysCtx, tcti);
    rc = lib.esys.Esys_Startup(tpm.#ctx, TPM2_SU_CLEAR);
    if (rc !== 0 && (rc & 0xfff) !== TPM2_RC_INITIALIZE) {
      tpm.close();
      throw new TpmError(`TPM at "${tcti}" is not reachable: Esys_Startup: ${decode(lib, rc)}`, rc);
    }
    return tpm;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lib.esys.Esys_Finalize(this.#esysCtx);
    this.#lib.tcti.Tss2_TctiLdr_Finalize(this.#tctiCtx);
  }

  get #ctx(): Pointer {
    if (this.#closed) throw new TpmError("TPM context is closed");
    return ptrOf(this.#esysCtx);
  }

  #check(fn: string, rc: number): void {
    if (rc !== 0) throw new TpmError(`${fn}: ${decode(this.#lib, rc)}`, rc);
  }

  /** Wire bytes → C struct via libtss2-mu. */
  #unmarshal(type: string, wire: Uint8Array): Uint8Array {
    const dest = new Uint8Array(STRUCT_BYTES);
    const offset = new BigUint64Array(1);
    const fn = (this.#lib.mu as unknown as Record<string, (...a: unknown[]) => number>)[`Tss2_MU_${type}_Unmarshal`]!;
    this.#check(`Tss2_MU_${type}_Unmarshal`, fn(wire, wire.length, offset, dest));
    if (Number(offset[0]) !== wire.length) throw new TpmError(`Tss2_MU_${type}_Unmarshal consumed ${offset[0]} of ${wire.length} bytes`);
    return dest;
  }

  /** C struct at ptr (allocated by ESYS) → wire bytes; frees it. */
  #marshalAndFree(type: string, ptr: Pointer): Uint8Array {
    try {
      const buf = new Uint8Array(STRUCT_BYTES);
      const offset = new BigUint64Array(1);
      const fn = (this.#lib.mu as unknown as Record<string, (...a: unknown[]) => number>)[`Tss2_MU_${type}_Marshal`]!;
      this.#check(`Tss2_MU_${type}_Marshal`, fn(ptr, buf, buf.length, offset));
      return buf.slice(0, Number(offset[0]));
    } finally {
      this.#lib.esys.Esys_Free(ptr);
    }
  }

  /** Creates a primary key in a hierarchy from a TPMT_PUBLIC template; returns its handle and TPMT_PUBLIC. */
  createPrimary(hierarchy: Hierarchy, template: Uint8Array): { handle: number; publicArea: Uint8Array } {
    const inSensitive = this.#unmarshal("TPM2B_SENSITIVE_CREATE", new Wire().sized(new Wire().sized(new Uint8Array(0)).sized(new Uint8Array(0)).done()).done());
    const inPublic = this.#unmarshal("TPM2B_PUBLIC", new Wire().sized(template).done());
    const outsideInfo = this.#unmarshal("TPM2B_DATA", new Wire().sized(new Uint8Array(0)).done());
    const creationPcr = this.#unmarshal("TPML_PCR_SELECTION", new Wire().u32(0).done());
    const handle = new Uint32Array(1);
    const outs = Array.from({ length: 4 }, () => new BigUint64Array(1));
    const parent = hierarchy === "owner" ? ESYS_TR_RH_OWNER : ESYS_TR_RH_ENDORSEMENT;
    this.#check(
      "Esys_CreatePrimary",
      this.#lib.esys.Esys_CreatePrimary(this.#ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, inSensitive, inPublic, outsideInfo, creationPcr, handle, outs[0]!, outs[1]!, outs[2]!, outs[3]!),
    );
    for (const o of outs.slice(1)) this.#lib.esys.Esys_Free(ptrOf(o));
    const pub = this.#marshalAndFree("TPM2B_PUBLIC", ptrOf(outs[0]!));
    return { handle: handle[0]!, publicArea: pub.subarray(2) };
  }

  /** Makes a loaded key persistent at a handle (0x81000000-0x81FFFFFF) in the owner hierarchy. */
  persist(handle: number, persistentHandle: number): number {
    const out = new Uint32Array(1);
    this.#check("Esys_EvictControl", this.#lib.esys.Esys_EvictControl(this.#ctx, ESYS_TR_RH_OWNER, handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, persistentHandle, out));
    return out[0]!;
  }

  /** The ESYS handle of a persistent key; TpmError with rc TPM2_RC_HANDLE_EMPTY when nothing is there. */
  loadPersistent(persistentHandle: number): number {
    const out = new Uint32Array(1);
    this.#check(`Esys_TR_FromTPMPublic(0x${persistentHandle.toString(16)})`, this.#lib.esys.Esys_TR_FromTPMPublic(this.#ctx, persistentHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out));
    return out[0]!;
  }

  /** TPMT_PUBLIC wire bytes of a loaded key. */
  readPublic(handle: number): Uint8Array {
    const outs = Array.from({ length: 3 }, () => new BigUint64Array(1));
    this.#check("Esys_ReadPublic", this.#lib.esys.Esys_ReadPublic(this.#ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, outs[0]!, outs[1]!, outs[2]!));
    this.#lib.esys.Esys_Free(ptrOf(outs[1]!));
    this.#lib.esys.Esys_Free(ptrOf(outs[2]!));
    return this.#marshalAndFree("TPM2B_PUBLIC", ptrOf(outs[0]!)).subarray(2);
  }

  /**
   * Every persistent handle in use (TPM2_GetCapability TPM_CAP_HANDLES from 0x81000000),
   * ascending: keys of any owner, dsm's or not. Asked in pages until the TPM says no more.
   */
  persistentHandles(): number[] {
    const out: number[] = [];
    let from = TPM2_HR_PERSISTENT;
    for (let page = 0; page < 1024; page++) {
      const more = new Uint8Array(1);
      const data = new BigUint64Array(1);
      this.#check(
        "Esys_GetCapability(TPM_CAP_HANDLES)",
        this.#lib.esys.Esys_GetCapability(this.#ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, from, 128, more, data),
      );
      // TPMS_CAPABILITY_DATA wire: u32 capability, then TPML_HANDLE: u32 count, u32 handles.
      const wire = this.#marshalAndFree("TPMS_CAPABILITY_DATA", ptrOf(data));
      const dv = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
      if (wire.length < 8 || dv.getUint32(0) !== TPM2_CAP_HANDLES) throw new TpmError("Esys_GetCapability(TPM_CAP_HANDLES) answered another capability");
      const count = dv.getUint32(4);
      if (wire.length !== 8 + 4 * count) throw new TpmError(`Esys_GetCapability(TPM_CAP_HANDLES): ${count} handles in ${wire.length} bytes`);
      let last = -1;
      for (let i = 0; i < count; i++) {
        const h = dv.getUint32(8 + 4 * i);
        if (h >>> 24 !== TPM2_HR_PERSISTENT >>> 24) continue; // only persistent handles are asked for
        out.push(h);
        last = h;
      }
      if (!more[0] || last < 0 || last >= 0x81ffffff) break;
      from = last + 1;
    }
    return [...new Set(out)].sort((a, b) => a - b);
  }

  flush(handle: number): void {
    this.#check("Esys_FlushContext", this.#lib.esys.Esys_FlushContext(this.#ctx, handle));
  }

  /** ECDSA P-256 over a 32-byte digest with an unrestricted key: TPMT_SIGNATURE wire bytes. */
  sign(handle: number, digest: Uint8Array): Uint8Array {
    if (digest.length !== 32) throw new TpmError(`TPM sign: digest must be 32 bytes, got ${digest.length}`);
    const d = this.#unmarshal("TPM2B_DIGEST", new Wire().sized(digest).done());
    const scheme = this.#unmarshal("TPMT_SIG_SCHEME", new Wire().u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).done());
    // A NULL ticket: the digest was not made by the TPM, which an unrestricted key allows.
    const ticket = this.#unmarshal("TPMT_TK_HASHCHECK", new Wire().u16(0x8024).u32(0x40000007).sized(new Uint8Array(0)).done());
    const out = new BigUint64Array(1);
    this.#check("Esys_Sign", this.#lib.esys.Esys_Sign(this.#ctx, handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, d, scheme, ticket, out));
    return this.#marshalAndFree("TPMT_SIGNATURE", ptrOf(out));
  }

  /** TPM2_Quote over sha256 PCRs: the TPMS_ATTEST wire bytes and the TPMT_SIGNATURE over them. */
  quote(akHandle: number, nonce: Uint8Array, pcrs: readonly number[]): { attest: Uint8Array; signature: Uint8Array } {
    if (nonce.length > 64) throw new TpmError(`TPM quote: nonce must be at most 64 bytes, got ${nonce.length}`);
    const data = this.#unmarshal("TPM2B_DATA", new Wire().sized(nonce).done());
    const scheme = this.#unmarshal("TPMT_SIG_SCHEME", new Wire().u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).done());
    const sel = this.#unmarshal("TPML_PCR_SELECTION", pcrSelection(pcrs));
    const quoted = new BigUint64Array(1);
    const sig = new BigUint64Array(1);
    this.#check("Esys_Quote", this.#lib.esys.Esys_Quote(this.#ctx, akHandle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, data, scheme, sel, quoted, sig));
    const attest = this.#marshalAndFree("TPM2B_ATTEST", ptrOf(quoted)).subarray(2);
    return { attest, signature: this.#marshalAndFree("TPMT_SIGNATURE", ptrOf(sig)) };
  }

  /** sha256 PCR values, in ascending index order. */
  pcrRead(pcrs: readonly number[]): Uint8Array[] {
    const sel = this.#unmarshal("TPML_PCR_SELECTION", pcrSelection(pcrs));
    const counter = new Uint32Array(1);
    const selOut = new BigUint64Array(1);
    const values = new BigUint64Array(1);
    this.#check("Esys_PCR_Read", this.#lib.esys.Esys_PCR_Read(this.#ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, sel, counter, selOut, values));
    this.#lib.esys.Esys_Free(ptrOf(selOut));
    // TPML_DIGEST wire: u32 count, then TPM2B_DIGEST each. A TPM returns at most 8 per call.
    const wire = this.#marshalAndFree("TPML_DIGEST", ptrOf(values));
    const count = new DataView(wire.buffer, wire.byteOffset).getUint32(0);
    const out: Uint8Array[] = [];
    let off = 4;
    for (let i = 0; i < count; i++) {
      const len = (wire[off]! << 8) | wire[off + 1]!;
      out.push(wire.slice(off + 2, off + 2 + len));
      off += 2 + len;
    }
    return out;
  }

  /** Extends a sha256 PCR with a 32-byte digest (PCR_new = sha256(PCR_old || digest)). */
  pcrExtend(pcr: number, digest: Uint8Array): void {
    if (!Number.isInteger(pcr) || pcr < 0 || pcr > 23) throw new TpmError(`PCR index ${pcr} is not 0-23`);
    if (digest.length !== 32) throw new TpmError(`PCR extend: digest must be 32 bytes, got ${digest.length}`);
    const values = this.#unmarshal("TPML_DIGEST_VALUES", new Wire().u32(1).u16(TPM_ALG_SHA256).bytes(digest).done());
    this.#check(`Esys_PCR_Extend(${pcr})`, this.#lib.esys.Esys_PCR_Extend(this.#ctx, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, values));
  }
}

/** The pointer an ESYS out-parameter (T**) received. */
function ptrOf(cell: BigUint64Array): Pointer {
  return Number(cell[0]) as Pointer;
}

function decode(lib: Tss2Libraries, rc: number): string {
  let text = "";
  try {
    text = String(lib.rc.Tss2_RC_Decode(rc));
  } catch {
    text = "unknown error";
  }
  return `${text} (0x${rc.toString(16)})`;
}


