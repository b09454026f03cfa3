// `dsm run`: the long-running node on the mesh (DESIGN.md section 8). It gossips the
// microblocks this node's ledger gains (written by `dsm ingest` in another process, same
// SQLite file) in batches, validates and stores what other nodes gossip (a gossip validator
// that rejects invalid messages, so the sender is penalised), and on a validator runs the
// consensus engine over the checkpoint topic.
//
// Topics: dsm/<mesh[0:16]>/mb/1 carries batches of exchange lines (key certificates and
// microblocks with payloads, the `dsm export` format) and "want" requests for a node's
// microblocks from a seq; dsm/<mesh[0:16]>/cp/1 carries P, V, S, E and F messages and
// certificate requests.
import * as fs from "node:fs";
import * as path from "node:path";
import { KeyCertRejected, Receiver } from "../chain/accept.ts";
import { ExchangeLineError, exchangeChunks, parseExchangeLine } from "../chain/exchange.ts";
import { MicroblockRejected } from "../protocol/microblock.ts";
import type { ConsensusEngine, EngineEvent } from "../consensus/engine.ts";
import { DSMValidator, ValidatorKeyError } from "../node/validator.ts";
import { CheckpointBuilder, CheckpointConflict } from "../log/builder.ts";
import { type FinalityCertificate } from "../protocol/certificate.ts";
import { verifyFinality } from "../protocol/certificate.ts";
import { checkpointDigestHex, epochAt, epochBounds } from "../protocol/checkpoint.ts";
import { signerIndices } from "../protocol/validator-set.ts";
import { CONTROL_SOCKET, startControl, startControlPort, startMetrics } from "./control.ts";
import pkg from "../../package.json" with { type: "json" };

const VERSION: string = pkg.version;
import type { DSMNode } from "../node/node.ts";
import { readSecretFile, writeFileAtomic } from "../fs/files.ts";
import { MeshNet, type Verdict } from "./p2p.ts";
import { type NodeCard, parseCard } from "../protocol/card.ts";
import { TpmIdentityKey } from "../tpm/identity-key.ts";
import { answerChallenge, newNonce, verifyAttestation } from "../tpm/attestation.ts";
import { fromHex, toHex } from "../encoding/hex.ts";
import { parseQuarantine, quarantineDigest, type QuarantineRecord } from "../protocol/quarantine.ts";
import { canonicalize } from "../encoding/jcs.ts";

const ENC = new TextEncoder();
export const ATTEST_PROTOCOL = "/dsm/attest/1";
export const SYNC_PROTOCOL = "/dsm/sync/1";
export const FINALITY_PROTOCOL = "/dsm/finality/1";
export const LEAVES_PROTOCOL = "/dsm/leaves/1";
/** Leaf ids in one /dsm/leaves/1 answer (64 hex characters each: 512 KiB). */
const LEAVES_PER_ANSWER = 8192;
/** Bytes of exchange lines in one /dsm/sync/1 answer, and answers fetched per peer per want. */
const SYNC_CHUNK_BYTES = 512 * 1024;
const SYNC_ROUNDS = 8;
const DEC = new TextDecoder("utf-8", { fatal: true });
/** The longest wait before this node's chain is offered again after a batch reached no peer. */
const PUBLISH_BACKOFF_MAX_MS = 2000;

import type { DaemonLog } from "./daemon-log.ts";
export type { DaemonLog };

export interface DaemonStatus {
  node_id: string;
  mesh: string;
  peer_id: string;
  addrs: string[];
  peers: number;
  role: "edge" | "validator";
  published: number;
  received: number;
  rejected: Record<string, number>;
  gossip_bytes_out: number;
  gossip_bytes_in: number;
  last_finalized_epoch: number | null;
  /** From the end of the last finalized epoch to its certificate here. */
  finality_latency_ms: number | null;
  /** Signers of the last certificate / genesis validators. */
  participation: number | null;
  /** Closed epochs since the last finalized one. */
  lag_epochs: number | null;
  validators: { index: number; node_id: string; peer_id: string; connected: boolean; signed_last: boolean }[];
  consensus: { round: number; step: string; base_epoch: number; flagged: number[] } | null;
  attestation: { challenging: boolean; passed: number; failed: number };
}

