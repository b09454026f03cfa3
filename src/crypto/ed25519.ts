// Ed25519 through Bun's BoringSSL (node:crypto): the validators' vote signatures, with the
// libp2p key whose peer id each genesis card names. About 30 us to sign and 60 us to verify,
// against 9-17 ms and 16-29 ms for a BLS signature in pure JS.
import * as crypto from "node:crypto";

/** An Ed25519 private key object from its 32-byte seed (RFC 8410 PKCS#8 wrapping). */
export function ed25519PrivateKey(seed: Uint8Array): crypto.KeyObject {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new RangeError("Ed25519 seed must be 32 bytes");
  return crypto.createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
}

/** An Ed25519 public key object from its 32 raw bytes. */
export function ed25519PublicKey(raw: Uint8Array): crypto.KeyObject {
  if (!(raw instanceof Uint8Array) || raw.length !== 32) throw new RangeError("Ed25519 public key must be 32 bytes");
  return crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") }, format: "jwk" });
}

/** The 32 raw bytes of an Ed25519 public key, derived from the seed. */
export function ed25519PublicOf(seed: Uint8Array): Uint8Array {
  const jwk = crypto.createPublicKey(ed25519PrivateKey(seed)).export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.x!, "base64url"));
}

export function ed25519Sign(key: crypto.KeyObject, message: Uint8Array): Uint8Array {
  return new Uint8Array(crypto.sign(null, message, key));
}

/** Never throws: anything but a 64-byte signature that verifies is false. */
export function ed25519Verify(key: crypto.KeyObject, message: Uint8Array, sig: Uint8Array): boolean {
  if (!(sig instanceof Uint8Array) || sig.length !== 64) return false;
  try {
    return crypto.verify(null, message, key, sig);
  } catch {
    return false;
  }
}
