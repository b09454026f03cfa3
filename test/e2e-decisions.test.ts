// dsm decisions on a node with no dsm run (a one-validator mesh checkpointed from cron, as
// the README's quick start runs it): list and export bring the set up to the latest
// checkpoint themselves; explain says which advisory and checkpoint made or withdrew it;
// the nftables export carries the decision with its remaining time. Run `bun run build` first.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { withTempNode } from "./helpers/e2e.ts";

test("advise, checkpoint, list, explain, export, retract: the set follows the checkpoints", async () => {
  await withTempNode(
    async (n) => {
      await n.ok(["init", "--role", "validator"]);
      const card = JSON.parse((await n.ok(["card", "--json"])).stdout);
      const genesis = path.join(n.root, "genesis.json");
      // Its single advice suffices (a trusted reporter), and 1 s epochs.
      await n.ok(["genesis", "--name", "one", path.join(n.dataDir, "card.json"), "--epoch-duration", "1", "--trusted-reporter", card.node_id, "-o", genesis]);
      const env = { DSM_MESH_GENESIS: genesis };
      const run = (args: string[]) => n.ok(args, { env });
      const json = async (args: string[]) => JSON.parse((await run([...args, "--json"])).stdout);

      const adv = await json(["advise", "--indicator", "ip:203.0.113.9", "--category", "c2", "--ttl", "1h"]);
      expect(await json(["decisions", "list"])).toEqual({ epoch: null, decisions: [] }); // not finalized yet
      await Bun.sleep(1100);
      await run(["checkpoint"]);
      const listed = await json(["decisions", "list"]);
      expect(listed.decisions).toHaveLength(1);
      const d = listed.decisions[0];
      expect(d).toMatchObject({ scope: "ip", value: "203.0.113.9", category: "c2", reporters: [card.node_id], advisories: [adv.id], epoch: listed.epoch });
      expect(Date.parse(d.until) - Date.parse(d.since)).toBe(3_600_000);

      const x = await json(["decisions", "explain", "203.0.113.9"]);
      expect(x.decision).toEqual(d);
      expect(x.advice).toMatchObject([{ id: adv.id, node_id: card.node_id, trusted: true, status: "counted" }]);
      const human = (await run(["decisions", "explain", "ip:203.0.113.9"])).stdout;
      expect(human).toContain("203.0.113.9: BLOCKED");

      const file = path.join(n.root, "dsm.nft");
      expect(await json(["decisions", "export", "--format", "nftables", "--output", file])).toMatchObject({ entries: 1, changed: true });
      expect(fs.readFileSync(file, "utf8")).toMatch(/203\.0\.113\.9 timeout \d+s/);
      expect(await json(["decisions", "export", "--format", "nftables", "--output", file])).toMatchObject({ changed: false });
      expect((await run(["decisions", "export", "--format", "plain"])).stdout).toBe("203.0.113.9\n");
      const q = await json(["intel", "query", "--category", "c2"]);
      expect(q.map((r: { id: string }) => r.id)).toEqual([adv.id]);

      await run(["retract", "--indicator", "ip:203.0.113.9"]);
      await Bun.sleep(1100);
      await run(["checkpoint"]);
      expect((await json(["decisions", "list"])).decisions).toEqual([]);
      const after = await json(["decisions", "explain", "ip:203.0.113.9"]);
      expect(after.decision).toBeNull();
      expect(after.advice.map((a: { status: string }) => a.status)).toEqual(["retracted"]);
      expect(await json(["decisions", "export", "--format", "nftables", "--output", file])).toMatchObject({ entries: 0, changed: true });
    },
    { init: false },
  );
}, 60_000);
