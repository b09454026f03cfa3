// The identity key of DESIGN.md section 4 held by a TPM: an ECDSA P-256 primary key in the
// owner hierarchy, made persistent at a handle, whose private part never leaves the chip.
// It signs key certificates and the card; microblocks are signed by the delegated
// in-memory key as on every node (section 4), so the TPM's speed never limits ingest.
// The attestation key (restricted, endorsement hierarchy) is a primary key too: the TPM
// derives it again from its endorsement seed whenever a quote is asked for, so it is never
// persisted and takes no handle.
//
// Every command that uses a key (sign, quote, certify, activate) is authorised through an
// HMAC session salted with the endorsement key (ek.ts), with parameter encryption: the
// digest, qualifyingData, credential blob and the answers travel encrypted between dsm and
// the TPM, and only the TPM holding that EK knows the session key. The salting EK is the
// certified one (checked against its certificate once per key object, then byte for byte
// on each use); a TPM with no EK certificate salts with the ECC P-256 template EK, which is
// cheap to derive (the RSA one costs a TPM2_CreatePrimary of RSA 2048 on each use unless
// persisted), since without a certificate no EK is any more trusted than another.
import { normaliseLowS } from "../crypto/p256.ts";
import { sha256 } from "../crypto/sha256.ts";
import { toHex } from "../encoding/hex.ts";
import { TPMA_SESSION_CONTINUESESSION } from "../../ffi/tss2.ts";
import type { IdentityKey } from "../identity/identity-key.ts";
import { EkCertificateMismatch, type EkKind, type Endorsement, endorsementOf, ekPolicySession, findEkCertificate, type LoadedEk, loadEk } from "./ek.ts";
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

/** TPM2_Certify of the identity key by the AK: the same three parts as a quote, attest of type 0x8017. */
export type Certification = Quote;

/**
 * The key holds no TPM connection between operations: each one connects, works, and
 * disconnects (a few ms). So the daemon and `dsm ingest` can share a TPM that takes one
 * client at a time (swtpm without a resource manager), and a TPM restart costs nothing.
 */
export class TpmIdentityKey implements IdentityKey {
  readonly kind = "tpm" as const;
  readonly publicKey: Uint8Array;
  readonly #publicArea: Uint8Array;
  #akPublic: Uint8Array | null = null;
  /** The EK certificate found in NV (undefined: not looked for yet; null: there is none). */
  #ekCert: { kind: EkKind; certificate: Uint8Array } | null | undefined = undefined;
  #endorsement: Endorsement | null = null;

