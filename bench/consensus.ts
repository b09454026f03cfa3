// Consensus costs: the BLS12-381 primitives of src/crypto/bls.ts (sign, verify, aggregate,
// FastAggregateVerify, certificate checks by ValidatorSet) for n validators, each as a multiple
// of noble's raw pairing check measured in the same run; then one epoch of the seeded
// in-process simulation (test/helpers/consensus-sim.ts) against n validators' raw sign+verify.
//
// bls.ts memoises hash-to-G2 by message and ValidatorSet memoises results and decoded
// signatures by exact input, so every timed call gets a fresh message (and so a fresh
// signature): nothing below is a memo hit unless its label says so.
// BENCH_BLS_ITERS sets the repetitions per BLS figure at each n (median, default 5; the
// n-independent figures and baselines take three times as many); BENCH_SIM_MAX_N caps the
// simulated sizes (default 64).
import { ed25519PublicOf } from "../src/crypto/ed25519.ts";
import { peerIdOf } from "../src/protocol/peer-id.ts";
import { bls12_381 } from "@noble/curves/bls12-381.js";
import {
  blsAggregateSignatures,
  blsFastAggregateVerify,
  blsKeygen,
  blsPublicKey,
  blsSign,
  blsVerify,
  type G1Point,
  type G2Point,
  parsePublicKey,
  parseSignature,
  SIG_DST,
} from "../src/crypto/bls.ts";
import { sha256 } from "../src/crypto/sha256.ts";
import { toHex } from "../src/encoding/hex.ts";
import { signersBitfield, ValidatorSet } from "../src/protocol/validator-set.ts";
import type { Genesis } from "../src/protocol/genesis.ts";
import { simMesh, simulate } from "../test/helpers/consensus-sim.ts";
import { envInt, fmtRatio, fmtUs, note, now, say, table } from "./lib.ts";

const noble = bls12_381.longSignatures;
const R = bls12_381.fields.Fr.ORDER;
const BLS_NS = [4, 16, 64, 256];
const SIM_NS = [4, 7, 10, 16, 32, 64];

export interface ConsensusSummary {
  iters: number;
  /** Baselines: one pairing, and one pairing check with everything decoded and hashed. */
  pairing_ms: number;
  pairing_check_ms: number;
  hash_to_g2_ms: number;
  sign_ms: number;
  sign_hash_memo_ms: number;
  verify_ms: number;
  verify_hash_memo_ms: number;
  bls: { n: number; aggregate_bytes_ms: number; aggregate_points_ms: number; fav_points_ms: number; fav_bytes_ms: number; certificate_ms: number; certificate_pairing_checks: number }[];
  sim: { n: number; genesis_ms: number; cold_ms: number; warm_ms: number; finality_sim_ms: number; baseline_ms: number; ratio: number }[];
}

const r3 = (x: number) => Number(x.toPrecision(3));

// --- fresh inputs ---------------------------------------------------------------------

const salt = toHex(crypto.getRandomValues(new Uint8Array(8)));
let counter = 0;

/** A 32-byte message never seen before in this process (so no memo can know it). */
function freshMessage(): Uint8Array {
  return sha256(`dsm bench consensus ${salt} ${counter++}`);
}

/** hash_to_G2 straight from noble: bypasses (and does not fill) bls.ts's hash memo. */
function rawHash(message: Uint8Array): G2Point {
  return noble.hash(message, SIG_DST);
}

function bigIntTo32(x: bigint): Uint8Array {
  return Uint8Array.from(Buffer.from(x.toString(16).padStart(64, "0"), "hex"));
}

function bytesToBigInt(b: Uint8Array): bigint {
  return BigInt("0x" + toHex(b));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median ms of `iters` timed calls of fn(prep()); prep is not timed. fn must return true. */
function timeMs<T>(label: string, iters: number, prep: () => T, fn: (x: T) => boolean): number {
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const input = prep();
    const t = now();
    const ok = fn(input);
    times.push(now() - t);
    if (!ok) throw new Error(`consensus bench: ${label} did not verify`);
  }
  return median(times);
}

// --- validators -----------------------------------------------------------------------

interface Keys {
  sks: Uint8Array[];
  pkBytes: Uint8Array[];
  pkPoints: G1Point[];
  /** skSum[k] = sk_0 + ... + sk_{k-1} mod r: signing with it gives the aggregate of k signatures. */
  skSum: Uint8Array[];
}

