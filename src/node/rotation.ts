// A validator's key rotation (docs/PROTOCOL.md "Validator-set changes"): new BLS (and, if
// asked, libp2p) keys are made beside the ones in use, with the card that names them
// (`dsm validators new-keys`); a quorum then installs that card by a rotate change, and the
// node switches to the new keys once the set in force names them, never before: until then
// its old keys are the ones the mesh counts.
import * as fs from "node:fs";
import * as crypto from "node:crypto";
import { toHex } from "../encoding/hex.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { blsKeygen, blsPopProve, blsPublicKey } from "../crypto/bls.ts";
import { FileExistsError, readSecretFile, writeFileAtomic } from "../fs/files.ts";
import { createLibp2pKey, loadLibp2pKey } from "../identity/libp2p-key.ts";
import { makeCard, type NodeCard, parseCard } from "../protocol/card.ts";
import type { DSMNode } from "./node.ts";

export class RotationError extends Error {}

const next = (file: string) => `${file}.next`;
const old = (file: string) => `${file}.old`;

/** The files a rotation in waiting keeps: the next keys and the card that names them. */
export function rotationFiles(node: DSMNode): { bls: string; libp2p: string; card: string } {
  const l = node.layout;
  return { bls: next(l.blsKey), libp2p: next(l.libp2pKey), card: next(l.card) };
}

/**
 * Makes the next keys and the card naming them (same identity key, role and TPM evidence;
 * a new BLS key, and a new libp2p key with `libp2p`), all 0600 but the card; refuses when a
 * rotation is already waiting, unless `force`.
 */
export async function makeNextKeys(node: DSMNode, opts: { libp2p: boolean; force: boolean; nowMs?: number }): Promise<NodeCard> {
  const files = rotationFiles(node);
  if (!opts.force && [files.bls, files.libp2p, files.card].some((f) => fs.existsSync(f))) {
    throw new RotationError(`a key rotation is already waiting in ${node.layout.dir} (${files.card}); use --force to replace it`);
  }
  const current = node.card();
  if (!current.bls_pub) throw new RotationError("this node has no BLS key: it is not a validator node");
  const secret = blsKeygen(crypto.randomBytes(32));
  let peerId = current.peer_id;
  try {
    writeFileAtomic(files.bls, secret, { overwrite: opts.force });
    if (opts.libp2p) peerId = createLibp2pKey(files.libp2p, opts.force).peerId;
    else fs.rmSync(files.libp2p, { force: true });
  } catch (e) {
    if (e instanceof FileExistsError) throw new RotationError(e.message);
    throw e;
  }
  const card = await makeCard(node.identity, {
    role: current.role,
    peerId,
    addrs: current.addrs,
    nowMs: opts.nowMs ?? Date.now(),
    akPub: current.ak_pub,
    tpmEvidence: current.tpm_evidence,
    blsPub: toHex(blsPublicKey(secret)),
    blsPop: toHex(blsPopProve(secret)),
  });
  writeFileAtomic(files.card, JSON.stringify(card, null, 2) + "\n", { overwrite: true, mode: 0o644 });
  return card;
}

/**
 * Switches to the waiting keys once `inForce` (this node's card in the newest validator
 * set) is the waiting card: the keys first, each only if its next file matches the card,
 * the card last, each old file kept as .old. Idempotent, so a crash midway is finished by
 * the next call. Returns what it switched, or null when nothing waits for this card.
 */
export function promoteNextKeys(node: DSMNode, inForce: NodeCard | undefined): { bls: boolean; libp2p: boolean } | null {
  const files = rotationFiles(node);
  if (!inForce || !fs.existsSync(files.card)) return null;
  let waiting: NodeCard;
  try {
    waiting = parseCard(JSON.parse(fs.readFileSync(files.card, "utf8")), files.card, { checkPop: false });
  } catch {
    return null;
  }
  if (canonicalize(waiting) !== canonicalize(inForce)) return null;
  const done = { bls: false, libp2p: false };
  const l = node.layout;
  if (fs.existsSync(files.bls) && toHex(blsPublicKey(new Uint8Array(readSecretFile(files.bls)))) === inForce.bls_pub) {
    fs.renameSync(l.blsKey, old(l.blsKey));
    fs.renameSync(files.bls, l.blsKey);
    done.bls = true;
  }
  if (fs.existsSync(files.libp2p) && loadLibp2pKey(files.libp2p).peerId === inForce.peer_id) {
    fs.renameSync(l.libp2pKey, old(l.libp2pKey));
    fs.renameSync(files.libp2p, l.libp2pKey);
    done.libp2p = true;
  }
  fs.renameSync(l.card, old(l.card));
  fs.renameSync(files.card, l.card);
  return done;
}
