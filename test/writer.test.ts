// The write path of a node's own chain (src/chain/writer.ts, ChainWriter), driven through
// DSMNode with real keys and a real SQLite file in a temp dir.
import { describe, expect, test } from "bun:test";
import { verifyLedger } from "../src/ledger/verify.ts";
import { DSMNode } from "../src/node/node.ts";
import { useScratch } from "./helpers/scratch.ts";

const { newNode } = useScratch("dsm-writer-");

// ---------------------------------------------------------------------------
describe("ChainWriter: a clock behind the chain head", () => {
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
