// Checkpoints built from a real ledger: the log holds exactly the selected microblocks in
// order, proofs from the stored tree verify, the certificate's BLS signature verifies,
// builds are idempotent and byte-identical across copies of the same ledger.
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultConfig } from "../src/config/config.ts";
import { blsVerify } from "../src/crypto/bls.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { fromHex, toHex } from "../src/encoding/hex.ts";
import { makeLocalGenesis } from "../src/protocol/genesis.ts";
import { DSMNode } from "../src/node/node.ts";
import { buildAlone } from "../src/consensus/alone.ts";
import { CheckpointBuilder } from "../src/log/builder.ts";
import { checkpointDigest, epochAt } from "../src/protocol/checkpoint.ts";
import { leafHash, rootOf, verifyConsistency, verifyInclusion } from "../src/log/merkle.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-cp-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function nodeWithShortEpochs(name: string) {
  const dir = path.join(root, name);
  await DSMNode.init({ dataDir: dir, config: defaultConfig() });
  const card = JSON.parse(fs.readFileSync(path.join(dir, "card.json"), "utf8"));
  // One-second epochs, starting a little in the past.
  const genesis = { ...makeLocalGenesis(card, Date.now() - 5_000), epoch_duration: 1 };
  const file = path.join(dir, "short-genesis.json");
  fs.writeFileSync(file, JSON.stringify(genesis));
  const config = defaultConfig();
  config.mesh.genesis = file;
  return { dir, config, card, blsSecret: new Uint8Array(fs.readFileSync(path.join(dir, "bls.key"))) };
}

const closeEpoch = () => Bun.sleep(1100);

test("two epochs: exact leaves, proofs, signature, idempotence, identical builds", async () => {
  const { dir, config, card, blsSecret } = await nodeWithShortEpochs("a");
  const node = DSMNode.open(dir, config);
  try {
    const first = [];
    for (let i = 0; i < 7; i++) first.push(await node.createMicroblock({ eventType: "test.event", payload: { i } }));
    const e1 = epochAt(node.genesis, Date.parse(first.at(-1)!.timestamp));
    await closeEpoch();

    // A byte copy of the data dir, to show a second build gives the same bytes.
    const copyDir = path.join(root, "a-copy");
    fs.cpSync(dir, copyDir, { recursive: true });

    const builder = new CheckpointBuilder(node.ledger, node.policy);
    const r1 = buildAlone(builder, e1, blsSecret, 0);
    expect(r1.status).toBe("created");
    if (r1.status !== "created") throw new Error("unreachable");
    const cp1 = r1.certificate.checkpoint;
    expect(cp1.tree_size).toBe(7);
    expect(cp1.ranges).toEqual({ [node.nodeId]: [1, 7] });
    const leaves = first.map((mb) => leafHash(fromHex(mb.id)));
    expect(cp1.root).toBe(toHex(rootOf(leaves)));
    expect(blsVerify(fromHex(card.bls_pub), checkpointDigest(cp1), fromHex(r1.certificate.agg_sig))).toBe(true);
    expect(r1.certificate.signers).toBe("80");
    for (let i = 0; i < 7; i++) {
      expect(builder.leafIndexOf(first[i]!.id)).toBe(i);
      verifyInclusion(leaves[i]!, i, 7, builder.tree.inclusionProof(i, 7), fromHex(cp1.root));
    }

    // Same epoch again: nothing changes.
    const again = buildAlone(builder, e1, blsSecret, 0);
    expect(again.status).toBe("exists");
    expect(builder.tree.size()).toBe(7);

    const copy = DSMNode.open(copyDir, config);
    try {
      const r1b = buildAlone(new CheckpointBuilder(copy.ledger, copy.policy), e1, blsSecret, 0);
      expect(r1b.status).toBe("created");
      expect(canonicalize((r1b as { certificate: unknown }).certificate)).toBe(canonicalize(r1.certificate));
    } finally {
      copy.close();
    }

    // A later epoch with nothing new: no checkpoint (an epoch may be skipped).
    expect(buildAlone(builder, e1 + 1, blsSecret, 0).status).toBe("nothing-new");

    const second = [];
    for (let i = 0; i < 5; i++) second.push(await node.createMicroblock({ eventType: "test.event", payload: { j: i } }));
    const e2 = epochAt(node.genesis, Date.parse(second.at(-1)!.timestamp));
    await closeEpoch();
    const r2 = buildAlone(builder, e2, blsSecret, 0);
    expect(r2.status).toBe("created");
    if (r2.status !== "created") throw new Error("unreachable");
    const cp2 = r2.certificate.checkpoint;
    expect(cp2.prev).toBe(toHex(checkpointDigest(cp1)));
    expect(cp2.tree_size).toBe(12);
    expect(cp2.ranges).toEqual({ [node.nodeId]: [8, 12] });
    second.forEach((mb, i) => expect(builder.leafIndexOf(mb.id)).toBe(7 + i));
    expect(cp2.root).toBe(toHex(rootOf([...leaves, ...second.map((mb) => leafHash(fromHex(mb.id)))])));
    verifyConsistency(7, 12, builder.tree.consistencyProof(7, 12), fromHex(cp1.root), fromHex(cp2.root));
    // An older epoch after a newer one exists: nothing new, never a fork.
    expect(buildAlone(builder, e1, blsSecret, 0).status).toBe("exists");
    expect(builder.latest()?.checkpoint.epoch).toBe(e2);
  } finally {
    node.close();
  }
}, 30_000);

