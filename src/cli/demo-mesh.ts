// The mesh half of `dsm demo`: four validators and two edges, each `dsm run` in its own
// process on 127.0.0.1, the bundled samples ingested at the edges, one epoch finalized by a
// quorum, and an inclusion proof checked offline against the genesis alone.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { DEFAULT_CONFIG_TEXT, parseConfig } from "../config/config.ts";
import { IngestPipeline } from "../ingest/pipeline.ts";
import { verifyBundle } from "../log/verify-bundle.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { MeshClient } from "../mesh/client.ts";
import { buildGenesis } from "../protocol/genesis.ts";
import { DSMNode } from "../node/node.ts";
import { envWithoutDsm } from "../runtime/env.ts";

export interface MeshDemoResult {
  validators: number;
  edges: number;
  events: number;
  epoch: number;
  tree_size: number;
  signers: string;
  /** Every validator holds a certificate of the same checkpoint body. */
  identical_everywhere: boolean;
  /** ...and aggregated the same quorum's signatures (often, not necessarily). */
  same_signers_everywhere: boolean;
  finalized_after_ms: number;
  proof: { id: string; verified: boolean; message: string };
}

/** How to start this same dsm: the compiled binary, or bun running bin/dsm.ts. */
function selfCommand(): string[] {
  const script = process.argv[1] ?? "";
  return script.startsWith("/$bunfs/") || script === "" || !fs.existsSync(script) ? [process.execPath] : [process.execPath, script];
}

