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
import { certificateLine, microblockLine, parseExchangeLine } from "../chain/exchange.ts";
import { MicroblockRejected } from "../chain/microblock.ts";
import type { ConsensusEngine, EngineEvent } from "../consensus/engine.ts";
import { DSMValidator, ValidatorKeyError } from "../consensus/validator.ts";
import { CheckpointBuilder, type FinalityCertificate } from "../log/builder.ts";
import { epochAt, epochBounds } from "../log/checkpoint.ts";
import { signerIndices } from "../consensus/validators.ts";
import { CONTROL_SOCKET, startControl, startMetrics } from "./control.ts";
import pkg from "../../package.json" with { type: "json" };

const VERSION: string = pkg.version;
import type { DSMNode } from "../node/node.ts";
import { readSecretFile, writeFileAtomic } from "../fs/files.ts";
import { MeshNet, type Verdict } from "./p2p.ts";
import { type NodeCard, parseCard } from "../identity/card.ts";
import { TpmIdentityKey } from "../tpm/identity-key.ts";
import { answerChallenge, newNonce, verifyAttestation } from "../tpm/attestation.ts";
import { toHex } from "../encoding/hex.ts";
import { parseQuarantine, quarantineDigest, type QuarantineRecord } from "./quarantine.ts";
import { canonicalize } from "../encoding/jcs.ts";

const ENC = new TextEncoder();
export const ATTEST_PROTOCOL = "/dsm/attest/1";
/** Batches sent in answer to one want. */
const WANT_BATCHES = 4;
const DEC = new TextDecoder("utf-8", { fatal: true });

