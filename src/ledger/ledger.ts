// The node's SQLite ledger (DESIGN.md section 9): storage only. It knows rows and
// transactions; what goes into a microblock and whether it is valid is decided above.
import { Database, type Statement } from "bun:sqlite";
import * as fs from "node:fs";
import * as path from "node:path";
import { fromHex, toHex } from "../encoding/hex.ts";
import type { Microblock } from "../protocol/microblock.ts";
import { MIGRATIONS } from "./schema.ts";

export interface ChainHead {
  seq: number;
  id: string;
  timestamp: string;
}

export interface StoredMicroblock extends Microblock {
  rowid: number;
  received_at: number;
}

export interface LogFilter {
  nodeId?: string;
  fromSeq?: number;
  toSeq?: number;
  /** One event type or several (any of them); see list() for prefixes. */
  eventType?: string | readonly string[];
  sinceMs?: number;
  untilMs?: number;
  limit?: number;
  afterRowid?: number;
  descending?: boolean;
}

export interface LedgerCounts {
  microblocks: number;
  payloads: number;
  keyCerts: number;
  chains: number;
  forkEvidence: number;
}

type Row = {
  rowid: number;
  mesh: Uint8Array;
  node_id: Uint8Array;
  seq: number;
  id: Uint8Array;
  prev: Uint8Array;
  timestamp: string;
  event_type: string;
  payload_hash: Uint8Array;
  key: Uint8Array;
  sig: Uint8Array;
  received_at: number;
};

const SELECT_MB = `SELECT m.rowid, c.mesh, c.node_id, m.seq, m.id, m.prev, m.timestamp, m.event_type, m.payload_hash, m.key, m.sig, m.received_at
  FROM microblocks m JOIN chains c ON c.chain = m.chain`;

export class LedgerError extends Error {}

/** The stored/sent form of a microblock, without this ledger's local bookkeeping. */
export function withoutLocalFields(mb: StoredMicroblock | Microblock): Microblock {
  const { rowid: _r, received_at: _a, ...rest } = mb as StoredMicroblock;
  return rest;
}

/**
 * The ledger's connection, for the typed stores in src/ledger/ (checkpoint-store.ts,
 * tree-store.ts, signed-store.ts, quarantine-store.ts) and nothing else: every SQL
 * statement lives in src/ledger/ (test/sql-boundary.test.ts checks it).
 */
export function ledgerDatabase(ledger: Ledger): Database {
  return databaseOf(ledger);
}
let databaseOf: (ledger: Ledger) => Database;

/** A store's statements, prepared once by name: how each typed store reaches its SQL. */
export function prepared<K extends string>(ledger: Ledger, sql: Record<K, string>): Record<K, Statement> {
  const db = databaseOf(ledger);
  const out = {} as Record<K, Statement>;
  for (const name of Object.keys(sql) as K[]) out[name] = db.query(sql[name]);
  return out;
}

export class Ledger {
  static {
    databaseOf = (ledger) => ledger.#db;
  }
  readonly #db: Database;
  readonly path: string;
  #chainIds = new Map<string, number>();
  #savepoints = 0;
  #st: Record<"chainId" | "insertChain" | "head" | "insertMb" | "insertPayload" | "insertCert" | "bySeq" | "keyCert" | "payload" | "forkEvidence", Statement>;

