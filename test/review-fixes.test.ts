// Regression tests for the review fixes of 5c248e6 and a3400b1, at library level: real
// nodes, real keys, real SQLite files in temp dirs. Each test fails on the code before
// its fix. The CLI side of the same review is in test/e2e-review.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { blsKeygen, blsPopProve, blsPublicKey } from "../src/crypto/bls.ts";
import { toHex } from "../src/encoding/hex.ts";
import { makeCard, type NodeCard } from "../src/protocol/card.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { createLibp2pKey } from "../src/identity/libp2p-key.ts";
import { type Genesis, makeLocalGenesis, parseGenesis } from "../src/protocol/genesis.ts";
import { DSMNode } from "../src/node/node.ts";

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
