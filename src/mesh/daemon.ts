// `dsm run`: the long-running node on the mesh (DESIGN.md section 8). The Daemon composes
// one service per protocol over one MeshNet, and starts and stops them in a fixed order:
//
//   attestation.ts        /dsm/attest/1: answers challenges; a validator challenges its peers
//   sync.ts               /dsm/sync/1: a node's microblocks from a seq, served and fetched
//   finality.ts           /dsm/finality/1: catch-up, and the certificates an edge keeps
//   leaves.ts             /dsm/leaves/1: the log's leaf ids an edge keeps certificates with
//   microblock-gossip.ts  dsm/<mesh[0:16]>/mb/1: this node's chain out, batches in (validators)
//   consensus.ts          dsm/<mesh[0:16]>/cp/1: the engine's messages, routed; the engine
//   quarantine-gossip.ts  quarantine requests on the consensus topic
//   restore-check.ts      /dsm/head/1: this node's chain head, asked of the mesh before it is offered
//   intel.ts              /dsm/intel/1: finalized advisories for edges; the decisions this node holds
//   ../intel/lapi.ts      decisions.listen: the CrowdSec bouncer API over those decisions
//
// They share a MeshContext (context.ts) and the counters (stats.ts), never the Daemon.
import { isDsmDaemon } from "../runtime/daemon-pid.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import { Receiver } from "../chain/accept.ts";
import { DSMValidator, ValidatorKeyError } from "../node/validator.ts";
import { CheckpointBuilder } from "../log/builder.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { epochAt } from "../protocol/checkpoint.ts";
import { signerIndices } from "../protocol/validator-set.ts";
import type { NodeCard } from "../protocol/card.ts";
import type { DSMNode } from "../node/node.ts";
import { readSecretFile, writeFileAtomic } from "../fs/files.ts";
import pkg from "../../package.json" with { type: "json" };
import { CONTROL_SOCKET, controlPortToken, startControl, startControlPort, startMetrics } from "./control.ts";
import { MeshNet } from "./p2p.ts";
import { admitCard } from "./admission.ts";
import type { DaemonApi, DaemonStatus } from "./api.ts";
import type { MeshContext } from "./context.ts";
import { MeshStats } from "./stats.ts";
import { Attestation } from "./attestation.ts";
import { ekTrustText, type EvidenceResult, trustLine, verifyEvidence } from "../tpm/evidence.ts";
import { Sync } from "./sync.ts";
import { Leaves } from "./leaves.ts";
import { Finality } from "./finality.ts";
import { MicroblockGossip } from "./microblock-gossip.ts";
import { ConsensusGossip } from "./consensus.ts";
import { QuarantineGossip } from "./quarantine-gossip.ts";
import { HeadCheck } from "./restore-check.ts";
import { Intel } from "./intel.ts";
import { BouncerStore } from "../ledger/bouncer-store.ts";
import { startDecisionsApi } from "../intel/lapi.ts";
import type { DaemonLog } from "./daemon-log.ts";
export type { DaemonLog, DaemonStatus };

const VERSION: string = pkg.version;

/** The services over one started MeshNet, made together once it listens. */
interface Services {
  net: MeshNet;
  attestation: Attestation;
  sync: Sync;
  leaves: Leaves;
  finality: Finality;
  microblocks: MicroblockGossip;
  consensus: ConsensusGossip;
  quarantine: QuarantineGossip;
  head: HeadCheck;
  intel: Intel;
}

export class Daemon implements DaemonApi {
  #validator: DSMValidator | null = null;
  #receiver: Receiver;
  #stats: MeshStats;
  #parts: Services | null = null;
  #stopping = false;
  #wroteRunJson = false;
  #control: ReturnType<typeof startControl> | null = null;
  #metrics: ReturnType<typeof startMetrics> | null = null;
  #controlPort: ReturnType<typeof startControlPort> | null = null;
  #decisionsApi: ReturnType<typeof startDecisionsApi> | null = null;
  readonly builder: CheckpointBuilder;
  readonly #evidence = new WeakMap<NodeCard, { at: number; result: EvidenceResult }>();
  readonly mbTopic: string;
  readonly cpTopic: string;

