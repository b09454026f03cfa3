// The TPM layer end to end against a real software TPM (swtpm on loopback, its own state
// dirs, stopped in afterAll): the FFI bindings (ffi/tss2.ts), the safe layer (src/tpm/tpm.ts),
// the TPM identity key (src/tpm/identity-key.ts), quote verification (src/tpm/attest.ts), a
// DSMNode with a TPM identity, and the compiled binary's `dsm init --tpm`. No mocks.
//
// Two TPMs: `tpmA` serves the in-process tests (the first four describes), `tpmB` the compiled
// binary ("the compiled binary with a TPM"), which stops it to check the failure a node without
// its TPM gives. Only one TPM context is open at a time on a TPM: every key or node is closed
// before the next opens.
// The e2e part needs dist/dsm: `bun run build` first (`bun run test` does).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { LIBRARIES } from "../ffi/tss2.ts";
import { parseCard } from "../src/protocol/card.ts";
import { nodeIdOf } from "../src/identity/identity-key.ts";
import { parseKeyCert } from "../src/protocol/keycert.ts";
import { importPublicKey, isLowS, verify as p256Verify } from "../src/crypto/p256.ts";
import { verifyBody } from "../src/crypto/signed.ts";
import { toHex } from "../src/encoding/hex.ts";
import { DSMNode } from "../src/node/node.ts";
import { parsePublicArea, pcrCompositeDigest, verifyQuote, type VerifyQuoteInput } from "../src/tpm/quote.ts";
import { TpmIdentityKey, withTpm } from "../src/tpm/tpm-key.ts";
import { eccSigningTemplate, pcrSelection, Tpm } from "../src/tpm/tpm.ts";
import { DSM, ndjson, requireBinary, TempNode } from "./helpers/e2e.ts";
import { cleanupTempDirs, tempDir, testConfig } from "./helpers/node.ts";
import { prng } from "./helpers/prng.ts";
import { freePort, startSwtpm, tpmError, type Swtpm } from "./helpers/swtpm.ts";

const PCRS = [0, 1, 2, 3, 4, 5, 6, 7];
const NODE_HANDLE = 0x81000100; // identity.tpm_handle's default, used by DSMNode.init
const SCRATCH_HANDLE = 0x8100012f; // create / force tests
const REPO = path.resolve(import.meta.dir, "..");

let tpmA: Swtpm;
let tpmB: Swtpm | null = null;
let tpmC: Swtpm | null = null;
let dataDir = "";
let nodeId = "";

const randomBytes = (n: number) => new Uint8Array(crypto.randomBytes(n));

beforeAll(async () => {
  tpmA = await startSwtpm(tempDir("dsm-swtpm-a-"));
  dataDir = path.join(tempDir("dsm-tpm-node-"), "node");
});

afterAll(async () => {
  await tpmA?.stop();
  await tpmB?.stop();
  await tpmC?.stop();
  cleanupTempDirs();
});

