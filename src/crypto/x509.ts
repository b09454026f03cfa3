// X.509 certificates for TPM endorsement keys: a small DER parser and RFC 5280 section 6
// path validation, enough to check an EK certificate chain against the CA roots a genesis
// file names (as Keylime does). Pure: no file or process I/O; signatures run on node:crypto.
//
// The parser is strict DER where it matters for what we read (minimal definite lengths,
// no trailing bytes anywhere, tbsCertificate's algorithm equal to the outer one) and reads
// only the fields path validation needs; everything else is skipped by length. Signatures
// are always checked over the tbsCertificate bytes exactly as received, so no re-encoding
// can change what was signed.
//
// Deliberately out of scope: revocation (CRL/OCSP), policy processing, name constraints
// (a critical nameConstraints extension is refused rather than ignored), and any public key
// other than RSA and EC P-256/384/521.
import * as crypto from "node:crypto";
import { toHex } from "../encoding/hex.ts";

export class X509Error extends Error {}

export interface Name {
  /** The Name's DER, tag and length included: path building compares these. */
  der: Uint8Array;
  /** The first commonName, or null. */
  cn: string | null;
  /** RDNs in encoded order, e.g. "CN=swtpm-localca" or "C=US, O=Acme, CN=Root"; "" for an empty name. */
  text: string;
}

export type CertPublicKey =
  | { kind: "rsa"; n: Uint8Array; e: Uint8Array }
  | { kind: "ec"; curve: "P-256" | "P-384" | "P-521"; x: Uint8Array; y: Uint8Array };

export type KeyUsageName =
  | "digitalSignature"
  | "nonRepudiation"
  | "keyEncipherment"
  | "dataEncipherment"
  | "keyAgreement"
  | "keyCertSign"
  | "cRLSign"
  | "encipherOnly"
  | "decipherOnly";

export interface Certificate {
  der: Uint8Array;
  /** tbsCertificate's DER: what the issuer signed. */
  tbs: Uint8Array;
  /** 1, 2 or 3 (as printed, not the encoded 0..2). */
  version: number;
  /** Lowercase hex of the serial's DER content octets, a leading 00 sign octet dropped. */
  serialHex: string;
  issuer: Name;
  subject: Name;
  /** Milliseconds since the epoch (UTCTime or GeneralizedTime). */
  notBefore: number;
  notAfter: number;
  /** SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  publicKey: CertPublicKey;
  sigAlgOid: string;
  /** DER of the signature AlgorithmIdentifier's parameters (RSA-PSS needs them), null when absent. */
  sigAlgParams: Uint8Array | null;
  signature: Uint8Array;
  basicConstraints: { ca: boolean; pathLen: number | null } | null;
  keyUsage: Set<KeyUsageName> | null;
  /** extKeyUsage OIDs. */
  extKeyUsage: string[] | null;
  /** The subjectAltName extension's value (GeneralNames DER), unparsed; null when absent. */
  subjectAltName: Uint8Array | null;
  /** OIDs of critical extensions this parser does not understand (or does not enforce). */
  unknownCritical: string[];
}

// ---- DER reading ----------------------------------------------------------------------

const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const NULL = 0x05;
const OID = 0x06;
const BOOLEAN = 0x01;

/** One TLV; offsets are into the buffer the reader walks, so errors can name them. */
interface Tlv {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

/** Reads consecutive TLVs in buf[pos, end). Every read is bounds-checked against `end`. */
class Der {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number,
    readonly what: string,
  ) {}

