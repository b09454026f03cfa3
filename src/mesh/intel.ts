// /dsm/intel/1 and the decisions a node holds (docs/PROTOCOL.md "Threat intelligence").
// Every node gets every finalized advisory with its payload: a validator has them in its
// ledger (recorded with each checkpoint, src/ledger/intel-store.ts); an edge, which keeps
// only the log's leaf ids, asks f + 1 validators for the intel microblocks among leaves it
// has not scanned, and keeps each one only if its id is the leaf of its own verified tree
// there, so no peer can add one, and one honest answer among f + 1 is enough for none to be
// missed. Once a node holds every advisory up to its latest checkpoint, it computes the
// decision set as of that checkpoint (src/intel/decide.ts) and hands it to the decision
// store the bouncer API serves.
import { canonicalize } from "../encoding/jcs.ts";
import { toHex } from "../encoding/hex.ts";
import { refreshDecisions } from "../intel/refresh.ts";
import { isIntelEvent, parseIntelPayload, type FinalizedIntelRow } from "../protocol/advisory.ts";
import type { Decision } from "../protocol/decision.ts";
import { identifyMicroblock, type Microblock, payloadMatches } from "../protocol/microblock.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { DecisionStore } from "../ledger/decision-store.ts";
import { type MeshContext, peersToAsk } from "./context.ts";

export const INTEL_PROTOCOL = "/dsm/intel/1";
/** Intel microblocks in one answer; each is a microblock and a payload of a few hundred bytes. */
const PAGE = 256;
const ANSWER_BYTES = 2 << 20;
/** What one answer's entries may add up to, well under ANSWER_BYTES. */
const PAGE_BYTES = 1 << 20;
const PAGES_PER_SYNC = 32;

export interface AnswerEntry {
  leaf: number;
  microblock: unknown;
  payload: string;
}

export interface IntelStatus {
  advisories: number;
  scanned_to: number;
  tree_size: number;
  decisions: number;
  decisions_as_of: number | null;
  received: number;
  refused: number;
  decision_latency_ms: number | null;
}

export class Intel {
  readonly decisions: DecisionStore;
  #timer: ReturnType<typeof setInterval> | null = null;
  #running: Promise<void> | null = null;
  #received = 0;
  #refused = 0;
  #latency: number | null = null;
  /** Listeners told of each new decision set (the metrics, webhooks later). */
  readonly onChange: ((added: Decision[], removed: Decision[]) => void)[] = [];

  constructor(private readonly ctx: MeshContext) {
    this.decisions = new DecisionStore(ctx.node.ledger, ctx.node.mesh);
  }

