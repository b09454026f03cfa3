// A validator records its epoch signature in its SQLite ledger, is killed before it sends
// it, and restarts: it never signs a second body for that epoch, and the engine resumes by
// sending the signature it recorded.
import { afterAll, expect, test } from "bun:test";
import * as path from "node:path";
import { toHex } from "../src/encoding/hex.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { checkpointDigest, checkpointDigestHex } from "../src/log/checkpoint.ts";
import { ConsensusEngine } from "../src/consensus/engine.ts";
import { signingDigest as signingDigestOf } from "../src/consensus/messages.ts";
import type { ConsensusMessage } from "../src/consensus/ports.ts";
import { LedgerSignedStore } from "../src/consensus/signed-store.ts";
import { signOnce } from "../src/consensus/sign-once.ts";
import { GENESIS_MS, MemorySource, memoSigner, SimClock, simMesh } from "./helpers/consensus-sim.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

test("killed after recording its signature, a validator restarts bound to that body", async () => {
  const m = await simMesh(4);
  const src = new MemorySource(m.genesis, m.mesh);
  for (let s = 1; s <= 4; s++) src.hold({ node: "dd".repeat(32), seq: s, id: toHex(checkpointDigest({ s, t: 3 } as never)), timestampMs: GENESIS_MS + s });
  const a = src.propose(0)!;
  const b = src.variant(a)!;
  const file = path.join(tempDir(), "ledger.sqlite");
  Ledger.open(file).close();

  const child = Bun.spawn([process.execPath, path.join(import.meta.dir, "helpers", "sign-and-crash.ts"), file, JSON.stringify({ mesh: m.mesh, secret: toHex(m.secrets[0]!), unsigned: { v: 1, type: "S", mesh: m.mesh, checkpoint: a, validator: 0 } })], { stderr: "pipe", stdout: "ignore" });
  await child.exited;
  expect(child.signalCode).toBe("SIGKILL");
  expect(await new Response(child.stderr).text()).toContain("recorded true");

  const ledger = Ledger.open(file);
  try {
    const store = new LedgerSignedStore(ledger, m.mesh);
    const sign = memoSigner(m, 0);
    // A second body for epoch 0 is refused; the first one comes back as recorded.
    const second = signOnce(store, { v: 1, type: "S", mesh: m.mesh, checkpoint: b, validator: 0 }, sign);
    expect(second.ok).toBe(false);
    const again = signOnce(store, { v: 1, type: "S", mesh: m.mesh, checkpoint: a, validator: 0 }, sign);
    expect(again.ok).toBe(true);
    expect(store.ofHeight(a.prev).map((x) => x.type)).toEqual(["S"]);

    // The engine over the same ledger: it resumes by re-sending the recorded signature,
    // and a quorum pushing b through a round gets its votes but never its signature.
    const clock = new SimClock(GENESIS_MS + 10_001);
    const sent: ConsensusMessage[] = [];
    const engine = new ConsensusEngine({
      genesis: m.genesis,
      mesh: m.mesh,
      validators: m.set,
      index: 0,
      sign,
      source: src,
      store,
      clock,
      roundTimeoutMs: 1000,
      maxClockSkewMs: 0,
      transport: { broadcast: (x) => sent.push(x), requestCertificates: () => {}, fetchMicroblocks: () => {} },
    });
    engine.start();
    const resent = sent.flatMap((x) => (x.type === "S" ? [checkpointDigestHex(x.checkpoint)] : []));
    expect([...new Set(resent)]).toEqual([checkpointDigestHex(a)]);
    const seal = (i: number, u: Parameters<typeof signOnce>[1]) => ({ ...u, sig: toHex(memoSigner(m, i)(signingDigestOf(u))) });
    const round = 3;
    engine.receive(seal(3, { v: 1, type: "P", mesh: m.mesh, round, valid_round: -1, checkpoint: b, validator: 3 }));
    for (const phase of ["prevote", "precommit"] as const) {
      for (const i of [1, 2, 3]) engine.receive(seal(i, { v: 1, type: "V", mesh: m.mesh, prev: b.prev, round, phase, checkpoint: checkpointDigestHex(b), validator: i }));
    }
    clock.run(GENESIS_MS + 30_000);
    engine.stop();
    expect(sent.filter((x) => x.type === "S" && checkpointDigestHex(x.checkpoint) === checkpointDigestHex(b))).toEqual([]);
    // The votes it did sign for b are in the ledger too, each in its own slot.
    const mine = store.ofHeight(a.prev);
    expect(mine.filter((x) => x.type === "V").length).toBeGreaterThanOrEqual(2);
    expect(mine.flatMap((x) => (x.type === "S" ? [checkpointDigestHex(x.checkpoint)] : []))).toEqual([checkpointDigestHex(a)]);
  } finally {
    ledger.close();
  }
});