  static of(buf: Uint8Array, what: string): Der {
    return new Der(buf, 0, buf.length, what);
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  peek(): number | null {
    return this.pos < this.end ? this.buf[this.pos]! : null;
  }

  next(what: string): Tlv {
    const start = this.pos;
    if (start >= this.end) throw new X509Error(`${what}: truncated (no bytes left at offset ${start})`);
    const tag = this.buf[start]!;
    // X.509 never needs the high-tag-number form; refusing it keeps tags one byte.
    if ((tag & 0x1f) === 0x1f) throw new X509Error(`${what}: unsupported high tag number at offset ${start}`);
    let p = start + 1;
    if (p >= this.end) throw new X509Error(`${what}: truncated (no length at offset ${p})`);
    const first = this.buf[p++]!;
    let len: number;
    if (first < 0x80) {
      len = first;
    } else {
      const n = first & 0x7f;
      if (n === 0) throw new X509Error(`${what}: bad length: indefinite length at offset ${start} is not DER`);
      if (n > 4) throw new X509Error(`${what}: bad length: ${n}-byte length at offset ${start}`);
      if (p + n > this.end) throw new X509Error(`${what}: truncated (length bytes at offset ${p})`);
      if (this.buf[p] === 0) throw new X509Error(`${what}: bad length: non-minimal length at offset ${start}`);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + this.buf[p++]!;
      if (len < 0x80) throw new X509Error(`${what}: bad length: non-minimal length at offset ${start}`);
    }
    const end = p + len;
    if (end > this.end) throw new X509Error(`${what}: truncated or bad length (${len} bytes at offset ${p}, ${this.end - p} left)`);
    this.pos = end;
    return { tag, start, valueStart: p, end };
  }

  expect(tag: number, what: string): Tlv {
    const t = this.next(what);
    if (t.tag !== tag) throw new X509Error(`${what}: wrong tag 0x${hex2(t.tag)} at offset ${t.start} (expected 0x${hex2(tag)})`);
    return t;
  }

  /** The next TLV if it has this tag, else null (nothing consumed). */
  optional(tag: number, what: string): Tlv | null {
    return this.peek() === tag ? this.next(what) : null;
  }

  /** A reader over a TLV's value. */
  inner(t: Tlv, what: string): Der {
    return new Der(this.buf, t.valueStart, t.end, what);
  }

  value(t: Tlv): Uint8Array {
    return this.buf.subarray(t.valueStart, t.end);
  }

  raw(t: Tlv): Uint8Array {
    return this.buf.subarray(t.start, t.end);
  }

  finish(): void {
    if (this.pos !== this.end) throw new X509Error(`${this.what}: ${this.end - this.pos} trailing bytes at offset ${this.pos}`);
  }
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}

function decodeOid(v: Uint8Array, what: string): string {
  if (v.length === 0) throw new X509Error(`${what}: empty OBJECT IDENTIFIER`);
  const arcs: bigint[] = [];
  let acc = 0n;
  let fresh = true;
  for (const b of v) {
    if (fresh && b === 0x80) throw new X509Error(`${what}: non-minimal OBJECT IDENTIFIER`);
    acc = (acc << 7n) | BigInt(b & 0x7f);
    fresh = (b & 0x80) === 0;
    if (fresh) {
      arcs.push(acc);
      acc = 0n;
    }
  }
  if (!fresh) throw new X509Error(`${what}: truncated OBJECT IDENTIFIER`);
  const head = arcs[0]!;
  const [a, b] = head < 40n ? [0n, head] : head < 80n ? [1n, head - 40n] : [2n, head - 80n];
  return [a, b, ...arcs.slice(1)].join(".");
}

function readOid(d: Der, what: string): string {
  return decodeOid(d.value(d.expect(OID, what)), what);
}

/** A non-negative INTEGER's magnitude: minimal DER, the 00 sign octet dropped. */
function unsignedInt(v: Uint8Array, what: string): Uint8Array {
  if (v.length === 0) throw new X509Error(`${what}: empty INTEGER`);
  if (v[0]! & 0x80) throw new X509Error(`${what}: negative INTEGER`);
  if (v[0] === 0 && v.length > 1) {
    if (!(v[1]! & 0x80)) throw new X509Error(`${what}: non-minimal INTEGER`);
    return v.subarray(1);
  }
  return v;
}

function smallInt(v: Uint8Array, what: string): number {
  const m = unsignedInt(v, what);
  if (m.length > 4) throw new X509Error(`${what}: INTEGER too large`);
  let n = 0;
  for (const b of m) n = n * 256 + b;
  return n;
}

/** BIT STRING content with no unused bits (signatures and keys are whole octets). */
function octetBits(v: Uint8Array, what: string): Uint8Array {
  if (v.length === 0 || v[0] !== 0) throw new X509Error(`${what}: BIT STRING with unused bits`);
  return v.subarray(1);
}

function readBoolean(d: Der, t: Tlv, what: string): boolean {
  const v = d.value(t);
  if (v.length !== 1 || (v[0] !== 0 && v[0] !== 0xff)) throw new X509Error(`${what}: bad BOOLEAN`);
  return v[0] === 0xff;
}

// ---- Names and times ------------------------------------------------------------------

const ATTR_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "1.2.840.113549.1.9.1": "emailAddress",
};

/** Directory string types as text; other value types as #hex (RFC 4514 style). */
function attrValue(tag: number, v: Uint8Array): string {
  switch (tag) {
    case 0x0c: // UTF8String
      return new TextDecoder("utf-8", { fatal: false }).decode(v);
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString, read as Latin-1 like most tools do
      return Buffer.from(v).toString("latin1");
    case 0x1e: {
      // BMPString: UCS-2 big-endian
      let s = "";
      for (let i = 0; i + 1 < v.length; i += 2) s += String.fromCharCode((v[i]! << 8) | v[i + 1]!);
      return s;
    }
    default:
      return "#" + toHex(v);
  }
}

