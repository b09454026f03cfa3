// A validator records its epoch signature in its SQLite ledger, is killed before it sends
// it, and restarts: it never signs a second body for that epoch, and the engine resumes by
// sending the signature it recorded.
import { afterAll, expect, test } from "bun:test";
import * as path from "node:path";
import { toHex } from "../src/encoding/hex.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { checkpointDigestHex } from "../src/protocol/checkpoint.ts";
import type { ConsensusMessage } from "../src/consensus/ports.ts";
import { LedgerSignedStore } from "../src/ledger/signed-store.ts";
import { signOnce } from "../src/consensus/sign-once.ts";
import { GENESIS_MS, loneEngine, memoSigner, pushRound, SimClock, simMesh, twoBodies } from "./helpers/consensus-sim.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

test("killed after recording its signature, a validator restarts bound to that body", async () => {
  const m = await simMesh(4);
  const { src, a, b } = twoBodies(m, "crash", 4);
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
    const engine = loneEngine(m, 0, src, store, clock, sent);
    engine.start();
    const resent = sent.flatMap((x) => (x.type === "S" ? [checkpointDigestHex(x.checkpoint)] : []));
    expect([...new Set(resent)]).toEqual([checkpointDigestHex(a)]);
    pushRound(m, engine, 3, 3, [1, 2, 3], b);
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
