// Where a node keeps its files. One place, so every command agrees.
import * as path from "node:path";
import type { DsmConfig } from "../config/config.ts";

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
  };
}
