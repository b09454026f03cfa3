// TPM2_MakeCredential in pure TypeScript, so a validator can enroll a node's attestation key
// (AK) by credential activation without a TPM of its own (TPM 2.0 Part 1 sections 11.4.9-11.4.10
// KDFa/KDFe, 24 credential protection, 25 secret sharing; Part 3 TPM2_MakeCredential).
//
// The credential is encrypted so that only the TPM holding the endorsement key (EK) can recover
// it, and only with TPM2_ActivateCredential naming the object (the AK) whose name went in:
//
//   seed        RSA EK: random (EK nameAlg digest size), secret = RSA-OAEP(EK, nameAlg, "IDENTITY\0")
//               ECC EK: ephemeral key on the EK's curve, Z = x of ECDH(ephemeral, EK),
//                       seed = KDFe(nameAlg, Z, "IDENTITY", ephemeral.x, EK unique.x, digest bits),
//                       secret = TPMS_ECC_POINT(ephemeral)
//   symKey      KDFa(nameAlg, seed, "STORAGE", AK name, "", EK symmetric keyBits)
//   encIdentity AES-CFB(symKey, IV 0, u16 size || credential)
//   hmacKey     KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
//   integrity   HMAC_nameAlg(hmacKey, encIdentity || AK name)
//   blob        TPM2B_DIGEST(integrity) || encIdentity   (TPM2B_ID_OBJECT contents)
//
// Checked against swtpm: TPM2_ActivateCredential recovers the credential for RSA 2048 (sha256,
// AES-128-CFB), ECC P-384 (sha384, AES-256-CFB) and ECC P-256 (sha256, AES-128-CFB) EKs, as it
// does from tpm2-tools' `tpm2_makecredential -T none` blobs (test/credential.test.ts).
import * as crypto from "node:crypto";
import {
  nameHash,
  parseTpmPublic,
  TPM_ALG_AES,
  TPM_ALG_CFB,
  tpmPublicKeyObject,
  type NameHash,
  type TpmPublic,
} from "./public-area.ts";

const DIGEST_BYTES: Record<NameHash, number> = { sha256: 32, sha384: 48 };
/** Hash sizes of the TPMI_ALG_HASH values a TPM2B_NAME may start with. */
const NAME_DIGEST_SIZES: ReadonlyMap<number, number> = new Map([
  [0x0004, 20], // sha1
  [0x000b, 32], // sha256
  [0x000c, 48], // sha384
  [0x000d, 64], // sha512
  [0x0012, 32], // sm3_256
]);
const TPMA_OBJECT_RESTRICTED = 1 << 16;
const TPMA_OBJECT_DECRYPT = 1 << 17;
/** KDF outputs beyond this are never needed here; bounds a caller's mistake. */
const MAX_KDF_BITS = 8 * 1024 * 8;
const EMPTY = new Uint8Array(0);

function checkHash(hashAlg: unknown, fn: string): asserts hashAlg is NameHash {
  if (hashAlg !== "sha256" && hashAlg !== "sha384") throw new Error(`${fn}: hashAlg must be "sha256" or "sha384"`);
}

function checkBits(bits: unknown, fn: string): asserts bits is number {
  if (!Number.isInteger(bits) || (bits as number) <= 0 || (bits as number) > MAX_KDF_BITS) {
    throw new Error(`${fn}: bits must be an integer 1..${MAX_KDF_BITS}`);
  }
}

function checkBytes(v: unknown, what: string): asserts v is Uint8Array {
  if (!(v instanceof Uint8Array)) throw new Error(`${what} must be a Uint8Array`);
}

