// TPM 2.0 quote verification (src/tpm/attest.ts) against a real software TPM: swtpm on loopback,
// keys and quotes made with tpm2-tools, verified in pure TypeScript. No mocks.
//
// tpm2-tools 5.4 file formats, as found here: `tpm2_readpublic -f tss -o` writes TPM2B_PUBLIC
// (u16 size || TPMT_PUBLIC); `tpm2_quote -m` writes the bare TPMS_ATTEST; `tpm2_quote -s` writes
// TPMT_SIGNATURE; `tpm2_pcrread -o` writes the selected PCR values concatenated in ascending
// order; `tpm2_readpublic -n` / `-q` write the name / qualified name as raw bytes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { toHex } from "../src/encoding/hex.ts";
import {
  parseAttest,
  parsePublicArea,
  parseSignatureEcdsa,
  pcrCompositeDigest,
  qualifiedName,
  unwrapTpm2b,
  verifyQuote,
  type QuoteCheck,
  type VerifyQuoteInput,
} from "../src/tpm/quote.ts";
import { haveSwtpm, startSwtpm, type Swtpm } from "./helpers/swtpm.ts";
import { prng } from "./helpers/prng.ts";

const POLICY_PCRS = [0, 1, 2, 3, 4, 5, 6, 7];
const AK_ATTRS = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign";
// tpm2-tools gives a restricted ecc key an AES-128-CFB symmetric by default (a storage parent's
// template), which the TPM refuses for a signing key (0x2d6): ":null" asks for none.
const AK_ALG = "ecc256:ecdsa-sha256:null";
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

let tpm: Swtpm | null = null;
let work = "";

// There is no resource manager between tpm2-tools and swtpm, so objects a tool loads stay
// loaded, and swtpm has only 3 object slots (0x902 "out of memory for object contexts"):
// every tool that loads a context is followed by tpm2_flushcontext -t.
const LOADS_OBJECTS = new Set(["tpm2_createprimary", "tpm2_readpublic", "tpm2_quote"]);

function tools(args: string[]): string {
  const out = run(args);
  if (LOADS_OBJECTS.has(args[0]!)) run(["tpm2_flushcontext", "-t"]);
  return out;
}

function run(args: string[]): string {
  const p = Bun.spawnSync(args, {
    cwd: work,
    env: { ...process.env, TPM2TOOLS_TCTI: tpm!.tcti },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")} failed (${p.exitCode}): ${p.stderr.toString()}`);
  return p.stdout.toString();
}

const file = (name: string) => new Uint8Array(fs.readFileSync(path.join(work, name)));
const randomNonce = () => new Uint8Array(crypto.randomBytes(32));

interface Ak {
  ctx: string;
  tpm2bPublic: Uint8Array;
  publicArea: Uint8Array;
  nameFile: Uint8Array;
  qnameFile: Uint8Array;
}

function createAk(label: string, attrs = AK_ATTRS, alg = AK_ALG, hierarchy = "e"): Ak {
  const ctx = `${label}.ctx`;
  tools(["tpm2_createprimary", "-C", hierarchy, "-G", alg, "-a", attrs, "-c", ctx]);
  tools(["tpm2_readpublic", "-c", ctx, "-f", "tss", "-o", `${label}.pub`, "-n", `${label}.name`, "-q", `${label}.qname`]);
  const tpm2bPublic = file(`${label}.pub`);
  return {
    ctx,
    tpm2bPublic,
    publicArea: unwrapTpm2b(tpm2bPublic, "TPM2B_PUBLIC"),
    nameFile: file(`${label}.name`),
    qnameFile: file(`${label}.qname`),
  };
}

let quoteSeq = 0;
function takeQuote(ak: Ak, nonce: Uint8Array, selection = "sha256:0,1,2,3,4,5,6,7") {
  const n = quoteSeq++;
  tools([
    "tpm2_quote", "-c", ak.ctx, "-l", selection, "-q", toHex(nonce),
    "-m", `q${n}.msg`, "-s", `q${n}.sig`, "-o", `q${n}.pcrs`, "-g", "sha256",
  ]);
  return { attest: file(`q${n}.msg`), signature: file(`q${n}.sig`) };
}

/** PCR values of the sha256 bank, both from the binary output and the YAML, which must agree. */
function readPcrs(pcrs: number[]): Uint8Array[] {
  const out = tools(["tpm2_pcrread", `sha256:${pcrs.join(",")}`, "-o", "pcrs.bin"]);
  const bin = file("pcrs.bin");
  expect(bin.length).toBe(32 * pcrs.length);
  const values = pcrs.map((_, i) => bin.slice(32 * i, 32 * i + 32));
  for (const [i, p] of pcrs.entries()) {
    const m = out.match(new RegExp(`^\\s*${p}\\s*:\\s*0x([0-9A-Fa-f]{64})\\s*$`, "m"));
    expect(m, `tpm2_pcrread printed PCR ${p}`).not.toBeNull();
    expect(m![1]!.toLowerCase()).toBe(toHex(values[i]!));
  }
  return values;
}

let ak1: Ak;
let ak2: Ak;
let nonce1: Uint8Array;
let quote1: { attest: Uint8Array; signature: Uint8Array };
let digest0 = "";

function input(over: Partial<VerifyQuoteInput> = {}): VerifyQuoteInput {
  return {
    attest: quote1.attest,
    signature: quote1.signature,
    akPublic: ak1.publicArea,
    nonce: nonce1,
    pcrs: POLICY_PCRS,
    acceptedDigests: [digest0],
    ...over,
  };
}

function expectFail(res: ReturnType<typeof verifyQuote>, check: QuoteCheck, reason?: RegExp): void {
  if (res.ok) throw new Error(`expected failure at "${check}", but the quote verified`);
  expect(res.check).toBe(check);
  if (reason) expect(res.reason).toMatch(reason);
}

beforeAll(async () => {
  if (!haveSwtpm()) throw new Error("swtpm is not installed: the TPM quote tests need it (apt-get install swtpm; CI installs it)");
  if (Bun.which("tpm2_quote") === null) throw new Error("tpm2-tools is not installed: the TPM quote tests need it (apt-get install tpm2-tools)");
  tpm = await startSwtpm();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "dsm-tpm-quote-"));
  ak1 = createAk("ak1");
  // same hierarchy, different template (noda) => a different primary key
  ak2 = createAk("ak2", `${AK_ATTRS}|noda`);
  nonce1 = randomNonce();
  quote1 = takeQuote(ak1, nonce1);
  digest0 = toHex(pcrCompositeDigest(readPcrs(POLICY_PCRS)));
});

