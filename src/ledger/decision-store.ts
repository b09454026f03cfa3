// The decisions a node serves to bouncers (DESIGN.md section 12): the set as of the last
// finalized checkpoint, and an append-only journal of its changes, so a bouncer that pulls
// every few seconds gets only what changed since its last pull (the CrowdSec stream's
// "new" and "deleted", src/intel/lapi.ts). Written with the checkpoint that makes the
// set (replace(), inside the caller's transaction or alone); read by the bouncer API of
// the same process and by dsm decisions in another, through the same SQLite file.
//
// The journal stays bounded (prune(), run by every replace()): an entry goes once every
// bouncer's cursor is past it (none needs it any more) and it is older than
// JOURNAL_KEEP_MS (so a process's in-memory view catches up from the journal rather than
// reloading the set), or once it is older than JOURNAL_MAX_AGE_MS, or once it falls out
// of the newest JOURNAL_MAX_ENTRIES, whatever the cursors. A bouncer
// whose cursor is below what was pruned gets the whole set again, as a bouncer starting
// does (stream() says `full`), so pruning never loses a ban, only, at worst, a deletion
// for a bouncer that did not pull for a week.
import type { Statement } from "bun:sqlite";
import { canonicalize } from "../encoding/jcs.ts";
import { fromHex } from "../encoding/hex.ts";
import { type Cidr, cidrContains, parseCidr } from "../encoding/ip.ts";
import { type Ledger, prepared } from "./ledger.ts";
import { STATEMENTS } from "./sql.ts";
import { SCOPES, type Scope } from "../protocol/advisory.ts";
import type { Decision } from "../protocol/decision.ts";

export const JOURNAL_MAX_AGE_MS = 7 * 86_400_000;
export const JOURNAL_KEEP_MS = 3_600_000;
export const JOURNAL_MAX_ENTRIES = 250_000;

export class DecisionStoreError extends Error {}

/** Where a bouncer's last stream pull left it: the journal seq and the time it was answered at. */
export interface StreamCursor {
  seq: number;
  ms: number;
}

/** GET /v1/decisions' filter, with CrowdSec's meaning (pkg/database/decisionfilter.go). */
export interface DecisionQuery {
  scope?: Scope;
  /** Exact canonical value. */
  value?: string;
  /** An address: with contains (the default), Ip decisions equal to it and Range decisions holding it. */
  ip?: string;
  /** A CIDR range: with contains, Range decisions holding all of it; with contains=false, Ip and Range decisions inside it. */
  range?: string;
  contains?: boolean;
}

export interface StreamOptions {
  /** The bouncer's cursor, null when it never pulled (it then gets the whole set, as in CrowdSec). */
  cursor: StreamCursor | null;
  /** startup=true: the whole active set in `new`. */
  startup: boolean;
  nowMs: number;
  /** Which decisions this bouncer is served (its scopes, origins, scenarios). */
  filter?: (d: Decision) => boolean;
  /** One decision per (scope, value), the one lasting longest, as CrowdSec dedups (default true). */
  dedup?: boolean;
}

export interface StreamAnswer {
  new: Decision[];
  deleted: Decision[];
  /** What to store as the bouncer's cursor once the answer is sent. */
  cursor: StreamCursor;
  /** The whole set was sent: no usable cursor (never pulled, or pruned past it). */
  full: boolean;
}

/** One stored decision, as the in-memory view holds it. */
interface Entry {
  d: Decision;
  json: string;
  untilMs: number;
  addedSeq: number;
  key: string;
  cidr: Cidr | null | undefined;
}

interface View {
  seq: number;
  stamp: number;
  byId: Map<number, Entry>;
  groups: Map<string, Entry[]>;
  sorted: Decision[] | null;
  /** Built inside a transaction that may yet roll back: see #exact. */
  tentative: boolean;
}

interface State {
  epoch: number;
  last_seq: number;
  pruned_seq: number;
  stamp: number;
}

type ChangeRow = { seq: number; op: "add" | "del" | "upd"; id: number; added_seq: number; decision: string | Uint8Array };

const NO_STATE: State = { epoch: -1, last_seq: 0, pruned_seq: 0, stamp: 0 };
const groupKey = (d: Decision): string => `${d.scope}\u0000${d.value}`;