export class Daemon {
  #net!: MeshNet;
  #validator: DSMValidator | null = null;
  #engine: ConsensusEngine | null = null;
  #receiver: Receiver;
  #timer: ReturnType<typeof setInterval> | null = null;
  #syncTimer: ReturnType<typeof setInterval> | null = null;
  #quarantineTimer: ReturnType<typeof setInterval> | null = null;
  #attestTimer: ReturnType<typeof setInterval> | null = null;
  #attesting = false;
  #attested = 0;
  #attestationFailures = 0;
  #lastSeq = 0;
  #stopping = false;
  #published = 0;
  #received = 0;
  #rejected: Record<string, number> = {};
  #lastFinalized: number | null = null;
  #lastCert: FinalityCertificate | null = null;
  #finalityLatency: number | null = null;
  #bytesIn = 0;
  /** Bytes handed to peers: a message's size times the peers it went to. */
  #bytesOut = 0;
  #publishRetryAt = 0;
  #wroteRunJson = false;
  #publishBackoffMs = 0;
  #control: ReturnType<typeof startControl> | null = null;
  #metrics: ReturnType<typeof startMetrics> | null = null;
  #controlPort: ReturnType<typeof startControlPort> | null = null;
  readonly builder: CheckpointBuilder;
  #wants = new Map<string, number>();
  #sentRecords = new Set<string>();
  #ticks = 0;
  readonly mbTopic: string;
  readonly cpTopic: string;

  private constructor(
    readonly node: DSMNode,
    private readonly log: DaemonLog,
  ) {
    this.mbTopic = `dsm/${node.mesh.slice(0, 16)}/mb/1`;
    this.cpTopic = `dsm/${node.mesh.slice(0, 16)}/cp/1`;
    this.#receiver = new Receiver(node.ledger, node.policy, { maxClockSkewMs: node.config.mesh.max_clock_skew_s * 1000 });
    this.builder = new CheckpointBuilder(node.ledger, node.policy);
  }

  static async start(node: DSMNode, log: DaemonLog): Promise<Daemon> {
    const d = new Daemon(node, log);
    await d.#start();
    return d;
  }