// ---------------------------------------------------------------------------------------------
describe("the identity key in the TPM signs like the software key", () => {
  test("sign() gives 64-byte low-S r||s verifying as ECDSA-SHA256 over the digest, with the public key alone", async () => {
    const key = TpmIdentityKey.create(tpmA.tcti, { handle: SCRATCH_HANDLE, explicit: true }).key;
    try {
      expect(key.kind).toBe("tpm");
      expect(key.publicKey.length).toBe(33);
      const pub = importPublicKey(key.publicKey);
      // 24 digests: a TPM returns high S for about half of them, so normalisation is exercised.
      for (let i = 0; i < 24; i++) {
        const digest = randomBytes(32);
        const sig = await key.sign(digest);
        expect(sig.length).toBe(64);
        expect(isLowS(sig)).toBe(true);
        expect(crypto.verify("sha256", digest, { key: pub, dsaEncoding: "ieee-p1363" }, sig)).toBe(true);
        expect(p256Verify(pub, digest, sig)).toBe(true);
        const other = Uint8Array.from(digest);
        other[i]! ^= 1;
        expect(p256Verify(pub, other, sig)).toBe(false);
      }
    } finally {
      key.close();
    }
  });

  test("DSMNode.init({ tpm }) writes a TPM card naming the AK, no identity.pem, and certifies its signing key with the TPM key", async () => {
    const r = await DSMNode.init({ dataDir, config: testConfig(), tpm: tpmA.tcti });
    expect(r.card.tpm).toBe(true);
    expect(fs.existsSync(path.join(dataDir, "identity.pem"))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, "identity.tpm.json"))).toBe(true);
    const marker = JSON.parse(fs.readFileSync(path.join(dataDir, "identity.tpm.json"), "utf8"));
    expect(marker).toEqual({ tcti: tpmA.tcti, handle: "0x81000100", identity_pub: r.card.identity_pub });

    // The card on disk parses in full (signature under identity_pub, BLS proof of possession).
    const card = parseCard(JSON.parse(fs.readFileSync(path.join(dataDir, "card.json"), "utf8")));
    expect(card.tpm).toBe(true);
    expect(card.node_id).toBe(r.card.node_id);

    const node = DSMNode.open(dataDir, testConfig());
    try {
      nodeId = node.nodeId;
      expect(node.nodeId).toBe(card.node_id);
      expect(node.identity).toBeInstanceOf(TpmIdentityKey);
      const key = node.identity as TpmIdentityKey;
      expect(key.persistentHandle).toBe(NODE_HANDLE);
      expect(toHex(key.publicKey)).toBe(card.identity_pub);
      expect(card.ak_pub).toBe(toHex(key.attestationKeySec1()));
      expect(card.ak_pub).toBe(toHex(parsePublicArea(key.attestationPublic()).sec1Compressed));

      const mb = await node.createMicroblock({ eventType: "tpm.test", payload: { n: 1 } });
      expect(mb.node_id).toBe(card.node_id);
      expect(mb.seq).toBe(1);
      const text = node.ledger.keyCert(mb.key);
      expect(text).not.toBeNull();
      const raw = JSON.parse(text!);
      const cert = parseKeyCert(raw); // node_id = hash(identity_pub), sig and signing_pop verify
      expect(cert.identity_pub).toBe(card.identity_pub);
      expect(cert.node_id).toBe(card.node_id);
      expect(cert.first_seq).toBe(1);
      // Under the identity public key taken from the card, nothing else.
      const identityPub = Buffer.from(card.identity_pub, "hex");
      expect(verifyBody("keycert", cert, identityPub)).toBe(true);
      expect(verifyBody("keycert", { ...cert, first_seq: 2 }, identityPub)).toBe(false);
      expect(() => parseKeyCert({ ...raw, not_after: "2099-01-01T00:00:00.000Z" })).toThrow("signature does not verify");
    } finally {
      node.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("the key survives a process restart and a TPM restart", () => {
  test("another bun process opens the node from identity.tpm.json and signs with the same key", async () => {
    expect(nodeId).not.toBe("");
    const script = path.join(tempDir("dsm-tpm-child-"), "child.ts");
    fs.writeFileSync(
      script,
      [
        `import { DSMNode } from ${JSON.stringify(path.join(REPO, "src/node/node.ts"))};`,
        `import { defaultConfig } from ${JSON.stringify(path.join(REPO, "src/config/config.ts"))};`,
        `const node = DSMNode.open(process.argv[2]!, defaultConfig());`,
        `const mb = await node.createMicroblock({ eventType: "tpm.child", payload: { from: "child" } });`,
        `console.log(JSON.stringify({ node_id: node.nodeId, kind: node.identity.kind, seq: mb.seq }));`,
        `node.close();`,
      ].join("\n"),
    );
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DSM_")) env[k] = v;
    const p = Bun.spawnSync([process.execPath, script, dataDir], { env, stdout: "pipe", stderr: "pipe" });
    expect(p.stderr.toString()).toBe("");
    expect(p.exitCode).toBe(0);
    expect(JSON.parse(p.stdout.toString())).toEqual({ node_id: nodeId, kind: "tpm", seq: 2 });
  });

  test("after swtpm stops and starts on the same state dir the node opens, signs, and keeps its node_id", async () => {
    await tpmA.stop();
    // No TPM: opening the node for writing fails and names the TCTI.
    expect(() => DSMNode.open(dataDir, testConfig())).toThrow(`cannot open TCTI "${tpmA.tcti}"`);
    await tpmA.start();

    const node = DSMNode.open(dataDir, testConfig());
    try {
      expect(node.nodeId).toBe(nodeId);
      const digest = randomBytes(32);
      const sig = await node.identity.sign(digest);
      expect(p256Verify(importPublicKey(node.identity.publicKey), digest, sig)).toBe(true);
      // A new process signer: a new delegated key, certified by the TPM key after the restart.
      const mb = await node.createMicroblock({ eventType: "tpm.after-restart", payload: { n: 3 } });
      expect(mb.seq).toBe(3);
      expect(mb.node_id).toBe(nodeId);
      const cert = parseKeyCert(JSON.parse(node.ledger.keyCert(mb.key)!));
      expect(nodeIdOf(Buffer.from(cert.identity_pub, "hex"))).toBe(nodeId);
      expect(cert.first_seq).toBe(3);
    } finally {
      node.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("quotes made through the FFI verify in pure TypeScript", () => {
  test("verifyQuote accepts a fresh quote and rejects every tampering, a wrong nonce, a wrong AK and a changed PCR 7", () => {
    const key = TpmIdentityKey.load(tpmA.tcti, NODE_HANDLE);
    try {
      const card = parseCard(JSON.parse(fs.readFileSync(path.join(dataDir, "card.json"), "utf8")), "node card", { checkPop: false });
      const akSec1 = Buffer.from(card.ak_pub!, "hex");
      expect(toHex(key.attestationKeySec1())).toBe(card.ak_pub!);

      const values = key.pcrRead(PCRS);
      expect(values.length).toBe(8);
      for (const v of values) expect(v.length).toBe(32);
      const accepted = toHex(pcrCompositeDigest(values));
      const nonce = randomBytes(32);
      const q = key.quote(nonce, PCRS);
      const base: VerifyQuoteInput = { ...q, nonce, pcrs: PCRS, acceptedDigests: [accepted], expectedAkSec1: akSec1 };
      const good = verifyQuote(base);
      expect(good).toMatchObject({ ok: true, pcrDigest: accepted });

      // Any single changed byte of the attest fails (seeded sample of positions, all bytes of the header).
      const rnd = prng(0x7e57);
      const positions = new Set<number>([0, 1, 2, 3, 4, 5, q.attest.length - 1]);
      while (positions.size < 48) positions.add(Math.floor(rnd() * q.attest.length));
      for (const pos of positions) {
        const attest = Uint8Array.from(q.attest);
        attest[pos]! ^= 1 + Math.floor(rnd() * 255);
        const r = verifyQuote({ ...base, attest });
        expect(r.ok, `attest byte ${pos} changed`).toBe(false);
      }
      // The signature alone changed fails too.
      const signature = Uint8Array.from(q.signature);
      signature[signature.length - 1]! ^= 0x01;
      expect(verifyQuote({ ...base, signature }).ok).toBe(false);

      expect(verifyQuote({ ...base, nonce: randomBytes(32) })).toMatchObject({ ok: false, check: "nonce" });
      expect(verifyQuote({ ...base, expectedAkSec1: key.publicKey })).toMatchObject({ ok: false, check: "ak-mismatch" });

      // PCR 7 moves: a new quote no longer matches the accepted digest, only the new one.
      withTpm(key.tcti, (tpm) => tpm.pcrExtend(7, randomBytes(32)));
      const after = key.pcrRead(PCRS);
      expect(toHex(after[7]!)).not.toBe(toHex(values[7]!));
      for (let i = 0; i < 7; i++) expect(toHex(after[i]!)).toBe(toHex(values[i]!));
      const nonce2 = randomBytes(32);
      const q2 = key.quote(nonce2, PCRS);
      const stale = verifyQuote({ ...q2, nonce: nonce2, pcrs: PCRS, acceptedDigests: [accepted], expectedAkSec1: akSec1 });
      expect(stale).toMatchObject({ ok: false, check: "pcr-digest" });
      const fresh = verifyQuote({ ...q2, nonce: nonce2, pcrs: PCRS, acceptedDigests: [toHex(pcrCompositeDigest(after))], expectedAkSec1: akSec1 });
      expect(fresh.ok).toBe(true);
    } finally {
      key.close();
    }
  });

  test("the wire helpers match what the TPM accepts and returns", () => {
    expect(toHex(pcrSelection(PCRS))).toBe("00000001000b03ff0000");
    expect(() => pcrSelection([24])).toThrow("PCR index 24 is not 0-23");
    const tpm = Tpm.open(tpmA.tcti);
    try {
      const made = tpm.createPrimary("endorsement", eccSigningTemplate(true));
      try {
        const pub = parsePublicArea(made.publicArea);
        expect(pub.restricted && pub.sign && pub.fixedTPM && !pub.decrypt).toBe(true);
        expect(toHex(tpm.readPublic(made.handle))).toBe(toHex(made.publicArea));
      } finally {
        tpm.flush(made.handle);
      }
      expect(() => tpm.pcrExtend(7, new Uint8Array(31))).toThrow("digest must be 32 bytes");
    } finally {
      tpm.close();
    }
    expect(() => tpm.pcrRead([0])).toThrow("TPM context is closed");
  });
});

// ---------------------------------------------------------------------------------------------
describe("clear errors", () => {
  test("missing tpm2-tss library: names the library and what to install", () => {
    const libraries = { ...LIBRARIES, esys: "libtss2-esys-missing.so.0" };
    const e = tpmError(() => Tpm.open(tpmA.tcti, { libraries }));
    expect(e.message).toContain("the TPM library libtss2-esys-missing.so.0 is not installed");
    expect(e.message).toContain("apt-get install libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0 libtss2-rc0");
    expect(e.message).not.toContain("\n");
  });

  test("TPM not reachable: nothing listening, or a peer that hangs up, names the TCTI", async () => {
    const tcti = `swtpm:host=127.0.0.1,port=${await freePort()}`;
    const e = tpmError(() => Tpm.open(tcti));
    expect(e.message).toContain(`cannot open TCTI "${tcti}"`);
    expect(e.message).toContain("IO failure");
    expect(e.rc).toBe(0xa000a);
    expect(e.message).not.toContain("\n");

    // Something listens but is no TPM: it closes every connection. The server runs in a child
    // process, because FFI calls block this process's event loop.
    const port = await freePort();
    const server = Bun.spawn(
      [process.execPath, "-e", `for (const p of [${port}, ${port + 1}]) Bun.listen({ hostname: "127.0.0.1", port: p, socket: { open(s) { s.end(); }, data() {} } }); console.log("up");`],
      { stdout: "pipe", stderr: "ignore" },
    );
    try {
      await server.stdout.getReader().read();
      const hangUp = `swtpm:host=127.0.0.1,port=${port}`;
      const e2 = tpmError(() => Tpm.open(hangUp));
      expect(e2.message).toContain(`TPM at "${hangUp}" is not reachable`);
      expect(e2.message).toContain("IO failure");
    } finally {
      server.kill();
      await server.exited;
    }
  });

  test("empty persistent handle: says it is empty and how to create the key", () => {
    const e = tpmError(() => TpmIdentityKey.load(tpmA.tcti, 0x81000141));
    expect(e.message).toContain("TPM handle 0x81000141 is empty");
    expect(e.message).toContain("dsm init --tpm");
    expect(e.rc! & 0xfff).toBe(0x18b);
    expect(tpmError(() => TpmIdentityKey.load(tpmA.tcti, 0x80000001)).message).toContain("is not a persistent handle");
  });

  test("wrong TCTI strings: an unknown TCTI and malformed ones", () => {
    const unknown = tpmError(() => Tpm.open("nosuchtcti:x"));
    expect(unknown.message).toContain('cannot open TCTI "nosuchtcti:x"');
    expect(unknown.message).toContain("check identity.tcti");
    const malformed = tpmError(() => Tpm.open("swtpm host=127.0.0.1"));
    expect(malformed.message).toBe('TCTI "swtpm host=127.0.0.1" is not of the form name[:config], e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321');
    const badPort = tpmError(() => Tpm.open("swtpm:host=127.0.0.1,port=notaport"));
    expect(badPort.message).toContain('cannot open TCTI "swtpm:host=127.0.0.1,port=notaport"');
    expect(badPort.message).toContain("bad value");
  });

  test("create on an occupied handle: a key this data dir did not make is never replaced, even with force; its own key is, with force", async () => {
    // "the identity key in the TPM signs like the software key" left a key at SCRATCH_HANDLE, its node one at NODE_HANDLE.
    const before = TpmIdentityKey.load(tpmA.tcti, SCRATCH_HANDLE);
    const oldPub = toHex(before.publicKey);
    before.close();
    const held = () => withTpm(tpmA.tcti, (tpm) => tpm.persistentHandles());
    const handlesBefore = held();
    expect(handlesBefore).toEqual([NODE_HANDLE, SCRATCH_HANDLE]);

    // Named handle, someone else's key: refused with or without force, a free handle suggested.
    for (const force of [false, true]) {
      const e = tpmError(() => TpmIdentityKey.create(tpmA.tcti, { handle: SCRATCH_HANDLE, explicit: true, force }));
      expect(e.message).toContain("TPM handle 0x8100012f holds a key this data dir did not create");
      expect(e.message).toContain("left alone, even with --force");
      expect(e.message).toContain("--tpm-handle 0x81000101 (or --tpm-handle auto)");
    }
    // Recorded by this data dir at that handle, but the key there is not the recorded one.
    const wrongOwn = { handle: SCRATCH_HANDLE, publicKey: `02${"11".repeat(32)}` };
    const notOurs = tpmError(() => TpmIdentityKey.create(tpmA.tcti, { handle: SCRATCH_HANDLE, explicit: true, force: true, own: wrongOwn }));
    expect(notOurs.message).toContain("not the one this data dir recorded in identity.tpm.json");
    expect(held()).toEqual(handlesBefore);
    const still = TpmIdentityKey.load(tpmA.tcti, SCRATCH_HANDLE);
    expect(toHex(still.publicKey)).toBe(oldPub);
    still.close();

    // Its own key, without force: refused too (dsm init says --force first).
    const own = { handle: SCRATCH_HANDLE, publicKey: oldPub };
    expect(tpmError(() => TpmIdentityKey.create(tpmA.tcti, { handle: SCRATCH_HANDLE, explicit: true, own })).message).toContain("holds this node's identity key; --force replaces it");

    // Its own key, with force: replaced in place by a new one.
    const replaced = TpmIdentityKey.create(tpmA.tcti, { handle: SCRATCH_HANDLE, explicit: true, force: true, own });
    expect(replaced).toMatchObject({ skipped: null, replaced: true, released: null });
    expect(replaced.key.persistentHandle).toBe(SCRATCH_HANDLE);
    const newPub = toHex(replaced.key.publicKey);
    const reloaded = TpmIdentityKey.load(tpmA.tcti, SCRATCH_HANDLE);
    try {
      expect(toHex(reloaded.publicKey)).toBe(newPub);
      const digest = randomBytes(32);
      expect(p256Verify(importPublicKey(reloaded.publicKey), digest, await reloaded.sign(digest))).toBe(true);
    } finally {
      reloaded.close();
    }
    // "--force gives the node a new identity": a key re-derived from the same template and
    // owner seed would be the old identity again.
    expect(newPub).not.toBe(oldPub);
    expect(held()).toEqual(handlesBefore);

    // The default handle (not named) taken: the first free one instead, and said so.
    const moved = TpmIdentityKey.create(tpmA.tcti, { handle: NODE_HANDLE });
    expect(moved).toMatchObject({ skipped: NODE_HANDLE, replaced: false, released: null });
    expect(moved.key.persistentHandle).toBe(0x81000101);
    // "auto": the first free one, or with force its own key's handle, replaced in place.
    const auto = TpmIdentityKey.create(tpmA.tcti, { handle: "auto" });
    expect(auto).toMatchObject({ skipped: null, replaced: false, released: null });
    expect(auto.key.persistentHandle).toBe(0x81000102);
    const autoOwn = TpmIdentityKey.create(tpmA.tcti, { handle: "auto", force: true, own: { handle: 0x81000101, publicKey: toHex(moved.key.publicKey) } });
    expect(autoOwn).toMatchObject({ skipped: null, replaced: true, released: null });
    expect(autoOwn.key.persistentHandle).toBe(0x81000101);
    // With force to a new handle, its own key elsewhere is evicted: it is nobody's identity now.
    const elsewhere = TpmIdentityKey.create(tpmA.tcti, { handle: 0x81000104, explicit: true, force: true, own: { handle: 0x81000101, publicKey: toHex(autoOwn.key.publicKey) } });
    expect(elsewhere).toMatchObject({ skipped: null, replaced: false, released: 0x81000101 });
    expect(held()).toEqual([NODE_HANDLE, 0x81000102, 0x81000104, SCRATCH_HANDLE]);
    // The ranges the TCG reserves (storage primaries and the SRK, endorsement keys and the EK,
    // the platform): never a new key there, named or not; the error points to the owner range.
    for (const [h, why] of [[0x81000001, /storage primary keys/], [0x81010001, /endorsement range/], [0x81800000, /platform range/]] as const) {
      expect(() => TpmIdentityKey.create(tpmA.tcti, { handle: h, explicit: true })).toThrow(why);
      expect(() => TpmIdentityKey.create(tpmA.tcti, { handle: h, explicit: true })).toThrow(/--tpm-handle 0x810001\w\w \(or --tpm-handle auto\)/);
    }
    expect(held()).toEqual([NODE_HANDLE, 0x81000102, 0x81000104, SCRATCH_HANDLE]);
    // The node of "the identity key in the TPM signs like the software key" still has its key, and it still signs.
    const node = DSMNode.open(dataDir, testConfig());
    try {
      expect(node.nodeId).toBe(nodeId);
      expect((await node.createMicroblock({ eventType: "tpm.neighbours", payload: { n: 4 } })).node_id).toBe(nodeId);
    } finally {
      node.close();
    }
    withTpm(tpmA.tcti, (tpm) => {
      for (const h of [0x81000102, 0x81000104]) tpm.persist(tpm.loadPersistent(h), h);
    });
    expect(held()).toEqual(handlesBefore);
  });

  test("persistentHandles lists what tpm2_getcap handles-persistent lists", () => {
    const ours = withTpm(tpmA.tcti, (tpm) => tpm.persistentHandles());
    const p = Bun.spawnSync(["tpm2_getcap", "handles-persistent"], { env: { ...process.env, TPM2TOOLS_TCTI: tpmA.tcti }, stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode).toBe(0);
    const theirs = [...p.stdout.toString().matchAll(/0x[0-9a-fA-F]{8}/g)].map((m) => Number.parseInt(m[0], 16));
    expect(ours).toEqual(theirs);
    expect(ours).toEqual([NODE_HANDLE, SCRATCH_HANDLE]);
  });
});

// ---------------------------------------------------------------------------------------------
describe("the compiled binary with a TPM", () => {
  test("dsm init --tpm, status, ingest, verify; emit without the TPM fails in one line naming the TCTI", async () => {
    requireBinary();
    tpmB = await startSwtpm(tempDir("dsm-swtpm-b-"));
    const node = new TempNode();
    try {
      const d = node.dataDir;
      const init = await node.ok(["init", "--tpm", tpmB.tcti, "--data-dir", d, "--json"]);
      const initOut = JSON.parse(init.stdout);
      expect(initOut.key_kind).toBe("tpm");
      expect(init.stderr).not.toContain("SOFTWARE");
      expect(fs.existsSync(path.join(d, "identity.pem"))).toBe(false);
      const card = parseCard(JSON.parse(fs.readFileSync(path.join(d, "card.json"), "utf8")));
      expect(card.tpm).toBe(true);
      expect(card.node_id).toBe(initOut.node_id);

      const status = JSON.parse((await node.ok(["status", "--json", "--data-dir", d])).stdout);
      expect(status).toMatchObject({ node_id: initOut.node_id, key_kind: "tpm", tpm: true });

      const lines = [1, 2, 3].map((i) => JSON.stringify({ event: "probe", n: i })).join("\n") + "\n";
      const ingest = await node.run(["ingest", "--json", "--data-dir", d], { stdin: lines });
      expect(ingest.code).toBe(0);
      expect(ingest.errLines).toEqual(["dsm ingest: 3 lines: 3 stored, 0 rejected, 0 empty, seq 1..3"]);
      const acks = ndjson<{ line: number; seq?: number; id?: string }>(ingest.stdout);
      expect(acks.map((a) => a.seq)).toEqual([1, 2, 3]);
      const after = JSON.parse((await node.ok(["status", "--json", "--data-dir", d])).stdout);
      expect(after.head.seq).toBe(3);
      expect(after.ledger.microblocks).toBe(3);

      const verify = await node.run(["verify", "--data-dir", d]);
      expect(verify.code).toBe(0);
      expect(verify.stdout).toStartWith("OK");

      await tpmB.stop();
      const emit = await node.run(["emit", "--data-dir", d, "--event-type", "tpm.gone", "--payload", '{"a":1}']);
      expect(emit.code).toBe(1);
      expect(emit.stdout).toBe("");
      expect(emit.errLines.length).toBe(1);
      expect(emit.errLines[0]).toStartWith("dsm emit: ");
      expect(emit.errLines[0]).toContain(`"${tpmB.tcti}"`);
      expect(emit.errLines[0]).toContain("IO failure");

      // Reading needs no TPM: status and verify still work with the TPM gone.
      expect((await node.run(["verify", "--data-dir", d])).code).toBe(0);
      expect(JSON.parse((await node.ok(["status", "--json", "--data-dir", d])).stdout).head.seq).toBe(3);
      expect(DSM).toEndWith("dist/dsm");
    } finally {
      node.cleanup();
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("two data dirs on one TPM (the compiled binary)", () => {
  test("init --force never evicts the other node's key; a free handle is found or suggested; --force on a node replaces its own key", async () => {
    requireBinary();
    tpmC = await startSwtpm(tempDir("dsm-swtpm-c-"));
    const tcti = tpmC.tcti;
    const held = () => withTpm(tcti, (tpm) => tpm.persistentHandles());
    const a = new TempNode();
    const b = new TempNode();
    const c = new TempNode();
    type Init = { node_id: string; tpm_handle: string; tpm_handle_skipped: string | null; tpm_key_replaced: boolean; tpm_handle_released: string | null };
    const init = async (n: TempNode, args: string[]) => JSON.parse((await n.ok(["init", "--tpm", tcti, "--json", ...args])).stdout) as Init;
    const emitAndVerify = async (n: TempNode, k: number) => {
      const emit = await n.run(["emit", "--event-type", "tpm.neighbours", "--payload", JSON.stringify({ k })]);
      expect(emit.code).toBe(0);
      const verify = await n.run(["verify"]);
      expect(verify.code).toBe(0);
      expect(verify.stdout).toStartWith("OK");
    };
    try {
      const initA = await init(a, []);
      expect(initA).toMatchObject({ tpm_handle: "0x81000100", tpm_handle_skipped: null, tpm_key_replaced: false, tpm_handle_released: null });
      await emitAndVerify(a, 1);

      // B names A's handle, with --force: refused, exit 1, one line suggesting a free handle.
      for (const force of [["--force"], []]) {
        const refused = await b.run(["init", "--tpm", tcti, "--tpm-handle", "0x81000100", ...force]);
        expect(refused.code).toBe(1);
        expect(refused.stdout).toBe("");
        expect(refused.errLines).toHaveLength(1);
        expect(refused.errLines[0]).toStartWith("dsm init: TPM handle 0x81000100 holds a key this data dir did not create");
        expect(refused.errLines[0]).toContain("--tpm-handle 0x81000101 (or --tpm-handle auto)");
      }
      expect(held()).toEqual([0x81000100]);
      // A's key is still there, still A's: A signs and verifies.
      const status = JSON.parse((await a.ok(["status", "--json"])).stdout) as { node_id: string };
      expect(status.node_id).toBe(initA.node_id);
      await emitAndVerify(a, 2);

      // B without --tpm-handle (even with --force): the default is taken, the first free handle is used and said.
      const initB = await b.ok(["init", "--tpm", tcti, "--force"]);
      expect(initB.stdout).toContain("identity  TPM key at handle 0x81000101");
      expect(initB.stdout).toContain("note      TPM handle 0x81000100 holds another key (left alone): this node's key is at the free handle 0x81000101");
      expect(JSON.parse(fs.readFileSync(path.join(b.dataDir, "identity.tpm.json"), "utf8")).handle).toBe("0x81000101");
      await emitAndVerify(b, 1);
      await emitAndVerify(a, 3);
      // identity.tpm_handle other than the default names a handle, as the flag does: B's, refused.
      const viaConfig = await c.run(["init", "--tpm", tcti], { env: { DSM_IDENTITY_TPM_HANDLE: "0x81000101" } });
      expect(viaConfig.code).toBe(1);
      expect(viaConfig.errLines[0]).toContain("TPM handle 0x81000101 holds a key this data dir did not create");
      expect(viaConfig.errLines[0]).toContain("--tpm-handle 0x81000102");
      // --tpm-handle auto: the first free one.
      const initC = await init(c, ["--tpm-handle", "auto"]);
      expect(initC).toMatchObject({ tpm_handle: "0x81000102", tpm_handle_skipped: null });
      // With --force a data dir's own key stays where it is, whatever the config says.
      const reC = await init(c, ["--force"]);
      expect(reC).toMatchObject({ tpm_handle: "0x81000102", tpm_key_replaced: true });
      expect(held()).toEqual([0x81000100, 0x81000101, 0x81000102]);

      // --force on A itself: A's own key, recognised by its public key, replaced at its handle.
      const reA = await init(a, ["--force"]);
      expect(reA).toMatchObject({ tpm_handle: "0x81000100", tpm_key_replaced: true, tpm_handle_skipped: null, tpm_handle_released: null });
      expect(reA.node_id).not.toBe(initA.node_id);
      await emitAndVerify(a, 4);
      await emitAndVerify(b, 2);
      // --force on A onto B's handle: B's key, refused. Onto a free one: A moves, its old key is evicted.
      const ontoB = await a.run(["init", "--tpm", tcti, "--force", "--tpm-handle", "0x81000101"]);
      expect(ontoB.code).toBe(1);
      expect(ontoB.errLines[0]).toContain("holds a key this data dir did not create");
      const moved = await init(a, ["--force", "--tpm-handle", "0x8100010f"]);
      expect(moved).toMatchObject({ tpm_handle: "0x8100010f", tpm_key_replaced: false, tpm_handle_released: "0x81000100" });
      expect(held()).toEqual([0x81000101, 0x81000102, 0x8100010f]);
      await emitAndVerify(a, 5);
      await emitAndVerify(b, 3);
      // A bad --tpm-handle, or one without --tpm.
      expect((await c.run(["init", "--tpm", tcti, "--force", "--tpm-handle", "0x80000001"])).errLines[0]).toContain("--tpm-handle must be a persistent handle");
      expect((await c.run(["init", "--force", "--tpm-handle", "auto"])).errLines[0]).toContain("--tpm-handle needs --tpm TCTI");
    } finally {
      a.cleanup();
      b.cleanup();
      c.cleanup();
    }
  }, 60_000);
});
