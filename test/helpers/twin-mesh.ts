// A shared mesh with open admission for receive-side tests: a validator that receives, an
// edge (node A), the edge's twin (same identity, own ledger: it can fork A's chain), and
// mallory (node M, another admitted node). The edge and the twin have each written seq 1.
// Used by test/accept.test.ts and test/verify.test.ts.
import { expect } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Receiver } from "../../src/chain/accept.ts";
import { defaultConfig, type DsmConfig } from "../../src/config/config.ts";
import type { Ledger } from "../../src/ledger/ledger.ts";
import { DSMNode } from "../../src/node/node.ts";
import { type Genesis, makeLocalGenesis } from "../../src/protocol/genesis.ts";
import type { KeyCert } from "../../src/protocol/keycert.ts";
import type { Microblock } from "../../src/protocol/microblock.ts";
import type { Scratch } from "./scratch.ts";

export interface TwinMesh {
  config: DsmConfig;
  validator: DSMNode;
  edge: DSMNode;
  twin: DSMNode;
  mallory: DSMNode;
  malloryDir: string;
  /** The edge's seq 1. */
  edgeMb: Microblock;
  /** The twin's seq 1: a fork of edgeMb. */
  twinMb: Microblock;
}

/** Builds the mesh under the scratch root (call it in beforeAll); the nodes are closed with the scratch. */
export async function makeTwinMesh(scratch: Scratch): Promise<TwinMesh> {
  const { freshDir, opened } = scratch;
  const vDir = freshDir("validator");
  const eDir = freshDir("edge");
  const mDir = freshDir("mallory");
  for (const d of [vDir, eDir, mDir]) await DSMNode.init({ dataDir: d, config: defaultConfig() });
  const tDir = freshDir("twin");
  fs.cpSync(eDir, tDir, { recursive: true });
  fs.rmSync(path.join(tDir, "ledger.sqlite"), { force: true });
  const vCard = JSON.parse(fs.readFileSync(path.join(vDir, "card.json"), "utf8"));
  const genesis: Genesis = { ...makeLocalGenesis(vCard, Date.now()), name: "review-mesh", admission: { policy: "open" } };
  const genesisFile = path.join(scratch.root, "review-genesis.json");
  fs.writeFileSync(genesisFile, JSON.stringify(genesis));
  const config = defaultConfig();
  config.mesh.genesis = genesisFile;
  const open = (d: string) => {
    const n = DSMNode.open(d, config);
    opened.push(n);
    return n;
  };
  const mesh = { config, validator: open(vDir), edge: open(eDir), twin: open(tDir), mallory: open(mDir), malloryDir: mDir };
  const edgeMb = await mesh.edge.createMicroblock({ eventType: "test.event", payload: { from: "edge" } });
  const twinMb = await mesh.twin.createMicroblock({ eventType: "test.event", payload: { from: "twin" } });
  expect(mesh.twin.nodeId).toBe(mesh.edge.nodeId);
  expect(twinMb.seq).toBe(edgeMb.seq);
  return { ...mesh, edgeMb, twinMb };
}

/** The mesh validator's receiver, on the given ledger. */
export function meshReceiver(mesh: TwinMesh, ledger: Ledger): Receiver {
  return new Receiver(ledger, mesh.validator.policy, { maxClockSkewMs: 60_000 });
}

/** The key certificate a node stored for the key that signed mb. */
export function storedKeyCert(node: DSMNode, mb: Microblock): KeyCert {
  return JSON.parse(node.ledger.keyCert(mb.key)!);
}

/** The payload a node stored for mb. */
export function storedPayloadOf(node: DSMNode, mb: Microblock): unknown {
  return JSON.parse(node.ledger.payload(mb.payload_hash)!);
}
