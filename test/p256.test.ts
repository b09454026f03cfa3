// ECDSA P-256 (src/crypto/p256.ts): Wycheproof vectors, interop with @noble/curves, strictness, PEM.
// Vectors: test/vectors/wycheproof (C2SP/wycheproof, see its SOURCE.md); read in place.
import { describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { p256 } from "@noble/curves/nist.js";
import {
  compressPublicKey,
  generateKeyPair,
  importPublicKey,
  isLowS,
  normaliseLowS,
  privateKeyFromPem,
  privateKeyToPem,
  publicKeyOf,
  sign,
  verify,
} from "../src/crypto/p256.ts";

const VECTORS = new URL("vectors/", import.meta.url);

const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_N = N >> 1n;
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;

const hex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");
const int32 = (n: bigint) => hex(n.toString(16).padStart(64, "0"));
const sigOf = (r: bigint, s: bigint) => {
  const out = new Uint8Array(64);
  out.set(int32(r), 0);
  out.set(int32(s), 32);
  return out;
};
const rOf = (sig: Uint8Array) => BigInt("0x" + toHex(sig.subarray(0, 32)));
const sOf = (sig: Uint8Array) => BigInt("0x" + toHex(sig.subarray(32, 64)));
interface EcJwk {
  kty?: string;
  crv?: string;
  x?: string;
  y?: string;
  d?: string;
}
const jwkOf = (key: crypto.KeyObject) => key.export({ format: "jwk" }) as EcJwk;
const secretOf = (key: crypto.KeyObject) => new Uint8Array(Buffer.from(jwkOf(key).d!, "base64url"));
const uncompressedOf = (key: crypto.KeyObject) => {
  const j = jwkOf(key);
  return new Uint8Array([4, ...Buffer.from(j.x!, "base64url"), ...Buffer.from(j.y!, "base64url")]);
};
/** KeyObject for a noble secret key, via JWK. */
function privateKeyFromSecret(sk: Uint8Array): crypto.KeyObject {
  const pub = p256.getPublicKey(sk, false);
  return crypto.createPrivateKey({
    key: { kty: "EC", crv: "P-256", d: b64u(sk), x: b64u(pub.subarray(1, 33)), y: b64u(pub.subarray(33)) },
    format: "jwk",
  });
}
/** verify must never throw: wrap so a throw fails the test with a clear message. */
function safeVerify(key: crypto.KeyObject, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return verify(key, msg, sig);
  } catch (e) {
    throw new Error(`verify threw on sig ${toHex(sig)}: ${e}`);
  }
}
function nobleVerify(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array, lowS: boolean): boolean {
  try {
    return p256.verify(sig, msg, pub, { lowS });
  } catch {
    return false;
  }
}

test("curve constants match @noble/curves", () => {
  expect(p256.Point.CURVE().n).toBe(N);
  expect(p256.Point.CURVE().p).toBe(P);
});

// ---------------------------------------------------------------- Wycheproof
interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  msg: string;
  sig: string;
  result: "valid" | "invalid" | "acceptable";
}
interface WycheproofGroup {
  publicKey: { curve: string; uncompressed: string; wx: string; wy: string };
  publicKeyJwk?: EcJwk;
  sha: string;
  tests: WycheproofTest[];
}
const wycheproof = JSON.parse(
  readFileSync(new URL("wycheproof/ecdsa_secp256r1_sha256_p1363_test.json", VECTORS), "utf8"),
) as { algorithm: string; numberOfTests: number; testGroups: WycheproofGroup[] };

// Flags that mean "the encoding or the scalar range is off": dsm must reject these even where
// Wycheproof would only call them acceptable.
const STRICT_REJECT_FLAGS = new Set([
  "SignatureSize",
  "IntegerOverflow",
  "RangeCheck",
  "ModifiedInteger",
  "InvalidSignature",
  "SignatureMalleability",
  "SignatureMalleabilityBitcoin",
  "MissingZero",
  "BerEncodedSignature",
  "InvalidEncoding",
]);

