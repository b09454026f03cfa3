// The identity key of DESIGN.md section 4 held by a TPM: an ECDSA P-256 primary key in the
// owner hierarchy, made persistent at a handle, whose private part never leaves the chip.
// It signs key certificates and the card; microblocks are signed by the delegated
// in-memory key as on every node (section 4), so the TPM's speed never limits ingest.
// The attestation key (restricted, endorsement hierarchy) is a primary key too: the TPM
// derives it again from its endorsement seed whenever a quote is asked for, so it is never
// persisted and takes no handle.
import { normaliseLowS } from "../crypto/p256.ts";
import { sha256 } from "../crypto/sha256.ts";
import { toHex } from "../encoding/hex.ts";
import type { IdentityKey } from "../identity/identity-key.ts";
import { parsePublicArea, parseSignatureEcdsa } from "./quote.ts";
import { eccSigningTemplate, Tpm, TPM2_RC_HANDLE_EMPTY, TpmError } from "./tpm.ts";

/**
 * The owner range, clear of the storage primary keys' 0x81000000-0x810000ff (the SRK is
 * 0x81000001): the TCG handle registry gives 0x81010000-0x8101ffff to endorsement keys (an
 * RSA EK at 0x81010001, where swtpm and provisioned TPMs put theirs) and 0x81800000 and up
 * to the platform, and dsm makes no key in either.
 */
export const DEFAULT_TPM_HANDLE = 0x81000100;
/** The handles dsm picks from by itself (--tpm-handle auto, or the default handle taken). */
export const DSM_HANDLE_FIRST = DEFAULT_TPM_HANDLE;
export const DSM_HANDLE_LAST = 0x810001ff;

/** Why dsm makes no key at `h`, or null when it may: the ranges the TCG reserves. */
export function reservedHandle(h: number): string | null {
  if (h >= 0x81000000 && h <= 0x810000ff) return "the range of storage primary keys (the SRK is 0x81000001)";
  if (h >= 0x81010000 && h <= 0x8101ffff) return "the endorsement range (the EK lives at 0x81010001)";
  if (h >= 0x81800000) return "the platform range";
  return null;
}

export interface CreateOptions {
  /** Where to persist the key; "auto": the first free handle of the dsm range. Default DEFAULT_TPM_HANDLE. */
  handle?: number | "auto";
  /** The operator named `handle` (a flag, or the config): held by another key, it is refused, never swapped for another. */
  explicit?: boolean;
  /** Replace this data dir's own key (and only it). */
  force?: boolean;
  /** This data dir's key as identity.tpm.json records it: the only key `force` may replace. */
  own?: { handle: number; publicKey: string } | null;
}

export interface CreatedTpmKey {
  key: TpmIdentityKey;
  /** The default handle that held another key, so a free one was taken instead; null if none. */
  skipped: number | null;
  /** The data dir's own key was at the handle and was replaced. */
  replaced: boolean;
  /** The data dir's own previous key, at another handle, evicted; null if none. */
  released: number | null;
}

export function handleHex(h: number): string {
  return `0x${h.toString(16)}`;
}

export interface Quote {
  /** TPMS_ATTEST wire bytes. */
  attest: Uint8Array;
  /** TPMT_SIGNATURE wire bytes. */
  signature: Uint8Array;
  /** TPMT_PUBLIC wire bytes of the attestation key. */
  akPublic: Uint8Array;
}

/**
 * The key holds no TPM connection between operations: each one connects, works, and
 * disconnects (a few ms). So the daemon and `dsm ingest` can share a TPM that takes one
 * client at a time (swtpm without a resource manager), and a TPM restart costs nothing.
 */
export class TpmIdentityKey implements IdentityKey {
  readonly kind = "tpm" as const;
  readonly publicKey: Uint8Array;
  #akPublic: Uint8Array | null = null;

  private constructor(
    readonly tcti: string,
    readonly persistentHandle: number,
    publicArea: Uint8Array,
  ) {
    const pub = parsePublicArea(publicArea);
    if (pub.restricted || !pub.sign) throw new TpmError(`TPM handle ${handleHex(persistentHandle)} holds a key that is not an unrestricted signing key`);
    this.publicKey = pub.sec1Compressed;
  }

