// What an edge keeps of a /dsm/intel/1 answer (src/mesh/intel.ts checkIntelEntry): only a
// microblock that is the leaf of its own finalized tree the entry names, with the exact
// payload its payload_hash commits to, and an advisory or retraction. A peer cannot add,
// move, alter or substitute one.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultConfig } from "../src/config/config.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { makeLocalGenesis } from "../src/protocol/genesis.ts";
import { makeAdvisory, parseIndicatorText } from "../src/protocol/advisory.ts";
import { DSMNode } from "../src/node/node.ts";
import { buildAlone } from "../src/consensus/alone.ts";
import { CheckpointBuilder } from "../src/log/builder.ts";
import { epochAt } from "../src/protocol/checkpoint.ts";
import { withoutLocalFields } from "../src/ledger/ledger.ts";
import { checkIntelEntry, intelPage } from "../src/mesh/intel.ts";
import type { Microblock } from "../src/protocol/microblock.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-intel-sync-"));
let n: DSMNode;
let builder: CheckpointBuilder;
let adv: Microblock;
let alert: Microblock;
let payload: string;
beforeAll(async () => {
  const dir = path.join(root, "v");
  await DSMNode.init({ dataDir: dir, config: defaultConfig() });
  const card = JSON.parse(fs.readFileSync(path.join(dir, "card.json"), "utf8"));
  const file = path.join(dir, "g.json");
  fs.writeFileSync(file, JSON.stringify({ ...makeLocalGenesis(card, Date.now() - 5_000), epoch_duration: 1 }));
  const config = defaultConfig();
  config.mesh.genesis = file;
  n = DSMNode.open(dir, config);
  const p = makeAdvisory({ indicators: [parseIndicatorText("ip:203.0.113.9")], category: "c2", ttl: 3600 });
  payload = canonicalize(p);
  alert = withoutLocalFields(await n.createMicroblock({ eventType: "suricata.alert", payload: { x: 1 } }));
  adv = withoutLocalFields(await n.createMicroblock({ eventType: "threat.advisory", payload: p }));
  await Bun.sleep(1100);
  builder = new CheckpointBuilder(n.ledger, n.policy);
  expect(buildAlone(builder, epochAt(n.genesis, Date.parse(adv.timestamp)), new Uint8Array(fs.readFileSync(path.join(dir, "bls.key"))), 0).status).toBe("created");
});
afterAll(() => {
  n?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const check = (entry: unknown) => checkIntelEntry(entry, n.mesh, builder.tree.size(), (i) => builder.tree.idAt(i));

test("the advisory at its own leaf, with its payload, is kept", () => {
  const r = check({ leaf: 1, microblock: adv, payload });
  expect(r).toEqual({ ok: true, leaf: 1, mb: adv, payload });
});

test("forged, moved, altered or substituted entries are refused with the reason", () => {
  const problem = (e: unknown) => {
    const r = check(e);
    return r.ok ? "kept" : r.problem;
  };
  expect(problem({ leaf: 0, microblock: adv, payload })).toContain("is not microblock");
  expect(problem({ leaf: 2, microblock: adv, payload })).toContain("beyond this node's finalized tree");
  expect(problem({ leaf: 1, microblock: { ...adv, seq: 3 }, payload })).toContain("id does not match");
  expect(problem({ leaf: 1, microblock: { ...adv, mesh: "0".repeat(64) }, payload })).toContain("not ours");
  expect(problem({ leaf: 1, microblock: adv, payload: payload.replace("203.0.113.9", "203.0.113.8") })).toBe("payload does not match its payload_hash");
  expect(problem({ leaf: 1, microblock: adv, payload: " " + payload })).toBe("payload does not match its payload_hash");
  expect(problem({ leaf: 1, microblock: adv, payload: "{" })).toBe("payload is not JSON");
  expect(problem({ leaf: 0, microblock: alert, payload: canonicalize({ x: 1 }) })).toContain("is a suricata.alert, not an advisory");
  expect(problem({ leaf: "1", microblock: adv, payload })).toBe("malformed entry");
  expect(problem(null)).toBe("malformed entry");
});

test("an answer page is bounded in count and in bytes, and says how far it covers", () => {
  const row = (leaf: number, size: number) => ({ leaf, id: "", node_id: "", seq: 1, epoch: 0, event_type: "threat.advisory", microblock: adv, payload: null, payloadCanonical: "x".repeat(size) });
  const rows = [row(3, 100), row(5, 100), row(9, 100)];
  expect(intelPage(rows, 0, 20).scanned_to).toBe(20); // all of them: covers every scanned leaf
  expect(intelPage([], 4, 20)).toEqual({ scanned_to: 20, advisories: [] });
  expect(intelPage([], 30, 20).scanned_to).toBe(30); // never behind what was asked
  const byCount = intelPage(rows.slice(0, 2), 0, 20, { count: 2, bytes: 1 << 20 });
  expect([byCount.scanned_to, byCount.advisories.map((a) => a.leaf)]).toEqual([6, [3, 5]]);
  const big = [row(3, 600_000), row(5, 600_000), row(9, 10)];
  const byBytes = intelPage(big, 0, 20);
  expect([byBytes.scanned_to, byBytes.advisories.map((a) => a.leaf)]).toEqual([4, [3]]);
  // One entry over the byte limit still goes alone, or the sync could never pass it.
  expect(intelPage([row(7, 3_000_000)], 0, 20).advisories.map((a) => a.leaf)).toEqual([7]);
});
