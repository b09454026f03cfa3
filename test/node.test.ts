// DSMNode (src/node/node.ts) at library level, real keys and real SQLite files in temp
// dirs: what init refuses and how it writes the keys, and what append() re-checks of a
// PreparedEvent from library code.
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { defaultConfig } from "../src/config/config.ts";
import { sha256Hex } from "../src/crypto/sha256.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { verifyLedger } from "../src/ledger/verify.ts";
import { DSMNode, EventError, type PreparedEvent } from "../src/node/node.ts";
import { useScratch } from "./helpers/scratch.ts";

const { freshDir, newNode, opened } = useScratch("dsm-node-");

// ---------------------------------------------------------------------------
describe("DSMNode.append re-checks PreparedEvents from library code", () => {
  const good = (payload: unknown): PreparedEvent => {
    const canonical = canonicalize(payload);
    return { eventType: "test.event", canonical, payloadHash: sha256Hex(canonical) };
  };

  async function expectRefused(node: DSMNode, events: PreparedEvent[], message: RegExp): Promise<void> {
    const before = node.ledger.counts();
    let caught: unknown;
    try {
      await node.append(events);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(EventError);
    expect((caught as Error).message).toMatch(message);
    expect(node.ledger.counts()).toEqual(before);
  }

  test("an invalid event type is refused and nothing is stored", async () => {
    const { node } = await newNode("prepared");
    await expectRefused(node, [{ ...good({ a: 1 }), eventType: 'a"b' }], /event type "a"b" must be 1-64 characters/);
    await expectRefused(node, [{ ...good({ a: 1 }), eventType: "Upper.Case" }], /must be 1-64 characters/);
    // One bad event spoils the batch: the good one before it is not stored either.
    await expectRefused(node, [good({ a: 2 }), { ...good({ a: 3 }), eventType: "" }], /must be 1-64 characters/);
    expect(node.ledger.counts().microblocks).toBe(0);
  });

  test("a payload that is not a canonical JSON object is refused", async () => {
    const { node } = await newNode("prepared");
    const raw = (canonical: string): PreparedEvent => ({ eventType: "test.event", canonical, payloadHash: sha256Hex(canonical) });
    await expectRefused(node, [raw("not json")], /not JSON/);
    await expectRefused(node, [raw("[1]")], /JSON object/);
    await expectRefused(node, [raw('{"b":1,"a":2}')], /canonical/);
    await expectRefused(node, [raw('{ "a": 1 }')], /canonical/);
    expect(node.ledger.counts().payloads).toBe(0);
  });

  test("a payloadHash that does not match canonical is refused and nothing is stored", async () => {
    const { node } = await newNode("prepared");
    const lie: PreparedEvent = { ...good({ a: 1 }), payloadHash: sha256Hex(canonicalize({ a: 2 })) };
    await expectRefused(node, [lie], /payloadHash does not match/);
    await expectRefused(node, [good({ b: 1 }), lie], /payloadHash does not match/);
    expect(node.ledger.counts()).toMatchObject({ microblocks: 0, payloads: 0 });
    // The node still works afterwards, and a valid PreparedEvent goes through.
    const [mb] = await node.append([good({ ok: true })]);
    expect(mb!.seq).toBe(1);
    expect((await verifyLedger(node.ledger, { ownNodeId: node.nodeId })).problems).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
describe("DSMNode.init: a private data dir, keys never written through links", () => {
  const SECRETS = ["identity.pem", "libp2p.key", "bls.key", "privacy.key"];

  for (const mode of [0o777, 0o757]) {
    test(`init into an existing dir with mode ${mode.toString(8)} fails, naming chmod, and writes no key`, async () => {
      const dir = freshDir("open-dir");
      fs.mkdirSync(dir);
      fs.chmodSync(dir, mode);
      let caught: unknown;
      try {
        await DSMNode.init({ dataDir: dir, config: defaultConfig() });
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(Error);
      expect((caught as Error).message).toMatch(/writable by other users/);
      expect((caught as Error).message).toContain(`chmod 700 ${dir}`);
      expect(fs.readdirSync(dir)).toEqual([]);
    });
  }

  test("init into an existing 0700 dir works", async () => {
    const dir = freshDir("closed-dir");
    fs.mkdirSync(dir);
    fs.chmodSync(dir, 0o700);
    await DSMNode.init({ dataDir: dir, config: defaultConfig() });
    for (const f of SECRETS) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
  });

  test("init: keys are regular 0600 files, links planted at the old temp names are not followed, no temp files left", async () => {
    const dir = freshDir("planted");
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    const elsewhere = freshDir("attacker");
    fs.mkdirSync(elsewhere);
    // The temp name used to be <file>.tmp-<pid>: predictable, opened without O_NOFOLLOW.
    const planted = SECRETS.map((f) => {
      const link = path.join(dir, `${f}.tmp-${process.pid}`);
      const target = path.join(elsewhere, `${f}.stolen`);
      fs.symlinkSync(target, link);
      return { link, target };
    });
    await DSMNode.init({ dataDir: dir, config: defaultConfig() });
    for (const f of SECRETS) {
      const st = fs.lstatSync(path.join(dir, f));
      expect(st.isFile()).toBe(true);
      expect(st.isSymbolicLink()).toBe(false);
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.size).toBeGreaterThan(0);
    }
    // Nothing was written through the links.
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    for (const p of planted) expect(fs.lstatSync(p.link).isSymbolicLink()).toBe(true);
    const plantedNames = new Set(planted.map((p) => path.basename(p.link)));
    expect(fs.readdirSync(dir).filter((n) => n.includes(".tmp-") && !plantedNames.has(n))).toEqual([]);
    // And the node opens and signs with those keys.
    const config = defaultConfig();
    const node = DSMNode.open(dir, config);
    opened.push(node);
    expect((await node.createMicroblock({ eventType: "test.event", payload: {} })).seq).toBe(1);
  });
});