/** The longer-lasting of two decisions; equal untils go to the lower id, so every node picks the same. */
function better(a: Entry, b: Entry | undefined): boolean {
  return b === undefined || a.untilMs > b.untilMs || (a.untilMs === b.untilMs && a.d.id < b.d.id);
}

function freeze(d: Decision): Decision {
  Object.freeze(d.reporters);
  Object.freeze(d.advisories);
  return Object.freeze(d);
}

function untilOf(d: Decision): number {
  const ms = Date.parse(d.until);
  if (!Number.isFinite(ms)) throw new DecisionStoreError(`decision ${d.id}: until ${JSON.stringify(d.until)} is not an RFC 3339 time`);
  return ms;
}

function entryOf(json: string, addedSeq: number): Entry {
  const d = freeze(JSON.parse(json) as Decision);
  return { d, json, untilMs: untilOf(d), addedSeq, key: groupKey(d), cidr: undefined };
}

/**
 * The same decision, field by field, for two of the same id (which is derived from scope,
 * value and until, so those three are not compared again): nothing to update.
 */
function sameDecision(a: Decision, b: Decision): boolean {
  return a.category === b.category && a.severity === b.severity && a.epoch === b.epoch && a.since === b.since && sameList(a.reporters, b.reporters) && sameList(a.advisories, b.advisories);
}

