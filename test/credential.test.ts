// Enrollment by credential activation (src/tpm/credential.ts, src/tpm/public-area.ts): the
// validator's software TPM2_MakeCredential is checked by DECRYPTION on a real software TPM.
// swtpm is manufactured as swtpm_setup --create-ek-cert does (RSA 2048 EK at 0x81010001, ECC
// P-384 EK at 0x81010016, certificates in NV), tpm2_createek adds the TCG L-2 ECC P-256 EK, and
// tpm2_activatecredential must recover the credential from our blob exactly as it does from the
// blob `tpm2_makecredential -T none` (tpm2-tools' software implementation) makes.
//
// Found here (tpm2-tools 5.4, swtpm 0.7.1):
// - tpm2-tools' credential file (tools/tpm2_makecredential.c write_cred_and_secret): u32 magic
//   0xBADCC0DE, u32 version 1, then TPM2B_ID_OBJECT (u16 size || integrityHMAC TPM2B || encIdentity),
//   then TPM2B_ENCRYPTED_SECRET, all big-endian, nothing after.
// - swtpm's P-384 EK is the TCG high-range template: nameAlg sha384, AES-256-CFB, userWithAuth
//   set, authPolicy PolicyB_SHA384 = PolicyOR(PolicyA = PolicySecret(endorsement), PolicyC =
//   PolicyAuthorizeNV(0x01c07f02)): activating with it needs a sha384 policy session with
//   PolicySecret then PolicyOR over both branches; the RSA EK (L-1) needs PolicySecret alone.
// - swtpm has 3 object slots and no resource manager: every tool that loads a context is
//   followed by tpm2_flushcontext -t (and -s for sessions).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { toHex } from "../src/encoding/hex.ts";
import { kdfa, kdfe, makeCredential, type MadeCredential } from "../src/tpm/credential.ts";
import { ekDigest, parseTpmPublic, samePublicKey, tpmPublicKeyObject, type CertPublicKey, type TpmPublic } from "../src/tpm/public-area.ts";
import { unwrapTpm2b } from "../src/tpm/quote.ts";
import { haveSwtpm, startSwtpm, type Swtpm } from "./helpers/swtpm.ts";

const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

// ---------------------------------------------------------------------------------------------
// KDFa / KDFe known answers

describe("kdfa: known answers", () => {
  // The TPM reference implementation's KDFa self-test vector (libtpms src/tpm2/KdfTestData.h):
  // label "KDFSELFTESTLABEL" with its terminating zero, 160 bits from a sha256 / sha384 HMAC.
  const key = hex("271fa08bbdc5060ec3dfa928ff9b73123a12da0c");
  const u = hex("ce244f395dca7391");
  const v = hex("da504031ddf12e83");

  test("sha256 and sha384: the reference implementation's self-test outputs", () => {
    expect(toHex(kdfa("sha256", key, "KDFSELFTESTLABEL", u, v, 160))).toBe("bb0259e1c8ba607e6a2cd704b69a902e9ade84c4");
    expect(toHex(kdfa("sha384", key, "KDFSELFTESTLABEL", u, v, 160))).toBe("1dce70c9113eb2dba47bd9cfc72bf46f45b09312");
  });

  test("a label that already ends in its zero octet is not given a second one", () => {
    expect(toHex(kdfa("sha256", key, "KDFSELFTESTLABEL\0", u, v, 160))).toBe("bb0259e1c8ba607e6a2cd704b69a902e9ade84c4");
    expect(toHex(kdfa("sha256", key, "KDFSELFTESTLABEL\0\0", u, v, 160))).not.toBe("bb0259e1c8ba607e6a2cd704b69a902e9ade84c4");
  });

  test("output length is ceil(bits/8); the top byte of a partial byte keeps only its low bits; bits go into every block", () => {
    for (const bits of [1, 7, 13, 255, 256, 257, 600]) {
      const out = kdfa("sha256", key, "STORAGE", u, v, bits);
      expect(out.length).toBe(Math.ceil(bits / 8));
      if (bits % 8) expect(out[0]! >> (bits % 8)).toBe(0);
    }
    // [bits]32 is part of the HMAC input: 256 bits is not the first half of 512 bits
    expect(toHex(kdfa("sha256", key, "STORAGE", u, v, 512).subarray(0, 32))).not.toBe(toHex(kdfa("sha256", key, "STORAGE", u, v, 256)));
  });

  test("refuses an unsupported hash and a bit count that is not a positive integer", () => {
    expect(() => kdfa("sha1" as "sha256", key, "X", u, v, 128)).toThrow(/hashAlg/);
    expect(() => kdfa("sha256", key, "X", u, v, 0)).toThrow(/bits/);
    expect(() => kdfa("sha256", key, "X", u, v, 12.5)).toThrow(/bits/);
  });
});

