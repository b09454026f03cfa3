// A seeded, in-process network of ConsensusEngines with a simulated clock: random delays,
// drops before a global stabilisation time (GST), reordering, and byzantine validators of
// each kind the validators issue names. Everything cryptographic is real: real BLS keys in
// a real genesis, every signature made and checked with noble. Signing and verification
// are memoised by exact input (both are deterministic), which is what makes thousands of
// seeded runs affordable; nothing is skipped.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fromHex, toHex } from "../../src/encoding/hex.ts";
import type { KeyObject } from "node:crypto";
import { blsKeygen, blsPopProve, blsPublicKey } from "../../src/crypto/bls.ts";
import { ed25519PrivateKey } from "../../src/crypto/ed25519.ts";
import { sha256 } from "../../src/crypto/sha256.ts";
import { makeCard } from "../../src/protocol/card.ts";
import { SoftwareIdentityKey } from "../../src/identity/identity-key.ts";
import { createLibp2pKey } from "../../src/identity/libp2p-key.ts";
import { buildGenesis, type Genesis, meshIdOf } from "../../src/protocol/genesis.ts";
import type { FinalityCertificate } from "../../src/protocol/certificate.ts";
import {
  type ChainCandidates,
  type CheckpointBody,
  checkpointDigestHex,
  epochBounds,
  leavesOf,
  makeCheckpointBody,
  planCheckpoint,
} from "../../src/protocol/checkpoint.ts";
import { leafHash, rootOf } from "../../src/log/merkle.ts";
import { ConsensusEngine, type EngineEvent } from "../../src/consensus/engine.ts";
import { type Evidence, type Signed, signingDigest, signMessage, slotOf, type Unsigned } from "../../src/protocol/consensus-messages.ts";
import { type CheckpointSource, type CheckResult, type Clock, type ConsensusMessage, MemorySignedStore, type SignedStore } from "../../src/consensus/ports.ts";
import { ValidatorSet } from "../../src/protocol/validator-set.ts";
import { prng } from "./prng.ts";

export const GENESIS_MS = Date.parse("2026-01-01T00:00:00.000Z");

// --- the clock ------------------------------------------------------------------------

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  dead: boolean;
}

/** A discrete-event clock: timers run in time order (ties in scheduling order). */
export class SimClock implements Clock {
  #now: number;
  #seq = 0;
  #heap: Timer[] = [];

  constructor(start: number) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  schedule(ms: number, fn: () => void): () => void {
    const t = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, dead: false };
    this.#push(t);
    return () => {
      t.dead = true;
    };
  }
  /** Runs timers until `until` (or until none is left, or stop() says so). */
  run(until: number, stop: () => boolean = () => false): void {
    while (this.#heap.length > 0 && !stop()) {
      const t = this.#pop()!;
      if (t.at > until) {
        this.#push(t);
        break;
      }
      this.#now = t.at;
      if (!t.dead) t.fn();
    }
    this.#now = Math.max(this.#now, until);
  }
  #less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
  #push(t: Timer): void {
    const h = this.#heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  #pop(): Timer | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.#less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.#less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

// --- validators and genesis -------------------------------------------------------------

export interface SimMesh {
  genesis: Genesis;
  mesh: string;
  set: ValidatorSet;
  secrets: Uint8Array[];
  /** Each validator's libp2p Ed25519 key: it signs proposals and votes. */
  voteKeys: KeyObject[];
}

const meshes = new Map<string, SimMesh>();

