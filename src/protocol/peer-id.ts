// Peer ids as libp2p writes them, for Ed25519 keys: what a genesis card names and what
// votes are checked under (DESIGN.md section 7). Pure: no libp2p needed to read one.

export const KEY_TYPE_ED25519 = 1;

export function protobufKey(data: Uint8Array): Uint8Array {
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