  /**
   * Starts every part, or none: a part that fails (a port in use, an address this host does
   * not have) stops what was started before it, so no timer outlives the ledger and no
   * stale control socket is left, and the error names the address and the setting.
   */
  async #start(): Promise<void> {
    try {
      await this.#startParts();
    } catch (e) {
      await this.#teardown();
      throw e;
    }
  }

  async #startParts(): Promise<void> {
    const other = runningDaemon(this.node.layout.dir);
    if (other !== null) throw new DaemonStartError(`another dsm run (pid ${other}) is using this data dir`);
    const cfg = this.node.config.gossip;
    try {
      this.#validator = DSMValidator.open(this.node);
    } catch (e) {
      if (!(e instanceof ValidatorKeyError)) throw e;
    }
    const bootstrap = cfg.bootstrap_nodes.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const listen = `/ip4/${cfg.host}/tcp/${cfg.port}`;
    this.#net = await listening(`${cfg.host}:${cfg.port}`, "gossip.host, gossip.port", () => MeshNet.start({
      privateKey: new Uint8Array(readSecretFile(this.node.layout.libp2pKey)),
      listen: [listen],
      bootstrap,
      maxMessageBytes: cfg.max_message_bytes,
      cards: {
        own: this.node.card(),
        admit: (card, peerId) => admitCard(this.node, card, peerId),
        timeoutMs: 5000,
        onAdmitted: (peerId, card) => {
          if (this.#attesting) void this.#challenge(peerId, card as NodeCard);
        },
        onRefused: (peerId, reason) => {
          this.#count("peer");
          this.log("warn", `peer ${peerId} refused: ${reason}`, { peer_id: peerId });
        },
      },
    }));
    // Every node answers attestation challenges (with a TPM; without one it says so).
    await this.#net.serve(ATTEST_PROTOCOL, (req) => this.#answer(req));
    await this.#net.serve(SYNC_PROTOCOL, (req) => this.#serveSync(req), 4096);
    await this.#net.serve(FINALITY_PROTOCOL, (req) => this.#serveFinality(req), 4096);
    await this.#net.serve(LEAVES_PROTOCOL, (req) => this.#serveLeaves(req), 4096);
    this.#attesting = this.#validator !== null && this.node.genesis.attestation.required;
    const every = this.node.config.attestation.interval_epochs;
    if (this.#attesting && every > 0) {
      this.#attestTimer = setInterval(() => {
        for (const [peerId, card] of this.#net.cards) void this.#challenge(peerId, card as NodeCard);
      }, every * this.node.genesis.epoch_duration * 1000);
    }
    // Validators take every microblock in; an edge only publishes its own (gossipsub's fanout
    // reaches the validators) and keeps the certificates, with the log's leaf ids from
    // /dsm/leaves/1, so it never spends a signature check or a row on another node's event.
    if (this.#validator) this.#net.subscribe(this.mbTopic, (data, from) => this.#onMicroblocks(data, from), () => {});
    this.#net.subscribe(this.cpTopic, (data) => this.#checkConsensus(data), (data) => this.#onConsensus(data));
    // Everything of this node's chain is offered once at start: peers keep what they lack.
    this.#lastSeq = 0;
    this.#timer = setInterval(() => void this.#publishNew(), cfg.batch_max_ms);
    this.#quarantineTimer = setInterval(() => this.#gossipQuarantine(this.#ticks++ % 15 === 0), 2000);
    this.#lastCert = this.builder.latest();
    this.#lastFinalized = this.#lastCert?.checkpoint.epoch ?? null;
    if (this.#validator) {
      this.#engine = this.#validator.engine({
        transport: {
          broadcast: (m) => void this.#publishJson(this.cpTopic, m),
          requestCertificates: () => void this.#catchUp(),
          fetchMicroblocks: (ranges) => {
            for (const [nodeId, [from]] of Object.entries(ranges)) void this.#want(nodeId, from);
          },
        },
        onEvent: (e) => this.#onEngineEvent(e),
      });
      this.#engine.start();
      // Catch-up with /dsm/finality/1 every 2 s (an answer with nothing newer costs a few
      // bytes), so a validator that was down, or missed a certificate, needs nothing else.
      this.#syncTimer = setInterval(() => void this.#catchUp(), 2000);
    } else {
      // An edge keeps the certificates too, with the tree they commit to, so it can prove its
      // own events: dsm proof inclusion works on the edge itself.
      this.#syncTimer = setInterval(() => void this.#catchUp(), 2000);
    }
    const socket = path.join(this.node.layout.dir, CONTROL_SOCKET);
    this.#control = await listening(socket, "the data dir's control socket", () => startControl(this));
    const { metrics, control } = this.node.config;
    if (metrics.port !== 0) this.#metrics = await listening(`0.0.0.0:${metrics.port}`, "metrics.port", () => startMetrics(this, metrics.port, VERSION));
    if (control.port !== 0) this.#controlPort = await listening(`127.0.0.1:${control.port}`, "control.port", () => startControlPort(this, control.port));
    const info = { pid: process.pid, peer_id: this.#net.peerId, addrs: this.#net.addrs(), mesh: this.node.mesh, role: this.#validator ? "validator" : "edge" };
    this.#wroteRunJson = true;
    writeFileAtomic(path.join(this.node.layout.dir, "run.json"), JSON.stringify(info, null, 2) + "\n", { overwrite: true, mode: 0o644 });
    // The card's role, and what the node does where that differs (an edge validating its local one-node mesh).
    this.log("info", `${this.node.roleDescription(this.#validator !== null)} ${this.node.nodeId.slice(0, 16)}… peer ${info.peer_id} listening on ${info.addrs.join(" ")}`, { role: this.node.card().role, validator: this.#validator !== null, node_id: this.node.nodeId, peer_id: info.peer_id, addrs: info.addrs });
  }

  peers(): string[] {
    return this.#net.peers();
  }

  status(): DaemonStatus {
    const genesis = this.node.genesis;
    const connected = new Set(this.#net.peers());
    const signed = new Set(this.#lastCert ? signerIndices(this.#lastCert.signers) : []);
    const closed = epochAt(genesis, Date.now()) - 1;
    const st = this.#engine?.status();
    return {
      node_id: this.node.nodeId,
      mesh: this.node.mesh,
      peer_id: this.#net.peerId,
      addrs: this.#net.addrs(),
      peers: connected.size,
      role: this.#validator ? "validator" : "edge",
      published: this.#published,
      received: this.#received,
      rejected: { ...this.#rejected },
      gossip_bytes_out: this.#bytesOut,
      gossip_bytes_in: this.#bytesIn,
      last_finalized_epoch: this.#lastFinalized,
      finality_latency_ms: this.#finalityLatency,
      participation: this.#lastCert ? signed.size / genesis.validators.length : null,
      lag_epochs: this.#lastFinalized === null ? null : Math.max(0, closed - this.#lastFinalized),
      validators: genesis.validators.map((c, i) => ({ index: i, node_id: c.node_id, peer_id: c.peer_id, connected: connected.has(c.peer_id) || c.node_id === this.node.nodeId, signed_last: signed.has(i) })),
      consensus: st ? { round: st.round, step: st.step, base_epoch: st.baseEpoch, flagged: st.flagged } : null,
      attestation: { challenging: this.#attesting, passed: this.#attested, failed: this.#attestationFailures },
    };
  }

  /** The certificate of `epoch` (default: the last closed one) or a later one, waiting up to ms. */
  async waitForCertificate(epoch: number | undefined, ms: number): Promise<FinalityCertificate | null> {
    const target = epoch ?? epochAt(this.node.genesis, Date.now()) - 1;
    const have = this.builder.latest();
    if (have && have.checkpoint.epoch >= target) return have;
    // Nothing new up to that epoch: the latest certificate already covers it.
    if (this.builder.propose(target) === null) return have;
    if (!this.#engine || ms === 0) return null;
    const body = { epoch: target } as FinalityCertificate["checkpoint"];
    return Promise.race([this.#engine.collectValidatorSignatures(body), Bun.sleep(ms).then(() => null)]);
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    await this.#publishNew().catch(() => {});
    await this.#teardown();
  }

  /** Stops whatever has started, in any state of #start. */
  async #teardown(): Promise<void> {
    this.#stopping = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#syncTimer) clearInterval(this.#syncTimer);
    if (this.#quarantineTimer) clearInterval(this.#quarantineTimer);
    if (this.#attestTimer) clearInterval(this.#attestTimer);
    this.#engine?.stop();
    this.#control?.stop(true);
    this.#metrics?.stop(true);
    this.#controlPort?.stop(true);
    await this.#net?.stop().catch(() => {});
    this.#validator?.close();
    // Only what this process made: a second daemon refused on a busy port must not take
    // the first one's run.json and socket with it.
    if (this.#wroteRunJson) fs.rmSync(path.join(this.node.layout.dir, "run.json"), { force: true });
    if (this.#control) fs.rmSync(path.join(this.node.layout.dir, CONTROL_SOCKET), { force: true });
  }

  // --- microblocks out --------------------------------------------------------------

  #publishing = false;

  /** A node's microblocks from a seq as exchange lines: gossip batches and /dsm/sync/1 answers. */
  #chunks(nodeId: string, fromSeq: number, maxBytes: number): Generator<{ text: string; lastSeq: number; count: number }> {
    // privacy.withhold_payloads keeps this node's own payloads home; others' go on as held.
    const payloads = !(this.node.config.privacy.withhold_payloads && nodeId === this.node.nodeId);
    return exchangeChunks(this.node.ledger, this.node.mesh, nodeId, fromSeq, maxBytes, { payloads });
  }

  /** New microblocks of this node's own chain, in batches bounded by max_message_bytes. */
  async #publishNew(): Promise<void> {
    if (this.#publishing) return;
    // The common case on a validator (no chain of its own) and between batches: one lookup.
    if ((this.node.ledger.head(this.node.mesh, this.node.nodeId)?.seq ?? 0) <= this.#lastSeq) return;
    if (Date.now() < this.#publishRetryAt) return;
    this.#publishing = true;
    try {
      for (const chunk of this.#chunks(this.node.nodeId, this.#lastSeq + 1, this.node.config.gossip.max_message_bytes - 1024)) {
        const bytes = ENC.encode(chunk.text);
        let sent = 0;
        try {
          sent = await this.#net.publish(this.mbTopic, bytes);
        } catch (e) {
          this.log("warn", `gossip: ${(e as Error).message}`);
        }
        // Nobody got it (no peer subscribed yet): offered again later, backing off up to
        // PUBLISH_BACKOFF_MAX_MS, so a node alone neither re-reads its chain every tick nor
        // counts bytes that went nowhere.
        if (sent === 0) {
          this.#publishBackoffMs = Math.min(PUBLISH_BACKOFF_MAX_MS, Math.max(this.node.config.gossip.batch_max_ms, this.#publishBackoffMs * 2));
          this.#publishRetryAt = Date.now() + this.#publishBackoffMs;
          return;
        }
        this.#publishBackoffMs = 0;
        this.#publishRetryAt = 0;
        this.#bytesOut += bytes.length * sent;
        this.#lastSeq = Math.max(this.#lastSeq, chunk.lastSeq);
        this.#published += chunk.count;
      }
    } finally {
      this.#publishing = false;
    }
  }

  /** Serves /dsm/sync/1: a node's microblocks from a seq, one bounded chunk. */
  #serveSync(req: unknown): unknown {
    const r = req as { node_id?: unknown; from_seq?: unknown };
    if (typeof r.node_id !== "string" || !/^[0-9a-f]{64}$/.test(r.node_id)) return { error: "node_id must be a 64-hex node id" };
    if (typeof r.from_seq !== "number" || !Number.isSafeInteger(r.from_seq) || r.from_seq < 1) return { error: "from_seq must be an integer >= 1" };
    const first = this.#chunks(r.node_id, r.from_seq, SYNC_CHUNK_BYTES).next();
    return { lines: first.done ? "" : first.value.text };
  }

  /** Serves /dsm/finality/1: certificates after an epoch, oldest first, a bounded number. */
  #serveFinality(req: unknown): unknown {
    const after = (req as { after?: unknown }).after;
    if (typeof after !== "number" || !Number.isSafeInteger(after) || after < -1) return { error: "after must be an epoch (or -1)" };
    return { certificates: this.builder.since(after, 64) };
  }

  /** Serves /dsm/leaves/1: the log's leaf ids [from, to), hex, at most LEAVES_PER_ANSWER. */
  #serveLeaves(req: unknown): unknown {
    const { from, to } = req as { from?: unknown; to?: unknown };
    if (typeof from !== "number" || typeof to !== "number" || !Number.isSafeInteger(from) || !Number.isSafeInteger(to)) return { error: "from and to must be leaf indices" };
    if (from < 0 || to <= from || to - from > LEAVES_PER_ANSWER) return { error: `need 0 <= from < to <= from + ${LEAVES_PER_ANSWER}` };
    if (to > this.builder.tree.size()) return { error: `this node's log has ${this.builder.tree.size()} leaves` };
    return { ids: this.builder.tree.idsIn(from, to).map(toHex).join("") };
  }

  /** The log's leaf ids [from, to) from the first peer whose answer passes `fits`, or null. */
  async #fetchLeaves(from: number, to: number, fits: (ids: Uint8Array[]) => boolean): Promise<Uint8Array[] | null> {
    for (const peer of this.#peersToAsk(true)) {
      const ids: Uint8Array[] = [];
      try {
        while (from + ids.length < to) {
          const a = from + ids.length;
          const b = Math.min(to, a + LEAVES_PER_ANSWER);
          const answer = (await this.#net.request(peer, LEAVES_PROTOCOL, { from: a, to: b }, 10_000, LEAVES_PER_ANSWER * 64 + 1024)) as { ids?: unknown };
          if (typeof answer.ids !== "string" || answer.ids.length !== (b - a) * 64) throw new Error("no such leaves");
          const bytes = fromHex(answer.ids, (b - a) * 32);
          for (let i = 0; i < b - a; i++) ids.push(bytes.subarray(i * 32, i * 32 + 32));
        }
        if (fits(ids)) return ids; // a peer that sent ids of another tree: the next one
        this.#count("leaves");
      } catch {
        // the next peer
      }
    }
    return null;
  }

  /** Admitted peers, in random order (validators first when `validatorsFirst`). */
  #peersToAsk(validatorsFirst: boolean): string[] {
    const validators = new Set(this.node.genesis.validators.map((c) => c.peer_id));
    const peers = [...this.#net.cards.keys()].sort(() => Math.random() - 0.5);
    return validatorsFirst ? [...peers.filter((p) => validators.has(p)), ...peers.filter((p) => !validators.has(p))] : peers;
  }

  /**
   * Fetches a node's microblocks from a seq with /dsm/sync/1 (at most once a second per
   * node), from the first peer that has them, chunk after chunk, through the same checks as
   * gossip.
   */
  async #want(nodeId: string, fromSeq: number): Promise<void> {
    const now = Date.now();
    if ((this.#wants.get(nodeId) ?? 0) > now - 1000) return;
    this.#wants.set(nodeId, now);
    let from = fromSeq;
    for (const peer of this.#peersToAsk(true)) {
      for (let round = 0; round < SYNC_ROUNDS; round++) {
        let answer: { lines?: unknown };
        try {
          answer = (await this.#net.request(peer, SYNC_PROTOCOL, { node_id: nodeId, from_seq: from }, 10_000, SYNC_CHUNK_BYTES * 2)) as { lines?: unknown };
        } catch {
          break;
        }
        if (typeof answer.lines !== "string" || answer.lines === "") break;
        const { verdict, stored, last } = this.#store(answer.lines.split("\n").filter((l) => l !== ""));
        if (verdict !== "accept" || stored === 0) break;
        from = last + 1;
      }
      if (from > fromSeq) return;
    }
  }

  /** Certificates after ours, with /dsm/finality/1, from a validator that has them. */
  async #catchUp(): Promise<void> {
    const after = this.builder.latest()?.checkpoint.epoch ?? -1;
    for (const peer of this.#peersToAsk(true).slice(0, 2)) {
      try {
        const answer = (await this.#net.request(peer, FINALITY_PROTOCOL, { after }, 10_000, 4 << 20)) as { certificates?: unknown };
        if (Array.isArray(answer.certificates)) for (const c of answer.certificates) this.#onCertificate(c);
        if (Array.isArray(answer.certificates) && answer.certificates.length > 0) return;
      } catch {
        // the next peer
      }
    }
  }

  // --- microblocks in ---------------------------------------------------------------

  /** Counts something refused or failed, by reason (status and /metrics show them). */
  #count(reason: string): void {
    this.#rejected[reason] = (this.#rejected[reason] ?? 0) + 1;
  }

  #reject(reason: string): Verdict {
    this.#count(reason);
    return "reject";
  }

  /** A write this node could not make (disk full, say): counted, and logged at most every 10 s. */
  #storageFailed(message: string): void {
    this.#count("storage");
    if (Date.now() - this.#storageLoggedAt < 10_000) return;
    this.#storageLoggedAt = Date.now();
    this.log("error", message);
  }

  #storageLoggedAt = 0;

  /** Validates and stores a batch as the gossip validator: a batch with an invalid item is rejected. */
  #onMicroblocks(data: Uint8Array, _from: string): Verdict {
    this.#bytesIn += data.length;
    let text: string;
    try {
      text = DEC.decode(data);
    } catch {
      return this.#reject("encoding");
    }
    return this.#store(text.split("\n").filter((l) => l !== "")).verdict;
  }

  /**
   * Validates and stores exchange lines in one transaction; an invalid line ends the batch
   * (what came before it is kept). When this node cannot store (disk full, a damaged or
   * locked database), nothing of the batch is kept and the sender is not blamed: the
   * verdict is "ignore", and a later gap fetch brings the microblocks again.
   */
  #store(lines: string[]): { verdict: Verdict; stored: number; last: number } {
    let stored = 0;
    let last = 0;
    let verdict: Verdict = "accept";
    try {
      this.#receiver.batch(() => {
        for (const [i, line] of lines.entries()) {
          try {
            const rec = parseExchangeLine(line, `gossip line ${i + 1}`);
            if (rec.kind === "key_certificate") this.#receiver.acceptKeyCert(rec.certificate);
            else {
              const out = this.#receiver.acceptMicroblock(rec.microblock, rec.payload ?? undefined);
              if (out.status === "stored") stored++;
              else if (out.status === "gap") void this.#want(out.microblock.node_id, out.have + 1);
              last = out.microblock.seq;
            }
          } catch (e) {
            if (e instanceof MicroblockRejected) verdict = this.#reject(e.reason);
            else if (e instanceof KeyCertRejected) verdict = this.#reject(e.reason);
            else if (e instanceof ExchangeLineError) verdict = this.#reject("malformed");
            else throw e; // ours, not the sender's: the whole batch is undone below
            return;
          }
        }
      });
    } catch (e) {
      this.#storageFailed(`could not store a gossip batch, nothing of it kept (${(e as Error).message}); it will be fetched again`);
      return { verdict: "ignore", stored: 0, last: 0 };
    }
    if (stored > 0) {
      this.#received += stored;
      this.#engine?.logChanged();
    }
    return { verdict, stored, last };
  }

  // --- consensus --------------------------------------------------------------------

  async #publishJson(topic: string, value: unknown): Promise<void> {
    const bytes = ENC.encode(JSON.stringify(value));
    const sent = await this.#net.publish(topic, bytes).catch((e) => {
      this.log("warn", `gossip: ${(e as Error).message}`);
      return 0;
    });
    this.#bytesOut += bytes.length * sent;
  }

  #checkConsensus(data: Uint8Array): Verdict {
    this.#bytesIn += data.length;
    try {
      const v = JSON.parse(DEC.decode(data));
      return typeof v === "object" && v !== null && typeof v.type === "string" ? "accept" : this.#reject("malformed");
    } catch {
      return this.#reject("malformed");
    }
  }

  #onConsensus(data: Uint8Array): void {
    const v = JSON.parse(DEC.decode(data)) as { type: string; after?: unknown };
    if (v.type === "Q") return this.#onQuarantine(v);
    if (v.type === "F") return this.#onCertificate(v);
    this.#engine?.receive(v);
  }

  /**
   * A finality certificate: a validator's engine checks and applies it; an edge checks the
   * quorum against the genesis and keeps it, in order, with the leaf ids it commits to.
   */
  #onCertificate(value: unknown): void {
    if (this.#engine) return this.#engine.receive(value);
    let cert: FinalityCertificate;
    try {
      verifyFinality(value, this.node.genesis, "certificate", this.node.config.consensus.quorum_threshold);
      cert = value as FinalityCertificate;
    } catch {
      this.#count("certificate");
      return;
    }
    const latest = this.builder.latest();
    if (latest && cert.checkpoint.epoch <= latest.checkpoint.epoch) return;
    const digest = checkpointDigestHex(cert.checkpoint);
    // Each certificate once in the queue, and never again one this ledger contradicts.
    if (this.#queued.has(digest) || this.#contradicted.has(digest)) return;
    this.#queued.add(digest);
    // One at a time, oldest first: a catch-up answer's certificates each follow the one before.
    this.#keeping = this.#keeping
      .then(() => this.#keepCertificate(cert, digest))
      .catch((e) => this.log("warn", `certificate: ${(e as Error).message}`))
      .finally(() => this.#queued.delete(digest));
  }

  #keeping: Promise<void> = Promise.resolve();
  #queued = new Set<string>();
  #contradicted = new Set<string>();

  /** The newest certificate this node holds, and how long after its epoch's end it came. */
  #noteFinalized(cert: FinalityCertificate): void {
    this.#lastCert = cert;
    this.#lastFinalized = cert.checkpoint.epoch;
    this.#finalityLatency = Date.now() - epochBounds(this.node.genesis, cert.checkpoint.epoch).endMs;
  }

  async #keepCertificate(cert: FinalityCertificate, digest: string): Promise<void> {
    // Not the next one: the next catch-up brings those between.
    if (this.#stopping || this.builder.successorProblem(cert.checkpoint) !== null) return;
    const root = cert.checkpoint.root;
    const fits = (ids: Uint8Array[]) => toHex(this.builder.tree.rootAfter(ids).root) === root;
    const ids = await this.#fetchLeaves(this.builder.tree.size(), cert.checkpoint.tree_size, fits);
    if (ids === null || this.#stopping) return; // no peer has them yet: the next catch-up retries
    try {
      this.builder.commitLeaves(cert, ids);
    } catch (e) {
      // The leaves recompute the root a quorum signed, yet this ledger disagrees (its own
      // chain differs from what the mesh finalized): loud, once, and no more downloads.
      if (e instanceof CheckpointConflict) this.#contradicted.add(digest);
      this.#count("certificate");
      this.log("error", `certificate of epoch ${cert.checkpoint.epoch} NOT KEPT: ${(e as Error).message}`, { epoch: cert.checkpoint.epoch });
      return;
    }
    this.#noteFinalized(cert);
  }

  /** The answer to a validator's challenge: a quote of the asked PCRs over its nonce. */
  #answer(req: unknown): unknown {
    const r = req as { nonce?: unknown; pcrs?: unknown };
    if (typeof r.nonce !== "string" || !/^[0-9a-f]{64}$/.test(r.nonce)) return { error: "nonce must be 32 bytes of hex" };
    if (!Array.isArray(r.pcrs) || r.pcrs.length === 0 || r.pcrs.length > 24 || !r.pcrs.every((p) => Number.isInteger(p) && p >= 0 && p <= 23)) return { error: "pcrs must list PCR indices 0-23" };
    if (!(this.node.identity instanceof TpmIdentityKey)) return { error: "this node has no TPM (software identity key)" };
    try {
      return answerChallenge(this.node.identity, this.node.card(), this.node.mesh, r.nonce, r.pcrs as number[]);
    } catch (e) {
      return { error: `TPM: ${(e as Error).message}` };
    }
  }

  /**
   * Challenges a peer (DESIGN.md section 7): a fresh nonce, a quote of the genesis PCRs back,
   * checked against the genesis. A failed or missing answer makes this validator sign a
   * quarantine record, which gossip carries to every node.
   */
  async #challenge(peerId: string, card: NodeCard): Promise<void> {
    if (!this.#validator || this.#stopping) return;
    if (this.builder.quarantine.quarantinedFrom(card.node_id) !== undefined) return; // already held back
    const nonce = newNonce();
    const timeoutMs = this.node.config.attestation.timeout_s * 1000;
    let answer: unknown;
    let missed = false;
    try {
      answer = await this.#net.request(peerId, ATTEST_PROTOCOL, { nonce, pcrs: this.node.genesis.attestation.pcrs }, timeoutMs, 64 * 1024);
    } catch (e) {
      missed = true;
      answer = { error: (e as Error).message };
    }
    if (this.#stopping) return;
    const error = (answer as { error?: unknown })?.error;
    const r = typeof error === "string" ? { ok: false as const, check: "no_answer", reason: error } : verifyAttestation(answer, this.node.genesis, nonce);
    if (r.ok) {
      this.#attested++;
      return;
    }
    this.#attestationFailures++;
    let record: QuarantineRecord;
    try {
      record = this.#validator.quarantine(card.node_id, {
        action: "quarantine",
        reason: missed ? "attestation_missed" : "attestation_failed",
        detail: `${r.check}: ${r.reason}`,
      });
    } catch (e) {
      // Not stored, so not sent: the next challenge (attestation.interval_epochs) tries again.
      this.#storageFailed(`attestation of node ${card.node_id.slice(0, 16)}… failed (${r.check}), but its quarantine record could not be stored: ${(e as Error).message}`);
      return;
    }
    this.log("warn", `attestation of node ${card.node_id.slice(0, 16)}… failed (${r.check}): quarantined from seq ${record.from_seq}`, { node_id: card.node_id, check: r.check, from_seq: record.from_seq });
    this.#engine?.logChanged();
  }

  /** A quarantine record from the mesh: checked against the genesis validators, stored, honoured. */
  #onQuarantine(value: unknown): void {
    let record: QuarantineRecord;
    try {
      record = parseQuarantine(value, this.node.mesh, DSMValidator.validatorsOf(this.node));
    } catch {
      this.#count("quarantine");
      return;
    }
    const digest = toHex(quarantineDigest(record));
    let added: boolean;
    try {
      added = this.builder.quarantine.add(record);
    } catch (e) {
      this.#storageFailed(`quarantine record not stored: ${(e as Error).message}`);
      return; // not marked as sent: it comes again
    }
    this.#sentRecords.add(digest);
    if (added) {
      this.log("warn", `quarantine record from validator ${record.validator}: node ${record.node_id.slice(0, 16)}… ${record.action}${record.action === "quarantine" ? ` from seq ${record.from_seq}` : ""} (${record.reason})`);
      this.#engine?.logChanged();
    }
  }

  /** Gossips the quarantine records this node holds that it has not sent yet (every 2 s), and all of them now and then for nodes that joined later. */
  #gossipQuarantine(all: boolean): void {
    for (const r of this.builder.quarantine.records()) {
      const digest = toHex(quarantineDigest(r));
      if (!all && this.#sentRecords.has(digest)) continue;
      this.#sentRecords.add(digest);
      void this.#publishJson(this.cpTopic, r);
    }
  }

  #onEngineEvent(e: EngineEvent): void {
    switch (e.kind) {
      case "finalized": {
        const c: FinalityCertificate = e.certificate;
        this.#noteFinalized(c);
        this.log("info", `epoch ${c.checkpoint.epoch} finalized: tree_size ${c.checkpoint.tree_size}, signers ${c.signers}, round ${e.round}`, { epoch: c.checkpoint.epoch, tree_size: c.checkpoint.tree_size, signers: c.signers, round: e.round });
        return;
      }
      case "evidence":
        this.log("error", `EQUIVOCATION by validator ${e.validator}: evidence stored and broadcast`, { validator: e.validator });
        return;
      case "conflict":
      case "refused":
        this.log("warn", `${e.kind}: ${e.reason}`);
        return;
      case "store-failed":
        this.#storageFailed(`consensus: ${e.reason}; this validator takes part again once it can write`);
        return;
      case "rejected":
        this.#count("consensus");
        return;
      default:
        return;
    }
  }
}