function makeKeys(n: number): Keys {
  const sks: Uint8Array[] = [];
  const pkBytes: Uint8Array[] = [];
  const pkPoints: G1Point[] = [];
  const skSum: Uint8Array[] = [new Uint8Array(32)];
  let acc = 0n;
  for (let i = 0; i < n; i++) {
    const sk = blsKeygen(sha256(`dsm bench validator ${i}`));
    const pk = blsPublicKey(sk);
    sks.push(sk);
    pkBytes.push(pk);
    pkPoints.push(parsePublicKey(pk)!);
    acc = (acc + bytesToBigInt(sk)) % R;
    skSum.push(bigIntTo32(acc));
  }
  return { sks, pkBytes, pkPoints, skSum };
}

/** A ValidatorSet over real keys; its constructor only reads bls_pub, node_id and peer_id. */
function validatorSet(keys: Keys, n: number): ValidatorSet {
  const validators = keys.pkBytes.slice(0, n).map((pk, i) => ({
    bls_pub: toHex(pk),
    node_id: toHex(sha256(`bench node ${i}`)),
    peer_id: peerIdOf(ed25519PublicOf(sha256(`bench node p2p ${i}`))),
  }));
  return new ValidatorSet({ validators } as unknown as Genesis);
}

/** A fresh message and the aggregate signature of validators 0..n-1 over it (one G2 multiplication). */
function freshAggregate(keys: Keys, n: number): { message: Uint8Array; agg: Uint8Array } {
  const message = freshMessage();
  return { message, agg: noble.Signature.toBytes(noble.sign(rawHash(message), keys.skSum[n]!)) };
}

// --- the BLS primitives ---------------------------------------------------------------

