// BLS12-381 (Ethereum ciphersuite) against public vectors read in place from
// test/vectors (see bls/SOURCE.md, wycheproof/SOURCE.md there): Ethereum consensus-spec-tests (phase0 sign / verify / aggregate /
// fast_aggregate_verify / aggregate_verify, altair eth_fast_aggregate_verify /
// eth_aggregate_pubkeys), ethereum/bls12-381-tests batch_verify, Wycheproof PoP-scheme verify,
// aggregate verify and hash_to_G2, EIP-2333 master-key derivation; plus PoP / rogue-key properties.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { bls12_381 } from "@noble/curves/bls12-381.js";
import {
  POP_DST,
  SIG_DST,
  blsAggregatePublicKeyPoint,
  blsAggregatePublicKeys,
  blsAggregateSignatures,
  blsAggregateVerify,
  blsBatchVerify,
  blsCoreAggregateVerify,
  blsFastAggregateVerify,
  blsHashToG2,
  blsKeyValidate,
  blsKeygen,
  blsPopProve,
  blsPopVerify,
  blsPublicKey,
  blsSign,
  blsVerify,
  ethFastAggregateVerify,
  parsePublicKey,
  parseSignature,
} from "../src/crypto/bls.ts";
import { fromHex, toHex } from "../src/encoding/hex.ts";

const VECTORS = new URL("vectors/", import.meta.url);
const R = bls12_381.fields.Fr.ORDER;

/** Vector hex: optional 0x, any case. */
function hx(s: string): Uint8Array {
  return fromHex(s.replace(/^0x/, "").toLowerCase());
}

/** Every `<folder>/<case>/data.yaml` of an Ethereum BLS suite, parsed. */
function ethCases(folder: string): [string, any][] {
  const dir = new URL(`bls/${folder}/`, VECTORS);
  return readdirSync(dir)
    .sort()
    .map((name) => [name, Bun.YAML.parse(readFileSync(new URL(`${name}/data.yaml`, dir), "utf8"))] as [string, any]);
}

function wycheproof(file: string): any {
  return JSON.parse(readFileSync(new URL(`wycheproof/${file}`, VECTORS), "utf8"));
}

describe("constants", () => {
  test("ciphersuite DSTs", () => {
    expect(SIG_DST).toBe("BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_");
    expect(POP_DST).toBe("BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_");
  });
});

describe("ethereum phase0 sign", () => {
  const cases = ethCases("phase0/sign");
  test("all cases present", () => expect(cases.length).toBe(10));
  test.each(cases)("%s", (_name, { input, output }) => {
    const sk = hx(input.privkey);
    const msg = hx(input.message);
    if (output === null) {
      expect(() => blsSign(sk, msg)).toThrow();
      expect(() => blsPublicKey(sk)).toThrow();
      return;
    }
    const sig = blsSign(sk, msg);
    expect(toHex(sig)).toBe(toHex(hx(output)));
    expect(blsVerify(blsPublicKey(sk), msg, sig)).toBe(true);
  });
});

describe("ethereum phase0 verify", () => {
  const cases = ethCases("phase0/verify");
  test("all cases present", () => expect(cases.length).toBe(28));
  test.each(cases)("%s", (_name, { input, output }) => {
    expect(blsVerify(hx(input.pubkey), hx(input.message), hx(input.signature))).toBe(output);
  });
});

describe("ethereum phase0 aggregate", () => {
  const cases = ethCases("phase0/aggregate");
  test("all cases present", () => expect(cases.length).toBe(5));
  test.each(cases)("%s", (_name, { input, output }) => {
    const sigs = (input as string[]).map(hx);
    if (output === null) {
      expect(() => blsAggregateSignatures(sigs)).toThrow();
      return;
    }
    expect(toHex(blsAggregateSignatures(sigs))).toBe(toHex(hx(output)));
  });
});

describe("ethereum phase0 fast_aggregate_verify", () => {
  const cases = ethCases("phase0/fast_aggregate_verify");
  test("all cases present", () => expect(cases.length).toBe(9));
  test.each(cases)("%s", (_name, { input, output }) => {
    const pks = (input.pubkeys as string[]).map(hx);
    const msg = hx(input.message);
    expect(blsFastAggregateVerify(pks, msg, hx(input.signature))).toBe(output);
    // Same answer with keys and signature parsed ahead of time (invalid ones fail to parse).
    const points = pks.map(parsePublicKey);
    const sig = parseSignature(hx(input.signature));
    if (points.every((p) => p !== null) && sig !== null) {
      expect(blsFastAggregateVerify(points as NonNullable<(typeof points)[number]>[], msg, sig)).toBe(output);
    } else {
      expect(output).toBe(false);
    }
  });
});

