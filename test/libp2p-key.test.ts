// The libp2p key (src/identity/libp2p-key.ts) and the peer ids it gives
// (src/protocol/peer-id.ts). Real key files in a temp dir throughout.
import { describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fromHex, toHex } from "../src/encoding/hex.ts";
import { FileExistsError } from "../src/fs/files.ts";
import { createLibp2pKey, loadLibp2pKey } from "../src/identity/libp2p-key.ts";
import { ed25519OfPeerId, peerIdOf } from "../src/protocol/peer-id.ts";
import { ed25519PrivateKey, ed25519PublicKey, ed25519Sign, ed25519Verify } from "../src/crypto/ed25519.ts";
import { dir, useIdentityFixtures } from "./helpers/identity-fixtures.ts";

useIdentityFixtures();

// ---------------------------------------------------------------------------------------------

describe("libp2p key", () => {
  test("peer id starts with 12D3KooW, file is 68 bytes 0600, load returns the same peer id", () => {
    const f = path.join(dir, "p2p.key");
    const k = createLibp2pKey(f, false);
    expect(k.peerId.startsWith("12D3KooW")).toBe(true);
    expect(k.peerId).toMatch(/^[1-9A-HJ-NP-Za-km-z]{52}$/);
    const st = fs.statSync(f);
    expect(st.size).toBe(68);
    expect(st.mode & 0o777).toBe(0o600);
    const bytes = fs.readFileSync(f);
    expect([...bytes.subarray(0, 4)]).toEqual([0x08, 0x01, 0x12, 0x40]);
    const loaded = loadLibp2pKey(f);
    expect(loaded.peerId).toBe(k.peerId);
    expect(toHex(loaded.publicKey)).toBe(toHex(k.publicKey));
    expect(toHex(loaded.privateKey)).toBe(toHex(k.privateKey));
    expect(() => createLibp2pKey(f, false)).toThrow(FileExistsError);
    expect(loadLibp2pKey(f).peerId).toBe(k.peerId);
  });

  test("the stored public key is the Ed25519 public key of the stored seed", () => {
    const f = path.join(dir, "p2p-pub.key");
    const k = createLibp2pKey(f, false);
    const priv = crypto.createPrivateKey({
      key: { kty: "OKP", crv: "Ed25519", d: Buffer.from(k.privateKey).toString("base64url"), x: Buffer.from(k.publicKey).toString("base64url") },
      format: "jwk",
    });
    const pubDer = crypto.createPublicKey(priv).export({ format: "der", type: "spki" });
    expect(toHex(new Uint8Array(pubDer.subarray(pubDer.length - 32)))).toBe(toHex(k.publicKey));
  });

  test("libp2p's Ed25519 spec vector: protobuf private key file → public key and peer id", () => {
    // libp2p peer-ids spec test vector (also rust-libp2p keypair_protobuf_roundtrip_ed25519).
    const f = path.join(dir, "p2p-vector.key");
    const seed = "7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d";
    const pub = "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    fs.writeFileSync(f, Buffer.from("08011240" + seed + pub, "hex"), { mode: 0o600 });
    const k = loadLibp2pKey(f);
    expect(toHex(k.privateKey)).toBe(seed);
    expect(toHex(k.publicKey)).toBe(pub);
    expect(k.peerId).toBe("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq");
    expect(peerIdOf(fromHex(pub))).toBe(k.peerId);
  });

  test("a peer id gives back its Ed25519 key (the spec vector); other ids give none", () => {
    const pub = "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    expect(toHex(ed25519OfPeerId("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq")!)).toBe(pub);
    // A CIDv0-style RSA/sha256 peer id, a truncated one, and non-base58 text.
    expect(ed25519OfPeerId("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")).toBeNull();
    expect(ed25519OfPeerId("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p")).toBeNull();
    expect(ed25519OfPeerId("12D3KooW0OIl")).toBeNull();
    // Its key verifies what the libp2p key file's seed signs.
    const k = createLibp2pKey(path.join(dir, "p2p-vote.key"), false);
    const msg = new Uint8Array(32).fill(9);
    const sig = ed25519Sign(ed25519PrivateKey(k.privateKey), msg);
    expect(ed25519Verify(ed25519PublicKey(ed25519OfPeerId(k.peerId)!), msg, sig)).toBe(true);
    expect(ed25519Verify(ed25519PublicKey(ed25519OfPeerId(k.peerId)!), new Uint8Array(32), sig)).toBe(false);
  });

  test("a corrupted key file is rejected", () => {
    const f = path.join(dir, "p2p-bad.key");
    createLibp2pKey(f, false);
    const good = fs.readFileSync(f);
    const write = (b: Uint8Array) => fs.writeFileSync(f, b, { mode: 0o600 });
    write(good.subarray(0, 67)); // truncated
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    write(Buffer.concat([good, Buffer.from([0])])); // trailing byte
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    const badType = Buffer.from(good);
    badType[1] = 0x02; // secp256k1, not Ed25519
    write(badType);
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    const badLen = Buffer.from(good);
    badLen[3] = 0x20;
    write(badLen);
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    write(new Uint8Array(0));
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
  });

  test("a key file whose public half does not belong to its seed is rejected", () => {
    // Otherwise the advertised peer id would not be the key the node can sign with.
    const f = path.join(dir, "p2p-mismatch.key");
    createLibp2pKey(f, false);
    const bytes = Buffer.from(fs.readFileSync(f));
    bytes[10]! ^= 0x01; // one bit of the seed
    fs.writeFileSync(f, bytes, { mode: 0o600 });
    expect(() => loadLibp2pKey(f)).toThrow();
  });

  test("a key file others can read is refused", () => {
    const f = path.join(dir, "p2p-open.key");
    createLibp2pKey(f, false);
    fs.chmodSync(f, 0o644);
    expect(() => loadLibp2pKey(f)).toThrow(/readable by other users/);
  });
});
