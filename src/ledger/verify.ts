// dsm verify: re-checks every stored row against the rules it was accepted under.
// Streams in arrival order and keeps only per-chain heads and the certified keys,
// so memory stays flat however large the ledger grows.
import { letSignalsIn } from "../runtime/yield.ts";
import { fromHex, isHex, toHex, ZERO_HASH } from "../encoding/hex.ts";
import { verify } from "../crypto/p256.ts";
import {
  checkKeyUse,
  MicroblockRejected,
  microblockIdBytes,
  parseMicroblock,
  payloadMatches,
  type SigningKeyInfo,
} from "../protocol/microblock.ts";
import { keyNameOf, parseKeyCert, signingKeyInfo } from "../protocol/keycert.ts";
import { type Ledger, ledgerDatabase, prepared, withoutLocalFields } from "./ledger.ts";
import type { FromVerifyWorker, ToVerifyWorker } from "./verify-worker.ts";
import { workerUrl } from "../runtime/worker-url.ts";
import type { Statement } from "bun:sqlite";
import { blsAggregatePublicKeyPoint, blsBatchVerify, type G1Point } from "../crypto/bls.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { parseCard } from "../protocol/card.ts";
import { type FinalityCertificate, parseFinalityCertificate } from "../protocol/certificate.ts";
import { type CheckpointBody, checkpointDigest } from "../protocol/checkpoint.ts";
import { type Evidence, evidenceProblem, ofMesh, parseSigned, signingDigest, slotOf, slotsOf } from "../protocol/consensus-messages.ts";
import { type Genesis, meshIdOf } from "../protocol/genesis.ts";
import { decisionFromSeq, decisionProblem, parseQuarantine, type QuarantineRecord, quarantineDigest } from "../protocol/quarantine.ts";
import { signerIndices, signersBitfield, type ValidatorSet } from "../protocol/validator-set.ts";
import { SetHistory, setChangeProblem } from "../protocol/set-change.ts";
import type { Enrollment } from "../tpm/enroll.ts";
import { STATEMENTS } from "./sql.ts";

export interface Problem {
  /**
   * "microblock", "key_certificate", "fork_evidence"; with a genesis also "certificate" (a
   * stored finality certificate: its row, its quorum signature), "checkpoint" (its body
   * against the log: prev, ranges, spans, root, tree_size), "log_leaf", "log_node",
   * "quarantine_record", "consensus_message", "consensus_evidence", "enrollment".
   */
  kind: string;
  rowid?: number;
  node_id?: string;
  seq?: number;
  id?: string;
  message: string;
}

export interface VerifyReport {
  microblocks: number;
  chains: number;
  keyCerts: number;
  payloadsChecked: number;
  payloadsWithheld: number;
  forkEvidence: number;
  /** Rows after the microblocks, walked when a genesis is given (all 0 without one). */
  stored: StoredCounts;
  /** Problems found, per kind (all of them, also those beyond maxProblems). */
  problemKinds: Record<string, number>;
  problems: Problem[];
  /** Problems beyond maxProblems are counted, not kept. */
  problemCount: number;
  /** The walk was stopped before the end (opts.stop): nothing is claimed about the rest. */
  stopped?: boolean;
}

/** The report as `dsm verify --json` prints it (docs/JSON.md): snake_case, like all dsm output. */
export function verifyReportJson(r: VerifyReport) {
  return {
    microblocks: r.microblocks,
    chains: r.chains,
    key_certificates: r.keyCerts,
    payloads_checked: r.payloadsChecked,
    payloads_withheld: r.payloadsWithheld,
    fork_evidence: r.forkEvidence,
    certificates: r.stored.certificates,
    log_leaves: r.stored.logLeaves,
    log_nodes: r.stored.logNodes,
    quarantine_records: r.stored.quarantineRecords,
    quarantine_decisions: r.stored.quarantineDecisions,
    consensus_messages: r.stored.consensusMessages,
    consensus_evidence: r.stored.consensusEvidence,
    enrollments: r.stored.enrollments,
    problem_kinds: r.problemKinds,
    problems: r.problems,
    problem_count: r.problemCount,
  };
}

export interface VerifyOptions {
  /** Chains whose payloads must all be present (our own node's). */
  ownNodeId?: string;
  maxProblems?: number;
  onProgress?: (done: number, total: number) => void;
  /** Check signatures on a worker thread, in parallel with everything else (the CLI does). */
  worker?: boolean;
  /** The node's mesh: chains in it must belong to admitted nodes. */
  policy?: { mesh: string; isAdmitted(nodeId: string): boolean };
  /** Checked between rows: once set, the walk ends early and the report says stopped. */
  stop?: { stopped: boolean };
  /**
   * The mesh's genesis: with it, everything else stored is checked too (the log, checkpoints
   * and certificates, quarantine records, consensus messages and evidence, enrollments).
   */
  genesis?: Genesis;
}

