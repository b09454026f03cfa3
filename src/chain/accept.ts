// Receiving microblocks from other nodes (DESIGN.md section 5): every acceptance rule,
// then placement against the chain already stored: extend, duplicate, gap or fork.
// The import command and the mesh's gossip both come through here.
import { ZERO_HASH } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { type KeyCert, keyNameOf, parseKeyCert, signingKeyInfo } from "../protocol/keycert.ts";
import { type ChainHead, type Ledger, withoutLocalFields } from "../ledger/ledger.ts";
import { QuarantineStore } from "../ledger/quarantine-store.ts";
import type { MeshPolicy } from "../protocol/genesis.ts";
import {
  checkMicroblock,
  identifyMicroblock,
  type Microblock,
  MicroblockRejected,
  type SigningKeyInfo,
  type ValidationContext,
} from "../protocol/microblock.ts";

export type AcceptOutcome =
  | { status: "stored"; microblock: Microblock }
  | { status: "duplicate"; microblock: Microblock }
  /** seq is beyond the chain head: the caller fetches have+1 .. seq-1 first. */
  | { status: "gap"; microblock: Microblock; have: number }
  /** Two valid microblocks for one (node, seq): both kept as evidence; the node is now quarantined. */
  | { status: "fork"; microblock: Microblock; existing: string };

export class KeyCertRejected extends Error {
  constructor(
    /** key_certificate: malformed or not verifying; mesh; not_admitted; conflict: another certificate holds the key. */
    readonly reason: "key_certificate" | "mesh" | "not_admitted" | "conflict",
    message: string,
  ) {
    super(message);
  }
}

export class Receiver {
  #keys = new Map<string, SigningKeyInfo>();
  /** Certificates verified before, by canonical text: a batch repeats its certificates. */
  #certs = new Map<string, KeyCert>();
  /** Within batch(): chain heads and fork flags as this transaction has them. */
  #quarantine: QuarantineStore | null = null;
  #batch: { heads: Map<string, ChainHead | null>; forked: Map<string, boolean> } | null = null;

  constructor(
    private readonly ledger: Ledger,
    private readonly policy: MeshPolicy,
    private readonly opts: { maxClockSkewMs: number; now?: () => number; notAttested?: (nodeId: string) => string | null },
  ) {}

