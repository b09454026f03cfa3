// Where a node keeps its files. One place, so every command agrees.
import * as crypto from "node:crypto";
import * as path from "node:path";
import type { DsmConfig } from "../config/config.ts";
import { FileExistsError, readSecretFile, writeFileAtomic } from "../fs/files.ts";

export interface DataDirLayout {
  dir: string;
  identityKey: string;
  /** Present instead of identityKey when the identity key lives in a TPM: which TPM, which handle. */
  tpmIdentity: string;
  libp2pKey: string;
  blsKey: string;
  privacyKey: string;
  card: string;
  genesis: string;
  ledger: string;
  config: string;
  /** The bearer token control.port requires (control.token_file). */
  controlToken: string;
}

export function dataDirLayout(dir: string, config: DsmConfig): DataDirLayout {
  return {
    dir,
    identityKey: path.join(dir, "identity.pem"),
    tpmIdentity: path.join(dir, "identity.tpm.json"),
    libp2pKey: path.join(dir, "libp2p.key"),
    blsKey: path.join(dir, "bls.key"),
    privacyKey: path.join(dir, "privacy.key"),
    card: path.join(dir, "card.json"),
    genesis: config.mesh.genesis ? path.resolve(dir, config.mesh.genesis) : path.join(dir, "genesis.json"),
    ledger: path.resolve(dir, config.ledger.file),
    config: path.join(dir, "dsm.yaml"),
    controlToken: path.resolve(dir, config.control.token_file || "control.token"),
  };
}

/**
 * Makes the control.port bearer token (32 random bytes, hex, 0600) unless one is there and
 * `overwrite` is off. True when it made one.
 */
export function createControlToken(file: string, overwrite: boolean): boolean {
  try {
    writeFileAtomic(file, crypto.randomBytes(32).toString("hex") + "\n", { overwrite });
    return true;
  } catch (e) {
    if (e instanceof FileExistsError) return false;
    throw e;
  }
}

/** The control.port bearer token: the file's one word, from a file no other user can read. */
export function readControlToken(file: string): string {
  const token = readSecretFile(file).toString("utf8").trim();
  if (!/^[\x21-\x7e]{32,}$/.test(token)) throw new Error(`${file} must hold one token of at least 32 printable characters (it is made by dsm init; delete it and dsm run makes a new one)`);
  return token;
}
