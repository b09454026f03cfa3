// Regression tests for the review fixes of 5c248e6 and a3400b1, at library level: real
// nodes, real keys, real SQLite files in temp dirs. Each test fails on the code before
// its fix. The CLI side of the same review is in test/e2e-review.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultConfig, type DsmConfig } from "../src/config/config.ts";
import { blsKeygen, blsPopProve, blsPublicKey } from "../src/crypto/bls.ts";
import { sha256Hex } from "../src/crypto/sha256.ts";
import { toHex } from "../src/encoding/hex.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { writeFileAtomic } from "../src/fs/files.ts";
import { makeCard, type NodeCard } from "../src/protocol/card.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { createLibp2pKey } from "../src/identity/libp2p-key.ts";
import { verifyLedger } from "../src/ledger/verify.ts";
import { type Genesis, makeLocalGenesis, parseGenesis } from "../src/protocol/genesis.ts";
import { DSMNode, EventError, type PreparedEvent } from "../src/node/node.ts";

let root: string;
const opened: DSMNode[] = [];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-review-"));
});

afterAll(() => {
  for (const n of opened.splice(0)) {
    try {
      n.close();
    } catch {
      // already closed
    }
  }
  fs.rmSync(root, { recursive: true, force: true });
});

let dirCount = 0;
function freshDir(name: string): string {
  return path.join(root, `${name}-${++dirCount}`);
}

async function newNode(name: string, patch?: (c: DsmConfig) => void): Promise<{ node: DSMNode; dir: string; config: DsmConfig }> {
  const config = defaultConfig();
  patch?.(config);
  const dir = freshDir(name);
  await DSMNode.init({ dataDir: dir, config });
  const node = DSMNode.open(dir, config);
  opened.push(node);
  return { node, dir, config };
}

// ---------------------------------------------------------------------------
describe("6. append() re-checks PreparedEvents from library code", () => {
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
describe("7. a private data dir, and temp files that never follow links", () => {
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

  test("writeFileAtomic, create and overwrite: never through a planted link, mode applied despite the umask", () => {
    const dir = freshDir("atomic");
    fs.mkdirSync(dir, { mode: 0o700 });
    const elsewhere = freshDir("attacker");
    fs.mkdirSync(elsewhere);
    const file = path.join(dir, "secret.key");
    const target = path.join(elsewhere, "stolen");
    fs.symlinkSync(target, `${file}.tmp-${process.pid}`);
    const oldUmask = process.umask(0o022);
    try {
      writeFileAtomic(file, "first", { overwrite: false });
      writeFileAtomic(file, "second", { overwrite: true, mode: 0o640 });
    } finally {
      process.umask(oldUmask);
    }
    expect(fs.existsSync(target)).toBe(false);
    const st = fs.lstatSync(file);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o640);
    expect(fs.readFileSync(file, "utf8")).toBe("second");
    expect(fs.readdirSync(dir).sort()).toEqual(["secret.key", `secret.key.tmp-${process.pid}`]);
  });
});

// ---------------------------------------------------------------------------
describe("11. a genesis may not count one BLS key twice", () => {
  async function cardWith(bls: { pub: string; pop: string }): Promise<NodeCard> {
    const dir = freshDir("card");
    fs.mkdirSync(dir, { mode: 0o700 });
    const identity = SoftwareIdentityKey.create(path.join(dir, "identity.pem"), false);
    const p2p = createLibp2pKey(path.join(dir, "libp2p.key"), false);
    return makeCard(identity, { role: "validator", peerId: p2p.peerId, nowMs: Date.now(), blsPub: bls.pub, blsPop: bls.pop });
  }
  function blsKey(): { pub: string; pop: string } {
    const sk = blsKeygen(crypto.randomBytes(32));
    return { pub: toHex(blsPublicKey(sk)), pop: toHex(blsPopProve(sk)) };
  }
  function genesisOf(cards: NodeCard[]): Genesis {
    return { ...makeLocalGenesis(cards[0]!, Date.now()), name: "bls-mesh", validators: cards, admission: { policy: "open" } };
  }

  test("two validators (different identities) with the same bls_pub are rejected; distinct keys pass", async () => {
    const shared = blsKey();
    const a = await cardWith(shared);
    const b = await cardWith(shared);
    expect(a.node_id).not.toBe(b.node_id);
    expect(() => parseGenesis(genesisOf([a, b]))).toThrow(/genesis validator 1: bls_pub is already another validator's/);
    expect(() => parseGenesis(genesisOf([a, b]), { checkPop: false })).toThrow(/bls_pub is already another validator's/);
    const c = await cardWith(blsKey());
    expect(parseGenesis(genesisOf([a, c])).validators).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------
describe("a clock behind the chain head", () => {
  test("writes still succeed and verify: not_after counts from the head's time", async () => {
    const { node } = await newNode("clock");
    const realNow = Date.now;
    try {
      // A first write stamped two days ahead (a clock that was wrong, then corrected).
      Date.now = () => realNow() + 2 * 86_400_000;
      await node.createMicroblock({ eventType: "test.event", payload: { ahead: true } });
      Date.now = realNow;
      // A new process (a fresh signing key) after the clock was corrected: its certificate
      // must still cover the head's timestamp, which is more than one key lifetime ahead.
      const again = DSMNode.open(node.layout.dir, node.config);
      let mb: Awaited<ReturnType<DSMNode["createMicroblock"]>>;
      try {
        mb = await again.createMicroblock({ eventType: "test.event", payload: { after: true } });
      } finally {
        again.close();
      }
      expect(mb.seq).toBe(2);
      expect(Date.parse(mb.timestamp)).toBeGreaterThan(realNow() + 86_400_000); // never backwards
      expect((await verifyLedger(node.ledger, { ownNodeId: node.nodeId })).problems).toEqual([]);
    } finally {
      Date.now = realNow;
    }
  });
});
