// Enrollment by credential activation (DESIGN.md section 7, docs/PROTOCOL.md "Enrollment"):
// a validator proves a node's attestation key (AK) lives in the TPM its endorsement key
// (EK) certificate names. It sends TPM2_MakeCredential output made against the node's EK
// with the AK's name and a fresh secret; only that TPM, holding that AK, recovers the
// secret (TPM2_ActivateCredential), and the node proves it with an HMAC under the secret
// over what it was asked. The secret never travels in clear and never appears in the answer.
import * as crypto from "node:crypto";
import { fromHex, toHex } from "../encoding/hex.ts";
import { boundedHex, expectKeys, expectObject, hexField, literalField, stringField, timeField } from "../encoding/schema.ts";
import { domainDigest } from "../crypto/sha256.ts";

export interface EnrollChallenge {
  v: 1;
  type: "enroll-challenge";
  mesh: string;
  /** The node being enrolled. */
  node_id: string;
  /** The AK name (nameAlg || H(TPMT_PUBLIC)) the credential is bound to, hex. */
  ak_name: string;
  /** TPM2B_ID_OBJECT contents, hex. */
  credential_blob: string;
  /** TPM2B_ENCRYPTED_SECRET contents, hex. */
  secret: string;
  /** The verifier who asks (its node id): the answer names it, so it cannot be replayed to another. */
  verifier: string;
  created: string;
}

export interface EnrollAnswer {
  v: 1;
  type: "enroll-answer";
  mesh: string;
  node_id: string;
  /** hex(domain digest of the challenge): which challenge this answers. */
  challenge: string;
  /** hex(HMAC-SHA256(credential, domain digest of {mesh, node_id, challenge})). */
  proof: string;
}

const MAX_BLOB = 1024;

export function parseEnrollChallenge(value: unknown, what = "enroll challenge"): EnrollChallenge {
  const o = expectObject(value, what);
  expectKeys(o, what, ["v", "type", "mesh", "node_id", "ak_name", "credential_blob", "secret", "verifier", "created"]);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "enroll-challenge");
  hexField(o, "mesh", what, 32);
  hexField(o, "node_id", what, 32);
  stringField(o, "ak_name", what, /^000b[0-9a-f]{64}$/, "a sha256 TPM name (000b then 64 hex digits)");
  boundedHex(o.credential_blob, `${what}: "credential_blob"`, MAX_BLOB);
  boundedHex(o.secret, `${what}: "secret"`, MAX_BLOB);
  hexField(o, "verifier", what, 32);
  timeField(o, "created", what);
  return o as unknown as EnrollChallenge;
}

export function parseEnrollAnswer(value: unknown, what = "enroll answer"): EnrollAnswer {
  const o = expectObject(value, what);
  expectKeys(o, what, ["v", "type", "mesh", "node_id", "challenge", "proof"]);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "enroll-answer");
  hexField(o, "mesh", what, 32);
  hexField(o, "node_id", what, 32);
  hexField(o, "challenge", what, 32);
  hexField(o, "proof", what, 32);
  return o as unknown as EnrollAnswer;
}

export function challengeDigest(c: EnrollChallenge): string {
  return toHex(domainDigest("enroll-challenge", c));
}

/** The node's proof that it recovered `credential` for challenge `c`. */
export function enrollProof(credential: Uint8Array, c: Pick<EnrollChallenge, "mesh" | "node_id"> & { challenge: string }): string {
  const m = domainDigest("enroll-proof", { mesh: c.mesh, node_id: c.node_id, challenge: c.challenge });
  return toHex(crypto.createHmac("sha256", credential).update(m).digest());
}

export function answerEnrollChallenge(c: EnrollChallenge, credential: Uint8Array): EnrollAnswer {
  const challenge = challengeDigest(c);
  return { v: 1, type: "enroll-answer", mesh: c.mesh, node_id: c.node_id, challenge, proof: enrollProof(credential, { mesh: c.mesh, node_id: c.node_id, challenge }) };
}

/**
 * Why `a` does not answer challenge `c` whose secret the verifier holds, or null when it
 * does. Compares in constant time: the proof is a MAC under a secret.
 */
export function enrollAnswerProblem(c: EnrollChallenge, credential: Uint8Array, a: EnrollAnswer): string | null {
  if (a.mesh !== c.mesh) return "the answer is for another mesh";
  if (a.node_id !== c.node_id) return `the answer is from node ${a.node_id.slice(0, 16)}…, not the node challenged (${c.node_id.slice(0, 16)}…)`;
  const digest = challengeDigest(c);
  if (a.challenge !== digest) return "the answer is for another challenge (stale or replayed)";
  const want = fromHex(enrollProof(credential, { mesh: c.mesh, node_id: c.node_id, challenge: digest }), 32);
  if (!crypto.timingSafeEqual(want, fromHex(a.proof, 32))) return "the proof is wrong: whoever answered could not activate the credential, so the AK is not in the TPM of that EK";
  return null;
}

/** TPM2_Quote qualifyingData: binds the nonce to the mesh, the challenged node and its enrolled AK. */
export function quoteQualifyingData(mesh: string, nodeId: string, akName: string, nonce: string): Uint8Array {
  return domainDigest("tpm-quote", { mesh, node_id: nodeId, ak_name: akName, nonce });
}

/** TPM2_Certify qualifyingData for the identity key: names the node it is the identity of. */
export function certifyQualifyingData(nodeId: string, identityPub: string): Uint8Array {
  return domainDigest("tpm-certify", { node_id: nodeId, identity_pub: identityPub });
}