  serve(): Promise<void> {
    return this.ctx.net.serve(INTEL_PROTOCOL, (req) => this.#answer(req), 4096);
  }

  /** Sync and recompute once a second, and at once when a certificate is kept. */
  start(): void {
    this.#timer = setInterval(() => this.poke(), 1000);
    this.poke();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** Runs one round unless one is running. */
  poke(): void {
    if (this.#running || this.ctx.stopping()) return;
    this.#running = this.#round()
      .catch((e) => this.ctx.log("warn", `intel: ${(e as Error).message}`))
      .finally(() => (this.#running = null));
  }

  status(): IntelStatus {
    const intel = this.ctx.builder.intel;
    const asOf = this.decisions.asOf();
    return {
      advisories: intel.count(),
      scanned_to: this.#complete(),
      tree_size: this.ctx.builder.tree.size(),
      decisions: this.decisions.count(),
      decisions_as_of: asOf,
      received: this.#received,
      refused: this.#refused,
      decision_latency_ms: this.#latency,
    };
  }

  /** Leaves below it have all been scanned for intel: a validator's whole tree, an edge's cursor. */
  #complete(): number {
    const size = this.ctx.builder.tree.size();
    if (this.ctx.engine()) return size;
    return Math.min(size, this.ctx.builder.intel.cursor());
  }

  #answer(req: unknown): unknown {
    const r = req as { from_leaf?: unknown; to_leaf?: unknown; leaves?: unknown };
    const intel = this.ctx.builder.intel;
    // Not beyond the asker's own tree (to_leaf): it could not check those yet.
    const upTo = typeof r.to_leaf === "number" && Number.isSafeInteger(r.to_leaf) && r.to_leaf >= 0 ? r.to_leaf : Infinity;
    const complete = Math.min(this.#complete(), upTo);
    const entry = (x: FinalizedIntelRow): AnswerEntry => ({ leaf: x.leaf, microblock: x.microblock, payload: x.payloadCanonical });
    if (Array.isArray(r.leaves)) {
      if (r.leaves.length > PAGE || !r.leaves.every((l) => Number.isSafeInteger(l) && l >= 0)) return { error: `leaves must list at most ${PAGE} leaf indices` };
      const found: AnswerEntry[] = [];
      let bytes = 0;
      for (const l of r.leaves as number[]) {
        for (const x of intel.from(l, 1).filter((y) => y.leaf === l)) {
          const e = entry(x);
          bytes += e.payload.length + JSON.stringify(e.microblock).length + 32;
          if (found.length > 0 && bytes > PAGE_BYTES) return { scanned_to: complete, advisories: found };
          found.push(e);
        }
      }
      return { scanned_to: complete, advisories: found };
    }
    const from = r.from_leaf;
    if (typeof from !== "number" || !Number.isSafeInteger(from) || from < 0) return { error: "from_leaf must be a leaf index" };
    return intelPage(intel.from(from, PAGE).filter((x) => x.leaf < complete), from, complete);
  }

  async #round(): Promise<void> {
    if (!this.ctx.engine()) await this.#syncEdge();
    // A payload filled in for an advisory already judged without it: judged again.
    const filled = await this.#repair();
    this.#recompute(filled > 0);
  }

  /** Validators of the set in force this node is connected to, in random order, and how many answers are enough (f + 1). */
  #validatorPeers(): { peers: string[]; need: number } {
    const cards = this.ctx.builder.history().latestCards();
    const ids = new Set(cards.map((c) => c.peer_id));
    const need = Math.floor((cards.length - 1) / 3) + 1;
    return { peers: peersToAsk(this.ctx, true).filter((p) => ids.has(p)), need };
  }

  async #syncEdge(): Promise<void> {
    const { builder } = this.ctx;
    const size = builder.tree.size();
    const start = builder.intel.cursor();
    if (start >= size) return;
    const { peers, need } = this.#validatorPeers();
    const reached: number[] = [];
    for (const peer of peers) {
      if (reached.length >= need || this.ctx.stopping()) break;
      let at = start;
      try {
        for (let page = 0; page < PAGES_PER_SYNC && at < size; page++) {
          const answer = (await this.ctx.net.request(peer, INTEL_PROTOCOL, { from_leaf: at, to_leaf: size }, 10_000, ANSWER_BYTES)) as { scanned_to?: unknown; advisories?: unknown };
          const next = answer.scanned_to;
          if (typeof next !== "number" || !Number.isSafeInteger(next) || next <= at || !Array.isArray(answer.advisories)) break;
          this.#keep(answer.advisories);
          at = Math.min(next, size);
        }
      } catch {
        // the next validator
      }
      if (at > start) reached.push(at);
    }
    // Every leaf below the least of f + 1 validators' answers was covered by an honest one.
    if (reached.length >= need) builder.intel.advance(Math.min(...reached));
  }

  /** Intel microblocks this node holds without a payload (its sender withheld it from some): asked of validators. */
  async #repair(): Promise<number> {
    const intel = this.ctx.builder.intel;
    const missing = intel.missingPayloads(PAGE);
    if (missing.length === 0) return 0;
    for (const peer of this.#validatorPeers().peers.slice(0, 3)) {
      try {
        const answer = (await this.ctx.net.request(peer, INTEL_PROTOCOL, { leaves: missing }, 10_000, ANSWER_BYTES)) as { advisories?: unknown };
        if (Array.isArray(answer.advisories)) this.#keep(answer.advisories);
      } catch {
        // the next validator
      }
      if (intel.missingPayloads(PAGE).length === 0) break;
    }
    return missing.length - intel.missingPayloads(PAGE).length;
  }

