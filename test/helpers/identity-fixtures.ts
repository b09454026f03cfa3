// Shared setup for the identity-format tests (identity-key, keycert, card, libp2p-key, genesis):
// two software identity keys, a libp2p peer id and two BLS keys, made fresh in a temp dir by
// useIdentityFixtures(), which each test file calls once at its top level. The `let` exports
// are live bindings: read them inside tests, after beforeAll has run.
import { afterAll, beforeAll } from "bun:test";
import * as crypto from "node:crypto";
import * as path from "node:path";
import { toHex } from "../../src/encoding/hex.ts";
import { blsKeygen, blsPopProve, blsPublicKey } from "../../src/crypto/bls.ts";
import { SoftwareIdentityKey } from "../../src/identity/identity-key.ts";
import { createLibp2pKey } from "../../src/identity/libp2p-key.ts";
import { cleanupTempDirs, tempDir } from "./node.ts";

export const sha256Hex = (b: Uint8Array | string) => crypto.createHash("sha256").update(b).digest("hex");
export const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
export const MESH = "ab".repeat(32);
export const NOW = Date.UTC(2026, 10, 25, 18, 35, 0, 123);

export let dir: string;
export let idA: SoftwareIdentityKey;
export let idB: SoftwareIdentityKey;
export let peerA: string;
export let blsA: { pub: string; pop: string };
export let blsB: { pub: string; pop: string };

function blsKeys(): { pub: string; pop: string } {
  const sk = blsKeygen(crypto.randomBytes(32));
  return { pub: toHex(blsPublicKey(sk)), pop: toHex(blsPopProve(sk)) };
}

export function useIdentityFixtures(): void {
  beforeAll(() => {
    dir = tempDir();
    idA = SoftwareIdentityKey.create(path.join(dir, "a.pem"), false);
    idB = SoftwareIdentityKey.create(path.join(dir, "b.pem"), false);
    peerA = createLibp2pKey(path.join(dir, "a.p2p"), false).peerId;
    blsA = blsKeys();
    blsB = blsKeys();
  });

  afterAll(cleanupTempDirs);
}
