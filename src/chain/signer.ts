// The delegated signing key of DESIGN.md section 4: generated in memory for this
// process, certified by the identity key, never written anywhere. Rotated before its
// certificate expires so a long-running `tail -F | dsm ingest` keeps signing.
import type { KeyObject } from "node:crypto";
import { canonicalize } from "../encoding/jcs.ts";
import { generateKeyPair, sign } from "../crypto/p256.ts";
import type { IdentityKey } from "../identity/identity-key.ts";
import { issueKeyCert, type KeyCert, keyNameOf } from "../protocol/keycert.ts";

export interface IssuedCert {
  cert: KeyCert;
  canonical: string;
  keyName: string;
}

export class ChainSigner {
  #privateKey: KeyObject | null = null;
  #keyName = "";
  #notAfterMs = 0;
  #lifetimeMs: number;
  /** Issued but not yet known to be committed: offered again until stored() is called. */
  #unstored: IssuedCert | null = null;

  constructor(
    private readonly identity: IdentityKey,
    private readonly mesh: string,
    lifetimeSeconds: number,
  ) {
    this.#lifetimeMs = lifetimeSeconds * 1000;
  }

  get keyName(): string {
    return this.#keyName;
  }

  get notAfterMs(): number {
    return this.#notAfterMs;
  }

  /** Forget the current key: the next ready() certifies a new one. */
  expire(): void {
    this.#privateKey = null;
    this.#unstored = null;
  }

  /**
   * Makes sure a certified key can sign seq >= firstSeq at time nowMs. Returns the new
   * certificate when one was issued (the caller stores it in the same transaction as the
   * first microblock it covers), or null when the current one still has a tenth of its life.
   */
  async ready(firstSeq: number, nowMs: number): Promise<IssuedCert | null> {
    const fresh = this.#privateKey && nowMs < this.#notAfterMs - this.#lifetimeMs / 10;
    // An unstored certificate must start exactly at the seq it will first sign: re-issue if another writer moved the head.
    if (fresh && (!this.#unstored || this.#unstored.cert.first_seq === firstSeq)) return this.#unstored;
    const pair = generateKeyPair();
    const notAfterMs = nowMs + this.#lifetimeMs;
    const cert = await issueKeyCert(this.identity, { mesh: this.mesh, signingKey: pair.privateKey, firstSeq, notAfterMs });
    this.#privateKey = pair.privateKey;
    this.#keyName = keyNameOf(pair.publicKey);
    this.#notAfterMs = notAfterMs;
    this.#unstored = { cert, canonical: canonicalize(cert), keyName: this.#keyName };
    return this.#unstored;
  }

  /** The transaction that stored the last issued certificate has committed. */
  stored(): void {
    this.#unstored = null;
  }

  sign(id: Uint8Array): Uint8Array {
    if (!this.#privateKey) throw new Error("signing key not certified yet");
    return sign(this.#privateKey, id);
  }
}
