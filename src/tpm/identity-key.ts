// The identity key of DESIGN.md section 4 held by a TPM: an ECDSA P-256 primary key in the
// owner hierarchy, made persistent at a handle, whose private part never leaves the chip.
// It signs key certificates and the card; microblocks are signed by the delegated
// in-memory key as on every node (section 4), so the TPM's speed never limits ingest.
// The attestation key (restricted, endorsement hierarchy) is a primary key too: the TPM
// derives it again from its endorsement seed whenever a quote is asked for.
import { normaliseLowS } from "../crypto/p256.ts";
import { sha256 } from "../crypto/sha256.ts";
import type { IdentityKey } from "../identity/identity-key.ts";
import { parsePublicArea, parseSignatureEcdsa } from "./attest.ts";
import { eccSigningTemplate, Tpm, TPM2_RC_HANDLE_EMPTY, TpmError } from "./tpm.ts";

export const DEFAULT_TPM_HANDLE = 0x81010001;

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
   * Creates the identity key in the TPM and makes it persistent at `persistentHandle`. A
   * handle that already holds a key is refused unless `force`, which evicts that key first.
   */
  static create(tcti: string, persistentHandle = DEFAULT_TPM_HANDLE, force = false): TpmIdentityKey {
    checkHandle(persistentHandle);
    return withTpm(tcti, (tpm) => {
      let existing: number | null = null;
      try {
        existing = tpm.loadPersistent(persistentHandle);
      } catch (e) {
        if (!(e instanceof TpmError) || (e.rc! & 0xfff) !== TPM2_RC_HANDLE_EMPTY) throw e;
      }
      if (existing !== null) {
        if (!force) throw new TpmError(`TPM handle ${handleHex(persistentHandle)} already holds a key; use --force to replace it (the node gets a new identity) or choose identity.tpm_handle`);
        tpm.persist(existing, persistentHandle); // EvictControl on a persistent object removes it
      }
      // Random \`unique\`: a new identity, not the owner seed's one key for this template
      // (it is persisted, so nothing ever needs to derive it again).
      const made = tpm.createPrimary("owner", eccSigningTemplate(false, crypto.getRandomValues(new Uint8Array(32))));
      tpm.persist(made.handle, persistentHandle);
      tpm.flush(made.handle);
      return new TpmIdentityKey(tcti, persistentHandle, made.publicArea);
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

function checkHandle(h: number): void {
  if (!Number.isInteger(h) || h < 0x81000000 || h > 0x81ffffff) throw new TpmError(`TPM handle ${handleHex(h)} is not a persistent handle (0x81000000 to 0x81ffffff)`);
}