test("microblocks after the epoch end wait for the next checkpoint", async () => {
  const { dir, config, blsSecret } = await nodeWithShortEpochs("b");
  const node = DSMNode.open(dir, config);
  try {
    const early = await node.createMicroblock({ eventType: "test.event", payload: { n: 1 } });
    const e = epochAt(node.genesis, Date.parse(early.timestamp));
    await closeEpoch();
    await node.createMicroblock({ eventType: "test.event", payload: { n: 2 } }); // in a later epoch
    const r = buildAlone(new CheckpointBuilder(node.ledger, node.policy), e, blsSecret, 0);
    expect(r.status).toBe("created");
    expect((r as { certificate: { checkpoint: { tree_size: number } } }).certificate.checkpoint.tree_size).toBe(1);
    expect(new CheckpointBuilder(node.ledger, node.policy).leafIndexOf(early.id)).toBe(0);
  } finally {
    node.close();
  }
}, 30_000);

test("a ledger holding part of the log keeps a certificate with leaf ids from elsewhere, only when they recompute and match what it holds", async () => {
  const { dir, config, blsSecret } = await nodeWithShortEpochs("leaves");
  const node = DSMNode.open(dir, config);
  const lightDir = path.join(root, "leaves-light");
  try {
    for (let i = 0; i < 7; i++) await node.createMicroblock({ eventType: "test.event", payload: { i } });
    // The copy holds seqs 1..7 of the chain; the full ledger goes on to 12.
    const outside = new Database(node.ledger.path);
    outside.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    outside.close();
    fs.cpSync(dir, lightDir, { recursive: true });
    const more = [];
    for (let i = 7; i < 12; i++) more.push(await node.createMicroblock({ eventType: "test.event", payload: { i } }));
    const e = epochAt(node.genesis, Date.parse(more.at(-1)!.timestamp));
    await closeEpoch();
    const full = new CheckpointBuilder(node.ledger, node.policy);
    const r = buildAlone(full, e, blsSecret, 0);
    if (r.status !== "created") throw new Error(`build: ${r.status}`);
    const cert = r.certificate;
    const ids = full.tree.idsIn(0, 12);
    expect(ids.map(toHex)).toEqual(Array.from({ length: 12 }, (_, i) => toHex(full.tree.idAt(i)!)));

    const light = DSMNode.open(lightDir, config);
    try {
      const lb = new CheckpointBuilder(light.ledger, light.policy);
      expect(() => lb.commitLeaves(cert, ids.slice(0, 11))).toThrow(/do not recompute/);
      const swapped = [...ids];
      [swapped[9], swapped[10]] = [swapped[10]!, swapped[9]!];
      expect(() => lb.commitLeaves(cert, swapped)).toThrow(/do not recompute/);
      // A body whose root does recompute from other ids, with a leaf where this ledger holds
      // another microblock: refused (a quorum could only sign it by forging this node's chain).
      const forged = [...ids];
      forged[3] = new Uint8Array(32).fill(7);
      const forgedBody = { ...cert.checkpoint, root: toHex(rootOf(forged.map((id) => leafHash(id)))) };
      expect(() => lb.commitLeaves({ ...cert, checkpoint: forgedBody }, forged)).toThrow(/is not the microblock this ledger holds/);
      expect(lb.latest()).toBeNull();
      expect(lb.tree.size()).toBe(0);

      lb.commitLeaves(cert, ids);
      expect(canonicalize(lb.latest())).toBe(canonicalize(cert));
      expect(toHex(lb.tree.root())).toBe(cert.checkpoint.root);
      lb.commitLeaves(cert, ids); // the same certificate again: a no-op
      expect(lb.tree.size()).toBe(12);
      // It proves the microblocks it holds; those it does not hold have no leaf index here.
      const held = light.ledger.bySeq(light.mesh, light.nodeId, 4)!;
      expect(lb.leafIndexOf(held.id)).toBe(3);
      verifyInclusion(leafHash(fromHex(held.id)), 3, 12, lb.tree.inclusionProof(3, 12), fromHex(cert.checkpoint.root));
      expect(lb.leafIndexOf(more[0]!.id)).toBeNull();
      expect(() => lb.commitLeaves({ ...cert, checkpoint: forgedBody }, forged)).toThrow(/already has a different finalized checkpoint/);
    } finally {
      light.close();
    }
  } finally {
    node.close();
  }
});