  /**
   * Creates the identity key in the TPM and makes it persistent. Only a key this data dir
   * made (`own`, as identity.tpm.json records it: its handle and public key, compared with
   * the key actually found there) is ever replaced, and only with `force`: a handle holding
   * any other key (another node's identity on the same TPM, an EK, another program's key)
   * is left alone. Then a handle the operator named (`explicit`) is refused with a free
   * handle suggested, and a default one gives way to the first free handle of the dsm
   * range, which `CreatedTpmKey.skipped` reports.
   */
  static create(tcti: string, opts: CreateOptions = {}): CreatedTpmKey {
    const asked = opts.handle ?? DEFAULT_TPM_HANDLE;
    if (asked !== "auto") checkHandle(asked);
    const own = opts.own ?? null;
    return withTpm(tcti, (tpm) => {
      const inUse = new Set(tpm.persistentHandles());
      const isOwn = (h: number) => own !== null && own.handle === h && inUse.has(h) && publicKeyAt(tpm, h) === own.publicKey;
      let target: number;
      let skipped: number | null = null;
      let replaced = false;
      if (asked === "auto") {
        target = freeHandle(inUse, own ? (h) => isOwn(h) : () => false, opts.force ?? false);
        replaced = inUse.has(target);
      } else if (!isOwn(asked) && reservedHandle(asked) !== null) {
        // Only this data dir's own key (from before this rule) may stay in a reserved range.
        throw new TpmError(`TPM handle ${handleHex(asked)} is in ${reservedHandle(asked)}: dsm makes no key there; use --tpm-handle ${handleHex(suggestHandle(inUse) ?? DEFAULT_TPM_HANDLE)} (or --tpm-handle auto), or set identity.tpm_handle in the owner range 0x81000100-0x8100ffff`);
      } else if (!inUse.has(asked)) {
        target = asked;
      } else if (isOwn(asked)) {
        if (!opts.force) throw new TpmError(`TPM handle ${handleHex(asked)} holds this node's identity key; --force replaces it (the node gets a new identity)`);
        target = asked;
        replaced = true;
      } else if (opts.explicit) {
        throw new TpmError(foreignKeyMessage(asked, own, suggestHandle(inUse)));
      } else {
        const free = suggestHandle(inUse);
        if (free === null) throw new TpmError(foreignKeyMessage(asked, own, null));
        target = free;
        skipped = asked;
      }
      // Random \`unique\`: a new identity, not the owner seed's one key for this template
      // (it is persisted, so nothing ever needs to derive it again). Made before anything is
      // evicted, so a failure here loses nothing.
      const made = tpm.createPrimary("owner", eccSigningTemplate(false, crypto.getRandomValues(new Uint8Array(32))));
      try {
        if (replaced) tpm.persist(tpm.loadPersistent(target), target); // EvictControl on a persistent object removes it
        tpm.persist(made.handle, target);
      } finally {
        tpm.flush(made.handle);
      }
      // The data dir's previous key, elsewhere: it is nobody's identity any more, and a TPM
      // has room for few persistent keys.
      let released: number | null = null;
      if (opts.force && own && own.handle !== target && isOwn(own.handle)) {
        tpm.persist(tpm.loadPersistent(own.handle), own.handle);
        released = own.handle;
      }
      return { key: new TpmIdentityKey(tcti, target, made.publicArea), skipped, replaced, released };
    });
  }

  /** The identity key persisted at a handle; a clear error when the handle is empty. */
  static load(tcti: string, persistentHandle = DEFAULT_TPM_HANDLE): TpmIdentityKey {
    checkHandle(persistentHandle);
    return withTpm(tcti, (tpm) => new TpmIdentityKey(tcti, persistentHandle, tpm.readPublic(loadHandle(tpm, persistentHandle))));
  }

  /** Same contract as the software key: ECDSA-SHA256 with the 32-byte domain digest as the message. */
  async sign(digest: Uint8Array): Promise<Uint8Array> {
    if (!(digest instanceof Uint8Array) || digest.length !== 32) throw new TpmError("the identity key signs 32-byte digests only");
    // ECDSA-SHA256 hashes its message; the TPM signs a hash it is given, so it gets sha256(digest).
    const wire = withTpm(this.tcti, (tpm) => tpm.sign(loadHandle(tpm, this.persistentHandle), sha256(digest)));
    const sig = parseSignatureEcdsa(wire);
    const rs = new Uint8Array(64);
    rs.set(sig.r, 0);
    rs.set(sig.s, 32);
    // TPMs return either half of s; dsm signatures are low-S.
    return normaliseLowS(rs);
  }