function readName(d: Der, what: string): Name {
  const t = d.expect(SEQUENCE, what);
  const rdns = d.inner(t, what);
  let cn: string | null = null;
  const parts: string[] = [];
  while (!rdns.done()) {
    const set = rdns.inner(rdns.expect(SET, `${what} RDN`), `${what} RDN`);
    const atvs: string[] = [];
    while (!set.done()) {
      const atv = set.inner(set.expect(SEQUENCE, `${what} attribute`), `${what} attribute`);
      const oid = readOid(atv, `${what} attribute type`);
      const val = atv.next(`${what} attribute value`);
      atv.finish();
      const text = attrValue(val.tag, atv.value(val));
      if (oid === "2.5.4.3" && cn === null) cn = text;
      atvs.push(`${ATTR_NAMES[oid] ?? oid}=${text}`);
    }
    if (atvs.length === 0) throw new X509Error(`${what}: empty RDN`);
    parts.push(atvs.join("+"));
  }
  return { der: d.raw(t), cn, text: parts.join(", ") };
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

function readTime(d: Der, what: string): number {
  const t = d.next(what);
  const s = Buffer.from(d.value(t)).toString("latin1");
  const m = t.tag === 0x17 ? UTC_TIME.exec(s) : t.tag === 0x18 ? GENERALIZED_TIME.exec(s) : null;
  if (!m) throw new X509Error(`${what}: not a DER UTCTime or GeneralizedTime (tag 0x${hex2(t.tag)}, "${s.slice(0, 20)}")`);
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year >= 50 ? 1900 : 2000; // RFC 5280 4.1.2.5.1
  const [mo, da, h, mi, se] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  const date = new Date(0);
  date.setUTCFullYear(year, mo - 1, da); // not Date.UTC: it maps years 0-99 to 19xx
  date.setUTCHours(h, mi, se, 0);
  // Date rolls impossible values over (Feb 30, 24:00); the round trip refuses them.
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== da || date.getUTCHours() !== h || date.getUTCMinutes() !== mi || date.getUTCSeconds() !== se) {
    throw new X509Error(`${what}: impossible date "${s}"`);
  }
  return date.getTime();
}

// ---- Public keys ----------------------------------------------------------------------

const RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const CURVES: Record<string, { curve: "P-256" | "P-384" | "P-521"; bytes: number }> = {
  "1.2.840.10045.3.1.7": { curve: "P-256", bytes: 32 },
  "1.3.132.0.34": { curve: "P-384", bytes: 48 },
  "1.3.132.0.35": { curve: "P-521", bytes: 66 },
};

function readSpki(d: Der): { spki: Uint8Array; publicKey: CertPublicKey } {
  const t = d.expect(SEQUENCE, "subjectPublicKeyInfo");
  const s = d.inner(t, "subjectPublicKeyInfo");
  const alg = s.inner(s.expect(SEQUENCE, "subjectPublicKeyInfo algorithm"), "subjectPublicKeyInfo algorithm");
  const oid = readOid(alg, "public key algorithm");
  const key = octetBits(s.value(s.expect(BIT_STRING, "subjectPublicKey")), "subjectPublicKey");
  s.finish();
  if (oid === RSA_ENCRYPTION) {
    alg.optional(NULL, "rsaEncryption parameters");
    alg.finish();
    const kd = Der.of(key, "RSAPublicKey");
    const seq = kd.inner(kd.expect(SEQUENCE, "RSAPublicKey"), "RSAPublicKey");
    kd.finish();
    const n = unsignedInt(seq.value(seq.expect(INTEGER, "RSA modulus")), "RSA modulus");
    const e = unsignedInt(seq.value(seq.expect(INTEGER, "RSA exponent")), "RSA exponent");
    seq.finish();
    return { spki: d.raw(t), publicKey: { kind: "rsa", n, e } };
  }
  if (oid === EC_PUBLIC_KEY) {
    const curveOid = readOid(alg, "EC named curve");
    alg.finish();
    const c = CURVES[curveOid];
    if (!c) throw new X509Error(`unsupported EC curve ${curveOid}`);
    // Uncompressed points only: every CA and TPM writes them, and x/y need no decompression.
    if (key.length !== 1 + 2 * c.bytes || key[0] !== 0x04) throw new X509Error(`EC public key: not an uncompressed ${c.curve} point`);
    return { spki: d.raw(t), publicKey: { kind: "ec", curve: c.curve, x: key.subarray(1, 1 + c.bytes), y: key.subarray(1 + c.bytes) } };
  }
  throw new X509Error(`unsupported public key algorithm ${oid}`);
}