describe("ethereum altair eth_fast_aggregate_verify", () => {
  const cases = ethCases("altair/eth_fast_aggregate_verify");
  test("all cases present", () => expect(cases.length).toBe(7));
  test.each(cases)("%s", (_name, { input, output }) => {
    const pks = (input.pubkeys as string[]).map(hx);
    const msg = hx(input.message);
    const sig = hx(input.signature);
    expect(ethFastAggregateVerify(pks, msg, sig)).toBe(output);
    // The eth_ variant accepts an empty key list with the identity signature;
    // blsFastAggregateVerify is the IETF function, which rejects every empty key list.
    expect(blsFastAggregateVerify(pks, msg, sig)).toBe(pks.length === 0 ? false : output);
    const parsed = parseSignature(sig);
    if (parsed !== null) expect(ethFastAggregateVerify(pks, msg, parsed)).toBe(output);
  });
});

describe("ethereum phase0 aggregate_verify", () => {
  const cases = ethCases("phase0/aggregate_verify");
  test("all cases present", () => expect(cases.length).toBe(3));
  test.each(cases)("%s", (_name, { input, output }) => {
    const pks = (input.pubkeys as string[]).map(hx);
    const msgs = (input.messages as string[]).map(hx);
    expect(blsAggregateVerify(pks, msgs, hx(input.signature))).toBe(output);
    // Same answer with parsed points (an invalid key or signature fails to parse).
    const points = pks.map(parsePublicKey);
    const sig = parseSignature(hx(input.signature));
    if (points.every((p) => p !== null) && sig !== null) {
      expect(blsAggregateVerify(points as NonNullable<(typeof points)[number]>[], msgs, sig)).toBe(output);
    } else {
      expect(output).toBe(false);
    }
  });
});

describe("ethereum altair eth_aggregate_pubkeys", () => {
  const cases = ethCases("altair/eth_aggregate_pubkeys");
  test("all cases present", () => expect(cases.length).toBe(7));
  test.each(cases)("%s", (_name, { input, output }) => {
    const pks = (input as string[]).map(hx);
    if (output === null) {
      expect(() => blsAggregatePublicKeys(pks)).toThrow();
      return;
    }
    expect(toHex(blsAggregatePublicKeys(pks))).toBe(toHex(hx(output)));
    const points = pks.map((p) => parsePublicKey(p)!);
    expect(toHex(blsAggregatePublicKeyPoint(points).toBytes(true))).toBe(toHex(hx(output)));
  });
  test("empty list throws", () => expect(() => blsAggregatePublicKeys([])).toThrow());
});

describe("ethereum bls12-381-tests batch_verify", () => {
  const dir = new URL("bls/bls12-381-tests/batch_verify/", VECTORS);
  const cases = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((name) => [name, JSON.parse(readFileSync(new URL(name, dir), "utf8"))] as [string, any]);
  test("all cases present", () => expect(cases.length).toBe(3));
  test.each(cases)("%s", (_name, { input, output }) => {
    const pks = (input.pubkeys as string[]).map(hx);
    const msgs = (input.messages as string[]).map(hx);
    const sigs = (input.signatures as string[]).map(hx);
    expect(pks.length).toBe(msgs.length);
    expect(sigs.length).toBe(msgs.length);
    const sets = pks.map((pk, i) => ({ pk, message: msgs[i]!, sig: sigs[i]! }));
    expect(blsBatchVerify(sets)).toBe(output);
    // Agrees with verifying each set on its own.
    expect(sets.every((s) => blsVerify(s.pk, s.message, s.sig))).toBe(output);
  });
  test("forged set: the plain (unrandomized) product check would accept it", () => {
    const [, forged] = cases.find(([n]) => n.includes("forged"))!;
    const pks = (forged.input.pubkeys as string[]).map(hx);
    const msgs = (forged.input.messages as string[]).map(hx);
    const sigs = (forged.input.signatures as string[]).map(hx);
    expect(blsAggregateVerify(pks, msgs, blsAggregateSignatures(sigs))).toBe(true);
    expect(blsBatchVerify(pks.map((pk, i) => ({ pk, message: msgs[i]!, sig: sigs[i]! })))).toBe(false);
  });
});

