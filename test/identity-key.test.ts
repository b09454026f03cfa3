// The software identity key (src/identity/identity-key.ts): a 0600 P-256 PEM, its node id, and
// the signatures it makes. Real keys and files in a temp dir throughout.
import { describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { p256 } from "@noble/curves/nist.js";
import { toHex } from "../src/encoding/hex.ts";
import { importPublicKey, verify as p256Verify } from "../src/crypto/p256.ts";
import { FileExistsError } from "../src/fs/files.ts";
import { nodeIdOf, SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { dir, idA, idB, sha256Hex, useIdentityFixtures } from "./helpers/identity-fixtures.ts";

useIdentityFixtures();

// ---------------------------------------------------------------------------------------------

describe("SoftwareIdentityKey", () => {
  test("create writes a 0600 PEM; load returns the same key", () => {
    const f = path.join(dir, "id.pem");
    const k = SoftwareIdentityKey.create(f, false);
    expect(k.kind).toBe("software");
    expect(k.publicKey.length).toBe(33);
    expect([2, 3]).toContain(k.publicKey[0]!);
    expect(fs.statSync(f).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(f, "utf8")).toContain("-----BEGIN PRIVATE KEY-----");
    expect(toHex(SoftwareIdentityKey.load(f).publicKey)).toBe(toHex(k.publicKey));
    expect(nodeIdOf(k.publicKey)).toBe(sha256Hex(k.publicKey));
  });

  test("create refuses to overwrite unless overwrite=true", () => {
    const f = path.join(dir, "ow.pem");
    const k1 = SoftwareIdentityKey.create(f, false);
    const before = fs.readFileSync(f, "utf8");
    expect(() => SoftwareIdentityKey.create(f, false)).toThrow(FileExistsError);
    expect(fs.readFileSync(f, "utf8")).toBe(before);
    expect(toHex(SoftwareIdentityKey.load(f).publicKey)).toBe(toHex(k1.publicKey));
    const k2 = SoftwareIdentityKey.create(f, true);
    expect(toHex(k2.publicKey)).not.toBe(toHex(k1.publicKey));
    expect(toHex(SoftwareIdentityKey.load(f).publicKey)).toBe(toHex(k2.publicKey));
    expect(fs.statSync(f).mode & 0o777).toBe(0o600);
  });

  test("load refuses a key file others can read (0644, 0640)", () => {
    const f = path.join(dir, "open.pem");
    SoftwareIdentityKey.create(f, false);
    fs.chmodSync(f, 0o644);
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/readable by other users.*chmod 600/);
    fs.chmodSync(f, 0o640);
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/readable by other users/);
    fs.chmodSync(f, 0o600);
    expect(SoftwareIdentityKey.load(f).publicKey.length).toBe(33);
  });

  test("load of a missing or non-P-256 file fails clearly", () => {
    expect(() => SoftwareIdentityKey.load(path.join(dir, "none.pem"))).toThrow(/not found/);
    const f = path.join(dir, "ed.pem");
    const { privateKey } = crypto.generateKeyPairSync("ed25519");
    fs.writeFileSync(f, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/P-256/);
    fs.writeFileSync(f, "garbage", { mode: 0o600 });
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/ed\.pem/);
  });

  test("signatures verify with src/crypto/p256.ts and with @noble/curves (prehash of the 32-byte digest)", async () => {
    for (let i = 0; i < 20; i++) {
      const digest = new Uint8Array(crypto.randomBytes(32));
      const sig = await idA.sign(digest);
      expect(sig.length).toBe(64);
      expect(p256Verify(importPublicKey(idA.publicKey), digest, sig)).toBe(true);
      expect(p256.verify(sig, digest, idA.publicKey)).toBe(true); // lowS and prehash on by default
      // wrong key and wrong digest fail in both
      expect(p256Verify(importPublicKey(idB.publicKey), digest, sig)).toBe(false);
      expect(p256.verify(sig, digest, idB.publicKey)).toBe(false);
      const other = new Uint8Array(digest);
      other[0]! ^= 1;
      expect(p256Verify(importPublicKey(idA.publicKey), other, sig)).toBe(false);
      expect(p256.verify(sig, other, idA.publicKey)).toBe(false);
      // noble's prehash-off mode signs the digest as the hash itself: a different scheme
      expect(p256.verify(sig, digest, idA.publicKey, { prehash: false })).toBe(false);
    }
  });

  test("sign refuses anything but a 32-byte digest", async () => {
    await expect(idA.sign(new Uint8Array(31))).rejects.toThrow(/32-byte/);
    await expect(idA.sign(new Uint8Array(33))).rejects.toThrow(/32-byte/);
  });
});
