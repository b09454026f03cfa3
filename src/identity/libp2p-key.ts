// The libp2p Ed25519 key, created at init so the peer id is stable before the mesh
// code exists. Stored as libp2p's protobuf PrivateKey (what privateKeyFromProtobuf
// reads), and the peer id derived the way libp2p does, without pulling libp2p in yet.
import * as crypto from "node:crypto";
import { ed25519PublicOf } from "../crypto/ed25519.ts";
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

function protobufKey(data: Uint8Array): Uint8Array {
  // message { KeyType Type = 1; bytes Data = 2; } with Data of 32 or 64 bytes (one-byte varint length)
  return new Uint8Array([0x08, KEY_TYPE_ED25519, 0x12, data.length, ...data]);
}

/** Peer id: base58btc of the identity multihash of the protobuf public key ("12D3KooW..."). */
export function peerIdOf(publicKey: Uint8Array): string {
  const pb = protobufKey(publicKey);
  return base58btc(new Uint8Array([0x00, pb.length, ...pb]));
}

/**
 * The Ed25519 public key a peer id names (identity multihash of the protobuf key), or
 * null when the id is not of that form.
 */
export function ed25519OfPeerId(peerId: string): Uint8Array | null {
  if (typeof peerId !== "string" || !/^[1-9A-HJ-NP-Za-km-z]+$/.test(peerId)) return null;
  let n = 0n;
  for (const c of peerId) n = n * 58n + BigInt(ALPHABET.indexOf(c));
  const hex = n.toString(16).padStart(2 * 38, "0");
  if (hex.length !== 2 * 38) return null;
  const bytes = Buffer.from(hex, "hex");
  // 0x00 (identity multihash), 36 (length), then the protobuf key: 08 01 12 20 <32 bytes>.
  if (!bytes.subarray(0, 6).equals(Buffer.from([0x00, 36, 0x08, KEY_TYPE_ED25519, 0x12, 32]))) return null;
  const pub = new Uint8Array(bytes.subarray(6));
  return peerIdOf(pub) === peerId ? pub : null;
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
