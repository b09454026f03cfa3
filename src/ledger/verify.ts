// dsm verify: re-checks every stored row against the rules it was accepted under.
// Streams in arrival order and keeps only per-chain heads and the certified keys,
// so memory stays flat however large the ledger grows.
import { letSignalsIn } from "../runtime/yield.ts";
import { fromHex, toHex, ZERO_HASH } from "../encoding/hex.ts";
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
import { type Ledger, ledgerDatabase, withoutLocalFields } from "./ledger.ts";
import type { FromVerifyWorker, ToVerifyWorker } from "./verify-worker.ts";
import { workerUrl } from "../runtime/worker-url.ts";

export interface Problem {
  /** "microblock", "key_certificate", "payload" or "fork_evidence" */
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
    problems: [],
    problemCount: 0,
  };
  // Signature failures come back from the worker after later rows' problems: keep the
  // earliest by row, so "first problem" means the first row, whatever finished first.
  const problem = (p: Problem) => {
    report.problemCount += 1;
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
  const total = ledger.maxRowid();
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
  opts.onProgress?.(total, total);
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
  trimProblems(report.problems, maxProblems);
  return report;
}

/** Key certificates first, then microblocks by row, then fork evidence: the order verify reads them. */
function trimProblems(problems: Problem[], max: number): void {
  const rank = (p: Problem) => (p.kind === "key_certificate" ? 0 : p.kind === "fork_evidence" ? 2 : 1);
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
