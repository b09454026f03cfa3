// Microblocks (type M, DESIGN.md section 5): the signed, hash-chained record of one event.
import type { KeyObject } from "node:crypto";
import { fromHex, toHex, ZERO_HASH } from "../encoding/hex.ts";
import { expectKeys, expectObject, hexField, intField, literalField, SchemaError, stringField, timeField } from "../encoding/schema.ts";
import { domainDigestOfCanonical } from "../crypto/sha256.ts";
import { verify } from "../crypto/p256.ts";

export interface MicroblockBody {
  v: 1;
  type: "M";
  mesh: string;
  node_id: string;
  seq: number;
  prev: string;
  timestamp: string;
  event_type: string;
  payload_hash: string;
  key: string;
}

export interface Microblock extends MicroblockBody {
  id: string;
  sig: string;
}

export const EVENT_TYPE_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const BODY_FIELDS = ["v", "type", "mesh", "node_id", "seq", "prev", "timestamp", "event_type", "payload_hash", "key"] as const;
const FIELDS = [...BODY_FIELDS, "id", "sig"] as const;

/**
 * JCS of a body, written out directly. Every field is hex, an integer, a strict
 * timestamp or an event type limited to [a-z0-9._-], so no escaping can arise, and
 * the keys are listed in JCS order. This is the ingest and verify hot path; a test
 * checks it against the general canonicalizer.
 */
export function bodyCanonical(b: MicroblockBody): string {
  return (
    `{"event_type":"${b.event_type}","key":"${b.key}","mesh":"${b.mesh}","node_id":"${b.node_id}",` +
    `"payload_hash":"${b.payload_hash}","prev":"${b.prev}","seq":${b.seq},"timestamp":"${b.timestamp}","type":"M","v":1}`
  );
}

export function microblockIdBytes(body: MicroblockBody): Uint8Array {
  return domainDigestOfCanonical("microblock", bodyCanonical(body));
}

export function microblockId(body: MicroblockBody): string {
  return toHex(microblockIdBytes(body));
}

export function bodyOfMicroblock(mb: Microblock): MicroblockBody {
  return {
    v: 1,
    type: "M",
    mesh: mb.mesh,
    node_id: mb.node_id,
    seq: mb.seq,
    prev: mb.prev,
    timestamp: mb.timestamp,
    event_type: mb.event_type,
    payload_hash: mb.payload_hash,
    key: mb.key,
  };
}

/** Exact schema check of untrusted input. Says nothing about signatures or chains. */
export function parseMicroblock(value: unknown): Microblock {
  const what = "microblock";
  const o = expectObject(value, what);
  expectKeys(o, what, FIELDS);
  literalField(o, "v", what, 1);
  literalField(o, "type", what, "M");
  hexField(o, "mesh", what, 32);
  hexField(o, "node_id", what, 32);
  const seq = intField(o, "seq", what, 1);
  const prev = hexField(o, "prev", what, 32);
  if (seq === 1 && prev !== ZERO_HASH) throw new SchemaError(`${what}: seq 1 must have prev of 64 zeros`);
  if (seq > 1 && prev === ZERO_HASH) throw new SchemaError(`${what}: only seq 1 may have a zero prev`);
  timeField(o, "timestamp", what);
  stringField(o, "event_type", what, EVENT_TYPE_RE, "1-64 characters of a-z, 0-9, '.', '_' or '-'");
  hexField(o, "payload_hash", what, 32);
  hexField(o, "key", what, 32);
  hexField(o, "id", what, 32);
  hexField(o, "sig", what, 64);
  return o as unknown as Microblock;
}

export type RejectReason =
  | "schema"
  | "mesh"
  | "id"
  | "unknown_key"
  | "key_certificate"
  | "signature"
  | "not_admitted"
  | "quarantined"
  | "future_timestamp"
  | "payload_hash"
  | "chain"
  | "not_attested";

export class MicroblockRejected extends Error {
  constructor(readonly reason: RejectReason, message: string) {
    super(message);
  }
}

/** What validation needs to know about a signing key: from its verified key certificate. */
export interface SigningKeyInfo {
  mesh: string;
  nodeId: string;
  firstSeq: number;
  notAfterMs: number;
  publicKey: KeyObject;
}

export interface ValidationContext {
  mesh: string;
  nowMs: number;
  maxClockSkewMs: number;
  signingKey(keyName: string): SigningKeyInfo | undefined;
  isAdmitted(nodeId: string): boolean;
  isQuarantined(nodeId: string): boolean;
  /** Why the node may not write here yet (its role must attest and it has no verified enrollment), or null. */
  notAttested?(nodeId: string): string | null;
}

