// The libp2p Ed25519 key, created at init so the peer id is stable before the mesh
// code exists. Stored as libp2p's protobuf PrivateKey (what privateKeyFromProtobuf
// reads), and the peer id derived the way libp2p does, without pulling libp2p in yet.
import * as crypto from "node:crypto";
import { readSecretFile, writeFileAtomic } from "../fs/files.ts";

const KEY_TYPE_ED25519 = 1;

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

/** PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410), so node:crypto derives the public key. */
function ed25519PublicOf(seed: Uint8Array): Uint8Array {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const jwk = crypto.createPublicKey(crypto.createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.x!, "base64url"));
}

function protobufKey(data: Uint8Array): Uint8Array {
  // message { KeyType Type = 1; bytes Data = 2; } with Data of 32 or 64 bytes (one-byte varint length)
  return new Uint8Array([0x08, KEY_TYPE_ED25519, 0x12, data.length, ...data]);
}

/** Peer id: base58btc of the identity multihash of the protobuf public key ("12D3KooW..."). */
export function peerIdOf(publicKey: Uint8Array): string {
  const pb = protobufKey(publicKey);
  return base58btc(new Uint8Array([0x00, pb.length, ...pb]));
}

const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

function base58btc(bytes: Uint8Array): string {
  let n = BigInt("0x" + (Buffer.from(bytes).toString("hex") || "0"));
  let out = "";
  while (n > 0n) {
    out = ALPHABET[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = "1" + out;
  }
  return out;
}
