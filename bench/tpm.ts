// TPM costs against a software TPM (swtpm, via tpm2-tss over bun:ffi): identity-key signing
// next to the software identity key, TPM2_Quote next to one TPM sign and next to verifying
// the same quote in TypeScript, all measured in this run. Then, on a swtpm manufactured with
// EKs and certificates (swtpm_setup --create-ek-cert), what the EK-salted HMAC sessions cost:
// sign, quote and certify with the password session vs a salted session, EK loading
// (persistent vs TPM2_CreatePrimary), reading the EK certificate from NV, and the key
// object's whole operation. Skipped (null) without swtpm or the tpm2-tss libraries.
// BENCH_TPM_SIGNS / BENCH_TPM_QUOTES / BENCH_TPM_SESSION_OPS set the sample sizes (200 / 50 / 100).
import * as fs from "node:fs";
import * as path from "node:path";
import { importPublicKey, verify } from "../src/crypto/p256.ts";
import { toHex } from "../src/encoding/hex.ts";
import { SoftwareIdentityKey } from "../src/identity/identity-key.ts";
import { type EkKind, loadEk, readEkCertificate } from "../src/tpm/ek.ts";
import { pcrCompositeDigest, verifyQuote } from "../src/tpm/quote.ts";
import { TpmIdentityKey, withTpm } from "../src/tpm/tpm-key.ts";
import { eccSigningTemplate, type Tpm, TpmError } from "../src/tpm/tpm.ts";
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
  sessions: SessionSummary | null;
}