describe("Wycheproof ecdsa_secp256r1_sha256_p1363_test.json", () => {
  test("strict verify agrees with every test case", () => {
    expect(wycheproof.algorithm).toBe("ECDSA");
    const counts = { total: 0, valid: 0, validLowS: 0, validHighS: 0, invalid: 0, acceptable: 0, acceptableAccepted: 0 };
    const failures: string[] = [];
    for (const group of wycheproof.testGroups) {
      expect(group.sha).toBe("SHA-256");
      expect(group.publicKey.curve).toBe("secp256r1");
      const uncompressed = hex(group.publicKey.uncompressed);
      const key = importPublicKey(uncompressed);
      // The imported key is the one Wycheproof describes.
      const j = jwkOf(key);
      expect(BigInt("0x" + Buffer.from(j.x!, "base64url").toString("hex"))).toBe(BigInt("0x" + group.publicKey.wx));
      expect(BigInt("0x" + Buffer.from(j.y!, "base64url").toString("hex"))).toBe(BigInt("0x" + group.publicKey.wy));
      if (group.publicKeyJwk) expect([j.x, j.y]).toEqual([group.publicKeyJwk.x, group.publicKeyJwk.y]);
      // Compression agrees with noble, and the compressed form imports to the same key.
      const compressed = compressPublicKey(key);
      expect(toHex(compressed)).toBe(toHex(p256.Point.fromBytes(uncompressed).toBytes(true)));
      expect(jwkOf(importPublicKey(compressed))).toEqual(j);

      for (const t of group.tests) {
        counts.total++;
        const msg = hex(t.msg);
        const sig = hex(t.sig);
        const got = safeVerify(key, msg, sig);
        const id = `tc ${t.tcId} (${t.result}, ${t.flags.join("+")}: ${t.comment})`;
        // Cross-check the vector's verdict with noble in permissive (lowS: false) mode.
        const noble = nobleVerify(sig, msg, uncompressed, false);
        if (t.result !== "acceptable" && noble !== (t.result === "valid")) failures.push(`${id}: noble says ${noble}`);

        if (t.result === "valid") {
          counts.valid++;
          if (isLowS(sig)) {
            counts.validLowS++;
            if (!got) failures.push(`${id}: low-S valid signature rejected`);
            if (normaliseLowS(sig) !== sig && toHex(normaliseLowS(sig)) !== t.sig) failures.push(`${id}: normalise changed a low-S sig`);
          } else {
            counts.validHighS++;
            if (got) failures.push(`${id}: high-S signature accepted by strict verify`);
            const low = normaliseLowS(sig);
            if (!isLowS(low)) failures.push(`${id}: normaliseLowS did not give low S`);
            if (rOf(low) !== rOf(sig) || sOf(low) !== N - sOf(sig)) failures.push(`${id}: normaliseLowS wrong`);
            if (!safeVerify(key, msg, low)) failures.push(`${id}: normalised signature rejected`);
          }
        } else if (t.result === "invalid") {
          counts.invalid++;
          if (got) failures.push(`${id}: invalid signature accepted`);
          // Normalising must not rescue an invalid signature either (only meaningful at 64 bytes).
          if (sig.length === 64 && safeVerify(key, msg, normaliseLowS(sig))) failures.push(`${id}: accepted after normalise`);
        } else {
          counts.acceptable++;
          if (got) counts.acceptableAccepted++;
          if (got && t.flags.some((f) => STRICT_REJECT_FLAGS.has(f))) failures.push(`${id}: acceptable-but-malleable accepted`);
        }
      }
    }
    console.log("wycheproof p1363 counts:", counts, "groups:", wycheproof.testGroups.length);
    expect(failures).toEqual([]);
    expect(counts.total).toBe(wycheproof.numberOfTests);
    // Pin the vector file's shape so a silent change of the data is noticed.
    expect(counts).toEqual({
      total: 262,
      valid: 173,
      validLowS: counts.validLowS,
      validHighS: counts.validHighS,
      invalid: 89,
      acceptable: 0,
      acceptableAccepted: 0,
    });
    expect(counts.validLowS + counts.validHighS).toBe(173);
    expect(counts.validHighS).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- interop with noble
describe("interop with @noble/curves", () => {
  test("200 random keys and messages", () => {
    const ROUNDS = 200;
    let highSFromNoble = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const kp = generateKeyPair();
      const msg = new Uint8Array(crypto.randomBytes(i % 3 === 0 ? 32 : i % 97));
      const sk = secretOf(kp.privateKey);
      expect(sk.length).toBe(32);
      const pubC = kp.publicKey;
      const pubU = uncompressedOf(kp.privateKey);

      // Public key encodings agree.
      expect(pubC.length).toBe(33);
      expect(toHex(p256.getPublicKey(sk, true))).toBe(toHex(pubC));
      expect(toHex(p256.getPublicKey(sk, false))).toBe(toHex(pubU));
      expect(toHex(publicKeyOf(kp.privateKey))).toBe(toHex(pubC));
      const keyFromC = importPublicKey(pubC);
      const keyFromU = importPublicKey(pubU);
      expect(jwkOf(keyFromC)).toEqual(jwkOf(keyFromU));
      expect(keyFromC.equals(keyFromU)).toBe(true);
      expect(toHex(compressPublicKey(keyFromU))).toBe(toHex(pubC));

      // ours → noble (default: prehash sha256, lowS required)
      const sig = sign(kp.privateKey, msg);
      expect(sig.length).toBe(64);
      expect(isLowS(sig)).toBe(true);
      expect(sOf(sig) <= HALF_N).toBe(true);
      expect(p256.verify(sig, msg, pubC)).toBe(true);
      expect(p256.verify(sig, msg, pubU)).toBe(true);
      expect(verify(keyFromC, msg, sig)).toBe(true);
      expect(verify(keyFromU, msg, sig)).toBe(true);

      // noble → ours
      const nsig = p256.sign(msg, sk);
      expect(verify(keyFromC, msg, nsig)).toBe(true);
      // noble's lowS:false signature: ours accepts iff it is low-S, and always after normalising.
      const nsigAny = p256.sign(msg, sk, { lowS: false });
      if (!isLowS(nsigAny)) highSFromNoble++;
      expect(verify(keyFromC, msg, nsigAny)).toBe(isLowS(nsigAny));
      expect(verify(keyFromC, msg, normaliseLowS(nsigAny))).toBe(true);

      // The high-S twin of our signature is valid ECDSA but rejected by strict verify.
      const twin = sigOf(rOf(sig), N - sOf(sig));
      expect(isLowS(twin)).toBe(false);
      expect(p256.verify(twin, msg, pubC, { lowS: false })).toBe(true);
      expect(verify(keyFromC, msg, twin)).toBe(false);
      expect(toHex(normaliseLowS(twin))).toBe(toHex(sig));

      // Tampering: one byte of the message, the signature (r and s halves), or the key.
      const msgT = msg.length > 0 ? msg.slice() : new Uint8Array([0]);
      if (msg.length > 0) msgT[i % msg.length]! ^= 1 << (i % 8);
      expect(verify(keyFromC, msgT, sig)).toBe(false);
      for (const pos of [i % 32, 32 + (i % 32), 0, 31, 32, 63]) {
        const sigT = sig.slice();
        sigT[pos]! ^= 1 << (i % 8);
        expect(safeVerify(keyFromC, msg, sigT)).toBe(false);
      }
      // Negated public key (flip 02/03): a valid point, but not the signer.
      const negated = pubC.slice();
      negated[0]! ^= 1;
      expect(verify(importPublicKey(negated), msg, sig)).toBe(false);
      // Flip a bit in x: either not on the curve (import throws) or a different key.
      const xFlipped = pubC.slice();
      xFlipped[1 + (i % 32)]! ^= 1 << (i % 8);
      let other: crypto.KeyObject | undefined;
      try {
        other = importPublicKey(xFlipped);
      } catch {
        other = undefined;
      }
      if (other) expect(verify(other, msg, sig)).toBe(false);
    }
    // With lowS:false roughly half of noble's signatures are high-S; make sure that branch ran.
    expect(highSFromNoble).toBeGreaterThan(0);
  });

  test("keys whose x, y or d start with zero bytes", () => {
    // Scan small scalars k·G for x[0] == 0 and y[0] == 0; also d = 1 (31 leading zero bytes).
    const found: Record<string, Uint8Array> = { d: int32(1n) };
    for (let k = 2n; !(found.x && found.y); k++) {
      const sk = int32(k);
      const pub = p256.getPublicKey(sk, false);
      if (!found.x && pub[1] === 0) found.x = sk;
      if (!found.y && pub[33] === 0) found.y = sk;
    }
    const msg = new TextEncoder().encode("leading zeros");
    for (const [what, sk] of Object.entries(found)) {
      const key = privateKeyFromSecret(sk);
      const pub = publicKeyOf(key);
      expect(toHex(pub), what).toBe(toHex(p256.getPublicKey(sk, true)));
      expect(toHex(secretOf(key)), what).toBe(toHex(sk));
      const j = jwkOf(crypto.createPublicKey(key));
      expect(Buffer.from(j.x!, "base64url").length, what).toBe(32);
      expect(Buffer.from(j.y!, "base64url").length, what).toBe(32);
      const sig = sign(key, msg);
      expect(p256.verify(sig, msg, pub), what).toBe(true);
      expect(verify(importPublicKey(pub), msg, sig), what).toBe(true);
      expect(verify(importPublicKey(p256.getPublicKey(sk, false)), msg, p256.sign(msg, sk)), what).toBe(true);
      const back = privateKeyFromPem(privateKeyToPem(key));
      expect(toHex(publicKeyOf(back)), what).toBe(toHex(pub));
    }
  });

  test("signatures with leading-zero r or s survive (64 bytes, fixed width)", () => {
    // Sign until r and s each have been seen with a zero top byte (about 1/256 per try, per half).
    const kp = generateKeyPair();
    const key = importPublicKey(kp.publicKey);
    let rZero = 0;
    let sZero = 0;
    for (let i = 0; i < 5000 && (rZero === 0 || sZero === 0); i++) {
      const msg = new Uint8Array(crypto.randomBytes(16));
      const sig = sign(kp.privateKey, msg);
      expect(sig.length).toBe(64);
      if (sig[0] === 0) rZero++;
      if (sig[32] === 0) sZero++;
      if (sig[0] === 0 || sig[32] === 0) {
        expect(verify(key, msg, sig)).toBe(true);
        expect(p256.verify(sig, msg, kp.publicKey)).toBe(true);
      }
    }
    expect(rZero).toBeGreaterThan(0);
    expect(sZero).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- strictness and garbage
describe("strict verify", () => {
  const kp = generateKeyPair();
  const key = importPublicKey(kp.publicKey);
  const msg = new TextEncoder().encode("dsm strictness");
  const good = sign(kp.privateKey, msg);
  const r = rOf(good);
  const s = sOf(good);

  test("a good signature verifies; the message is hashed, not taken as the digest", () => {
    expect(verify(key, msg, good)).toBe(true);
    expect(p256.verify(good, msg, kp.publicKey, { prehash: true })).toBe(true);
    const digest = new Uint8Array(crypto.createHash("sha256").update(msg).digest());
    expect(p256.verify(good, digest, kp.publicKey, { prehash: false })).toBe(true);
    expect(verify(key, digest, good)).toBe(false);
    // Empty message signs and verifies.
    const empty = new Uint8Array(0);
    expect(verify(key, empty, sign(kp.privateKey, empty))).toBe(true);
  });

  test("never throws on garbage, and rejects it", () => {
    const garbage: [string, Uint8Array][] = [
      ["empty", new Uint8Array(0)],
      ["1 byte", new Uint8Array(1)],
      ["63 bytes", good.subarray(0, 63)],
      ["65 bytes", new Uint8Array([...good, 0])],
      ["65 bytes, leading 0", new Uint8Array([0, ...good])],
      ["128 bytes", new Uint8Array([...good, ...good])],
      ["all zero", new Uint8Array(64)],
      ["all 0xff", new Uint8Array(64).fill(0xff)],
      ["r = 0", sigOf(0n, s)],
      ["s = 0", sigOf(r, 0n)],
      ["r = n", sigOf(N, s)],
      ["s = n", sigOf(r, N)],
      ["r = n, s = 1", sigOf(N, 1n)],
      ["r = 1, s = n", sigOf(1n, N)],
      ["r = n + r", sigOf(N + r, s)],
      ["r = p", sigOf(P, s)],
      ["r = 1, s = 1", sigOf(1n, 1n)],
      ["r = n - 1, s = half n", sigOf(N - 1n, HALF_N)],
      ["high-S twin", sigOf(r, N - s)],
      ["s = half n + 1", sigOf(r, HALF_N + 1n)],
      ["s = n - 1", sigOf(r, N - 1n)],
      ["r and s swapped", sigOf(s, r)],
      ["DER encoding", new Uint8Array(p256.Signature.fromBytes(good).toBytes("der"))],
    ];
    if (r + N < 1n << 256n) garbage.push(["r + n (fits 256 bits)", sigOf(r + N, s)]);
    for (const [what, sig] of garbage) {
      expect(safeVerify(key, msg, sig), what).toBe(false);
    }
    // A subarray view with a non-zero offset over a good signature still works.
    const padded = new Uint8Array(70);
    padded.set(good, 3);
    expect(verify(key, msg, padded.subarray(3, 67))).toBe(true);
    expect(verify(key, msg, Buffer.from(good))).toBe(true);
  });

  test("isLowS and normaliseLowS at the boundary", () => {
    expect(isLowS(sigOf(1n, HALF_N))).toBe(true);
    expect(isLowS(sigOf(1n, HALF_N + 1n))).toBe(false);
    expect(isLowS(sigOf(1n, 1n))).toBe(true);
    expect(isLowS(sigOf(1n, N - 1n))).toBe(false);
    expect(isLowS(good.subarray(0, 63))).toBe(false);
    expect(isLowS(new Uint8Array(65))).toBe(false);
    expect(sOf(normaliseLowS(sigOf(7n, HALF_N + 1n)))).toBe(HALF_N);
    expect(rOf(normaliseLowS(sigOf(7n, HALF_N + 1n)))).toBe(7n);
    expect(sOf(normaliseLowS(sigOf(7n, N - 1n)))).toBe(1n);
    expect(toHex(normaliseLowS(good))).toBe(toHex(good));
    const twin = sigOf(r, N - s);
    const once = normaliseLowS(twin);
    expect(toHex(normaliseLowS(once))).toBe(toHex(once));
    expect(toHex(twin)).toBe(toHex(sigOf(r, N - s))); // input not mutated
  });

  test("a signature from another key or for another message fails", () => {
    const other = generateKeyPair();
    expect(verify(importPublicKey(other.publicKey), msg, good)).toBe(false);
    expect(verify(key, new TextEncoder().encode("dsm strictnesS"), good)).toBe(false);
  });
});

describe("importPublicKey rejects what is not a P-256 point", () => {
  const kp = generateKeyPair();
  const c = kp.publicKey;
  const u = uncompressedOf(kp.privateKey);
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["infinity (0x00)", new Uint8Array([0])],
    ["compressed, 32 bytes", c.subarray(0, 32)],
    ["compressed, 34 bytes", new Uint8Array([...c, 0])],
    ["uncompressed, 64 bytes", u.subarray(0, 64)],
    ["uncompressed without prefix", u.subarray(1)],
    ["bad prefix 0x05", new Uint8Array([5, ...c.subarray(1)])],
    ["compressed prefix on 65 bytes", new Uint8Array([2, ...u.subarray(1)])],
    ["uncompressed prefix on 33 bytes", new Uint8Array([4, ...c.subarray(1)])],
    ["off the curve (y + 1)", (() => { const v = u.slice(); v[64]! ^= 1; return v; })()],
    ["x = p", new Uint8Array([2, ...int32(P)])],
    ["x = 0, y = 0", new Uint8Array(65).fill(0, 1).map((b, i) => (i === 0 ? 4 : b))],
    ["all 0xff compressed", new Uint8Array(33).fill(0xff).map((b, i) => (i === 0 ? 2 : b))],
  ];
  for (const [what, bytes] of cases) {
    test(what, () => {
      expect(() => importPublicKey(bytes)).toThrow();
    });
  }
  test("x with no square root on the curve", () => {
    // Find an x with no point: noble's decompression throws for it, ours must too.
    for (let x = 1n; x < 100n; x++) {
      const bytes = new Uint8Array([2, ...int32(x)]);
      let nobleOk = true;
      try {
        p256.Point.fromBytes(bytes);
      } catch {
        nobleOk = false;
      }
      if (!nobleOk) {
        expect(() => importPublicKey(bytes)).toThrow();
        return;
      }
    }
    throw new Error("no x without a point below 100");
  });
});

// ---------------------------------------------------------------- PEM
describe("PEM", () => {
  test("round trip", () => {
    const kp = generateKeyPair();
    const pem = privateKeyToPem(kp.privateKey);
    expect(pem.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
    expect(pem.trimEnd().endsWith("-----END PRIVATE KEY-----")).toBe(true);
    const back = privateKeyFromPem(pem);
    expect(back.asymmetricKeyType).toBe("ec");
    expect(back.type).toBe("private");
    expect(toHex(publicKeyOf(back))).toBe(toHex(kp.publicKey));
    expect(toHex(secretOf(back))).toBe(toHex(secretOf(kp.privateKey)));
    expect(privateKeyToPem(back)).toBe(pem);
    const msg = new TextEncoder().encode("pem");
    expect(verify(importPublicKey(kp.publicKey), msg, sign(back, msg))).toBe(true);
    // The PEM's key is the one noble derives from d.
    expect(toHex(p256.getPublicKey(secretOf(back), true))).toBe(toHex(kp.publicKey));
  });

  test("SEC1 'EC PRIVATE KEY' PEM of a P-256 key is accepted too", () => {
    const kp = generateKeyPair();
    const sec1 = kp.privateKey.export({ format: "pem", type: "sec1" }).toString();
    expect(sec1.startsWith("-----BEGIN EC PRIVATE KEY-----")).toBe(true);
    expect(toHex(publicKeyOf(privateKeyFromPem(sec1)))).toBe(toHex(kp.publicKey));
  });

  const wrongKeys: [string, () => string][] = [
    ["Ed25519", () => crypto.generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString()],
    ["P-384", () => crypto.generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({ format: "pem", type: "pkcs8" }).toString()],
    ["P-521", () => crypto.generateKeyPairSync("ec", { namedCurve: "P-521" }).privateKey.export({ format: "pem", type: "pkcs8" }).toString()],
    ["X25519", () => crypto.generateKeyPairSync("x25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString()],
  ];
  for (const [what, make] of wrongKeys) {
    test(`rejects a ${what} private key with a clear error`, () => {
      const pem = make();
      expect(() => privateKeyFromPem(pem)).toThrow(/not an ECDSA P-256 private key/);
    });
  }

  test("rejects a public-key PEM and non-PEM input", () => {
    const kp = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    const pubPem = kp.publicKey.export({ format: "pem", type: "spki" }).toString();
    expect(() => privateKeyFromPem(pubPem)).toThrow();
    expect(() => privateKeyFromPem("")).toThrow();
    expect(() => privateKeyFromPem("not a pem")).toThrow();
    const pem = privateKeyToPem(kp.privateKey);
    const lines = pem.trimEnd().split("\n");
    const truncated = [...lines.slice(0, 2), lines.at(-1)!].join("\n") + "\n";
    expect(() => privateKeyFromPem(truncated)).toThrow();
  });

  // Hand-built PKCS#8 EC keys (BoringSSL cannot generate secp256k1, and we want bad d / bad embedded keys).
  const tlv = (tag: number, body: Uint8Array) => {
    const n = body.length;
    const len = n < 128 ? [n] : n < 256 ? [0x81, n] : [0x82, n >> 8, n & 255];
    return new Uint8Array([tag, ...len, ...body]);
  };
  const cat = (...parts: Uint8Array[]) => new Uint8Array(parts.flatMap((x) => [...x]));
  function ecPkcs8Pem(curveOid: string, d: Uint8Array, pub?: Uint8Array): string {
    const ecPrivateKey = tlv(
      0x30,
      cat(hex("020101"), tlv(0x04, d), pub ? tlv(0xa1, tlv(0x03, cat(new Uint8Array([0]), pub))) : new Uint8Array()),
    );
    const algorithm = tlv(0x30, cat(hex("06072a8648ce3d0201"), hex(curveOid)));
    const der = tlv(0x30, cat(hex("020100"), algorithm, tlv(0x04, ecPrivateKey)));
    const body = Buffer.from(der).toString("base64").match(/.{1,64}/g)!.join("\n");
    return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
  }
  const OID_P256 = "06082a8648ce3d030107";
  const OID_SECP256K1 = "06052b8104000a";

  test("hand-built P-256 PKCS#8 (with and without embedded public key) is accepted", () => {
    const d = p256.utils.randomSecretKey();
    for (const pem of [ecPkcs8Pem(OID_P256, d), ecPkcs8Pem(OID_P256, d, p256.getPublicKey(d, false))]) {
      const key = privateKeyFromPem(pem);
      expect(toHex(publicKeyOf(key))).toBe(toHex(p256.getPublicKey(d, true)));
      const msg = new Uint8Array([1, 2, 3]);
      expect(p256.verify(sign(key, msg), msg, p256.getPublicKey(d, true))).toBe(true);
    }
  });

  test("rejects secp256k1, out-of-range d, and an embedded public key that does not match d", () => {
    const d = p256.utils.randomSecretKey();
    // secp256k1 is unsupported by BoringSSL, so the error comes from createPrivateKey, not our check.
    expect(() => privateKeyFromPem(ecPkcs8Pem(OID_SECP256K1, d))).toThrow();
    expect(() => privateKeyFromPem(ecPkcs8Pem(OID_P256, int32(0n)))).toThrow();
    expect(() => privateKeyFromPem(ecPkcs8Pem(OID_P256, int32(N)))).toThrow();
    expect(() => privateKeyFromPem(ecPkcs8Pem(OID_P256, int32(N + 1n)))).toThrow();
    const other = p256.getPublicKey(p256.utils.randomSecretKey(), false);
    expect(() => privateKeyFromPem(ecPkcs8Pem(OID_P256, d, other))).toThrow();
  });
});
