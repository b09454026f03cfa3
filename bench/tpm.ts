// TPM costs against a software TPM (swtpm, via tpm2-tss over bun:ffi): identity-key signing
// next to the software identity key, TPM2_Quote next to one TPM sign and next to verifying
// the same quote in TypeScript, all measured in this run. Skipped (null) without swtpm or the
// tpm2-tss libraries. BENCH_TPM_SIGNS / BENCH_TPM_QUOTES set the sample sizes (200 / 50).
import * as path from "node:path";
import { importPublicKey, verify } from "../src/crypto/p256.ts";
import { toHex } from "../src/encoding/hex.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { pcrCompositeDigest, verifyQuote } from "../src/tpm/quote.ts";
import { TpmIdentityKey } from "../src/tpm/tpm-key.ts";
import { TpmError } from "../src/tpm/tpm.ts";
import { haveSwtpm, startSwtpm, type Swtpm } from "../test/helpers/swtpm.ts";
import { pipelineRun } from "./ingest.ts";
import { envInt, eveLines, fmtRate, fmtRatio, fmtUs, joinLines, note, now, removeTempDir, say, table, tempDir } from "./lib.ts";

/** A persistent handle of its own, so the bench never meets a key another test left. */
const BENCH_HANDLE = 0x81000177;
const PCRS = [0, 1, 2, 3, 4, 5, 6, 7] as const;

export interface TpmSummary {
  tpm: "swtpm";
  signs: number;
  quotes: number;
  sign_us: { software: Stat; tpm: Stat; ratio: number };
  quote_us: { quote: Stat; first_quote_with_ak: number; tpm_sign: Stat; verify: Stat; quote_per_sign: number; quote_per_verify: number };
  ingest: { n: number; reps: number; tpm_events_per_s: number; software_events_per_s: number; ratio: number; within_10pct: boolean };
}

interface Stat {
  median: number;
  p95: number;
}

const r3 = (x: number) => Number(x.toPrecision(3));

function stat(us: number[]): Stat {
  const s = [...us].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, p95: s[Math.max(0, Math.ceil(0.95 * s.length) - 1)]! };
}

const rounded = (s: Stat): Stat => ({ median: r3(s.median), p95: r3(s.p95) });

