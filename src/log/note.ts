// A finality certificate as a C2SP signed note (https://c2sp.org/signed-note) carrying a
// tlog-checkpoint body (https://c2sp.org/tlog-checkpoint): what transparency-log tooling
// reads. Pure functions, no I/O.
//
//   hookprobe.dsm/<mesh id>          origin
//   <tree_size>                      decimal
//   <base64 root>                    standard base64 with padding
//                                    (empty line)
//   — hookprobe.dsm/<mesh[0:16]> <base64(key hash[4] || agg_sig)>
//
// The signature is NOT one of the signed-note algorithms (Ed25519 = 0x01, ...): it is the
// BLS12-381 aggregate signature of the certificate's signers over the checkpoint digest
// (DESIGN.md section 6), not over the note text. The key hash is computed with the
// algorithm byte 0xff, which marks that non-standard signature type:
//
//   key hash = sha256(key name || "\n" || 0xff || bls_pub of each signer, genesis order)[0:4]
//
// A note verifier therefore reports the line as signed by an unknown key, but can read
// the body; `dsm verify-proof` checks the certificate itself. An aggregate cannot be split
// per signer, so the note carries one signature line for the whole signer set (for a
// one-validator mesh, that validator's key).
import { fromHex, toHex } from "../encoding/hex.ts";
import { sha256 } from "../crypto/sha256.ts";
import type { Genesis } from "../protocol/genesis.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";
import { signerIndices } from "../protocol/validator-set.ts";

export const NOTE_ORIGIN_PREFIX = "hookprobe.dsm/";
/** The signed-note algorithm byte used here: not a registered type (BLS12-381 aggregate). */
export const NOTE_BLS_ALGORITHM = 0xff;

export function noteOrigin(mesh: string): string {
  return `${NOTE_ORIGIN_PREFIX}${mesh}`;
}

export function noteKeyName(mesh: string): string {
  return `${NOTE_ORIGIN_PREFIX}${mesh.slice(0, 16)}`;
}

/** The 4-byte key hash of the note signature line for these BLS public keys. */
export function noteKeyHash(keyName: string, blsPubs: Uint8Array[]): Uint8Array {
  const name = new TextEncoder().encode(`${keyName}\n`);
  const total = name.length + 1 + blsPubs.reduce((n, k) => n + k.length, 0);
  const buf = new Uint8Array(total);
  buf.set(name, 0);
  buf[name.length] = NOTE_BLS_ALGORITHM;
  let at = name.length + 1;
  for (const k of blsPubs) {
    buf.set(k, at);
    at += k.length;
  }
  return sha256(buf).slice(0, 4);
}

/** The checkpoint body of the note: origin, size and root lines, each ending in "\n". */
export function noteBody(cert: FinalityCertificate): string {
  const c = cert.checkpoint;
  return `${noteOrigin(c.mesh)}\n${c.tree_size}\n${Buffer.from(fromHex(c.root, 32)).toString("base64")}\n`;
}

/** The whole signed note for a finality certificate of the mesh of `genesis`. */
export function checkpointNote(cert: FinalityCertificate, genesis: Genesis): string {
  const keyName = noteKeyName(cert.checkpoint.mesh);
  const pubs = signerIndices(cert.signers).map((i) => {
    const card = genesis.validators[i];
    if (!card?.bls_pub) throw new Error(`certificate signer ${i} is not a validator with a BLS key in the genesis`);
    return fromHex(card.bls_pub);
  });
  const sig = fromHex(cert.agg_sig);
  const blob = new Uint8Array(4 + sig.length);
  blob.set(noteKeyHash(keyName, pubs), 0);
  blob.set(sig, 4);
  return `${noteBody(cert)}\n\u2014 ${keyName} ${Buffer.from(blob).toString("base64")}\n`;
}

/** Reads the origin, size and root (hex) of a tlog-checkpoint note; signatures are not checked. */
export function parseNoteBody(text: string): { origin: string; size: number; root: string } {
  const end = text.indexOf("\n\n");
  const body = end < 0 ? text : text.slice(0, end + 1);
  if (!body.endsWith("\n")) throw new Error("checkpoint note: the body must end with a newline");
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3) throw new Error(`checkpoint note: expected origin, size and root lines, got ${lines.length} line(s)`);
  const [origin, sizeText, rootText] = lines as [string, string, string];
  if (origin === "") throw new Error("checkpoint note: empty origin line");
  if (!/^(0|[1-9]\d*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new Error(`checkpoint note: tree size "${sizeText}" is not a decimal integer`);
  }
  if (!/^[A-Za-z0-9+/]{43}=$/.test(rootText)) throw new Error("checkpoint note: root is not 32 bytes of standard base64");
  const root = Buffer.from(rootText, "base64");
  if (root.length !== 32 || root.toString("base64") !== rootText) throw new Error("checkpoint note: root is not 32 bytes of standard base64");
  return { origin, size: Number(sizeText), root: toHex(root) };
}
