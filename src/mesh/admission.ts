// Which peers this node talks to: MeshNet asks for a peer's node card on connection and
// keeps only the peers admitted here.
import type { DSMNode } from "../node/node.ts";
import { type NodeCard, parseCard } from "../protocol/card.ts";
import { epochAt } from "../protocol/checkpoint.ts";
import { SetChangeStore } from "../ledger/set-store.ts";
import { canonicalize } from "../encoding/jcs.ts";
import { mustAttest } from "../protocol/genesis.ts";
import { verifyEvidence } from "../tpm/evidence.ts";

/**
 * Why a peer's node card does not admit it to this mesh, or null when it does: the card
 * must verify under its identity key, name the connection's peer id, and belong to a
 * validator of the set (exactly its card there) or a node the admission policy
 * admits (with TPM evidence that verifies when the genesis makes its role attest).
 */
export function admitCard(node: DSMNode, value: unknown, peerId: string): string | null {
  let card;
  try {
    card = parseCard(value, "peer card", { checkPop: false });
  } catch (e) {
    return (e as Error).message;
  }
  if (card.peer_id !== peerId) return `its card names peer ${card.peer_id}, not the connected peer`;
  const genesis = node.genesis;
  // A validator shows its card in the newest set, or (while a rotation waits its two
  // epochs) the one in force now: never a card a rotation replaced.
  const history = new SetChangeStore(node.ledger, node.mesh).history(genesis);
  const cardsOf = (cards: readonly NodeCard[]) => cards.find((c) => c.node_id === card.node_id);
  const allowed = [cardsOf(history.latestCards()), cardsOf(history.cardsAt(epochAt(genesis, Date.now())))].filter((c) => c !== undefined);
  if (allowed.length > 0) return allowed.some((c) => canonicalize(c) === canonicalize(card)) ? null : `node ${card.node_id.slice(0, 16)}… shows a card other than its card in the validator set`;
  if (!node.policy.isAdmitted(card.node_id)) return `node ${card.node_id.slice(0, 16)}… is not admitted by the mesh's ${genesis.admission.policy} policy`;
  if (mustAttest(genesis, card.node_id)) {
    // Checked now, from what the card shows against the genesis' EK roots: the links that
    // need no round trip. Validators then enroll its AK (credential activation).
    if (!card.tpm) return `node ${card.node_id.slice(0, 16)}… has no TPM, and the mesh requires attestation of its role`;
    const ev = verifyEvidence(card, genesis.attestation, Date.now());
    if (!ev.ok) return `node ${card.node_id.slice(0, 16)}… must attest, but its TPM evidence does not verify (${ev.check}): ${ev.reason}`;
  }
  return null;
}