describe("wycheproof bls_sig_g2_aggregate_verify (Basic scheme, _NUL_ DST)", () => {
  const data = wycheproof("bls_sig_g2_aggregate_verify_test.json");
  const NUL_DST = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";
  const rows: [number, string, string[], string[], string, string][] = [];
  for (const g of data.testGroups) {
    expect(g.ciphersuite).toBe(NUL_DST);
    for (const t of g.tests) rows.push([t.tcId, t.comment, t.pubkeys, t.messages, t.sig, t.result]);
  }
  test("all cases present", () => {
    expect(rows.length).toBe(data.numberOfTests);
    expect(rows.length).toBe(19);
  });
  test.each(rows)("tcId %d: %s", (_id, _comment, pks, msgs, sig, result) => {
    expect(result === "valid" || result === "invalid").toBe(true);
    // The Basic scheme also requires distinct messages; every case here has them.
    expect(new Set(msgs).size).toBe(msgs.length);
    const ok = blsCoreAggregateVerify(pks.map(hx), msgs.map(hx), hx(sig), NUL_DST);
    expect(ok).toBe(result === "valid");
    // Under the PoP suite's DST none of them verifies (wrong domain).
    expect(blsAggregateVerify(pks.map(hx), msgs.map(hx), hx(sig))).toBe(false);
  });
});

describe("wycheproof bls_sig_g2_pop_verify (POP-scheme signatures)", () => {
  const data = wycheproof("bls_sig_g2_pop_verify_test.json");
  const rows: [number, string, string, string, string, string][] = [];
  for (const g of data.testGroups) {
    expect(g.ciphersuite).toBe(SIG_DST);
    for (const t of g.tests) rows.push([t.tcId, t.comment, g.publicKey.pk, t.msg, t.sig, t.result]);
  }
  test("all cases present", () => {
    expect(rows.length).toBe(data.numberOfTests);
    expect(rows.length).toBe(26);
  });
  test.each(rows)("tcId %d: %s", (_id, _comment, pk, msg, sig, result) => {
    expect(result === "valid" || result === "invalid").toBe(true); // no "acceptable" cases here
    expect(blsVerify(hx(pk), hx(msg), hx(sig))).toBe(result === "valid");
  });
});

describe("wycheproof bls_hash_to_g2 (hash-to-curve with a caller DST)", () => {
  const data = wycheproof("bls_hash_to_g2_test.json");
  const rows: [number, string, string, string, string][] = [];
  for (const g of data.testGroups) for (const t of g.tests) rows.push([t.tcId, t.comment, g.dst, t.msg, t.expected]);
  test("all cases present", () => expect(rows.length).toBe(34));
  test.each(rows)("tcId %d: %s", (_id, _comment, dst, msg, expected) => {
    expect(toHex(blsHashToG2(hx(msg), dst))).toBe(toHex(hx(expected)));
  });
});

describe("EIP-2333 KeyGen (derive_master_SK)", () => {
  // https://eips.ethereum.org/EIPS/eip-2333 test cases 0-3: seed -> master_SK (decimal).
  const cases: [string, string][] = [
    [
      "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
      "6083874454709270928345386274498605044986640685124978867557563392430687146096",
    ],
    [
      "3141592653589793238462643383279502884197169399375105820974944592",
      "29757020647961307431480504535336562678282505419141012933316116377660817309383",
    ],
    [
      "0099ff991111002299dd7744ee3355bbdd8844115566cc55663355668888cc00",
      "27580842291869792442942448775674722299803720648445448686099262467207037398656",
    ],
    [
      "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3",
      "19022158461524446591288038168518313374041767046816487870552872741050760015818",
    ],
  ];
  test.each(cases)("seed %s", (seed, master) => {
    const sk = blsKeygen(hx(seed));
    expect(sk.length).toBe(32);
    expect(BigInt("0x" + toHex(sk))).toBe(BigInt(master));
  });
  test("rejects IKM shorter than 32 bytes", () => {
    expect(() => blsKeygen(new Uint8Array(31))).toThrow();
    expect(blsKeygen(new Uint8Array(32)).length).toBe(32);
  });
  test("deterministic and in range", () => {
    const ikm = new Uint8Array(32).fill(7);
    const a = blsKeygen(ikm);
    expect(toHex(blsKeygen(ikm))).toBe(toHex(a));
    const n = BigInt("0x" + toHex(a));
    expect(n > 0n && n < R).toBe(true);
  });
});

