// A daemon whose bootstrap peer is not up yet when it starts (edges booting before their
// validator after a power cut) connects once the peer comes up, with no restart: MeshNet
// dials bootstrap peers that are not connected again every few seconds (src/mesh/p2p.ts).
// libp2p's keep-alive tag alone redials a connection that dropped, never a peer it has not
// reached. Run `bun run build` first.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { killDaemons, startDaemon } from "./helpers/daemons.ts";
import { freePort } from "./helpers/net.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();

afterAll(async () => {
  await killDaemons(procs);
  cleanupTempDirs();
});

describe("bootstrap peers", () => {
  test("an edge started before its validator connects to it once the validator is up", async () => {
    requireBinary();
    const root = tempDir();
    const env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0" });
    const ok = async (args: string[], extra: Record<string, string> = {}) => {
      const r = await runDsm(args, { ...env, ...extra });
      if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    };
    const V = path.join(root, "v");
    const E = path.join(root, "e");
    await ok(["init", "--data-dir", V, "--role", "validator"]);
    const card = JSON.parse(await ok(["card", "--data-dir", V, "--json"])) as { peer_id: string };
    fs.writeFileSync(path.join(root, "v.card"), JSON.stringify(card));
    const genesis = path.join(root, "g.json");
    await ok(["genesis", "--name", "boot", "--validator", path.join(root, "v.card"), "--admission", "open", "-o", genesis]);
    await ok(["init", "--data-dir", E, "--genesis", genesis, "--role", "edge"]);
    const port = await freePort();
    const validatorAddr = `/ip4/127.0.0.1/tcp/${port}/p2p/${card.peer_id}`;
    const meshEnv = { ...env, DSM_MESH_GENESIS: genesis };
    // The edge first, bootstrapped to an address where nothing listens yet.
    await startDaemon(E, meshEnv, [validatorAddr], procs, logs);
    await Bun.sleep(1500);
    await startDaemon(V, { ...meshEnv, DSM_GOSSIP_PORT: String(port) }, [], procs, logs);
    let peers: string[] = [];
    for (let i = 0; i < 60 && !peers.includes(card.peer_id); i++) {
      await Bun.sleep(250);
      const r = await runDsm(["peers", "--data-dir", E, "--json"], meshEnv);
      if (r.code === 0) peers = (JSON.parse(r.stdout) as { peers: string[] }).peers;
    }
    expect(peers, logs.get(E)).toContain(card.peer_id);
  }, 60_000);
});