  private constructor(
    readonly node: DSMNode,
    private readonly log: DaemonLog,
  ) {
    this.mbTopic = `dsm/${node.mesh.slice(0, 16)}/mb/1`;
    this.cpTopic = `dsm/${node.mesh.slice(0, 16)}/cp/1`;
    this.#receiver = new Receiver(node.ledger, node.policy, {
      maxClockSkewMs: node.config.mesh.max_clock_skew_s * 1000,
      // A validator takes nothing from a node whose role must attest until it enrolled it.
      notAttested: (id) => (this.#validator ? node.notAttested(id) : null),
    });
    this.builder = new CheckpointBuilder(node.ledger, node.policy);
    this.#stats = new MeshStats(node.genesis, log);
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
    const node = this.node;
    try {
      this.#validator = DSMValidator.open(this.node);
    } catch (e) {
      if (!(e instanceof ValidatorKeyError)) throw e;
    }
    const bootstrap = cfg.bootstrap_nodes.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const listen = `/ip4/${cfg.host}/tcp/${cfg.port}`;
    const net = await listening(`${cfg.host}:${cfg.port}`, "gossip.host, gossip.port", () => MeshNet.start({
      privateKey: new Uint8Array(readSecretFile(this.node.layout.libp2pKey)),
      listen: [listen],
      bootstrap,
      maxMessageBytes: cfg.max_message_bytes,
      cards: {
        // Read at each handshake: a key rotation replaces card.json while the node runs.
        get own() {
          return node.card();
        },
        admit: (card, peerId) => admitCard(this.node, card, peerId),
        timeoutMs: 5000,
        // A peer admitted before attestation starts (below) is challenged by start().
        onAdmitted: (peerId, card) => {
          this.#parts?.quarantine.onPeer();
          this.#parts?.attestation.onAdmitted(peerId, card as NodeCard);
        },
        onRefused: (peerId, reason) => {
          this.#stats.count("peer");
          this.log("warn", `peer ${peerId} refused: ${reason}`, { peer_id: peerId });
        },
      },
    }));
    const p = (this.#parts = this.#services(net));
    // Every node answers attestation challenges (with a TPM; without one it says so).
    await p.attestation.serve();
    await p.sync.serve();
    await p.finality.serve();
    await p.leaves.serve();
    await p.head.serve();
    await p.intel.serve();
    p.attestation.start();
    // Validators take every microblock in; an edge only publishes its own (gossipsub's fanout
    // reaches the validators) and keeps the certificates, with the log's leaf ids from
    // /dsm/leaves/1, so it never spends a signature check or a row on another node's event.
    if (this.#validator) p.microblocks.subscribe();
    p.consensus.subscribe();
    // Everything of this node's chain is offered once at start: peers keep what they lack;
    // but only once a peer has shown the mesh holds no later seq of it (a restored data dir).
    p.head.start(() => p.microblocks.start());
    p.quarantine.start();
    this.#stats.startFrom(this.builder.latest());
    if (this.#validator) p.consensus.startEngine(this.#validator);
    // Catch-up with /dsm/finality/1 on validators and edges alike: a validator that was down,
    // or missed a certificate, needs nothing else, and an edge keeps the certificates too,
    // with the tree they commit to, so it can prove its own events.
    p.finality.startCatchUp();
    this.#stats.onFinalized.push(() => p.intel.poke());
    p.intel.start();
    const socket = path.join(this.node.layout.dir, CONTROL_SOCKET);
    this.#control = await listening(socket, "the data dir's control socket", () => startControl(this));
    const { metrics, control } = this.node.config;
    if (metrics.port !== 0) this.#metrics = await listening(`${metrics.listen.includes(":") ? `[${metrics.listen}]` : metrics.listen}:${metrics.port}`, "metrics.listen, metrics.port", () => startMetrics(this, metrics.port, VERSION, metrics.listen));
    if (control.port !== 0) {
      let token: string;
      try {
        token = controlPortToken(this.node, this.log);
      } catch (e) {
        throw new DaemonStartError(`control.token_file: ${(e as Error).message}`);
      }
      this.#controlPort = await listening(`127.0.0.1:${control.port}`, "control.port", () => startControlPort(this, control.port, token));
    }
    const listenAt = this.node.config.decisions.listen;
    if (listenAt !== "") {
      const { host, port } = hostPort(listenAt);
      this.#decisionsApi = await listening(listenAt, "decisions.listen", () =>
        startDecisionsApi({
          decisions: p.intel.decisions,
          bouncers: new BouncerStore(this.node.ledger, this.node.mesh),
          hostname: host,
          port,
          onPull: (bouncer, startup, count) => this.#stats.notePull(bouncer, startup, count),
          log: (level, message) => this.log(level, message),
        }),
      );
    }
    const info = { pid: process.pid, peer_id: net.peerId, addrs: net.addrs(), mesh: this.node.mesh, role: this.#validator ? "validator" : "edge" };
    this.#wroteRunJson = true;
    writeFileAtomic(path.join(this.node.layout.dir, "run.json"), JSON.stringify(info, null, 2) + "\n", { overwrite: true, mode: 0o644 });
    // The card's role, and what the node does where that differs (an edge validating its local one-node mesh).
    this.log("info", `${this.node.roleDescription(this.#validator !== null)} ${this.node.nodeId.slice(0, 16)}… peer ${info.peer_id} listening on ${info.addrs.join(" ")}`, { role: this.node.card().role, validator: this.#validator !== null, node_id: this.node.nodeId, peer_id: info.peer_id, addrs: info.addrs });
  }

  /** The services, wired to each other through the functions each needs of another. */
  #services(net: MeshNet): Services {
    const ctx: MeshContext = {
      net,
      node: this.node,
      receiver: this.#receiver,
      builder: this.builder,
      stats: this.#stats,
      log: this.log,
      engine: () => consensus.engine,
      stopping: () => this.#stopping,
      setChanged: () => queueMicrotask(() => this.#followSet()),
      mbTopic: this.mbTopic,
      cpTopic: this.cpTopic,
    };
    const microblocks: MicroblockGossip = new MicroblockGossip(ctx, (nodeId, from) => sync.want(nodeId, from));
    const sync = new Sync(ctx, (lines) => microblocks.store(lines));
    const leaves = new Leaves(ctx);
    const finality = new Finality(ctx, leaves);
    const quarantine = new QuarantineGossip(ctx);
    const head = new HeadCheck(ctx);
    const intel = new Intel(ctx);
    const consensus: ConsensusGossip = new ConsensusGossip(ctx, {
      quarantine: (v) => quarantine.receive(v),
      certificate: (v) => finality.onCertificate(v),
      catchUp: () => finality.catchUp(),
      want: (nodeId, from) => sync.want(nodeId, from),
    });
    const attestation = new Attestation(ctx, this.#validator, this.node.enrollments, (nodeId, from) => sync.want(nodeId, from));
    return { net, attestation, sync, leaves, finality, microblocks, consensus, quarantine, head, intel };
  }

  /**
   * The validator set changed (a certificate with a set change was stored): this node's
   * place in it is reopened, and its engine restarted over the new set, so an added
   * validator starts voting, a removed one stops, and a rotated one signs with its new keys.
   * The engine's own certificate commit comes first; the new engine starts at the height
   * after it, where the new set counts.
   */
  #followSet(): void {
    const p = this.#parts;
    if (!p || this.#stopping) return;
    const version = this.builder.history().version;
    if (this.#validator && this.#validator.setVersion === version) return;
    let next: DSMValidator | null = null;
    try {
      next = DSMValidator.open(this.node);
    } catch (e) {
      if (!(e instanceof ValidatorKeyError)) {
        this.log("error", `validator set changed, but this node's keys could not be opened: ${(e as Error).message}`);
        return;
      }
    }
    if (!this.#validator && !next) return;
    p.consensus.engine?.stop();
    p.consensus.engine = null;
    this.#validator?.close();
    this.#validator = next;
    p.attestation.validator = next;
    const n = this.builder.history().latestCards().length;
    if (next) {
      p.microblocks.subscribe();
      p.consensus.startEngine(next);
      this.log("info", `validator set changed (${version} change(s) since genesis): this node is validator ${next.index} of ${n}`, { validator: next.index, validators: n });
      if (next.rotated) this.log("warn", `this validator's keys were rotated: it signs with its new BLS key${next.rotated.libp2p ? "; restart dsm run so that the mesh sees its new peer id" : ""}`, { rotated: next.rotated });
    } else {
      this.log("warn", `validator set changed (${version} change(s) since genesis): this node is no longer a validator (${n} in force)`, { validators: n });
    }
  }

  #net(): MeshNet {
    if (!this.#parts) throw new Error("the daemon has not started");
    return this.#parts.net;
  }

  peers(): string[] {
    return this.#net().peers();
  }

  status(): DaemonStatus {
    const genesis = this.node.genesis;
    const net = this.#net();
    const stats = this.#stats;
    const connected = new Set(net.peers());
    const signed = new Set(stats.lastCert ? signerIndices(stats.lastCert.signers) : []);
    const closed = epochAt(genesis, Date.now()) - 1;
    const st = this.#parts?.consensus.engine?.status();
    return {
      node_id: this.node.nodeId,
      mesh: this.node.mesh,
      peer_id: net.peerId,
      addrs: net.addrs(),
      peers: connected.size,
      role: this.#validator ? "validator" : "edge",
      published: stats.published,
      received: stats.received,
      rejected: { ...stats.rejected },
      gossip_bytes_out: stats.bytesOut,
      gossip_bytes_in: stats.bytesIn,
      last_finalized_epoch: stats.lastFinalized,
      finality_latency_ms: stats.finalityLatency,
      participation: stats.lastCert ? signed.size / genesis.validators.length : null,
      lag_epochs: stats.lastFinalized === null ? null : Math.max(0, closed - stats.lastFinalized),
      validators: genesis.validators.map((c, i) => ({ index: i, node_id: c.node_id, peer_id: c.peer_id, connected: connected.has(c.peer_id) || c.node_id === this.node.nodeId, signed_last: signed.has(i) })),
      consensus: st ? { round: st.round, step: st.step, base_epoch: st.baseEpoch, flagged: st.flagged } : null,
      intel: this.#intelStatus(),
      attestation: { ...this.#parts!.attestation.status(), nodes: this.#trust(net) },
    };
  }

  #intelStatus(): DaemonStatus["intel"] {
    const intel = this.#parts!.intel;
    const st = intel.status();
    const active: Record<string, number> = {};
    const now = Date.now();
    for (const d of intel.decisions.current()) {
      if (Date.parse(d.until) <= now) continue;
      const k = `${d.scope}/${d.category}`;
      active[k] = (active[k] ?? 0) + 1;
    }
    return {
      made: this.builder.intel.madeBy(this.node.nodeId),
      received: st.received,
      finalized: st.advisories,
      refused: st.refused,
      scanned_to: st.scanned_to,
      tree_size: st.tree_size,
      decisions: Object.values(active).reduce((a, b) => a + b, 0),
      decisions_as_of: st.decisions_as_of,
      active,
      bouncer_pulls: this.#stats.bouncerPulls,
      decision_latency_ms: st.decision_latency_ms,
    };
  }

  /** Each admitted peer's trust level: what this node enrolled, or else what its card shows, checked. */
  #trust(net: MeshNet): DaemonStatus["attestation"]["nodes"] {
    const out: DaemonStatus["attestation"]["nodes"] = [];
    for (const [peerId, raw] of net.cards) {
      const card = raw as NodeCard;
      const e = this.node.enrollments.get(card.node_id);
      const ev = e || !card.tpm ? null : this.#evidenceOf(card);
      out.push({
        node_id: card.node_id,
        peer_id: peerId,
        trust: e ? "tpm-enrolled" : ev?.ok ? "tpm-evidence" : "software",
        detail: e ? `TPM-rooted, ${ekTrustText(e.ek)}` : trustLine(ev, false),
        ek: e ? ekTrustText(e.ek) : null,
        quoted_at: e?.quoted_at ?? null,
        pcr_digest: e?.pcr_digest ?? null,
        result: e?.result ?? null,
      });
    }
    return out;
  }

  /**
   * A peer card's evidence check, kept for 10 minutes per card: status and every metrics
   * scrape ask, and a chain check costs RSA verifications (a certificate may expire, hence
   * not forever).
   */
  #evidenceOf(card: NodeCard): EvidenceResult {
    const now = Date.now();
    const kept = this.#evidence.get(card);
    if (kept && now - kept.at < 600_000) return kept.result;
    const result = verifyEvidence(card, this.node.genesis.attestation, now);
    this.#evidence.set(card, { at: now, result });
    return result;
  }

  /** The certificate of `epoch` (default: the last closed one) or a later one, waiting up to ms. */
  async waitForCertificate(epoch: number | undefined, ms: number): Promise<FinalityCertificate | null> {
    const target = epoch ?? epochAt(this.node.genesis, Date.now()) - 1;
    const have = this.builder.latest();
    if (have && have.checkpoint.epoch >= target) return have;
    // Nothing new up to that epoch: the latest certificate already covers it.
    if (this.builder.propose(target) === null) return have;
    const engine = this.#parts?.consensus.engine;
    if (!engine || ms === 0) return null;
    const body = { epoch: target } as FinalityCertificate["checkpoint"];
    return Promise.race([engine.collectValidatorSignatures(body), Bun.sleep(ms).then(() => null)]);
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#parts?.head.passed) await this.#parts.microblocks.publishNew().catch(() => {});
    await this.#teardown();
  }

  /** Stops whatever has started, in any state of #start. */
  async #teardown(): Promise<void> {
    this.#stopping = true;
    const p = this.#parts;
    p?.microblocks.stop();
    p?.finality.stop();
    p?.quarantine.stop();
    p?.head.stop();
    p?.intel.stop();
    this.#decisionsApi?.stop(true);
    p?.attestation.stop();
    p?.consensus.engine?.stop();
    this.#control?.stop(true);
    this.#metrics?.stop(true);
    this.#controlPort?.stop(true);
    await p?.net.stop().catch(() => {});
    this.#validator?.close();
    // Only what this process made: a second daemon refused on a busy port must not take
    // the first one's run.json and socket with it.
    if (this.#wroteRunJson) fs.rmSync(path.join(this.node.layout.dir, "run.json"), { force: true });
    if (this.#control) fs.rmSync(path.join(this.node.layout.dir, CONTROL_SOCKET), { force: true });
  }
}

/** "127.0.0.1:8081", "[::1]:8081", or "on" (127.0.0.1:8081): decisions.listen. */
export function hostPort(text: string): { host: string; port: number } {
  // "on": the documented default, beside (never on) a local CrowdSec's 8080.
  if (text === "on") return { host: "127.0.0.1", port: 8081 };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new DaemonStartError(`decisions.listen must be HOST:PORT (e.g. 127.0.0.1:8081), or on, got ${JSON.stringify(text)}`);
  return { host: m[1] ?? m[2]!, port };
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
  return isDsmDaemon(pid) ? pid : null;
}