/**
 * Why a peer's node card does not admit it to this mesh, or null when it does: the card
 * must verify under its identity key, name the connection's peer id, and belong to a
 * validator of the genesis (exactly the card listed there) or a node the admission policy
 * admits (with a TPM when the genesis requires attestation).
 */
export function admitCard(node: DSMNode, value: unknown, peerId: string): string | null {
  let card;
  try {
    card = parseCard(value, "peer card", { checkPop: false });
  } catch (e) {
    return (e as Error).message;
  }
  if (card.peer_id !== peerId) return `its card names peer ${card.peer_id}, not the connected peer`;
  const genesis = node.genesis;
  const listed = genesis.validators.find((c) => c.node_id === card.node_id);
  if (listed) return canonicalize(listed) === canonicalize(card) ? null : `node ${card.node_id.slice(0, 16)}… shows a card other than its genesis card`;
  if (!node.policy.isAdmitted(card.node_id)) return `node ${card.node_id.slice(0, 16)}… is not admitted by the mesh's ${genesis.admission.policy} policy`;
  if (genesis.attestation.required && !card.tpm) return `node ${card.node_id.slice(0, 16)}… has no TPM, and the mesh requires attestation`;
  return null;
}

/** A daemon that could not start: one line naming what it tried to bind and the setting. */
export class DaemonStartError extends Error {
  override name = "DaemonStartError";
}