  /** TPMT_PUBLIC of the attestation key (derived from the endorsement seed, the same every time). */
  attestationPublic(): Uint8Array {
    this.#akPublic ??= withTpm(this.tcti, (tpm) => {
      const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
      tpm.flush(ak.handle);
      return ak.publicArea;
    });
    return this.#akPublic;
  }

  /** SEC1 compressed public key of the attestation key, as the card names it. */
  attestationKeySec1(): Uint8Array {
    return parsePublicArea(this.attestationPublic()).sec1Compressed;
  }

  /** TPM2_Quote over sha256 PCRs with the attestation key. */
  quote(nonce: Uint8Array, pcrs: readonly number[]): Quote {
    return withTpm(this.tcti, (tpm) => {
      const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
      try {
        this.#akPublic ??= ak.publicArea;
        return { ...tpm.quote(ak.handle, nonce, pcrs), akPublic: ak.publicArea };
      } finally {
        tpm.flush(ak.handle);
      }
    });
  }

  pcrRead(pcrs: readonly number[]): Uint8Array[] {
    return withTpm(this.tcti, (tpm) => tpm.pcrRead(pcrs));
  }

  /** Kept for callers that close what they open: there is no connection to close. */
  close(): void {}
}

/** Runs fn on a fresh connection to the TPM, closed afterwards whatever happens. */
export function withTpm<T>(tcti: string, fn: (tpm: Tpm) => T): T {
  const tpm = Tpm.open(tcti);
  try {
    return fn(tpm);
  } finally {
    tpm.close();
  }
}

function loadHandle(tpm: Tpm, persistentHandle: number): number {
  try {
    return tpm.loadPersistent(persistentHandle);
  } catch (e) {
    if (e instanceof TpmError && (e.rc! & 0xfff) === TPM2_RC_HANDLE_EMPTY) {
      throw new TpmError(`TPM handle ${handleHex(persistentHandle)} is empty: this TPM holds no dsm identity key there (was the TPM cleared, or is identity.tpm_handle wrong? dsm init --tpm creates one)`, e.rc);
    }
    throw e;
  }
}

/** SEC1 public key (hex) of the key at a persistent handle; null when it is not a P-256 key. */
function publicKeyAt(tpm: Tpm, h: number): string | null {
  try {
    return toHex(parsePublicArea(tpm.readPublic(tpm.loadPersistent(h))).sec1Compressed);
  } catch {
    return null;
  }
}

/** The first handle of the dsm range that holds nothing; null when all are taken. */
function suggestHandle(inUse: Set<number>): number | null {
  for (let h = DSM_HANDLE_FIRST; h <= DSM_HANDLE_LAST; h++) if (!inUse.has(h)) return h;
  return null;
}

/** For "auto": this data dir's own key's handle when force replaces it, else the first free one. */
function freeHandle(inUse: Set<number>, isOwn: (h: number) => boolean, force: boolean): number {
  for (let h = DSM_HANDLE_FIRST; h <= DSM_HANDLE_LAST; h++) if (!inUse.has(h) || (force && isOwn(h))) return h;
  throw new TpmError(`no free TPM persistent handle in ${handleHex(DSM_HANDLE_FIRST)}-${handleHex(DSM_HANDLE_LAST)} (tpm2_getcap handles-persistent lists them); choose one with --tpm-handle`);
}

function foreignKeyMessage(h: number, own: CreateOptions["own"], free: number | null): string {
  const whose = own && own.handle === h ? "a key that is not the one this data dir recorded in identity.tpm.json" : "a key this data dir did not create";
  const hint = free !== null ? `use a free handle: --tpm-handle ${handleHex(free)} (or --tpm-handle auto)` : `no handle of ${handleHex(DSM_HANDLE_FIRST)}-${handleHex(DSM_HANDLE_LAST)} is free; choose one with --tpm-handle`;
  return `TPM handle ${handleHex(h)} holds ${whose} (another node's identity, or another program's key), so it is left alone, even with --force; ${hint}. A key known to be unused can be removed with: tpm2_evictcontrol -C o -c ${handleHex(h)}`;
}

function checkHandle(h: number): void {
  if (!Number.isInteger(h) || h < 0x81000000 || h > 0x81ffffff) throw new TpmError(`TPM handle ${handleHex(h)} is not a persistent handle (0x81000000 to 0x81ffffff)`);
}
