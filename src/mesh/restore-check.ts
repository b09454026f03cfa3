// Restore safety (issue 14). A data dir restored from a backup holds an older chain than the
// one its node signed; signing again would reuse seq numbers the mesh holds, and validators
// would quarantine the node mesh-wide for the fork. So before the first signature of a
// process, a node asks the peers it can reach for the head of its own chain (/dsm/head/1,
// head.ts); if one proves a later seq than the ledger's, it refuses to sign and names the fix,
// `dsm recover`, which fetches the chain back through /dsm/sync/1.
//
// Who checks: `dsm run` once the mesh is up (and it offers its own chain to the mesh only
// after a peer answered); `dsm ingest`, `emit` and `mitigation` without a daemon ask the
// peers of the config and genesis themselves, for at most ONE_SHOT_TIMEOUT_MS. With a
// daemon on the data dir they trust its check, which it writes to HEAD_STATE_FILE. A node
// with no peers to ask (a local mesh) reads one small file and nothing else.
//
// A refusal is written to HEAD_STATE_FILE and stays until the ledger reaches the mesh's
// seq (dsm recover clears it): peers that become unreachable do not make it safe to sign.
import { isDsmDaemon } from "../runtime/daemon-pid.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import { KeyCertRejected, Receiver } from "../chain/accept.ts";
import { ExchangeLineError, parseExchangeLine } from "../chain/exchange.ts";
import { readSecretFile, writeFileAtomic } from "../fs/files.ts";
import type { DSMNode } from "../node/node.ts";
import { mustAttest } from "../protocol/genesis.ts";
import { MicroblockRejected } from "../protocol/microblock.ts";
import type { MeshContext } from "./context.ts";
import { answerHead, checkHeadAnswer, HEAD_ANSWER_BYTES, HEAD_PROTOCOL } from "./head.ts";
import type { MeshNet } from "./p2p.ts";
import { SYNC_PROTOCOL } from "./sync.ts";

/** The last head check of this data dir: the daemon's, or a refusal by anyone. */
export const HEAD_STATE_FILE = "head-check.json";
/** A one-shot command waits this long for any peer to answer, then signs (no peer reachable). */
export const ONE_SHOT_TIMEOUT_MS = 2000;
/** A one-shot command waits this long for a daemon still checking. */
const DAEMON_CHECK_WAIT_MS = 15_000;
/** The daemon waits this long for a first peer before it lets one-shot commands sign. */
const DAEMON_NO_PEER_MS = 5000;
/** How long the daemon gives a peer to answer, and how many rounds of no answer before it goes on. */
const DAEMON_ASK_MS = 5000;
const DAEMON_ROUNDS = 3;

export interface HeadState {
  v: 1;
  /** checking: a daemon is asking; passed: it may sign; refused: the mesh holds a later seq. */
  state: "checking" | "passed" | "refused";
  pid: number;
  local_seq: number;
  /** The highest seq of this node's chain a peer proved (null: none answered). */
  mesh_seq: number | null;
  peer: string | null;
  at: string;
  detail: string;
}

/** The data dir looks restored from an older copy: signing would fork the chain. */
export class RestoreRefused extends Error {
  override name = "RestoreRefused";
}

/** The one line every refusal says, naming the fix. */
export function restoredMessage(localSeq: number, meshSeq: number, peer: string | null): string {
  return `this data dir looks restored from an older copy: its chain of this node ends at seq ${localSeq}, but the mesh holds seq ${meshSeq}${peer ? ` (proven by peer ${peer})` : ""}; signing now would fork the chain and get the node quarantined. Run dsm recover (with dsm run stopped) to fetch the node's own chain back from the validators, then go on`;
}

function divergedMessage(seq: number, peer: string): string {
  return `this node's chain differs from the mesh's: peer ${peer} proves another microblock of this node at seq ${seq} than this ledger holds (a restored data dir that signed before it was checked); not signing, so the fork stays out of the mesh. dsm recover cannot repair this: the node needs a new identity (dsm init --force) or a quarantine lift`;
}

export function readHeadState(dir: string): HeadState | null {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(dir, HEAD_STATE_FILE), "utf8")) as HeadState;
    return s?.v === 1 && ["checking", "passed", "refused"].includes(s.state) && Number.isSafeInteger(s.pid) && Number.isSafeInteger(s.local_seq) ? s : null;
  } catch {
    return null;
  }
}

