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
  TPM2_CAP_TPM_PROPERTIES,
  TPM2_HR_PERSISTENT,
  TPM2_PT_NV_BUFFER_MAX,
  TPM2_SE_HMAC,
  TPM2_SE_POLICY,
  TPM2_SU_CLEAR,
  TPMA_SESSION_CONTINUESESSION,
  TPMA_SESSION_DECRYPT,
  TPMA_SESSION_ENCRYPT,
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
export const TPM2_RC_HANDLE_EMPTY = 0x18b; // nothing at that persistent handle (or NV index)

/** TPMA_NV bits that say who may read an NV index (Part 2, 13.4). */
export const TPMA_NV_OWNERREAD = 1 << 17;
export const TPMA_NV_AUTHREAD = 1 << 18;
/** TPM_ALG_AES and TPM_ALG_CFB: the session's parameter-encryption cipher. */
const TPM_ALG_AES = 0x0006;
const TPM_ALG_CFB = 0x0043;
/** TPM2_MAX_NV_BUFFER_SIZE of tpm2-tss: the largest chunk ever asked for. */
const NV_CHUNK_MAX = 1024;

/** The public area of an NV index (TPMS_NV_PUBLIC). */
export interface NvPublic {
  nvIndex: number;
  nameAlg: number;
  attributes: number;
  authPolicy: Uint8Array;
  dataSize: number;
}

