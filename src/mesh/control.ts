// The running daemon's local query and control API: HTTP over a unix socket in the data dir
// (control.sock, 0600: only the node's own user reaches it) and, when control.port is set,
// on 127.0.0.1; Prometheus text metrics on an optional 127.0.0.1 port. JSON in, JSON out; every error is {"error": "..."} with a
// 4xx/5xx status.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Server } from "bun";
import { withoutLocalFields } from "../ledger/ledger.ts";
import { BundleUnavailable, inclusionBundle } from "../log/bundle.ts";
import type { DaemonApi } from "./api.ts";

export const CONTROL_SOCKET = "control.sock";
/** Longest wait one control request may hold (Bun closes connections idle for 10 s). */
export const MAX_WAIT_S = 8;

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

function error(message: string, status: number): Response {
  return json({ error: message }, status);
}

function intParam(url: URL, name: string, min: number): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) throw new RangeError(`${name} must be an integer >= ${min}`);
  return Number(v);
}

export function startControl(daemon: DaemonApi): Server<undefined> {
  const file = path.join(daemon.node.layout.dir, CONTROL_SOCKET);
  fs.rmSync(file, { force: true });
  const server = Bun.serve({ unix: file, fetch: (req) => answer(daemon, req) });
  fs.chmodSync(file, 0o600);
  return server;
}

/**
 * The same API on 127.0.0.1:port (control.port), for tools that cannot speak to a unix
 * socket. A browser can be made to send requests there (DNS rebinding, cross-site
 * requests), so a request must name this very host and port and carry no Origin.
 */
export function startControlPort(daemon: DaemonApi, port: number): Server<undefined> {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch: (req) => {
      const host = req.headers.get("host");
      const ours = [`127.0.0.1:${server.port}`, `localhost:${server.port}`];
      if (req.headers.get("origin") !== null || host === null || !ours.includes(host)) return error("requests from browsers or for other host names are refused", 403);
      return answer(daemon, req);
    },
  });
  return server;
}

async function answer(daemon: DaemonApi, req: Request): Promise<Response> {
  try {
    return await route(daemon, req);
  } catch (e) {
    if (e instanceof RangeError || e instanceof BundleUnavailable) return error((e as Error).message, 400);
    return error((e as Error).message, 500);
  }
}

async function route(daemon: DaemonApi, req: Request): Promise<Response> {
  const url = new URL(req.url);
  const node = daemon.node;
  const builder = daemon.builder;
  switch (url.pathname) {
    case "/status":
      return json(daemon.status());
    case "/peers":
      return json({ peers: daemon.peers() });
    case "/microblocks": {
      const nodeId = url.searchParams.get("node") ?? node.nodeId;
      if (!/^[0-9a-f]{64}$/.test(nodeId)) throw new RangeError("node must be a 64-hex node id");
      const from = intParam(url, "from", 1) ?? 1;
      const to = intParam(url, "to", 1);
      const limit = Math.min(intParam(url, "limit", 1) ?? 1000, 10_000);
      const rows = node.ledger.list({ nodeId, fromSeq: from, toSeq: to, limit }).filter((m) => m.mesh === node.mesh);
      return json({ microblocks: rows.map((m) => withoutLocalFields(m)) });
    }
    case "/checkpoint": {
      const epoch = intParam(url, "epoch", 0);
      const cert = epoch === undefined ? builder.latest() : builder.byEpoch(epoch);
      return cert ? json(cert) : error(epoch === undefined ? "no checkpoint yet" : `no checkpoint for epoch ${epoch}`, 404);
    }
    case "/certificates": {
      const after = intParam(url, "after", 0) ?? -1;
      return json({ certificates: builder.since(url.searchParams.has("after") ? after : -1) });
    }
    case "/proof": {
      const id = url.searchParams.get("id") ?? "";
      if (!/^[0-9a-f]{64}$/.test(id)) throw new RangeError("id must be a 64-hex microblock id");
      return json(inclusionBundle(node.ledger, builder, id, intParam(url, "epoch", 0), (n) => node.cardOf(n)));
    }
    case "/checkpoint/wait": {
      // Wakes the engine (a proposal now, if this validator is the proposer) and waits for
      // the certificate of an epoch (default: the last closed one) or a later one.
      // Bun closes a connection idle for 10 s: a longer wait is several requests (MeshClient).
      const seconds = Math.min(intParam(url, "seconds", 0) ?? 0, MAX_WAIT_S);
      const epoch = intParam(url, "epoch", 0);
      const cert = await daemon.waitForCertificate(epoch, seconds * 1000);
      return cert ? json(cert) : error(`no certificate within ${seconds} s`, 504);
    }
    default:
      return error(`no such endpoint: ${url.pathname}`, 404);
  }
}

/** Prometheus text exposition of the daemon's counters. */
export function metricsText(daemon: DaemonApi, version: string): string {
  const s = daemon.status();
  const lines: string[] = [];
  const metric = (name: string, type: "counter" | "gauge", help: string, samples: [string, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) lines.push(`${name}${labels} ${v}`);
  };
  metric("dsm_microblocks_published_total", "counter", "Microblocks of this node gossiped.", [["", s.published]]);
  metric("dsm_microblocks_received_total", "counter", "Microblocks from other nodes validated and stored.", [["", s.received]]);
  metric("dsm_microblocks_rejected_total", "counter", "Gossip messages rejected, by reason.", Object.entries(s.rejected).map(([r, n]) => [`{reason="${r}"}`, n]));
  metric("dsm_gossip_bytes_total", "counter", "Bytes of gossip sent and received.", [
    ['{direction="out"}', s.gossip_bytes_out],
    ['{direction="in"}', s.gossip_bytes_in],
  ]);
  metric("dsm_peers", "gauge", "Connected mesh peers.", [["", s.peers]]);
  metric("dsm_last_finalized_epoch", "gauge", "Epoch of the newest finality certificate held (-1: none).", [["", s.last_finalized_epoch ?? -1]]);
  metric("dsm_finality_latency_seconds", "gauge", "Time from the end of the last finalized epoch to its certificate.", [["", s.finality_latency_ms === null ? 0 : s.finality_latency_ms / 1000]]);
  metric("dsm_participation_ratio", "gauge", "Signers of the last certificate over the validators of the genesis.", [["", s.participation ?? 0]]);
  metric("dsm_attestations_total", "counter", "Attestations (enrollments and quotes) of peers by this validator, passed or failed by the check that failed.", [
    ['{result="passed"}', s.attestation.passed],
    ...Object.entries(s.attestation.failures).map(([c, n]): [string, number] => [`{result="failed",check="${c}"}`, n]),
  ]);
  metric("dsm_build_info", "gauge", "Build information.", [[`{version="${version}",role="${s.role}"}`, 1]]);
  return lines.join("\n") + "\n";
}

export function startMetrics(daemon: DaemonApi, port: number, version: string): Server<undefined> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch: (req) => {
      const url = new URL(req.url);
      if (url.pathname !== "/metrics") return new Response("not found\n", { status: 404 });
      return new Response(metricsText(daemon, version), { headers: { "content-type": "text/plain; version=0.0.4" } });
    },
  });
}