describe("keys and signatures", () => {
  const sk1 = blsKeygen(new Uint8Array(32).fill(1));
  const sk2 = blsKeygen(new Uint8Array(32).fill(2));
  const pk1 = blsPublicKey(sk1);
  const pk2 = blsPublicKey(sk2);
  const msg = new TextEncoder().encode("checkpoint 42");

  test("sizes, round trip, wrong message / key", () => {
    expect(pk1.length).toBe(48);
    const sig = blsSign(sk1, msg);
    expect(sig.length).toBe(96);
    expect(blsVerify(pk1, msg, sig)).toBe(true);
    expect(blsVerify(pk2, msg, sig)).toBe(false);
    expect(blsVerify(pk1, new TextEncoder().encode("checkpoint 43"), sig)).toBe(false);
  });

  test("secret key range is enforced", () => {
    const rBytes = hx(R.toString(16).padStart(64, "0"));
    expect(() => blsPublicKey(rBytes)).toThrow();
    expect(() => blsSign(rBytes, msg)).toThrow();
    expect(() => blsPublicKey(new Uint8Array(31).fill(1))).toThrow();
    const rMinus1 = hx((R - 1n).toString(16).padStart(64, "0"));
    expect(blsPublicKey(rMinus1).length).toBe(48);
  });

  test("KeyValidate", () => {
    expect(blsKeyValidate(pk1)).toBe(true);
    const identity = new Uint8Array(48);
    identity[0] = 0xc0;
    expect(blsKeyValidate(identity)).toBe(false);
    expect(blsKeyValidate(pk1.subarray(0, 47))).toBe(false);
    const uncompressed = parsePublicKey(pk1)!.toBytes(false);
    expect(blsKeyValidate(uncompressed)).toBe(false);
    const cleared = pk1.slice();
    cleared[0]! &= 0x7f;
    expect(blsKeyValidate(cleared)).toBe(false);
    // Small x coordinates: each is off the curve or outside the prime-order subgroup.
    let rejected = 0;
    for (let x = 1; x <= 8; x++) {
      const b = new Uint8Array(48);
      b[0] = 0x80;
      b[47] = x;
      if (!blsKeyValidate(b)) rejected++;
    }
    expect(rejected).toBe(8);
  });

  test("verify never throws on garbage", () => {
    const sig = blsSign(sk1, msg);
    const junk: unknown[] = [new Uint8Array(0), new Uint8Array(96), new Uint8Array(48), null, undefined, "ab", 7];
    for (const j of junk) {
      expect(blsVerify(j as Uint8Array, msg, sig)).toBe(false);
      expect(blsVerify(pk1, msg, j as Uint8Array)).toBe(false);
      expect(blsVerify(pk1, j as Uint8Array, sig)).toBe(false);
      expect(blsPopVerify(j as Uint8Array, sig)).toBe(false);
      expect(blsPopVerify(pk1, j as Uint8Array)).toBe(false);
      expect(blsFastAggregateVerify([j as Uint8Array], msg, sig)).toBe(false);
      expect(blsFastAggregateVerify(j as Uint8Array[], msg, sig)).toBe(false);
    }
    expect(blsFastAggregateVerify([], msg, sig)).toBe(false);
  });

  test("aggregate + fast aggregate verify, bytes and parsed points", () => {
    const sig = blsAggregateSignatures([blsSign(sk1, msg), blsSign(sk2, msg)]);
    expect(blsFastAggregateVerify([pk1, pk2], msg, sig)).toBe(true);
    const points = [parsePublicKey(pk1)!, parsePublicKey(pk2)!];
    expect(blsFastAggregateVerify(points, msg, sig)).toBe(true);
    expect(blsFastAggregateVerify([points[0]!, pk2], msg, parseSignature(sig)!)).toBe(true);
    expect(blsFastAggregateVerify([pk1], msg, sig)).toBe(false);
    expect(blsFastAggregateVerify([pk1, pk2, pk2], msg, sig)).toBe(false);
    expect(() => blsAggregateSignatures([])).toThrow();
    expect(() => blsAggregateSignatures([sig, new Uint8Array(96)])).toThrow();
    // Keys that sum to the identity are refused even with the identity signature.
    const neg = parsePublicKey(pk1)!.negate();
    const idSig = new Uint8Array(96);
    idSig[0] = 0xc0;
    expect(blsFastAggregateVerify([pk1, neg.toBytes(true)], msg, idSig)).toBe(false);
  });
});