// ---- Extensions -----------------------------------------------------------------------

const EXT = {
  subjectDirectoryAttributes: "2.5.29.9",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  nameConstraints: "2.5.29.30",
  cRLDistributionPoints: "2.5.29.31",
  certificatePolicies: "2.5.29.32",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1",
};
/**
 * Extensions that may be critical without changing the verdict here: informational ones,
 * and the subjectAltName an EK certificate must mark critical (its subject is empty; the
 * SAN holds the TPM manufacturer, model and version). nameConstraints is not in this set:
 * it is not enforced, so a critical one is refused.
 */
const UNDERSTOOD = new Set([
  EXT.subjectDirectoryAttributes,
  EXT.subjectKeyIdentifier,
  EXT.keyUsage,
  EXT.subjectAltName,
  EXT.basicConstraints,
  EXT.cRLDistributionPoints,
  EXT.certificatePolicies,
  EXT.authorityKeyIdentifier,
  EXT.extKeyUsage,
  EXT.authorityInfoAccess,
]);

const KEY_USAGE_BITS: KeyUsageName[] = ["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"];

interface Extensions {
  basicConstraints: Certificate["basicConstraints"];
  keyUsage: Certificate["keyUsage"];
  extKeyUsage: Certificate["extKeyUsage"];
  subjectAltName: Certificate["subjectAltName"];
  unknownCritical: string[];
}

function readExtensions(d: Der, t: Tlv): Extensions {
  const out: Extensions = { basicConstraints: null, keyUsage: null, extKeyUsage: null, subjectAltName: null, unknownCritical: [] };
  const wrap = d.inner(t, "extensions");
  const list = wrap.inner(wrap.expect(SEQUENCE, "extensions"), "extensions");
  wrap.finish();
  const seen = new Set<string>();
  while (!list.done()) {
    const ext = list.inner(list.expect(SEQUENCE, "extension"), "extension");
    const oid = readOid(ext, "extension id");
    const what = `extension ${oid}`;
    const critTlv = ext.optional(BOOLEAN, what);
    const critical = critTlv ? readBoolean(ext, critTlv, what) : false;
    const value = ext.value(ext.expect(OCTET_STRING, what));
    ext.finish();
    if (seen.has(oid)) throw new X509Error(`${what} appears twice`); // RFC 5280 4.2
    seen.add(oid);
    if (critical && !UNDERSTOOD.has(oid)) out.unknownCritical.push(oid);
    const v = Der.of(value, what);
    if (oid === EXT.basicConstraints) {
      const s = v.inner(v.expect(SEQUENCE, what), what);
      v.finish();
      const caTlv = s.optional(BOOLEAN, what);
      const ca = caTlv ? readBoolean(s, caTlv, what) : false;
      const plTlv = s.optional(INTEGER, what);
      s.finish();
      out.basicConstraints = { ca, pathLen: plTlv ? smallInt(s.value(plTlv), `${what} pathLenConstraint`) : null };
    } else if (oid === EXT.keyUsage) {
      const bits = v.value(v.expect(BIT_STRING, what));
      v.finish();
      if (bits.length === 0 || bits[0]! > 7) throw new X509Error(`${what}: bad BIT STRING`);
      const set = new Set<KeyUsageName>();
      KEY_USAGE_BITS.forEach((name, i) => {
        const byte = bits[1 + (i >> 3)];
        if (byte !== undefined && byte & (0x80 >> (i & 7))) set.add(name);
      });
      out.keyUsage = set;
    } else if (oid === EXT.subjectAltName) {
      out.subjectAltName = value;
    } else if (oid === EXT.extKeyUsage) {
      const s = v.inner(v.expect(SEQUENCE, what), what);
      v.finish();
      const oids: string[] = [];
      while (!s.done()) oids.push(readOid(s, what));
      out.extKeyUsage = oids;
    }
  }
  return out;
}

// ---- Certificates ---------------------------------------------------------------------

/**
 * Parses one DER certificate (nothing after it). Throws X509Error naming what is malformed.
 * The byte fields are views into `der`, not copies.
 */
