// Key certificates (src/protocol/keycert.ts): issue, parse and verify, with real keys made in a
// temp dir.
import { beforeAll, describe, expect, test } from "bun:test";
import { canonicalize } from "../src/encoding/jcs.ts";
import { fromHex, toHex } from "../src/encoding/hex.ts";
import { formatTime } from "../src/encoding/time.ts";
import { generateKeyPair, importPublicKey, verify as p256Verify } from "../src/crypto/p256.ts";
import { domainDigest } from "../src/crypto/sha256.ts";
import { signBody } from "../src/crypto/signed.ts";
import { nodeIdOf } from "../src/identity/identity-key.ts";
import { issueKeyCert, type KeyCert, keyNameOf, parseKeyCert } from "../src/protocol/keycert.ts";
import { clone, idA, idB, MESH, NOW, sha256Hex, useIdentityFixtures } from "./helpers/identity-fixtures.ts";

useIdentityFixtures();

// ---------------------------------------------------------------------------------------------

describe("key certificates", () => {
  let signingPub: Uint8Array;
  let cert: KeyCert;
  const notAfterMs = NOW + 86_400_000;

  beforeAll(async () => {
    const pair = generateKeyPair();
    signingPub = pair.publicKey;
    cert = await issueKeyCert(idA, { mesh: MESH, signingKey: pair.privateKey, firstSeq: 7, notAfterMs });
  });

  test("issue → JSON → parse round trip", () => {
    expect(cert).toEqual({
      v: 1,
      type: "K",
      mesh: MESH,
      node_id: nodeIdOf(idA.publicKey),
      identity_pub: toHex(idA.publicKey),
      signing_pub: toHex(signingPub),
      first_seq: 7,
      not_after: formatTime(notAfterMs),
      signing_pop: cert.signing_pop,
      sig: cert.sig,
    });
    const parsed = parseKeyCert(JSON.parse(canonicalize(cert)));
    expect(parsed).toEqual(cert);
    expect(keyNameOf(cert.signing_pub)).toBe(sha256Hex(signingPub));
    expect(keyNameOf(signingPub)).toBe(sha256Hex(signingPub));
    // the signature is over the keycert domain digest of the body
    const { sig, ...body } = cert;
    expect(p256Verify(importPublicKey(idA.publicKey), domainDigest("keycert", body), fromHex(sig))).toBe(true);
  });

  test("rejects node_id that is not the hash of identity_pub", () => {
    expect(() => parseKeyCert({ ...cert, node_id: nodeIdOf(idB.publicKey) })).toThrow(/node_id is not the hash of identity_pub/);
  });

  test("rejects a flipped signature bit", () => {
    for (const i of [0, 63, 64, 127]) {
      const c = clone(cert);
      c.sig = c.sig.slice(0, i) + (parseInt(c.sig[i]!, 16) ^ 1).toString(16) + c.sig.slice(i + 1);
      expect(c.sig).not.toBe(cert.sig);
      expect(() => parseKeyCert(c)).toThrow(/signature does not verify/);
    }
  });

  test("rejects extra or missing fields", () => {
    expect(() => parseKeyCert({ ...cert, extra: true })).toThrow(/unexpected field "extra"/);
    const { not_after: _n, ...missing } = cert;
    expect(() => parseKeyCert(missing)).toThrow(/missing field "not_after"/);
  });

  test("rejects any signed field changed (signature breaks)", () => {
    expect(() => parseKeyCert({ ...cert, first_seq: 1 })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, first_seq: 8 })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, mesh: "cd".repeat(32) })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, not_after: formatTime(notAfterMs + 1) })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, signing_pub: toHex(generateKeyPair().publicKey) })).toThrow(/signature does not verify/);
  });

  test("rejects an identity swap: B's key and node_id with A's signature", () => {
    expect(() => parseKeyCert({ ...cert, identity_pub: toHex(idB.publicKey), node_id: nodeIdOf(idB.publicKey) })).toThrow(
      /signature does not verify/,
    );
  });

  test("rejects a signature made under another domain (card digest of the same body)", async () => {
    const { sig: _s, ...body } = cert;
    const asCard = await signBody("card", body, idA);
    expect(asCard.sig).not.toBe(cert.sig);
    expect(() => parseKeyCert(asCard)).toThrow(/signature does not verify/);
  });

  test("rejects bad field shapes", () => {
    expect(() => parseKeyCert({ ...cert, first_seq: 0 })).toThrow(/first_seq/);
    expect(() => parseKeyCert({ ...cert, not_after: "2026-11-25T18:35:00Z" })).toThrow(/not_after/);
    expect(() => parseKeyCert({ ...cert, type: "M" })).toThrow(/type/);
    expect(() => parseKeyCert({ ...cert, sig: cert.sig.toUpperCase() })).toThrow(/sig/);
    expect(() => parseKeyCert(null)).toThrow(/expected a JSON object/);
  });
});