  /** Keeps what checks against this node's own tree; counts the rest as refused. */
  #keep(entries: unknown[]): void {
    const size = this.ctx.builder.tree.size();
    for (const e of entries) {
      // A validator ahead of this node may name leaves it cannot check yet: not a lie, just early.
      const leaf = (e as { leaf?: unknown })?.leaf;
      if (typeof leaf === "number" && Number.isSafeInteger(leaf) && leaf >= size) continue;
      const problem = this.#keepOne(e);
      if (problem === null) continue;
      this.#refused++;
      this.ctx.stats.count("intel");
      this.ctx.log("debug", `intel: refused an advisory: ${problem}`);
    }
  }

  #keepOne(value: unknown): string | null {
    const { builder, node } = this.ctx;
    const checked = checkIntelEntry(value, node.mesh, builder.tree.size(), (leaf) => builder.tree.idAt(leaf));
    if (!checked.ok) return checked.problem;
    const epoch = this.#firstEpochOf(checked.leaf);
    if (epoch === null) return `no certificate here covers leaf ${checked.leaf}`;
    if (builder.intel.put(checked.leaf, checked.mb, checked.payload, epoch)) this.#received++;
    return null;
  }

  /** Epoch of the first checkpoint whose tree holds a leaf: the one whose range named it. */
  #firstEpochOf(leaf: number): number | null {
    let lo: FinalityCertificate | null = null;
    for (let after = -1; ; ) {
      const page = this.ctx.builder.since(after, 256);
      if (page.length === 0) return lo === null ? null : lo.checkpoint.epoch;
      for (const c of page) if (c.checkpoint.tree_size > leaf) return c.checkpoint.epoch;
      lo = page.at(-1)!;
      after = lo.checkpoint.epoch;
    }
  }

  /** The decision set as of the latest checkpoint, once every advisory up to it is held. */
  #recompute(force = false): void {
    const now = Date.now();
    const r = refreshDecisions(this.ctx.builder, this.ctx.node.genesis, this.decisions, this.#complete(), now, force);
    if (!r || (r.added.length === 0 && r.removed.length === 0)) return;
    for (const d of r.added) {
      // From the newest counted advisory's own time to this node holding the decision.
      const ts = Math.max(...d.advisories.map((id) => Date.parse(r.entries.get(id)?.microblock.timestamp ?? "")).filter(Number.isFinite));
      if (Number.isFinite(ts)) this.#latency = now - ts;
    }
    this.ctx.log("info", `decisions as of epoch ${r.epoch}: ${r.added.length} added, ${r.removed.length} removed, ${this.decisions.count()} held`, { epoch: r.epoch, added: r.added.length, removed: r.removed.length });
    for (const f of this.onChange) f(r.added, r.removed);
  }
}

export type CheckedEntry = { ok: true; leaf: number; mb: Microblock; payload: string } | { ok: false; problem: string };

/**
 * One entry of a /dsm/intel/1 answer, against this node's own finalized tree (size leaves,
 * idAt): the microblock's id must be the leaf the entry names, so only what a quorum
 * finalized is kept, whoever sent it; the payload must be the exact canonical bytes its
 * payload_hash commits to, and an advisory or retraction.
 */
export function checkIntelEntry(value: unknown, mesh: string, size: number, idAt: (leaf: number) => Uint8Array | null): CheckedEntry {
  const bad = (problem: string): CheckedEntry => ({ ok: false, problem });
  const e = value as AnswerEntry;
  if (typeof e !== "object" || e === null || !Number.isSafeInteger(e.leaf) || typeof e.payload !== "string") return bad("malformed entry");
  if (e.leaf < 0 || e.leaf >= size) return bad(`leaf ${e.leaf} is beyond this node's finalized tree`);
  let mb: Microblock;
  try {
    mb = identifyMicroblock(e.microblock, mesh).mb;
  } catch (err) {
    return bad((err as Error).message);
  }
  const leafId = idAt(e.leaf);
  if (!leafId || toHex(leafId) !== mb.id) return bad(`leaf ${e.leaf} of the finalized tree is not microblock ${mb.id.slice(0, 12)}…`);
  if (!isIntelEvent(mb.event_type)) return bad(`leaf ${e.leaf} is a ${mb.event_type}, not an advisory`);
  let payload: unknown;
  try {
    payload = JSON.parse(e.payload);
  } catch {
    return bad("payload is not JSON");
  }
  if (canonicalize(payload) !== e.payload || !payloadMatches(mb.payload_hash, e.payload)) return bad("payload does not match its payload_hash");
  try {
    parseIntelPayload(payload, mb.event_type);
  } catch (err) {
    // Finalized, so it stays in the log; it counts for nothing in decisions either way.
    return bad((err as Error).message);
  }
  return { ok: true, leaf: e.leaf, mb, payload: e.payload };
}

/**
 * One /dsm/intel/1 answer from the rows at or after `from` (below `complete`, the leaves this
 * node has scanned, at most `count` of them): bounded in bytes as well as in count, since
 * 64 indicators and 64 evidence ids make an advisory of ~25 KB and an answer over the asker's
 * limit would stop its sync for good. scanned_to says how far the answer covers.
 */
export function intelPage(rows: readonly FinalizedIntelRow[], from: number, complete: number, limits = { count: PAGE, bytes: PAGE_BYTES }): { scanned_to: number; advisories: AnswerEntry[] } {
  const out: AnswerEntry[] = [];
  let bytes = 0;
  for (const r of rows) {
    const e = { leaf: r.leaf, microblock: r.microblock, payload: r.payloadCanonical };
    bytes += e.payload.length + JSON.stringify(e.microblock).length + 32;
    if (out.length > 0 && bytes > limits.bytes) break;
    out.push(e);
  }
  const cut = out.length < rows.length || rows.length >= limits.count;
  return { scanned_to: cut ? out.at(-1)!.leaf + 1 : Math.max(from, complete), advisories: out };
}
