// Signed objects all follow one rule (DESIGN.md section 2): the signature covers the
// domain digest of the body, and the stored form is body + "sig". One helper for all.
import type { KeyObject } from "node:crypto";
import { fromHex, toHex } from "../encoding/hex.ts";
import { type DigestKind, domainDigest } from "./sha256.ts";
import { importPublicKey, verify } from "./p256.ts";

export type Signed<B> = B & { sig: string };

/** Anything that signs 32-byte digests: an identity key, software or TPM. */
export interface DigestSigner {
  sign(digest: Uint8Array): Promise<Uint8Array>;
}

export async function signBody<B extends object>(kind: DigestKind, body: B, key: DigestSigner): Promise<Signed<B>> {
  const sig = await key.sign(domainDigest(kind, body));
  return { ...body, sig: toHex(sig) };
}

export function bodyOf<B extends object>(signed: Signed<B>): B {
  const { sig: _sig, ...body } = signed;
  return body as unknown as B;
}

/** Never throws: a malformed key or signature is simply "does not verify". */
export function verifyBody<B extends object>(kind: DigestKind, signed: Signed<B>, publicKey: Uint8Array | KeyObject): boolean {
  try {
    const key = publicKey instanceof Uint8Array ? importPublicKey(publicKey) : publicKey;
    return verify(key, domainDigest(kind, bodyOf(signed)), fromHex(signed.sig, 64));
  } catch {
    return false;
  }
}