function writeHeadState(dir: string, s: Omit<HeadState, "v" | "pid" | "at">): void {
  const state: HeadState = { v: 1, pid: process.pid, at: new Date().toISOString(), ...s };
  writeFileAtomic(path.join(dir, HEAD_STATE_FILE), JSON.stringify(state, null, 2) + "\n", { overwrite: true, mode: 0o600 });
}

export function clearHeadState(dir: string): void {
  fs.rmSync(path.join(dir, HEAD_STATE_FILE), { force: true });
}

/** A refusal still in force: written by anyone, and the ledger has not reached the mesh's seq since. */
function standingRefusal(node: DSMNode, s: HeadState | null): HeadState | null {
  if (s?.state !== "refused" || s.mesh_seq === null || typeof s.detail !== "string") return null;
  return localSeq(node) < s.mesh_seq ? s : null;
}

/**
 * The record of a refusal. A diverged chain (another microblock at a seq this ledger holds)
 * is recorded as ending past any seq: no amount of fetching makes it safe to sign.
 */
function writeRefusal(dir: string, v: HeadVerdict): void {
  const behind = v.best !== null && v.best.seq > v.local;
  const mesh_seq = behind ? v.best!.seq : Number.MAX_SAFE_INTEGER;
  const peer = behind ? v.best!.peer : (v.answered[0]?.peer ?? null);
  writeHeadState(dir, { state: "refused", local_seq: v.local, mesh_seq, peer, detail: v.refusal! });
}

/** A live dsm process other than this one (a crashed daemon's pid may since be something else's). */
/** The pid of a dsm run on this data dir (its run.json or its head check), or null. */
export function runningDaemonPid(dir: string, s: HeadState | null = readHeadState(dir)): number | null {
  if (s && s.state !== "refused" && isDsmDaemon(s.pid)) return s.pid;
  try {
    const pid = (JSON.parse(fs.readFileSync(path.join(dir, "run.json"), "utf8")) as { pid?: unknown }).pid;
    return isDsmDaemon(pid) ? (pid as number) : null;
  } catch {
    return null;
  }
}

function localSeq(node: DSMNode): number {
  return node.ledger.head(node.mesh, node.nodeId)?.seq ?? 0;
}

/**
 * The peers a process without a daemon can ask: gossip.bootstrap_nodes, and the addresses
 * the genesis cards of the other validators list, as multiaddrs with /p2p/<peer id>.
 */
export function meshPeers(node: DSMNode): string[] {
  const out = new Set(node.config.gossip.bootstrap_nodes.split(",").map((s) => s.trim()).filter((s) => s !== ""));
  for (const v of node.genesis.validators) {
    if (v.node_id === node.nodeId) continue;
    for (const a of v.addrs) out.add(a.includes("/p2p/") ? a : `${a}/p2p/${v.peer_id}`);
  }
  if (out.size === 0) return [];
  // This node's own address (a bootstrap list shared by every node) is no peer.
  const own = node.card().peer_id;
  return [...out].filter((a) => !a.endsWith(`/p2p/${own}`));
}

export interface PeerHead {
  peer: string;
  seq: number;
  id: string | null;
}

export interface HeadVerdict {
  /** Peers whose answer verified, and those that did not answer or failed the checks (with why). */
  answered: PeerHead[];
  failed: { peer: string; reason: string }[];
  /** The highest proven head, if any peer answered. */
  best: PeerHead | null;
  local: number;
  /** Why signing must not go on, or null. */
  refusal: string | null;
}

/** Asks each peer for this node's head, within timeoutMs in all; only verified answers count. */
export async function askHeads(net: MeshNet, node: DSMNode, peerIds: string[], timeoutMs: number): Promise<HeadVerdict> {
  const until = Date.now() + timeoutMs;
  const answered: PeerHead[] = [];
  const failed: { peer: string; reason: string }[] = [];
  await Promise.all(
    peerIds.map(async (peer) => {
      try {
        const answer = await net.request(peer, HEAD_PROTOCOL, { node_id: node.nodeId }, Math.max(1, until - Date.now()), HEAD_ANSWER_BYTES);
        const proof = checkHeadAnswer(node, answer);
        if (proof.ok) answered.push({ peer, seq: proof.seq, id: proof.id });
        else failed.push({ peer, reason: proof.reason });
      } catch (e) {
        failed.push({ peer, reason: ((e as Error).message ?? String(e)).split("\n")[0]! });
      }
    }),
  );
  return judge(node, answered, failed);
}

