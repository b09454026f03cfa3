// Key certificates (type K, DESIGN.md section 4): the identity key delegates microblock
// signing to a per-process in-memory key. The certificate carries the identity public
// key itself, so it verifies on its own: node_id must be the hash of that key.
import { fromHex } from "../encoding/hex.ts";
import { expectKeys, expectObject, hexField, intField, literalField, SchemaError, timeField } from "../encoding/schema.ts";
import { formatTime } from "../encoding/time.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import { type Signed, signBody, verifyBody } from "../crypto/signed.ts";
import type { KeyObject } from "node:crypto";
import { importPublicKey, publicKeyOf, sign, verify } from "../crypto/p256.ts";
import { domainDigest } from "../crypto/sha256.ts";
import type { SigningKeyInfo } from "./microblock.ts";
import { type IdentityKey, nodeIdOf } from "./node-id.ts";

export interface KeyCertBody {
  v: 1;
  type: "K";
  mesh: string;
  node_id: string;
  identity_pub: string;
  signing_pub: string;
  first_seq: number;
  not_after: string;
  /** The signing key's own signature over (mesh, node_id, signing_pub): proof that the certified node holds it. */
  signing_pop: string;
}
export type KeyCert = Signed<KeyCertBody>;

const FIELDS = ["v", "type", "mesh", "node_id", "identity_pub", "signing_pub", "first_seq", "not_after", "signing_pop", "sig"] as const;

/**
 * What the signing key signs to prove possession. Without it, any admitted node could
 * certify another node's signing key (it is public, it names every microblock) and so
 * claim, or block, that node's microblocks at a receiver that saw the false certificate first.
 */
function popBody(mesh: string, nodeId: string, signingPub: string) {
  return { v: 1, type: "K-pop", mesh, node_id: nodeId, signing_pub: signingPub };
}

/** The name microblocks use for a signing key: hex(sha256(SEC1 compressed public key)). */
export function keyNameOf(signingPub: Uint8Array | string): string {
  return sha256Hex(typeof signingPub === "string" ? fromHex(signingPub, 33) : signingPub);
}

export async function issueKeyCert(
  identity: IdentityKey,
  fields: { mesh: string; signingKey: KeyObject; firstSeq: number; notAfterMs: number; signingPub?: Uint8Array },
): Promise<KeyCert> {
  const nodeId = nodeIdOf(identity.publicKey);
  // signingPub is derived from signingKey; passing another one (tests do) yields a certificate whose signing_pop fails.
  const signingPub = Buffer.from(fields.signingPub ?? publicKeyOf(fields.signingKey)).toString("hex");
  const pop = sign(fields.signingKey, domainDigest("keycert-pop", popBody(fields.mesh, nodeId, signingPub)));
  const body: KeyCertBody = {
    v: 1,
    type: "K",
    mesh: fields.mesh,
    node_id: nodeId,
    identity_pub: Buffer.from(identity.publicKey).toString("hex"),
    signing_pub: signingPub,
    first_seq: fields.firstSeq,
    not_after: formatTime(fields.notAfterMs),
    signing_pop: Buffer.from(pop).toString("hex"),
  };
  return signBody("keycert", body, identity);
}

/** Parses untrusted input into a KeyCert: exact schema, node_id bound to identity_pub, signature valid. */
export function parseKeyCert(value: unknown): KeyCert {
  const what = "key certificate";
  const o = expectObject(value, what);
  expectKeys(o, what, FIELDS);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "K");
  hexField(o, "mesh", what, 32);
  const nodeId = hexField(o, "node_id", what, 32);
  const identityPub = hexField(o, "identity_pub", what, 33);
  hexField(o, "signing_pub", what, 33);
  intField(o, "first_seq", what, 1);
  timeField(o, "not_after", what);
  hexField(o, "signing_pop", what, 64);
  hexField(o, "sig", what, 64);
  const cert = o as unknown as KeyCert;
  if (nodeIdOf(fromHex(identityPub)) !== nodeId) throw new SchemaError(`${what}: node_id is not the hash of identity_pub`);
  if (!verifyBody("keycert", cert, fromHex(identityPub))) throw new SchemaError(`${what}: signature does not verify under identity_pub`);
  let popOk = false;
  try {
    const digest = domainDigest("keycert-pop", popBody(cert.mesh, cert.node_id, cert.signing_pub));
    popOk = verify(importPublicKey(fromHex(cert.signing_pub, 33)), digest, fromHex(cert.signing_pop, 64));
  } catch {
    popOk = false; // signing_pub is not a P-256 point
  }
  if (!popOk) throw new SchemaError(`${what}: signing_pop does not verify: the node does not hold this signing key`);
  return cert;
}

/** A verified certificate as microblock validation uses it, with the public key parsed once. */
export function signingKeyInfo(cert: KeyCert): SigningKeyInfo {
  return {
    mesh: cert.mesh,
    nodeId: cert.node_id,
    firstSeq: cert.first_seq,
    notAfterMs: Date.parse(cert.not_after),
    publicKey: importPublicKey(fromHex(cert.signing_pub, 33)),
  };
}