/** A real genesis of n validators with fixed keys (the same for every run, so memos carry over). */
export async function simMesh(n: number, epochSeconds = 10): Promise<SimMesh> {
  const k = `${n}/${epochSeconds}`;
  const cached = meshes.get(k);
  if (cached) return cached;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-sim-"));
  try {
    const secrets: Uint8Array[] = [];
    const voteKeys: KeyObject[] = [];
    const cards = [];
    for (let i = 0; i < n; i++) {
      const sk = blsKeygen(sha256(`dsm simulation validator ${i}`));
      secrets.push(sk);
      const identity = SoftwareIdentityKey.create(path.join(dir, `id${i}.pem`), false);
      const p2p = createLibp2pKey(path.join(dir, `p2p${i}.key`), false);
      voteKeys.push(ed25519PrivateKey(p2p.privateKey));
      cards.push(await makeCard(identity, { role: "validator", peerId: p2p.peerId, nowMs: GENESIS_MS, blsPub: toHex(blsPublicKey(sk)), blsPop: toHex(blsPopProve(sk)) }));
    }
    const genesis = buildGenesis({ name: `sim-${n}`, genesisTimeMs: GENESIS_MS, epochDurationS: epochSeconds, validators: cards, admission: "open" });
    const m = { genesis, mesh: meshIdOf(genesis), set: new ValidatorSet(genesis), secrets, voteKeys };
    meshes.set(k, m);
    return m;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const signMemo = new Map<string, Uint8Array>();

/** Validator index's signature of a message (signMessage), memoised: both kinds are deterministic. */
export function memoSigner(mesh: SimMesh, index: number): (message: Unsigned) => Uint8Array {
  const keys = { bls: mesh.secrets[index]!, vote: mesh.voteKeys[index]! };
  return (message) => {
    const k = `${index}/${mesh.mesh}/${message.type}/${toHex(signingDigest(message))}`;
    let s = signMemo.get(k);
    if (!s) {
      s = signMessage(message, keys);
      signMemo.set(k, s);
    }
    return s;
  };
}

// --- the log a validator holds ------------------------------------------------------------

export interface SimMicroblock {
  node: string;
  seq: number;
  id: string;
  timestampMs: number;
}

/** A validator's microblocks and checkpoint log, in memory. */
export class MemorySource implements CheckpointSource {
  readonly certs: FinalityCertificate[] = [];
  readonly #leafHashes: Uint8Array[] = [];
  readonly #included = new Map<string, number>();
  readonly #held = new Map<string, SimMicroblock[]>();

  constructor(
    readonly genesis: Genesis,
    readonly mesh: string,
  ) {}

  hold(mb: SimMicroblock): boolean {
    let chain = this.#held.get(mb.node);
    if (!chain) this.#held.set(mb.node, (chain = []));
    if (chain[mb.seq - 1]) return false;
    chain[mb.seq - 1] = mb;
    return true;
  }

  latest(): FinalityCertificate | null {
    return this.certs.at(-1) ?? null;
  }

  #view() {
    return {
      lastIncluded: (node: string) => this.#included.get(node) ?? 0,
      rows: (node: string, from: number, to: number) => (this.#held.get(node) ?? []).slice(from - 1, to).filter((r) => r !== undefined),
      quarantinedFrom: () => undefined,
    };
  }

  propose(epoch: number): CheckpointBody | null {
    const latest = this.latest();
    if (latest && epoch <= latest.checkpoint.epoch) return null;
    const { endMs } = epochBounds(this.genesis, epoch);
    const chains: ChainCandidates[] = [...this.#held.keys()].map((node) => {
      const last = this.#included.get(node) ?? 0;
      const rows: ChainCandidates["rows"] = [];
      const chain = this.#held.get(node)!;
      for (let s = last + 1; chain[s - 1]; s++) rows.push(chain[s - 1]!);
      return { nodeId: node, lastIncluded: last, rows };
    });
    const plan = planCheckpoint(chains, endMs);
    if (plan.ids.length === 0) return null;
    return this.#body(epoch, plan.ranges, plan.ids);
  }

  #body(epoch: number, ranges: Record<string, [number, number]>, ids: string[]): CheckpointBody {
    const latest = this.latest();
    const hashes = [...this.#leafHashes, ...ids.map((id) => leafHash(fromHex(id, 32)))];
    return makeCheckpointBody({ mesh: this.mesh, epoch, prev: latest ? checkpointDigestHex(latest.checkpoint) : null, treeSize: hashes.length, root: rootOf(hashes), ranges });
  }

  /** A different valid body for the same epoch (one microblock fewer), or null. */
  variant(body: CheckpointBody): CheckpointBody | null {
    const ranges = structuredClone(body.ranges);
    const node = Object.keys(ranges).sort().find((k) => ranges[k]![1] > ranges[k]![0]) ?? Object.keys(ranges).sort()[0];
    if (!node) return null;
    if (ranges[node]![1] > ranges[node]![0]) ranges[node]![1]--;
    else if (Object.keys(ranges).length > 1) delete ranges[node];
    else return null;
    const r = leavesOf({ ...body, ranges }, this.#view(), epochBounds(this.genesis, body.epoch).endMs);
    return r.ok ? this.#body(body.epoch, ranges, r.ids) : null;
  }

  check(body: CheckpointBody): CheckResult {
    const r = leavesOf(body, this.#view(), epochBounds(this.genesis, body.epoch).endMs);
    if (!r.ok) return r;
    const expect = this.#body(body.epoch, body.ranges, r.ids);
    if (expect.tree_size !== body.tree_size || expect.root !== body.root || expect.prev !== body.prev) return { ok: false, reason: "tree_size, root or prev do not recompute" };
    return { ok: true };
  }

  commit(cert: FinalityCertificate): void {
    const r = leavesOf(cert.checkpoint, this.#view(), epochBounds(this.genesis, cert.checkpoint.epoch).endMs);
    if (!r.ok) throw new Error(`commit of a body that does not check: ${r.reason}`);
    for (const id of r.ids) this.#leafHashes.push(leafHash(fromHex(id, 32)));
    for (const [node, [, to]] of Object.entries(cert.checkpoint.ranges)) this.#included.set(node, to);
    this.certs.push(cert);
  }
}

// --- the simulation --------------------------------------------------------------------

export type ByzantineKind = "silent" | "slow" | "equivocating" | "wrong-root" | "invalid-signature" | "replay";
export const BYZANTINE_KINDS: ByzantineKind[] = ["silent", "slow", "equivocating", "wrong-root", "invalid-signature", "replay"];

export interface SimOptions {
  n: number;
  seed: number;
  byzantine?: Partial<Record<number, ByzantineKind>>;
  /** Epochs that produce microblocks (0..epochs-1). */
  epochs?: number;
  edges?: number;
  perEpoch?: number;
  epochSeconds?: number;
  roundTimeoutMs?: number;
  /** Before GST: drops and long delays; after: every message within maxDelayMs. */
  gstMs?: number;
  dropRate?: number;
  maxDelayMs?: number;
  /** Validators that are offline until this time (crash-recovery, state kept). */
  offlineUntil?: Partial<Record<number, number>>;
  /** Validators stopped for good at this time (a crash, an operator's `systemctl stop`): nothing in or out after it. */
  stopAt?: Partial<Record<number, number>>;
  /** Run until this long after the last producing epoch closes. */
  tailMs?: number;
}

export interface SimResult {
  mesh: SimMesh;
  honest: number[];
  /** Certificates each honest validator committed, in order. */
  committed: Map<number, FinalityCertificate[]>;
  /** Every certificate that passed full verification anywhere (committed or seen on the wire). */
  certificates: FinalityCertificate[];
  evidence: Evidence[];
  events: { at: number; node: number; event: EngineEvent }[];
  /** Rounds at which honest validators decided, with the epoch whose close started the height. */
  decisions: { round: number; baseEpoch: number }[];
  /** Problems the safety observer found. */
  violations: string[];
  microblocks: number;
  lastEpochEndMs: number;
  finalizedAtMs: Map<number, number>;
  /** Per epoch: when the wire first carried valid signatures of a quorum over one body. */
  quorumSignedAtMs: Map<number, number>;
  /** Honest validators still running at the end (not stopped by stopAt). */
  live: number[];
}

export async function simulate(opts: SimOptions): Promise<SimResult> {
  const n = opts.n;
  const epochSeconds = opts.epochSeconds ?? 10;
  const mesh = await simMesh(n, epochSeconds);
  const rand = prng(opts.seed);
  const T = opts.roundTimeoutMs ?? 1000;
  const gst = GENESIS_MS + (opts.gstMs ?? 0);
  const dropRate = opts.dropRate ?? 0;
  const maxDelay = opts.maxDelayMs ?? 100;
  const epochs = opts.epochs ?? 3;
  const byz = opts.byzantine ?? {};
  const clock = new SimClock(GENESIS_MS);
  const D = epochSeconds * 1000;
  const lastEpochEndMs = GENESIS_MS + epochs * D;

  // The workload: the same microblocks in every run (so bodies repeat and memos hit).
  const edges = Array.from({ length: opts.edges ?? 3 }, (_, i) => toHex(sha256(`sim edge ${i}`)));
  const universe: SimMicroblock[] = [];
  for (const node of edges) {
    let seq = 0;
    for (let e = 0; e < epochs; e++) {
      for (let k = 0; k < (opts.perEpoch ?? 2); k++) {
        seq++;
        universe.push({ node, seq, id: toHex(sha256(`${node}/${seq}`)), timestampMs: GENESIS_MS + e * D + ((k + 1) * D) / (2 * ((opts.perEpoch ?? 2) + 1)) });
      }
    }
  }

  const sources: MemorySource[] = [];
  const engines: (ConsensusEngine | null)[] = [];
  const stores: MemorySignedStore[] = [];
  const committed = new Map<number, FinalityCertificate[]>();
  const events: SimResult["events"] = [];
  const decisions: SimResult["decisions"] = [];
  const finalizedAtMs = new Map<number, number>();
  const wire: Signed[] = [];
  /** When each message of `wire` was sent. */
  const wireTimes: number[] = [];
  const honest = Array.from({ length: n }, (_, i) => i).filter((i) => byz[i] === undefined);
  const offline = (i: number) => clock.now() < (opts.offlineUntil?.[i] ?? 0) || clock.now() >= (opts.stopAt?.[i] ?? Infinity);
  const live = honest.filter((i) => opts.stopAt?.[i] === undefined);

  const delay = () => (clock.now() < gst ? rand() * maxDelay * 10 : rand() * maxDelay);
  const dropped = () => clock.now() < gst && rand() < dropRate;
  const wireCopy = (m: unknown) => JSON.parse(JSON.stringify(m));

  function deliver(to: number, msg: unknown, extra = 0): void {
    if (dropped()) return;
    const copy = wireCopy(msg);
    clock.schedule(delay() + extra, () => {
      if (offline(to) || !engines[to]) return;
      engines[to]!.receive(copy);
    });
  }

  function sendAll(from: number, msg: unknown, extra = 0): void {
    if (offline(from)) return;
    if (typeof msg === "object" && msg !== null && ["P", "V", "S"].includes((msg as { type: string }).type)) {
      wire.push(msg as Signed);
      wireTimes.push(clock.now());
    }
    for (let to = 0; to < n; to++) if (to !== from) deliver(to, msg, extra);
  }

  for (let i = 0; i < n; i++) {
    const source = new MemorySource(mesh.genesis, mesh.mesh);
    sources.push(source);
    stores.push(new MemorySignedStore());
    committed.set(i, []);
  }
  // Every validator receives each microblock shortly after it is made.
  for (const mb of universe) {
    for (let i = 0; i < n; i++) {
      clock.schedule(mb.timestampMs - GENESIS_MS + rand() * 500, () => {
        if (sources[i]!.hold(mb)) engines[i]?.logChanged();
      });
    }
  }

  function makeEngine(i: number, kind: ByzantineKind | undefined): ConsensusEngine {
    let source: CheckpointSource = sources[i]!;
    if (kind === "wrong-root") {
      const real = sources[i]!;
      source = {
        latest: () => real.latest(),
        propose: (e) => {
          const b = real.propose(e);
          return b ? { ...b, root: toHex(sha256(`forged root ${b.root}`)) } : null;
        },
        check: () => ({ ok: true }),
        commit: (c) => {
          if (real.check(c.checkpoint).ok) real.commit(c);
        },
      };
    }
    const received: Signed[] = [];
    const engine = new ConsensusEngine({
      genesis: mesh.genesis,
      mesh: mesh.mesh,
      validators: mesh.set,
      index: i,
      sign: memoSigner(mesh, i),
      source,
      store: stores[i]!,
      clock,
      roundTimeoutMs: T,
      maxClockSkewMs: 0,
      transport: {
        broadcast: (m) => outbound(i, kind, m as ConsensusMessage, received),
        requestCertificates: (after) => {
          if (offline(i)) return;
          const peer = honest[Math.floor(rand() * honest.length)]!;
          for (const c of sources[peer]!.certs) if (c.checkpoint.epoch > after) deliver(i, c);
        },
        fetchMicroblocks: (ranges) => {
          for (const [node, [from, to]] of Object.entries(ranges)) {
            for (const mb of universe) {
              if (mb.node === node && mb.seq >= from && mb.seq <= to && mb.timestampMs <= clock.now()) {
                clock.schedule(delay(), () => {
                  if (sources[i]!.hold(mb)) engines[i]?.logChanged();
                });
              }
            }
          }
        },
      },
      onEvent: (event) => {
        events.push({ at: clock.now(), node: i, event });
        if (kind !== undefined) return;
        if (event.kind === "finalized") {
          committed.get(i)!.push(event.certificate);
          if (!finalizedAtMs.has(event.certificate.checkpoint.epoch)) finalizedAtMs.set(event.certificate.checkpoint.epoch, clock.now());
        }
        if (event.kind === "decided") decisions.push({ round: event.round, baseEpoch: event.baseEpoch });
      },
    });
    if (kind === "replay") {
      const receive = engine.receive.bind(engine);
      engine.receive = (v: unknown) => {
        if (typeof v === "object" && v !== null && ["P", "V", "S"].includes((v as { type: string }).type)) received.push(v as Signed);
        receive(v);
      };
    }
    return engine;
  }

  /** What leaves validator i: honest traffic, or its byzantine twist on it. */
  function outbound(i: number, kind: ByzantineKind | undefined, m: ConsensusMessage, received: Signed[]): void {
    switch (kind) {
      case undefined:
      case "wrong-root":
        return sendAll(i, m);
      case "slow":
        return sendAll(i, m, 2 * T + rand() * 2 * T);
      case "invalid-signature": {
        if (m.type === "F" || m.type === "E") return sendAll(i, m);
        const forged = { ...m } as Signed;
        // Garbage of the right size (BLS for S, Ed25519 for P and V), so the schema lets it through to the signature check.
        if (rand() < 0.5) forged.sig = (toHex(sha256(`garbage ${rand()}`)) + toHex(sha256(`more ${rand()}`)) + toHex(sha256(`end ${rand()}`))).slice(0, m.type === "S" ? 192 : 128);
        else forged.validator = honest[Math.floor(rand() * honest.length)]!; // claims an honest validator's name with its own signature
        return sendAll(i, forged);
      }
      case "replay": {
        sendAll(i, m);
        for (let k = 0; k < 3 && received.length > 0; k++) sendAll(i, received[Math.floor(rand() * received.length)]!);
        return;
      }
      case "equivocating": {
        if (m.type === "F" || m.type === "E") return sendAll(i, m);
        const twin = twinOf(i, m as Signed);
        if (offline(i)) return;
        wire.push(m as Signed);
        wireTimes.push(clock.now());
        if (twin) {
          wire.push(twin);
          wireTimes.push(clock.now());
        }
        // Half get one, half the other; gossip relays each to the rest a little later.
        for (let to = 0; to < n; to++) {
          if (to === i) continue;
          const first = twin && to % 2 === 1 ? twin : m;
          deliver(to, first);
          if (twin) deliver(to, first === twin ? m : twin, T / 2 + rand() * T);
        }
        return;
      }
      case "silent":
        return;
    }
  }

  /** A second, conflicting message for the same slot, properly signed by validator i. */
  function twinOf(i: number, m: Signed): Signed | null {
    const sign = memoSigner(mesh, i);
    const seal = (u: Unsigned) => ({ ...u, sig: toHex(sign(u)) }) as Signed;
    const src = sources[i]!;
    if (m.type === "P" || m.type === "S") {
      const alt = src.variant(m.checkpoint);
      if (!alt) return null;
      const { sig: _s, ...u } = m;
      return seal({ ...u, checkpoint: alt } as Unsigned);
    }
    const { sig: _s, ...u } = m;
    return seal({ ...u, checkpoint: m.checkpoint === null ? toHex(sha256(`nothing ${m.round}`)) : null } as Unsigned);
  }

  for (let i = 0; i < n; i++) {
    const kind = byz[i];
    if (kind === "silent") {
      engines.push(null);
      continue;
    }
    engines.push(makeEngine(i, kind));
  }
  for (let i = 0; i < n; i++) {
    const at = opts.offlineUntil?.[i];
    if (at === undefined) engines[i]?.start();
    else clock.schedule(at - GENESIS_MS, () => engines[i]?.start());
    const stop = opts.stopAt?.[i];
    if (stop !== undefined) clock.schedule(stop - GENESIS_MS, () => engines[i]?.stop());
  }

  const endMs = lastEpochEndMs + (opts.tailMs ?? 30_000);
  const target = Math.max(...universe.map((u) => u.timestampMs));
  const allDone = () =>
    live.every((i) => {
      const c = sources[i]!.latest();
      return c !== null && c.checkpoint.tree_size === universe.length && epochBounds(mesh.genesis, c.checkpoint.epoch).endMs > target;
    });
  clock.run(endMs, allDone);
  for (const e of engines) e?.stop();

  // --- the safety observer ---
  const violations: string[] = [];
  const certificates: FinalityCertificate[] = [];
  for (const i of honest) certificates.push(...committed.get(i)!);
  const byEpoch = new Map<number, string>();
  const byPrev = new Map<string, string>();
  for (const c of certificates) {
    if (mesh.set.quorumProblem(c.signers, fromHex(checkpointDigestHex(c.checkpoint), 32), c.agg_sig) !== null) violations.push(`an honest validator committed an invalid certificate for epoch ${c.checkpoint.epoch}`);
    const d = checkpointDigestHex(c.checkpoint);
    const e = byEpoch.get(c.checkpoint.epoch);
    if (e !== undefined && e !== d) violations.push(`two certified bodies for epoch ${c.checkpoint.epoch}`);
    byEpoch.set(c.checkpoint.epoch, d);
    const p = byPrev.get(c.checkpoint.prev);
    if (p !== undefined && p !== d) violations.push(`the log forked after ${c.checkpoint.prev.slice(0, 12)}`);
    byPrev.set(c.checkpoint.prev, d);
  }
  // Could the adversary assemble a second certificate? Count, per epoch and body, the
  // honest validators whose valid signature went over the wire, plus every byzantine one.
  const byzCount = n - honest.length;
  const honestSigs = new Map<number, Map<string, Set<number>>>();
  for (const m of wire) {
    if (m.type !== "S" || byz[m.validator] !== undefined) continue;
    if (!mesh.set.verify(m.validator, signingDigest(m), m.sig)) continue;
    const per = honestSigs.get(m.checkpoint.epoch) ?? new Map<string, Set<number>>();
    honestSigs.set(m.checkpoint.epoch, per);
    const d = slotOf(m).value;
    const s = per.get(d) ?? new Set<number>();
    per.set(d, s);
    s.add(m.validator);
  }
  // When a quorum's signatures over one body had been sent (any validator's, verified).
  const quorumSignedAtMs = new Map<number, number>();
  const signedBy = new Map<string, Set<number>>();
  for (const [k, m] of wireTimes.entries()) {
    const msg = wire[k]!;
    if (msg.type !== "S" || !mesh.set.verify(msg.validator, signingDigest(msg), msg.sig)) continue;
    const d = slotOf(msg).value;
    const s = signedBy.get(d) ?? new Set<number>();
    signedBy.set(d, s);
    s.add(msg.validator);
    if (s.size === mesh.set.quorum && !quorumSignedAtMs.has(msg.checkpoint.epoch)) quorumSignedAtMs.set(msg.checkpoint.epoch, m);
  }
  for (const [epoch, per] of honestSigs) {
    const certifiable = [...per.values()].filter((s) => s.size + byzCount >= mesh.set.quorum).length;
    if (per.size > 1) violations.push(`honest validators signed ${per.size} different bodies for epoch ${epoch}`);
    if (certifiable > 1) violations.push(`the adversary could certify ${certifiable} bodies for epoch ${epoch}`);
  }
  const evidence = events.filter((e) => honest.includes(e.node) && e.event.kind === "evidence").map((e) => (e.event as { evidence: Evidence }).evidence);
  return { mesh, honest, committed, certificates, evidence, events, decisions, violations, microblocks: universe.length, lastEpochEndMs, finalizedAtMs, quorumSignedAtMs, live };
}

/** A validator's log holding `count` microblocks of one node, and two valid, different bodies for epoch 0. */
export function twoBodies(m: SimMesh, tag: string, count: number): { src: MemorySource; a: CheckpointBody; b: CheckpointBody } {
  const src = new MemorySource(m.genesis, m.mesh);
  const node = toHex(sha256(`node ${tag}`));
  for (let s = 1; s <= count; s++) src.hold({ node, seq: s, id: toHex(sha256(`${tag}/${s}`)), timestampMs: GENESIS_MS + s });
  const a = src.propose(0)!;
  return { src, a, b: src.variant(a)! };
}

/** One engine with a hand-wired network: everything it sends is collected in `sent` or handed to it. */
export function loneEngine(
  m: SimMesh,
  index: number,
  source: CheckpointSource,
  store: SignedStore,
  clock: Clock,
  sent: ConsensusMessage[] | ((x: ConsensusMessage) => void),
  onEvent?: (e: EngineEvent) => void,
): ConsensusEngine {
  const out = typeof sent === "function" ? sent : (x: ConsensusMessage) => void sent.push(x);
  return new ConsensusEngine({
    genesis: m.genesis,
    mesh: m.mesh,
    validators: m.set,
    index,
    sign: memoSigner(m, index),
    source,
    store,
    clock,
    roundTimeoutMs: 1000,
    maxClockSkewMs: 0,
    transport: { broadcast: out, requestCertificates: () => {}, fetchMicroblocks: () => {} },
    onEvent,
  });
}

/** Validators `from` push body b through one round at engine: proposal, prevotes, precommits. */
export function pushRound(m: SimMesh, engine: ConsensusEngine, round: number, proposer: number, from: number[], b: CheckpointBody): void {
  const seal = (i: number, u: Unsigned) => ({ ...u, sig: toHex(memoSigner(m, i)(u)) });
  engine.receive(seal(proposer, { v: 1, type: "P", mesh: m.mesh, round, valid_round: -1, checkpoint: b, validator: proposer }));
  for (const phase of ["prevote", "precommit"] as const) {
    for (const i of from) engine.receive(seal(i, { v: 1, type: "V", mesh: m.mesh, prev: b.prev, round, phase, checkpoint: checkpointDigestHex(b), validator: i }));
  }
}
