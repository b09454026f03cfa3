// Bouncers allowed to pull this node's decisions (dsm bouncers, src/intel/lapi.ts), as
// cscli bouncers keeps them for a CrowdSec Local API: a name, a key shown once and stored
// only as its SHA-256, and the cursor of the bouncer's last stream pull, persisted so a
// restarted dsm neither resends a bouncer everything nor loses a deletion it owes it.
import type { Statement } from "bun:sqlite";
import * as crypto from "node:crypto";
import { fromHex } from "../encoding/hex.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";
import type { StreamCursor } from "./decision-store.ts";

export const BOUNCER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** What an authenticated request may update at most this often, unless the address or the agent changed. */
const SEEN_EVERY_MS = 60_000;
const MAX_AGENT = 128;

export class BouncerError extends Error {}

export interface Bouncer {
  name: string;
  created_ms: number;
  /** The stream cursor: null until its first stream pull. */
  cursor: StreamCursor | null;
  /** Last authenticated request (stream or query), its address and User-Agent "type/version". */
  seen_ms: number | null;
  ip: string | null;
  type: string | null;
  version: string | null;
}

type Row = {
  name: string;
  key_hash: Uint8Array;
  created_at: number;
  pull_seq: number | null;
  pull_ms: number | null;
  seen_ms: number | null;
  ip: string | null;
  type: string | null;
  version: string | null;
};

function bouncerOf(r: Row): Bouncer {
  return {
    name: r.name,
    created_ms: r.created_at,
    cursor: r.pull_seq === null || r.pull_ms === null ? null : { seq: r.pull_seq, ms: r.pull_ms },
    seen_ms: r.seen_ms,
    ip: r.ip,
    type: r.type,
    version: r.version,
  };
}

const hashOf = (key: string): Buffer => crypto.createHash("sha256").update(key, "utf8").digest();

/** "crowdsec-custom-bouncer/v0.0.15" as CrowdSec splits it: type and version, or the whole text and "N/A". */
export function agentOf(userAgent: string | null): { type: string; version: string } {
  const ua = (userAgent ?? "").slice(0, MAX_AGENT).replace(/[^\x20-\x7e]/g, "?");
  const parts = ua.split("/");
  return parts.length === 2 ? { type: parts[0]!, version: parts[1]! } : { type: ua, version: "N/A" };
}

export class BouncerStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<keyof typeof STATEMENTS.bouncers, Statement>;

  constructor(
    private readonly ledger: Ledger,
    mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.bouncers);
  }

  /**
   * A new bouncer and its key: 32 random bytes, base64url (43 characters, nothing a YAML
   * file or a shell would mangle). The key is returned this once; only its hash is stored.
   */
  add(name: string, nowMs = Date.now()): { name: string; key: string } {
    if (!BOUNCER_NAME.test(name)) throw new BouncerError(`bouncer name ${JSON.stringify(name)} must be 1 to 64 of A-Z a-z 0-9 . _ -`);
    const key = crypto.randomBytes(32).toString("base64url");
    const added = this.ledger.immediate(() => this.#st.add.run(this.#mesh, name, hashOf(key), nowMs).changes > 0);
    if (!added) throw new BouncerError(`a bouncer named ${name} exists already (dsm bouncers delete ${name} first to give it a new key)`);
    return { name, key };
  }

  /** False when there was no such bouncer. */
  delete(name: string): boolean {
    return this.ledger.immediate(() => this.#st.drop.run(this.#mesh, name).changes > 0);
  }

  get(name: string): Bouncer | null {
    const r = this.#st.get.get(this.#mesh, name) as Row | null;
    return r ? bouncerOf(r) : null;
  }

  list(): Bouncer[] {
    return (this.#st.all.all(this.#mesh) as Row[]).map(bouncerOf);
  }

  /**
   * The bouncer a key belongs to, or null. The key's hash is compared with every stored
   * hash in constant time, all of them whatever matched, so neither the key nor which
   * bouncer it is leaks through timing. Read per request, so dsm bouncers add and delete
   * from another process count at once.
   */
  authenticate(key: string | null): Bouncer | null {
    if (key === null || key.length === 0 || key.length > 256) return null;
    const h = hashOf(key);
    let found: Row | null = null;
    for (const r of this.#st.all.all(this.#mesh) as Row[]) {
      const stored = Buffer.from(r.key_hash);
      if (stored.length === h.length && crypto.timingSafeEqual(stored, h) && found === null) found = r;
    }
    return found ? bouncerOf(found) : null;
  }

  /** Stores the cursor of a stream answer just made for this bouncer. */
  pulled(name: string, cursor: StreamCursor): void {
    this.ledger.immediate(() => this.#st.pulled.run(cursor.seq, cursor.ms, this.#mesh, name));
  }

  /**
   * Records an authenticated request: its address and User-Agent when they changed, else
   * at most once a minute (a bouncer in live mode asks once per client request).
   */
  seen(b: Bouncer, ip: string | null, userAgent: string | null, nowMs = Date.now()): void {
    const { type, version } = agentOf(userAgent);
    if (b.ip === ip && b.type === type && b.version === version && b.seen_ms !== null && nowMs - b.seen_ms < SEEN_EVERY_MS) return;
    this.ledger.immediate(() => this.#st.seen.run(nowMs, ip, type, version, this.#mesh, b.name));
  }
}
