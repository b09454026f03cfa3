// Node cards (src/protocol/card.ts): make, parse and verify, with real keys made in a temp dir.
import { beforeAll, describe, expect, test } from "bun:test";
import { toHex } from "../src/encoding/hex.ts";
import { formatTime } from "../src/encoding/time.ts";
import { nodeIdOf } from "../src/identity/identity-key.ts";
import { makeCard, type NodeCard, parseCard } from "../src/protocol/card.ts";
import { peerIdOf } from "../src/protocol/peer-id.ts";
import { blsA, blsB, clone, idA, idB, NOW, peerA, useIdentityFixtures } from "./helpers/identity-fixtures.ts";

useIdentityFixtures();

// ---------------------------------------------------------------------------------------------

describe("node cards", () => {
  let card: NodeCard;

  beforeAll(async () => {
    card = await makeCard(idA, {
      role: "validator",
      peerId: peerA,
      addrs: ["/ip4/127.0.0.1/tcp/4001"],
      nowMs: NOW,
      blsPub: blsA.pub,
      blsPop: blsA.pop,
    });
  });

  test("make → JSON → parse round trip, with bls_pub and bls_pop", () => {
    expect(card.node_id).toBe(nodeIdOf(idA.publicKey));
    expect(card.tpm).toBe(false);
    expect(card.bls_pub).toBe(blsA.pub);
    expect(card.bls_pop).toBe(blsA.pop);
    expect(card.created).toBe(formatTime(NOW));
    expect("ak_pub" in card).toBe(false);
    expect(parseCard(JSON.parse(JSON.stringify(card, null, 2)))).toEqual(card);
  });

  test("a card without BLS keys also round-trips", async () => {
    const c = await makeCard(idB, { role: "edge", peerId: peerA, nowMs: NOW });
    expect("bls_pub" in c).toBe(false);
    expect(parseCard(clone(c))).toEqual(c);
  });

  test("tampered cards are rejected", () => {
    const cases: Partial<NodeCard>[] = [
      { role: "edge" },
      { addrs: ["/ip4/10.0.0.1/tcp/4001"] },
      { addrs: [] },
      { peer_id: peerIdOf(new Uint8Array(32)) },
      { bls_pub: blsB.pub, bls_pop: blsB.pop },
      { created: formatTime(NOW + 1) },
      { tpm: true, ak_pub: toHex(idB.publicKey) },
    ];
    for (const c of cases) expect(() => parseCard({ ...card, ...c })).toThrow(/signature does not verify/);
    expect(() => parseCard({ ...card, node_id: nodeIdOf(idB.publicKey) })).toThrow(/node_id is not the hash/);
    expect(() => parseCard({ ...card, extra: 1 })).toThrow(/unexpected field/);
  });

  test("a tpm:false card carrying ak_pub is rejected, even validly signed", async () => {
    const c = await makeCard(idA, { role: "edge", peerId: peerA, nowMs: NOW, akPub: toHex(idB.publicKey) });
    expect(c.tpm).toBe(false);
    expect(c.ak_pub).toBe(toHex(idB.publicKey));
    expect(() => parseCard(c)).toThrow(/ak_pub.*only for TPM/);
  });

  test("bls_pub and bls_pop must come together", async () => {
    const onlyPub = await makeCard(idA, { role: "validator", peerId: peerA, nowMs: NOW, blsPub: blsA.pub });
    expect(() => parseCard(onlyPub)).toThrow(/come together/);
  });

  test("bad shapes are rejected", () => {
    expect(() => parseCard({ ...card, role: "admin" })).toThrow(/role/);
    expect(() => parseCard({ ...card, peer_id: "0OIl" + peerA.slice(4) })).toThrow(/peer_id/);
    expect(() => parseCard({ ...card, addrs: Array(17).fill("/ip4/1.2.3.4/tcp/1") })).toThrow(/addrs/);
    expect(() => parseCard({ ...card, bls_pub: blsA.pub.slice(2) })).toThrow(/bls_pub/);
  });
});