/** The label as the KDFs hash it: its bytes with one terminating zero octet (added when missing). */
function labelBytes(label: unknown, fn: string): Uint8Array {
  if (typeof label !== "string") throw new Error(`${fn}: label must be a string`);
  const b = new TextEncoder().encode(label);
  if (b.length > 0 && b[b.length - 1] === 0) return b;
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

function u32be(n: number): Uint8Array {
  return new Uint8Array([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}

function u16be(n: number): Uint8Array {
  return new Uint8Array([n >>> 8, n & 0xff]);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** ceil(bits/8) bytes of the concatenated blocks; a partial top byte keeps only its low bits. */
function truncate(blocks: Uint8Array[], bits: number): Uint8Array {
  const out = concat(...blocks).slice(0, Math.ceil(bits / 8));
  if (bits % 8 !== 0) out[0]! &= (1 << (bits % 8)) - 1;
  return out;
}

/**
 * KDFa (Part 1, 11.4.10.2; SP800-108 counter mode with HMAC):
 * HMAC_hash(key, [i]32 || label || 0x00 || contextU || contextV || [bits]32) for i = 1, 2, ...
 * The label's terminating zero is added unless it already ends in one.
 */
export function kdfa(
  hashAlg: "sha256" | "sha384",
  key: Uint8Array,
  label: string,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Uint8Array {
  checkHash(hashAlg, "kdfa");
  checkBits(bits, "kdfa");
  checkBytes(key, "kdfa key");
  checkBytes(contextU, "kdfa contextU");
  checkBytes(contextV, "kdfa contextV");
  const l = labelBytes(label, "kdfa");
  return counterBlocks(hashAlg, bits, (i) => crypto.createHmac(hashAlg, key).update(u32be(i)).update(l).update(contextU).update(contextV).update(u32be(bits)).digest());
}

/** Both KDFs' shape: block i = 1, 2, ... of one digest each, until `bits` are made, truncated to them. */
function counterBlocks(hashAlg: "sha256" | "sha384", bits: number, block: (i: number) => Uint8Array): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (let i = 1, done = 0; done < bits; i++, done += DIGEST_BYTES[hashAlg] * 8) blocks.push(new Uint8Array(block(i)));
  return truncate(blocks, bits);
}

/**
 * KDFe (Part 1, 11.4.10.3; SP800-56A concatenation KDF):
 * H_hash([i]32 || Z || label || 0x00 || partyU || partyV) for i = 1, 2, ...
 * The label's terminating zero is added unless it already ends in one.
 */
export function kdfe(
  hashAlg: "sha256" | "sha384",
  z: Uint8Array,
  label: string,
  partyU: Uint8Array,
  partyV: Uint8Array,
  bits: number,
): Uint8Array {
  checkHash(hashAlg, "kdfe");
  checkBits(bits, "kdfe");
  checkBytes(z, "kdfe z");
  checkBytes(partyU, "kdfe partyU");
  checkBytes(partyV, "kdfe partyV");
  const l = labelBytes(label, "kdfe");
  return counterBlocks(hashAlg, bits, (i) => crypto.createHash(hashAlg).update(u32be(i)).update(z).update(l).update(partyU).update(partyV).digest());
}

export interface MadeCredential {
  /** TPM2B_ID_OBJECT contents: TPM2B_DIGEST integrityHMAC || encIdentity (no outer size). */
  credentialBlob: Uint8Array;
  /** TPM2B_ENCRYPTED_SECRET contents: the RSA-OAEP ciphertext or the ephemeral TPMS_ECC_POINT. */
  secret: Uint8Array;
}

const ECDH_CURVES = { "P-256": "prime256v1", "P-384": "secp384r1" } as const;

/** The seed and the secret that carries it to the EK's TPM (Part 1, 25: secret sharing). */
function shareSeed(ek: TpmPublic, hash: NameHash): { seed: Uint8Array; secret: Uint8Array } {
  const digestBytes = DIGEST_BYTES[hash];
  if (ek.type === "rsa") {
    const seed = new Uint8Array(crypto.randomBytes(digestBytes));
    const secret = crypto.publicEncrypt(
      {
        key: tpmPublicKeyObject(ek),
        padding: crypto.constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: hash,
        oaepLabel: Buffer.from("IDENTITY\0", "latin1"),
      },
      seed,
    );
    return { seed, secret: new Uint8Array(secret) };
  }
  const ecc = ek.ecc!;
  const size = ecc.x.length;
  const ecdh = crypto.createECDH(ECDH_CURVES[ecc.curve]);
  const ephemeral = new Uint8Array(ecdh.generateKeys(null, "uncompressed")); // 04 || x || y, fixed length
  const ekPoint = concat(new Uint8Array([0x04]), ecc.x, ecc.y);
  const z = new Uint8Array(ecdh.computeSecret(ekPoint)); // the x coordinate of the shared point, fixed length
  const ex = ephemeral.subarray(1, 1 + size);
  const ey = ephemeral.subarray(1 + size);
  // partyU is the ephemeral x exactly as sent in the secret; partyV the EK's unique.x as in its
  // public area: the TPM hashes both TPM2B contents as they are.
  const seed = kdfe(hash, z, "IDENTITY", ex, ecc.uniqueX, digestBytes * 8);
  const secret = concat(u16be(ex.length), ex, u16be(ey.length), ey);
  return { seed, secret };
}

/**
 * TPM2_MakeCredential against an EK public area (TPMT_PUBLIC wire bytes): the blob and secret
 * that TPM2_ActivateCredential(activateHandle = the object named objectName, keyHandle = the EK)
 * turns back into `credential` on the TPM holding that EK, and nowhere else.
 *
 * The EK must be a restricted decryption key (RSA, or ECC P-256 / P-384) with an AES-128-CFB or
 * AES-256-CFB symmetric and a sha256 or sha384 nameAlg; objectName is the AK's TPM2B_NAME
 * contents (hash alg || digest); credential is 1 to digest-size-of-the-EK-nameAlg bytes.
 * Throws an Error naming what is wrong.
 */
export function makeCredential(ekPublic: Uint8Array, objectName: Uint8Array, credential: Uint8Array): MadeCredential {
  checkBytes(ekPublic, "makeCredential: ekPublic");
  checkBytes(objectName, "makeCredential: objectName");
  checkBytes(credential, "makeCredential: credential");
  let ek: TpmPublic;
  try {
    ek = parseTpmPublic(ekPublic);
  } catch (e) {
    throw new Error(`makeCredential: EK public area: ${(e as Error).message}`);
  }
  const { hash, size: digestBytes } = nameHash(ek.nameAlg);
  if ((ek.attributes & TPMA_OBJECT_RESTRICTED) === 0 || (ek.attributes & TPMA_OBJECT_DECRYPT) === 0) {
    throw new Error("makeCredential: the EK is not a restricted decryption key (a storage key protects credentials)");
  }
  const sym = ek.symmetric;
  if (!sym || sym.alg !== TPM_ALG_AES || sym.mode !== TPM_ALG_CFB || (sym.keyBits !== 128 && sym.keyBits !== 256)) {
    const got = sym ? `alg 0x${sym.alg.toString(16)} keyBits ${sym.keyBits} mode 0x${sym.mode.toString(16)}` : "none";
    throw new Error(`makeCredential: the EK's symmetric must be AES-128-CFB or AES-256-CFB (got ${got})`);
  }
  checkName(objectName);
  if (credential.length === 0) throw new Error("makeCredential: credential is empty");
  if (credential.length > digestBytes) {
    throw new Error(`makeCredential: credential is ${credential.length} bytes, the EK's nameAlg (${hash}) allows at most ${digestBytes}`);
  }

  const { seed, secret } = shareSeed(ek, hash);
  const symKey = kdfa(hash, seed, "STORAGE", objectName, EMPTY, sym.keyBits);
  const cipher = crypto.createCipheriv(`aes-${sym.keyBits}-cfb`, symKey, Buffer.alloc(16));
  const encIdentity = new Uint8Array(Buffer.concat([cipher.update(concat(u16be(credential.length), credential)), cipher.final()]));
  const hmacKey = kdfa(hash, seed, "INTEGRITY", EMPTY, EMPTY, digestBytes * 8);
  const integrity = new Uint8Array(crypto.createHmac(hash, hmacKey).update(encIdentity).update(objectName).digest());
  return { credentialBlob: concat(u16be(integrity.length), integrity, encIdentity), secret };
}

/** A TPM2B_NAME of an object: a hash algorithm and a digest of its size. */
function checkName(name: Uint8Array): void {
  if (name.length < 2) throw new Error(`makeCredential: objectName is ${name.length} bytes, not hash alg || digest`);
  const alg = (name[0]! << 8) | name[1]!;
  const size = NAME_DIGEST_SIZES.get(alg);
  if (size === undefined) throw new Error(`makeCredential: objectName's hash algorithm 0x${alg.toString(16).padStart(4, "0")} is not a known hash`);
  if (name.length !== 2 + size) throw new Error(`makeCredential: objectName is ${name.length} bytes, its hash algorithm needs ${2 + size}`);
}