export function parseCertificate(der: Uint8Array): Certificate {
  if (!(der instanceof Uint8Array)) throw new X509Error("certificate: not bytes");
  const top = Der.of(der, "certificate");
  const certTlv = top.expect(SEQUENCE, "certificate");
  top.finish();
  const cert = top.inner(certTlv, "certificate");
  const tbsTlv = cert.expect(SEQUENCE, "tbsCertificate");
  const outerAlg = cert.expect(SEQUENCE, "signatureAlgorithm");
  const signature = octetBits(cert.value(cert.expect(BIT_STRING, "signatureValue")), "signatureValue");
  cert.finish();

  const tbs = cert.inner(tbsTlv, "tbsCertificate");
  let version = 1;
  const vTlv = tbs.optional(0xa0, "version");
  if (vTlv) {
    const vd = tbs.inner(vTlv, "version");
    const encoded = smallInt(vd.value(vd.expect(INTEGER, "version")), "version");
    vd.finish();
    if (encoded > 2) throw new X509Error(`unsupported version ${encoded + 1}`);
    version = encoded + 1;
  }
  const serial = tbs.value(tbs.expect(INTEGER, "serialNumber"));
  if (serial.length === 0) throw new X509Error("serialNumber: empty INTEGER");
  const innerAlg = tbs.expect(SEQUENCE, "tbsCertificate signature");
  // RFC 5280 4.1.1.2: the signed copy of the algorithm must equal the unsigned one.
  if (!bytesEqual(tbs.raw(innerAlg), cert.raw(outerAlg))) throw new X509Error("signatureAlgorithm differs from the one in tbsCertificate");
  const issuer = readName(tbs, "issuer");
  const validity = tbs.inner(tbs.expect(SEQUENCE, "validity"), "validity");
  const notBefore = readTime(validity, "notBefore");
  const notAfter = readTime(validity, "notAfter");
  validity.finish();
  const subject = readName(tbs, "subject");
  const { spki, publicKey } = readSpki(tbs);
  if (version >= 2) {
    tbs.optional(0x81, "issuerUniqueID");
    tbs.optional(0x82, "subjectUniqueID");
  }
  const extTlv = tbs.optional(0xa3, "extensions");
  if (extTlv && version !== 3) throw new X509Error(`extensions in a version ${version} certificate`);
  tbs.finish();
  const ext = extTlv ? readExtensions(tbs, extTlv) : { basicConstraints: null, keyUsage: null, extKeyUsage: null, subjectAltName: null, unknownCritical: [] };

  const alg = cert.inner(outerAlg, "signatureAlgorithm");
  const sigAlgOid = readOid(alg, "signatureAlgorithm");
  const params = alg.done() ? null : alg.raw(alg.next("signatureAlgorithm parameters"));
  alg.finish();

  return {
    der,
    tbs: cert.raw(tbsTlv),
    version,
    serialHex: toHex(serial.length > 1 && serial[0] === 0 ? serial.subarray(1) : serial),
    issuer,
    subject,
    notBefore,
    notAfter,
    spki,
    publicKey,
    sigAlgOid,
    sigAlgParams: params,
    signature,
    ...ext,
  };
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----/g;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The DER of every CERTIFICATE block, in order. Throws when there is none or one is not base64. */
export function pemCertificates(pem: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const begins = pem.split("-----BEGIN CERTIFICATE-----").length - 1;
  for (const m of pem.matchAll(PEM_BLOCK)) {
    const b64 = m[1]!.replace(/\s+/g, "");
    if (b64.length === 0 || !BASE64.test(b64)) throw new X509Error(`PEM certificate block ${out.length + 1}: not base64`);
    out.push(new Uint8Array(Buffer.from(b64, "base64")));
  }
  if (out.length === 0) throw new X509Error("no PEM CERTIFICATE block");
  if (out.length !== begins) throw new X509Error(`PEM certificate block ${out.length + 1}: no END line or not base64`);
  return out;
}

export function certificatePem(der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END CERTIFICATE-----\n`;
}

// ---- Signatures -----------------------------------------------------------------------

const RSA_PKCS1: Record<string, string> = {
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
};
const ECDSA: Record<string, string> = {
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
};
const RSA_PSS = "1.2.840.113549.1.1.10";
const MGF1 = "1.2.840.113549.1.1.8";
const HASHES: Record<string, string> = {
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};
/** Named so the refusal says why: collisions in these make forged certificates practical. */
const WEAK: Record<string, string> = {
  "1.2.840.113549.1.1.2": "md2WithRSAEncryption (MD2)",
  "1.2.840.113549.1.1.4": "md5WithRSAEncryption (MD5)",
  "1.2.840.113549.1.1.5": "sha1WithRSAEncryption (SHA-1)",
  "1.3.14.3.2.29": "sha1WithRSASignature (SHA-1)",
  "1.2.840.10045.4.1": "ecdsa-with-SHA1 (SHA-1)",
  "1.2.840.10040.4.3": "dsa-with-sha1 (SHA-1)",
  "1.3.14.3.2.26": "SHA-1",
  "1.2.840.113549.2.5": "MD5",
};

/** A hash AlgorithmIdentifier (parameters absent or NULL) as a node:crypto digest name. */
function hashOf(d: Der, what: string): string {
  const a = d.inner(d.expect(SEQUENCE, what), what);
  const oid = readOid(a, what);
  a.optional(NULL, what);
  a.finish();
  const h = HASHES[oid];
  if (!h) throw new X509Error(`${what}: ${WEAK[oid] ?? oid} is not allowed`);
  return h;
}

/** RSASSA-PSS-params (RFC 4055): MGF1 with the same hash (all node:crypto can check), trailer 1. */
function pssParams(params: Uint8Array | null): { hash: string; saltLength: number } {
  // Every field defaults to SHA-1, so absent parameters mean SHA-1.
  if (params === null) throw new X509Error("RSASSA-PSS without parameters means SHA-1, not allowed");
  const top = Der.of(params, "RSASSA-PSS parameters");
  const s = top.inner(top.expect(SEQUENCE, "RSASSA-PSS parameters"), "RSASSA-PSS parameters");
  top.finish();
  const explicit = (tag: number, what: string): Der | null => {
    const t = s.optional(tag, what);
    return t ? s.inner(t, what) : null;
  };
  const hd = explicit(0xa0, "PSS hashAlgorithm");
  if (!hd) throw new X509Error("RSASSA-PSS with the default hash SHA-1 is not allowed");
  const hash = hashOf(hd, "PSS hashAlgorithm");
  hd.finish();
  const md = explicit(0xa1, "PSS maskGenAlgorithm");
  if (!md) throw new X509Error("RSASSA-PSS with the default MGF1-SHA-1 is not allowed");
  const mgf = md.inner(md.expect(SEQUENCE, "PSS maskGenAlgorithm"), "PSS maskGenAlgorithm");
  md.finish();
  if (readOid(mgf, "PSS maskGenAlgorithm") !== MGF1) throw new X509Error("RSASSA-PSS: mask generation is not MGF1");
  const mgfHash = hashOf(mgf, "PSS MGF1 hash");
  mgf.finish();
  if (mgfHash !== hash) throw new X509Error(`RSASSA-PSS: MGF1 with ${mgfHash} under ${hash} is not supported`);
  const sd = explicit(0xa2, "PSS saltLength");
  let saltLength = 20;
  if (sd) {
    saltLength = smallInt(sd.value(sd.expect(INTEGER, "PSS saltLength")), "PSS saltLength");
    sd.finish();
  }
  const td = explicit(0xa3, "PSS trailerField");
  if (td) {
    if (smallInt(td.value(td.expect(INTEGER, "PSS trailerField")), "PSS trailerField") !== 1) throw new X509Error("RSASSA-PSS: trailerField is not 1");
    td.finish();
  }
  s.finish();
  return { hash, saltLength };
}

/** Checks cert's signature with issuer's key. Returns null when it verifies, else why not. */
function signatureProblem(cert: Certificate, issuer: Certificate): string | null {
  const oid = cert.sigAlgOid;
  const weak = WEAK[oid];
  if (weak) return `${weak} signatures are refused`;
  const kind = issuer.publicKey.kind;
  let hash: string;
  let opts: { padding?: number; saltLength?: number } = {};
  try {
    if (RSA_PKCS1[oid]) {
      hash = RSA_PKCS1[oid];
      // RFC 4055: NULL parameters (absent tolerated, as openssl does).
      if (cert.sigAlgParams !== null && !(cert.sigAlgParams.length === 2 && cert.sigAlgParams[0] === NULL && cert.sigAlgParams[1] === 0)) return `${hash}WithRSAEncryption with parameters`;
      if (kind !== "rsa") return `an RSA signature but the issuer's key is ${kind}`;
      opts = { padding: crypto.constants.RSA_PKCS1_PADDING };
    } else if (oid === RSA_PSS) {
      const p = pssParams(cert.sigAlgParams);
      hash = p.hash;
      if (kind !== "rsa") return `an RSA-PSS signature but the issuer's key is ${kind}`;
      opts = { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: p.saltLength };
    } else if (ECDSA[oid]) {
      hash = ECDSA[oid];
      if (cert.sigAlgParams !== null) return `ecdsa-with-${hash} with parameters`; // RFC 5758 3.2
      if (kind !== "ec") return `an ECDSA signature but the issuer's key is ${kind}`;
    } else {
      return `unsupported signature algorithm ${oid}`;
    }
  } catch (e) {
    return e instanceof X509Error ? e.message : String(e);
  }
  try {
    const key = crypto.createPublicKey({ key: Buffer.from(issuer.spki), format: "der", type: "spki" });
    const ok = crypto.verify(hash, cert.tbs, { key, ...opts }, cert.signature);
    return ok ? null : `${describeAlg(oid, hash)} signature does not verify with the key of ${nameOf(issuer.subject)}`;
  } catch (e) {
    return `${describeAlg(oid, hash)} signature cannot be checked: ${(e as Error).message}`;
  }
}