function runBls(iters: number): Omit<ConsensusSummary, "sim" | "iters"> {
  const single = 3 * iters; // the one-signature figures and the baselines are cheap, and noisy
  const maxN = Math.max(...BLS_NS);
  note(`consensus: ${maxN} BLS keys`);
  const keys = makeKeys(maxN);
  const sk0 = keys.sks[0]!;
  const pk0 = keys.pkPoints[0]!;

  // Warm-up: noble's first calls pay for JIT and lazily built tables.
  for (let i = 0; i < 2; i++) {
    const m = freshMessage();
    const s = blsSign(sk0, m);
    if (!blsVerify(pk0, m, s) || !noble.verify(parseSignature(s)!, rawHash(m), pk0)) throw new Error("consensus bench: warm-up did not verify");
  }

  note("consensus: baselines and single-signature figures");
  const rawCheck = () => {
    const h = rawHash(freshMessage());
    return { h, sig: parseSignature(noble.Signature.toBytes(noble.sign(h, sk0)))! };
  };
  const pairingMs = timeMs("pairing", single, () => rawHash(freshMessage()), (h) => !bls12_381.fields.Fp12.eql(bls12_381.pairing(pk0, h), bls12_381.fields.Fp12.ONE));
  const checkMs = timeMs("pairing check", single, rawCheck, (x) => noble.verify(x.sig, x.h, pk0));
  const hashMs = timeMs("hash_to_G2", single, freshMessage, (m) => !rawHash(m).is0());
  const signMs = timeMs("sign", single, freshMessage, (m) => blsSign(sk0, m).length === 96);
  const signMemoMs = timeMs(
    "sign (hash memo warm)",
    single,
    () => {
      const m = freshMessage();
      blsSign(keys.sks[1]!, m); // another validator signed the same digest: its hash is memoised
      return m;
    },
    (m) => blsSign(sk0, m).length === 96,
  );
  // A signature made by noble directly, so bls.ts's hash memo has not seen the message.
  const coldSig = () => {
    const message = freshMessage();
    return { message, sig: noble.Signature.toBytes(noble.sign(rawHash(message), sk0)) };
  };
  const verifyMs = timeMs("verify", single, coldSig, (x) => blsVerify(pk0, x.message, x.sig));
  const verifyMemoMs = timeMs(
    "verify (hash memo warm)",
    single,
    () => {
      const message = freshMessage();
      return { message, sig: blsSign(sk0, message) };
    },
    (x) => blsVerify(pk0, x.message, x.sig),
  );

  const x = (ms: number) => fmtRatio(ms / checkMs);
  const rows: (string | number)[][] = [
    ["baseline: one pairing e(P, Q) (noble)", "", fmtUs(pairingMs), x(pairingMs)],
    ["baseline: pairing check (longSignatures.verify, decoded, hashed)", "", fmtUs(checkMs), x(checkMs)],
    ["hash_to_G2 (noble, fresh message)", "", fmtUs(hashMs), x(hashMs)],
    ["blsSign (fresh message)", "", fmtUs(signMs), x(signMs)],
    ["blsSign (digest already hashed: memo warm)", "", fmtUs(signMemoMs), x(signMemoMs)],
    ["blsVerify (key point, sig bytes, fresh message)", "", fmtUs(verifyMs), x(verifyMs)],
    ["blsVerify (as above, digest hashed: memo warm)", "", fmtUs(verifyMemoMs), x(verifyMemoMs)],
  ];

  // n signatures over one message, once: aggregation has no memo (bytes are decoded on every call).
  note(`consensus: ${maxN} signatures to aggregate`);
  const aggMessage = freshMessage();
  const aggHash = rawHash(aggMessage);
  const sigBytes = keys.sks.map((sk) => noble.Signature.toBytes(noble.sign(aggHash, sk)));
  const sigPoints = sigBytes.map((s) => parseSignature(s)!);

  const bls: ConsensusSummary["bls"] = [];
  for (const n of BLS_NS) {
    note(`consensus: BLS figures at n = ${n}`);
    const expect = toHex(noble.Signature.toBytes(noble.sign(aggHash, keys.skSum[n]!)));
    if (toHex(blsAggregateSignatures(sigBytes.slice(0, n))) !== expect) throw new Error(`consensus bench: aggregate of ${n} is not the signature of the summed key`);
    const set = validatorSet(keys, n);
    const signers = signersBitfield(Array.from({ length: n }, (_, i) => i), n);
    const pkPoints = keys.pkPoints.slice(0, n);
    const pkBytes = keys.pkBytes.slice(0, n);
    const aggBytesMs = timeMs(`aggregate ${n} (bytes)`, iters, () => sigBytes.slice(0, n), (s) => toHex(blsAggregateSignatures(s)) === expect);
    const aggPointsMs = timeMs(`aggregate ${n} (points)`, iters, () => sigPoints.slice(0, n), (s) => toHex(blsAggregateSignatures(s)) === expect);
    const favPointsMs = timeMs(`FastAggregateVerify ${n} (points)`, iters, () => freshAggregate(keys, n), (a) => blsFastAggregateVerify(pkPoints, a.message, a.agg));
    const favBytesMs = timeMs(`FastAggregateVerify ${n} (bytes)`, iters, () => freshAggregate(keys, n), (a) => blsFastAggregateVerify(pkBytes, a.message, a.agg));
    const certMs = timeMs(
      `certificate ${n}`,
      iters,
      () => {
        const a = freshAggregate(keys, n);
        return { message: a.message, agg: toHex(a.agg) };
      },
      (a) => set.quorumProblem(signers, a.message, a.agg) === null,
    );
    rows.push(
      [`aggregate n signatures (from bytes)`, n, fmtUs(aggBytesMs), x(aggBytesMs)],
      [`aggregate n signatures (decoded points)`, n, fmtUs(aggPointsMs), x(aggPointsMs)],
      [`FastAggregateVerify, n key points, fresh message`, n, fmtUs(favPointsMs), x(favPointsMs)],
      [`FastAggregateVerify, n keys from bytes`, n, fmtUs(favBytesMs), x(favBytesMs)],
      [`certificate: ValidatorSet.quorumProblem, n signers`, n, fmtUs(certMs), x(certMs)],
    );
    bls.push({
      n,
      aggregate_bytes_ms: r3(aggBytesMs),
      aggregate_points_ms: r3(aggPointsMs),
      fav_points_ms: r3(favPointsMs),
      fav_bytes_ms: r3(favBytesMs),
      certificate_ms: r3(certMs),
      certificate_pairing_checks: r3(certMs / checkMs),
    });
  }

  say(table(`BLS12-381 (@noble/curves), median of ${single} (single-signature rows) or ${iters} (rows with n); last column = cost in raw pairing checks measured in this run`, ["operation", "n", "ms", "pairing checks"], rows));
  say("fresh message per timed call: figures marked 'memo warm' reuse bls.ts's hash-to-G2 memo on purpose, as a validator does for a digest it signed itself");
  return {
    pairing_ms: r3(pairingMs),
    pairing_check_ms: r3(checkMs),
    hash_to_g2_ms: r3(hashMs),
    sign_ms: r3(signMs),
    sign_hash_memo_ms: r3(signMemoMs),
    verify_ms: r3(verifyMs),
    verify_hash_memo_ms: r3(verifyMemoMs),
    bls,
  };
}

// --- one epoch of the simulation ------------------------------------------------------