export async function verifyLedger(ledger: Ledger, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const maxProblems = opts.maxProblems ?? 100;
  const report: VerifyReport = {
    microblocks: 0,
    chains: 0,
    keyCerts: 0,
    payloadsChecked: 0,
    payloadsWithheld: 0,
    forkEvidence: 0,
    stored: { certificates: 0, logLeaves: 0, logNodes: 0, quarantineRecords: 0, quarantineDecisions: 0, consensusMessages: 0, consensusEvidence: 0, enrollments: 0 },
    problemKinds: {},
    problems: [],
    problemCount: 0,
  };
  // Signature failures come back from the worker after later rows' problems: keep the
  // earliest by row, so "first problem" means the first row, whatever finished first.
  const problem = (p: Problem) => {
    report.problemCount += 1;
    report.problemKinds[p.kind] = (report.problemKinds[p.kind] ?? 0) + 1;
    report.problems.push(p);
    if (report.problems.length > 2 * maxProblems) trimProblems(report.problems, maxProblems);
  };

  const keys = new Map<string, SigningKeyInfo>();
  const signingPubs: [string, string][] = [];
  for (const row of ledger.iterateKeyCerts()) {
    report.keyCerts += 1;
    const where = `key certificate ${row.key.slice(0, 16)}…`;
    try {
      const cert = parseKeyCert(JSON.parse(Buffer.from(row.body).toString("utf8")));
      if (keyNameOf(cert.signing_pub) !== row.key) throw new Error("stored under another key name");
      if (cert.first_seq !== row.first_seq) throw new Error("first_seq column differs from the certificate");
      if (cert.mesh !== row.mesh || cert.node_id !== row.node_id) throw new Error("stored under another chain");
      keys.set(row.key, signingKeyInfo(cert));
      signingPubs.push([row.key, cert.signing_pub]);
    } catch (e) {
      problem({ kind: "key_certificate", node_id: row.node_id, message: `${where}: ${(e as Error).message}` });
    }
  }

  const heads = new Map<string, { seq: number; id: string; tsMs: number }>();
  const mbTotal = ledger.maxRowid();
  const total = mbTotal + (opts.genesis ? (prepared(ledger, { rows: STATEMENTS.verify.rows }).rows.get() as { n: number }).n : 0);
  const paylookup = ledgerDatabase(ledger).query("SELECT body FROM payloads WHERE hash = ?");
  const signatures = opts.worker ? new WorkerSignatureChecker(signingPubs) : new InlineSignatureChecker(keys);
  try {
    for (const mb of ledger.iterateMicroblocks()) {
      if (signatures.busy) await signatures.settle();
      if ((report.microblocks & 1023) === 0 && opts.stop) {
        await letSignalsIn();
        if (opts.stop.stopped) {
          report.stopped = true;
          break;
        }
      }
      report.microblocks += 1;
      if (opts.onProgress && (report.microblocks & 4095) === 0) opts.onProgress(mb.rowid, total);
      const where = `microblock #${mb.rowid} (node ${mb.node_id.slice(0, 12)}… seq ${mb.seq}, id ${mb.id.slice(0, 16)}…)`;
      const fail = (message: string) =>
        problem({ kind: "microblock", rowid: mb.rowid, node_id: mb.node_id, seq: mb.seq, id: mb.id, message: `${where}: ${message}` });
      const chainKey = mb.mesh + mb.node_id;
      const head = heads.get(chainKey);
      if (!head) {
        report.chains += 1;
        if (opts.policy && mb.mesh === opts.policy.mesh && !opts.policy.isAdmitted(mb.node_id)) {
          fail("node is not admitted to this mesh by its genesis");
        }
      }
      // The head advances even past a bad row, so one tampered row is reported once, not for every row after it.
      const tsMs = Date.parse(mb.timestamp);
      heads.set(chainKey, { seq: mb.seq, id: mb.id, tsMs });
      try {
        parseMicroblock(withoutLocalFields(mb));
      } catch (e) {
        fail((e as Error).message.replace(/^microblock: /, ""));
        continue;
      }
      const idBytes = microblockIdBytes(mb);
      if (toHex(idBytes) !== mb.id) {
        fail("id does not match its body (the row was altered)");
        continue;
      }
      const expectSeq = head ? head.seq + 1 : 1;
      if (mb.seq !== expectSeq) fail(`chain gap: expected seq ${expectSeq}`);
      else if (mb.prev !== (head ? head.id : ZERO_HASH)) fail("prev does not link to the previous microblock");
      else if (head && tsMs < head.tsMs) fail("timestamp goes backwards along the chain");
      const key = keys.get(mb.key);
      if (!key) {
        fail(`no valid key certificate for signing key ${mb.key.slice(0, 16)}…`);
        continue;
      }
      try {
        checkKeyUse(mb, key, where);
      } catch (e) {
        if (!(e instanceof MicroblockRejected)) throw e;
        fail(e.message.slice(where.length + 2));
        continue;
      }
      signatures.check(mb.key, idBytes, fromHex(mb.sig), () => fail("signature does not verify"));
      const payload = paylookup.get(fromHex(mb.payload_hash)) as { body: Uint8Array } | null;
      if (!payload) {
        if (mb.node_id === opts.ownNodeId) fail("payload is missing");
        else report.payloadsWithheld += 1;
      } else {
        report.payloadsChecked += 1;
        if (!payloadMatches(mb.payload_hash, payload.body)) {
          fail(`payload ${mb.payload_hash.slice(0, 16)}… does not match payload_hash (the payload was altered)`);
        }
      }
    }
    await signatures.drain();
  } finally {
    signatures.close();
  }
  if (report.stopped) {
    trimProblems(report.problems, maxProblems);
    return report;
  }
  // Rows that no chain reaches were never read above: say so rather than call them verified.
  for (const [table, seen] of [["microblocks", report.microblocks], ["key_certs", report.keyCerts]] as const) {
    const stored = ledger.rowCount(table);
    if (stored !== seen) {
      problem({ kind: table === "microblocks" ? "microblock" : "key_certificate", message: `${stored - seen} ${table} rows belong to no chain (the chains table was altered); they were not verified` });
    }
  }

  for (const ev of ledger.iterateForkEvidence()) {
    report.forkEvidence += 1;
    const msg = checkForkEvidence(ev, keys);
    if (msg) problem({ kind: "fork_evidence", rowid: ev.rowid, seq: ev.seq, message: `fork evidence #${ev.rowid}: ${msg}` });
  }
  if (opts.genesis) {
    let done = mbTotal;
    const stopped = await verifyStored(ledger, opts.genesis, {
      ownNodeId: opts.ownNodeId,
      problem,
      counts: report.stored,
      row: async () => {
        done += 1;
        if ((done & 255) === 0) {
          opts.onProgress?.(done, total);
          if (opts.stop) {
            await letSignalsIn();
            if (opts.stop.stopped) return true;
          }
        }
        return false;
      },
    });
    if (stopped) {
      report.stopped = true;
      trimProblems(report.problems, maxProblems);
      return report;
    }
  }
  opts.onProgress?.(total, total);
  trimProblems(report.problems, maxProblems);
  return report;
}

