// The node's long-term identity key (DESIGN.md section 4). Everything above this
// interface is the same for a software key and a TPM key: the TPM issue adds a
// second implementation, nothing else changes.
import * as fs from "node:fs";
import type { KeyObject } from "node:crypto";
import { generateKeyPair, privateKeyFromPem, privateKeyToPem, publicKeyOf, sign } from "../crypto/p256.ts";
import type { IdentityKey, KeyKind } from "../protocol/node-id.ts";
import { readSecretFile, writeFileAtomic } from "../fs/files.ts";

export type { IdentityKey, KeyKind } from "../protocol/node-id.ts";
export { nodeIdOf } from "../protocol/node-id.ts";

/** An identity known only by its public key (from a card): enough to read and verify, never to sign. */
export class PublicIdentityKey implements IdentityKey {
  private constructor(readonly kind: KeyKind, readonly publicKey: Uint8Array) {}

  static fromCard(card: { identity_pub: string; tpm: boolean }): PublicIdentityKey {
    return new PublicIdentityKey(card.tpm ? "tpm" : "software", new Uint8Array(Buffer.from(card.identity_pub, "hex")));
  }

  async sign(): Promise<Uint8Array> {
    throw new Error("this node was opened read-only: no identity key to sign with");
  }
}

export class SoftwareIdentityKey implements IdentityKey {
  readonly kind = "software" as const;
  readonly publicKey: Uint8Array;
  readonly #privateKey: KeyObject;

  private constructor(privateKey: KeyObject) {
    this.#privateKey = privateKey;
    this.publicKey = publicKeyOf(privateKey);
  }

  static create(file: string, overwrite: boolean): SoftwareIdentityKey {
    const { privateKey } = generateKeyPair();
    writeFileAtomic(file, privateKeyToPem(privateKey), { overwrite });
    return new SoftwareIdentityKey(privateKey);
  }

  static load(file: string): SoftwareIdentityKey {
    if (!fs.existsSync(file)) throw new Error(`identity key ${file} not found (run: dsm init)`);
    try {
      return new SoftwareIdentityKey(privateKeyFromPem(readSecretFile(file).toString("utf8")));
    } catch (e) {
      throw new Error(`identity key ${file}: ${(e as Error).message}`);
    }
  }

  async sign(digest: Uint8Array): Promise<Uint8Array> {
    if (digest.length !== 32) throw new Error("identity key signs 32-byte digests only");
    return sign(this.#privateKey, digest);
  }
}