function digest(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

async function timeUs<T>(fn: () => T | Promise<T>): Promise<[T, number]> {
  const t = now();
  const out = await fn();
  return [out, (now() - t) * 1000];
}

// ---------------------------------------------------------------------------
// 1. Identity-key signing: TPM vs software, interleaved one for one.

async function signs(tpmKey: TpmIdentityKey, swKey: SoftwareIdentityKey, n: number): Promise<TpmSummary["sign_us"]> {
  const tpmPub = importPublicKey(tpmKey.publicKey);
  const swPub = importPublicKey(swKey.publicKey);
  // Warm-up (JIT, FFI trampolines, the swtpm connection), each signature checked.
  for (let i = 0; i < 10; i++) {
    const d = digest();
    if (!verify(tpmPub, d, await tpmKey.sign(d)) || !verify(swPub, d, await swKey.sign(d))) throw new Error("tpm bench: warm-up signature did not verify");
  }
  const tpmUs: number[] = [];
  const swUs: number[] = [];
  for (let i = 0; i < n; i++) {
    const d1 = digest();
    const d2 = digest();
    const [sigT, t] = await timeUs(() => tpmKey.sign(d1));
    const [sigS, s] = await timeUs(() => swKey.sign(d2));
    tpmUs.push(t);
    swUs.push(s);
    if (i % 50 === 0 && (!verify(tpmPub, d1, sigT) || !verify(swPub, d2, sigS))) throw new Error("tpm bench: signature did not verify");
  }
  const tpm = stat(tpmUs);
  const software = stat(swUs);
  return { software, tpm, ratio: tpm.median / software.median };
}

// ---------------------------------------------------------------------------
// 2. Quotes: TPM2_Quote over PCRs 0-7, each next to one TPM sign and to verifyQuote of it.

async function quotes(tpmKey: TpmIdentityKey, n: number): Promise<TpmSummary["quote_us"]> {
  const pcrs = [...PCRS];
  // The first quote derives the attestation key (createPrimary in the endorsement hierarchy).
  const [, firstUs] = await timeUs(() => tpmKey.quote(digest(), pcrs));
  const acceptedDigests = [toHex(pcrCompositeDigest(tpmKey.pcrRead(pcrs)))];
  const expectedAkSec1 = tpmKey.attestationKeySec1();
  const check = (nonce: Uint8Array, q: ReturnType<TpmIdentityKey["quote"]>) => {
    const r = verifyQuote({ ...q, nonce, pcrs, acceptedDigests, expectedAkSec1 });
    if (!r.ok) throw new Error(`tpm bench: quote did not verify (${r.check}: ${r.reason})`);
  };
  for (let i = 0; i < 5; i++) {
    const nonce = digest();
    check(nonce, tpmKey.quote(nonce, pcrs));
    await tpmKey.sign(digest());
  }
  const quoteUs: number[] = [];
  const signUs: number[] = [];
  const verifyUs: number[] = [];
  for (let i = 0; i < n; i++) {
    const nonce = digest();
    const [q, tq] = await timeUs(() => tpmKey.quote(nonce, pcrs));
    const [, tv] = await timeUs(() => check(nonce, q));
    const [, ts] = await timeUs(() => tpmKey.sign(digest()));
    quoteUs.push(tq);
    verifyUs.push(tv);
    signUs.push(ts);
  }
  const quote = stat(quoteUs);
  const tpmSign = stat(signUs);
  const ver = stat(verifyUs);
  return { quote, first_quote_with_ak: firstUs, tpm_sign: tpmSign, verify: ver, quote_per_sign: quote.median / tpmSign.median, quote_per_verify: quote.median / ver.median };
}

// ---------------------------------------------------------------------------
// 3. Ingest with a TPM identity vs a software one: bench/ingest.ts's pipeline driver, the same
// events, reps alternating which node goes first; best of each. Microblocks are signed by the
// delegated in-memory key on both, so the TPM only signs that key's certificate.

async function ingest(tcti: string, n: number, reps: number): Promise<TpmSummary["ingest"] & { tpmMs: number[]; swMs: number[] }> {
  const lines = eveLines(n);
  const buf = joinLines(lines);
  const w = Math.min(n, 2000);
  const warm = joinLines(lines.slice(0, w));
  await pipelineRun(warm, w);
  await pipelineRun(warm, w, true, tcti);
  const tpmMs: number[] = [];
  const swMs: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    note(`tpm: ingest rep ${rep + 1}/${reps}`);
    if (rep % 2 === 0) {
      tpmMs.push(await pipelineRun(buf, n, true, tcti));
      swMs.push(await pipelineRun(buf, n));
    } else {
      swMs.push(await pipelineRun(buf, n));
      tpmMs.push(await pipelineRun(buf, n, true, tcti));
    }
  }
  const tpmEps = (n * 1000) / Math.min(...tpmMs);
  const swEps = (n * 1000) / Math.min(...swMs);
  const ratio = tpmEps / swEps;
  return { n, reps, tpm_events_per_s: Math.round(tpmEps), software_events_per_s: Math.round(swEps), ratio: r3(ratio), within_10pct: Math.abs(1 - ratio) <= 0.1, tpmMs, swMs };
}

// ---------------------------------------------------------------------------

