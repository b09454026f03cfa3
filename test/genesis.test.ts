// The genesis document (src/protocol/genesis.ts): what parseGenesis refuses, with real
// keys made in temp dirs.
import { describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { blsKeygen, blsPopProve, blsPublicKey } from "../src/crypto/bls.ts";
import { toHex } from "../src/encoding/hex.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { createLibp2pKey } from "../src/identity/libp2p-key.ts";
import { makeCard, type NodeCard } from "../src/protocol/card.ts";
import { type Genesis, makeLocalGenesis, parseGenesis } from "../src/protocol/genesis.ts";
import { useScratch } from "./helpers/scratch.ts";

const { freshDir } = useScratch("dsm-genesis-");

// ---------------------------------------------------------------------------
describe("parseGenesis: one BLS key may not count twice", () => {
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