interface SessionSummary {
  ops: number;
  /** One connection, the key and AK loaded: the command alone, password vs a salted session kept open. */
  command_us: Record<"sign" | "quote" | "certify", { password: Stat; salted: Stat; ratio: number }>;
  /** sign with a salted session started and flushed for it, per salting EK (loaded once). */
  sign_fresh_session_us: Record<EkKind, Stat>;
  /** loadEk + release: persistent (TR_FromTPMPublic + ReadPublic) vs TPM2_CreatePrimary + flush. */
  ek_load_us: { rsa2048_persistent: Stat; ecc_p384_persistent: Stat; rsa2048_create: Stat; ecc_p256_create: Stat; ecc_p384_create: Stat };
  nv_read_us: { rsa2048_cert: Stat; ecc_p384_cert: Stat; cert_bytes: { rsa2048: number; "ecc-p384": number } };
  /** TpmIdentityKey operations end to end (connect, EK, session, command, flush, disconnect) vs a password sign on a fresh connection. */
  key_us: { password_sign_connect: Stat; sign: Stat; sign_no_cert: Stat; quote: Stat; certify: Stat; activate: Stat; sign_ratio: number };
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
// 4. Sessions: the EK-salted HMAC sessions every TpmIdentityKey command now uses, on a TPM
// manufactured like a provisioned one (persistent RSA 2048 and P-384 EKs, certificates in NV).

/** n rounds, each running every fn once in turn (interleaved, so drift hits all alike). */
function rounds(n: number, fns: Record<string, () => unknown>): Record<string, Stat> {
  const names = Object.keys(fns);
  const us: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  for (let w = 0; w < 3; w++) for (const k of names) fns[k]!();
  for (let i = 0; i < n; i++) {
    for (const k of names) {
      const t = now();
      fns[k]!();
      us[k]!.push((now() - t) * 1000);
    }
  }
  return Object.fromEntries(names.map((k) => [k, stat(us[k]!)]));
}

function commands(tpm: Tpm, keyHandle: number, n: number): Pick<SessionSummary, "command_us" | "sign_fresh_session_us"> {
  const key = tpm.loadPersistent(keyHandle);
  const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
  const ek = loadEk(tpm, "rsa2048");
  const s = tpm.startSaltedSession(ek.handle);
  const s2 = tpm.startSaltedSession(ek.handle);
  tpm.setSessionAttributes(s2, 0x01); // continueSession only: ESYS takes one encrypting session per command
  try {
    const pcrs = [...PCRS];
    const r = rounds(n, {
      signPw: () => tpm.sign(key, digest()),
      signS: () => tpm.sign(key, digest(), s),
      quotePw: () => tpm.quote(ak.handle, digest(), pcrs),
      quoteS: () => tpm.quote(ak.handle, digest(), pcrs, s),
      certPw: () => tpm.certify(key, ak.handle, digest()),
      certS: () => tpm.certify(key, ak.handle, digest(), { object: s, sign: s2 }),
    });
    const pair = (pw: Stat, salted: Stat) => ({ password: rounded(pw), salted: rounded(salted), ratio: r3(salted.median / pw.median) });
    const fresh: Partial<Record<EkKind, Stat>> = {};
    for (const kind of ["rsa2048", "ecc-p256", "ecc-p384"] as const) {
      const salt = kind === "rsa2048" ? ek : loadEk(tpm, kind);
      try {
        fresh[kind] = rounded(
          rounds(n, {
            x: () => {
              const f = tpm.startSaltedSession(salt.handle);
              try {
                tpm.sign(key, digest(), f);
              } finally {
                tpm.flush(f);
              }
            },
          }).x!,
        );
      } finally {
        if (salt !== ek) salt.release();
      }
    }
    return {
      command_us: { sign: pair(r.signPw!, r.signS!), quote: pair(r.quotePw!, r.quoteS!), certify: pair(r.certPw!, r.certS!) },
      sign_fresh_session_us: fresh as Record<EkKind, Stat>,
    };
  } finally {
    tpm.flush(s2);
    tpm.flush(s);
    ek.release();
    tpm.flush(ak.handle);
  }
}

function ekAndNv(tpm: Tpm, n: number): Pick<SessionSummary, "ek_load_us" | "nv_read_us"> {
  const load = (kind: EkKind, persistent: boolean) => () => loadEk(tpm, kind, { persistent }).release();
  const e = rounds(n, {
    rsaP: load("rsa2048", true),
    p384P: load("ecc-p384", true),
    rsaC: load("rsa2048", false),
    p256C: load("ecc-p256", false),
    p384C: load("ecc-p384", false),
  });
  const sizes = { rsa2048: readEkCertificate(tpm, "rsa2048")!.length, "ecc-p384": readEkCertificate(tpm, "ecc-p384")!.length };
  const v = rounds(n, { rsa: () => readEkCertificate(tpm, "rsa2048"), p384: () => readEkCertificate(tpm, "ecc-p384") });
  return {
    ek_load_us: { rsa2048_persistent: rounded(e.rsaP!), ecc_p384_persistent: rounded(e.p384P!), rsa2048_create: rounded(e.rsaC!), ecc_p256_create: rounded(e.p256C!), ecc_p384_create: rounded(e.p384C!) },
    nv_read_us: { rsa2048_cert: rounded(v.rsa!), ecc_p384_cert: rounded(v.p384!), cert_bytes: sizes },
  };
}

async function keyOps(mfgKey: TpmIdentityKey, plainKey: TpmIdentityKey, n: number): Promise<SessionSummary["key_us"]> {
  // The key object's operations are synchronous FFI underneath; sign() only wraps in a promise.
  const us: Record<string, number[]> = { pw: [], sign: [], signNoCert: [], quote: [], certify: [], activate: [] };
  const { blob, secret } = credentialFor(mfgKey);
  const time = async (k: string, fn: () => unknown) => {
    const t = now();
    await fn();
    us[k]!.push((now() - t) * 1000);
  };
  const passwordSign = () => withTpm(mfgKey.tcti, (tpm) => tpm.sign(tpm.loadPersistent(mfgKey.persistentHandle), digest()));
  for (let i = 0; i < n + 3; i++) {
    if (i === 3) for (const k of Object.keys(us)) us[k] = [];
    await time("pw", passwordSign);
    await time("sign", () => mfgKey.sign(digest()));
    await time("signNoCert", () => plainKey.sign(digest()));
    await time("quote", () => mfgKey.quote(digest(), [...PCRS]));
    await time("certify", () => mfgKey.certifyIdentity(digest()));
    await time("activate", () => mfgKey.activateCredential(blob, secret));
  }
  const st = (k: string) => rounded(stat(us[k]!));
  return {
    password_sign_connect: st("pw"),
    sign: st("sign"),
    sign_no_cert: st("signNoCert"),
    quote: st("quote"),
    certify: st("certify"),
    activate: st("activate"),
    sign_ratio: r3(stat(us.sign!).median / stat(us.pw!).median),
  };
}

/** A credential for the key's AK against its EK, made by tpm2_makecredential -T none (no TPM) and checked once. */
function credentialFor(key: TpmIdentityKey): { blob: Uint8Array; secret: Uint8Array } {
  const ekPublic = key.endorsement().publicArea;
  const akName = withTpm(key.tcti, (tpm) => {
    const ak = tpm.createPrimary("endorsement", eccSigningTemplate(true));
    try {
      return tpm.trName(ak.handle);
    } finally {
      tpm.flush(ak.handle);
    }
  });
  const dir = tempDir("tpm-cred");
  const secret = crypto.getRandomValues(new Uint8Array(32));
  fs.writeFileSync(path.join(dir, "ek.pub"), Buffer.concat([Buffer.from([ekPublic.length >> 8, ekPublic.length & 0xff]), ekPublic])); // TPM2B_PUBLIC
  fs.writeFileSync(path.join(dir, "secret"), secret);
  const p = Bun.spawnSync(["tpm2_makecredential", "-T", "none", "-e", "ek.pub", "-s", "secret", "-n", toHex(akName), "-o", "cred"], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`tpm bench: tpm2_makecredential failed: ${p.stderr.toString()}`);
  // tpm2-tools' credential file: u32 magic, u32 version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET
  const f = new Uint8Array(fs.readFileSync(path.join(dir, "cred")));
  removeTempDir(dir);
  const n1 = (f[8]! << 8) | f[9]!;
  const n2 = (f[10 + n1]! << 8) | f[11 + n1]!;
  const c = { blob: f.slice(10, 10 + n1), secret: f.slice(12 + n1, 12 + n1 + n2) };
  // The activation bench must measure a working activation.
  if (toHex(key.activateCredential(c.blob, c.secret)) !== toHex(secret)) throw new Error("tpm bench: activation gave another secret");
  return c;
}

async function sessionsBench(plainKey: TpmIdentityKey, n: number): Promise<SessionSummary | null> {
  if (Bun.which("swtpm_setup") === null || Bun.which("tpm2_makecredential") === null) {
    say("\nTPM session bench skipped: swtpm_setup (swtpm-tools) and tpm2-tools are needed to manufacture a TPM with EK certificates");
    return null;
  }
  const stateDir = tempDir("swtpm-ek");
  const mfg = await startSwtpm({ stateDir, ekCa: tempDir("swtpm-ekca") });
  try {
    const mfgKey = TpmIdentityKey.create(mfg.tcti, { handle: BENCH_HANDLE, explicit: true }).key;
    note(`tpm: sessions, ${n} rounds each, on a manufactured swtpm`);
    const one = withTpm(mfg.tcti, (tpm) => ({ ...commands(tpm, BENCH_HANDLE, n), ...ekAndNv(tpm, n) }));
    const key = await keyOps(mfgKey, plainKey, n);
    const c = one.command_us;
    const e = one.ek_load_us;
    const f = one.sign_fresh_session_us;
    const pwSign = c.sign.password.median;
    const row = (label: string, s: Stat, base: number, baseLabel: string) => [label, fmtUs(s.median), fmtUs(s.p95), fmtRatio(s.median / base), baseLabel];
    say(
      table(
        `TPM sessions on swtpm manufactured with EK certificates (RSA 2048 EK persistent at 0x81010001), median and p95 of ${n}, interleaved`,
        ["operation", "median us", "p95 us", "vs baseline", "baseline"],
        [
          row("TPM2_Sign, password session", c.sign.password, pwSign, "password sign"),
          row("TPM2_Sign, EK-salted HMAC session (kept open)", c.sign.salted, pwSign, "password sign"),
          row("TPM2_Quote PCRs 0-7, password", c.quote.password, c.quote.password.median, "password quote"),
          row("TPM2_Quote PCRs 0-7, salted session", c.quote.salted, c.quote.password.median, "password quote"),
          row("TPM2_Certify, password x2", c.certify.password, c.certify.password.median, "password certify"),
          row("TPM2_Certify, two salted sessions", c.certify.salted, c.certify.password.median, "password certify"),
          row("start salted session (RSA 2048 EK) + sign + flush", f.rsa2048, pwSign, "password sign"),
          row("start salted session (P-256 EK) + sign + flush", f["ecc-p256"], pwSign, "password sign"),
          row("start salted session (P-384 EK) + sign + flush", f["ecc-p384"], pwSign, "password sign"),
          row("loadEk RSA 2048, persistent (ReadPublic)", e.rsa2048_persistent, pwSign, "password sign"),
          row("loadEk P-384, persistent", e.ecc_p384_persistent, pwSign, "password sign"),
          row("loadEk RSA 2048, CreatePrimary + flush", e.rsa2048_create, pwSign, "password sign"),
          row("loadEk P-256, CreatePrimary + flush", e.ecc_p256_create, pwSign, "password sign"),
          row("loadEk P-384, CreatePrimary + flush", e.ecc_p384_create, pwSign, "password sign"),
          row(`EK certificate from NV, RSA (${one.nv_read_us.cert_bytes.rsa2048} B)`, one.nv_read_us.rsa2048_cert, pwSign, "password sign"),
          row(`EK certificate from NV, P-384 (${one.nv_read_us.cert_bytes["ecc-p384"]} B)`, one.nv_read_us.ecc_p384_cert, pwSign, "password sign"),
          row("connect + password sign + disconnect", key.password_sign_connect, key.password_sign_connect.median, "connect+password sign"),
          row("TpmIdentityKey.sign (connect, persistent EK, salted session)", key.sign, key.password_sign_connect.median, "connect+password sign"),
          row("TpmIdentityKey.sign, no EK certificate (P-256 EK derived)", key.sign_no_cert, key.password_sign_connect.median, "connect+password sign"),
          row("TpmIdentityKey.quote (AK derived, salted)", key.quote, key.password_sign_connect.median, "connect+password sign"),
          row("TpmIdentityKey.certifyIdentity", key.certify, key.password_sign_connect.median, "connect+password sign"),
          row("TpmIdentityKey.activateCredential (RSA EK, policy + salted)", key.activate, key.password_sign_connect.median, "connect+password sign"),
        ],
      ),
    );
    say(`   salted / password: sign ${fmtRatio(c.sign.ratio)}, quote ${fmtRatio(c.quote.ratio)}, certify ${fmtRatio(c.certify.ratio)} (session kept open); the key object's sign / connect+password sign ${fmtRatio(key.sign_ratio)}`);
    return { ops: n, ...one, key_us: key };
  } finally {
    await mfg.stop();
    removeTempDir(stateDir);
  }
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
    const sessions = await sessionsBench(tpmKey, envInt("BENCH_TPM_SESSION_OPS", 100));
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
      sessions,
    };
  } finally {
    tpmKey?.close();
    await sw?.stop();
    removeTempDir(stateDir);
  }
}

if (import.meta.main) await runTpm();