const SIM_OPTS = { seed: 1, epochs: 1, edges: 3, perEpoch: 2, gstMs: 0, dropRate: 0, maxDelayMs: 100, roundTimeoutMs: 1000 } as const;

/**
 * Baseline: the mesh's n validators each sign one fresh digest (the same one, as every vote of a
 * phase signs the same digest) and each signature is verified once, with bls.ts as is (so the
 * digest is hashed to G2 once, as in the simulation). Median of three passes.
 */
function rawWorkMs(secrets: readonly Uint8Array[], keys: readonly G1Point[]): number {
  const passes: number[] = [];
  for (let pass = 0; pass < 3; pass++) {
    const message = freshMessage();
    const t = now();
    for (let i = 0; i < secrets.length; i++) {
      const sig = blsSign(secrets[i]!, message);
      if (!blsVerify(keys[i]!, message, sig)) throw new Error("consensus bench: baseline signature did not verify");
    }
    passes.push(now() - t);
  }
  return median(passes);
}

async function runSim(): Promise<ConsensusSummary["sim"]> {
  const maxN = envInt("BENCH_SIM_MAX_N", 64);
  const ns = SIM_NS.filter((n) => n <= maxN);
  if (ns.length < SIM_NS.length) say(`simulation capped at n = ${maxN} (BENCH_SIM_MAX_N)`);
  // Warm-up with a size not measured (memos are per mesh, so nothing carries over to the others).
  await simulate({ n: 3, ...SIM_OPTS });

  const rows: (string | number)[][] = [];
  const out: ConsensusSummary["sim"] = [];
  for (const n of ns) {
    note(`consensus: simulating one epoch with n = ${n}`);
    let t = now();
    const mesh = await simMesh(n);
    const genesisMs = now() - t;
    t = now();
    const cold = await simulate({ n, ...SIM_OPTS });
    const coldMs = now() - t;
    t = now();
    const warm = await simulate({ n, ...SIM_OPTS });
    const warmMs = now() - t;
    for (const r of [cold, warm]) {
      const at = r.finalizedAtMs.get(0);
      if (at === undefined || r.violations.length > 0 || r.honest.some((i) => r.committed.get(i)!.length !== 1)) {
        throw new Error(`consensus bench: n = ${n} did not finalize epoch 0 everywhere (${r.violations.join("; ")})`);
      }
    }
    const finality = cold.finalizedAtMs.get(0)! - cold.lastEpochEndMs;
    const warmFinality = warm.finalizedAtMs.get(0)! - warm.lastEpochEndMs;
    if (warmFinality !== finality) note(`consensus: n = ${n}: warm run finalized at ${warmFinality} ms, cold at ${finality} ms`);
    const baseMs = rawWorkMs(mesh.secrets, mesh.set.keys);
    rows.push([n, `${genesisMs.toFixed(0)} ms`, `${coldMs.toFixed(0)} ms`, `${warmMs.toFixed(0)} ms`, `${finality.toFixed(0)} ms`, `${baseMs.toFixed(0)} ms`, fmtRatio(coldMs / baseMs)]);
    out.push({ n, genesis_ms: Math.round(genesisMs), cold_ms: Math.round(coldMs), warm_ms: Math.round(warmMs), finality_sim_ms: r3(finality), baseline_ms: Math.round(baseMs), ratio: r3(coldMs / baseMs) });
  }
  say(
    table(
      `one epoch in the in-process simulation (all validators in this process, real BLS; maxDelay ${SIM_OPTS.maxDelayMs} ms, no drops, no byzantine)`,
      ["n", "genesis (excluded)", "simulate, cold", "memo-warm rerun", "finality after epoch end (simulated)", "baseline: n signs + n verifies (median of 3)", "cold/baseline"],
      rows,
    ),
  );
  say("cold = the first (single) run for that n: every signature made and checked once. The simulation shares one verification memo among all n validators, so its CPU cost is about one validator's checks, not n of them; per height each validator makes one BLS signature (its epoch signature S; proposals and votes are Ed25519, microseconds each), so cold/baseline stays near 1 and grows with n only through the certificate's aggregation and the simulation's own work");
  return out;
}

export async function runConsensus(): Promise<ConsensusSummary> {
  const iters = envInt("BENCH_BLS_ITERS", 5);
  const t = now();
  const bls = runBls(iters);
  note(`consensus: BLS part took ${((now() - t) / 1000).toFixed(1)} s`);
  const sim = await runSim();
  return { iters, ...bls, sim };
}

if (import.meta.main) await runConsensus();
