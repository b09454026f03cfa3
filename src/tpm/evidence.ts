// The chain of trust of a TPM node (DESIGN.md section 7), checked link by link from what its
// card shows against what the verifier already holds (the genesis' EK roots or allowlist,
// its own clock), never from the card's word:
//   EK certificate (vendor) → EK public key → AK (credential activation, src/protocol/enrollment.ts)
//   → identity key (TPM2_Certify by the AK) → the card's signature and the K certificates.
// This module checks the links that need no TPM and no round trip: the EK chain, the AK's
// and the identity key's attributes, and the certify. Pure; never throws.
import * as crypto from "node:crypto";
import { fromHex, toHex } from "../encoding/hex.ts";
import { parseCertificate, pemCertificates, verifyChain } from "../crypto/x509.ts";
import type { NodeCard, TpmEvidence } from "../protocol/card.ts";
import { certifyQualifyingData } from "../protocol/enrollment.ts";
import type { AttestationPolicy } from "../protocol/genesis.ts";
import { ekDigest, parseTpmPublic, samePublicKey, type TpmPublic } from "./public-area.ts";
import { akSignatureProblem, type EccPublicArea, parseAttest, parsePublicArea, qualifiedName, TPM_GENERATED_VALUE, TPMA_OBJECT } from "./quote.ts";

const TPM_ST_ATTEST_CERTIFY = 0x8017;

export type EvidenceCheck = "software" | "no_evidence" | "evidence" | "ek" | "ek_untrusted" | "ek_chain" | "ek_key_mismatch" | "ak" | "identity" | "certify";

/** How the EK is trusted: by its certificate chain to a genesis root, or by the allowlist. */
export type EkTrust = { method: "certificate"; issuer: string; digest: string } | { method: "allowlist"; digest: string };

export type EvidenceResult =
  | { ok: true; ek: EkTrust; ekPublic: Uint8Array; akPublic: Uint8Array; akName: string }
  | { ok: false; check: EvidenceCheck; reason: string };

/** Checks every link of a card's TPM evidence that needs no TPM (section 7, links 1 and 3). */
export function verifyEvidence(card: NodeCard, policy: AttestationPolicy, nowMs: number): EvidenceResult {
  try {
    return verifyEvidenceUnsafe(card, policy, nowMs);
  } catch (e) {
    return { ok: false, check: "evidence", reason: `TPM evidence is malformed: ${(e as Error).message}` };
  }
}

function fail(check: EvidenceCheck, reason: string): EvidenceResult {
  return { ok: false, check, reason };
}