/** The order verify reads them: key certificates, microblocks by row, fork evidence, the log, then the other stores. */
const RANK: Record<string, number> = {
  key_certificate: 0,
  microblock: 1,
  fork_evidence: 2,
  certificate: 3,
  checkpoint: 3,
  log_leaf: 3,
  log_node: 3,
  quarantine_record: 4,
  consensus_message: 5,
  consensus_evidence: 6,
  enrollment: 7,
};

function trimProblems(problems: Problem[], max: number): void {
  const rank = (p: Problem) => RANK[p.kind] ?? 1;
  problems.sort((a, b) => rank(a) - rank(b) || (a.rowid ?? 0) - (b.rowid ?? 0));
  problems.length = Math.min(problems.length, max);
}

interface SignatureChecker {
  /** True when the caller should await settle() before submitting more. */
  readonly busy: boolean;
  check(keyName: string, id: Uint8Array, sig: Uint8Array, onFail: () => void): void;
  settle(): Promise<void>;
  drain(): Promise<void>;
  close(): void;
}

class InlineSignatureChecker implements SignatureChecker {
  readonly busy = false;
  constructor(private readonly keys: Map<string, SigningKeyInfo>) {}
  check(keyName: string, id: Uint8Array, sig: Uint8Array, onFail: () => void): void {
    const key = this.keys.get(keyName);
    if (!key || !verify(key.publicKey, id, sig)) onFail();
  }
  async settle(): Promise<void> {}
  async drain(): Promise<void> {}
  close(): void {}
}

const BATCH_ROWS = 512;
const MAX_BATCHES_IN_FLIGHT = 8;

/** Batches signature checks to verify-worker.ts; a bounded number in flight keeps memory flat. */
class WorkerSignatureChecker implements SignatureChecker {
  #worker: Worker;
  #next = 0;
  #inFlight = new Map<number, (() => void)[]>();
  #names: string[] = [];
  #ids = new Uint8Array(32 * BATCH_ROWS);
  #sigs = new Uint8Array(64 * BATCH_ROWS);
  #onFail: (() => void)[] = [];
  #wake: (() => void) | null = null;
  #error: Error | null = null;