afterAll(async () => {
  if (tpm) {
    await tpm.stop();
    fs.rmSync(tpm.stateDir, { recursive: true, force: true });
  }
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe("tpm2-tools file formats and parsers", () => {
  test("readpublic -f tss is TPM2B_PUBLIC; the public area parses as a restricted P-256 signing key", () => {
    const size = (ak1.tpm2bPublic[0]! << 8) | ak1.tpm2bPublic[1]!;
    expect(size).toBe(ak1.tpm2bPublic.length - 2);
    const pub = parsePublicArea(ak1.publicArea);
    expect(pub.nameAlg).toBe(0x000b);
    expect(pub.objectAttributes).toBe(0x00050072);
    expect(pub.restricted && pub.sign && pub.fixedTPM && pub.fixedParent).toBe(true);
    expect(pub.decrypt).toBe(false);
    expect(pub.curve).toBe(0x0003);
    expect(pub.scheme).toEqual({ alg: 0x0018, hashAlg: 0x000b });
    expect(pub.symmetric).toBe(0x0010);
    expect(pub.x.length).toBe(32);
    expect(pub.y.length).toBe(32);
    expect(pub.sec1Compressed.length).toBe(33);
    expect(toHex(pub.sec1Compressed.subarray(1))).toBe(toHex(pub.x));
    // the name tpm2-tools reports is 0x000b || sha256(TPMT_PUBLIC)
    expect(toHex(pub.name)).toBe(toHex(ak1.nameFile));
  });

  test("qualified name of an endorsement primary = 0x000b || sha256(0x4000000b || name), as the TPM reports", () => {
    const pub = parsePublicArea(ak1.publicArea);
    expect(toHex(qualifiedName(pub.name))).toBe(toHex(ak1.qnameFile));
    expect(toHex(parseAttest(quote1.attest).qualifiedSigner)).toBe(toHex(ak1.qnameFile));
    const pub2 = parsePublicArea(ak2.publicArea);
    expect(toHex(qualifiedName(pub2.name))).toBe(toHex(ak2.qnameFile));
    expect(toHex(pub2.name)).not.toBe(toHex(pub.name));
  });

  test("quote -m is a bare TPMS_ATTEST and -s a TPMT_SIGNATURE", () => {
    const a = parseAttest(quote1.attest);
    expect(a.magic).toBe(0xff544347);
    expect(a.type).toBe(0x8018);
    expect(toHex(a.extraData)).toBe(toHex(nonce1));
    expect(a.clockInfo.safe).toBe(true);
    expect(typeof a.clockInfo.clock).toBe("bigint");
    expect(typeof a.firmwareVersion).toBe("bigint");
    expect(a.quote!.pcrSelect).toEqual([{ hash: 0x000b, pcrs: POLICY_PCRS }]);
    expect(toHex(a.quote!.pcrDigest)).toBe(digest0);
    const sig = parseSignatureEcdsa(quote1.signature);
    expect(sig.hashAlg).toBe(0x000b);
    expect(sig.r.length).toBe(32);
    expect(sig.s.length).toBe(32);
  });

  test("every truncation and any trailing byte is rejected by each parser", () => {
    const cases: [string, Uint8Array, (b: Uint8Array) => unknown][] = [
      ["TPMT_PUBLIC", ak1.publicArea, parsePublicArea],
      ["TPMS_ATTEST", quote1.attest, parseAttest],
      ["TPMT_SIGNATURE", quote1.signature, parseSignatureEcdsa],
    ];
    for (const [what, good, parse] of cases) {
      for (let len = 0; len < good.length; len++) {
        expect(() => parse(good.slice(0, len)), `${what} cut to ${len}`).toThrow(new RegExp(`^${what} truncated: `));
      }
      const longer = new Uint8Array(good.length + 1);
      longer.set(good);
      expect(() => parse(longer)).toThrow(/1 trailing byte/);
    }
    expect(() => unwrapTpm2b(ak1.tpm2bPublic.slice(0, -1))).toThrow(/truncated/);
    expect(() => unwrapTpm2b(Uint8Array.of(...ak1.tpm2bPublic, 0))).toThrow(/trailing/);
  });

  test("non-P-256 keys, bad points and other attestation types are rejected with what is wrong", () => {
    const rsa = createAk("rsa", AK_ATTRS, "rsa2048:rsassa-sha256:null");
    expect(() => parsePublicArea(rsa.publicArea)).toThrow(/key type 0x0001 is not ECC/);
    const otherCurve = Uint8Array.from(ak1.publicArea);
    otherCurve[17] = 0x04; // curveID low byte (offset 16 for this template) -> NIST P-384
    expect(() => parsePublicArea(otherCurve)).toThrow(/curve 0x0004 is not NIST P-256/);
    const offCurve = Uint8Array.from(ak1.publicArea);
    offCurve[offCurve.length - 1]! ^= 1; // last byte of y
    expect(() => parsePublicArea(offCurve)).toThrow(/not a point on P-256/);
    const certifyType = Uint8Array.from(quote1.attest);
    certifyType[5] = 0x17; // TPM_ST_ATTEST_CERTIFY: parses, no quote
    const a = parseAttest(certifyType);
    expect(a.type).toBe(0x8017);
    expect(a.quote).toBeUndefined();
    const unknownType = Uint8Array.from(quote1.attest);
    unknownType[4] = 0x90;
    expect(() => parseAttest(unknownType)).toThrow(/unknown attestation type 0x9018/);
    const rsaSig = Uint8Array.from(quote1.signature);
    rsaSig[1] = 0x14; // TPM_ALG_RSASSA
    expect(() => parseSignatureEcdsa(rsaSig)).toThrow(/sigAlg 0x0014 is not ECDSA/);
  });
});

describe("verifyQuote against swtpm", () => {
  test("a good quote verifies, also when the AK is pinned to the card's key", () => {
    const res = verifyQuote(input());
    if (!res.ok) throw new Error(res.reason);
    expect(res.pcrDigest).toBe(digest0);
    expect(res.akName).toBe(toHex(ak1.nameFile));
    expect(res.safe).toBe(true);
    const pinned = verifyQuote(input({ expectedAkSec1: parsePublicArea(ak1.publicArea).sec1Compressed }));
    expect(pinned.ok).toBe(true);
  });

  test("a high-S signature (TPMs do not normalise) verifies; its low-S twin too", () => {
    const sig = parseSignatureEcdsa(quote1.signature);
    const s = BigInt("0x" + toHex(sig.s));
    const twin = Uint8Array.from(quote1.signature);
    twin.set(Buffer.from((N - s).toString(16).padStart(64, "0"), "hex"), quote1.signature.length - 32);
    expect(s > N / 2n !== N - s > N / 2n).toBe(true); // exactly one of the pair is high-S
    expect(verifyQuote(input()).ok).toBe(true);
    expect(verifyQuote(input({ signature: twin })).ok).toBe(true);
  });

  test("changing any single byte of the attest makes it fail, at the check that owns the byte", () => {
    // byte regions of this TPMS_ATTEST and the checks a change there may trip
    const a = parseAttest(quote1.attest);
    const qn = a.qualifiedSigner.length;
    const ed = a.extraData.length;
    const regions: [number, QuoteCheck[]][] = [
      [4, ["magic"]],
      [2, ["type", "attest"]],
      [2, ["attest"]], // qualifiedSigner size
      [qn, ["qualified-signer"]],
      [2, ["attest"]], // extraData size
      [ed, ["nonce"]],
      [8 + 4 + 4, ["signature"]], // clock, resetCount, restartCount
      [1, ["attest", "signature"]], // safe: 0 or 1 parse (then the signature fails), others do not
      [8, ["signature"]], // firmwareVersion
      [4, ["attest"]], // pcrSelect.count (truncation or trailing)
      [2, ["pcr-selection"]], // hash
      [1, ["attest"]], // sizeofSelect
      [3, ["pcr-selection"]], // bitmap
      [2, ["attest"]], // pcrDigest size
      [32, ["pcr-digest"]],
    ];
    const owner: QuoteCheck[][] = [];
    for (const [len, checks] of regions) for (let i = 0; i < len; i++) owner.push(checks);
    expect(owner.length).toBe(quote1.attest.length);

    const rnd = prng(0x7e57a77e);
    for (let pos = 0; pos < quote1.attest.length; pos++) {
      for (const x of [0x01, 0x80, 1 + Math.floor(rnd() * 255)]) {
        const bad = Uint8Array.from(quote1.attest);
        bad[pos]! ^= x;
        const res = verifyQuote(input({ attest: bad }));
        if (res.ok) throw new Error(`attest with byte ${pos} ^ 0x${x.toString(16)} verified`);
        expect(owner[pos], `byte ${pos} ^ 0x${x.toString(16)}: ${res.reason}`).toContain(res.check);
      }
    }
  });

  test("changing any byte of the signature, or a valid signature of another key or message, fails at the signature", () => {
    for (let pos = 0; pos < quote1.signature.length; pos++) {
      const bad = Uint8Array.from(quote1.signature);
      bad[pos]! ^= 0x01;
      expectFail(verifyQuote(input({ signature: bad })), "signature");
    }
    // a genuine ECDSA-SHA256 signature over the same attest, by a key outside the TPM
    const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    const rs = crypto.sign("sha256", quote1.attest, { key: privateKey, dsaEncoding: "ieee-p1363" });
    const forged = new Uint8Array([0x00, 0x18, 0x00, 0x0b, 0x00, 0x20, ...rs.subarray(0, 32), 0x00, 0x20, ...rs.subarray(32)]);
    expectFail(verifyQuote(input({ signature: forged })), "signature", /does not verify under the AK/);
    // the AK's own signature, over a different quote
    const other = takeQuote(ak1, nonce1);
    expect(verifyQuote(input(other)).ok).toBe(true);
    expectFail(verifyQuote(input({ signature: other.signature })), "signature");
  });

  test("a wrong nonce fails", () => {
    expectFail(verifyQuote(input({ nonce: randomNonce() })), "nonce", /extraData does not equal/);
    expectFail(verifyQuote(input({ nonce: nonce1.slice(0, 31) })), "nonce");
    expectFail(verifyQuote(input({ nonce: new Uint8Array(0) })), "input", /nonce is empty/);
  });

  test("another key: a second AK's quote, or the second AK where the card names the first, fails", () => {
    const q2 = takeQuote(ak2, nonce1);
    expect(verifyQuote(input({ ...q2, akPublic: ak2.publicArea })).ok).toBe(true);
    // quote by AK2 checked against AK1
    expectFail(verifyQuote(input(q2)), "qualified-signer");
    // AK1's quote presented with AK2's public area
    expectFail(verifyQuote(input({ akPublic: ak2.publicArea })), "qualified-signer");
    // AK2 presented where the node's card names AK1
    const ak1Sec1 = parsePublicArea(ak1.publicArea).sec1Compressed;
    expectFail(verifyQuote(input({ ...q2, akPublic: ak2.publicArea, expectedAkSec1: ak1Sec1 })), "ak-mismatch");
  });

  test("the AK must be a restricted, fixedTPM, ECDSA-SHA256 P-256 key in the endorsement hierarchy", () => {
    // an unrestricted signing key can quote too; dsm does not accept it as an AK
    const loose = createAk("loose", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "ecc256:ecdsa-sha256:null");
    const q = takeQuote(loose, nonce1);
    expectFail(verifyQuote(input({ ...q, akPublic: loose.publicArea })), "ak-attributes", /not a restricted signing key/);
    // an AK in the owner hierarchy: a genuine quote, but not from the endorsement hierarchy
    const owner = createAk("owner", AK_ATTRS, AK_ALG, "o");
    const qo = takeQuote(owner, nonce1);
    expectFail(verifyQuote(input({ ...qo, akPublic: owner.publicArea })), "qualified-signer");
    const ownerQn = Uint8Array.of(0x40, 0x00, 0x00, 0x01); // TPM_RH_OWNER
    expect(verifyQuote(input({ ...qo, akPublic: owner.publicArea, akParentQualifiedName: ownerQn })).ok).toBe(true);
    // RSA and garbage public areas
    const rsa = createAk("rsa2", AK_ATTRS, "rsa2048:rsassa-sha256:null");
    expectFail(verifyQuote(input({ akPublic: rsa.publicArea })), "ak", /not ECC/);
    expectFail(verifyQuote(input({ akPublic: ak1.tpm2bPublic })), "ak"); // size prefix left on
  });

  test("a PCR selection other than the policy's fails", () => {
    expectFail(verifyQuote(input({ pcrs: [0, 1, 2, 3, 4, 5, 6] })), "pcr-selection", /policy wants \[0,1,2,3,4,5,6\]/);
    expectFail(verifyQuote(input({ pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8] })), "pcr-selection");
    expect(verifyQuote(input({ pcrs: [7, 6, 5, 4, 3, 2, 1, 0] })).ok).toBe(true); // order does not matter
    // a real quote over fewer PCRs, whose digest is even accepted
    const fewer = takeQuote(ak1, nonce1, "sha256:0,1,2,3,4,5,6");
    const d = toHex(parseAttest(fewer.attest).quote!.pcrDigest);
    expectFail(verifyQuote(input({ ...fewer, acceptedDigests: [digest0, d] })), "pcr-selection", /selects PCRs \[0,1,2,3,4,5,6\]/);
    // a real quote over two banks (sha1 and sha256)
    const banks = takeQuote(ak1, nonce1, "sha1:0,1,2,3,4,5,6,7+sha256:0,1,2,3,4,5,6,7");
    expect(parseAttest(banks.attest).quote!.pcrSelect.length).toBe(2);
    expectFail(verifyQuote(input({ ...banks })), "pcr-selection", /2 PCR banks/);
    // bad policy lists are input errors, not throws
    expectFail(verifyQuote(input({ pcrs: [] })), "input");
    expectFail(verifyQuote(input({ pcrs: [0, 0, 1] })), "input", /listed twice/);
    expectFail(verifyQuote(input({ pcrs: [32] })), "input");
  });

  test("a digest not in the accepted list fails", () => {
    expectFail(verifyQuote(input({ acceptedDigests: [] })), "pcr-digest", /not one the policy accepts/);
    expectFail(verifyQuote(input({ acceptedDigests: ["00".repeat(32), toHex(crypto.randomBytes(32))] })), "pcr-digest");
    expect(verifyQuote(input({ acceptedDigests: ["00".repeat(32), digest0] })).ok).toBe(true);
  });

  test("verifyQuote never throws on garbage", () => {
    const junk: unknown[] = [undefined, null, "x", 1, new Uint8Array(0), new Uint8Array(3)];
    for (const j of junk) {
      for (const key of ["attest", "signature", "akPublic", "nonce", "pcrs", "acceptedDigests", "expectedAkSec1"] as const) {
        if (key === "expectedAkSec1" && j === undefined) continue; // absent: no pin
        const res = verifyQuote(input({ [key]: j } as Partial<VerifyQuoteInput>));
        expect(res.ok).toBe(false);
      }
    }
    expect(verifyQuote(undefined as unknown as VerifyQuoteInput).ok).toBe(false);
  });

  // last: it changes PCR 7 for the rest of this swtpm's life
  test("after PCR 7 is extended, a new quote's digest is no longer accepted", () => {
    tools(["tpm2_pcrextend", `7:sha256=${toHex(crypto.randomBytes(32))}`]);
    const nonce = randomNonce();
    const q = takeQuote(ak1, nonce);
    expectFail(verifyQuote(input({ ...q, nonce })), "pcr-digest");
    const now = toHex(pcrCompositeDigest(readPcrs(POLICY_PCRS)));
    expect(now).not.toBe(digest0);
    expect(toHex(parseAttest(q.attest).quote!.pcrDigest)).toBe(now);
    const res = verifyQuote(input({ ...q, nonce, acceptedDigests: [digest0, now] }));
    expect(res.ok && res.pcrDigest).toBe(now);
  });
});