describe("aggregate verify, batch verify, eth variants", () => {
  const sks = [1, 2, 3].map((i) => blsKeygen(new Uint8Array(32).fill(0x30 + i)));
  const pks = sks.map(blsPublicKey);
  const msgs = ["a", "b", "c"].map((m) => new TextEncoder().encode(`vote ${m}`));
  const sigs = sks.map((sk, i) => blsSign(sk, msgs[i]!));
  const agg = blsAggregateSignatures(sigs);
  const idSig = new Uint8Array(96);
  idSig[0] = 0xc0;

  test("aggregateVerify: round trip, order, lengths, duplicates allowed (PoP scheme)", () => {
    expect(blsAggregateVerify(pks, msgs, agg)).toBe(true);
    expect(blsAggregateVerify(pks.map((p) => parsePublicKey(p)!), msgs, parseSignature(agg)!)).toBe(true);
    expect(blsAggregateVerify([pks[1]!, pks[0]!, pks[2]!], msgs, agg)).toBe(false);
    expect(blsAggregateVerify(pks.slice(0, 2), msgs, agg)).toBe(false);
    expect(blsAggregateVerify([], [], agg)).toBe(false);
    expect(blsAggregateVerify([], [], idSig)).toBe(false);
    const same = sks.map((sk) => blsSign(sk, msgs[0]!));
    expect(blsAggregateVerify(pks, [msgs[0]!, msgs[0]!, msgs[0]!], blsAggregateSignatures(same))).toBe(true);
  });

  test("never throws on garbage", () => {
    const junk: unknown[] = [new Uint8Array(0), new Uint8Array(96), new Uint8Array(48), null, undefined, "ab", 7, {}];
    for (const j of junk) {
      expect(blsAggregateVerify([j as Uint8Array], [msgs[0]!], agg)).toBe(false);
      expect(blsAggregateVerify(pks, msgs, j as Uint8Array)).toBe(false);
      expect(blsAggregateVerify(pks, [msgs[0]!, msgs[1]!, j as Uint8Array], agg)).toBe(false);
      expect(blsAggregateVerify(j as Uint8Array[], msgs, agg)).toBe(false);
      expect(blsAggregateVerify(pks, j as Uint8Array[], agg)).toBe(false);
      expect(blsBatchVerify(j as never)).toBe(false);
      expect(blsBatchVerify([j as never])).toBe(false);
      expect(blsBatchVerify([{ pk: pks[0]!, message: msgs[0]!, sig: j as Uint8Array }])).toBe(false);
      expect(ethFastAggregateVerify([j as Uint8Array], msgs[0]!, sigs[0]!)).toBe(false);
      expect(ethFastAggregateVerify([], msgs[0]!, j as Uint8Array)).toBe(false);
      expect(() => blsAggregatePublicKeys([j as Uint8Array])).toThrow();
    }
    expect(() => blsAggregatePublicKeys(null as never)).toThrow();
  });

  test("batchVerify: valid, one bad set, identity signature, empty", () => {
    const sets = pks.map((pk, i) => ({ pk, message: msgs[i]!, sig: sigs[i]! }));
    expect(blsBatchVerify(sets)).toBe(true);
    expect(blsBatchVerify(sets.map((s) => ({ ...s, pk: parsePublicKey(s.pk)!, sig: parseSignature(s.sig)! })))).toBe(true);
    expect(blsBatchVerify([sets[0]!, { ...sets[1]!, message: msgs[2]! }, sets[2]!])).toBe(false);
    expect(blsBatchVerify([sets[0]!, { ...sets[1]!, sig: idSig }])).toBe(false);
    expect(blsBatchVerify([])).toBe(false);
  });

  test("ethFastAggregateVerify: empty keys only with the identity signature", () => {
    const m = msgs[0]!;
    const same = blsAggregateSignatures(sks.map((sk) => blsSign(sk, m)));
    expect(ethFastAggregateVerify(pks, m, same)).toBe(true);
    expect(ethFastAggregateVerify([], m, idSig)).toBe(true);
    expect(ethFastAggregateVerify([], m, parseSignature(idSig)!)).toBe(true);
    expect(ethFastAggregateVerify([], m, same)).toBe(false);
    expect(ethFastAggregateVerify([], m, new Uint8Array(96))).toBe(false);
    expect(ethFastAggregateVerify([pks[0]!], m, idSig)).toBe(false);
  });

  test("aggregatePublicKeys matches fastAggregateVerify and point input", () => {
    const m = msgs[1]!;
    const same = blsAggregateSignatures(sks.map((sk) => blsSign(sk, m)));
    const aggPk = blsAggregatePublicKeys(pks);
    expect(aggPk.length).toBe(48);
    expect(blsVerify(aggPk, m, same)).toBe(true);
    expect(toHex(blsAggregatePublicKeys(pks.map((p) => parsePublicKey(p)!)))).toBe(toHex(aggPk));
    expect(blsVerify(blsAggregatePublicKeyPoint(pks), m, same)).toBe(true);
  });

  test("hashToG2 uses SIG_DST by default and rejects bad input", () => {
    const m = msgs[0]!;
    expect(toHex(blsHashToG2(m))).toBe(toHex(blsHashToG2(m, SIG_DST)));
    expect(toHex(blsHashToG2(m, POP_DST))).not.toBe(toHex(blsHashToG2(m)));
    expect(() => blsHashToG2("x" as never)).toThrow();
    expect(() => blsHashToG2(m, "")).toThrow();
  });
});

