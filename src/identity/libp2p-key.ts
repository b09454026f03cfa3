// The libp2p Ed25519 key, created at init so the peer id is stable before the mesh
// code exists. Stored as libp2p's protobuf PrivateKey (what privateKeyFromProtobuf
// reads), and its peer id (protocol/peer-id.ts) derived the way libp2p does, without libp2p.
import * as crypto from "node:crypto";
import { ed25519PublicOf } from "../crypto/ed25519.ts";
import { readSecretFile, writeFileAtomic } from "../fs/files.ts";
import { KEY_TYPE_ED25519, peerIdOf, protobufKey } from "../protocol/peer-id.ts";


export interface Libp2pKey {
  privateKey: Uint8Array; // 32-byte seed
  publicKey: Uint8Array; // 32 bytes
  peerId: string;
}

export function createLibp2pKey(file: string, overwrite: boolean): Libp2pKey {
  const { privateKey } = crypto.generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  const seed = Buffer.from(jwk.d!, "base64url");
  const pub = Buffer.from(jwk.x!, "base64url");
  // libp2p's Ed25519 private key bytes are seed || public key.
  writeFileAtomic(file, protobufKey(Buffer.concat([seed, pub])), { overwrite });
  return { privateKey: new Uint8Array(seed), publicKey: new Uint8Array(pub), peerId: peerIdOf(pub) };
}

export function loadLibp2pKey(file: string): Libp2pKey {
  const bytes = readSecretFile(file);
  if (bytes.length !== 68 || bytes[0] !== 0x08 || bytes[1] !== KEY_TYPE_ED25519 || bytes[2] !== 0x12 || bytes[3] !== 64) {
    throw new Error(`${file} is not a libp2p Ed25519 private key`);
  }
  const seed = bytes.subarray(4, 36);
  const pub = bytes.subarray(36, 68);
  // The stored public half must be the seed's: otherwise the peer id names a key we cannot sign for.
  if (!Buffer.from(ed25519PublicOf(seed)).equals(pub)) throw new Error(`${file}: public key does not match the private key (file damaged?)`);
  return { privateKey: new Uint8Array(seed), publicKey: new Uint8Array(pub), peerId: peerIdOf(pub) };
}