  private constructor(file: string, db: Database) {
    this.path = file;
    this.#db = db;
    this.#st = {
      chainId: db.prepare("SELECT chain FROM chains WHERE mesh = ? AND node_id = ?"),
      insertChain: db.prepare("INSERT INTO chains (mesh, node_id) VALUES (?, ?) ON CONFLICT DO NOTHING"),
      head: db.prepare("SELECT seq, id, timestamp FROM microblocks WHERE chain = ? ORDER BY seq DESC LIMIT 1"),
      insertMb: db.prepare(
        `INSERT INTO microblocks (chain, seq, id, prev, timestamp, event_type, payload_hash, key, sig, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertPayload: db.prepare("INSERT INTO payloads (hash, body) VALUES (?, ?) ON CONFLICT DO NOTHING"),
      insertCert: db.prepare(
        "INSERT INTO key_certs (key, chain, first_seq, body, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
      ),
      // The receive path's reads, once per gossiped microblock: prepared once.
      bySeq: db.prepare(`${SELECT_MB} WHERE m.chain = ? AND m.seq = ?`),
      keyCert: db.prepare("SELECT body FROM key_certs WHERE key = ?"),
      payload: db.prepare("SELECT body FROM payloads WHERE hash = ?"),
      forkEvidence: db.prepare("SELECT 1 FROM fork_evidence WHERE chain = ? LIMIT 1"),
    };
  }

  static open(file: string, opts: { busyTimeoutMs?: number; readonly?: boolean } = {}): Ledger {
    if (opts.readonly && !fs.existsSync(file)) throw new LedgerError(`ledger ${file} not found (run: dsm init)`);
    if (!opts.readonly) fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    let db: Database;
    try {
      db = new Database(file, opts.readonly ? { readonly: true } : { create: true, readwrite: true });
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 10000))}`);
      if (!opts.readonly) {
        db.exec("PRAGMA journal_mode = WAL");
        // FULL: a commit is on disk before dsm acknowledges anything (section 9).
        db.exec("PRAGMA synchronous = FULL");
        db.exec("PRAGMA foreign_keys = ON");
        migrate(db);
      } else {
        const v = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
        if (v !== MIGRATIONS.length) throw new LedgerError(`ledger ${file} has schema version ${v}, expected ${MIGRATIONS.length}`);
      }
    } catch (e) {
      if (e instanceof LedgerError) throw e;
      throw new LedgerError(`cannot open ledger ${file}: ${(e as Error).message}`);
    }
    return new Ledger(file, db);
  }

  /** True inside a transaction on this ledger's connection (immediate() nests as a savepoint there). */
  get inTransaction(): boolean {
    return this.#db.inTransaction;
  }

  /** A connection setting, as SQLite reports it (tests check the ones open() sets). */
  pragma(name: "journal_mode" | "synchronous" | "foreign_keys" | "user_version" | "busy_timeout"): unknown {
    return Object.values(this.#db.query(`PRAGMA ${name}`).get() as object)[0];
  }

  close(): void {
    this.#db.close();
  }

  /**
   * A consistent copy of the whole ledger into a new file (VACUUM INTO: one read
   * transaction, so writers may go on meanwhile), then checked: integrity_check ok. The copy
   * is written 0600 (its directory decides who reaches it); throws LedgerError.
   */
  backupTo(file: string): void {
    if (fs.existsSync(file)) throw new LedgerError(`${file} already exists`);
    try {
      this.#db.query("VACUUM INTO ?").run(file);
      fs.chmodSync(file, 0o600);
      const copy = new Database(file, { readonly: true });
      try {
        const r = copy.query("PRAGMA integrity_check").get() as { integrity_check: string };
        if (r.integrity_check !== "ok") throw new Error(`the copy fails integrity_check: ${r.integrity_check}`);
      } finally {
        copy.close();
      }
    } catch (e) {
      throw new LedgerError(`cannot back up the ledger to ${file}: ${(e as Error).message}`);
    }
  }

  /**
   * Runs fn inside BEGIN IMMEDIATE: the write lock is taken up front, so seq assignment
   * never races. fn is synchronous on purpose: a transaction held across an await would
   * let another connection in this process busy-wait on the lock while blocking the
   * event loop that would release it.
   */
  immediate<T>(fn: () => T): T {
    // Inside a caller's transaction (import batches many receives into one commit) this is
    // a savepoint: a failure undoes only its own part, and the caller's commit decides.
    if (this.#db.inTransaction) {
      const sp = `dsm_sp_${++this.#savepoints}`;
      this.#db.exec(`SAVEPOINT ${sp}`);
      try {
        const out = fn();
        this.#db.exec(`RELEASE ${sp}`);
        return out;
      } catch (e) {
        this.#db.exec(`ROLLBACK TO ${sp}`);
        this.#db.exec(`RELEASE ${sp}`);
        this.#chainIds.clear();
        throw e;
      } finally {
        this.#savepoints--;
      }
    }
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (e) {
      if (this.#db.inTransaction) this.#db.exec("ROLLBACK");
      // A chain row created in the rolled-back transaction is gone: so must its cached id be.
      this.#chainIds.clear();
      throw e;
    }
  }

  chainOf(mesh: string, nodeId: string, create: boolean): number | undefined {
    const k = mesh + nodeId;
    const cached = this.#chainIds.get(k);
    if (cached !== undefined) return cached;
    const m = fromHex(mesh, 32);
    const n = fromHex(nodeId, 32);
    let row = this.#st.chainId.get(m, n) as { chain: number } | null;
    if (!row && create) {
      this.#st.insertChain.run(m, n);
      row = this.#st.chainId.get(m, n) as { chain: number } | null;
    }
    if (row) this.#chainIds.set(k, row.chain);
    return row?.chain;
  }

  head(mesh: string, nodeId: string): ChainHead | null {
    const chain = this.chainOf(mesh, nodeId, false);
    if (chain === undefined) return null;
    const row = this.#st.head.get(chain) as { seq: number; id: Uint8Array; timestamp: string } | null;
    return row ? { seq: row.seq, id: toHex(row.id), timestamp: row.timestamp } : null;
  }

  insertMicroblock(mb: Microblock, receivedAt: number): void {
    const chain = this.chainOf(mb.mesh, mb.node_id, true)!;
    this.insertRow({
      chain,
      seq: mb.seq,
      id: fromHex(mb.id),
      prev: fromHex(mb.prev),
      timestamp: mb.timestamp,
      eventType: mb.event_type,
      payloadHash: fromHex(mb.payload_hash),
      key: fromHex(mb.key),
      sig: fromHex(mb.sig),
      receivedAt,
    });
  }

  /** The ingest hot path: a row already in bytes, for a chain already resolved. */
  insertRow(r: {
    chain: number;
    seq: number;
    id: Uint8Array;
    prev: Uint8Array;
    timestamp: string;
    eventType: string;
    payloadHash: Uint8Array;
    key: Uint8Array;
    sig: Uint8Array;
    receivedAt: number;
  }): void {
    this.#st.insertMb.run(r.chain, r.seq, r.id, r.prev, r.timestamp, r.eventType, r.payloadHash, r.key, r.sig, r.receivedAt);
  }

  insertPayload(hash: string | Uint8Array, canonical: Uint8Array | string): void {
    this.#st.insertPayload.run(
      typeof hash === "string" ? fromHex(hash) : hash,
      typeof canonical === "string" ? Buffer.from(canonical) : canonical,
    );
  }

  insertKeyCert(mesh: string, nodeId: string, key: string, firstSeq: number, canonical: string, receivedAt: number): void {
    const chain = this.chainOf(mesh, nodeId, true)!;
    this.#st.insertCert.run(fromHex(key), chain, firstSeq, Buffer.from(canonical), receivedAt);
  }

  insertForkEvidence(mb: Microblock, first: string, second: string, detectedAt: number): void {
    const chain = this.chainOf(mb.mesh, mb.node_id, true)!;
    this.#db
      .query("INSERT INTO fork_evidence (chain, seq, first, second, detected_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
      .run(chain, mb.seq, Buffer.from(first), Buffer.from(second), detectedAt);
  }

  keyCert(key: string): string | null {
    const row = this.#st.keyCert.get(fromHex(key, 32)) as { body: Uint8Array } | null;
    return row ? Buffer.from(row.body).toString("utf8") : null;
  }

  payload(hash: string): string | null {
    const row = this.#st.payload.get(fromHex(hash, 32)) as { body: Uint8Array } | null;
    return row ? Buffer.from(row.body).toString("utf8") : null;
  }

  byId(id: string): StoredMicroblock | null {
    const row = this.#db.query(`${SELECT_MB} WHERE m.id = ?`).get(fromHex(id, 32)) as Row | null;
    return row ? toMicroblock(row) : null;
  }

  /** Index range scan: ids starting with an even or odd-length hex prefix. */
  byIdPrefix(prefix: string, limit: number): StoredMicroblock[] {
    const lo = Buffer.from(prefix.padEnd(64, "0"), "hex");
    const hi = Buffer.from(prefix.padEnd(64, "f"), "hex");
    return (this.#db.query(`${SELECT_MB} WHERE m.id BETWEEN ? AND ? LIMIT ?`).all(lo, hi, limit) as Row[]).map(toMicroblock);
  }

  bySeq(mesh: string, nodeId: string, seq: number): StoredMicroblock | null {
    const chain = this.chainOf(mesh, nodeId, false);
    if (chain === undefined) return null;
    const row = this.#st.bySeq.get(chain, seq) as Row | null;
    return row ? toMicroblock(row) : null;
  }

  /** Resolves a node id prefix (as users type it) to the full id; undefined when absent or ambiguous. */
  resolveNodeId(prefix: string): string[] {
    const rows = this.#db.query("SELECT DISTINCT hex(node_id) AS n FROM chains").all() as { n: string }[];
    return rows.map((r) => r.n.toLowerCase()).filter((n) => n.startsWith(prefix.toLowerCase()));
  }

  list(filter: LogFilter): StoredMicroblock[] {
    const where: string[] = [];
    const args: (string | number | Uint8Array)[] = [];
    if (filter.nodeId) {
      where.push("c.node_id = ?");
      args.push(fromHex(filter.nodeId, 32));
    }
    if (filter.fromSeq !== undefined) where.push("m.seq >= ?"), args.push(filter.fromSeq);
    if (filter.toSeq !== undefined) where.push("m.seq <= ?"), args.push(filter.toSeq);
    const types = filter.eventType === undefined ? [] : [filter.eventType].flat().filter((t) => t !== "");
    if (types.length > 0 && !types.includes("*")) {
      // Any of the types. "suricata" matches itself and suricata.alert etc.; "suri*" (and so
      // "suricata.*") matches every type that starts with what is before the "*". Exact
      // bytes, no LIKE folding (event types are ASCII, so substr counts bytes).
      const any: string[] = [];
      for (const t of types) {
        if (t.endsWith("*")) {
          any.push("substr(m.event_type, 1, ?) = ?");
          args.push(t.length - 1, t.slice(0, -1));
        } else {
          any.push("m.event_type = ? OR substr(m.event_type, 1, ?) = ?");
          args.push(t, t.length + 1, t + ".");
        }
      }
      where.push(`(${any.join(" OR ")})`);
    }
    // Timestamps are fixed-width RFC 3339 UTC, so string order is time order.
    if (filter.sinceMs !== undefined) where.push("m.timestamp >= ?"), args.push(new Date(filter.sinceMs).toISOString());
    if (filter.untilMs !== undefined) where.push("m.timestamp < ?"), args.push(new Date(filter.untilMs).toISOString());
    if (filter.afterRowid !== undefined) where.push(filter.descending ? "m.rowid < ?" : "m.rowid > ?"), args.push(filter.afterRowid);
    const sql =
      `${SELECT_MB}${where.length ? " WHERE " + where.join(" AND ") : ""} ORDER BY m.rowid ${filter.descending ? "DESC" : "ASC"}` +
      (filter.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(filter.limit))}` : "");
    return (this.#db.query(sql).all(...args) as Row[]).map(toMicroblock);
  }

  /**
   * list() in pages, keyed by rowid, so memory stays flat however many rows match;
   * filter.limit (if any) bounds the total.
   */
  *listPages(filter: LogFilter, pageSize = 1000): Generator<StoredMicroblock[]> {
    let remaining = filter.limit ?? Infinity;
    let after = filter.afterRowid;
    while (remaining > 0) {
      const page = this.list({ ...filter, afterRowid: after, limit: Math.min(pageSize, remaining) });
      if (page.length === 0) return;
      yield page;
      remaining -= page.length;
      after = page[page.length - 1]!.rowid;
    }
  }

  /**
   * One chain's microblocks from a seq, in seq order, a page at a time, through the
   * (chain, seq) index: the cost follows the rows returned, not the size of the ledger.
   */
  *chainPages(mesh: string, nodeId: string, fromSeq: number, pageSize = 500): Generator<StoredMicroblock[]> {
    const chain = this.chainOf(mesh, nodeId, false);
    if (chain === undefined) return;
    const q = this.#db.query(`${SELECT_MB} WHERE m.chain = ? AND m.seq >= ? ORDER BY m.seq LIMIT ?`);
    for (let from = fromSeq; ; ) {
      const page = (q.all(chain, from, pageSize) as Row[]).map(toMicroblock);
      if (page.length === 0) return;
      yield page;
      from = page[page.length - 1]!.seq + 1;
    }
  }

  /** Streams every microblock in arrival order without holding them in memory. */
  *iterateMicroblocks(): Generator<StoredMicroblock> {
    for (const row of this.#db.query(`${SELECT_MB} ORDER BY m.rowid`).iterate() as IterableIterator<Row>) yield toMicroblock(row);
  }

  *iterateKeyCerts(): Generator<{ key: string; first_seq: number; body: Uint8Array; mesh: string; node_id: string }> {
    const q = this.#db.query(
      "SELECT k.key, k.first_seq, k.body, c.mesh, c.node_id FROM key_certs k JOIN chains c ON c.chain = k.chain ORDER BY k.rowid",
    );
    for (const r of q.iterate() as IterableIterator<{ key: Uint8Array; first_seq: number; body: Uint8Array; mesh: Uint8Array; node_id: Uint8Array }>) {
      yield { key: toHex(r.key), first_seq: r.first_seq, body: r.body, mesh: toHex(r.mesh), node_id: toHex(r.node_id) };
    }
  }


  /** mesh and node_id are null when the row's chain does not exist (the file was altered). */
  *iterateForkEvidence(): Generator<{ rowid: number; mesh: string | null; node_id: string | null; seq: number; first: string; second: string }> {
    const q = this.#db.query(
      "SELECT f.rowid, c.mesh, c.node_id, f.seq, f.first, f.second FROM fork_evidence f LEFT JOIN chains c ON c.chain = f.chain ORDER BY f.rowid",
    );
    type R = { rowid: number; mesh: Uint8Array | null; node_id: Uint8Array | null; seq: number; first: Uint8Array; second: Uint8Array };
    for (const r of q.iterate() as IterableIterator<R>) {
      yield {
        rowid: r.rowid,
        mesh: r.mesh && toHex(r.mesh),
        node_id: r.node_id && toHex(r.node_id),
        seq: r.seq,
        first: Buffer.from(r.first).toString("utf8"),
        second: Buffer.from(r.second).toString("utf8"),
      };
    }
  }

  /** Row counts as stored, to catch rows the chain joins cannot reach. */
  rowCount(table: "microblocks" | "key_certs"): number {
    return (this.#db.query(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  }

  hasForkEvidence(mesh: string, nodeId: string): boolean {
    const chain = this.chainOf(mesh, nodeId, false);
    return chain !== undefined && this.#st.forkEvidence.get(chain) !== null;
  }

  hasPayload(hash: string): boolean {
    return this.#db.query("SELECT 1 FROM payloads WHERE hash = ?").get(fromHex(hash, 32)) !== null;
  }

  maxRowid(): number {
    return (this.#db.query("SELECT coalesce(max(rowid), 0) AS n FROM microblocks").get() as { n: number }).n;
  }

  eventTypeCounts(): Record<string, number> {
    const rows = this.#db.query("SELECT event_type AS t, count(*) AS n FROM microblocks GROUP BY event_type ORDER BY n DESC, t").all() as { t: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.t, r.n]));
  }

  counts(): LedgerCounts {
    const one = (sql: string) => (this.#db.query(sql).get() as { n: number }).n;
    return {
      microblocks: one("SELECT count(*) AS n FROM microblocks"),
      payloads: one("SELECT count(*) AS n FROM payloads"),
      keyCerts: one("SELECT count(*) AS n FROM key_certs"),
      chains: one("SELECT count(*) AS n FROM chains"),
      forkEvidence: one("SELECT count(*) AS n FROM fork_evidence"),
    };
  }
}

function migrate(db: Database): void {
  const version = () => (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  if (version() === MIGRATIONS.length) return;
  // Two processes may open a fresh ledger at once: re-check under the write lock.
  db.exec("BEGIN IMMEDIATE");
  try {
    const from = version();
    if (from > MIGRATIONS.length) {
      throw new LedgerError(`ledger schema version ${from} is newer than this dsm understands (${MIGRATIONS.length}); upgrade dsm`);
    }
    for (let v = from; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
    db.exec("COMMIT");
  } catch (e) {
    if (db.inTransaction) db.exec("ROLLBACK");
    throw e;
  }
}

function toMicroblock(r: Row): StoredMicroblock {
  return {
    v: 1,
    type: "M",
    mesh: toHex(r.mesh),
    node_id: toHex(r.node_id),
    seq: r.seq,
    prev: toHex(r.prev),
    timestamp: r.timestamp,
    event_type: r.event_type,
    payload_hash: toHex(r.payload_hash),
    key: toHex(r.key),
    id: toHex(r.id),
    sig: toHex(r.sig),
    rowid: r.rowid,
    received_at: r.received_at,
  };
}