test("one certificate per epoch everywhere: a better one for the stored body replaces it (most signers, then bytes); a worse or foreign one does not", async () => {
  const { blsAggregateSignatures, blsSign } = await import("../src/crypto/bls.ts");
  const { buildGenesis } = await import("../src/protocol/genesis.ts");
  const { betterCertificate } = await import("../src/protocol/certificate.ts");
  const { signersBitfield } = await import("../src/protocol/validator-set.ts");
  const dirs: string[] = [];
  const cards: unknown[] = [];
  const secrets: Uint8Array[] = [];
  for (let i = 0; i < 4; i++) {
    const dir = path.join(root, `v4-${i}`);
    await DSMNode.init({ dataDir: dir, config: defaultConfig(), role: "validator" });
    dirs.push(dir);
    cards.push(JSON.parse(fs.readFileSync(path.join(dir, "card.json"), "utf8")));
    secrets.push(new Uint8Array(fs.readFileSync(path.join(dir, "bls.key"))));
  }
  const genesis = buildGenesis({ name: "four", validators: cards, epochDurationS: 1, genesisTimeMs: Math.floor(Date.now() / 1000) * 1000 - 5000 });
  const file = path.join(root, "four.json");
  fs.writeFileSync(file, JSON.stringify(genesis));
  const config = defaultConfig();
  config.mesh.genesis = file;
  const node = DSMNode.open(dirs[0]!, config);
  try {
    const mb = await node.createMicroblock({ eventType: "test.event", payload: { k: 1 } });
    await closeEpoch();
    const builder = new CheckpointBuilder(node.ledger, node.policy);
    const body = builder.propose(epochAt(node.genesis, Date.parse(mb.timestamp)))!;
    const sigs = secrets.map((sk) => blsSign(sk, checkpointDigest(body)));
    const cert = (who: number[]) => ({ v: 1 as const, type: "F" as const, checkpoint: body, signers: signersBitfield(who, 4), agg_sig: toHex(blsAggregateSignatures(who.map((i) => sigs[i]!))) });
    const three = cert([0, 1, 2]);
    const otherThree = cert([1, 2, 3]);
    const four = cert([0, 1, 2, 3]);
    builder.commit(three);
    // The rule: more signers first; among equals, the smaller JCS bytes.
    expect(betterCertificate(four, three)).toBe(true);
    expect(betterCertificate(three, four)).toBe(false);
    expect(betterCertificate(three, otherThree)).toBe(canonicalize(three) < canonicalize(otherThree));
    expect(betterCertificate(three, three)).toBe(false);
    const firstOfThree = betterCertificate(three, otherThree) ? three : otherThree;
    expect(builder.improveCertificate(otherThree)).toBe(firstOfThree === otherThree);
    expect(canonicalize(builder.byEpoch(body.epoch))).toBe(canonicalize(firstOfThree));
    expect(builder.improveCertificate(four)).toBe(true);
    expect(canonicalize(builder.latest())).toBe(canonicalize(four));
    // Nothing worse or for another body ever replaces it.
    expect(builder.improveCertificate(three)).toBe(false);
    expect(builder.improveCertificate({ ...four, checkpoint: { ...body, root: "00".repeat(32) } })).toBe(false);
    expect(canonicalize(builder.latest())).toBe(canonicalize(four));
    expect(builder.tree.size()).toBe(1);
  } finally {
    node.close();
  }
});