/** The verdict on verified answers: refuse when one proves a later seq, or another microblock at a seq this ledger holds. */
export function judge(node: DSMNode, answered: PeerHead[], failed: { peer: string; reason: string }[] = []): HeadVerdict {
  const local = localSeq(node);
  let best: PeerHead | null = null;
  for (const a of answered) if (!best || a.seq > best.seq) best = a;
  let refusal: string | null = null;
  if (best && best.seq > local) refusal = restoredMessage(local, best.seq, best.peer);
  else {
    for (const a of answered) {
      if (a.seq === 0) continue;
      const mine = node.ledger.bySeq(node.mesh, node.nodeId, a.seq);
      if (mine && mine.id !== a.id) {
        refusal = divergedMessage(a.seq, a.peer);
        break;
      }
    }
  }
  return { answered, failed, best, local, refusal };
}

/**
 * A short-lived libp2p host for a process without a daemon (one-shot commands, dsm
 * recover): the node's own key and card, so validators admit it as the node it is; no
 * listening address (it only dials out; the daemon's port stays free). It answers
 * /dsm/head/1 like a daemon, and on a mesh that attests this node it answers enrollment and
 * attestation challenges (a validator that admits a new peer challenges it at once) and
 * close() waits for them: a challenge left unanswered would count as a missed attestation.
 */
export async function openShortLived(node: DSMNode, addrs: string[]): Promise<{ net: MeshNet; peerIds: string[]; close: () => Promise<void> }> {
  // Loaded here, not at the top: a node with no peers to ask never pays for libp2p.
  const [{ CARD_PROTOCOL, MeshNet }, { ATTEST_PROTOCOL, Attestation }, { admitCard }] = await Promise.all([import("./p2p.ts"), import("./attestation.ts"), import("./admission.ts")]);
  const card = node.card();
  const net = await MeshNet.start({
    privateKey: new Uint8Array(readSecretFile(node.layout.libp2pKey)),
    listen: [],
    bootstrap: [],
    maxMessageBytes: node.config.gossip.max_message_bytes,
    cards: { own: card, admit: (c, peerId) => admitCard(node, c, peerId), timeoutMs: 5000 },
  });
  const validators = new Set(node.genesis.validators.map((v) => v.peer_id));
  const attested = node.genesis.attestation.required && (card.tpm || mustAttest(node.genesis, node.nodeId));
  const cardAsked = new Set<string>();
  const challenged = new Set<string>();
  if (attested) {
    // The same card, but noting who asked: a validator that asks for it is about to challenge.
    await net.node.unhandle(CARD_PROTOCOL);
    await net.serve(CARD_PROTOCOL, (_req, peer) => {
      cardAsked.add(peer);
      return card;
    });
    const counting = {
      serve: (protocol: string, handler: (req: unknown, peer: string) => unknown, max?: number) =>
        net.serve(protocol, async (req, peer) => {
          try {
            return await handler(req, peer);
          } finally {
            if (protocol === ATTEST_PROTOCOL) challenged.add(peer);
          }
        }, max),
    };
    // Only the answering side of Attestation runs (no validator: it challenges nobody).
    await new Attestation({ net: counting, node, log: () => {}, stopping: () => false } as unknown as MeshContext, null, node.enrollments, async () => {}).serve();
  }
  await net.serve(HEAD_PROTOCOL, (req) => answerHead(node, req), 4096);
  const peerIds: string[] = [];
  for (const addr of addrs) {
    try {
      const id = /\/p2p\/([^/]+)$/.exec(addr)?.[1];
      if (!id) continue;
      await net.addBootstrap(addr);
      if (!peerIds.includes(id)) peerIds.push(id);
    } catch {
      // a malformed address is no peer
    }
  }
  const close = async () => {
    if (attested) {
      const until = Date.now() + node.config.attestation.timeout_s * 1000;
      await Bun.sleep(200); // a validator's card request may trail the answers it sent
      while (Date.now() < until && [...cardAsked].some((p) => validators.has(p) && !challenged.has(p))) await Bun.sleep(50);
      if (challenged.size > 0) await Bun.sleep(100); // the last answer's frame on its way
    }
    await net.stop().catch(() => {});
  };
  return { net, peerIds, close };
}