function sameList(x: readonly string[], y: readonly string[]): boolean {
  if (x === y) return true;
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

const textOf = (v: string | Uint8Array): string => (typeof v === "string" ? v : Buffer.from(v).toString("utf8"));

function put(v: View, e: Entry): void {
  v.byId.set(e.d.id, e);
  const g = v.groups.get(e.key);
  if (g) g.push(e);
  else v.groups.set(e.key, [e]);
}

function drop(v: View, id: number): void {
  const old = v.byId.get(id);
  if (!old) return;
  v.byId.delete(id);
  const g = v.groups.get(old.key)!.filter((e) => e !== old);
  if (g.length > 0) v.groups.set(old.key, g);
  else v.groups.delete(old.key);
}

function cidrOf(e: Entry): Cidr | null {
  if (e.cidr === undefined) e.cidr = e.d.scope === "ip" || e.d.scope === "range" ? parseCidr(e.d.value) : null;
  return e.cidr;
}

/** A query's address or range, host bits cleared as CrowdSec's parser does ("10.1.2.3/8" is 10.0.0.0/8). */
export function queryRange(text: string): Cidr | null {
  const slash = text.indexOf("/");
  const bare = parseCidr(slash < 0 ? text : text.slice(0, slash));
  if (!bare) return null;
  if (slash < 0) return bare;
  const width = bare.family === 4 ? 32 : 128;
  const p = text.slice(slash + 1);
  if (!/^(0|[1-9]\d{0,2})$/.test(p) || +p > width) return null;
  const host = (1n << BigInt(width - +p)) - 1n;
  return { family: bare.family, base: bare.base & ~host, prefix: +p };
}

export class DecisionStore {
  readonly #mesh: Uint8Array;
  readonly #st: Record<keyof typeof STATEMENTS.decisions, Statement>;
  #view: View | null = null;

  constructor(
    private readonly ledger: Ledger,
    mesh: string,
  ) {
    this.#mesh = fromHex(mesh, 32);
    this.#st = prepared(ledger, STATEMENTS.decisions);
  }

  #state(): State {
    return (this.#st.state.get(this.#mesh) as State | null) ?? NO_STATE;
  }

  /**
   * The set as of checkpoint `epoch`, diffed by id against the stored one: every add and
   * removal is journaled (a decision whose other fields changed under the same id, e.g.
   * one more reporter, is journaled as an update, which bouncers are not sent). Inside a
   * caller's ledger.immediate it is a savepoint there, and the caller's commit decides.
   * Costs what changed plus one pass over the set in memory (no re-encoding of it).
   */
  replace(decisions: readonly Decision[], epoch: number, nowMs: number): { added: Decision[]; removed: Decision[] } {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new DecisionStoreError(`epoch must be a non-negative integer, got ${epoch}`);
    return this.ledger.immediate(() => {
      const state = this.#state();
      const view = this.#exact(state) ?? this.#load();
      // One pass over the set: what is new or changed is checked and encoded, the rest only compared.
      const ids = new Set<number>();
      const fresh: Decision[] = [];
      const changed: Decision[] = [];
      for (const d of decisions) {
        if (!Number.isSafeInteger(d.id)) throw new DecisionStoreError(`decision id ${d.id} is not a safe integer`);
        if (ids.has(d.id)) throw new DecisionStoreError(`decision id ${d.id} appears twice in the set`);
        ids.add(d.id);
        const e = view.byId.get(d.id);
        if (e !== undefined && sameDecision(e.d, d)) continue;
        if (!SCOPES.includes(d.scope)) throw new DecisionStoreError(`decision ${d.id}: unknown scope ${JSON.stringify(d.scope)}`);
        untilOf(d);
        (e === undefined ? fresh : changed).push(d);
      }
      const gone: Entry[] = [];
      for (const [id, e] of view.byId) if (!ids.has(id)) gone.push(e);
      const byId = (x: { id: number }, y: { id: number }) => x.id - y.id;
      gone.sort((x, y) => x.d.id - y.d.id);
      fresh.sort(byId);
      changed.sort(byId);

      const puts: Entry[] = [];
      let seq = state.last_seq;
      const journal = (op: "add" | "del" | "upd", id: number, addedSeq: number, json: string) => this.#st.journal.run(this.#mesh, ++seq, op, id, addedSeq, json, nowMs);
      // Removals, then adds, then updates, each by id: the journal reads the same on every node.
      for (const e of gone) {
        this.#st.remove.run(this.#mesh, e.d.id);
        journal("del", e.d.id, e.addedSeq, e.json);
      }
      for (const d of fresh) {
        const json = canonicalize(d);
        // added_seq is the seq of its own add entry.
        journal("add", d.id, seq + 1, json);
        this.#st.insert.run(this.#mesh, d.id, untilOf(d), seq, json);
        puts.push(entryOf(json, seq));
      }
      for (const d of changed) {
        const json = canonicalize(d);
        const e = view.byId.get(d.id)!;
        this.#st.update.run(json, this.#mesh, d.id);
        journal("upd", d.id, e.addedSeq, json);
        puts.push(entryOf(json, e.addedSeq));
      }
      const added = fresh;
      const removed = gone.map((e) => e.d);
      // A new stamp on every replace: a view built from writes a caller later rolled back
      // can never pass for the committed state, even at the same seq.
      const stamp = 1 + Math.floor(Math.random() * 2 ** 48);
      const pruned = this.#prune(seq, state.pruned_seq, nowMs);
      this.#st.setState.run(this.#mesh, epoch, seq, pruned, stamp);
      // Every statement ran: the view follows, tentatively (see #exact) until the state it
      // names is read back committed.
      for (const d of removed) drop(view, d.id);
      for (const e of puts) {
        drop(view, e.d.id);
        put(view, e);
      }
      view.sorted = null;
      view.seq = seq;
      view.stamp = stamp;
      view.tentative = true;
      this.#view = view;
      return { added, removed };
    });
  }

  /** Drops journal entries no bouncer needs (see the top of this file); returns the new pruned_seq. */
  #prune(lastSeq: number, prunedSeq: number, nowMs: number): number {
    // The last seq journaled before a time (0: none), read from whichever end is nearer.
    const recent = (this.#st.newestBefore.get(this.#mesh, nowMs - JOURNAL_KEEP_MS) as { seq: number } | null)?.seq ?? 0;
    const firstYoung = (this.#st.oldestFrom.get(this.#mesh, nowMs - JOURNAL_MAX_AGE_MS) as { seq: number } | null)?.seq;
    const aged = firstYoung === undefined ? lastSeq : firstYoung - 1;
    const oldest = (this.#st.oldestCursor.get(this.#mesh) as { seq: number | null }).seq ?? lastSeq;
    const to = Math.min(lastSeq, Math.max(Math.min(oldest, recent), aged, lastSeq - JOURNAL_MAX_ENTRIES));
    if (to <= prunedSeq) return prunedSeq;
    this.#st.prune.run(this.#mesh, to);
    return to;
  }

  /**
   * The cached view when it is exactly the state read. A view replace() left is tentative:
   * the caller's transaction may still roll back. Read back outside any transaction, the
   * same (seq, random stamp) proves it was committed; until then it is never caught up
   * from the journal, only used as is or dropped.
   */
  #exact(state: State): View | null {
    const v = this.#view;
    if (!v || v.seq !== state.last_seq || v.stamp !== state.stamp) return null;
    if (v.tentative && !this.ledger.inTransaction) v.tentative = false;
    return v;
  }

  #load(): View {
    const v: View = { seq: 0, stamp: 0, byId: new Map(), groups: new Map(), sorted: null, tentative: true };
    for (const r of this.#st.all.all(this.#mesh) as { id: number; added_seq: number; decision: string | Uint8Array }[]) put(v, entryOf(textOf(r.decision), r.added_seq));
    return v;
  }

  /**
   * The current set, in memory. Kept across calls and brought up to date from the journal
   * (a checkpoint changes a few decisions of many), reloaded when the journal no longer
   * reaches back to it. Inside a transaction nothing new is cached: the caller may roll back.
   */
  #current(): { view: View; state: State } {
    const state = this.#state();
    const exact = this.#exact(state);
    if (exact) return { view: exact, state };
    const v = this.#view;
    const outside = !this.ledger.inTransaction;
    let next: View;
    if (v && !v.tentative && outside && v.seq >= state.pruned_seq && v.seq < state.last_seq) {
      for (const r of this.#changes(v.seq, state.last_seq)) {
        drop(v, r.id);
        if (r.op !== "del") put(v, entryOf(textOf(r.decision), r.added_seq));
      }
      v.sorted = null;
      next = v;
    } else {
      next = this.#load();
    }
    next.seq = state.last_seq;
    next.stamp = state.stamp;
    next.tentative = !outside;
    if (outside) this.#view = next;
    return { view: next, state };
  }

  #changes(afterSeq: number, toSeq: number): ChangeRow[] {
    return this.#st.changes.all(this.#mesh, afterSeq, toSeq) as ChangeRow[];
  }

  /** Every stored decision (expired ones too, until a checkpoint drops them), by scope, value, id (code-unit order: the same bytes on every node). */
  current(): Decision[] {
    const { view } = this.#current();
    if (view.sorted === null) {
      view.sorted = [...view.byId.values()]
        .map((e) => e.d)
        .sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : a.value < b.value ? -1 : a.value > b.value ? 1 : a.id - b.id));
    }
    return view.sorted.slice();
  }

  /** Epoch of the checkpoint whose set this is; null before the first replace(). */
  asOf(): number | null {
    const s = this.#state();
    return s.epoch < 0 ? null : s.epoch;
  }

  count(): number {
    return this.#current().view.byId.size;
  }

  /** The journal's last seq (a cursor at it has seen everything). */
  lastSeq(): number {
    return this.#state().last_seq;
  }

  /** Journal entries kept now (for tests and status). */
  journalSize(): number {
    return (this.#st.journalSize.get(this.#mesh) as { n: number }).n;
  }

  /**
   * Decisions matching a GET /v1/decisions query, CrowdSec's way: no dedup; ip or range
   * with contains (default) gives the decisions whose range holds the queried one, with
   * contains=false those inside it; either restricts to Ip and Range decisions of the
   * same family. Active ones only (until > nowMs). Throws DecisionStoreError on a bad ip/range.
   */
  find(q: DecisionQuery, nowMs = Date.now()): Decision[] {
    let range: Cidr | null = null;
    const text = q.ip ?? q.range;
    if (text !== undefined) {
      range = queryRange(text);
      if (range === null) throw new DecisionStoreError(`${q.ip !== undefined ? "ip" : "range"} ${JSON.stringify(text)} is not an IP address or CIDR range`);
    }
    const contains = q.contains ?? true;
    const out: Entry[] = [];
    for (const e of this.#current().view.byId.values()) {
      if (e.untilMs <= nowMs) continue;
      if (q.scope !== undefined && e.d.scope !== q.scope) continue;
      if (q.value !== undefined && e.d.value !== q.value) continue;
      if (range !== null) {
        const c = cidrOf(e);
        if (c === null || !(contains ? cidrContains(c, range) : cidrContains(range, c))) continue;
      }
      out.push(e);
    }
    return out.sort((a, b) => a.d.id - b.d.id).map((e) => e.d);
  }

  /**
   * A bouncer's stream answer. What the bouncer holds is, per (scope, value), the longest
   * active decision it was served; after its last pull (cursor: journal seq S, time T),
   * that is recomputed for the set at S and time T (from the journal) and for the set now:
   * a (scope, value) whose decision changed is in `new`, one with none left (removed, or
   * expired since T) is in `deleted`, once. Only the keys the journal or the clock touched
   * since the cursor are looked at, so an increment costs what changed, not the set's size.
   * startup: the whole active set in `new`, and the deletions a bouncer that kept state
   * across a restart still needs (none for one that never pulled).
   */
  stream(o: StreamOptions): StreamAnswer {
    const { view, state } = this.#current();
    const dedup = o.dedup ?? true;
    const keep = o.filter ?? (() => true);
    const now = o.nowMs;
    const cursor = o.cursor;
    const usable = cursor !== null && cursor.seq >= state.pruned_seq && cursor.seq <= state.last_seq;
    const next: StreamCursor = { seq: state.last_seq, ms: now };
    const fresh: Decision[] = [];
    const deleted: Decision[] = [];
    if (!usable || o.startup) {
      for (const g of view.groups.values()) for (const e of served(g, now, keep, dedup)) fresh.push(e.d);
    }
    if (!usable) return { new: fresh, deleted, cursor: next, full: true };

    // Keys touched since the cursor: by the journal, or by a decision expiring in (T, now].
    const touched = new Set<string>();
    const removed = new Map<string, Entry[]>();
    for (const r of this.#changes(cursor.seq, state.last_seq)) {
      if (r.op !== "del") {
        // Not in the set any more: a later del row of the same id names its key.
        const e = view.byId.get(r.id);
        if (e) touched.add(e.key);
        continue;
      }
      const e = entryOf(textOf(r.decision), r.added_seq);
      touched.add(e.key);
      // Only a decision added at or before the cursor can be held by the bouncer.
      if (e.addedSeq <= cursor.seq) removed.set(e.key, [...(removed.get(e.key) ?? []), e]);
    }
    if (now > cursor.ms) for (const e of view.byId.values()) if (e.untilMs > cursor.ms && e.untilMs <= now) touched.add(e.key);

    for (const key of touched) {
      const group = view.groups.get(key) ?? [];
      // The set at S: still here and added by then, or removed since (an id removed and
      // re-added after S appears in both: once is enough).
      const atCursor = new Map<number, Entry>();
      for (const e of [...group.filter((x) => x.addedSeq <= cursor.seq), ...(removed.get(key) ?? [])]) atCursor.set(e.d.id, e);
      const then = served([...atCursor.values()], cursor.ms, keep, dedup);
      const nowServed = served(group, now, keep, dedup);
      const had = new Set(then.map((e) => e.d.id));
      const has = new Set(nowServed.map((e) => e.d.id));
      if (!o.startup) for (const e of nowServed) if (!had.has(e.d.id)) fresh.push(e.d);
      // With dedup, a key that is still served is not deleted, only re-sent with its new
      // decision: a bouncer applies deletions before additions, and some (the custom
      // bouncer) skip adding a value they added moments ago, which would leave it unbanned.
      for (const e of then) if (nowServed.length === 0 || (!dedup && !has.has(e.d.id))) deleted.push(e.d);
    }
    if (!o.startup) fresh.sort((a, b) => a.id - b.id);
    deleted.sort((a, b) => a.id - b.id);
    return { new: fresh, deleted, cursor: next, full: false };
  }
}

/** What a bouncer is served of one (scope, value) at time `at`: the longest active decision, or every active one without dedup. */
function served(group: readonly Entry[], at: number, keep: (d: Decision) => boolean, dedup: boolean): Entry[] {
  let best: Entry | undefined;
  const all: Entry[] = [];
  for (const e of group) {
    if (e.untilMs <= at || !keep(e.d)) continue;
    if (!dedup) all.push(e);
    else if (better(e, best)) best = e;
  }
  return dedup ? (best ? [best] : []) : all;
}
