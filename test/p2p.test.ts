// The card handshake (src/mesh/p2p.ts): a peer that goes away before it shows its card (a
// one-shot dsm emit that exits first, with the node's own peer id) is hung up on, not
// refused for good: its next connection is admitted. A peer whose card fails stays out.
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createLibp2pKey } from "../src/identity/libp2p-key.ts";
import { MeshNet } from "../src/mesh/p2p.ts";
import { freePort } from "./helpers/net.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-p2p-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const key = (name: string) => {
  const file = path.join(root, name);
  createLibp2pKey(file, false);
  return new Uint8Array(fs.readFileSync(file));
};

async function until(f: () => boolean, ms = 8000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (f()) return true;
    await Bun.sleep(25);
  }
  return f();
}

test("no card before the peer left: hung up, let back in; a bad card: refused", async () => {
  const port = await freePort();
  const refusals: string[] = [];
  const server = await MeshNet.start({
    privateKey: key("server.key"),
    listen: [`/ip4/127.0.0.1/tcp/${port}`],
    bootstrap: [],
    maxMessageBytes: 1 << 20,
    cards: { own: { who: "server" }, admit: (card) => ((card as { ok?: boolean }).ok ? null : "a bad card"), timeoutMs: 300, onRefused: (_p, r) => refusals.push(r) },
  });
  const addr = `/ip4/127.0.0.1/tcp/${port}/p2p/${server.peerId}`;
  const clientKey = key("client.key");
  const client = async (card: unknown, answerMs: number, privateKey = clientKey) => {
    const net = await MeshNet.start({ privateKey, listen: [], bootstrap: [], maxMessageBytes: 1 << 20 });
    await net.serve("/dsm/card/1", async () => {
      await Bun.sleep(answerMs);
      return card;
    });
    await net.addBootstrap(addr);
    return net;
  };
  try {
    // Shows no card in time (as a process that exits before answering would).
    const slow = await client({ ok: true }, 2000);
    expect(await until(() => refusals.length === 1)).toBe(true);
    expect(refusals[0]).toMatch(/^no node card within 300 ms/);
    await slow.stop();
    // The same peer id again, answering at once: admitted.
    const again = await client({ ok: true }, 0);
    expect(await until(() => server.admitted.has(again.peerId))).toBe(true);
    expect(server.refused.has(again.peerId)).toBe(false);
    await again.stop();
    // A card that fails the check: refused from then on.
    const bad = await client({ ok: false }, 0, key("other.key"));
    expect(await until(() => server.refused.get(bad.peerId) === "a bad card")).toBe(true);
    expect(server.admitted.has(bad.peerId)).toBe(false);
    await bad.stop();
  } finally {
    await server.stop();
  }
}, 30_000);
