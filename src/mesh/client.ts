// A client of a running daemon's control socket: the seed's query interface
// (getMicroblocks, getCheckpoint, verifyBlockInCheckpoint) and what the CLI asks a daemon.
// The socket takes no bearer token (control.port does): it is 0600 in the 0700 data dir, so
// only the node's own user reaches it, who can read control.token_file anyway.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Microblock } from "../protocol/microblock.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { type BundleSummary, type InclusionBundle, verifyBundle } from "../log/verify-bundle.ts";
import type { Genesis } from "../protocol/genesis.ts";
import { CONTROL_SOCKET, MAX_WAIT_S } from "./control.ts";
import type { DaemonStatus } from "./api.ts";
import type { IntelRecord } from "../intel/query.ts";

export class MeshClientError extends Error {}

export class MeshClient {
  constructor(readonly socket: string) {}

  /** The client of the daemon running on a data dir, or null when none is running there. */
  static forDataDir(dir: string): MeshClient | null {
    const file = path.join(dir, CONTROL_SOCKET);
    return fs.existsSync(file) ? new MeshClient(file) : null;
  }

  async #get<T>(pathAndQuery: string, timeoutMs = 10_000): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`http://dsm${pathAndQuery}`, { unix: this.socket, signal: AbortSignal.timeout(timeoutMs) } as RequestInit);
    } catch (e) {
      throw new MeshClientError(`the dsm daemon at ${this.socket} does not answer (${(e as Error).message}); is dsm run still running?`);
    }
    const body = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as T & { error?: string };
    if (!res.ok) throw new MeshClientError(body.error ?? `HTTP ${res.status}`);
    return body;
  }

  status(): Promise<DaemonStatus> {
    return this.#get("/status");
  }

  async peers(): Promise<string[]> {
    return (await this.#get<{ peers: string[] }>("/peers")).peers;
  }

  async getMicroblocks(nodeId: string, fromSeq = 1, toSeq?: number): Promise<Microblock[]> {
    const q = new URLSearchParams({ node: nodeId, from: String(fromSeq) });
    if (toSeq !== undefined) q.set("to", String(toSeq));
    return (await this.#get<{ microblocks: Microblock[] }>(`/microblocks?${q}`)).microblocks;
  }

  /** Finalized threat advisories and retractions of every node, newest first (dsm intel query). */
  async queryThreatIntel(q: { category?: string; sinceMs?: number; indicator?: string } = {}): Promise<IntelRecord[]> {
    const p = new URLSearchParams();
    if (q.category !== undefined) p.set("category", q.category);
    if (q.sinceMs !== undefined) p.set("since", String(Math.max(0, Math.floor(q.sinceMs))));
    if (q.indicator !== undefined) p.set("indicator", q.indicator);
    return (await this.#get<{ advisories: IntelRecord[] }>(`/intel?${p}`)).advisories;
  }

  /** The certificate of an epoch, or the latest. */
  getCheckpoint(epoch?: number): Promise<FinalityCertificate> {
    return this.#get(epoch === undefined ? "/checkpoint" : `/checkpoint?epoch=${epoch}`);
  }

  proof(id: string, epoch?: number): Promise<InclusionBundle> {
    return this.#get(`/proof?id=${id}${epoch === undefined ? "" : `&epoch=${epoch}`}`);
  }

  /** Fetches an inclusion proof from the daemon and checks it against the genesis alone. Throws BundleError. */
  async verifyBlockInCheckpoint(id: string, genesis: Genesis, epoch?: number): Promise<BundleSummary> {
    return verifyBundle(await this.proof(id, epoch), genesis);
  }

  /**
   * Wakes the daemon's consensus and waits up to `seconds` for the certificate of the epoch
   * (default: the last closed one) or a later one; with nothing new since the latest
   * certificate, that one. Throws MeshClientError when none comes in time.
   */
  async waitForCheckpoint(seconds: number, epoch?: number): Promise<FinalityCertificate> {
    const until = Date.now() + seconds * 1000;
    for (;;) {
      const left = Math.max(0, Math.min(MAX_WAIT_S, Math.ceil((until - Date.now()) / 1000)));
      try {
        return await this.#get<FinalityCertificate>(`/checkpoint/wait?seconds=${left}${epoch === undefined ? "" : `&epoch=${epoch}`}`, (left + 5) * 1000);
      } catch (e) {
        if (Date.now() >= until || !(e instanceof MeshClientError) || !/^no certificate within/.test(e.message)) throw e;
      }
    }
  }
}