/** Runs a start step that binds `address`; its failure becomes one DaemonStartError line. */
async function listening<T>(address: string, setting: string, start: () => T | Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (e) {
    throw new DaemonStartError(`cannot listen on ${address} (${setting}): ${bindFailure(e)}`);
  }
}

function bindFailure(e: unknown): string {
  const text = `${(e as { code?: string }).code ?? ""} ${(e as Error)?.message ?? String(e)} ${String((e as { cause?: unknown })?.cause ?? "")}`;
  // libp2p wraps the socket's error in an aggregate with its own advice; the cause is what counts.
  const errors = (e as { errors?: unknown[] })?.errors ?? [];
  const all = text + errors.map((x) => ` ${(x as { code?: string })?.code ?? ""} ${(x as Error)?.message ?? ""}`).join("");
  if (/EADDRINUSE|in use/i.test(all)) return "address already in use";
  if (/EADDRNOTAVAIL|assign requested address/i.test(all)) return "this host has no such address";
  if (/EACCES|permission denied/i.test(all)) return "permission denied (a port below 1024 needs privileges)";
  if (/Some configured addresses failed/i.test(all)) return "the address cannot be bound (in use, or not an address of this host)";
  return ((e as Error)?.message ?? String(e)).split("\n")[0]!;
}

/** The pid in the data dir's run.json when that process is alive and not this one. */
function runningDaemon(dir: string): number | null {
  let pid: unknown;
  try {
    pid = (JSON.parse(fs.readFileSync(path.join(dir, "run.json"), "utf8")) as { pid?: unknown }).pid;
  } catch {
    return null;
  }
  if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) return null;
  try {
    process.kill(pid, 0);
    // A crashed daemon's pid may since belong to something else: that is no daemon.
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return /dsm/.test(cmd) ? pid : null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM" ? pid : null;
  }
}