describe("kdfe: known answers", () => {
  // go-tpm's KDFe as published in chrisfenner/tpm-test-vectors (vectors/kdfe.json), by name.
  const vectors: { name: string; hash: "sha256" | "sha384"; z: string; use: string; u: string; v: string; bits: number; out: string }[] = [
    {
      name: "31_SHA256_13",
      hash: "sha256",
      z: "739245447ead0deea5f834f06e043159c6ff",
      use: "IDENTITY",
      u: "ad503e36c2314ec9afa2f4047bf19ce7fbc6fe2def32c58459c0fc828c00",
      v: "ba6dd80b788034161743c95e8ef7a9486fbd69d3ff",
      bits: 13,
      out: "0956",
    },
    {
      name: "37_SHA256_431",
      hash: "sha256",
      z: "e89fc5304cf46c1cf7d1f5de5d3d1ec7eddc80b0386700",
      use: "SECRET",
      u: "e602bc959fd97af0405649e0c80e02e9dd64e9d79e698292b043c79dfa9f9261",
      v: "",
      bits: 431,
      out: "3a8e893b8b76cdddbf87845b2567fa7152577829f6a55b73cb82d4a1f0342a051d6e50e20ec2f96bc4de38d7d0d79a9caf99e1d574b9",
    },
    {
      name: "44_SHA256_659",
      hash: "sha256",
      z: "ffe8361b9fdfe01398db23a1b2a1bc35ffe737",
      use: "IDENTITY",
      u: "",
      v: "ff26e2f76cb6fbf1",
      bits: 659,
      out:
        "007d2cb3d906980fbce09d1bfe42b8d3c827c2d9fed082e0344e40c80f08c0a9eb629068d66164fbf03b3e18124f8ae3400647cf06f6c43be3740a49ec96c25f9115cff6625822878a451c601fa6bf749d2321",
    },
    {
      name: "53_SHA384_1",
      hash: "sha384",
      z: "ffffa7ff65fe5f1357df95d3a7ec5a6c5519963b8a6086c89f289b80c039e8eaabf136",
      use: "ATH",
      u: "b3c402f9bf969dae90efefb297f4852f7edb",
      v: "ffca1be2402405eab6741da32ec8d6348934c64c3bbeed44b4",
      bits: 1,
      out: "00",
    },
    {
      name: "72_SHA384_79",
      hash: "sha384",
      z: "67d2210f344df271e1c960d595814c4aeb9706c24aa42d2d97914d1bd1452b54ec69a42d07",
      use: "STORAGE",
      u: "d3e7df7d31ef352ce0214cc940f4703488621339fa87eb2cb872093cbc00",
      v: "5ea33fdb57e2e9649e5be68cf9643c58d6da596c9f",
      bits: 79,
      out: "32c262b6c9fec57cf217",
    },
    {
      name: "74_SHA384_913",
      hash: "sha384",
      z: "f66dd56505f3b037b2711e08fb4061668eca2fb64a8264e7c5675300",
      use: "SECRET",
      u: "4deed4fe4d0248451227064cf0c187c400",
      v: "004f3c3db722ec252c",
      bits: 913,
      out:
        "00e68a61ddb9c6bdd41d77a2c1df547f3070debda34da3f26f3c3de98b9d4109171124c2684ec83724cad0d7b0bf294a1690c169ecac40de115c3446c2a5061fae198bd43c79a7fc4d46835754be491d07432b61d09b3eb3fb921c5d09b55f05f85cb464e19999f51ea37ba32f038555f229ae",
    },
  ];
  for (const t of vectors) {
    test(`${t.name}: ${t.hash}, "${t.use}", ${t.bits} bits`, () => {
      expect(toHex(kdfe(t.hash, hex(t.z), t.use, hex(t.u), hex(t.v), t.bits))).toBe(t.out);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Public areas captured from swtpm 0.7.1 (swtpm_setup --create-ek-cert; tpm2_createak), with the
// names tpm2_readpublic printed for them: parsing and the checks that need no TPM.

const RSA_EK =
  "0001000b000300b20020837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa00060080004300100800000000000100" +
  "e9de418b875e32e1e01a94da946bf18847239a70d629b4dc4729e7ecdf3a4edc90604f3d94baa2c6565d247afce06a8162ac3fd51d3782f3c3" +
  "6321631c179663b0eb5eeef91b82549b13b70819b36f0e37d652e4380575a89d8794deba311de2aa75e01ac54fdef32c1e2f8d51520fdd92d1" +
  "b5f99d92ffdaffe15743f8019c745bfbd013116ddfcfdc0374b3ab405ddf8d45be261a484f4693089225461719e76bf7db96556c21fb610282" +
  "dad2f6d24dcd4b36e9a107da10b1298234b29dc533c9b02b98f3594113e161686aa32aae403ee96214c205ecdc9cff36c9f4007c1775bd6695" +
  "8ac38f5564c4837cb8b424706698460def324dc41ae338ad8c62f24d";
const RSA_EK_NAME = "000bbea59a99d585a0f7e3dd6a930d6cb945d9ed0d6c13559e853f5808e0290d4862";
const ECC384_EK =
  "0023000c000300f20030b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12" +
  "0006010000430010000400100030f2fd47406277e60f058c72bec38feb4c612d2b12f692138b25b2d293db136d564a93c09ea17bbc0705140bc0" +
  "9b59e4540030c92b432a198b438873c0a06f6d59335a585ee03ea91d3261426b7a085de2a13add0ca491b1324495a80abaa47390cbc4";
const ECC384_EK_NAME = "000cbc74aa5678b04fdde5dcd0f100dee07f54a1b0c6ea4399a6127f4a4cbad977ce2067f926e6c3a002b8ea1628dc9f3e61";
const AK =
  "0023000b00050072000000100018000b000300100020523d113f28e8675ee3d2e0f9c4b7ebc4fd5b4c9877e1af6c4f483b67cc61c692" +
  "0020d5e70b73f854cf43175ebad01d19a3122561a673d586bd1c4780d37318519564";
const AK_NAME = "000b73ed041b904c10caac7738e1961ef3c7d46318f4b44bdbb25421244d0364cc18";
const POLICY_A_SHA256 = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";
/** SubjectPublicKeyInfo DER prefix of an uncompressed P-384 point (id-ecPublicKey, secp384r1). */
const P384_SPKI_PREFIX = Buffer.from("3076301006072a8648ce3d020106052b81040022036200", "hex");

/** Every proper prefix is truncated, one byte more is trailing: both throw naming what. */
function expectStrictParse(wire: Uint8Array): void {
  for (let n = 0; n < wire.length; n++) {
    expect(() => parseTpmPublic(wire.subarray(0, n))).toThrow(/^TPMT_PUBLIC truncated: [\w.]+( size)? needs \d+ bytes at offset \d+/);
  }
  const longer = new Uint8Array(wire.length + 1);
  longer.set(wire);
  expect(() => parseTpmPublic(longer)).toThrow(`TPMT_PUBLIC: 1 trailing byte(s) after offset ${wire.length}`);
}

function patched(wire: Uint8Array, offset: number, bytes: number[]): Uint8Array {
  const out = wire.slice();
  out.set(bytes, offset);
  return out;
}

describe("parseTpmPublic on captured public areas", () => {
  test("RSA 2048 EK (TCG L-1): every field, and its name is the one tpm2_readpublic printed", () => {
    const p = parseTpmPublic(hex(RSA_EK));
    expect(p.type).toBe("rsa");
    expect(p.nameAlg).toBe(0x000b);
    expect(p.attributes).toBe(0x000300b2); // fixedtpm|fixedparent|sensitivedataorigin|adminwithpolicy|restricted|decrypt
    expect(toHex(p.authPolicy)).toBe(POLICY_A_SHA256);
    expect(p.symmetric).toEqual({ alg: 0x0006, keyBits: 128, mode: 0x0043 });
    expect(p.scheme).toEqual({ alg: 0x0010, hashAlg: 0x0010 });
    expect(p.rsa!.keyBits).toBe(2048);
    expect(p.rsa!.exponent).toBe(0);
    expect(toHex(p.rsa!.modulus)).toBe(RSA_EK.slice(-512));
    expect(p.ecc).toBeUndefined();
    expect(toHex(p.name)).toBe(RSA_EK_NAME);
    expect(toHex(p.wire)).toBe(RSA_EK);
    expect(ekDigest(p)).toBe(RSA_EK_NAME.slice(4));
  });

  test("ECC P-384 EK (TCG high range): sha384 name, AES-256-CFB, PolicyB_SHA384", () => {
    const p = parseTpmPublic(hex(ECC384_EK));
    expect(p.type).toBe("ecc");
    expect(p.nameAlg).toBe(0x000c);
    expect(p.attributes).toBe(0x000300f2); // as L-1 plus userwithauth
    expect(toHex(p.authPolicy)).toBe("b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12");
    expect(p.symmetric).toEqual({ alg: 0x0006, keyBits: 256, mode: 0x0043 });
    expect(p.ecc!.curve).toBe("P-384");
    expect(p.ecc!.curveId).toBe(0x0004);
    expect(p.ecc!.kdf).toEqual({ alg: 0x0010, hashAlg: 0x0010 });
    expect(p.ecc!.x.length).toBe(48);
    expect(p.ecc!.y.length).toBe(48);
    expect(toHex(p.ecc!.uniqueX)).toBe(toHex(p.ecc!.x));
    expect(toHex(p.name)).toBe(ECC384_EK_NAME);
    expect(ekDigest(p)).toBe(ECC384_EK_NAME.slice(4));
    expect(ekDigest(p)).toHaveLength(96);
  });

  test("ECC P-256 AK (tpm2_createak): restricted ECDSA-SHA256 signing key, no symmetric", () => {
    const p = parseTpmPublic(hex(AK));
    expect(p.attributes).toBe(0x00050072);
    expect(p.authPolicy.length).toBe(0);
    expect(p.symmetric).toBeNull();
    expect(p.scheme).toEqual({ alg: 0x0018, hashAlg: 0x000b });
    expect(p.ecc!.curve).toBe("P-256");
    expect(toHex(p.name)).toBe(AK_NAME);
  });

  test("truncated at every length and one trailing byte: all three throw naming the field", () => {
    for (const w of [RSA_EK, ECC384_EK, AK]) expectStrictParse(hex(w));
  });

  test("unsupported or inconsistent contents throw naming the field", () => {
    const rsa = hex(RSA_EK);
    const ecc = hex(ECC384_EK);
    expect(() => parseTpmPublic(patched(rsa, 0, [0x00, 0x08]))).toThrow("TPMT_PUBLIC: type 0x0008 is not supported");
    expect(() => parseTpmPublic(patched(rsa, 2, [0x00, 0x04]))).toThrow("TPMT_PUBLIC: nameAlg 0x0004 is not supported");
    expect(() => parseTpmPublic(patched(rsa, 42, [0x00, 0x0a]))).toThrow("symmetric.algorithm 0x000a is not supported");
    expect(() => parseTpmPublic(patched(rsa, 48, [0x00, 0x14]))).toThrow("keyBits 0 is not supported"); // RSASSA has a hashAlg: the rest shifts
    expect(() => parseTpmPublic(patched(rsa, 48, [0x00, 0x18]))).toThrow("scheme.scheme 0x0018 is not supported for this key type");
    expect(parseTpmPublic(patched(rsa, 48, [0x00, 0x15])).scheme).toEqual({ alg: 0x0015, hashAlg: 0x0010 }); // RSAES: no details
    expect(() => parseTpmPublic(patched(rsa, 50, [0x04, 0x00]))).toThrow("unique.rsa is 256 bytes, keyBits 1024 needs 128");
    expect(() => parseTpmPublic(patched(rsa, 50, [0x08, 0x01]))).toThrow("keyBits 2049 is not supported");
    expect(() => parseTpmPublic(patched(rsa, 52, [0, 0, 0, 4]))).toThrow("exponent 4 is not an odd number");
    expect(() => parseTpmPublic(patched(rsa, 58, [0x7f]))).toThrow("unique.rsa is not a 2048-bit modulus");
    expect(() => parseTpmPublic(patched(ecc, 66, [0x00, 0x05]))).toThrow("curveID 0x0005 is not supported");
    const offCurve = ecc.slice();
    offCurve[offCurve.length - 1]! ^= 1;
    expect(() => parseTpmPublic(offCurve)).toThrow("TPMT_PUBLIC: unique (x, y) is not a point on P-384");
    expect(() => parseTpmPublic(patched(ecc, 70, [0x00, 0x31]))).toThrow("unique.x is 49 bytes, at most 48 allowed");
    expect(() => parseTpmPublic("00" as unknown as Uint8Array)).toThrow("TPMT_PUBLIC must be a Uint8Array");
  });

  test("a short unique.x (leading zero dropped) is padded in x and kept as sent in uniqueX", () => {
    // the AK's template around a fresh P-256 key whose x starts with a zero byte, sent one byte short
    let jwk: crypto.webcrypto.JsonWebKey;
    do {
      jwk = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });
    } while (Buffer.from(jwk.x!, "base64url")[0] !== 0);
    const x = Buffer.from(jwk.x!, "base64url");
    const y = Buffer.from(jwk.y!, "base64url");
    const head = hex(AK).subarray(0, 20); // type .. kdf.scheme of the AK
    const wire = new Uint8Array([...head, 0x00, 31, ...x.subarray(1), 0x00, 32, ...y]);
    const p = parseTpmPublic(wire);
    expect(toHex(p.ecc!.x)).toBe(x.toString("hex"));
    expect(toHex(p.ecc!.uniqueX)).toBe(x.subarray(1).toString("hex"));
    expect(tpmPublicKeyObject(p).equals(crypto.createPublicKey({ key: jwk, format: "jwk" }))).toBe(true);
  });
});

describe("samePublicKey and tpmPublicKeyObject without a TPM", () => {
  const rsa = parseTpmPublic(hex(RSA_EK));
  const ecc = parseTpmPublic(hex(ECC384_EK));
  const n = rsa.rsa!.modulus;
  const e = new Uint8Array([1, 0, 1]);

  test("RSA: same n and e (leading zeros ignored) is the same key; another n or e, or an EC key, is not", () => {
    expect(samePublicKey(rsa, { kind: "rsa", n, e })).toBe(true);
    expect(samePublicKey(rsa, { kind: "rsa", n: new Uint8Array([0, ...n]), e: new Uint8Array([0, 1, 0, 1]) })).toBe(true);
    expect(samePublicKey(rsa, { kind: "rsa", n: patched(n, 255, [n[255]! ^ 2]), e })).toBe(false);
    expect(samePublicKey(rsa, { kind: "rsa", n, e: new Uint8Array([3]) })).toBe(false);
    expect(samePublicKey(rsa, { kind: "ec", curve: "P-384", x: ecc.ecc!.x, y: ecc.ecc!.y })).toBe(false);
  });

  test("EC: curve by JWK or OpenSSL name and x, y; another curve or point, or an RSA key, is not", () => {
    const { x, y } = ecc.ecc!;
    expect(samePublicKey(ecc, { kind: "ec", curve: "P-384", x, y })).toBe(true);
    expect(samePublicKey(ecc, { kind: "ec", curve: "secp384r1", x, y })).toBe(true);
    expect(samePublicKey(ecc, { kind: "ec", curve: "P-256", x, y })).toBe(false);
    expect(samePublicKey(ecc, { kind: "ec", curve: "P-384", x, y: patched(y, 47, [y[47]! ^ 1]) })).toBe(false);
    expect(samePublicKey(ecc, { kind: "ec", curve: "P-384", x: y, y: x })).toBe(false);
    expect(samePublicKey(ecc, { kind: "rsa", n, e })).toBe(false);
  });

  test("tpmPublicKeyObject: RSA 2048 with e 65537 and EC P-384 with the area's coordinates", () => {
    const rk = tpmPublicKeyObject(rsa);
    expect(rk.asymmetricKeyType).toBe("rsa");
    const rj = rk.export({ format: "jwk" });
    expect(Buffer.from(rj.n!, "base64url").toString("hex")).toBe(toHex(n));
    expect(rj.e).toBe("AQAB");
    const ej = tpmPublicKeyObject(ecc).export({ format: "jwk" });
    expect(ej.crv).toBe("P-384");
    expect(Buffer.from(ej.x!, "base64url").toString("hex")).toBe(toHex(ecc.ecc!.x));
    expect(Buffer.from(ej.y!, "base64url").toString("hex")).toBe(toHex(ecc.ecc!.y));
  });
});

describe("makeCredential without a TPM: shapes and refusals", () => {
  const akName = hex(AK_NAME);

  test("RSA EK: blob is TPM2B(sha256 HMAC) || encIdentity of 2 + credential bytes; secret is one 2048-bit OAEP block", () => {
    const m = makeCredential(hex(RSA_EK), akName, new Uint8Array(20).fill(7));
    expect(m.credentialBlob.length).toBe(2 + 32 + 2 + 20);
    expect([m.credentialBlob[0], m.credentialBlob[1]]).toEqual([0, 32]);
    expect(m.secret.length).toBe(256);
    const again = makeCredential(hex(RSA_EK), akName, new Uint8Array(20).fill(7));
    expect(toHex(again.secret)).not.toBe(toHex(m.secret)); // a fresh seed each time
    expect(toHex(again.credentialBlob)).not.toBe(toHex(m.credentialBlob));
  });

  test("ECC P-384 EK: blob carries a sha384 HMAC; secret is a TPMS_ECC_POINT on P-384", () => {
    const m = makeCredential(hex(ECC384_EK), akName, new Uint8Array(48).fill(9));
    expect(m.credentialBlob.length).toBe(2 + 48 + 2 + 48);
    expect([m.credentialBlob[0], m.credentialBlob[1]]).toEqual([0, 48]);
    expect(m.secret.length).toBe(2 + 48 + 2 + 48);
    expect([m.secret[0], m.secret[1], m.secret[50], m.secret[51]]).toEqual([0, 48, 0, 48]);
    const point = new Uint8Array([0x04, ...m.secret.subarray(2, 50), ...m.secret.subarray(52)]);
    expect(() => crypto.createPublicKey({ key: Buffer.concat([P384_SPKI_PREFIX, point]), format: "der", type: "spki" })).not.toThrow();
  });

  test("refuses a key that is not a restricted decryption key, oversized or empty credentials and malformed names", () => {
    const cred = new Uint8Array(16);
    expect(() => makeCredential(hex(AK), akName, cred)).toThrow("not a restricted decryption key");
    expect(() => makeCredential(hex(RSA_EK), akName, new Uint8Array(33))).toThrow("credential is 33 bytes, the EK's nameAlg (sha256) allows at most 32");
    expect(() => makeCredential(hex(ECC384_EK), akName, new Uint8Array(49))).toThrow("at most 48");
    expect(() => makeCredential(hex(RSA_EK), akName, new Uint8Array(0))).toThrow("credential is empty");
    expect(() => makeCredential(hex(RSA_EK), akName.subarray(0, 33), cred)).toThrow("objectName is 33 bytes, its hash algorithm needs 34");
    expect(() => makeCredential(hex(RSA_EK), patched(akName, 0, [0x00, 0x99]), cred)).toThrow("0x0099 is not a known hash");
    expect(() => makeCredential(hex(RSA_EK).subarray(0, 100), akName, cred)).toThrow(/EK public area: TPMT_PUBLIC truncated/);
    // an EK whose symmetric is not AES-CFB: AES-128-CTR (mode 0x0040)
    expect(() => makeCredential(patched(hex(RSA_EK), 46, [0x00, 0x40]), akName, cred)).toThrow("AES-128-CFB or AES-256-CFB");
  });
});

// ---------------------------------------------------------------------------------------------
// On a real software TPM: activation by tpm2_activatecredential

const HAVE_TOOLS = haveSwtpm() && Bun.which("tpm2_activatecredential") !== null && Bun.which("openssl") !== null;
if (!HAVE_TOOLS) {
  console.warn("credential.test.ts: swtpm, tpm2-tools or openssl is missing: the activation tests on swtpm are SKIPPED (apt-get install swtpm tpm2-tools)");
}

/** TCG EK Credential Profile: PolicyC_SHA384 = PolicyAuthorizeNV(0x01c07f02), the second branch of PolicyB_SHA384. */
const POLICY_C_SHA384 = "d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5b4947c2d73e63005eed2dc2b3593d165";
const TPM_CC_POLICY_SECRET = 0x00000151;
const TPM_CC_POLICY_OR = 0x00000171;
const TPM_RH_ENDORSEMENT = 0x4000000b;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** PolicySecret(endorsement) with no policyRef, from an empty policy digest. */
function policyA(hash: "sha256" | "sha384"): Buffer {
  const size = hash === "sha256" ? 32 : 48;
  const step = crypto.createHash(hash).update(Buffer.alloc(size)).update(u32(TPM_CC_POLICY_SECRET)).update(u32(TPM_RH_ENDORSEMENT)).digest();
  return crypto.createHash(hash).update(step).digest(); // PolicyUpdate's second hash over the (empty) policyRef
}

function policyOr(hash: "sha384", branches: Buffer[]): Buffer {
  const h = crypto.createHash(hash).update(Buffer.alloc(48)).update(u32(TPM_CC_POLICY_OR));
  for (const b of branches) h.update(b);
  return h.digest();
}

/** tpm2-tools' credential file (tools/tpm2_makecredential.c). */
function credentialFile(m: MadeCredential): Uint8Array {
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  return new Uint8Array(Buffer.concat([u32(0xbadcc0de), u32(1), u16(m.credentialBlob.length), m.credentialBlob, u16(m.secret.length), m.secret]));
}

function readCredentialFile(b: Uint8Array): MadeCredential {
  const buf = Buffer.from(b);
  expect(buf.readUInt32BE(0)).toBe(0xbadcc0de);
  expect(buf.readUInt32BE(4)).toBe(1);
  const blobLen = buf.readUInt16BE(8);
  const credentialBlob = new Uint8Array(buf.subarray(10, 10 + blobLen));
  const secretLen = buf.readUInt16BE(10 + blobLen);
  const secret = new Uint8Array(buf.subarray(12 + blobLen, 12 + blobLen + secretLen));
  expect(buf.length).toBe(12 + blobLen + secretLen);
  return { credentialBlob, secret };
}

interface Ek {
  label: string;
  /** What tpm2_activatecredential -C takes: a persistent handle or a context file. */
  handle: string;
  /** The policy the EK's authPolicy wants: PolicySecret alone, or OR'ed with PolicyC (sha384). */
  policy: "secret-sha256" | "secret-or-sha384";
  pub: TpmPublic;
  /** The TPM2B_PUBLIC file tpm2_readpublic / tpm2_createek wrote (tpm2_makecredential -u takes it). */
  pubFile: string;
  nameHex: string;
  readpublic: string;
}

interface Ak {
  ctx: string;
  pub: TpmPublic;
  name: Uint8Array;
}

describe.skipIf(!HAVE_TOOLS)("credential activation on swtpm", () => {
  let tpm: (Swtpm & { ekCa?: unknown }) | null = null;
  let work = "";
  let caDir = "";
  let rsaEk: Ek;
  let ecc384Ek: Ek;
  let ecc256Ek: Ek;
  let ak1: Ak;
  let ak2: Ak;

  function run(args: string[]): { code: number; stdout: string; stderr: string } {
    const p = Bun.spawnSync(args, { cwd: work, env: { ...process.env, TPM2TOOLS_TCTI: tpm!.tcti }, stdout: "pipe", stderr: "pipe" });
    return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  }
  function tools(args: string[]): string {
    const r = run(args);
    if (r.code !== 0) throw new Error(`${args.join(" ")} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }
  const flush = () => {
    run(["tpm2_flushcontext", "-t"]);
    run(["tpm2_flushcontext", "-s"]);
  };
  const file = (name: string) => new Uint8Array(fs.readFileSync(path.join(work, name)));
  const write = (name: string, b: Uint8Array) => fs.writeFileSync(path.join(work, name), b);

  function readEk(label: string, handle: string, policy: Ek["policy"]): Ek {
    const readpublic = tools(["tpm2_readpublic", "-c", handle, "-f", "tss", "-o", `${label}.pub`, "-n", `${label}.name`]);
    flush();
    const nameHex = readpublic.match(/^name: ([0-9a-f]+)$/m)![1]!;
    expect(toHex(file(`${label}.name`))).toBe(nameHex);
    return { label, handle, policy, pub: parseTpmPublic(unwrapTpm2b(file(`${label}.pub`), "TPM2B_PUBLIC")), pubFile: `${label}.pub`, nameHex, readpublic };
  }

  function createAk(label: string): Ak {
    const out = tools(["tpm2_createak", "-C", rsaEk.handle, "-c", `${label}.ctx`, "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", `${label}.pub`, "-n", `${label}.name`, "-f", "tss"]);
    flush();
    const name = file(`${label}.name`);
    expect(out).toContain(`name: ${toHex(name)}`);
    return { ctx: `${label}.ctx`, pub: parseTpmPublic(unwrapTpm2b(file(`${label}.pub`), "TPM2B_PUBLIC")), name };
  }

  /** tpm2_activatecredential with the EK's policy satisfied; the recovered credential or the tool's error. */
  function activate(ek: Ek, ak: Ak, credFile: string): { ok: true; credential: Uint8Array } | { ok: false; stderr: string } {
    const out = `${credFile}.out`;
    fs.rmSync(path.join(work, out), { force: true });
    try {
      if (ek.policy === "secret-sha256") {
        tools(["tpm2_startauthsession", "--policy-session", "-g", "sha256", "-S", "s.ctx"]);
        tools(["tpm2_policysecret", "-S", "s.ctx", "-c", "e"]);
      } else {
        tools(["tpm2_startauthsession", "--policy-session", "-g", "sha384", "-S", "s.ctx"]);
        tools(["tpm2_policysecret", "-S", "s.ctx", "-c", "e"]);
        tools(["tpm2_policyor", "-S", "s.ctx", "-l", "sha384:policyA384.bin,policyC384.bin"]);
      }
      const r = run(["tpm2_activatecredential", "-c", ak.ctx, "-C", ek.handle, "-i", credFile, "-o", out, "-P", "session:s.ctx"]);
      if (r.code !== 0) return { ok: false, stderr: r.stderr };
      return { ok: true, credential: file(out) };
    } finally {
      flush();
    }
  }

  let seq = 0;
  function ours(ek: Ek, name: Uint8Array, credential: Uint8Array, tamper?: (f: Uint8Array) => void): string {
    const f = credentialFile(makeCredential(ek.pub.wire, name, credential));
    tamper?.(f);
    const n = `ours${seq++}.cred`;
    write(n, f);
    return n;
  }
  function theirs(ek: Ek, name: Uint8Array, credential: Uint8Array): string {
    const n = seq++;
    write(`secret${n}.bin`, credential);
    tools(["tpm2_makecredential", "-T", "none", "-u", ek.pubFile, "-s", `secret${n}.bin`, "-n", toHex(name), "-o", `theirs${n}.cred`]);
    return `theirs${n}.cred`;
  }

  beforeAll(async () => {
    if (!HAVE_TOOLS) return;
    work = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-credential-"));
    caDir = path.join(work, "ca");
    tpm = await startSwtpm({ ekCa: caDir });
    rsaEk = readEk("ek-rsa", "0x81010001", "secret-sha256");
    ecc384Ek = readEk("ek-ecc384", "0x81010016", "secret-or-sha384");
    // the TCG L-2 template (ECC P-256, sha256, AES-128-CFB, PolicyA): tpm2_createek makes it
    tools(["tpm2_createek", "-c", "ek-ecc256.ctx", "-G", "ecc", "-u", "ek-ecc256.tpm2b", "-f", "tss"]);
    flush();
    ecc256Ek = readEk("ek-ecc256", "ek-ecc256.ctx", "secret-sha256");
    expect(toHex(file("ek-ecc256.tpm2b"))).toBe(toHex(file("ek-ecc256.pub")));
    ak1 = createAk("ak1");
    ak2 = createAk("ak2");
    write("policyA384.bin", policyA("sha384"));
    write("policyC384.bin", hex(POLICY_C_SHA384));
  }, 60_000);

  afterAll(async () => {
    if (tpm) {
      await tpm.stop();
      fs.rmSync(tpm.stateDir, { recursive: true, force: true });
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test("the EK policies are what activation satisfies: PolicyA (sha256), PolicyOR(PolicyA, PolicyC) (sha384)", () => {
    expect(toHex(policyA("sha256"))).toBe(toHex(rsaEk.pub.authPolicy));
    expect(toHex(policyA("sha256"))).toBe(toHex(ecc256Ek.pub.authPolicy));
    expect(toHex(policyOr("sha384", [policyA("sha384"), Buffer.from(hex(POLICY_C_SHA384))]))).toBe(toHex(ecc384Ek.pub.authPolicy));
  });

  test("parseTpmPublic: names of both EKs, the L-2 EK and the AKs equal tpm2-tools'; fields agree with tpm2_readpublic", () => {
    for (const ek of [rsaEk, ecc384Ek, ecc256Ek]) {
      expect(toHex(ek.pub.name)).toBe(ek.nameHex);
      expect(ekDigest(ek.pub)).toBe(ek.nameHex.slice(4));
      const y = ek.readpublic;
      expect(y).toContain(`authorization policy: ${toHex(ek.pub.authPolicy)}`);
      expect(y).toMatch(new RegExp(`attributes:\\n\\s+value: .*\\n\\s+raw: 0x${ek.pub.attributes.toString(16)}\\n`));
      expect(y).toContain(`sym-keybits: ${ek.pub.symmetric!.keyBits}`);
      if (ek.pub.rsa) {
        expect(y).toContain(`rsa: ${toHex(ek.pub.rsa.modulus)}`);
        expect(y).toContain("bits: 2048");
        expect(y).toContain("exponent: 65537");
      } else {
        expect(y).toContain(`x: ${toHex(ek.pub.ecc!.x)}`);
        expect(y).toContain(`y: ${toHex(ek.pub.ecc!.y)}`);
        expect(y).toContain(`curve-id:\n  value: NIST p${ek.pub.ecc!.curve.slice(2)}`);
      }
    }
    expect(rsaEk.pub.type).toBe("rsa");
    expect(ecc384Ek.pub.ecc!.curve).toBe("P-384");
    expect(ecc384Ek.pub.nameAlg).toBe(0x000c);
    expect(ecc256Ek.pub.ecc!.curve).toBe("P-256");
    expect(ecc256Ek.pub.symmetric).toEqual({ alg: 0x0006, keyBits: 128, mode: 0x0043 });
    for (const ak of [ak1, ak2]) {
      expect(toHex(ak.pub.name)).toBe(toHex(ak.name));
      expect(ak.pub.scheme).toEqual({ alg: 0x0018, hashAlg: 0x000b });
    }
    expect(toHex(ak1.name)).not.toBe(toHex(ak2.name));
  });

  test("parseTpmPublic: the TPM's own public areas, truncated at every length or with a trailing byte, throw", () => {
    for (const p of [rsaEk.pub, ecc384Ek.pub, ecc256Ek.pub, ak1.pub]) expectStrictParse(p.wire);
  });

  test("samePublicKey: each EK matches the key of its certificate in NV (0x01c00002 RSA, 0x01c00016 ECC) and not the other's", () => {
    const certKey = (index: string, label: string): { key: crypto.KeyObject; k: CertPublicKey } => {
      tools(["tpm2_nvread", "-C", "o", index, "-o", `${label}.der`]);
      const pem = tools(["openssl", "x509", "-inform", "DER", "-in", `${label}.der`, "-noout", "-pubkey"]);
      const key = crypto.createPublicKey(pem);
      const j = key.export({ format: "jwk" });
      const b = (s: string | undefined) => new Uint8Array(Buffer.from(s!, "base64url"));
      return { key, k: j.kty === "RSA" ? { kind: "rsa", n: b(j.n), e: b(j.e) } : { kind: "ec", curve: j.crv!, x: b(j.x), y: b(j.y) } };
    };
    const rsaCert = certKey("0x01c00002", "ek-rsa-cert");
    const eccCert = certKey("0x01c00016", "ek-ecc-cert");
    expect(rsaCert.k.kind).toBe("rsa");
    expect(eccCert.k).toMatchObject({ kind: "ec", curve: "P-384" });
    expect(samePublicKey(rsaEk.pub, rsaCert.k)).toBe(true);
    expect(samePublicKey(ecc384Ek.pub, eccCert.k)).toBe(true);
    expect(samePublicKey(rsaEk.pub, eccCert.k)).toBe(false);
    expect(samePublicKey(ecc384Ek.pub, rsaCert.k)).toBe(false);
    expect(samePublicKey(ecc256Ek.pub, eccCert.k)).toBe(false); // an ECC EK, but not the certified one
    expect(tpmPublicKeyObject(rsaEk.pub).equals(rsaCert.key)).toBe(true);
    expect(tpmPublicKeyObject(ecc384Ek.pub).equals(eccCert.key)).toBe(true);
    expect(tpmPublicKeyObject(ecc384Ek.pub).equals(rsaCert.key)).toBe(false);
  });

  for (const which of ["RSA 2048", "ECC P-384", "ECC P-256 (L-2)"] as const) {
    const ekOf = () => (which === "RSA 2048" ? rsaEk : which === "ECC P-384" ? ecc384Ek : ecc256Ek);

    test(`${which} EK: tpm2_activatecredential recovers the credential from our blob and from tpm2-tools' alike`, () => {
      const ek = ekOf();
      const digestBytes = ek.pub.nameAlg === 0x000c ? 48 : 32;
      for (const size of [digestBytes, 16]) {
        const credential = new Uint8Array(crypto.randomBytes(size));
        const mine = ours(ek, ak1.name, credential);
        const tools_ = theirs(ek, ak1.name, credential);
        // same layout as tpm2-tools' file, field by field
        const a = readCredentialFile(file(mine));
        const b = readCredentialFile(file(tools_));
        expect(a.credentialBlob.length).toBe(b.credentialBlob.length);
        expect(a.secret.length).toBe(b.secret.length);
        expect([...a.credentialBlob.subarray(0, 2)]).toEqual([...b.credentialBlob.subarray(0, 2)]);
        const fromTools = activate(ek, ak1, tools_);
        const fromOurs = activate(ek, ak1, mine);
        if (!fromTools.ok) throw new Error(`activation of tpm2-tools' blob failed: ${fromTools.stderr}`);
        if (!fromOurs.ok) throw new Error(`activation of our blob failed: ${fromOurs.stderr}`);
        expect(toHex(fromOurs.credential)).toBe(toHex(credential));
        expect(toHex(fromOurs.credential)).toBe(toHex(fromTools.credential));
      }
    }, 30_000);
  }

  for (const which of ["RSA 2048", "ECC P-384"] as const) {
    const ekOf = () => (which === "RSA 2048" ? rsaEk : ecc384Ek);

    test(`${which} EK: a blob made for another AK's name is refused by activation; that AK activates it`, () => {
      const ek = ekOf();
      const credential = new Uint8Array(crypto.randomBytes(32));
      const forAk2 = ours(ek, ak2.name, credential);
      const wrong = activate(ek, ak1, forAk2);
      expect(wrong.ok).toBe(false);
      if (!wrong.ok) expect(wrong.stderr).toMatch(/integrity check failed/);
      const right = activate(ek, ak2, forAk2);
      expect(right.ok && toHex(right.credential)).toBe(toHex(credential));
    }, 30_000);

    test(`${which} EK: a flipped byte in the integrity HMAC, in encIdentity or in the secret is refused`, () => {
      const ek = ekOf();
      const credential = new Uint8Array(crypto.randomBytes(32));
      const hmacSize = ek.pub.nameAlg === 0x000c ? 48 : 32;
      const blobStart = 10; // magic, version, TPM2B_ID_OBJECT size
      const tampered: [string, number][] = [
        ["integrity HMAC", blobStart + 2 + 5],
        ["encIdentity", blobStart + 2 + hmacSize + 1],
        ["secret", blobStart + 2 + hmacSize + 2 + 32 + 2 + 10],
      ];
      for (const [what, offset] of tampered) {
        const f = ours(ek, ak1.name, credential, (b) => {
          b[offset]! ^= 0x01;
        });
        const r = activate(ek, ak1, f);
        expect(r.ok, `activation of a blob with a flipped byte in ${what}`).toBe(false);
        if (!r.ok && what !== "secret") expect(r.stderr).toMatch(/integrity check failed/);
      }
      // the untampered blob still activates: the failures above are the flips
      const good = activate(ek, ak1, ours(ek, ak1.name, credential));
      expect(good.ok && toHex(good.credential)).toBe(toHex(credential));
    }, 30_000);
  }
});