  constructor(signingPubs: [string, string][]) {
    this.#worker = new Worker(workerUrl("ledger/verify-worker.ts", new URL("./verify-worker.ts", import.meta.url)));
    this.#worker.postMessage({ kind: "keys", keys: signingPubs } satisfies ToVerifyWorker);
    this.#worker.onmessage = (e: MessageEvent<FromVerifyWorker>) => {
      const fails = this.#inFlight.get(e.data.batch)!;
      this.#inFlight.delete(e.data.batch);
      for (const i of e.data.failed) fails[i]!();
      this.#wakeUp();
    };
    this.#worker.onerror = (e) => {
      this.#error = new Error(`signature worker failed: ${e.message}`);
      this.#wakeUp();
    };
  }

  get busy(): boolean {
    return this.#inFlight.size >= MAX_BATCHES_IN_FLIGHT || this.#error !== null;
  }

  check(keyName: string, id: Uint8Array, sig: Uint8Array, onFail: () => void): void {
    const i = this.#names.length;
    this.#names.push(keyName);
    this.#ids.set(id, i * 32);
    this.#sigs.set(sig, i * 64);
    this.#onFail.push(onFail);
    if (this.#names.length === BATCH_ROWS) this.#send();
  }

  async settle(): Promise<void> {
    while (this.#inFlight.size >= MAX_BATCHES_IN_FLIGHT && !this.#error) await new Promise<void>((r) => (this.#wake = r));
    if (this.#error) throw this.#error;
  }

  async drain(): Promise<void> {
    if (this.#names.length) this.#send();
    while (this.#inFlight.size > 0 && !this.#error) await new Promise<void>((r) => (this.#wake = r));
    if (this.#error) throw this.#error;
  }

  close(): void {
    this.#worker.terminate();
  }

  #send(): void {
    const n = this.#names.length;
    const batch = this.#next++;
    const ids = this.#ids.slice(0, n * 32);
    const sigs = this.#sigs.slice(0, n * 64);
    this.#inFlight.set(batch, this.#onFail);
    this.#worker.postMessage({ kind: "batch", batch, names: this.#names, ids, sigs } satisfies ToVerifyWorker, [ids.buffer, sigs.buffer]);
    this.#names = [];
    this.#onFail = [];
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}


/**
 * Fork evidence must prove itself: two microblocks for the chain and seq the row claims,
 * different ids, each with a valid id and a signature by a key certified for that node,
 * mesh and seq. Anything less would let a forged row quarantine an innocent node.
 */
export function checkForkEvidence(
  ev: { mesh: string | null; node_id: string | null; seq: number; first: string; second: string },
  keys: Map<string, SigningKeyInfo>,
): string | null {
  try {
    const a = parseMicroblock(JSON.parse(ev.first));
    const b = parseMicroblock(JSON.parse(ev.second));
    if (a.node_id !== b.node_id || a.seq !== b.seq || a.mesh !== b.mesh) return "the two microblocks are not for one node and seq";
    if (a.mesh !== ev.mesh || a.node_id !== ev.node_id || a.seq !== ev.seq) return "the microblocks are not for the chain and seq the row names";
    if (a.id === b.id) return "the two microblocks are the same";
    for (const mb of [a, b]) {
      const where = `microblock ${mb.id.slice(0, 16)}…`;
      const idBytes = microblockIdBytes(mb);
      if (toHex(idBytes) !== mb.id) return `${where} does not match its id`;
      const key = keys.get(mb.key);
      if (!key) return `${where} has no valid key certificate`;
      checkKeyUse(mb, key, where);
      if (!verify(key.publicKey, idBytes, fromHex(mb.sig))) return `${where} is not validly signed`;
    }
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

// ---------------------------------------------------------------------------
// Everything else the ledger stores (issue 14): the mesh log's leaves and interior nodes,
// every checkpoint and its finality certificate, quarantine records, consensus messages
// and evidence, enrollments. Each is re-checked against the genesis, as a receiver would.

/** Counts of the rows walked after the microblocks (VerifyReport). */
export interface StoredCounts {
  certificates: number;
  logLeaves: number;
  logNodes: number;
  quarantineRecords: number;
  quarantineDecisions: number;
  consensusMessages: number;
  consensusEvidence: number;
  enrollments: number;
}

/** Subtrees below this level are not stored (src/log/tree-store.ts STORED_LEVEL): a missing one is no problem. */
const STORED_LEVEL = 3;
const LEAVES_PER_BLOCK = 16;
const BLS_BATCH = 128;

const sha = (data: Uint8Array): Uint8Array => {
  const out = new Uint8Array(32);
  Bun.SHA256.hash(data, out);
  return out;
};
const leafBuf = new Uint8Array(33);
/** RFC 6962 leaf hash, SHA-256(0x00 || id), as src/log/merkle.ts computes it (ledger/ sits below log/). */
function rfcLeaf(id: Uint8Array): Uint8Array {
  leafBuf[0] = 0;
  leafBuf.set(id, 1);
  return sha(leafBuf);
}
const nodeBuf = new Uint8Array(65);
/** RFC 6962 interior node hash, SHA-256(0x01 || left || right). */
function rfcNode(l: Uint8Array, r: Uint8Array): Uint8Array {
  nodeBuf[0] = 1;
  nodeBuf.set(l, 1);
  nodeBuf.set(r, 33);
  return sha(nodeBuf);
}
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;
const EMPTY_TREE_ROOT = sha(new Uint8Array(0));

/** The tree's right edge, rebuilt leaf by leaf: every perfect subtree it completes is handed to `made`. */
class Frontier {
  n = 0;
  readonly #hashes: Uint8Array[] = [];
  readonly #levels: number[] = [];
  constructor(private readonly made: (level: number, idx: number, h: Uint8Array) => void) {}
  push(id: Uint8Array): void {
    let h = rfcLeaf(id);
    let level = 0;
    while (this.#levels.length > 0 && this.#levels[this.#levels.length - 1] === level) {
      h = rfcNode(this.#hashes.pop()!, h);
      this.#levels.pop();
      level++;
      this.made(level, (this.n + 1) / 2 ** level - 1, h);
    }
    this.#hashes.push(h);
    this.#levels.push(level);
    this.n++;
  }
  root(): Uint8Array {
    if (this.n === 0) return EMPTY_TREE_ROOT;
    let h = this.#hashes[this.#hashes.length - 1]!;
    for (let i = this.#hashes.length - 2; i >= 0; i--) h = rfcNode(this.#hashes[i]!, h);
    return h;
  }
}

/**
 * BLS checks in random-linear-combination batches (one pairing per message instead of two
 * per signature); when a batch fails, each item's own check runs and names what failed.
 */
class BlsBatch {
  #sets: { pk: G1Point; message: Uint8Array; sig: Uint8Array }[] = [];
  #exact: (() => void)[][] = [];
  /** One check per (signers, message, signature): an S stored under two slots, or a one-validator certificate and its S, cost one. */
  #seen = new Map<string, number>();
  add(signers: string, pk: G1Point, message: Uint8Array, sigHex: string, exact: () => void): void {
    const key = `${signers}|${toHex(message)}|${sigHex}`;
    const at = this.#seen.get(key);
    if (at !== undefined) {
      this.#exact[at]!.push(exact);
      return;
    }
    this.#seen.set(key, this.#sets.length);
    this.#sets.push({ pk, message, sig: fromHex(sigHex, 96) });
    this.#exact.push([exact]);
    if (this.#sets.length >= BLS_BATCH) this.flush();
  }
  flush(): void {
    const sets = this.#sets;
    const exact = this.#exact;
    this.#sets = [];
    this.#exact = [];
    this.#seen.clear();
    if (sets.length === 0) return;
    if (blsBatchVerify(sets)) return;
    for (const fs of exact) for (const f of fs) f();
  }
}

type Rows<T> = IterableIterator<T>;

export async function verifyStored(
  ledger: Ledger,
  genesis: Genesis,
  ctx: {
    ownNodeId?: string;
    problem: (p: Problem) => void;
    counts: StoredCounts;
    /** Called after each row; true when the walk must end (stopped). */
    row: () => Promise<boolean>;
  },
): Promise<boolean> {
  const st = prepared(ledger, STATEMENTS.verify);
  const mesh = meshIdOf(genesis);
  const meshBytes = fromHex(mesh, 32);
  const history = new SetHistory(genesis);
  const { problem, counts } = ctx;
  const bls = new BlsBatch();
  const decided: ExpectedDecision[] = [];
  const changed: { epoch: number; change: string }[] = [];
  if (await verifyLog(st, mesh, meshBytes, genesis, history, problem, counts, bls, ctx.row, decided, changed)) return true;
  // A request is signed by a validator of the set in force when it was made.
  const setOf = (epoch: number) => history.setAt(epoch);
  /** The set in force at an epoch first, then every other set the history had, newest first. */
  const setsFrom = (epoch: number) => [...new Set([setOf(epoch), ...history.eras.map((e) => setOf(e.fromEpoch)).reverse()])];

  // Set changes: each row one a stored checkpoint took, and every one there.
  const wantChanges = new Map(changed.map((c) => [c.epoch, c.change]));
  for (const row of st.setChanges.iterate() as Rows<{ mesh: Uint8Array; epoch: number; change: Uint8Array }>) {
    counts.quarantineDecisions += 1;
    const want = sameBytes(row.mesh, meshBytes) ? wantChanges.get(row.epoch) : undefined;
    const where = `validator-set change in epoch ${row.epoch}`;
    if (want === undefined) problem({ kind: "quarantine_record", message: `${where}: no stored checkpoint took it (the row was forged)` });
    else if (want !== Buffer.from(row.change).toString("utf8")) problem({ kind: "quarantine_record", message: `${where}: differs from the change its checkpoint took (the row was altered)` });
    wantChanges.delete(row.epoch);
    if (await ctx.row()) return true;
  }
  for (const epoch of wantChanges.keys()) problem({ kind: "quarantine_record", message: `validator-set change in epoch ${epoch}: taken by its checkpoint but missing from the ledger (the row was deleted)` });

  // Quarantine decisions: each row one that a stored checkpoint took, and every one there.
  const expected = new Map(decided.map((d) => [`${d.node_id}/${d.epoch}`, d]));
  for (const row of st.decisions.iterate() as Rows<{ mesh: Uint8Array; node_id: Uint8Array; epoch: number; action: string; from_seq: number }>) {
    counts.quarantineDecisions += 1;
    const nodeId = toHex(row.node_id);
    const k = `${nodeId}/${row.epoch}`;
    const want = sameBytes(row.mesh, meshBytes) ? expected.get(k) : undefined;
    const where = `quarantine decision about node ${nodeId.slice(0, 12)}… in epoch ${row.epoch}`;
    if (!want) problem({ kind: "quarantine_record", node_id: nodeId, message: `${where}: no stored checkpoint took it (the row was forged)` });
    else if (want.action !== row.action || want.from_seq !== row.from_seq) {
      problem({ kind: "quarantine_record", node_id: nodeId, message: `${where}: says ${row.action}${row.action === "quarantine" ? ` from seq ${row.from_seq}` : ""}, its checkpoint decided ${want.action}${want.action === "quarantine" ? ` from seq ${want.from_seq}` : ""} (the row was altered)` });
    }
    expected.delete(k);
    if (await ctx.row()) return true;
  }
  for (const d of expected.values()) problem({ kind: "quarantine_record", node_id: d.node_id, message: `quarantine decision about node ${d.node_id.slice(0, 12)}… in epoch ${d.epoch}: taken by its checkpoint but missing from the ledger (the row was deleted)` });

  // Quarantine records: each signed by a genesis validator, stored under its own digest and node.
  for (const row of st.quarantine.iterate() as Rows<{ mesh: Uint8Array; digest: Uint8Array; node_id: Uint8Array; record: Uint8Array }>) {
    counts.quarantineRecords += 1;
    const where = `quarantine record ${toHex(row.digest).slice(0, 16)}… (node ${toHex(row.node_id).slice(0, 12)}…)`;
    const fail = (m: string) => problem({ kind: "quarantine_record", node_id: toHex(row.node_id), id: toHex(row.digest), message: `${where}: ${m}` });
    try {
      if (!sameBytes(row.mesh, meshBytes)) throw new Error("stored under another mesh");
      const text = Buffer.from(row.record).toString("utf8");
      const value = JSON.parse(text) as { v?: unknown };
      // Signed under the set in force when it was made: the newest one its signer knew,
      // which around a change may be the one after its epoch's.
      const epoch = typeof (value as { epoch?: unknown }).epoch === "number" ? (value as { epoch: number }).epoch : 0;
      const r = underSomeSet(setsFrom(epoch), (set) => (value.v === 1 ? legacyQuarantine(value, set) : parseQuarantine(value, mesh, set, "record")));
      if (toHex(quarantineDigest(r)) !== toHex(row.digest)) throw new Error("digest column is not the record's digest (the row was altered)");
      if (r.node_id !== toHex(row.node_id)) throw new Error("node_id column differs from the record");
      if (canonicalize(r) !== text) throw new Error("not stored as its canonical bytes");
    } catch (e) {
      fail((e as Error).message.replace(/^record: /, ""));
    }
    if (await ctx.row()) return true;
  }

  // Consensus messages this validator signed (and others' behind its locks): each under a slot it occupies, validly signed.
  for (const row of st.signed.iterate() as Rows<{ mesh: Uint8Array; slot: string; message: Uint8Array }>) {
    counts.consensusMessages += 1;
    const where = `consensus message in slot ${row.slot}`;
    const fail = (m: string) => problem({ kind: "consensus_message", id: row.slot, message: `${where}: ${m}` });
    try {
      if (!sameBytes(row.mesh, meshBytes)) throw new Error("stored under another mesh");
      const raw = JSON.parse(Buffer.from(row.message).toString("utf8")) as { epoch?: unknown; checkpoint?: { epoch?: unknown } };
      // Signed by a validator of the set in force at the message's epoch. A prevote or
      // precommit names none: it counts under whichever set it was signed in (a validator's
      // index differs from one set to the next, and its slot names the index).
      const epoch = typeof raw?.checkpoint?.epoch === "number" ? raw.checkpoint.epoch : Number.MAX_SAFE_INTEGER;
      const sets = setsFrom(epoch);
      underSomeSet(sets, (set) => checkSignedRow(raw, row.slot, set, ctx.ownNodeId, mesh, bls, sets.length === 1, fail));
    } catch (e) {
      fail((e as Error).message.replace(/^message: /, ""));
    }
    if (await ctx.row()) return true;
  }
  bls.flush();

  // Equivocation evidence: two conflicting messages, each signed by the validator the row names.
  for (const row of st.evidence.iterate() as Rows<{ mesh: Uint8Array; validator: number; slot: string; evidence: Uint8Array }>) {
    counts.consensusEvidence += 1;
    const where = `consensus evidence against validator ${row.validator} (slot ${row.slot})`;
    let msg: string | null;
    try {
      if (!sameBytes(row.mesh, meshBytes)) throw new Error("stored under another mesh");
      const e = JSON.parse(Buffer.from(row.evidence).toString("utf8")) as Evidence;
      msg = evidenceProblem(e, mesh, setOf((e.first as { checkpoint?: { epoch?: number } }).checkpoint?.epoch ?? Number.MAX_SAFE_INTEGER));
      if (msg === null && e.validator !== row.validator) msg = `validator column ${row.validator} differs from the evidence's ${e.validator}`;
      if (msg === null && !slotsOf(e.first).some((s) => s.slot === row.slot)) msg = "slot column is not a slot of the evidence";
    } catch (e) {
      msg = (e as Error).message;
    }
    if (msg !== null) problem({ kind: "consensus_evidence", id: row.slot, message: `${where}: ${msg}` });
    if (await ctx.row()) return true;
  }

  // Enrollments: each parses, for this mesh, under the node its card names.
  for (const row of st.enrollments.iterate() as Rows<{ mesh: Uint8Array; node_id: Uint8Array; record: Uint8Array }>) {
    counts.enrollments += 1;
    const nodeId = toHex(row.node_id);
    try {
      if (!sameBytes(row.mesh, meshBytes)) throw new Error("stored under another mesh");
      const e = JSON.parse(Buffer.from(row.record).toString("utf8")) as Enrollment;
      if (typeof e !== "object" || e === null) throw new Error("not a JSON object");
      if (e.node_id !== nodeId) throw new Error("node_id column differs from the record");
      if (!isHex(e.ak_name, (e.ak_name?.length ?? 0) / 2) || !isHex(e.ak_public, (e.ak_public?.length ?? 0) / 2) || !e.ak_name || !e.ak_public) throw new Error("ak_name and ak_public must be hex");
      if (typeof e.enrolled_at !== "number" || typeof e.ek !== "object" || e.ek === null) throw new Error("enrolled_at or ek is missing");
      const card = parseCard(e.card, "its card", { checkPop: false });
      if (card.node_id !== nodeId) throw new Error("its card is another node's");
    } catch (e) {
      problem({ kind: "enrollment", node_id: nodeId, message: `enrollment of node ${nodeId.slice(0, 12)}…: ${(e as Error).message}` });
    }
    if (await ctx.row()) return true;
  }
  return false;
}

type VerifyStatements = Record<keyof typeof STATEMENTS.verify, Statement>;

/**
 * The mesh log against itself and its checkpoints, in one pass over the leaves in order:
 * each certificate's quorum signature (genesis set); each checkpoint's prev, ranges and
 * spans; the leaves it adds against the microblocks its ranges name; its root and
 * tree_size against the tree recomputed from the leaves; and every stored interior node
 * against that tree. True when stopped.
 */
async function verifyLog(
  st: VerifyStatements,
  mesh: string,
  meshBytes: Uint8Array,
  genesis: Genesis,
  history: SetHistory,
  problem: (p: Problem) => void,
  counts: StoredCounts,
  bls: BlsBatch,
  row: () => Promise<boolean>,
  decided: ExpectedDecision[],
  changed: { epoch: number; change: string }[],
): Promise<boolean> {
  let nodesSeen = 0;
  const frontier = new Frontier((level, idx, h) => {
    const stored = st.node.get(level, idx) as { hash: Uint8Array } | null;
    const where = `log node (level ${level}, index ${idx}) over leaves [${idx * 2 ** level}, ${(idx + 1) * 2 ** level})`;
    if (stored) {
      nodesSeen += 1;
      if (!sameBytes(stored.hash, h)) problem({ kind: "log_node", message: `${where}: does not match the hash of its leaves (the row was altered)` });
    } else if (level >= STORED_LEVEL) {
      problem({ kind: "log_node", message: `${where}: is missing` });
    }
  });

  // Leaves, a block of 16 at a time, in order; a malformed block ends the walk of the log.
  const blocks = st.leaves.iterate() as Rows<{ block: number; ids: Uint8Array }>;
  let block: Uint8Array | null = null;
  let blockNo = -1;
  let inBlock = 0;
  let broken = false;
  const nextLeaf = (): Uint8Array | null => {
    if (broken) return null;
    if (block === null || inBlock * 32 >= block.length) {
      const r = blocks.next();
      if (r.done) return null;
      if (block !== null && block.length !== LEAVES_PER_BLOCK * 32) {
        broken = true;
        problem({ kind: "log_leaf", message: `log leaf block ${blockNo} holds ${block.length / 32} leaves but is not the last block; the rest of the log was not checked` });
        return null;
      }
      if (r.value.block !== blockNo + 1 || r.value.ids.length === 0 || r.value.ids.length % 32 !== 0 || r.value.ids.length > LEAVES_PER_BLOCK * 32) {
        broken = true;
        problem({ kind: "log_leaf", message: `log leaf block ${r.value.block} is malformed (expected block ${blockNo + 1} of whole 32-byte ids); the rest of the log was not checked` });
        return null;
      }
      block = r.value.ids;
      blockNo = r.value.block;
      inBlock = 0;
    }
    const id = block.subarray(inBlock * 32, inBlock * 32 + 32);
    inBlock++;
    counts.logLeaves += 1;
    return id;
  };

  const spans = st.spans.iterate() as Rows<{ first_leaf: number; mesh: Uint8Array | null; node_id: Uint8Array | null; from_seq: number; to_seq: number }>;
  const lastTo = new Map<string, number>();
  let prevDigest = ZERO_HASH;
  let prevEpoch = -1;
  let stopped = false;
  for (const r of st.certificates.iterate() as Rows<{ mesh: Uint8Array; epoch: number; digest: Uint8Array; certificate: Uint8Array }>) {
    counts.certificates += 1;
    const where = `checkpoint epoch ${r.epoch}`;
    const certFail = (m: string) => problem({ kind: "certificate", seq: r.epoch, message: `${where}: certificate: ${m}` });
    const cpFail = (m: string) => problem({ kind: "checkpoint", seq: r.epoch, message: `${where}: ${m}` });
    let cert: FinalityCertificate;
    try {
      if (!sameBytes(r.mesh, meshBytes)) throw new Error("stored under another mesh");
      cert = parseFinalityCertificate(JSON.parse(Buffer.from(r.certificate).toString("utf8")), "certificate");
    } catch (e) {
      certFail((e as Error).message.replace(/^certificate: /, ""));
      if (await row()) return true;
      continue;
    }
    const cp = cert.checkpoint;
    const digest = checkpointDigest(cp);
    if (cp.epoch !== r.epoch) certFail(`its checkpoint is for epoch ${cp.epoch} (the row was altered)`);
    if (toHex(digest) !== toHex(r.digest)) certFail("digest column is not its checkpoint's digest (the row was altered)");
    // Signed by a quorum of the set in force at its epoch; a set change it carries counts from two epochs on.
    const set = history.setAt(cp.epoch);
    checkQuorum(cert, digest, set, bls, certFail);
    checkDecisions(cp, set, lastTo, decided, cpFail);
    if (cp.set_change) {
      const p = setChangeProblem(cp.set_change, genesis, history.cardsAt(cp.epoch), set, history.version, cp.epoch);
      if (p) cpFail(p);
      else {
        try {
          history.apply({ epoch: cp.epoch, change: cp.set_change.change });
          changed.push({ epoch: cp.epoch, change: canonicalize(cp.set_change.change) });
        } catch (e) {
          cpFail(`set change: ${(e as Error).message}`);
        }
      }
    }
    if (cp.prev !== prevDigest) cpFail(`prev ${cp.prev.slice(0, 12)}… is not the digest of the checkpoint before it${prevEpoch >= 0 ? ` (epoch ${prevEpoch})` : " (none: 64 zeros)"}`);
    prevDigest = toHex(digest);
    prevEpoch = cp.epoch;

    // The leaves this checkpoint adds: the microblocks its ranges name, in node_id order.
    const start = frontier.n;
    const nodes = Object.keys(cp.ranges).sort();
    const named = nodes.reduce((n, id) => n + cp.ranges[id]![1] - cp.ranges[id]![0] + 1, 0);
    if (cp.tree_size - start !== named) cpFail(`its ranges name ${named} microblocks but tree_size grows by ${cp.tree_size - start} (from ${start})`);
    if (cp.tree_size < start) {
      if (await row()) return true;
      continue;
    }
    let leaf = start;
    if (cp.tree_size - start === named) {
      for (const nodeId of nodes) {
        const [from, to] = cp.ranges[nodeId]!;
        const expectFrom = (lastTo.get(nodeId) ?? 0) + 1;
        if (from !== expectFrom) cpFail(`range of node ${nodeId.slice(0, 12)}… starts at seq ${from}, not ${expectFrom} (the seq after the last one in the log)`);
        lastTo.set(nodeId, to);
        const span = spans.next();
        if (span.done) cpFail(`no log_spans row for node ${nodeId.slice(0, 12)}… seqs ${from}-${to} at leaf ${leaf}`);
        else if (span.value.first_leaf !== leaf || span.value.node_id === null || toHex(span.value.node_id) !== nodeId || span.value.from_seq !== from || span.value.to_seq !== to || !sameBytes(span.value.mesh!, meshBytes)) {
          cpFail(`log_spans row at leaf ${span.value.first_leaf} does not say node ${nodeId.slice(0, 12)}… seqs ${from}-${to} at leaf ${leaf} (the row was altered)`);
        }
        let seq = from;
        for (const m of st.rangeIds.iterate(meshBytes, fromHex(nodeId, 32), from, to) as Rows<{ seq: number; id: Uint8Array }>) {
          // An edge holds only some chains: a leaf is compared where this ledger has the microblock.
          for (; seq < m.seq; seq++, leaf++) if (!pushLeaf()) break;
          const id = nextLeaf();
          if (id === null) break;
          if (!sameBytes(id, m.id)) problem({ kind: "log_leaf", seq: r.epoch, message: `log leaf ${leaf} is not microblock ${toHex(m.id).slice(0, 16)}… (node ${nodeId.slice(0, 12)}… seq ${m.seq}) that ${where} names (the leaf was altered)` });
          frontier.push(id);
          seq++;
          leaf++;
        }
        for (; seq <= to; seq++, leaf++) if (!pushLeaf()) break;
      }
    } else {
      while (leaf < cp.tree_size && pushLeaf()) leaf++;
    }
    if (frontier.n < cp.tree_size) {
      cpFail(`tree_size ${cp.tree_size} but the log holds only ${frontier.n} leaves`);
      stopped = await row();
      break;
    }
    const root = toHex(frontier.root());
    if (root !== cp.root) cpFail(`root ${cp.root.slice(0, 12)}… does not match the log's leaves (the tree of ${cp.tree_size} recomputes to ${root.slice(0, 12)}…)`);
    if (await row()) {
      stopped = true;
      break;
    }
  }
  if (stopped) return true;

  function pushLeaf(): boolean {
    const id = nextLeaf();
    if (id === null) return false;
    frontier.push(id);
    return true;
  }

  // Past the last checkpoint nothing belongs in the log: leaves, spans, included seqs.
  let beyond = 0;
  while (pushLeaf()) beyond++;
  if (beyond > 0) problem({ kind: "log_leaf", message: `${beyond} log leaves after the last checkpoint's tree_size ${frontier.n - beyond}: no certificate covers them` });
  const nodeCount = (st.nodeCount.get() as { n: number }).n;
  counts.logNodes = nodeCount;
  if (!broken && nodeCount !== nodesSeen) problem({ kind: "log_node", message: `${nodeCount - nodesSeen} stored log nodes are not nodes of the tree of ${frontier.n} leaves` });
  let extraSpans = 0;
  for (let s = spans.next(); !s.done; s = spans.next()) extraSpans++;
  if (extraSpans > 0) problem({ kind: "checkpoint", message: `${extraSpans} log_spans rows that no stored checkpoint's ranges name` });
  for (const inc of st.included.all() as { mesh: Uint8Array | null; node_id: Uint8Array | null; last_seq: number }[]) {
    const nodeId = inc.node_id === null ? "?" : toHex(inc.node_id);
    const want = lastTo.get(nodeId) ?? 0;
    if (inc.mesh === null || !sameBytes(inc.mesh, meshBytes) || inc.last_seq !== want) {
      problem({ kind: "checkpoint", node_id: nodeId, message: `log_included says node ${nodeId.slice(0, 12)}… is in the log up to seq ${inc.last_seq}, the checkpoints say ${want}` });
    }
  }
  return false;
}

/** The certificate's quorum: signers, count and aggregate signature against the genesis validators; the exact check (verifyFinality) names a failure. */
/** fn under the first set it holds for; what it threw under the first set when none does. */
function underSomeSet<T>(sets: readonly ValidatorSet[], fn: (set: ValidatorSet) => T): T {
  let first: unknown = null;
  for (const set of sets) {
    try {
      return fn(set);
    } catch (e) {
      first ??= e;
    }
  }
  throw first;
}

/**
 * One stored consensus message under one validator set: it occupies its slot, is this
 * validator's own, and its signature verifies (an S in the BLS batch when `batch`, else at
 * once, so that the caller may try another set). Throws what is wrong.
 */
function checkSignedRow(raw: unknown, slot: string, set: ValidatorSet, ownNodeId: string | undefined, mesh: string, bls: BlsBatch, batch: boolean, fail: (m: string) => void): void {
  const own = ownNodeId === undefined ? -1 : set.nodeIds.indexOf(ownNodeId);
  const m = parseSigned(raw, set.n, "message");
  if (!ofMesh(m, mesh)) throw new Error("the message is for another mesh");
  // L/<prev>/<round>/<its slot>/<validator>: another validator's proposal or prevote kept as
  // the justification of this validator's lock (src/consensus/engine.ts); anything else is its own.
  const lock = /^L\/[0-9a-f]{64}\/\d+\//.test(slot);
  if (lock ? !slot.endsWith(`/${slotOf(m).slot}/${m.validator}`) : !slotsOf(m).some((s) => s.slot === slot)) throw new Error(`the ${m.type} message does not occupy this slot (the row was altered)`);
  if (own >= 0 && !lock && m.validator !== own) throw new Error(`signed as validator ${m.validator}, not this validator (${own})`);
  const digest = signingDigest(m);
  if (m.type === "S") {
    const exact = () => set.verify(m.validator, digest, m.sig) || fail(`signature of validator ${m.validator} does not verify`);
    // A signature that is not a curve point fails the batch at once: checked alone, it names itself.
    if (!batch || !/^[0-9a-f]{192}$/.test(m.sig)) {
      if (!set.verify(m.validator, digest, m.sig)) throw new Error(`signature of validator ${m.validator} does not verify`);
    } else bls.add(signersBitfield([m.validator], set.n), set.keys[m.validator]!, digest, m.sig, exact);
  } else if (!set.verifyVote(m.validator, digest, m.sig)) throw new Error(`signature of validator ${m.validator} does not verify`);
}

/** A decision a stored checkpoint took: what quarantine_decisions must hold. */
interface ExpectedDecision {
  node_id: string;
  epoch: number;
  action: string;
  from_seq: number;
}

/**
 * A checkpoint's decisions against the rules a validator checked before voting, as far as
 * the log alone tells: each request validly signed by a distinct genesis validator, for
 * this node and action, current (basis = the decisions about the node before it), and
 * enough. A quarantine keeps out from decisionFromSeq on.
 */
function checkDecisions(cp: CheckpointBody, set: ValidatorSet, lastTo: ReadonlyMap<string, number>, decided: ExpectedDecision[], fail: (m: string) => void): void {
  for (const d of cp.decisions ?? []) {
    const basis = decided.filter((x) => x.node_id === d.node_id).length;
    // Whether the node stood quarantined (fork evidence too) the log alone cannot tell: the quorum judged that.
    const p = decisionProblem(d, { decisions: basis, quarantined: d.action === "lift", decided: d.action === "lift" }, set, cp.epoch);
    if (p) fail(p);
    decided.push({ node_id: d.node_id, epoch: cp.epoch, action: d.action, from_seq: d.action === "quarantine" ? decisionFromSeq(d, lastTo.get(d.node_id) ?? 0) : 0 });
  }
}

/**
 * A version 1 record (one validator's word, from before decisions by quorum): kept in old
 * ledgers and no longer in force, but still checked: its signature over its own fields.
 */
function legacyQuarantine(value: { v?: unknown }, set: ValidatorSet): QuarantineRecord {
  const r = value as unknown as QuarantineRecord & { validator: number; sig: string };
  if (typeof r.validator !== "number" || typeof r.sig !== "string" || !set.verify(r.validator, quarantineDigest(r), r.sig)) {
    throw new Error(`version 1 record: the signature of validator ${String(r.validator)} does not verify`);
  }
  return r;
}

function checkQuorum(cert: FinalityCertificate, digest: Uint8Array, set: ValidatorSet, bls: BlsBatch, fail: (m: string) => void): void {
  const exact = () => {
    const p = set.quorumProblem(cert.signers, digest, cert.agg_sig);
    if (p) fail(p);
  };
  const bytes = cert.signers.length / 2;
  const idx = bytes === Math.ceil(set.n / 8) ? signerIndices(cert.signers) : [];
  if (idx.length < set.quorum || idx.some((i) => i >= set.n)) return exact();
  let pk: G1Point;
  try {
    pk = blsAggregatePublicKeyPoint(idx.map((i) => set.keys[i]!));
  } catch {
    return exact();
  }
  bls.add(cert.signers, pk, digest, cert.agg_sig, exact);
}
