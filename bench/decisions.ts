// The CrowdSec bouncer API (src/intel/lapi.ts) with BENCH_DECISIONS_N active decisions
// (default 100,000) in a real ledger file, over real HTTP on 127.0.0.1: a startup=true
// answer (the whole set) and an incremental one after a replace() that changes 100
// decisions (50 removed, 50 added), each next to a baseline measured in the same run:
// for the startup answer, JSON.stringify of the same decisions in CrowdSec's shape; for
// the increment, an authenticated HEAD round trip (the HTTP and key check alone). The
// issue's targets: startup under 1 s, an increment under 50 ms.
import * as path from "node:path";
import { Ledger } from "../src/ledger/ledger.ts";
import { BouncerStore } from "../src/ledger/bouncer-store.ts";
import { DecisionStore } from "../src/ledger/decision-store.ts";
import { goDurationSigned, startDecisionsApi } from "../src/intel/lapi.ts";
import type { Decision } from "../src/protocol/decision.ts";
import { CATEGORIES } from "../src/protocol/advisory.ts";
import { envInt, fmtRatio, gc, now, removeTempDir, say, table, tempDir } from "./lib.ts";

const MESH = "5e".repeat(32);
const CHANGED = 100;
const REPS = 5;

export interface DecisionsBenchSummary {
  n: number;
  replace_all_ms: number;
  startup_cold_ms: number;
  startup_ms: number;
  startup_bytes: number;
  startup_baseline_ms: number;
  startup_ratio: number;
  replace_100_ms: number;
  incremental_ms: number;
  incremental_baseline_ms: number;
  incremental_ratio: number;
  startup_target_ms: 1000;
  incremental_target_ms: 50;
}