export async function runTpm(): Promise<TpmSummary | null> {
  if (!haveSwtpm()) {
    say("\nTPM bench skipped: swtpm is not installed (apt-get install swtpm; .ci/run installs it with the tpm2-tss libraries)");
    return null;
  }
  const nSigns = envInt("BENCH_TPM_SIGNS", 200);
  const nQuotes = envInt("BENCH_TPM_QUOTES", 50);
  const t0 = now();
  const stateDir = tempDir("swtpm");
  let sw: Swtpm | null = null;
  let tpmKey: TpmIdentityKey | null = null;
  try {
    try {
      sw = await startSwtpm(stateDir);
      tpmKey = TpmIdentityKey.create(sw.tcti, { handle: BENCH_HANDLE, explicit: true }).key;
    } catch (e) {
      if (!(e instanceof TpmError) && sw !== null) throw e;
      say(`\nTPM bench skipped: ${sw === null ? "swtpm did not start" : "no TPM through tpm2-tss"}: ${(e as Error).message.split("\n")[0]}`);
      return null;
    }
    const swDir = tempDir("tpm-swkey");
    const swKey = SoftwareIdentityKey.create(path.join(swDir, "identity.pem"), false);

    note(`tpm: ${nSigns} identity-key signs, TPM and software interleaved`);
    const s = await signs(tpmKey, swKey, nSigns);
    note(`tpm: ${nQuotes} quotes of PCRs 0-7, each with a TPM sign and verifyQuote`);
    const q = await quotes(tpmKey, nQuotes);

    say(
      table(
        `TPM: identity key and attestation on swtpm (tpm2-tss over bun:ffi), median and p95 of ${nSigns} signs / ${nQuotes} quotes, interleaved`,
        ["operation", "median us", "p95 us", "vs baseline", "baseline"],
        [
          ["software identity key sign (SoftwareIdentityKey, node:crypto)", fmtUs(s.software.median), fmtUs(s.software.p95), "1.00x", "-"],
          ["TPM identity key sign (TpmIdentityKey.sign)", fmtUs(s.tpm.median), fmtUs(s.tpm.p95), fmtRatio(s.ratio), "software sign"],
          ["TPM sign, interleaved with the quotes", fmtUs(q.tpm_sign.median), fmtUs(q.tpm_sign.p95), "1.00x", "-"],
          ["TPM2_Quote, PCRs 0-7 sha256 (TpmIdentityKey.quote)", fmtUs(q.quote.median), fmtUs(q.quote.p95), fmtRatio(q.quote_per_sign), "TPM sign"],
          ["verifyQuote of the same quote (pure TS)", fmtUs(q.verify.median), fmtUs(q.verify.p95), fmtRatio(q.verify.median / q.tpm_sign.median), "TPM sign"],
          ["first quote (derives the attestation key), once", fmtUs(q.first_quote_with_ak), "", fmtRatio(q.first_quote_with_ak / q.tpm_sign.median), "TPM sign"],
        ],
      ),
    );
    say(`   TPM sign / software sign ${fmtRatio(s.ratio)}; quote / TPM sign ${fmtRatio(q.quote_per_sign)}; quote / verifyQuote ${fmtRatio(q.quote_per_verify)}`);
    const chip = (ms: number) => ((ms * 1000) / s.tpm.median).toFixed(0);
    say(`   this is swtpm, a software TPM on loopback: a real TPM chip signs in roughly 20-100 ms, ${chip(20)}-${chip(100)}x the swtpm sign here`);
    // One TPM client at a time: the bench key's context goes before the nodes open theirs.
    tpmKey.close();
    tpmKey = null;
    const nIngest = envInt("BENCH_TPM_N", 20_000);
    const reps = envInt("BENCH_TPM_REPS", 3);
    note(`tpm: ingest of ${nIngest} events, TPM node and software node, ${reps} reps alternating`);
    const g = await ingest(sw.tcti, nIngest, reps);
    const rate = (ms: number[]) => ms.map((m) => fmtRate((nIngest * 1000) / m)).join(" / ");
    say(
      table(
        `   Ingest, ${nIngest} EVE alerts through IngestPipeline (bench/ingest.ts's driver), TPM identity vs software identity; best of ${reps}, alternating`,
        ["identity key", "events/s", "us/event", "each rep", "vs software"],
        [
          ["software (identity.pem)", fmtRate(g.software_events_per_s), fmtUs(1e6 / g.software_events_per_s), rate(g.swMs), "1.00x"],
          ["TPM (swtpm), delegated in-memory signing key", fmtRate(g.tpm_events_per_s), fmtUs(1e6 / g.tpm_events_per_s), rate(g.tpmMs), fmtRatio(g.ratio)],
        ],
      ),
    );
    say(`   TPM/software ingest ratio ${fmtRatio(g.ratio)}: ${g.within_10pct ? "within" : "NOT within"} 10% (required with delegation)`);
    say(`   TPM bench ${((now() - t0) / 1000).toFixed(1)} s`);
    removeTempDir(swDir);
    return {
      tpm: "swtpm",
      signs: nSigns,
      quotes: nQuotes,
      sign_us: { software: rounded(s.software), tpm: rounded(s.tpm), ratio: r3(s.ratio) },
      quote_us: {
        quote: rounded(q.quote),
        first_quote_with_ak: r3(q.first_quote_with_ak),
        tpm_sign: rounded(q.tpm_sign),
        verify: rounded(q.verify),
        quote_per_sign: r3(q.quote_per_sign),
        quote_per_verify: r3(q.quote_per_verify),
      },
      ingest: { n: g.n, reps: g.reps, tpm_events_per_s: g.tpm_events_per_s, software_events_per_s: g.software_events_per_s, ratio: g.ratio, within_10pct: g.within_10pct },
    };
  } finally {
    tpmKey?.close();
    await sw?.stop();
    removeTempDir(stateDir);
  }
}

if (import.meta.main) await runTpm();
