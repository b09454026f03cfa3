// What a node is known by (DESIGN.md section 4): its node id, the digest of its identity
// public key, and the one operation every format that a node signs needs from its key.
import { sha256Hex } from "../crypto/sha256.ts";

export type KeyKind = "software" | "tpm";

/** A node's identity key as the formats see it: a software key and a TPM key alike. */
export interface IdentityKey {
  readonly kind: KeyKind;
  /** SEC1 compressed P-256 public key, 33 bytes. */
  readonly publicKey: Uint8Array;
  /** ECDSA P-256 (SHA-256) over a 32-byte domain digest; 64-byte r||s, low-S. */
  sign(digest: Uint8Array): Promise<Uint8Array>;
}

/** node_id = hex(sha256(SEC1 compressed identity public key)). */
export function nodeIdOf(identityPub: Uint8Array): string {
  return sha256Hex(identityPub);
}