export async function meshDemo(root: string, samples: { name: string; text: string }[], say: (line: string) => void): Promise<MeshDemoResult> {
  const config = parseConfig(DEFAULT_CONFIG_TEXT, "built-in defaults", {});
  const vDirs = [0, 1, 2, 3].map((i) => path.join(root, `validator-${i}`));
  const eDirs = [0, 1].map((i) => path.join(root, `edge-${i}`));
  const cards = [];
  for (const d of vDirs) cards.push((await DSMNode.init({ dataDir: d, config, role: "validator" })).card);
  // Short epochs so the demo finalizes in seconds; the default is 300 s.
  const genesis = buildGenesis({ name: "demo-mesh", genesisTimeMs: Math.floor(Date.now() / 1000) * 1000 - 1000, epochDurationS: 2, validators: cards, admission: "open" });
  const genesisFile = path.join(root, "genesis.json");
  fs.writeFileSync(genesisFile, JSON.stringify(genesis, null, 2));
  for (const d of eDirs) await DSMNode.init({ dataDir: d, config, role: "edge", genesisFile });
  say(`  mesh: 4 validators, 2 edges, 2 s epochs, genesis ${genesisFile}`);

  // The daemons stop by themselves if this process dies without stopping them (kill -9).
  const env = envWithoutDsm({ DSM_RUN_PARENT_PID: String(process.pid), DSM_MESH_GENESIS: genesisFile, DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "2" });
  const procs: Subprocess[] = [];
  const stopAll = async () => {
    for (const p of procs) p.kill("SIGTERM");
    await Promise.race([Promise.all(procs.map((p) => p.exited)), Bun.sleep(5000)]);
    for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
  };
  const onSignal = () => {
    for (const p of procs) p.kill("SIGKILL");
  };
  process.once("SIGINT", onSignal);
  try {
    const boot: string[] = [];
    for (const d of [...vDirs, ...eDirs]) {
      // Each daemon's log goes beside its data dir (kept with --keep).
      const log = fs.openSync(path.join(root, `${path.basename(d)}.log`), "w", 0o600);
      const p = Bun.spawn([...selfCommand(), "run", "--data-dir", d], { env: { ...env, DSM_GOSSIP_BOOTSTRAP_NODES: boot.join(",") }, stdout: "ignore", stderr: log });
      fs.closeSync(log);
      procs.push(p);
      const runJson = path.join(d, "run.json");
      for (let i = 0; i < 200 && !fs.existsSync(runJson); i++) {
        if (p.exitCode !== null) throw new Error(`dsm run in ${d} exited with ${p.exitCode}`);
        await Bun.sleep(50);
      }
      if (!fs.existsSync(runJson)) throw new Error(`dsm run in ${d} did not start`);
      const info = JSON.parse(fs.readFileSync(runJson, "utf8")) as { addrs: string[]; peer_id: string };
      boot.push(`${info.addrs[0]}/p2p/${info.peer_id}`);
    }
    say(`  started 6 dsm run processes on 127.0.0.1 (libp2p: TCP, Noise, Yamux, gossipsub)`);

    // Each edge ingests one of the samples, through the same path as dsm ingest.
    const edgeConfig = parseConfig(DEFAULT_CONFIG_TEXT, "built-in defaults", {});
    edgeConfig.mesh.genesis = genesisFile;
    let events = 0;
    let lastId = "";
    const started = Date.now();
    for (const [i, d] of eDirs.entries()) {
      const node = DSMNode.open(d, edgeConfig);
      try {
        const pipeline = new IngestPipeline(node, { format: "auto", maxLineBytes: edgeConfig.ingest.max_line_bytes, batchMaxEvents: 1000, batchMaxMs: 50, json: false, out: () => undefined, err: () => undefined });
        await pipeline.consume(new Response(samples[i % samples.length]!.text).body!, samples[i % samples.length]!.name);
        const stats = await pipeline.finish();
        events += stats.stored;
        lastId = node.ledger.head(node.mesh, node.nodeId)!.id;
        say(`  edge-${i} ingested ${stats.stored} events from ${samples[i % samples.length]!.name}`);
      } finally {
        node.close();
      }
    }

    const clients = vDirs.map((d) => MeshClient.forDataDir(d)!);
    let certs: FinalityCertificate[] = [];
    const until = Date.now() + 60_000;
    for (;;) {
      certs = await Promise.all(clients.map((c) => c.getCheckpoint().catch(() => null))).then((l) => l.filter((c): c is FinalityCertificate => c !== null));
      if (certs.length === clients.length && certs.every((c) => c.checkpoint.tree_size >= events)) break;
      if (Date.now() > until) throw new Error(`no quorum certificate over the ${events} events within 60 s`);
      await Bun.sleep(250);
    }
    const finalizedAfter = Date.now() - started;
    const first = certs[0]!;
    // What the validators agree on is the checkpoint; which quorum's signatures each one
    // aggregated may differ (two can finalize at once from different sets), and each
    // certificate proves the same checkpoint.
    const identical = certs.every((c) => JSON.stringify(c.checkpoint) === JSON.stringify(first.checkpoint));
    const sameSigners = certs.every((c) => c.signers === first.signers && c.agg_sig === first.agg_sig);
    say(`  epoch ${first.checkpoint.epoch} finalized by all 4 validators: tree_size ${first.checkpoint.tree_size}, signers bitfield ${first.signers}${identical ? ", the same checkpoint everywhere" : ""}${identical && sameSigners ? " (one certificate)" : ""}`);

    // A light client: the proof from one validator, checked against nothing but the genesis.
    const bundle = await clients[2]!.proof(lastId);
    let verified = false;
    let message: string;
    try {
      message = verifyBundle(JSON.parse(JSON.stringify(bundle)), genesis).message;
      verified = true;
    } catch (e) {
      message = (e as Error).message;
    }
    say(`  inclusion proof for edge-1's last event, checked offline against the genesis: ${verified ? "OK" : "FAILED"}: ${message}`);
    return {
      validators: 4,
      edges: 2,
      events,
      epoch: first.checkpoint.epoch,
      tree_size: first.checkpoint.tree_size,
      signers: first.signers,
      identical_everywhere: identical,
      same_signers_everywhere: sameSigners,
      finalized_after_ms: finalizedAfter,
      proof: { id: lastId, verified, message },
    };
  } finally {
    process.off("SIGINT", onSignal);
    await stopAll();
  }
}