/**
 * Every acceptance rule of DESIGN.md section 5 that does not depend on the chain
 * already stored (that is the ledger's job: extend, gap, duplicate or fork).
 * Throws MicroblockRejected with a reason code and a precise message.
 */
export function validateMicroblock(value: unknown, ctx: ValidationContext, payloadCanonical?: string): Microblock {
  const { mb, idBytes } = identifyMicroblock(value, ctx.mesh);
  checkMicroblock(mb, idBytes, ctx, payloadCanonical);
  return mb;
}

/**
 * The first half of validateMicroblock, which needs no key: exact schema, our mesh, and
 * the id recomputed from the body. What it returns is known to be the microblock its id
 * names, not yet that the node signed it.
 */
export function identifyMicroblock(value: unknown, mesh: string): { mb: Microblock; idBytes: Uint8Array } {
  let mb: Microblock;
  try {
    mb = parseMicroblock(value);
  } catch (e) {
    throw new MicroblockRejected("schema", (e as Error).message);
  }
  if (mb.mesh !== mesh) throw new MicroblockRejected("mesh", `${where(mb)}: belongs to mesh ${mb.mesh.slice(0, 16)}…, not ours`);
  const idBytes = microblockIdBytes(mb);
  if (toHex(idBytes) !== mb.id) throw new MicroblockRejected("id", `${where(mb)}: id does not match its body`);
  return { mb, idBytes };
}

/** The second half: admission, quarantine, key certificate, signature, clock and payload. */
export function checkMicroblock(mb: Microblock, idBytes: Uint8Array, ctx: ValidationContext, payloadCanonical?: string): void {
  const at = where(mb);
  if (!ctx.isAdmitted(mb.node_id)) throw new MicroblockRejected("not_admitted", `${at}: node is not admitted to this mesh`);
  if (ctx.isQuarantined(mb.node_id)) throw new MicroblockRejected("quarantined", `${at}: node is quarantined`);
  const unattested = ctx.notAttested?.(mb.node_id) ?? null;
  if (unattested !== null) throw new MicroblockRejected("not_attested", `${at}: ${unattested}`);
  const key = ctx.signingKey(mb.key);
  if (!key) throw new MicroblockRejected("unknown_key", `${at}: no key certificate for signing key ${mb.key.slice(0, 16)}…`);
  checkKeyUse(mb, key, at);
  if (!verify(key.publicKey, idBytes, fromHex(mb.sig))) throw new MicroblockRejected("signature", `${at}: signature does not verify`);
  const ts = Date.parse(mb.timestamp);
  if (ts > ctx.nowMs + ctx.maxClockSkewMs) {
    throw new MicroblockRejected("future_timestamp", `${at}: timestamp ${mb.timestamp} is more than ${ctx.maxClockSkewMs / 1000}s ahead`);
  }
  if (payloadCanonical !== undefined) checkPayload(mb, payloadCanonical, at);
}

function where(mb: MicroblockBody): string {
  return `microblock ${mb.node_id.slice(0, 12)}…:${mb.seq}`;
}

/** The key certificate's limits: same node, not before first_seq, not after not_after. */
export function checkKeyUse(mb: MicroblockBody, key: SigningKeyInfo, where: string): void {
  if (key.mesh !== mb.mesh) throw new MicroblockRejected("key_certificate", `${where}: signing key is certified for another mesh`);
  if (key.nodeId !== mb.node_id) throw new MicroblockRejected("key_certificate", `${where}: signing key is certified for another node`);
  if (mb.seq < key.firstSeq) {
    throw new MicroblockRejected("key_certificate", `${where}: signing key may only sign from seq ${key.firstSeq}`);
  }
  if (Date.parse(mb.timestamp) > key.notAfterMs) {
    throw new MicroblockRejected("key_certificate", `${where}: timestamp is after the signing key's not_after`);
  }
}

export function checkPayload(mb: MicroblockBody, payloadCanonical: string | Uint8Array, where: string): void {
  if (!payloadMatches(mb.payload_hash, payloadCanonical)) throw new MicroblockRejected("payload_hash", `${where}: payload does not match payload_hash`);
}

/** A payload's canonical bytes against the payload_hash a microblock signed. */
export function payloadMatches(payloadHash: string, payloadCanonical: string | Uint8Array): boolean {
  return new Bun.CryptoHasher("sha256").update(payloadCanonical).digest("hex") === payloadHash;
}