describe("proof of possession", () => {
  const skVictim = blsKeygen(new Uint8Array(32).fill(0xa1));
  const skAttacker = blsKeygen(new Uint8Array(32).fill(0xa2));
  const pkVictim = blsPublicKey(skVictim);
  const pkAttacker = blsPublicKey(skAttacker);
  const G1 = bls12_381.G1.Point;

  test("prove / verify, bound to the key", () => {
    const pop = blsPopProve(skVictim);
    expect(pop.length).toBe(96);
    expect(blsPopVerify(pkVictim, pop)).toBe(true);
    expect(blsPopVerify(pkAttacker, pop)).toBe(false);
    expect(blsPopVerify(pkVictim, blsPopProve(skAttacker))).toBe(false);
  });

  test("domain separation between PoP and ordinary signatures", () => {
    const pop = blsPopProve(skVictim);
    // A PoP is not a signature over the key bytes, and the reverse.
    expect(blsVerify(pkVictim, pkVictim, pop)).toBe(false);
    expect(blsPopVerify(pkVictim, blsSign(skVictim, pkVictim))).toBe(false);
  });

  test("rogue key: the attack works without PoP, and the rogue key has no PoP", () => {
    // pk_rogue = pk_attacker - pk_victim: the attacker alone makes an "aggregate" signature
    // that verifies as signed by both, since pk_victim + pk_rogue = pk_attacker.
    const rogue = G1.fromBytes(pkAttacker).subtract(G1.fromBytes(pkVictim)).toBytes(true);
    expect(blsKeyValidate(rogue)).toBe(true); // a well-formed key: only PoP stops it
    const msg = new TextEncoder().encode("block 7");
    const forged = blsSign(skAttacker, msg);
    expect(blsFastAggregateVerify([pkVictim, rogue], msg, forged)).toBe(true);
    // The attacker does not know the rogue key's secret; what it can sign does not prove it.
    expect(blsPopVerify(rogue, blsPopProve(skAttacker))).toBe(false);
    expect(blsPopVerify(rogue, blsPopProve(skVictim))).toBe(false);
    const popDiff = parseSignature(blsPopProve(skAttacker))!.subtract(parseSignature(blsPopProve(skVictim))!);
    expect(blsPopVerify(rogue, popDiff)).toBe(false); // PoPs sign different messages: no algebra helps
    expect(blsPopVerify(rogue, blsSign(skAttacker, rogue))).toBe(false);
  });
});
