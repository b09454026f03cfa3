// The running daemon's local query and control API: HTTP over a unix socket in the data dir
// (control.sock, 0600: only the node's own user reaches it) and, when control.port is set,
// on 127.0.0.1 behind a bearer token; Prometheus text metrics on an optional port
// (metrics.listen, 127.0.0.1 by default). JSON in, JSON out; every error is {"error": "..."}
// with a 4xx/5xx status.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import { queryIntel, type IntelQuery } from "../intel/query.ts";
import { CATEGORIES, type Category, indicatorText, parseIndicatorText } from "../protocol/advisory.ts";
import * as os from "node:os";
import * as path from "node:path";
import type { Server } from "bun";
import { withoutLocalFields } from "../ledger/ledger.ts";
import { BundleUnavailable, inclusionBundle } from "../log/bundle.ts";
import { createControlToken, readControlToken } from "../node/data-dir.ts";
import type { DSMNode } from "../node/node.ts";
import type { DaemonApi } from "./api.ts";
import type { DaemonLog } from "./daemon-log.ts";

export const CONTROL_SOCKET = "control.sock";
/** Longest wait one control request may hold (Bun closes connections idle for 10 s). */
export const MAX_WAIT_S = 8;

function json(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json", ...headers } });
}

function error(message: string, status: number, headers: Record<string, string> = {}): Response {
  return json({ error: message }, status, headers);
}

function intParam(url: URL, name: string, min: number): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) throw new RangeError(`${name} must be an integer >= ${min}`);
  return Number(v);
}

/**
 * The control socket needs no token: it is 0600 in the 0700 data dir, so whoever can
 * connect to it can read control.token_file too, and the CLI (dsm status, peers,
 * checkpoint) keeps working with no secret to pass around.
 */
export function startControl(daemon: DaemonApi): Server<undefined> {
  const file = path.join(daemon.node.layout.dir, CONTROL_SOCKET);
  fs.rmSync(file, { force: true });
  const server = Bun.serve({ unix: file, fetch: (req) => answer(daemon, req) });
  fs.chmodSync(file, 0o600);
  return server;
}

/**
 * control.port's bearer token, from control.token_file; made (0600) when missing, which is
 * logged with the file's path, never the token.
 */
export function controlPortToken(node: DSMNode, log: DaemonLog): string {
  const file = node.layout.controlToken;
  if (createControlToken(file, false)) log("info", `control.port: made a new bearer token in ${file} (0600)`, { token_file: file });
  return readControlToken(file);
}

/**
 * The same API on 127.0.0.1:port (control.port), for tools that cannot speak to a unix
 * socket. Any local user can connect to a TCP port, so every request carries
 * "Authorization: Bearer <token>" (control.token_file), compared in constant time; without
 * it, 401. A browser can be made to send requests there (DNS rebinding, cross-site
 * requests), so a request must also name this very host and port and carry no Origin (403,
 * checked first: a browser's request is refused whatever it carries).
 */
export function startControlPort(daemon: DaemonApi, port: number, token: string): Server<undefined> {
  const expected = digest(token);
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch: (req) => {
      const host = req.headers.get("host");
      const ours = [`127.0.0.1:${server.port}`, `localhost:${server.port}`];
      if (req.headers.get("origin") !== null || host === null || !ours.includes(host)) return error("requests from browsers or for other host names are refused", 403);
      const auth = bearer(req);
      if (auth === null) return error("control.port requires Authorization: Bearer <token>, the token being the contents of control.token_file", 401, { "www-authenticate": 'Bearer realm="dsm"' });
      if (!crypto.timingSafeEqual(digest(auth), expected)) return error("wrong bearer token (see control.token_file)", 401, { "www-authenticate": 'Bearer realm="dsm", error="invalid_token"' });
      return answer(daemon, req);
    },
  });
  return server;
}

/** The token of an Authorization: Bearer header (RFC 6750), or null. */
function bearer(req: Request): string | null {
  const m = /^Bearer +(\S+) *$/i.exec(req.headers.get("authorization") ?? "");
  return m ? m[1]! : null;
}

/** Fixed-length digests, so the comparison takes the same time whatever the length sent. */
function digest(token: string): Buffer {
  return crypto.createHash("sha256").update(token, "utf8").digest();
}

/**
 * Whether this node's configuration keeps a node's payloads from leaving it:
 * privacy.withhold_payloads covers this node's own events (as on /dsm/sync/1 and gossip).
 */
