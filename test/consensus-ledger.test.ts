// Four validators on real data dirs (real ledgers, real BLS keys from dsm init, a genesis
// built from their cards) agree on a checkpoint through the consensus engine over an
// in-process network with the real clock; an edge's event is then proven to a light client
// by a bundle whose certificate carries a quorum, checked by the compiled binary too.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Receiver } from "../src/chain/accept.ts";
import { ConsensusEngine, type EngineEvent } from "../src/consensus/engine.ts";
import { DSMValidator } from "../src/node/validator.ts";
import type { ConsensusMessage } from "../src/consensus/ports.ts";
import { signerIndices } from "../src/protocol/validator-set.ts";
import { createLibp2pKey } from "../src/identity/libp2p-key.ts";
import type { Microblock } from "../src/protocol/microblock.ts";
import type { FinalityCertificate } from "../src/protocol/certificate.ts";
import { inclusionBundle } from "../src/log/bundle.ts";
import { verifyBundle } from "../src/log/verify-bundle.ts";
import { checkpointDigestHex } from "../src/protocol/checkpoint.ts";
import { buildGenesis, type Genesis } from "../src/protocol/genesis.ts";
import { DSMNode } from "../src/node/node.ts";
import { DSM, requireBinary } from "./helpers/e2e.ts";
import { cleanupTempDirs, closeQuietly, tempDir, testConfig } from "./helpers/node.ts";
import { SURICATA_ALERT } from "./helpers/fixtures.ts";

const N = 4;
let root: string;
let genesis: Genesis;
let genesisFile: string;
const validators: DSMNode[] = [];
let edge: DSMNode;
let events: Microblock[] = [];

beforeAll(async () => {
  root = tempDir();
  const config = testConfig();
  const cards = [];
  for (let i = 0; i < N; i++) {
    const r = await DSMNode.init({ dataDir: path.join(root, `v${i}`), config, role: "validator" });
    cards.push(r.card);
  }
  await DSMNode.init({ dataDir: path.join(root, "edge"), config, role: "edge" });
  // 1 s epochs that started a minute ago; validators in card order.
  genesis = buildGenesis({ name: "four", genesisTimeMs: Math.floor(Date.now() / 1000) * 1000 - 60_000, epochDurationS: 1, validators: cards, admission: "open" });
  genesisFile = path.join(root, "genesis.json");
  fs.writeFileSync(genesisFile, JSON.stringify(genesis));
  const joined = testConfig((c) => {
    c.mesh.genesis = genesisFile;
    c.consensus.signature_timeout_s = 2;
  });
  for (let i = 0; i < N; i++) validators.push(DSMNode.open(path.join(root, `v${i}`), joined));
  edge = DSMNode.open(path.join(root, "edge"), joined);
  for (let k = 0; k < 5; k++) events.push(await edge.createMicroblock({ eventType: "alert", payload: { ...SURICATA_ALERT, k } }));
  // Every validator receives the edge's microblocks (what gossip will do in the daemon).
  for (const v of validators) {
    const rx = new Receiver(v.ledger, v.policy, { maxClockSkewMs: 60_000 });
    for (const mb of events) {
      rx.acceptKeyCert(JSON.parse(edge.ledger.keyCert(mb.key)!));
      expect(rx.acceptMicroblock(mb, JSON.parse(edge.ledger.payload(mb.payload_hash)!)).status).toBe("stored");
    }
  }
});

afterAll(() => {
  for (const v of validators) closeQuietly(v);
  if (edge) closeQuietly(edge);
  cleanupTempDirs();
});

