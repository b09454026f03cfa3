// What an attacker without a TPM can make in software: TPM wire structures that look like a
// TPM's (public areas with every attribute a TPM key shows, TPMS_ATTEST headers with the TPM's
// magic, ECDSA TPMT_SIGNATUREs). The attestation tests use them to show that only what a
// real TPM does (credential activation) is trusted.
import * as crypto from "node:crypto";
import { p256 } from "@noble/curves/nist.js";
import { qualifiedName } from "../../src/tpm/quote.ts";

/** Big-endian TPM wire bytes. */
export function wire(...parts: (number | [number, 2 | 4 | 8] | Uint8Array | { b2: Uint8Array })[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (p instanceof Uint8Array) out.push(...p);
    else if (typeof p === "number") out.push(p & 0xff);
    else if (Array.isArray(p)) {
      const [v, n] = p;
      const big = BigInt(v);
      for (let i = n - 1; i >= 0; i--) out.push(Number((big >> BigInt(8 * i)) & 0xffn));
    } else out.push(p.b2.length >> 8, p.b2.length & 0xff, ...p.b2);
  }
  return Uint8Array.from(out);
}

/** A TPMT_PUBLIC for a P-256 key that never was in any TPM, with every attribute a TPM key would show. */
export function fakePublicArea(publicKey: Uint8Array, restricted: boolean): Uint8Array {
  const xy = p256.Point.fromBytes(publicKey).toBytes(false);
  const attrs = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 10) | (1 << 18) | (restricted ? 1 << 16 : 0);
  return wire([0x0023, 2], [0x000b, 2], [attrs, 4], { b2: new Uint8Array(0) }, [0x0010, 2], [0x0018, 2], [0x000b, 2], [0x0003, 2], [0x0010, 2], { b2: xy.subarray(1, 33) }, { b2: xy.subarray(33) });
}

export function tpmName(publicArea: Uint8Array): Uint8Array {
  return Uint8Array.from([0x00, 0x0b, ...crypto.createHash("sha256").update(publicArea).digest()]);
}

/** An ECDSA TPMT_SIGNATURE made in software. */
export function softSign(key: crypto.KeyObject, message: Uint8Array): Uint8Array {
  const rs = crypto.sign("sha256", message, { key, dsaEncoding: "ieee-p1363" });
  return wire([0x0018, 2], [0x000b, 2], { b2: rs.subarray(0, 32) }, { b2: rs.subarray(32) });
}

export function attestHeader(type: number, akPublic: Uint8Array, extraData: Uint8Array): Uint8Array {
  return wire([0xff544347, 4], [type, 2], { b2: qualifiedName(tpmName(akPublic)) }, { b2: extraData }, [1234, 8], [0, 4], [0, 4], 1, [0, 8]);
}

/** A P-256 key in software, and the SEC1 form a card names it by. */
export function softwareKey(): { privateKey: crypto.KeyObject; sec1: Uint8Array } {
  const k = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const raw = new Uint8Array(k.publicKey.export({ type: "spki", format: "der" }).subarray(-65));
  return { privateKey: k.privateKey, sec1: p256.Point.fromBytes(raw).toBytes(true) };
}

/**
 * A card's TPM evidence with a software "AK" in place of the TPM's: the same EK (and its
 * certificate) and the same identity key public area, a fake AK public area, and a certify
 * of the identity key that the fake AK signed. Every link that needs no TPM checks out.
 */
export function withSoftwareAk(evidence: { ek_public: string; ek_certificates: string[]; identity_public: string }, certifyData: Uint8Array): { evidence: Record<string, unknown>; akSec1: Uint8Array; akPrivate: crypto.KeyObject } {
  const ak = softwareKey();
  const akPublic = fakePublicArea(ak.sec1, true);
  const idPublic = new Uint8Array(Buffer.from(evidence.identity_public, "hex"));
  const certify = wire(attestHeader(0x8017, akPublic, certifyData), { b2: tpmName(idPublic) }, { b2: qualifiedName(tpmName(idPublic)) });
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
  return {
    evidence: { ...evidence, ak_public: hex(akPublic), certify_attest: hex(certify), certify_signature: hex(softSign(ak.privateKey, certify)) },
    akSec1: ak.sec1,
    akPrivate: ak.privateKey,
  };
}