function payloadWithheld(node: DSMNode, nodeId: string): boolean {
  return node.config.privacy.withhold_payloads && nodeId === node.nodeId;
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
      // Microblocks commit to their payloads by hash and carry none: nothing to withhold.
      return json({ microblocks: rows.map((m) => withoutLocalFields(m)) });
    }
    case "/intel": {
      // queryThreatIntel: finalized advisories, filtered as dsm intel query does.
      const q: IntelQuery = {};
      const category = url.searchParams.get("category");
      if (category !== null) {
        if (!(CATEGORIES as readonly string[]).includes(category)) throw new RangeError(`category must be one of ${CATEGORIES.join(", ")}`);
        q.category = category as Category;
      }
      const since = intParam(url, "since", 0);
      if (since !== undefined) q.sinceMs = since;
      const indicator = url.searchParams.get("indicator");
      if (indicator !== null) {
        try {
          q.indicator = indicatorText(parseIndicatorText(indicator));
        } catch (e) {
          throw new RangeError((e as Error).message);
        }
      }
      return json({ advisories: queryIntel(builder.intel.sinceEpoch(0), node.genesis, q) });
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
      const bundle = inclusionBundle(node.ledger, builder, id, intParam(url, "epoch", 0), (n) => node.cardOf(n));
      // A withheld payload is proven by its hash only, here as in what the mesh was sent.
      return json(payloadWithheld(node, bundle.microblock.node_id) ? { ...bundle, payload: null } : bundle);
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
  const i = s.intel;
  metric("dsm_advisories_made_total", "counter", "Threat advisories and retractions this node signed.", [["", i.made]]);
  metric("dsm_advisories_received_total", "counter", "Finalized advisories of other nodes fetched and checked by this edge.", [["", i.received]]);
  metric("dsm_advisories_finalized", "gauge", "Finalized advisories and retractions held, of every node.", [["", i.finalized]]);
  metric("dsm_decisions_active", "gauge", "Active decisions, by scope and category.", Object.entries(i.active).map(([k, n]): [string, number] => {
    const [scope, category] = k.split("/");
    return [`{scope="${scope}",category="${category}"}`, n];
  }));
  metric("dsm_bouncer_pulls_total", "counter", "Answers the decisions API gave to bouncers.", [["", i.bouncer_pulls]]);
  metric("dsm_decision_latency_seconds", "gauge", "From the newest advisory's microblock time to its decision held here, for the last decision made.", [["", i.decision_latency_ms === null ? 0 : i.decision_latency_ms / 1000]]);
  metric("dsm_build_info", "gauge", "Build information.", [[`{version="${version}",role="${s.role}"}`, 1]]);
  return lines.join("\n") + "\n";
}

/**
 * /metrics on metrics.listen:port. Like control.port, a request must carry no Origin and
 * name in its Host header the address listened on (on loopback also localhost; on all
 * addresses, 0.0.0.0 or ::, any address of this host) or this host's name: a web page
 * that rebinds its own name to this address cannot read the counters (403).
 */
export function startMetrics(daemon: DaemonApi, port: number, version: string, listen = "127.0.0.1"): Server<undefined> {
  if (net.isIP(listen) === 0) throw new Error(`metrics.listen must be an IP address (127.0.0.1, an address of this host, 0.0.0.0 or ::), got ${JSON.stringify(listen)}`);
  const server = Bun.serve({
    hostname: listen,
    port,
    fetch: (req) => {
      if (req.headers.get("origin") !== null || !metricsHostAllowed(req.headers.get("host"), listen, server.port ?? port)) {
        return new Response("requests from browsers or for other host names are refused\n", { status: 403, headers: { "content-type": "text/plain" } });
      }
      const url = new URL(req.url);
      if (url.pathname !== "/metrics") return new Response("not found\n", { status: 404 });
      return new Response(metricsText(daemon, version), { headers: { "content-type": "text/plain; version=0.0.4" } });
    },
  });
  return server;
}

function isLoopback(address: string): boolean {
  return address === "::1" || (net.isIPv4(address) && address.startsWith("127."));
}

/** The Host header's name (an IPv6 literal without its brackets, lower case) if its port is ours. */
function hostName(host: string, port: number): string | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(\d+)$/.exec(host);
  if (!m || Number(m[2]) !== port) return null;
  return m[1]!.replace(/^\[|\]$/g, "").toLowerCase();
}

export function metricsHostAllowed(host: string | null, listen: string, port: number): boolean {
  if (host === null) return false;
  const name = hostName(host, port);
  if (name === null) return false;
  const all = listen === "0.0.0.0" || listen === "::";
  const loopbackNames = ["localhost", "127.0.0.1", "::1"];
  if (isLoopback(listen)) return name === listen || loopbackNames.includes(name);
  const allowed = new Set<string>([os.hostname().toLowerCase()]);
  if (all) {
    for (const n of loopbackNames) allowed.add(n);
    for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) allowed.add(a.address.toLowerCase());
  } else allowed.add(listen.toLowerCase());
  return allowed.has(name);
}
