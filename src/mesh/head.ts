// /dsm/head/1: the head of a node's chain as a peer holds it, with its proof. A node asks
// it of the mesh before it signs its first microblock in a process (restore-check.ts): a
// data dir restored from an older copy would otherwise sign seq numbers the mesh already
// holds, and validators would quarantine the node for the fork.
//
//   request  {"node_id": "<64 hex>"}
//   answer   {"seq": N, "lines": "<key certificate line>\n<microblock line>\n"}   (N = 0: lines "")
//
// The lines are dsm export lines (chain/exchange.ts) of the microblock at seq N, payload
// null. A claimed seq counts only with that microblock, signed by a key its certificate
// binds to the node's identity key: a peer cannot stop a node from signing by claiming a
// huge seq, since it cannot forge the signature.
import { certificateLine, ExchangeLineError, microblockLine, parseExchangeLine } from "../chain/exchange.ts";
import type { DSMNode } from "../node/node.ts";
import { keyNameOf, parseKeyCert, signingKeyInfo } from "../protocol/keycert.ts";
import { checkMicroblock, identifyMicroblock } from "../protocol/microblock.ts";

export const HEAD_PROTOCOL = "/dsm/head/1";
/** One certificate line and one microblock line without payload: a few KB; the rest is slack. */
export const HEAD_ANSWER_BYTES = 64 * 1024;

/** What a peer's answer proves about a chain: its head's seq and id (seq 0, id null: it holds none). */
export type HeadProof = { ok: true; seq: number; id: string | null } | { ok: false; reason: string };

/** Answers /dsm/head/1 from this node's ledger. */
export function answerHead(node: DSMNode, req: unknown): unknown {
  const nodeId = (req as { node_id?: unknown } | null)?.node_id;
  if (typeof nodeId !== "string" || !/^[0-9a-f]{64}$/.test(nodeId)) return { error: "node_id must be a 64-hex node id" };
  const head = node.ledger.head(node.mesh, nodeId);
  const mb = head ? node.ledger.bySeq(node.mesh, nodeId, head.seq) : null;
  if (!head || !mb) return { seq: 0, lines: "" };
  const cert = node.ledger.keyCert(mb.key);
  return { seq: head.seq, lines: (cert === null ? "" : certificateLine(cert)) + microblockLine(mb, null) };
}

/**
 * Checks a /dsm/head/1 answer about `nodeId`'s chain (default: this node's own). The
 * microblock must be exactly the claimed seq of that node in this mesh, its id must
 * recompute, and its signature must verify under a key certificate signed by the node's
 * identity key (the checks every received microblock passes, checkMicroblock). Two of
 * those checks do not apply to a proof: a quarantine does not make a signature less the
 * node's, and neither does a timestamp ahead of this clock (a restored node's clock may be
 * behind), so neither discounts it.
 */
export function checkHeadAnswer(node: DSMNode, answer: unknown, nodeId: string = node.nodeId): HeadProof {
  const a = answer as { seq?: unknown; lines?: unknown; error?: unknown } | null;
  if (typeof a !== "object" || a === null) return { ok: false, reason: "the answer is not a JSON object" };
  if (typeof a.error === "string") return { ok: false, reason: `the peer answered: ${a.error.slice(0, 200)}` };
  if (typeof a.seq !== "number" || !Number.isSafeInteger(a.seq) || a.seq < 0) return { ok: false, reason: "seq must be an integer >= 0" };
  if (typeof a.lines !== "string") return { ok: false, reason: "lines must be a string" };
  if (a.seq === 0) return a.lines === "" ? { ok: true, seq: 0, id: null } : { ok: false, reason: "seq 0 comes with no lines" };
  const lines = a.lines.split("\n").filter((l) => l !== "");
  if (lines.length !== 2) return { ok: false, reason: `expected a key certificate line and a microblock line, got ${lines.length} lines` };
  try {
    const certLine = parseExchangeLine(lines[0]!, "head line 1");
    const mbLine = parseExchangeLine(lines[1]!, "head line 2");
    if (certLine.kind !== "key_certificate" || mbLine.kind !== "microblock") return { ok: false, reason: "expected a key certificate line, then a microblock line" };
    const cert = parseKeyCert(certLine.certificate);
    if (cert.mesh !== node.mesh) return { ok: false, reason: "the key certificate belongs to another mesh" };
    if (cert.node_id !== nodeId) return { ok: false, reason: "the key certificate is another node's" };
    const { mb, idBytes } = identifyMicroblock(mbLine.microblock, node.mesh);
    if (mb.node_id !== nodeId) return { ok: false, reason: "the microblock is another node's" };
    if (mb.seq !== a.seq) return { ok: false, reason: `the microblock is seq ${mb.seq}, not the claimed ${a.seq}` };
    const key = signingKeyInfo(cert);
    const name = keyNameOf(cert.signing_pub);
    checkMicroblock(mb, idBytes, {
      mesh: node.mesh,
      nowMs: Date.now(),
      maxClockSkewMs: Number.POSITIVE_INFINITY,
      signingKey: (k) => (k === name ? key : undefined),
      isAdmitted: (n) => node.policy.isAdmitted(n),
      isQuarantined: () => false,
    });
    return { ok: true, seq: mb.seq, id: mb.id };
  } catch (e) {
    return { ok: false, reason: e instanceof ExchangeLineError ? e.message : `proof does not verify: ${(e as Error).message}` };
  }
}