describe("four validators over real ledgers", () => {
  const certs = new Map<number, FinalityCertificate>();

  test("one epoch is finalized by all four, each certificate a quorum over the same body", async () => {
    const vals = validators.map((node) => DSMValidator.open(node));
    const engines: ConsensusEngine[] = [];
    const log: { i: number; e: EngineEvent }[] = [];
    const deliver = (from: number, msg: ConsensusMessage) => {
      const wire = JSON.stringify(msg);
      for (let to = 0; to < N; to++) if (to !== from) setTimeout(() => engines[to]!.receive(JSON.parse(wire)), Math.random() * 20);
    };
    const done = vals.map(
      (v, i) =>
        new Promise<FinalityCertificate>((resolve) => {
          engines.push(
            v.engine({
              transport: {
                broadcast: (m) => deliver(i, m),
                requestCertificates: (after) => {
                  for (const c of vals[(i + 1) % N]!.builder.since(after)) setTimeout(() => engines[i]!.receive(c), 5);
                },
                fetchMicroblocks: () => {},
              },
              onEvent: (e) => {
                log.push({ i, e });
                if (e.kind === "finalized") resolve(e.certificate);
              },
            }),
          );
        }),
    );
    for (const e of engines) e.start();
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no finality in 20 s: ${JSON.stringify(log.slice(-8))}`)), 20_000));
    const got = await Promise.race([Promise.all(done), timeout]);
    for (const e of engines) e.stop();
    for (const v of vals) v.close();
    const digests = new Set(got.map((c) => checkpointDigestHex(c.checkpoint)));
    expect(digests.size).toBe(1);
    got.forEach((c, i) => {
      certs.set(i, c);
      expect(signerIndices(c.signers).length).toBeGreaterThanOrEqual(3);
      expect(c.checkpoint.tree_size).toBe(events.length);
      // Stored in each validator's own ledger, with the log appended.
      const stored = vals[i]!.builder.byEpoch(c.checkpoint.epoch)!;
      expect(checkpointDigestHex(stored.checkpoint)).toBe(checkpointDigestHex(c.checkpoint));
      expect(vals[i]!.builder.tree.size()).toBe(events.length);
      // The one signature per epoch is on disk.
      expect(vals[i]!.store.ofHeight(c.checkpoint.prev).filter((m) => m.type === "S").length).toBe(1);
    });
    expect(log.some(({ e }) => e.kind === "rejected" || e.kind === "refused" || e.kind === "conflict")).toBe(false);
  }, 30_000);

  test("an inclusion proof for the edge's event verifies against the genesis alone, in the library and the binary", async () => {
    requireBinary();
    const node = validators[2]!;
    const v = DSMValidator.open(node);
    const bundle = inclusionBundle(node.ledger, v.builder, events[3]!.id);
    v.close();
    const summary = verifyBundle(JSON.parse(JSON.stringify(bundle)), genesis);
    expect(summary.type).toBe("inclusion");
    if (summary.type === "inclusion") {
      expect(summary.quorum).toBe(3);
      expect(summary.signed).toBeGreaterThanOrEqual(3);
    }
    const file = path.join(root, "bundle.json");
    fs.writeFileSync(file, JSON.stringify(bundle));
    const ok = Bun.spawnSync([DSM, "verify-proof", file, "--genesis", genesisFile], { env: { ...process.env, HOME: root } });
    expect(ok.exitCode).toBe(0);
    // Below the quorum: keep one signer's bit only. The aggregate no longer matches, and the count is short.
    const first = signerIndices(bundle.certificate.signers)[0]!;
    const bits = new Uint8Array(1);
    bits[0] = 0x80 >> first;
    fs.writeFileSync(file, JSON.stringify({ ...bundle, certificate: { ...bundle.certificate, signers: Buffer.from(bits).toString("hex") } }));
    const bad = Bun.spawnSync([DSM, "verify-proof", file, "--genesis", genesisFile], { env: { ...process.env, HOME: root } });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain("1 of 4 validators signed, quorum is 3");
  });

  test("a validator whose libp2p key is not the one its genesis card names cannot run", () => {
    const file = path.join(root, "v2", "libp2p.key");
    const saved = fs.readFileSync(file);
    try {
      fs.rmSync(file);
      createLibp2pKey(file, false);
      expect(() => DSMValidator.open(validators[2]!)).toThrow(/libp2p\.key: it is the key of peer 12D3KooW\w+, not of this validator's peer_id in the validator set/);
    } finally {
      fs.writeFileSync(file, saved, { mode: 0o600 });
    }
    DSMValidator.open(validators[2]!).close();
  });

  test("dsm checkpoint on a validator of a four-validator mesh refuses to sign alone", () => {
    requireBinary();
    const r = Bun.spawnSync([DSM, "checkpoint", "--data-dir", path.join(root, "v1")], { env: { ...process.env, HOME: root, DSM_MESH_GENESIS: genesisFile } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toMatch(/4 validators: a checkpoint is final only with 3 of their signatures.*start the daemon \(dsm run\)/);
  });
});