/**
 * Before the first signature of a one-shot command (ingest, emit, mitigation): throws
 * RestoreRefused when this data dir must not sign. A standing refusal refuses; with a
 * daemon on the data dir, its check counts (waited for while it runs); otherwise, with
 * peers to ask, they are asked for at most timeoutMs, and no answer means go on.
 */
export async function beforeSigning(node: DSMNode, opts: { timeoutMs?: number; warn?: (line: string) => void } = {}): Promise<void> {
  const dir = node.layout.dir;
  let s = readHeadState(dir);
  const standing = standingRefusal(node, s);
  if (standing) throw new RestoreRefused(standing.detail);
  const addrs = meshPeers(node);
  if (addrs.length === 0 && s === null) return;
  if (runningDaemonPid(dir, s) !== null) {
    for (const until = Date.now() + DAEMON_CHECK_WAIT_MS; s?.state === "checking" && isDsmDaemon(s.pid) && Date.now() < until; s = readHeadState(dir)) await Bun.sleep(100);
    const after = standingRefusal(node, s);
    if (after) throw new RestoreRefused(after.detail);
    if (s?.state === "checking") opts.warn?.(`the dsm run on this data dir has not finished its head check within ${DAEMON_CHECK_WAIT_MS / 1000} s: signing anyway`);
    return;
  }
  if (addrs.length === 0) return;
  const { net, peerIds, close } = await openShortLived(node, addrs);
  let verdict: HeadVerdict;
  try {
    verdict = await askHeads(net, node, peerIds, opts.timeoutMs ?? ONE_SHOT_TIMEOUT_MS);
  } finally {
    await close();
  }
  if (verdict.refusal) {
    writeRefusal(dir, verdict);
    throw new RestoreRefused(verdict.refusal);
  }
}

/**
 * The daemon's head check (dsm run): serves /dsm/head/1, and once peers are admitted asks
 * them for this node's head before the daemon offers its own chain to the mesh. The state
 * file tells one-shot commands on the same data dir what it found.
 */
export class HeadCheck {
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  #refused = false;
  /** The daemon offers this node's chain (MicroblockGossip) only once this is true. */
  passed = false;

  constructor(private readonly ctx: MeshContext) {}

  serve(): Promise<void> {
    return this.ctx.net.serve(HEAD_PROTOCOL, (req) => answerHead(this.ctx.node, req), 4096);
  }

