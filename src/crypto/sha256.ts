// SHA-256 on Bun's native hasher (BoringSSL): the hot path of ingest and verify.
import { canonicalize } from "../encoding/jcs.ts";
import { toHex } from "../encoding/hex.ts";

export function sha256(data: Uint8Array | string): Uint8Array {
  return Bun.SHA256.hash(data) as Uint8Array;
}

export function sha256Hex(data: Uint8Array | string): string {
  return toHex(sha256(data));
}

/**
 * The one digest every dsm signature covers (DESIGN.md section 2):
 * sha256("hookprobe-dsm/<kind>/v1\n" || JCS(body)). The kind keeps a microblock
 * from ever being accepted as a key certificate or card, and the reverse.
 */
export function domainDigest(kind: DigestKind, body: unknown): Uint8Array {
  return domainDigestOfCanonical(kind, canonicalize(body));
}

export function domainDigestOfCanonical(kind: DigestKind, canonicalJson: string): Uint8Array {
  const h = new Bun.CryptoHasher("sha256");
  h.update(DOMAIN_PREFIX[kind]);
  h.update(canonicalJson);
  return h.digest() as Uint8Array;
}

export type DigestKind =
  | "microblock"
  | "keycert"
  | "keycert-pop"
  | "card"
  | "checkpoint"
  | "genesis"
  | "proposal"
  | "vote"
  | "quarantine"
  | "set-change"
  | "tpm-certify"
  | "tpm-quote"
  | "enroll-challenge"
  | "enroll-proof";

const DOMAIN_PREFIX: Record<DigestKind, string> = {
  microblock: "hookprobe-dsm/microblock/v1\n",
  keycert: "hookprobe-dsm/keycert/v1\n",
  "keycert-pop": "hookprobe-dsm/keycert-pop/v1\n",
  card: "hookprobe-dsm/card/v1\n",
  checkpoint: "hookprobe-dsm/checkpoint/v1\n",
  genesis: "hookprobe-dsm/genesis/v1\n",
  proposal: "hookprobe-dsm/proposal/v1\n",
  vote: "hookprobe-dsm/vote/v1\n",
  quarantine: "hookprobe-dsm/quarantine/v1\n",
  "set-change": "hookprobe-dsm/set-change/v1\n",
  // TPM-made and enrollment digests (DESIGN.md section 7, docs/PROTOCOL.md "Attestation"):
  // what TPM2_Certify and TPM2_Quote carry as qualifyingData, and what enrollment hashes.
  "tpm-certify": "hookprobe-dsm/tpm-certify/v1\n",
  "tpm-quote": "hookprobe-dsm/tpm-quote/v1\n",
  "enroll-challenge": "hookprobe-dsm/enroll-challenge/v1\n",
  "enroll-proof": "hookprobe-dsm/enroll-proof/v1\n",
};
