// Finalized advisories in a real ledger: the checkpoint's transaction records exactly the
// intel microblocks it includes, at their leaf, with the epoch that finalized them; edges'
// entries come through put(); payload-less ones are held apart until filled; the sync
// cursor only moves forward. And the decisions computed from them (src/intel/input.ts).
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultConfig } from "../src/config/config.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { makeLocalGenesis } from "../src/protocol/genesis.ts";
import { makeAdvisory, makeRetraction, parseIndicatorText } from "../src/protocol/advisory.ts";
import { DSMNode } from "../src/node/node.ts";
import { buildAlone } from "../src/consensus/alone.ts";
import { CheckpointBuilder } from "../src/log/builder.ts";
import { epochAt } from "../src/protocol/checkpoint.ts";
import { decide } from "../src/intel/decide.ts";
import { intelInput } from "../src/intel/input.ts";
import { withoutLocalFields } from "../src/ledger/ledger.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-intel-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function node(name: string, trustSelf: boolean) {
  const dir = path.join(root, name);
  await DSMNode.init({ dataDir: dir, config: defaultConfig() });
  const card = JSON.parse(fs.readFileSync(path.join(dir, "card.json"), "utf8"));
  const genesis = { ...makeLocalGenesis(card, Date.now() - 5_000), epoch_duration: 1, ...(trustSelf ? { intel: { trusted: [card.node_id] } } : {}) };
  const file = path.join(dir, "short-genesis.json");
  fs.writeFileSync(file, JSON.stringify(genesis));
  const config = defaultConfig();
  config.mesh.genesis = file;
  return { node: DSMNode.open(dir, config), blsSecret: new Uint8Array(fs.readFileSync(path.join(dir, "bls.key"))) };
}

const advisory = (ind: string, ttl = 3600) => ({ eventType: "threat.advisory", payload: makeAdvisory({ indicators: [parseIndicatorText(ind)], category: "c2", ttl }) });

test("a checkpoint records its intel microblocks at their leaves, once, with the finalizing epoch", async () => {
  const { node: n, blsSecret } = await node("a", true);
  try {
    await n.createMicroblock({ eventType: "suricata.alert", payload: { i: 0 } });
    const adv = await n.createMicroblock(advisory("ip:203.0.113.9"));
    await n.createMicroblock({ eventType: "suricata.alert", payload: { i: 1 } });
    const e1 = epochAt(n.genesis, Date.parse(adv.timestamp));
    await Bun.sleep(1100);
    const builder = new CheckpointBuilder(n.ledger, n.policy);
    expect(buildAlone(builder, e1, blsSecret, 0).status).toBe("created");
    const rows = builder.intel.sinceEpoch(0);
    expect(rows.map((r) => [r.leaf, r.id, r.epoch, r.event_type])).toEqual([[builder.leafIndexOf(adv.id)!, adv.id, e1, "threat.advisory"]]);
    expect(rows[0]!.microblock).toEqual(withoutLocalFields(n.ledger.byId(adv.id)!));
    expect(rows[0]!.payloadCanonical).toBe(canonicalize(advisory("ip:203.0.113.9").payload));
    expect(builder.intel.madeBy(n.nodeId)).toBe(1);

    // Trusted: its single advice is a decision, holding from the end of the finalizing epoch.
    const [d] = decide(intelInput(builder, n.genesis, e1));
    expect(d!.value).toBe("203.0.113.9");
    expect(d!.advisories).toEqual([adv.id]);

    const ret = await n.createMicroblock({ eventType: "threat.retract", payload: makeRetraction([parseIndicatorText("ip:203.0.113.9")]) });
    const e2 = epochAt(n.genesis, Date.parse(ret.timestamp));
    await Bun.sleep(1100);
    expect(buildAlone(builder, e2, blsSecret, 0).status).toBe("created");
    expect(builder.intel.sinceEpoch(0).map((r) => r.id)).toEqual([adv.id, ret.id]);
    expect(builder.intel.sinceEpoch(e2).map((r) => r.id)).toEqual([ret.id]);
    expect(decide(intelInput(builder, n.genesis, e2))).toEqual([]);
    // As of the first checkpoint the decision still stands: the set is a function of the checkpoint.
    expect(decide(intelInput(builder, n.genesis, e1))).toHaveLength(1);
    expect(builder.intel.count()).toBe(2);
  } finally {
    n.close();
  }
});

test("put: an edge's entry is kept once; an empty payload waits apart and is filled later; the cursor never moves back", async () => {
  const { node: n } = await node("b", false);
  try {
    const builder = new CheckpointBuilder(n.ledger, n.policy);
    const mb = await n.createMicroblock(advisory("domain:evil.example"));
    const text = canonicalize(advisory("domain:evil.example").payload);
    expect(builder.intel.put(7, withoutLocalFields(n.ledger.byId(mb.id)!), "", 3)).toBe(true);
    expect(builder.intel.missingPayloads(10)).toEqual([7]);
    expect(builder.intel.from(0, 10)).toEqual([]);
    expect(builder.intel.count()).toBe(0);
    expect(builder.intel.put(7, withoutLocalFields(n.ledger.byId(mb.id)!), text, 3)).toBe(true);
    expect(builder.intel.missingPayloads(10)).toEqual([]);
    expect(builder.intel.put(7, withoutLocalFields(n.ledger.byId(mb.id)!), text, 3)).toBe(false);
    expect(builder.intel.from(0, 10).map((r) => [r.leaf, r.epoch, r.payloadCanonical])).toEqual([[7, 3, text]]);
    expect(builder.intel.cursor()).toBe(0);
    builder.intel.advance(12);
    builder.intel.advance(5);
    expect(builder.intel.cursor()).toBe(12);
  } finally {
    n.close();
  }
});