function verifyEvidenceUnsafe(card: NodeCard, policy: AttestationPolicy, nowMs: number): EvidenceResult {
  const short = card.node_id.slice(0, 16);
  if (!card.tpm) return fail("software", `node ${short}… has a software identity key`);
  const ev: TpmEvidence | undefined = card.tpm_evidence;
  if (!ev) return fail("no_evidence", `node ${short}… says tpm: true but shows no EK, AK or certify evidence: it is treated as a software node`);

  // 1. the EK, trusted by certificate or by allowlist
  let ek: TpmPublic;
  try {
    ek = parseTpmPublic(fromHex(ev.ek_public));
  } catch (e) {
    return fail("ek", `EK public area does not parse: ${(e as Error).message}`);
  }
  const digest = ekDigest(ek);
  let trust: EkTrust | null = null;
  const certs = ev.ek_certificates.map((c) => fromHex(c));
  if (certs.length > 0 && policy.ek_roots?.length) {
    const anchors: Uint8Array[] = [];
    for (const pem of policy.ek_roots) anchors.push(...pemCertificates(pem));
    const chain = verifyChain(certs[0]!, certs.slice(1), anchors, { nowMs, leafKeyUsage: ek.type === "rsa" ? ["keyEncipherment"] : ["keyAgreement"] });
    if (!chain.ok) {
      if (!policy.ek_allowlist?.includes(digest)) return fail(chain.check === "untrusted" ? "ek_untrusted" : "ek_chain", `EK certificate: ${chain.reason}`);
    } else {
      const leaf = parseCertificate(certs[0]!);
      if (!samePublicKey(ek, leaf.publicKey)) return fail("ek_key_mismatch", "the EK certificate certifies another key than the EK the card shows");
      const notEk = notAnEkCertificate(leaf);
      if (notEk) return fail("ek_chain", `EK certificate: ${notEk}`);
      trust = { method: "certificate", issuer: chain.issuerCn, digest };
    }
  }
  if (trust === null) {
    if (policy.ek_allowlist?.includes(digest)) trust = { method: "allowlist", digest };
    else if (certs.length === 0) return fail("ek_untrusted", `the EK (digest ${digest.slice(0, 16)}…) has no certificate and is not in the genesis' ek_allowlist`);
    else return fail("ek_untrusted", "the genesis names no ek_roots to check the EK certificate against, and the EK is not in its ek_allowlist");
  }
  if (!isEndorsementKey(ek)) return fail("ek", "the EK is not a restricted decryption key (fixedTPM, fixedParent): not an endorsement key");

  // 2. the AK: a restricted signing key that never leaves the TPM; the card names it
  let ak: EccPublicArea;
  try {
    ak = parsePublicArea(fromHex(ev.ak_public));
  } catch (e) {
    return fail("ak", `AK public area does not parse: ${(e as Error).message}`);
  }
  if (!ak.restricted || !ak.sign || ak.decrypt || !ak.fixedTPM || !ak.fixedParent || !ak.sensitiveDataOrigin) return fail("ak", "the AK is not a restricted signing key made in and fixed to its TPM");
  if (!card.ak_pub || !timingEqualHex(card.ak_pub, toHex(ak.sec1Compressed))) return fail("ak", "the card's ak_pub is not the AK its evidence shows");

  // 3. the identity key, certified by the AK
  let id: EccPublicArea;
  try {
    id = parsePublicArea(fromHex(ev.identity_public));
  } catch (e) {
    return fail("identity", `identity key public area does not parse: ${(e as Error).message}`);
  }
  if (!timingEqualHex(card.identity_pub, toHex(id.sec1Compressed))) return fail("identity", "the identity key's TPM public area is not the card's identity_pub");
  if (!id.fixedTPM || !id.fixedParent || !id.sensitiveDataOrigin || !id.sign || id.restricted) {
    return fail("identity", `the identity key's attributes do not keep it in the TPM (fixedTPM=${id.fixedTPM}, fixedParent=${id.fixedParent}, sensitiveDataOrigin=${id.sensitiveDataOrigin})`);
  }
  const certifyProblem = checkCertify(ak, id, fromHex(ev.certify_attest), fromHex(ev.certify_signature), certifyQualifyingData(card.node_id, card.identity_pub));
  if (certifyProblem) return fail("certify", certifyProblem);

  return { ok: true, ek: trust, ekPublic: ek.wire, akPublic: fromHex(ev.ak_public), akName: toHex(ak.name) };
}

/** tcg-kp-EKCertificate, and the DER of tcg-at-tpmManufacturer (2.23.133.2.1) as an OID. */
const TCG_KP_EK_CERTIFICATE = "2.23.133.8.1";
const TCG_AT_TPM_MANUFACTURER = Uint8Array.from([0x06, 0x05, 0x67, 0x81, 0x05, 0x02, 0x01]);

/**
 * Why a certificate under an EK root is not an EK certificate (TCG EK Credential Profile
 * 3.2), or null: a CA that also issues TLS or user certificates must not make their keys
 * count as endorsement keys. Key usage must be stated; an extended key usage, when present,
 * must include tcg-kp-EKCertificate; and the certificate must say it is a TPM's, by that
 * usage or by the TPM manufacturer attribute in its subjectAltName.
 */
function notAnEkCertificate(leaf: ReturnType<typeof parseCertificate>): string | null {
  if (leaf.keyUsage === null) return "states no key usage: not an EK certificate";
  const eku = leaf.extKeyUsage;
  if (eku !== null && !eku.includes(TCG_KP_EK_CERTIFICATE)) return `its extended key usage (${eku.join(", ")}) does not include tcg-kp-EKCertificate (${TCG_KP_EK_CERTIFICATE}): not an EK certificate`;
  const marked = eku?.includes(TCG_KP_EK_CERTIFICATE) || (leaf.subjectAltName !== null && Buffer.from(leaf.subjectAltName).indexOf(TCG_AT_TPM_MANUFACTURER) >= 0);
  return marked ? null : "neither its extended key usage nor its subjectAltName names a TPM (tcg-kp-EKCertificate, tcg-at-tpmManufacturer): not an EK certificate";
}

/** The TCG EK templates: restricted, decrypt, not sign, fixed to the TPM. */
function isEndorsementKey(ek: TpmPublic): boolean {
  const A = TPMA_OBJECT;
  const has = (b: number) => (ek.attributes & b) !== 0;
  return has(A.fixedTPM) && has(A.fixedParent) && has(A.restricted) && has(A.decrypt) && !has(A.sign);
}