  /** Starts checking; onPassed runs once signing is safe and a peer has answered (or none ever does). */
  start(onPassed: () => void): void {
    const { node, log } = this.ctx;
    const dir = node.layout.dir;
    const standing = standingRefusal(node, readHeadState(dir));
    if (standing) {
      this.#refused = true;
      log("error", standing.detail, { local_seq: standing.local_seq, mesh_seq: standing.mesh_seq });
      return;
    }
    writeHeadState(dir, { state: "checking", local_seq: localSeq(node), mesh_seq: null, peer: null, detail: "asking the mesh for this node's head" });
    const started = Date.now();
    let rounds = 0;
    let toldNoPeer = false;
    const pass = (answered: number, best: PeerHead | null, detail: string) => {
      writeHeadState(dir, { state: "passed", local_seq: localSeq(node), mesh_seq: best?.seq ?? null, peer: best?.peer ?? null, detail });
      if (answered > 0 || rounds >= DAEMON_ROUNDS) {
        this.passed = true;
        log("info", `head check: ${detail}`, { answered, mesh_seq: best?.seq ?? null });
        onPassed();
      }
    };
    const tick = async () => {
      if (this.#stopped) return;
      const { net } = this.ctx;
      const connected = new Set(net.peers());
      const peers = [...net.cards.keys()].filter((p) => connected.has(p));
      if (peers.length === 0) {
        if (!toldNoPeer && Date.now() - started >= DAEMON_NO_PEER_MS) {
          toldNoPeer = true;
          // One-shot commands may sign (no peer is reachable); this daemon still checks with the first peer before it offers its chain.
          writeHeadState(dir, { state: "passed", local_seq: localSeq(node), mesh_seq: null, peer: null, detail: `no peer reachable within ${DAEMON_NO_PEER_MS / 1000} s` });
          log("info", `head check: no peer reachable within ${DAEMON_NO_PEER_MS / 1000} s: signing allowed; checked again when a first peer is admitted`);
        }
        this.#timer = setTimeout(() => void tick(), 250);
        return;
      }
      const v = await askHeads(net, node, peers, DAEMON_ASK_MS);
      if (this.#stopped) return;
      if (v.refusal) {
        this.#refused = true;
        writeRefusal(dir, v);
        log("error", v.refusal, { local_seq: v.local, mesh_seq: v.best?.seq ?? null });
        return;
      }
      rounds++;
      if (v.answered.length > 0) return pass(v.answered.length, v.best, `${v.answered.length} of ${peers.length} peers answered; none holds a later seq of this node's chain than seq ${v.local}`);
      if (rounds >= DAEMON_ROUNDS) return pass(0, null, `no peer answered in ${DAEMON_ROUNDS} rounds (${v.failed[0]?.reason ?? "no reason given"}): going on`);
      this.#timer = setTimeout(() => void tick(), 2000);
    };
    void tick();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    // A refusal outlives the daemon; what it said about signing does not.
    const s = readHeadState(this.ctx.node.layout.dir);
    if (!this.#refused && s?.pid === process.pid && s.state !== "refused") clearHeadState(this.ctx.node.layout.dir);
  }
}

export interface RecoverResult {
  node_id: string;
  mesh: string;
  /** This ledger's head before and after. */
  local_seq_before: number;
  head: { seq: number; id: string | null };
  /** The highest seq a peer proved, and which peer. */
  mesh_head: { seq: number; id: string | null; peer: string } | null;
  recovered: number;
  /** Recovered microblocks that came without their payload (withheld by this node's privacy.withhold_payloads). */
  payloads_missing: number;
  peers_asked: number;
  peers_answered: number;
  fetched_from: string[];
}

export class RecoverError extends Error {
  override name = "RecoverError";
}

/**
 * dsm recover: this node's own chain from the seq after its head up to the highest head a
 * peer proves, fetched with /dsm/sync/1 and stored through the Receiver (every rule a
 * received microblock passes: signature, key certificate, chain link, payload hash). A
 * refusal on record is cleared once the ledger reaches the mesh's seq.
 */
export async function recoverChain(node: DSMNode, opts: { timeoutMs: number }): Promise<RecoverResult> {
  const dir = node.layout.dir;
  const daemon = runningDaemonPid(dir);
  if (daemon !== null) throw new RecoverError(`dsm run (pid ${daemon}) is using this data dir: stop it first (systemctl stop dsm), run dsm recover, then start it again`);
  const addrs = meshPeers(node);
  if (addrs.length === 0) throw new RecoverError("no peer to recover from: this mesh's genesis lists no validator addresses and gossip.bootstrap_nodes is empty (set it, or DSM_GOSSIP_BOOTSTRAP_NODES, to a validator's /ip4/.../tcp/.../p2p/... address)");
  const before = localSeq(node);
  const { net, peerIds, close } = await openShortLived(node, addrs);
  try {
    // Peers are dialled in the background: asked again until one answers or time is up.
    const until = Date.now() + opts.timeoutMs;
    let v = await askHeads(net, node, peerIds, Math.min(opts.timeoutMs, 5000));
    while (v.answered.length === 0 && Date.now() < until) {
      await Bun.sleep(250);
      v = await askHeads(net, node, peerIds, Math.max(1, Math.min(5000, until - Date.now())));
    }
    if (v.answered.length === 0) throw new RecoverError(`no peer answered within ${opts.timeoutMs / 1000} s (${v.failed.map((f) => `${f.peer.slice(0, 16)}…: ${f.reason}`).join("; ") || "none reachable"}): nothing recovered`);
    if (v.refusal && !(v.best && v.best.seq > v.local)) throw new RecoverError(v.refusal);
    const target = v.best!;
    const result: RecoverResult = {
      node_id: node.nodeId,
      mesh: node.mesh,
      local_seq_before: before,
      head: { seq: before, id: node.ledger.head(node.mesh, node.nodeId)?.id ?? null },
      mesh_head: { seq: target.seq, id: target.id, peer: target.peer },
      recovered: 0,
      payloads_missing: 0,
      peers_asked: peerIds.length,
      peers_answered: v.answered.length,
      fetched_from: [],
    };
    if (target.seq > before) await fetchChain(node, net, v, target.seq, result);
    const head = node.ledger.head(node.mesh, node.nodeId);
    result.head = { seq: head?.seq ?? 0, id: head?.id ?? null };
    if (result.head.seq < target.seq) {
      throw new RecoverError(`recovered ${result.recovered} microblocks, up to seq ${result.head.seq}, but the mesh holds seq ${target.seq}: run dsm recover again (the refusal to sign stays until the chain is complete)`);
    }
    const again = judge(node, v.answered);
    if (again.refusal) throw new RecoverError(again.refusal);
    // A refusal on record was proven too: the peers reached now may lag behind the one that proved it.
    const standing = standingRefusal(node, readHeadState(dir));
    if (standing) throw new RecoverError(standing.mesh_seq === Number.MAX_SAFE_INTEGER ? standing.detail : `peer ${standing.peer ?? "?"} proved seq ${standing.mesh_seq} of this node before, but the peers that answered now hold only up to seq ${target.seq}: run dsm recover again when that peer is reachable`);
    clearHeadState(dir);
    return result;
  } finally {
    await close();
  }
}

/** /dsm/sync/1 chunks from the peers with the highest heads first, each stored through the Receiver. */
async function fetchChain(node: DSMNode, net: MeshNet, v: HeadVerdict, target: number, result: RecoverResult): Promise<void> {
  const receiver = new Receiver(node.ledger, node.policy, { maxClockSkewMs: node.config.mesh.max_clock_skew_s * 1000 });
  const sources = [...v.answered].filter((a) => a.seq > v.local).sort((a, b) => b.seq - a.seq);
  let lastError = "";
  for (const src of sources) {
    for (;;) {
      const from = localSeq(node) + 1;
      if (from > target) return;
      let lines: string[];
      try {
        const answer = (await net.request(src.peer, SYNC_PROTOCOL, { node_id: node.nodeId, from_seq: from }, 10_000, 2 * 1024 * 1024)) as { lines?: unknown };
        if (typeof answer.lines !== "string" || answer.lines === "") break;
        lines = answer.lines.split("\n").filter((l) => l !== "");
      } catch (e) {
        lastError = `peer ${src.peer.slice(0, 16)}…: ${(e as Error).message.split("\n")[0]}`;
        break;
      }
      const stored = storeLines(node, receiver, lines, result);
      if (!result.fetched_from.includes(src.peer)) result.fetched_from.push(src.peer);
      if (stored.error) lastError = `peer ${src.peer.slice(0, 16)}…: ${stored.error}`;
      if (stored.error || stored.count === 0) break;
    }
  }
  if (localSeq(node) < target && lastError) throw new RecoverError(`recovered ${result.recovered} microblocks, up to seq ${localSeq(node)} of ${target}: ${lastError}`);
}

/** One chunk in one transaction; a line that fails a rule ends it (what came before stays: each was checked). */
function storeLines(node: DSMNode, receiver: Receiver, lines: string[], result: RecoverResult): { count: number; error: string | null } {
  let count = 0;
  let error: string | null = null;
  receiver.batch(() => {
    for (const [i, line] of lines.entries()) {
      try {
        const rec = parseExchangeLine(line, `sync line ${i + 1}`);
        if (rec.kind === "key_certificate") {
          receiver.acceptKeyCert(rec.certificate);
          continue;
        }
        if ((rec.microblock as { node_id?: unknown }).node_id !== node.nodeId) throw new ExchangeLineError(`sync line ${i + 1}`, "a microblock of another node");
        const out = receiver.acceptMicroblock(rec.microblock, rec.payload ?? undefined);
        if (out.status === "fork") throw new MicroblockRejected("chain", `seq ${out.microblock.seq}: the mesh holds another microblock at a seq this ledger has (recorded as fork evidence)`);
        if (out.status === "gap") throw new MicroblockRejected("chain", `seq ${out.microblock.seq} does not follow this ledger's head seq ${out.have}`);
        if (out.status === "stored") {
          count++;
          result.recovered++;
          if (rec.payload === null) result.payloads_missing++;
        }
      } catch (e) {
        if (e instanceof MicroblockRejected || e instanceof KeyCertRejected || e instanceof ExchangeLineError) {
          error = e.message;
          return;
        }
        throw e;
      }
    }
  });
  return { count, error };
}
