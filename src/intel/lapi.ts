// The bouncer side of the CrowdSec Local API, over this node's decisions (DESIGN.md
// section 12, docs/PROTOCOL.md "Decisions"), so the bouncers operators already run
// (crowdsec-firewall-bouncer, crowdsec-custom-bouncer, the nginx/lua ones) enforce what
// the mesh finalized. It follows CrowdSec's own server (pkg/apiserver/controllers/v1/
// decisions.go, pkg/database/decisionfilter.go, middlewares/v1/api_key.go):
//
//   GET|HEAD /v1/decisions/stream[?startup=true][&scopes=ip,range][&origins=..]
//            [&scenarios_containing=..][&scenarios_not_containing=..][&dedup=false]
//       {"new":[...],"deleted":[...]} (empty lists are [], as CrowdSec's chunked answer).
//       startup=true: everything active; otherwise what changed since this bouncer's last
//       pull (its cursor, persisted), a decision that expired meanwhile in "deleted" once.
//       scopes defaults to "ip,range". HEAD answers 200 and moves no cursor.
//   GET|HEAD /v1/decisions[?ip=|range=][&contains=false][&scope=][&value=][&type=]
//       The active decisions matching, no dedup; an empty answer is null, as CrowdSec's
//       (bouncers in live mode test for it).
//
// Every request carries X-Api-Key (dsm bouncers add); without a known key, 403
// {"message":"access forbidden"} as CrowdSec answers. Only Ip and Range decisions are
// served: domain, ja3 and sid are no CrowdSec scope here (dsm decisions export feeds those).
// Decisions go out as CrowdSec's models.Decision, fields in its order: duration (Go text,
// from now to until, rounded to the second, negative for an expired one in "deleted"),
// id, origin "dsm", scenario "dsm/<category>", scope, type "ban", until, value.
import type { Server } from "bun";
import { goDuration } from "../encoding/duration.ts";
import { canonicalIp, formatCidr, parseCidr } from "../encoding/ip.ts";
import type { Bouncer, BouncerStore } from "../ledger/bouncer-store.ts";
import { type DecisionQuery, type DecisionStore, DecisionStoreError } from "../ledger/decision-store.ts";
import type { Decision } from "../protocol/decision.ts";

export type LapiLogLevel = "debug" | "info" | "warn" | "error";

export interface DecisionsApiOptions {
  decisions: DecisionStore;
  bouncers: BouncerStore;
  hostname: string;
  /** 0: any free port (server.port says which). */
  port: number;
  now?: () => number;
  /** After each stream answer: the bouncer, whether it was a startup pull, and how many decisions it was sent (new + deleted). */
  onPull?: (bouncer: string, startup: boolean, count: number) => void;
  log?: (level: LapiLogLevel, msg: string) => void;
}

/** Longest request URL taken (CrowdSec's bouncers send a few short parameters). */
export const MAX_URL = 2048;
const ORIGIN = "dsm";
const SCOPE_NAME: Partial<Record<Decision["scope"], string>> = { ip: "Ip", range: "Range" };
const JSON_TYPE = { "content-type": "application/json; charset=utf-8" };

class BadRequest extends Error {}

function message(text: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ message: text }), { status, headers: { ...JSON_TYPE, ...headers } });
}

/** Go's time.Duration.Round(time.Second).String(): halves away from zero, "0s", "-1m5s". */
export function goDurationSigned(ms: number): string {
  const s = ms < 0 ? -Math.floor(-ms / 1000 + 0.5) : Math.floor(ms / 1000 + 0.5);
  if (s === 0) return "0s";
  return (s < 0 ? "-" : "") + goDuration(Math.abs(s) * 1000);
}

/** Each decision's JSON but its duration, made once per decision object (the store keeps them). */
const tails = new WeakMap<Decision, { tail: string; untilMs: number }>();

function tailOf(d: Decision): { tail: string; untilMs: number } {
  let t = tails.get(d);
  if (t === undefined) {
    const tail =
      `,"id":${d.id},"origin":"${ORIGIN}","scenario":${JSON.stringify(`${ORIGIN}/${d.category}`)},"scope":"${SCOPE_NAME[d.scope]}",` +
      `"type":"ban","until":${JSON.stringify(d.until)},"value":${JSON.stringify(d.value)}}`;
    t = { tail, untilMs: Date.parse(d.until) };
    tails.set(d, t);
  }
  return t;
}

/** A JSON array of decisions in CrowdSec's form, durations as of nowMs. */
export function decisionsJson(list: readonly Decision[], nowMs: number): string {
  const parts = new Array<string>(list.length);
  for (let i = 0; i < list.length; i++) {
    const t = tailOf(list[i]!);
    parts[i] = `{"duration":"${goDurationSigned(t.untilMs - nowMs)}"${t.tail}`;
  }
  return `[${parts.join(",")}]`;
}

/** Values are stored canonical: "2001:DB8::1" asks for 2001:db8::1 (CrowdSec compares text as given). */
function canonicalValue(v: string): string {
  const cidr = v.includes("/") ? parseCidr(v) : null;
  return cidr ? formatCidr(cidr) : (canonicalIp(v) ?? v);
}

/** strconv.ParseBool, as CrowdSec reads contains. */
function goBool(text: string, name: string): boolean {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(text)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(text)) return false;
  throw new BadRequest(`invalid ${name} value: ${JSON.stringify(text)} is not a boolean`);
}

