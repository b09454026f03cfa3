// Identity: the software identity key, key certificates, node cards, the libp2p key, and the
// genesis / mesh policy built from cards. Real keys and files in a temp dir throughout.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { p256 } from "@noble/curves/nist.js";
import { canonicalize } from "../src/encoding/jcs.ts";
import { fromHex, toHex } from "../src/encoding/hex.ts";
import { formatTime } from "../src/encoding/time.ts";
import { generateKeyPair, importPublicKey, verify as p256Verify } from "../src/crypto/p256.ts";
import { domainDigest } from "../src/crypto/sha256.ts";
import { signBody } from "../src/crypto/signed.ts";
import { blsKeygen, blsPopProve, blsPublicKey } from "../src/crypto/bls.ts";
import { FileExistsError } from "../src/fs/files.ts";
import { nodeIdOf, SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { issueKeyCert, type KeyCert, keyNameOf, parseKeyCert } from "../src/protocol/keycert.ts";
import { makeCard, type NodeCard, parseCard } from "../src/protocol/card.ts";
import { createLibp2pKey, loadLibp2pKey } from "../src/identity/libp2p-key.ts";
import { ed25519OfPeerId, peerIdOf } from "../src/protocol/peer-id.ts";
import { ed25519PrivateKey, ed25519PublicKey, ed25519Sign, ed25519Verify } from "../src/crypto/ed25519.ts";
import { buildGenesis, type Genesis, makeLocalGenesis, MeshPolicy, meshIdOf, parseGenesis } from "../src/protocol/genesis.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

const sha256Hex = (b: Uint8Array | string) => crypto.createHash("sha256").update(b).digest("hex");
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const MESH = "ab".repeat(32);
const NOW = Date.UTC(2026, 10, 25, 18, 35, 0, 123);

let dir: string;
let idA: SoftwareIdentityKey;
let idB: SoftwareIdentityKey;
let peerA: string;
let blsA: { pub: string; pop: string };
let blsB: { pub: string; pop: string };

function blsKeys(): { pub: string; pop: string } {
  const sk = blsKeygen(crypto.randomBytes(32));
  return { pub: toHex(blsPublicKey(sk)), pop: toHex(blsPopProve(sk)) };
}

beforeAll(() => {
  dir = tempDir();
  idA = SoftwareIdentityKey.create(path.join(dir, "a.pem"), false);
  idB = SoftwareIdentityKey.create(path.join(dir, "b.pem"), false);
  peerA = createLibp2pKey(path.join(dir, "a.p2p"), false).peerId;
  blsA = blsKeys();
  blsB = blsKeys();
});

afterAll(cleanupTempDirs);

// ---------------------------------------------------------------------------------------------

describe("SoftwareIdentityKey", () => {
  test("create writes a 0600 PEM; load returns the same key", () => {
    const f = path.join(dir, "id.pem");
    const k = SoftwareIdentityKey.create(f, false);
    expect(k.kind).toBe("software");
    expect(k.publicKey.length).toBe(33);
    expect([2, 3]).toContain(k.publicKey[0]!);
    expect(fs.statSync(f).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(f, "utf8")).toContain("-----BEGIN PRIVATE KEY-----");
    expect(toHex(SoftwareIdentityKey.load(f).publicKey)).toBe(toHex(k.publicKey));
    expect(nodeIdOf(k.publicKey)).toBe(sha256Hex(k.publicKey));
  });

  test("create refuses to overwrite unless overwrite=true", () => {
    const f = path.join(dir, "ow.pem");
    const k1 = SoftwareIdentityKey.create(f, false);
    const before = fs.readFileSync(f, "utf8");
    expect(() => SoftwareIdentityKey.create(f, false)).toThrow(FileExistsError);
    expect(fs.readFileSync(f, "utf8")).toBe(before);
    expect(toHex(SoftwareIdentityKey.load(f).publicKey)).toBe(toHex(k1.publicKey));
    const k2 = SoftwareIdentityKey.create(f, true);
    expect(toHex(k2.publicKey)).not.toBe(toHex(k1.publicKey));
    expect(toHex(SoftwareIdentityKey.load(f).publicKey)).toBe(toHex(k2.publicKey));
    expect(fs.statSync(f).mode & 0o777).toBe(0o600);
  });

  test("load refuses a key file others can read (0644, 0640)", () => {
    const f = path.join(dir, "open.pem");
    SoftwareIdentityKey.create(f, false);
    fs.chmodSync(f, 0o644);
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/readable by other users.*chmod 600/);
    fs.chmodSync(f, 0o640);
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/readable by other users/);
    fs.chmodSync(f, 0o600);
    expect(SoftwareIdentityKey.load(f).publicKey.length).toBe(33);
  });

  test("load of a missing or non-P-256 file fails clearly", () => {
    expect(() => SoftwareIdentityKey.load(path.join(dir, "none.pem"))).toThrow(/not found/);
    const f = path.join(dir, "ed.pem");
    const { privateKey } = crypto.generateKeyPairSync("ed25519");
    fs.writeFileSync(f, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/P-256/);
    fs.writeFileSync(f, "garbage", { mode: 0o600 });
    expect(() => SoftwareIdentityKey.load(f)).toThrow(/ed\.pem/);
  });

  test("signatures verify with src/crypto/p256.ts and with @noble/curves (prehash of the 32-byte digest)", async () => {
    for (let i = 0; i < 20; i++) {
      const digest = new Uint8Array(crypto.randomBytes(32));
      const sig = await idA.sign(digest);
      expect(sig.length).toBe(64);
      expect(p256Verify(importPublicKey(idA.publicKey), digest, sig)).toBe(true);
      expect(p256.verify(sig, digest, idA.publicKey)).toBe(true); // lowS and prehash on by default
      // wrong key and wrong digest fail in both
      expect(p256Verify(importPublicKey(idB.publicKey), digest, sig)).toBe(false);
      expect(p256.verify(sig, digest, idB.publicKey)).toBe(false);
      const other = new Uint8Array(digest);
      other[0]! ^= 1;
      expect(p256Verify(importPublicKey(idA.publicKey), other, sig)).toBe(false);
      expect(p256.verify(sig, other, idA.publicKey)).toBe(false);
      // noble's prehash-off mode signs the digest as the hash itself: a different scheme
      expect(p256.verify(sig, digest, idA.publicKey, { prehash: false })).toBe(false);
    }
  });

  test("sign refuses anything but a 32-byte digest", async () => {
    await expect(idA.sign(new Uint8Array(31))).rejects.toThrow(/32-byte/);
    await expect(idA.sign(new Uint8Array(33))).rejects.toThrow(/32-byte/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("key certificates", () => {
  let signingPub: Uint8Array;
  let cert: KeyCert;
  const notAfterMs = NOW + 86_400_000;

  beforeAll(async () => {
    const pair = generateKeyPair();
    signingPub = pair.publicKey;
    cert = await issueKeyCert(idA, { mesh: MESH, signingKey: pair.privateKey, firstSeq: 7, notAfterMs });
  });

  test("issue → JSON → parse round trip", () => {
    expect(cert).toEqual({
      v: 1,
      type: "K",
      mesh: MESH,
      node_id: nodeIdOf(idA.publicKey),
      identity_pub: toHex(idA.publicKey),
      signing_pub: toHex(signingPub),
      first_seq: 7,
      not_after: formatTime(notAfterMs),
      signing_pop: cert.signing_pop,
      sig: cert.sig,
    });
    const parsed = parseKeyCert(JSON.parse(canonicalize(cert)));
    expect(parsed).toEqual(cert);
    expect(keyNameOf(cert.signing_pub)).toBe(sha256Hex(signingPub));
    expect(keyNameOf(signingPub)).toBe(sha256Hex(signingPub));
    // the signature is over the keycert domain digest of the body
    const { sig, ...body } = cert;
    expect(p256Verify(importPublicKey(idA.publicKey), domainDigest("keycert", body), fromHex(sig))).toBe(true);
  });

  test("rejects node_id that is not the hash of identity_pub", () => {
    expect(() => parseKeyCert({ ...cert, node_id: nodeIdOf(idB.publicKey) })).toThrow(/node_id is not the hash of identity_pub/);
  });

  test("rejects a flipped signature bit", () => {
    for (const i of [0, 63, 64, 127]) {
      const c = clone(cert);
      c.sig = c.sig.slice(0, i) + (parseInt(c.sig[i]!, 16) ^ 1).toString(16) + c.sig.slice(i + 1);
      expect(c.sig).not.toBe(cert.sig);
      expect(() => parseKeyCert(c)).toThrow(/signature does not verify/);
    }
  });

  test("rejects extra or missing fields", () => {
    expect(() => parseKeyCert({ ...cert, extra: true })).toThrow(/unexpected field "extra"/);
    const { not_after: _n, ...missing } = cert;
    expect(() => parseKeyCert(missing)).toThrow(/missing field "not_after"/);
  });

  test("rejects any signed field changed (signature breaks)", () => {
    expect(() => parseKeyCert({ ...cert, first_seq: 1 })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, first_seq: 8 })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, mesh: "cd".repeat(32) })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, not_after: formatTime(notAfterMs + 1) })).toThrow(/signature does not verify/);
    expect(() => parseKeyCert({ ...cert, signing_pub: toHex(generateKeyPair().publicKey) })).toThrow(/signature does not verify/);
  });

  test("rejects an identity swap: B's key and node_id with A's signature", () => {
    expect(() => parseKeyCert({ ...cert, identity_pub: toHex(idB.publicKey), node_id: nodeIdOf(idB.publicKey) })).toThrow(
      /signature does not verify/,
    );
  });

  test("rejects a signature made under another domain (card digest of the same body)", async () => {
    const { sig: _s, ...body } = cert;
    const asCard = await signBody("card", body, idA);
    expect(asCard.sig).not.toBe(cert.sig);
    expect(() => parseKeyCert(asCard)).toThrow(/signature does not verify/);
  });

  test("rejects bad field shapes", () => {
    expect(() => parseKeyCert({ ...cert, first_seq: 0 })).toThrow(/first_seq/);
    expect(() => parseKeyCert({ ...cert, not_after: "2026-11-25T18:35:00Z" })).toThrow(/not_after/);
    expect(() => parseKeyCert({ ...cert, type: "M" })).toThrow(/type/);
    expect(() => parseKeyCert({ ...cert, sig: cert.sig.toUpperCase() })).toThrow(/sig/);
    expect(() => parseKeyCert(null)).toThrow(/expected a JSON object/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("node cards", () => {
  let card: NodeCard;

  beforeAll(async () => {
    card = await makeCard(idA, {
      role: "validator",
      peerId: peerA,
      addrs: ["/ip4/127.0.0.1/tcp/4001"],
      nowMs: NOW,
      blsPub: blsA.pub,
      blsPop: blsA.pop,
    });
  });

  test("make → JSON → parse round trip, with bls_pub and bls_pop", () => {
    expect(card.node_id).toBe(nodeIdOf(idA.publicKey));
    expect(card.tpm).toBe(false);
    expect(card.bls_pub).toBe(blsA.pub);
    expect(card.bls_pop).toBe(blsA.pop);
    expect(card.created).toBe(formatTime(NOW));
    expect("ak_pub" in card).toBe(false);
    expect(parseCard(JSON.parse(JSON.stringify(card, null, 2)))).toEqual(card);
  });

  test("a card without BLS keys also round-trips", async () => {
    const c = await makeCard(idB, { role: "edge", peerId: peerA, nowMs: NOW });
    expect("bls_pub" in c).toBe(false);
    expect(parseCard(clone(c))).toEqual(c);
  });

  test("tampered cards are rejected", () => {
    const cases: Partial<NodeCard>[] = [
      { role: "edge" },
      { addrs: ["/ip4/10.0.0.1/tcp/4001"] },
      { addrs: [] },
      { peer_id: peerIdOf(new Uint8Array(32)) },
      { bls_pub: blsB.pub, bls_pop: blsB.pop },
      { created: formatTime(NOW + 1) },
      { tpm: true, ak_pub: toHex(idB.publicKey) },
    ];
    for (const c of cases) expect(() => parseCard({ ...card, ...c })).toThrow(/signature does not verify/);
    expect(() => parseCard({ ...card, node_id: nodeIdOf(idB.publicKey) })).toThrow(/node_id is not the hash/);
    expect(() => parseCard({ ...card, extra: 1 })).toThrow(/unexpected field/);
  });

  test("a tpm:false card carrying ak_pub is rejected, even validly signed", async () => {
    const c = await makeCard(idA, { role: "edge", peerId: peerA, nowMs: NOW, akPub: toHex(idB.publicKey) });
    expect(c.tpm).toBe(false);
    expect(c.ak_pub).toBe(toHex(idB.publicKey));
    expect(() => parseCard(c)).toThrow(/ak_pub.*only for TPM/);
  });

  test("bls_pub and bls_pop must come together", async () => {
    const onlyPub = await makeCard(idA, { role: "validator", peerId: peerA, nowMs: NOW, blsPub: blsA.pub });
    expect(() => parseCard(onlyPub)).toThrow(/come together/);
  });

  test("bad shapes are rejected", () => {
    expect(() => parseCard({ ...card, role: "admin" })).toThrow(/role/);
    expect(() => parseCard({ ...card, peer_id: "0OIl" + peerA.slice(4) })).toThrow(/peer_id/);
    expect(() => parseCard({ ...card, addrs: Array(17).fill("/ip4/1.2.3.4/tcp/1") })).toThrow(/addrs/);
    expect(() => parseCard({ ...card, bls_pub: blsA.pub.slice(2) })).toThrow(/bls_pub/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("libp2p key", () => {
  test("peer id starts with 12D3KooW, file is 68 bytes 0600, load returns the same peer id", () => {
    const f = path.join(dir, "p2p.key");
    const k = createLibp2pKey(f, false);
    expect(k.peerId.startsWith("12D3KooW")).toBe(true);
    expect(k.peerId).toMatch(/^[1-9A-HJ-NP-Za-km-z]{52}$/);
    const st = fs.statSync(f);
    expect(st.size).toBe(68);
    expect(st.mode & 0o777).toBe(0o600);
    const bytes = fs.readFileSync(f);
    expect([...bytes.subarray(0, 4)]).toEqual([0x08, 0x01, 0x12, 0x40]);
    const loaded = loadLibp2pKey(f);
    expect(loaded.peerId).toBe(k.peerId);
    expect(toHex(loaded.publicKey)).toBe(toHex(k.publicKey));
    expect(toHex(loaded.privateKey)).toBe(toHex(k.privateKey));
    expect(() => createLibp2pKey(f, false)).toThrow(FileExistsError);
    expect(loadLibp2pKey(f).peerId).toBe(k.peerId);
  });

  test("the stored public key is the Ed25519 public key of the stored seed", () => {
    const f = path.join(dir, "p2p-pub.key");
    const k = createLibp2pKey(f, false);
    const priv = crypto.createPrivateKey({
      key: { kty: "OKP", crv: "Ed25519", d: Buffer.from(k.privateKey).toString("base64url"), x: Buffer.from(k.publicKey).toString("base64url") },
      format: "jwk",
    });
    const pubDer = crypto.createPublicKey(priv).export({ format: "der", type: "spki" });
    expect(toHex(new Uint8Array(pubDer.subarray(pubDer.length - 32)))).toBe(toHex(k.publicKey));
  });

  test("libp2p's Ed25519 spec vector: protobuf private key file → public key and peer id", () => {
    // libp2p peer-ids spec test vector (also rust-libp2p keypair_protobuf_roundtrip_ed25519).
    const f = path.join(dir, "p2p-vector.key");
    const seed = "7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d";
    const pub = "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    fs.writeFileSync(f, Buffer.from("08011240" + seed + pub, "hex"), { mode: 0o600 });
    const k = loadLibp2pKey(f);
    expect(toHex(k.privateKey)).toBe(seed);
    expect(toHex(k.publicKey)).toBe(pub);
    expect(k.peerId).toBe("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq");
    expect(peerIdOf(fromHex(pub))).toBe(k.peerId);
  });

  test("a peer id gives back its Ed25519 key (the spec vector); other ids give none", () => {
    const pub = "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    expect(toHex(ed25519OfPeerId("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq")!)).toBe(pub);
    // A CIDv0-style RSA/sha256 peer id, a truncated one, and non-base58 text.
    expect(ed25519OfPeerId("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")).toBeNull();
    expect(ed25519OfPeerId("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p")).toBeNull();
    expect(ed25519OfPeerId("12D3KooW0OIl")).toBeNull();
    // Its key verifies what the libp2p key file's seed signs.
    const k = createLibp2pKey(path.join(dir, "p2p-vote.key"), false);
    const msg = new Uint8Array(32).fill(9);
    const sig = ed25519Sign(ed25519PrivateKey(k.privateKey), msg);
    expect(ed25519Verify(ed25519PublicKey(ed25519OfPeerId(k.peerId)!), msg, sig)).toBe(true);
    expect(ed25519Verify(ed25519PublicKey(ed25519OfPeerId(k.peerId)!), new Uint8Array(32), sig)).toBe(false);
  });

  test("a corrupted key file is rejected", () => {
    const f = path.join(dir, "p2p-bad.key");
    createLibp2pKey(f, false);
    const good = fs.readFileSync(f);
    const write = (b: Uint8Array) => fs.writeFileSync(f, b, { mode: 0o600 });
    write(good.subarray(0, 67)); // truncated
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    write(Buffer.concat([good, Buffer.from([0])])); // trailing byte
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    const badType = Buffer.from(good);
    badType[1] = 0x02; // secp256k1, not Ed25519
    write(badType);
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    const badLen = Buffer.from(good);
    badLen[3] = 0x20;
    write(badLen);
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
    write(new Uint8Array(0));
    expect(() => loadLibp2pKey(f)).toThrow(/not a libp2p Ed25519 private key/);
  });

  test("a key file whose public half does not belong to its seed is rejected", () => {
    // Otherwise the advertised peer id would not be the key the node can sign with.
    const f = path.join(dir, "p2p-mismatch.key");
    createLibp2pKey(f, false);
    const bytes = Buffer.from(fs.readFileSync(f));
    bytes[10]! ^= 0x01; // one bit of the seed
    fs.writeFileSync(f, bytes, { mode: 0o600 });
    expect(() => loadLibp2pKey(f)).toThrow();
  });

  test("a key file others can read is refused", () => {
    const f = path.join(dir, "p2p-open.key");
    createLibp2pKey(f, false);
    fs.chmodSync(f, 0o644);
    expect(() => loadLibp2pKey(f)).toThrow(/readable by other users/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("genesis and mesh policy", () => {
  let cardA: NodeCard;
  let cardB: NodeCard;
  let genesis: Genesis;

  beforeAll(async () => {
    cardA = await makeCard(idA, { role: "both", peerId: peerA, nowMs: NOW, blsPub: blsA.pub, blsPop: blsA.pop });
    cardB = await makeCard(idB, { role: "validator", peerId: createLibp2pKey(path.join(dir, "b.p2p"), true).peerId, nowMs: NOW, blsPub: blsB.pub, blsPop: blsB.pop });
    genesis = makeLocalGenesis(cardA, NOW);
  });

  test("validators' peer ids must name Ed25519 keys, one each: votes are checked under them", async () => {
    const sharing = await makeCard(idB, { role: "validator", peerId: peerA, nowMs: NOW, blsPub: blsB.pub, blsPop: blsB.pop });
    expect(() => buildGenesis({ name: "shared", validators: [cardA, sharing], admission: "open", nowMs: NOW })).toThrow(/card 2: peer_id 12D3KooW\w+ is already another validator's/);
    const twoGood = buildGenesis({ name: "two", validators: [cardA, cardB], admission: "open", nowMs: NOW });
    const forged = clone(twoGood);
    forged.validators[1] = sharing;
    expect(() => parseGenesis(forged)).toThrow(/genesis validator 1: peer_id 12D3KooW\w+ is already another validator's/);
    const rsa = await makeCard(idB, { role: "validator", peerId: "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", nowMs: NOW, blsPub: blsB.pub, blsPop: blsB.pop });
    expect(() => buildGenesis({ name: "rsa", validators: [cardA, rsa], admission: "open", nowMs: NOW })).toThrow(/does not name an Ed25519 key/);
  });

  test("makeLocalGenesis → JSON → parseGenesis round trip", () => {
    expect(genesis.name).toBe(`local-${cardA.node_id.slice(0, 12)}`);
    expect(genesis.genesis_time).toBe(formatTime(Math.floor(NOW / 1000) * 1000));
    expect(genesis.epoch_duration).toBe(300);
    expect(genesis.validators).toEqual([cardA]);
    expect(genesis.admission).toEqual({ policy: "allowlist", keys: [cardA.identity_pub] });
    const parsed = parseGenesis(JSON.parse(JSON.stringify(genesis, null, 2)));
    expect(parsed).toEqual(genesis);
    expect(meshIdOf(parsed)).toBe(meshIdOf(genesis));
  });

  test("meshIdOf is sha256(JCS(genesis)), stable under key order, and changes with anything", () => {
    const id = meshIdOf(genesis);
    expect(id).toBe(sha256Hex(canonicalize(genesis)));
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(meshIdOf(clone(genesis))).toBe(id);
    const reordered = Object.fromEntries(Object.entries(genesis).reverse()) as unknown as Genesis;
    expect(meshIdOf(reordered)).toBe(id);
    const variants: ((g: Genesis) => void)[] = [
      (g) => (g.name = g.name + "x"),
      (g) => (g.genesis_time = formatTime(Date.parse(g.genesis_time) + 1000)),
      (g) => (g.epoch_duration = 301),
      (g) => g.validators.push(cardB),
      (g) => (g.admission = { policy: "open" }),
      (g) => g.admission.policy === "allowlist" && g.admission.keys.push(cardB.identity_pub),
      (g) => (g.attestation.required = true),
      (g) => g.attestation.pcrs.push(7),
      (g) => g.attestation.digests.push("00".repeat(32)),
      (g) => (g.validators[0]!.addrs = ["/ip4/1.2.3.4/tcp/1"]),
    ];
    const seen = new Set([id]);
    for (const change of variants) {
      const g = clone(genesis);
      change(g);
      const m = meshIdOf(g);
      expect(seen.has(m)).toBe(false);
      seen.add(m);
    }
  });

  test("MeshPolicy: validators, allowlisted and unknown nodes", () => {
    const third = nodeIdOf(generateKeyPair().publicKey);
    const edgeKey = generateKeyPair().publicKey;
    const g: Genesis = { ...clone(genesis), validators: [cardA, cardB], admission: { policy: "allowlist", keys: [toHex(edgeKey)] } };
    const policy = new MeshPolicy(parseGenesis(g));
    expect(policy.mesh).toBe(meshIdOf(g));
    expect(policy.isAdmitted(cardA.node_id)).toBe(true); // validator, not on the allowlist
    expect(policy.isAdmitted(cardB.node_id)).toBe(true);
    expect(policy.isAdmitted(nodeIdOf(edgeKey))).toBe(true); // allowlisted edge
    expect(policy.isAdmitted(toHex(edgeKey).slice(2))).toBe(false); // the key itself is not a node id
    expect(policy.isAdmitted(third)).toBe(false);

    const local = new MeshPolicy(genesis);
    expect(local.isAdmitted(cardA.node_id)).toBe(true);
    expect(local.isAdmitted(cardB.node_id)).toBe(false);
  });

  test('MeshPolicy: "open" admits everyone', () => {
    const g: Genesis = { ...clone(genesis), admission: { policy: "open" } };
    const policy = new MeshPolicy(parseGenesis(g));
    expect(policy.isAdmitted(cardB.node_id)).toBe(true);
    expect(policy.isAdmitted(nodeIdOf(generateKeyPair().publicKey))).toBe(true);
    expect(policy.mesh).not.toBe(meshIdOf(genesis));
  });

  test("rejects a validator listed twice", () => {
    const g = { ...clone(genesis), validators: [cardA, cardB, clone(cardA)] };
    expect(() => parseGenesis(g)).toThrow(/listed twice/);
    expect(parseGenesis({ ...clone(genesis), validators: [cardA, cardB] }).validators.length).toBe(2);
  });

  test("rejects a bad admission policy", () => {
    const bad: unknown[] = [
      { policy: "closed" },
      { policy: "open", keys: [] },
      { policy: "allowlist" },
      { policy: "allowlist", keys: "x" },
      { policy: "allowlist", keys: [cardA.identity_pub.toUpperCase()] },
      { policy: "allowlist", keys: [cardA.node_id] }, // a node id is not a key
      null,
    ];
    for (const admission of bad) expect(() => parseGenesis({ ...clone(genesis), admission })).toThrow(/admission/);
  });

  test("rejects bad pcrs and attestation", () => {
    for (const pcrs of [[24], [-1], [1.5], ["0"], "0-7"]) {
      expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs, digests: [] } })).toThrow(/pcrs/);
    }
    expect(parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [0, 7, 23], digests: ["0f".repeat(32)] } })).toBeTruthy();
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: "yes", pcrs: [], digests: [] } })).toThrow(/required/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [], digests: ["0F".repeat(32)] } })).toThrow(/digests/);
  });

  test("allowlist keys must be real P-256 points, listed once; required attestation must accept something", () => {
    const notAPoint = "02" + "ff".repeat(32); // x >= p: no such point
    for (const keys of [[notAPoint], ["04" + cardA.identity_pub.slice(2)], [cardA.identity_pub, cardA.identity_pub]]) {
      expect(() => parseGenesis({ ...clone(genesis), admission: { policy: "allowlist", keys } })).toThrow(/admission/);
    }
    expect(parseGenesis({ ...clone(genesis), admission: { policy: "allowlist", keys: [cardA.identity_pub, cardB.identity_pub] } })).toBeTruthy();
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [7], digests: [] } })).toThrow(/required/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: true, pcrs: [], digests: ["0f".repeat(32)] } })).toThrow(/required/);
    expect(() => parseGenesis({ ...clone(genesis), attestation: { required: false, pcrs: [7, 7], digests: [] } })).toThrow(/twice/);
  });

  test("parseGenesis returns a copy: later changes to the input do not reach it", () => {
    const input = clone(genesis);
    const parsed = parseGenesis(input);
    input.name = "changed";
    expect(parsed.name).toBe(genesis.name);
  });

  test("rejects other malformed genesis files", () => {
    expect(() => parseGenesis({ ...clone(genesis), validators: [] })).toThrow(/validators/);
    expect(() => parseGenesis({ ...clone(genesis), epoch_duration: 0 })).toThrow(/epoch_duration/);
    expect(() => parseGenesis({ ...clone(genesis), name: "has space" })).toThrow(/name/);
    expect(() => parseGenesis({ ...clone(genesis), extra: 1 })).toThrow(/unexpected field/);
    const tampered = clone(genesis);
    tampered.validators[0]!.role = "edge";
    expect(() => parseGenesis(tampered)).toThrow(/genesis validator 0: signature does not verify/);
  });

  test("rejects a validator whose BLS proof of possession does not verify (DESIGN.md section 4)", async () => {
    // Validly signed by the identity key, but the PoP belongs to another BLS key.
    const rogue = await makeCard(idB, { role: "validator", peerId: peerA, nowMs: NOW, blsPub: blsB.pub, blsPop: blsA.pop });
    expect(() => parseCard(rogue, "card", { checkPop: false })).not.toThrow(); // the card's own signature is fine
    expect(() => parseCard(rogue)).toThrow(/bls_pop is not a valid proof of possession/);
    expect(() => parseGenesis({ ...clone(genesis), validators: [cardA, rogue] })).toThrow(/genesis validator 1: bls_pop/);
  });

  test("rejects a validator without a BLS key (DESIGN.md section 3: each validator card includes it)", async () => {
    const noBls = await makeCard(idB, { role: "validator", peerId: peerA, nowMs: NOW });
    expect(() => parseGenesis({ ...clone(genesis), validators: [cardA, noBls] })).toThrow();
  });
});