/** Decision i: an address (a /24 range for one in ten), expiring within 1 to 24 hours. */
function decision(i: number, t0: number): Decision {
  const range = i % 10 === 9;
  const value = range ? `10.${(i >> 8) & 255}.${i & 255}.0/24` : `100.${64 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}`;
  const until = new Date(t0 + 3_600_000 * (1 + (i % 24)) + (i % 1000)).toISOString();
  return {
    id: 1_000_000 + i,
    scope: range ? "range" : "ip",
    value,
    category: CATEGORIES[i % CATEGORIES.length]!,
    severity: "high",
    since: new Date(t0).toISOString(),
    until,
    epoch: 1,
    reporters: ["a".repeat(64), "b".repeat(64)],
    advisories: [i.toString(16).padStart(64, "0")],
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function runDecisions(): Promise<DecisionsBenchSummary> {
  const n = envInt("BENCH_DECISIONS_N", 100_000);
  say(`\ndecisions API: ${n} active decisions in a ledger file, CrowdSec stream over HTTP on 127.0.0.1`);
  const dir = tempDir("decisions");
  const ledger = Ledger.open(path.join(dir, "ledger.sqlite"));
  const t0 = Date.now();
  let set = Array.from({ length: n }, (_, i) => decision(i, t0));
  const store = new DecisionStore(ledger, MESH);
  const bouncers = new BouncerStore(ledger, MESH);
  const { key } = bouncers.add("bench");
  let s = now();
  store.replace(set, 1, t0);
  const replaceAllMs = now() - s;

  // A fresh store on its own connection: the API's first answer pays for loading the set.
  const apiLedger = Ledger.open(ledger.path);
  const server = startDecisionsApi({ decisions: new DecisionStore(apiLedger, MESH), bouncers: new BouncerStore(apiLedger, MESH), hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${server.port}/v1/decisions/stream`;
  const headers = { "X-Api-Key": key, "User-Agent": "dsm-bench/1" };
  const get = async (q: string): Promise<{ ms: number; body: string }> => {
    const t = now();
    const r = await fetch(url + q, { headers });
    const body = await r.text();
    if (r.status !== 200) throw new Error(`stream answered ${r.status}: ${body.slice(0, 200)}`);
    return { ms: now() - t, body };
  };
  try {
    gc();
    const cold = await get("?startup=true");
    const parsed = JSON.parse(cold.body) as { new: unknown[] };
    if (parsed.new.length !== n) throw new Error(`startup answer has ${parsed.new.length} decisions, expected ${n}`);
    const warm: number[] = [];
    for (let r = 0; r < REPS; r++) {
      gc();
      warm.push((await get("?startup=true")).ms);
    }
    // Baseline: the same decisions, as CrowdSec-shaped objects, through JSON.stringify.
    const baseline: number[] = [];
    for (let r = 0; r < REPS; r++) {
      gc();
      const t = now();
      const at = Date.now();
      JSON.stringify({
        new: set.map((d) => ({ duration: goDurationSigned(Date.parse(d.until) - at), id: d.id, origin: "dsm", scenario: `dsm/${d.category}`, scope: d.scope === "ip" ? "Ip" : "Range", type: "ban", until: d.until, value: d.value })),
        deleted: [],
      });
      baseline.push(now() - t);
    }

    // Increments: each replace() drops 50 decisions and adds 50; the next pull gets them.
    await get("");
    const replaceMs: number[] = [];
    const incMs: number[] = [];
    const headMs: number[] = [];
    let next = n;
    for (let r = 0; r < REPS; r++) {
      set = [...set.slice(CHANGED / 2), ...Array.from({ length: CHANGED / 2 }, () => decision(next++, t0))];
      s = now();
      store.replace(set, 2 + r, Date.now());
      replaceMs.push(now() - s);
      const inc = await get("");
      const a = JSON.parse(inc.body) as { new: unknown[]; deleted: unknown[] };
      if (a.new.length !== CHANGED / 2 || a.deleted.length !== CHANGED / 2) throw new Error(`increment has ${a.new.length} new and ${a.deleted.length} deleted, expected ${CHANGED / 2} and ${CHANGED / 2}`);
      incMs.push(inc.ms);
      const t = now();
      await (await fetch(url, { method: "HEAD", headers })).text();
      headMs.push(now() - t);
    }

    const sum: DecisionsBenchSummary = {
      n,
      replace_all_ms: Math.round(replaceAllMs),
      startup_cold_ms: Math.round(cold.ms),
      startup_ms: Math.round(median(warm)),
      startup_bytes: cold.body.length,
      startup_baseline_ms: Math.round(median(baseline)),
      startup_ratio: Number((median(warm) / median(baseline)).toPrecision(3)),
      replace_100_ms: Number(median(replaceMs).toPrecision(3)),
      incremental_ms: Number(median(incMs).toPrecision(3)),
      incremental_baseline_ms: Number(median(headMs).toPrecision(3)),
      incremental_ratio: Number((median(incMs) / median(headMs)).toPrecision(3)),
      startup_target_ms: 1000,
      incremental_target_ms: 50,
    };
    const ok = (ms: number, target: number) => (ms < target ? `under ${target} ms` : `OVER ${target} ms`);
    say(
      table(`decisions API (${n} decisions, median of ${REPS})`, ["answer", "ms", "baseline ms", "ratio", "target"], [
        ["startup=true, first (loads the set)", sum.startup_cold_ms, sum.startup_baseline_ms, fmtRatio(cold.ms / median(baseline)), ok(cold.ms, 1000)],
        ["startup=true", sum.startup_ms, sum.startup_baseline_ms, fmtRatio(sum.startup_ratio), ok(sum.startup_ms, 1000)],
        [`increment after a ${CHANGED}-decision replace`, sum.incremental_ms, sum.incremental_baseline_ms, fmtRatio(sum.incremental_ratio), ok(sum.incremental_ms, 50)],
      ]),
    );
    say(`  startup answer ${(sum.startup_bytes / 1e6).toFixed(1)} MB; baselines: JSON.stringify of the same ${n} decisions, an authenticated HEAD round trip`);
    say(`  replace(): ${sum.replace_all_ms} ms to store ${n} decisions, ${sum.replace_100_ms} ms for a ${CHANGED}-decision change`);
    return sum;
  } finally {
    server.stop(true);
    apiLedger.close();
    ledger.close();
    removeTempDir(dir);
  }
}

if (import.meta.main) await runDecisions();