/** True for a TSS2_RC that means "no such handle" (a persistent key or NV index that is absent). */
export function isHandleEmpty(e: unknown): e is TpmError {
  return e instanceof TpmError && e.rc !== undefined && (e.rc & 0xfff) === TPM2_RC_HANDLE_EMPTY;
}

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

  /** TPM2_GetCapability: the TPMS_CAPABILITY_DATA wire bytes, and whether the TPM has more. */
  #capability(what: string, capability: number, property: number, count: number): { wire: Uint8Array; more: boolean } {
    const more = new Uint8Array(1);
    const data = new BigUint64Array(1);
    this.#check(`Esys_GetCapability(${what})`, this.#lib.esys.Esys_GetCapability(this.#ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, capability, property, count, more, data));
    return { wire: this.#marshalAndFree("TPMS_CAPABILITY_DATA", ptrOf(data)), more: more[0] !== 0 };
  }

  /**
   * Every persistent handle in use (TPM2_GetCapability TPM_CAP_HANDLES from 0x81000000),
   * ascending: keys of any owner, dsm's or not. Asked in pages until the TPM says no more.
   */
  persistentHandles(): number[] {
    const out: number[] = [];
    let from = TPM2_HR_PERSISTENT;
    for (let page = 0; page < 1024; page++) {
      const { wire, more } = this.#capability("TPM_CAP_HANDLES", TPM2_CAP_HANDLES, from, 128);
      // TPMS_CAPABILITY_DATA wire: u32 capability, then TPML_HANDLE: u32 count, u32 handles.
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
      if (!more || last < 0 || last >= 0x81ffffff) break;
      from = last + 1;
    }
    return [...new Set(out)].sort((a, b) => a - b);
  }

  flush(handle: number): void {
    this.#check("Esys_FlushContext", this.#lib.esys.Esys_FlushContext(this.#ctx, handle));
  }

  /**
   * ECDSA P-256 over a 32-byte digest with an unrestricted key: TPMT_SIGNATURE wire bytes.
   * `session` authorises the key: ESYS_TR_PASSWORD (empty password) or an HMAC session from
   * startSaltedSession, which also encrypts the digest on its way to the TPM.
   */
  sign(handle: number, digest: Uint8Array, session: number = ESYS_TR_PASSWORD): Uint8Array {
    if (digest.length !== 32) throw new TpmError(`TPM sign: digest must be 32 bytes, got ${digest.length}`);
    const d = this.#unmarshal("TPM2B_DIGEST", new Wire().sized(digest).done());
    const scheme = this.#unmarshal("TPMT_SIG_SCHEME", new Wire().u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).done());
    // A NULL ticket: the digest was not made by the TPM, which an unrestricted key allows.
    const ticket = this.#unmarshal("TPMT_TK_HASHCHECK", new Wire().u16(0x8024).u32(0x40000007).sized(new Uint8Array(0)).done());
    const out = new BigUint64Array(1);
    this.#check("Esys_Sign", this.#lib.esys.Esys_Sign(this.#ctx, handle, session, ESYS_TR_NONE, ESYS_TR_NONE, d, scheme, ticket, out));
    return this.#marshalAndFree("TPMT_SIGNATURE", ptrOf(out));
  }

  /**
   * TPM2_Quote over sha256 PCRs: the TPMS_ATTEST wire bytes and the TPMT_SIGNATURE over them.
   * qualifyingData (at most 64 bytes) becomes the attest's extraData. `session` authorises the
   * AK (ESYS_TR_PASSWORD, or a salted HMAC session: qualifyingData and the attest are then
   * encrypted on the bus).
   */
  quote(akHandle: number, qualifyingData: Uint8Array, pcrs: readonly number[], session: number = ESYS_TR_PASSWORD): { attest: Uint8Array; signature: Uint8Array } {
    if (qualifyingData.length > 64) throw new TpmError(`TPM quote: qualifyingData must be at most 64 bytes, got ${qualifyingData.length}`);
    const data = this.#unmarshal("TPM2B_DATA", new Wire().sized(qualifyingData).done());
    const scheme = this.#unmarshal("TPMT_SIG_SCHEME", new Wire().u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).done());
    const sel = this.#unmarshal("TPML_PCR_SELECTION", pcrSelection(pcrs));
    const quoted = new BigUint64Array(1);
    const sig = new BigUint64Array(1);
    this.#check("Esys_Quote", this.#lib.esys.Esys_Quote(this.#ctx, akHandle, session, ESYS_TR_NONE, ESYS_TR_NONE, data, scheme, sel, quoted, sig));
    const attest = this.#marshalAndFree("TPM2B_ATTEST", ptrOf(quoted)).subarray(2);
    return { attest, signature: this.#marshalAndFree("TPMT_SIGNATURE", ptrOf(sig)) };
  }

  // -------------------------------------------------------------------------------------------
  // NV indices (the EK certificate)

  /** TPMS_NV_PUBLIC of an NV index (an ESYS_TR from loadPersistent / Esys_TR_FromTPMPublic). */
  nvReadPublic(nvHandle: number): NvPublic {
    const pub = new BigUint64Array(1);
    const name = new BigUint64Array(1);
    this.#check("Esys_NV_ReadPublic", this.#lib.esys.Esys_NV_ReadPublic(this.#ctx, nvHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, pub, name));
    this.#lib.esys.Esys_Free(ptrOf(name));
    // TPM2B_NV_PUBLIC: u16 size, u32 nvIndex, u16 nameAlg, u32 attributes, TPM2B authPolicy, u16 dataSize
    const w = this.#marshalAndFree("TPM2B_NV_PUBLIC", ptrOf(pub));
    const dv = new DataView(w.buffer, w.byteOffset, w.byteLength);
    const policyLen = dv.getUint16(12);
    if (w.length !== 16 + policyLen) throw new TpmError(`Esys_NV_ReadPublic: TPM2B_NV_PUBLIC of ${w.length} bytes does not parse`);
    return { nvIndex: dv.getUint32(2), nameAlg: dv.getUint16(6), attributes: dv.getUint32(8), authPolicy: w.slice(14, 14 + policyLen), dataSize: dv.getUint16(14 + policyLen) };
  }

  #nvBufferMax: number | null = null;

  /** TPM2_PT_NV_BUFFER_MAX: the largest NV_Read the TPM takes (asked once per connection). */
  nvBufferMax(): number {
    if (this.#nvBufferMax !== null) return this.#nvBufferMax;
    const { wire: w } = this.#capability("TPM_PT_NV_BUFFER_MAX", TPM2_CAP_TPM_PROPERTIES, TPM2_PT_NV_BUFFER_MAX, 1);
    // TPMS_CAPABILITY_DATA: u32 capability, TPML_TAGGED_TPM_PROPERTY: u32 count, (u32 property, u32 value)...
    const dv = new DataView(w.buffer, w.byteOffset, w.byteLength);
    let max = NV_CHUNK_MAX;
    if (w.length >= 16 && dv.getUint32(0) === TPM2_CAP_TPM_PROPERTIES && dv.getUint32(4) >= 1 && dv.getUint32(8) === TPM2_PT_NV_BUFFER_MAX) max = dv.getUint32(12);
    this.#nvBufferMax = Math.max(1, Math.min(max, 0xffff));
    return this.#nvBufferMax;
  }

  /**
   * The whole contents of an NV index, as tpm2_nvread (and tpm2_getekcertificate) read it:
   * authorised by the index itself when it is AUTHREAD, else by the owner (OWNERREAD), with an
   * empty password; in chunks of at most min(1024, TPM2_PT_NV_BUFFER_MAX) bytes (`chunk`
   * overrides; a chunk the TPM calls too large is halved and retried). An absent index is a
   * TpmError with rc TPM2_RC_HANDLE_EMPTY (see isHandleEmpty).
   */
  nvRead(index: number, opts: { chunk?: number } = {}): Uint8Array {
    const label = `NV index 0x${index.toString(16).padStart(8, "0")}`;
    if (!Number.isInteger(index) || index >>> 24 !== 0x01) throw new TpmError(`${label} is not an NV index handle (0x01xxxxxx)`);
    const nv = new Uint32Array(1);
    const rc = this.#lib.esys.Esys_TR_FromTPMPublic(this.#ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nv);
    if (rc !== 0) {
      if ((rc & 0xfff) === TPM2_RC_HANDLE_EMPTY) throw new TpmError(`${label} is not defined on this TPM`, rc);
      this.#check(`Esys_TR_FromTPMPublic(${label})`, rc);
    }
    // The ESYS_TR stays until close(), as loadPersistent's do: ESYS hands out one per TPM
    // handle, so closing it here would close a caller's too.
    const handle = nv[0]!;
    const pub = this.nvReadPublic(handle);
    let auth: number;
    if (pub.attributes & TPMA_NV_AUTHREAD) auth = handle;
    else if (pub.attributes & TPMA_NV_OWNERREAD) auth = ESYS_TR_RH_OWNER;
    else throw new TpmError(`${label} is readable neither with its own auth nor the owner's (attributes 0x${pub.attributes.toString(16)})`);
    let chunk = opts.chunk ?? Math.min(NV_CHUNK_MAX, this.nvBufferMax());
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > 0xffff) throw new TpmError(`${label}: chunk size ${chunk} is not 1-65535`);
    const out = new Uint8Array(pub.dataSize);
    let off = 0;
    while (off < out.length) {
      const want = Math.min(chunk, out.length - off);
      const data = new BigUint64Array(1);
      const r = this.#lib.esys.Esys_NV_Read(this.#ctx, auth, handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, want, off, data);
      if (r !== 0 && isSizeError(r) && want > 16) {
        chunk = Math.max(16, want >> 1); // more than TPM2_PT_NV_BUFFER_MAX: smaller chunks
        continue;
      }
      this.#check(`Esys_NV_Read(${label}, offset ${off}, size ${want})`, r);
      const w = this.#marshalAndFree("TPM2B_MAX_NV_BUFFER", ptrOf(data));
      const got = w.subarray(2);
      if (got.length === 0 || got.length > want) throw new TpmError(`Esys_NV_Read(${label}): asked ${want} bytes at ${off}, got ${got.length}`);
      out.set(got, off);
      off += got.length;
    }
    return out;
  }

  /** The TPM name of a loaded object or NV index (nameAlg || digest of its public area). */
  trName(handle: number): Uint8Array {
    const out = new BigUint64Array(1);
    this.#check("Esys_TR_GetName", this.#lib.esys.Esys_TR_GetName(this.#ctx, handle, out));
    return this.#marshalAndFree("TPM2B_NAME", ptrOf(out)).slice(2);
  }

  // -------------------------------------------------------------------------------------------
  // Sessions

  /**
   * An HMAC session salted with `saltKey` (an EK: ESYS encrypts the salt to its public key,
   * RSA-OAEP or ECDH, so only that TPM learns the session key), unbound, AES-128-CFB
   * parameter encryption, SHA-256, attributes continueSession | decrypt | encrypt: the first
   * TPM2B parameter of each command (a digest, qualifyingData, a credential blob) and of each
   * response travel encrypted; ESYS drops decrypt or encrypt for a command that has no such
   * parameter (TPM2_Sign's response). Flush it when done.
   */
  startSaltedSession(saltKey: number): number {
    const sym = this.#unmarshal("TPMT_SYM_DEF", new Wire().u16(TPM_ALG_AES).u16(128).u16(TPM_ALG_CFB).done());
    const out = new Uint32Array(1);
    this.#check(
      "Esys_StartAuthSession(HMAC, salted)",
      this.#lib.esys.Esys_StartAuthSession(this.#ctx, saltKey, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, null, TPM2_SE_HMAC, sym, TPM_ALG_SHA256, out),
    );
    const session = out[0]!;
    try {
      const all = TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT;
      this.#check("Esys_TRSess_SetAttributes", this.#lib.esys.Esys_TRSess_SetAttributes(this.#ctx, session, all, 0xff));
    } catch (e) {
      this.flush(session);
      throw e;
    }
    return session;
  }

  /** A policy session (unsalted, no parameter encryption) whose digest uses `authHash` (the nameAlg of the object it will authorise). */
  startPolicySession(authHash: number): number {
    const sym = this.#unmarshal("TPMT_SYM_DEF", new Wire().u16(TPM_ALG_NULL).done());
    const out = new Uint32Array(1);
    this.#check(
      "Esys_StartAuthSession(policy)",
      this.#lib.esys.Esys_StartAuthSession(this.#ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, null, TPM2_SE_POLICY, sym, authHash, out),
    );
    return out[0]!;
  }

  /** TPM2_PolicySecret: the policy session is satisfied by the auth of `authHandle` (default the endorsement hierarchy, empty password). */
  policySecret(policySession: number, authHandle: number = ESYS_TR_RH_ENDORSEMENT): void {
    const nonce = this.#unmarshal("TPM2B_NONCE", new Wire().sized(new Uint8Array(0)).done());
    const cpHash = this.#unmarshal("TPM2B_DIGEST", new Wire().sized(new Uint8Array(0)).done());
    const ref = this.#unmarshal("TPM2B_NONCE", new Wire().sized(new Uint8Array(0)).done());
    const timeout = new BigUint64Array(1);
    const ticket = new BigUint64Array(1);
    this.#check(
      "Esys_PolicySecret",
      this.#lib.esys.Esys_PolicySecret(this.#ctx, authHandle, policySession, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, nonce, cpHash, ref, 0, timeout, ticket),
    );
    this.#lib.esys.Esys_Free(ptrOf(timeout));
    this.#lib.esys.Esys_Free(ptrOf(ticket));
  }

  /** TPM2_PolicyOR over 2-8 branch digests, the session's current digest being one of them. */
  policyOr(policySession: number, branches: readonly Uint8Array[]): void {
    if (branches.length < 2 || branches.length > 8) throw new TpmError(`TPM2_PolicyOR takes 2-8 branches, got ${branches.length}`);
    const w = new Wire().u32(branches.length);
    for (const b of branches) w.sized(b);
    const list = this.#unmarshal("TPML_DIGEST", w.done());
    this.#check("Esys_PolicyOR", this.#lib.esys.Esys_PolicyOR(this.#ctx, policySession, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, list));
  }

  /** The policy session's current digest. */
  policyDigest(policySession: number): Uint8Array {
    const out = new BigUint64Array(1);
    this.#check("Esys_PolicyGetDigest", this.#lib.esys.Esys_PolicyGetDigest(this.#ctx, policySession, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out));
    return this.#marshalAndFree("TPM2B_DIGEST", ptrOf(out)).slice(2);
  }

  /** TPMA_SESSION of a session as ESYS will send it (continueSession 0x01, decrypt 0x20, encrypt 0x40). */
  sessionAttributes(session: number): number {
    const out = new Uint8Array(1);
    this.#check("Esys_TRSess_GetAttributes", this.#lib.esys.Esys_TRSess_GetAttributes(this.#ctx, session, out));
    return out[0]!;
  }

  /** Sets the TPMA_SESSION bits under `mask` to those of `flags`. */
  setSessionAttributes(session: number, flags: number, mask: number = 0xff): void {
    this.#check("Esys_TRSess_SetAttributes", this.#lib.esys.Esys_TRSess_SetAttributes(this.#ctx, session, flags, mask));
  }

  // -------------------------------------------------------------------------------------------
  // Certify and ActivateCredential

  /**
   * TPM2_Certify: `signHandle` (a restricted ECDSA P-256 key: the AK) signs that the TPM holds
   * `objectHandle`. attest is TPMS_ATTEST (type TPM_ST_ATTEST_CERTIFY 0x8017: the object's name
   * and qualified name, extraData = qualifyingData), signature a TPMT_SIGNATURE (ECDSA
   * SHA-256). The object needs ADMIN auth, the signer USER auth: each from its own session
   * (ESYS_TR_PASSWORD by default). ESYS refuses one session in both places, and two sessions
   * with encrypt (0x7001a): with two salted sessions, only the first may encrypt.
   */
  certify(objectHandle: number, signHandle: number, qualifyingData: Uint8Array, sessions: { object?: number; sign?: number } = {}): { attest: Uint8Array; signature: Uint8Array } {
    if (qualifyingData.length > 64) throw new TpmError(`TPM certify: qualifyingData must be at most 64 bytes, got ${qualifyingData.length}`);
    const data = this.#unmarshal("TPM2B_DATA", new Wire().sized(qualifyingData).done());
    const scheme = this.#unmarshal("TPMT_SIG_SCHEME", new Wire().u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).done());
    const info = new BigUint64Array(1);
    const sig = new BigUint64Array(1);
    this.#check(
      "Esys_Certify",
      this.#lib.esys.Esys_Certify(this.#ctx, objectHandle, signHandle, sessions.object ?? ESYS_TR_PASSWORD, sessions.sign ?? ESYS_TR_PASSWORD, ESYS_TR_NONE, data, scheme, info, sig),
    );
    const attest = this.#marshalAndFree("TPM2B_ATTEST", ptrOf(info)).subarray(2);
    return { attest, signature: this.#marshalAndFree("TPMT_SIGNATURE", ptrOf(sig)) };
  }

  /**
   * TPM2_ActivateCredential: the EK (`keyHandle`) recovers the seed in `secret`
   * (TPM2B_ENCRYPTED_SECRET contents), and releases the credential in `credentialBlob`
   * (TPM2B_ID_OBJECT contents) only if it was made for the name of `activateHandle` (the AK).
   * The AK needs ADMIN auth (`sessions.activate`, default ESYS_TR_PASSWORD; a salted HMAC
   * session encrypts the blob and the answer); the EK USER auth, its authPolicy:
   * `sessions.key`, or by default a policy session here with PolicySecret(TPM_RH_ENDORSEMENT)
   * in the EK's nameAlg, flushed afterwards (the TCG low-range templates' PolicyA; ek.ts makes
   * the high-range PolicyB). Returns the credential.
   */
  activateCredential(activateHandle: number, keyHandle: number, credentialBlob: Uint8Array, secret: Uint8Array, sessions: { activate?: number; key?: number } = {}): Uint8Array {
    const blob = this.#unmarshal("TPM2B_ID_OBJECT", new Wire().sized(credentialBlob).done());
    const seed = this.#unmarshal("TPM2B_ENCRYPTED_SECRET", new Wire().sized(secret).done());
    let keySession = sessions.key;
    let own = false;
    if (keySession === undefined) {
      const pub = this.readPublic(keyHandle); // TPMT_PUBLIC: u16 type, u16 nameAlg, ...
      keySession = this.startPolicySession((pub[2]! << 8) | pub[3]!);
      own = true;
    }
    try {
      if (own) this.policySecret(keySession);
      const out = new BigUint64Array(1);
      this.#check(
        "Esys_ActivateCredential",
        this.#lib.esys.Esys_ActivateCredential(this.#ctx, activateHandle, keyHandle, sessions.activate ?? ESYS_TR_PASSWORD, keySession, ESYS_TR_NONE, blob, seed, out),
      );
      return this.#marshalAndFree("TPM2B_DIGEST", ptrOf(out)).slice(2);
    } finally {
      if (own) this.flush(keySession);
    }
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

/** TPM_RC_VALUE or TPM_RC_SIZE (format-one codes, any parameter): a chunk the TPM will not take. */
function isSizeError(rc: number): boolean {
  return rc >>> 16 === 0 && (rc & 0x80) !== 0 && ((rc & 0x3f) === 0x04 || (rc & 0x3f) === 0x15);
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