  private constructor(
    readonly tcti: string,
    readonly persistentHandle: number,
    publicArea: Uint8Array,
  ) {
    const pub = parsePublicArea(publicArea);
    if (pub.restricted || !pub.sign) throw new TpmError(`TPM handle ${handleHex(persistentHandle)} holds a key that is not an unrestricted signing key`);
    this.publicKey = pub.sec1Compressed;
    this.#publicArea = Uint8Array.from(publicArea);
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
    const wire = withTpm(this.tcti, (tpm) => {
      const key = loadHandle(tpm, this.persistentHandle);
      return this.#salted(tpm, (session) => tpm.sign(key, sha256(digest), session));
    });
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

  /**
   * TPM2_Quote over sha256 PCRs with the attestation key; qualifyingData (at most 64 bytes,
   * a nonce or a digest binding the quote to something) is the attest's extraData.
   */
  quote(qualifyingData: Uint8Array, pcrs: readonly number[]): Quote {
    return withTpm(this.tcti, (tpm) =>
      this.#withAk(tpm, (ak) => ({ ...this.#salted(tpm, (session) => tpm.quote(ak.handle, qualifyingData, pcrs, session)), akPublic: ak.publicArea })),
    );
  }

  /** TPMT_PUBLIC wire bytes of the identity key (its name is 0x000b || sha256 of them). */
  identityPublicArea(): Uint8Array {
    return Uint8Array.from(this.#publicArea);
  }

  /**
   * The EK this TPM presents (ek.ts endorsementOf): the first of RSA 2048, ECC P-256, ECC
   * P-384 whose certificate is in NV, with that certificate (checked to certify this EK);
   * with none, the RSA 2048 template EK and certificate null. Read once per key object.
   */
  endorsement(): Endorsement {
    const e = this.#endorsement ?? withTpm(this.tcti, (tpm) => this.#endorsementOn(tpm));
    return { kind: e.kind, publicArea: Uint8Array.from(e.publicArea), certificate: e.certificate && Uint8Array.from(e.certificate) };
  }

  /**
   * TPM2_Certify: the AK signs that this TPM holds the identity key (TPMS_ATTEST type 0x8017
   * naming it, extraData = qualifyingData, at most 64 bytes). The identity key's ADMIN auth
   * comes through the EK-salted session with parameter encryption, the AK's through a second
   * salted session without (ESYS allows one encrypting session per command).
   */
  certifyIdentity(qualifyingData: Uint8Array): Certification {
    return withTpm(this.tcti, (tpm) => {
      const key = loadHandle(tpm, this.persistentHandle);
      return this.#withAk(tpm, (ak) =>
        this.#salted(tpm, (session, ek) => {
          const signSession = tpm.startSaltedSession(ek.handle);
          try {
            tpm.setSessionAttributes(signSession, TPMA_SESSION_CONTINUESESSION);
            return { ...tpm.certify(key, ak.handle, qualifyingData, { object: session, sign: signSession }), akPublic: ak.publicArea };
          } finally {
            tpm.flush(signSession);
          }
        }),
      );
    });
  }

  /**
   * TPM2_ActivateCredential with this TPM's EK (endorsement()) and the AK: recovers the
   * credential a verifier made with TPM2_MakeCredential for the AK's name against the EK
   * (credentialBlob: TPM2B_ID_OBJECT contents, secret: TPM2B_ENCRYPTED_SECRET contents). The
   * AK's auth is the EK-salted HMAC session (the blob and the answer encrypted), the EK's a
   * policy session satisfying its authPolicy. A credential for another key or another TPM's
   * EK fails with a TpmError.
   */
  activateCredential(credentialBlob: Uint8Array, secret: Uint8Array): Uint8Array {
    return withTpm(this.tcti, (tpm) => {
      const e = this.#endorsementOn(tpm);
      return this.#withAk(tpm, (ak) => {
        const ek = this.#loadEndorsementEk(tpm, e);
        try {
          const session = tpm.startSaltedSession(ek.handle);
          try {
            const policy = ekPolicySession(tpm, e.kind);
            try {
              return tpm.activateCredential(ak.handle, ek.handle, credentialBlob, secret, { activate: session, key: policy });
            } catch (err) {
              // A secret for another EK makes libtpms answer 0x101 "TPM failure" (its RSA-OAEP
              // decoding failed; the TPM is fine), another name 0x1df "integrity check failed".
              if (err instanceof TpmError && err.rc !== undefined && err.rc >>> 16 === 0) {
                throw new TpmError(`${err.message}: the credential does not open with this TPM's ${e.kind} EK and attestation key (made for another TPM's EK, or another key's name?)`, err.rc);
              }
              throw err;
            } finally {
              tpm.flush(policy);
            }
          } finally {
            tpm.flush(session);
          }
        } finally {
          ek.release();
        }
      });
    });
  }

  /** The primary AK, derived for one use and flushed. */
  #withAk<T>(tpm: Tpm, fn: (ak: { handle: number; publicArea: Uint8Array }) => T): T {
    const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
    try {
      this.#akPublic ??= ak.publicArea;
      return fn(ak);
    } finally {
      tpm.flush(ak.handle);
    }
  }

  #certOn(tpm: Tpm): { kind: EkKind; certificate: Uint8Array } | null {
    if (this.#ekCert === undefined) this.#ekCert = findEkCertificate(tpm);
    return this.#ekCert;
  }

  #endorsementOn(tpm: Tpm): Endorsement {
    this.#endorsement ??= endorsementOf(tpm, this.#certOn(tpm));
    return this.#endorsement;
  }

  /** The endorsement EK, loaded again: the same key byte for byte, or a TpmError (it changed under us). */
  #loadEndorsementEk(tpm: Tpm, e: Endorsement): LoadedEk {
    const ek = loadEk(tpm, e.kind);
    if (!sameBytes(ek.publicArea, e.publicArea)) {
      ek.release();
      throw new TpmError(`this TPM's ${e.kind} EK is not the one read before (its public area changed): was the TPM cleared or the persistent EK replaced?`);
    }
    return ek;
  }

  /** Runs fn with an HMAC session salted with the EK (see the top of this file), flushed afterwards. */
  #salted<T>(tpm: Tpm, fn: (session: number, ek: LoadedEk) => T): T {
    const cert = this.#certOn(tpm);
    let certified: Endorsement | null = null;
    if (cert !== null) {
      try {
        certified = this.#endorsementOn(tpm);
      } catch (e) {
        // An EK from a vendor template: no enrollment, but signing must go on.
        if (!(e instanceof EkCertificateMismatch)) throw e;
      }
    }
    const ek = certified !== null ? this.#loadEndorsementEk(tpm, certified) : loadEk(tpm, "ecc-p256");
    try {
      const session = tpm.startSaltedSession(ek.handle);
      try {
        return fn(session, ek);
      } finally {
        tpm.flush(session);
      }
    } finally {
      ek.release();
    }
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

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function checkHandle(h: number): void {
  if (!Number.isInteger(h) || h < 0x81000000 || h > 0x81ffffff) throw new TpmError(`TPM handle ${handleHex(h)} is not a persistent handle (0x81000000 to 0x81ffffff)`);
}