  /** A key certificate from another node: parsed, checked against our mesh and admission, stored. */
  /**
   * Runs fn in one write transaction, in which the receiver keeps the chain heads and fork
   * flags it reads and writes: no other writer can change them until it commits.
   */
  batch<T>(fn: () => T): T {
    if (this.#batch) return fn();
    return this.ledger.immediate(() => {
      this.#batch = { heads: new Map(), forked: new Map() };
      try {
        return fn();
      } finally {
        this.#batch = null;
      }
    });
  }

  acceptKeyCert(value: unknown): KeyCert {
    let cert: KeyCert;
    let canonical: string;
    try {
      canonical = canonicalize(value);
      cert = this.#certs.get(canonical) ?? parseKeyCert(value);
    } catch (e) {
      throw new KeyCertRejected("key_certificate", (e as Error).message);
    }
    if (cert.mesh !== this.policy.mesh) throw new KeyCertRejected("mesh", "key certificate: belongs to another mesh");
    if (!this.policy.isAdmitted(cert.node_id)) {
      throw new KeyCertRejected("not_admitted", `key certificate: node ${cert.node_id.slice(0, 12)}… is not admitted`);
    }
    const name = keyNameOf(cert.signing_pub);
    // One signing key, one certificate: a second, different certificate for the same key
    // (another node claiming a key it saw on the wire) is refused, never silently dropped.
    const stored = this.ledger.keyCert(name);
    if (stored !== null && stored !== canonical) {
      throw new KeyCertRejected("conflict", `key certificate: signing key ${name.slice(0, 16)}… is already certified differently`);
    }
    if (stored === null) this.ledger.immediate(() => this.ledger.insertKeyCert(cert.mesh, cert.node_id, name, cert.first_seq, canonical, this.#now()));
    if (!this.#keys.has(name)) this.#keys.set(name, signingKeyInfo(cert));
    if (this.#certs.size < 4096) this.#certs.set(canonical, cert);
    return cert;
  }

  /**
   * Validates and places one microblock (with its payload, unless withheld). Throws
   * MicroblockRejected for anything that fails a rule; never stores a partial result.
   */
  acceptMicroblock(value: unknown, payload?: unknown): AcceptOutcome {
    // Always the canonical form (DESIGN.md section 5: payload_hash = sha256(JCS(payload))):
    // bytes as sent that merely hash right could be a node's non-canonical text, such as
    // duplicate keys that parsers read differently.
    const payloadCanonical = payload === undefined ? undefined : canonicalOrReject(payload);
    const { mb, idBytes } = identifyMicroblock(value, this.policy.mesh);
    // Every check comes before the first write, so inside a caller's transaction (a gossip
    // batch) a rejection leaves nothing behind without a savepoint per microblock.
    const place = (): AcceptOutcome => {
      const head = this.#head(mb.node_id);
      const have = head?.seq ?? 0;
      // A chain is stored without holes, 1..head: only a seq up to the head can be held.
      const existing = mb.seq <= have ? this.ledger.bySeq(mb.mesh, mb.node_id, mb.seq) : null;
      // Already stored: a duplicate, whatever happened to its node since (a quarantine must
      // not turn a re-import of what we hold into rejections).
      if (existing?.id === mb.id) return { status: "duplicate", microblock: mb };
      checkMicroblock(mb, idBytes, this.#context(), payloadCanonical);
      if (existing) {
        const first = canonicalize(withoutLocalFields(existing));
        this.ledger.insertForkEvidence(mb, first, canonicalize(mb), this.#now());
        this.#batch?.forked.set(mb.node_id, true);
        return { status: "fork", microblock: mb, existing: existing.id };
      }
      if (mb.seq > have + 1) return { status: "gap", microblock: mb, have };
      const where = `microblock ${mb.node_id.slice(0, 12)}…:${mb.seq}`;
      if (mb.prev !== (head?.id ?? ZERO_HASH)) throw new MicroblockRejected("chain", `${where}: prev does not link to the stored seq ${have}`);
      if (head && Date.parse(mb.timestamp) < Date.parse(head.timestamp)) {
        throw new MicroblockRejected("chain", `${where}: timestamp is earlier than the previous microblock's`);
      }
      if (payloadCanonical !== undefined) this.ledger.insertPayload(mb.payload_hash, payloadCanonical);
      this.ledger.insertMicroblock(mb, this.#now());
      this.#batch?.heads.set(mb.node_id, { seq: mb.seq, id: mb.id, timestamp: mb.timestamp });
      return { status: "stored", microblock: mb };
    };
    return this.ledger.inTransaction ? place() : this.ledger.immediate(place);
  }

  #head(nodeId: string): ChainHead | null {
    return inBatch(this.#batch?.heads, nodeId, () => this.ledger.head(this.policy.mesh, nodeId));
  }

  #quarantined(nodeId: string): boolean {
    // Fork evidence or a finalized decision, unless a lift decided since readmitted the node.
    return inBatch(this.#batch?.forked, nodeId, () => (this.#quarantine ??= new QuarantineStore(this.ledger, this.policy.mesh)).quarantinedFrom(nodeId) !== undefined);
  }

  #now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  #context(): ValidationContext {
    return {
      mesh: this.policy.mesh,
      nowMs: this.#now(),
      maxClockSkewMs: this.opts.maxClockSkewMs,
      signingKey: (name) => this.#signingKey(name),
      isAdmitted: (nodeId) => this.policy.isAdmitted(nodeId),
      isQuarantined: (nodeId) => this.#quarantined(nodeId),
      notAttested: this.opts.notAttested,
    };
  }

  #signingKey(name: string): SigningKeyInfo | undefined {
    const cached = this.#keys.get(name);
    if (cached) return cached;
    const text = this.ledger.keyCert(name);
    if (text === null) return undefined;
    try {
      const cert = parseKeyCert(JSON.parse(text));
      if (cert.mesh !== this.policy.mesh) return undefined;
      const info = signingKeyInfo(cert);
      this.#keys.set(name, info);
      return info;
    } catch {
      return undefined; // a stored certificate that no longer verifies certifies nothing
    }
  }
}

/** A value read once per batch: from the batch's map when it has it, else read (and kept when in a batch). */
function inBatch<T>(map: Map<string, T> | undefined, key: string, read: () => T): T {
  if (map?.has(key)) return map.get(key)!;
  const value = read();
  map?.set(key, value);
  return value;
}

function canonicalOrReject(payload: unknown): string {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new MicroblockRejected("payload_hash", "payload must be a JSON object");
  }
  try {
    return canonicalize(payload);
  } catch (e) {
    throw new MicroblockRejected("payload_hash", `payload cannot be canonicalised: ${(e as Error).message}`);
  }
}