function describeAlg(oid: string, hash: string): string {
  return oid === RSA_PSS ? `RSA-PSS-${hash}` : ECDSA[oid] ? `ECDSA-${hash}` : `RSA-${hash}`;
}

// ---- Path validation ------------------------------------------------------------------

export type ChainCheck = "parse" | "untrusted" | "signature" | "expired" | "not_yet_valid" | "not_ca" | "key_usage" | "path_length" | "critical_extension" | "too_long";

export type ChainResult =
  | { ok: true; chain: Certificate[]; anchor: Certificate; issuerCn: string }
  | { ok: false; check: ChainCheck; reason: string };

type Failure = { ok: false; check: ChainCheck; reason: string };

export interface VerifyOptions {
  nowMs: number;
  /** The leaf's keyUsage, when present, must include at least one of these. */
  leafKeyUsage?: readonly string[];
  /** Most certificates in a path, leaf and anchor included. Default 8. */
  maxDepth?: number;
}

function fail(check: ChainCheck, reason: string): Failure {
  return { ok: false, check, reason };
}

function nameOf(n: Name): string {
  return n.text === "" ? "(empty name)" : n.text;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Constant time in the contents: the anchor test decides trust. */
function sameDer(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** Checks that hold for any certificate in the path, whatever its position. */
function commonProblem(c: Certificate, role: string, now: number): Failure | null {
  if (now < c.notBefore) return fail("not_yet_valid", `${role} ${nameOf(c.subject)} is not valid before ${new Date(c.notBefore).toISOString()}`);
  if (now > c.notAfter) return fail("expired", `${role} ${nameOf(c.subject)} expired ${new Date(c.notAfter).toISOString()}`);
  if (c.unknownCritical.length > 0) return fail("critical_extension", `${role} ${nameOf(c.subject)} has unsupported critical extension ${c.unknownCritical.join(", ")}`);
  return null;
}

/**
 * RFC 5280 section 6 path validation, from the leaf up to one of `anchors`. Never throws.
 * Issuers are found by issuer DER = subject DER among intermediates then anchors; when one
 * candidate fails the next is tried, and the failure reported is the one that got furthest.
 * The path ends at the first certificate byte-identical to an anchor (a root or a listed
 * intermediate); the anchor's own signature is not checked, but its validity, CA flag,
 * keyCertSign and pathLen are.
 */
export function verifyChain(leaf: Uint8Array, intermediates: readonly Uint8Array[], anchors: readonly Uint8Array[], opts: VerifyOptions): ChainResult {
  try {
    return verifyChainInner(leaf, intermediates, anchors, opts);
  } catch (e) {
    // Only reachable through a bug or bad argument types; the contract is never to throw.
    return fail("parse", `cannot check the chain: ${(e as Error).message}`);
  }
}

function verifyChainInner(leafDer: Uint8Array, interDers: readonly Uint8Array[], anchorDers: readonly Uint8Array[], opts: VerifyOptions): ChainResult {
  if (!Number.isFinite(opts.nowMs)) return fail("parse", "nowMs is not a finite number");
  // Validity is to the second, as certificates write it: notAfter's whole second is inside.
  const now = Math.floor(opts.nowMs / 1000) * 1000;
  const maxDepth = opts.maxDepth ?? 8;
  const parseAll = (ders: readonly Uint8Array[], role: string): Certificate[] | Failure => {
    const out: Certificate[] = [];
    for (let i = 0; i < ders.length; i++) {
      try {
        out.push(parseCertificate(ders[i]!));
      } catch (e) {
        return fail("parse", `${role}${ders.length > 1 ? ` ${i + 1}` : ""}: ${(e as Error).message}`);
      }
    }
    return out;
  };
  const leafs = parseAll([leafDer], "leaf");
  if (!Array.isArray(leafs)) return leafs;
  const inters = parseAll(interDers, "intermediate");
  if (!Array.isArray(inters)) return inters;
  const anchors = parseAll(anchorDers, "anchor");
  if (!Array.isArray(anchors)) return anchors;
  const leaf = leafs[0]!;
  if (anchors.length === 0) return fail("untrusted", "no trust anchors given");

  const leafProblem = commonProblem(leaf, "leaf", now);
  if (leafProblem) return leafProblem;
  if (leaf.basicConstraints?.ca) return fail("not_ca", `leaf ${nameOf(leaf.subject)} is a CA certificate (basicConstraints CA true), not an end entity`);
  const allowed = opts.leafKeyUsage;
  if (leaf.keyUsage && allowed && allowed.length > 0 && !allowed.some((u) => leaf.keyUsage!.has(u as KeyUsageName))) {
    return fail("key_usage", `leaf keyUsage {${[...leaf.keyUsage].join(", ")}} has none of ${allowed.join(", ")}`);
  }

  const candidates = [...inters, ...anchors];
  // The failure reported is the one that got furthest (a deeper certificate; at the same
  // depth, a candidate whose signature verified), so a same-named impostor tried first does
  // not hide the real issuer's problem.
  const best: { score: number; failure: Failure | null } = { score: -1, failure: null };
  const note = (score: number, failure: Failure) => {
    if (score > best.score) Object.assign(best, { score, failure });
  };

  // Depth-first search; `path` is leaf first. Returns the completed path or null.
  const extend = (path: Certificate[]): Certificate[] | null => {
    const child = path[path.length - 1]!;
    const depth = path.length;
    const issuers = candidates.filter((c) => bytesEqual(c.subject.der, child.issuer.der));
    if (issuers.length === 0) {
      note(2 * depth, fail("untrusted", `no trusted certificate for issuer ${nameOf(child.issuer)} of ${depth === 1 ? "the leaf" : nameOf(child.subject)}`));
      return null;
    }
    const tried: Uint8Array[] = [];
    for (const c of issuers) {
      if (tried.some((t) => bytesEqual(t, c.der))) continue; // the same certificate twice in the input
      tried.push(c.der);
      if (path.some((p) => bytesEqual(p.der, c.der))) {
        note(2 * depth, fail("too_long", `certificate cycle at ${nameOf(c.subject)}`));
        continue;
      }
      if (depth + 1 > maxDepth) {
        note(2 * depth, fail("too_long", `path longer than ${maxDepth} certificates`));
        continue;
      }
      // The signature first: a candidate it fails is not this certificate's issuer at all.
      const sig = signatureProblem(child, c);
      if (sig) {
        note(2 * depth, fail("signature", `${depth === 1 ? "leaf" : nameOf(child.subject)}: ${sig}`));
        continue;
      }
      const isAnchor = anchors.some((a) => sameDer(a.der, c.der));
      const problem = issuerProblem(c, isAnchor ? "anchor" : "intermediate", path, now);
      if (problem) {
        note(2 * depth + 1, problem);
        continue;
      }
      if (isAnchor) return [...path, c];
      const done = extend([...path, c]);
      if (done) return done;
    }
    return null;
  };

  const chain = extend([leaf]);
  if (!chain) return best.failure ?? fail("untrusted", "no path to a trust anchor");
  return { ok: true, chain, anchor: chain[chain.length - 1]!, issuerCn: leaf.issuer.cn ?? leaf.issuer.text };
}

/** What an issuing certificate (intermediate or anchor) must satisfy over the path below it. */
function issuerProblem(c: Certificate, role: string, below: Certificate[], now: number): Failure | null {
  const common = commonProblem(c, role, now);
  if (common) return common;
  const name = nameOf(c.subject);
  if (!c.basicConstraints?.ca) return fail("not_ca", `${role} ${name} is not a CA (basicConstraints CA ${c.basicConstraints ? "false" : "absent"})`);
  if (c.keyUsage && !c.keyUsage.has("keyCertSign")) return fail("key_usage", `${role} ${name} keyUsage lacks keyCertSign`);
  const pathLen = c.basicConstraints.pathLen;
  if (pathLen !== null) {
    // RFC 5280 6.1.4 (l)/(m): intermediates between c and the leaf, self-issued ones not counted.
    const between = below.slice(1).filter((x) => !bytesEqual(x.subject.der, x.issuer.der)).length;
    if (between > pathLen) return fail("path_length", `${role} ${name} allows ${pathLen} intermediate CA${pathLen === 1 ? "" : "s"} below it, the path has ${between}`);
  }
  return null;
}