export interface DaemonLog {
  (line: string): void;
}

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
  #bytesOut = 0;
  #control: ReturnType<typeof startControl> | null = null;
  #metrics: ReturnType<typeof startMetrics> | null = null;
  readonly builder: CheckpointBuilder;
  #wants = new Map<string, number>();
  #served = new Map<number, number>();
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

  async #start(): Promise<void> {
    const cfg = this.node.config.gossip;
    try {
      this.#validator = DSMValidator.open(this.node);
    } catch (e) {
      if (!(e instanceof ValidatorKeyError)) throw e;
    }
    const bootstrap = cfg.bootstrap_nodes.split(",").map((s) => s.trim()).filter((s) => s !== "");
    this.#net = await MeshNet.start({
      privateKey: new Uint8Array(readSecretFile(this.node.layout.libp2pKey)),
      listen: [`/ip4/${cfg.host}/tcp/${cfg.port}`],
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
          this.#rejected.peer = (this.#rejected.peer ?? 0) + 1;
          this.log(`dsm run: peer ${peerId} refused: ${reason}`);
        },
      },
    });
    // Every node answers attestation challenges (with a TPM; without one it says so).
    await this.#net.serve(ATTEST_PROTOCOL, (req) => this.#answer(req));
    this.#attesting = this.#validator !== null && this.node.genesis.attestation.required;
    const every = this.node.config.attestation.interval_epochs;
    if (this.#attesting && every > 0) {
      this.#attestTimer = setInterval(() => {
        for (const [peerId, card] of this.#net.cards) void this.#challenge(peerId, card as NodeCard);
      }, every * this.node.genesis.epoch_duration * 1000);
    }
    this.#net.subscribe(this.mbTopic, (data, from) => this.#onMicroblocks(data, from), () => {});
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
          requestCertificates: (after) => void this.#publishJson(this.cpTopic, { type: "R", after }),
          fetchMicroblocks: (ranges) => {
            for (const [nodeId, [from]] of Object.entries(ranges)) this.#want(nodeId, from);
          },
        },
        onEvent: (e) => this.#onEngineEvent(e),
      });
      this.#engine.start();
      // Catch-up: ask for certificates after ours every 2 s (peers answer only with newer
      // ones, so this costs a few bytes once caught up). A request sent before the first
      // peer connects, or while a certificate's microblocks were missing, is not lost.
      this.#syncTimer = setInterval(() => {
        const after = this.builder.latest()?.checkpoint.epoch ?? -1;
        void this.#publishJson(this.cpTopic, { type: "R", after });
      }, 2000);
    }
    this.#control = startControl(this);
    if (this.node.config.metrics.port !== 0) this.#metrics = startMetrics(this, this.node.config.metrics.port, VERSION);
    const info = { pid: process.pid, peer_id: this.#net.peerId, addrs: this.#net.addrs(), mesh: this.node.mesh, role: this.#validator ? "validator" : "edge" };
    writeFileAtomic(path.join(this.node.layout.dir, "run.json"), JSON.stringify(info, null, 2) + "\n", { overwrite: true, mode: 0o644 });
    this.log(`dsm run: ${info.role} ${this.node.nodeId.slice(0, 16)}… peer ${info.peer_id} listening on ${info.addrs.join(" ")}`);
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
    if (this.#timer) clearInterval(this.#timer);
    if (this.#syncTimer) clearInterval(this.#syncTimer);
    if (this.#quarantineTimer) clearInterval(this.#quarantineTimer);
    if (this.#attestTimer) clearInterval(this.#attestTimer);
    this.#engine?.stop();
    this.#control?.stop(true);
    this.#metrics?.stop(true);
    await this.#publishNew().catch(() => {});
    await this.#net.stop();
    this.#validator?.close();
    fs.rmSync(path.join(this.node.layout.dir, "run.json"), { force: true });
    fs.rmSync(path.join(this.node.layout.dir, CONTROL_SOCKET), { force: true });
  }

  // --- microblocks out --------------------------------------------------------------

  #publishing = false;

  /** New microblocks of this node's own chain, in batches bounded by max_message_bytes. */
  async #publishNew(fromSeq?: number): Promise<void> {
    // The timer's run is one at a time; a run answering a want is separate and bounded.
    const timed = fromSeq === undefined;
    if (timed && this.#publishing) return;
    if (timed) this.#publishing = true;
    try {
      const limit = this.node.config.gossip.max_message_bytes;
      let batch = "";
      let batchLast = 0;
      let batches = 0;
      const keys = new Set<string>();
      /** False when nobody received the batch: the timer then offers it again next tick. */
      const flush = async (): Promise<boolean> => {
        if (batch === "") return true;
        const bytes = ENC.encode(batch);
        this.#bytesOut += bytes.length;
        let sent = 0;
        try {
          sent = await this.#net.publish(this.mbTopic, bytes);
        } catch (e) {
          this.log(`dsm run: gossip: ${(e as Error).message}`);
        }
        batches++;
        batch = "";
        keys.clear();
        if (sent === 0) return false;
        if (timed) this.#lastSeq = Math.max(this.#lastSeq, batchLast);
        return true;
      };
      const start = fromSeq ?? this.#lastSeq + 1;
      for (const page of this.node.ledger.listPages({ nodeId: this.node.nodeId, fromSeq: start }, 500)) {
        for (const mb of page) {
          if (mb.mesh !== this.node.mesh) continue;
          let lines = "";
          if (!keys.has(mb.key)) {
            const cert = this.node.ledger.keyCert(mb.key);
            if (cert !== null) lines += certificateLine(cert);
          }
          lines += microblockLine(mb, this.node.ledger.payload(mb.payload_hash));
          if (batch.length + lines.length > limit - 1024) {
            if (!(await flush())) return;
            // A want is answered with a few batches; the asker asks again for the rest.
            if (!timed && batches >= WANT_BATCHES) return;
          }
          keys.add(mb.key);
          batch += lines;
          batchLast = mb.seq;
          this.#published++;
        }
      }
      await flush();
    } finally {
      if (timed) this.#publishing = false;
    }
  }

  /** Asks the mesh for a node's microblocks from a seq (at most once a second per node). */
  #want(nodeId: string, fromSeq: number): void {
    const now = Date.now();
    if ((this.#wants.get(nodeId) ?? 0) > now - 1000) return;
    this.#wants.set(nodeId, now);
    void this.#net.publish(this.mbTopic, ENC.encode(JSON.stringify({ kind: "want", node_id: nodeId, from_seq: fromSeq }) + "\n")).catch(() => {});
  }

  // --- microblocks in ---------------------------------------------------------------

  #reject(reason: string): Verdict {
    this.#rejected[reason] = (this.#rejected[reason] ?? 0) + 1;
    return "reject";
  }

  /** Validates and stores a batch as the gossip validator: a batch with an invalid item is rejected. */
  #onMicroblocks(data: Uint8Array, _from: string): Verdict {
    this.#bytesIn += data.length;
    let text: string;
    try {
      text = DEC.decode(data);
    } catch {
      return this.#reject("encoding");
    }
    const lines = text.split("\n").filter((l) => l !== "");
    if (lines.length === 1 && lines[0]!.startsWith('{"kind":"want"')) return this.#onWant(lines[0]!);
    let stored = 0;
    let verdict: Verdict = "accept";
    this.node.ledger.immediate(() => {
      for (const [i, line] of lines.entries()) {
        try {
          const rec = parseExchangeLine(line, `gossip line ${i + 1}`);
          if (rec.kind === "key_certificate") this.#receiver.acceptKeyCert(rec.certificate);
          else {
            const out = this.#receiver.acceptMicroblock(rec.microblock, rec.payload ?? undefined);
            if (out.status === "stored") stored++;
            else if (out.status === "gap") this.#want(out.microblock.node_id, out.have + 1);
          }
        } catch (e) {
          if (e instanceof MicroblockRejected) verdict = this.#reject(e.reason);
          else if (e instanceof KeyCertRejected) verdict = this.#reject(e.reason);
          else verdict = this.#reject("malformed");
          return;
        }
      }
    });
    if (stored > 0) {
      this.#received += stored;
      this.#engine?.logChanged();
    }
    return verdict;
  }

  #onWant(line: string): Verdict {
    let w: { node_id?: unknown; from_seq?: unknown };
    try {
      w = JSON.parse(line);
    } catch {
      return this.#reject("malformed");
    }
    if (w.node_id !== this.node.nodeId) return "accept"; // someone else's chain: its owner answers
    if (typeof w.from_seq !== "number" || !Number.isSafeInteger(w.from_seq) || w.from_seq < 1) return this.#reject("malformed");
    const seq = w.from_seq;
    const now = Date.now();
    if ((this.#served.get(seq) ?? 0) > now - 1000) return "accept";
    this.#served.set(seq, now);
    void this.#publishNew(seq);
    return "accept";
  }

  // --- consensus --------------------------------------------------------------------

  async #publishJson(topic: string, value: unknown): Promise<void> {
    const bytes = ENC.encode(JSON.stringify(value));
    this.#bytesOut += bytes.length;
    await this.#net.publish(topic, bytes).catch((e) => this.log(`dsm run: gossip: ${(e as Error).message}`));
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
    if (v.type === "R") {
      if (!this.#validator || typeof v.after !== "number") return;
      const after = v.after;
      const now = Date.now();
      if ((this.#served.get(-1 - after) ?? 0) > now - 1000) return;
      this.#served.set(-1 - after, now);
      for (const c of this.#validator.builder.since(after)) void this.#publishJson(this.cpTopic, c);
      return;
    }
    this.#engine?.receive(v);
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
    const record = this.#validator.quarantine(card.node_id, {
      action: "quarantine",
      reason: missed ? "attestation_missed" : "attestation_failed",
      detail: `${r.check}: ${r.reason}`,
    });
    this.log(`dsm run: attestation of node ${card.node_id.slice(0, 16)}… failed (${r.check}): quarantined from seq ${record.from_seq}`);
    this.#engine?.logChanged();
  }

  /** A quarantine record from the mesh: checked against the genesis validators, stored, honoured. */
  #onQuarantine(value: unknown): void {
    let record: QuarantineRecord;
    try {
      record = parseQuarantine(value, this.node.mesh, DSMValidator.validatorsOf(this.node));
    } catch {
      this.#rejected.quarantine = (this.#rejected.quarantine ?? 0) + 1;
      return;
    }
    const digest = toHex(quarantineDigest(record));
    this.#sentRecords.add(digest);
    if (this.builder.quarantine.add(record)) {
      this.log(`dsm run: quarantine record from validator ${record.validator}: node ${record.node_id.slice(0, 16)}… ${record.action}${record.action === "quarantine" ? ` from seq ${record.from_seq}` : ""} (${record.reason})`);
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
        this.#lastFinalized = c.checkpoint.epoch;
        this.#lastCert = c;
        this.#finalityLatency = Date.now() - epochBounds(this.node.genesis, c.checkpoint.epoch).endMs;
        this.log(`dsm run: epoch ${c.checkpoint.epoch} finalized: tree_size ${c.checkpoint.tree_size}, signers ${c.signers}, round ${e.round}`);
        return;
      }
      case "evidence":
        this.log(`dsm run: EQUIVOCATION by validator ${e.validator}: evidence stored and broadcast`);
        return;
      case "conflict":
      case "refused":
        this.log(`dsm run: ${e.kind}: ${e.reason}`);
        return;
      case "rejected":
        this.#rejected[`consensus`] = (this.#rejected.consensus ?? 0) + 1;
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