/** The filters CrowdSec applies to both endpoints: scopes (stream) or scope, origins, scenarios. */
function filterOf(params: URLSearchParams, scopesParam: "scopes" | "scope"): (d: Decision) => boolean {
  // Only Ip and Range are served; "scopes" defaults to both (StreamDecision).
  const raw = params.get(scopesParam) ?? (scopesParam === "scopes" ? "ip,range" : null);
  const scopes = raw === null ? new Set(["ip", "range"]) : new Set(raw.split(",").map((s) => s.toLowerCase()).filter((s) => s === "ip" || s === "range"));
  const origins = params.get("origins");
  const originOk = origins === null || origins.split(",").includes(ORIGIN);
  const words = (name: string) => (params.get(name) === null ? null : params.get(name)!.split(",").map((w) => w.toLowerCase()));
  const containing = words("scenarios_containing");
  const notContaining = words("scenarios_not_containing");
  return (d) => {
    if (!originOk || !scopes.has(d.scope)) return false;
    if (containing === null && notContaining === null) return true;
    const scenario = `${ORIGIN}/${d.category}`.toLowerCase();
    if (containing !== null && !containing.some((w) => scenario.includes(w))) return false;
    return notContaining === null || !notContaining.some((w) => scenario.includes(w));
  };
}

/**
 * Serves the bouncer API on hostname:port until server.stop(). Answers are built in one
 * synchronous step from the store's in-memory view: with 100k decisions a startup answer
 * takes a few hundred ms, an increment a few ms (bench/decisions.ts). Share the
 * DecisionStore that replace() writes through: its view is then never loaded again.
 */
export function startDecisionsApi(opts: DecisionsApiOptions): Server<undefined> {
  const now = opts.now ?? Date.now;
  const log = opts.log ?? (() => {});
  const server: Server<undefined> = Bun.serve({
    hostname: opts.hostname,
    port: opts.port,
    // GET and HEAD carry no body worth reading.
    maxRequestBodySize: 1024,
    fetch(req) {
      try {
        return answer(req, server.requestIP(req)?.address ?? null);
      } catch (e) {
        if (e instanceof BadRequest || e instanceof DecisionStoreError) return message(e.message, 400);
        log("error", `decisions API: ${req.method} ${new URL(req.url).pathname}: ${(e as Error).message}`);
        return message("internal error", 500);
      }
    },
    error(e) {
      log("error", `decisions API: ${e.message}`);
      return message("internal error", 500);
    },
  });

  function answer(req: Request, ip: string | null): Response {
    if (req.url.length > MAX_URL) return message(`request URL longer than ${MAX_URL} bytes`, 414);
    if (req.method !== "GET" && req.method !== "HEAD") return message("method not allowed: the bouncer API is GET and HEAD only", 405, { allow: "GET, HEAD" });
    const url = new URL(req.url);
    const stream = url.pathname === "/v1/decisions/stream";
    if (!stream && url.pathname !== "/v1/decisions") return message(`no such endpoint: ${url.pathname}`, 404);
    // No bouncer sends Origin; a browser always does (a page that rebound its name here).
    if (req.headers.get("origin") !== null) return message("access forbidden", 403);
    const bouncer = opts.bouncers.authenticate(req.headers.get("x-api-key"));
    if (bouncer === null) {
      log("warn", `decisions API: ${req.method} ${url.pathname} from ${ip ?? "?"} with ${req.headers.has("x-api-key") ? "an unknown" : "no"} X-Api-Key: 403`);
      return message("access forbidden", 403);
    }
    // CrowdSec answers HEAD from the key alone, and moves nothing.
    if (req.method === "HEAD") return new Response(null, { status: 200, headers: JSON_TYPE });
    const t = now();
    opts.bouncers.seen(bouncer, ip, req.headers.get("user-agent"), t);
    return stream ? pull(bouncer, url.searchParams, t) : query(url.searchParams, t);
  }

  function pull(bouncer: Bouncer, params: URLSearchParams, t: number): Response {
    const startup = params.get("startup") === "true";
    const a = opts.decisions.stream({ cursor: bouncer.cursor, startup, nowMs: t, filter: filterOf(params, "scopes"), dedup: params.get("dedup") !== "false" });
    const body = `{"new":${decisionsJson(a.new, t)},"deleted":${decisionsJson(a.deleted, t)}}`;
    // The answer is built: the cursor moves now (a bouncer that drops it pulls again from
    // the next one; CrowdSec moves it after sending, with the same effect).
    opts.bouncers.pulled(bouncer.name, a.cursor);
    log("debug", `decisions API: ${bouncer.name} pulled${startup ? " (startup)" : ""}${a.full ? " the whole set" : ""}: ${a.new.length} new, ${a.deleted.length} deleted`);
    opts.onPull?.(bouncer.name, startup, a.new.length + a.deleted.length);
    return new Response(body, { status: 200, headers: JSON_TYPE });
  }

  function query(params: URLSearchParams, t: number): Response {
    const q: DecisionQuery = {};
    const ip = params.get("ip");
    const range = params.get("range");
    if (ip !== null) q.ip = ip;
    else if (range !== null) q.range = range;
    const contains = params.get("contains");
    if (contains !== null) q.contains = goBool(contains, "contains");
    const value = params.get("value");
    if (value !== null) q.value = canonicalValue(value);
    const type = params.get("type");
    const keep = filterOf(params, "scope");
    const found = type !== null && type !== "ban" ? [] : opts.decisions.find(q, t).filter(keep);
    // CrowdSec's FormatDecisions of nothing is a nil slice: the body is null.
    return new Response(found.length === 0 ? "null" : decisionsJson(found, t), { status: 200, headers: JSON_TYPE });
  }

  return server;
}