/** TPM2_Certify: made by the TPM (magic), signed by the AK, over the identity key's name and our qualifyingData. */
function checkCertify(ak: EccPublicArea, id: EccPublicArea, attest: Uint8Array, signature: Uint8Array, qualifying: Uint8Array): string | null {
  const a = parseAttest(attest);
  if (a.magic !== TPM_GENERATED_VALUE) return "the certify info was not made by a TPM (magic is not TPM_GENERATED_VALUE)";
  if (a.type !== TPM_ST_ATTEST_CERTIFY || !a.attested) return `the certify info has attestation type 0x${a.type.toString(16)}, not TPM_ST_ATTEST_CERTIFY 0x8017`;
  if (!bytesEqual(a.qualifiedSigner, qualifiedName(ak.name))) return "the certify info was signed by another key than the AK";
  if (!bytesEqual(a.extraData, qualifying)) return "the certify info's qualifyingData does not name this node's identity key";
  // TPMS_CERTIFY_INFO: TPM2B_NAME name || TPM2B_NAME qualifiedName
  const body = a.attested;
  if (body.length < 2) return "the certify info is truncated";
  const n = (body[0]! << 8) | body[1]!;
  const name = body.subarray(2, 2 + n);
  if (name.length !== n) return "the certify info is truncated";
  if (!bytesEqual(name, id.name)) return "the certified object is not the identity key (its name differs)";
  return akSignatureProblem(ak, attest, signature);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

function timingEqualHex(a: string, b: string): boolean {
  return a.length === b.length && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

/** How the EK is trusted, in the words every report uses. */
export function ekTrustText(ek: EkTrust): string {
  return ek.method === "certificate" ? `EK certificate from ${ek.issuer}` : `EK ${ek.digest.slice(0, 16)}… on the allowlist`;
}

/**
 * A card's chain of trust as a verifier holding `policy` sees it, before any enrollment:
 * software, TPM evidence that checks out, or a TPM claim that does not.
 */
export function cardTrust(card: NodeCard, policy: AttestationPolicy, nowMs: number): { level: "software" | "tpm-evidence" | "tpm-claimed"; detail: string } {
  if (!card.tpm) return { level: "software", detail: "software key" };
  const ev = verifyEvidence(card, policy, nowMs);
  if (ev.ok) return { level: "tpm-evidence", detail: `${ekTrustText(ev.ek)} → AK → identity key (certified by the AK)` };
  return { level: "tpm-claimed", detail: `its evidence does not verify against this genesis (${ev.check}): ${ev.reason}` };
}

/** One line for an operator: which links of the chain this node has. */
export function trustLine(r: EvidenceResult | null, enrolled: boolean): string {
  if (r === null || !r.ok) return r && r.check !== "software" ? `software key (TPM claimed, not verified: ${r.reason})` : "software key";
  const ek = ekTrustText(r.ek);
  return enrolled ? `TPM-rooted, ${ek}` : `its card's TPM evidence is consistent (${ek}), but its AK is not enrolled here: it counts as a software node`;
}

/** What a TPM key can show of itself: the parts of TpmIdentityKey evidence needs. */
export interface EvidenceSource {
  readonly publicKey: Uint8Array;
  endorsement(): { publicArea: Uint8Array; certificate: Uint8Array | null };
  attestationPublic(): Uint8Array;
  identityPublicArea(): Uint8Array;
  certifyIdentity(qualifyingData: Uint8Array): { attest: Uint8Array; signature: Uint8Array };
}

/**
 * The evidence a TPM node's card carries, read from its TPM at init: the EK and its
 * certificate (from NV) with the intermediates the operator supplies, the AK, and the AK's
 * certify of the identity key for this node id.
 */
export function collectEvidence(key: EvidenceSource, nodeId: string, intermediates: readonly Uint8Array[] = []): TpmEvidence {
  const ek = key.endorsement();
  const certify = key.certifyIdentity(certifyQualifyingData(nodeId, toHex(key.publicKey)));
  return {
    ek_public: toHex(ek.publicArea),
    ek_certificates: ek.certificate ? [toHex(ek.certificate), ...intermediates.map(toHex)] : [],
    ak_public: toHex(key.attestationPublic()),
    identity_public: toHex(key.identityPublicArea()),
    certify_attest: toHex(certify.attest),
    certify_signature: toHex(certify.signature),
  };
}
