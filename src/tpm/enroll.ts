// Enrollment (DESIGN.md section 7, link 2): the verifier's and the node's halves, carried
// over /dsm/enroll/1 by the mesh and in files by `dsm attest enroll-*`. The verifier checks
// the card's evidence first (src/tpm/evidence.ts), then makes a credential only the TPM of
// that EK, holding that AK, can activate. What it learns is an Enrollment: the AK it will
// check every later quote of this node against.
import * as crypto from "node:crypto";
import { fromHex, toHex } from "../encoding/hex.ts";
import { formatTime } from "../encoding/time.ts";
import type { NodeCard } from "../protocol/card.ts";
import { answerEnrollChallenge, type EnrollAnswer, enrollAnswerProblem, type EnrollChallenge } from "../protocol/enrollment.ts";
import type { Genesis } from "../protocol/genesis.ts";
import { makeCredential } from "./credential.ts";
import { parsePublicArea } from "./quote.ts";
import { type EkTrust, verifyEvidence } from "./evidence.ts";
import type { TpmIdentityKey } from "./tpm-key.ts";

/** What a verifier holds about a node after a verified enrollment. */
export interface Enrollment {
  node_id: string;
  ak_name: string;
  /** TPMT_PUBLIC of the enrolled AK, hex: later quotes are checked under it, not under what an answer says. */
  ak_public: string;
  ek: EkTrust;
  enrolled_at: number;
  /** The card enrolled: proof bundles made here carry it, so a light client sees the trust links. */
  card: NodeCard;
}

/** A verifier's pending challenge: the credential is its secret, kept until the answer comes. */
export interface PendingEnrollment {
  challenge: EnrollChallenge;
  credential: Uint8Array;
  ek: EkTrust;
  ak_public: string;
  card: NodeCard;
}

export class EnrollError extends Error {
  constructor(
    readonly check: string,
    message: string,
  ) {
    super(message);
    this.name = "EnrollError";
  }
}

/** The verifier's challenge for a node whose card's evidence verifies; EnrollError names the link that does not. */
export function makeEnrollChallenge(card: NodeCard, genesis: Genesis, mesh: string, verifier: string, nowMs: number): PendingEnrollment {
  const ev = verifyEvidence(card, genesis.attestation, nowMs);
  if (!ev.ok) throw new EnrollError(ev.check, ev.reason);
  const credential = new Uint8Array(crypto.randomBytes(32));
  const made = makeCredential(ev.ekPublic, fromHex(ev.akName), credential);
  const challenge: EnrollChallenge = {
    v: 1,
    type: "enroll-challenge",
    mesh,
    node_id: card.node_id,
    ak_name: ev.akName,
    credential_blob: toHex(made.credentialBlob),
    secret: toHex(made.secret),
    verifier,
    created: formatTime(nowMs),
  };
  return { challenge, credential, ek: ev.ek, ak_public: toHex(ev.akPublic), card };
}

/** The verifier's check of the answer: the node recovered the credential, so the AK is in the EK's TPM. */
export function finishEnrollment(p: PendingEnrollment, answer: EnrollAnswer, nowMs: number): Enrollment {
  const problem = enrollAnswerProblem(p.challenge, p.credential, answer);
  if (problem) throw new EnrollError("activation", problem);
  return { node_id: p.challenge.node_id, ak_name: p.challenge.ak_name, ak_public: p.ak_public, ek: p.ek, enrolled_at: nowMs, card: p.card };
}

/**
 * The node's half: refuses a challenge that is not for it (another node, another mesh, an AK
 * it does not hold), then lets its TPM activate the credential.
 */
export function answerEnrollment(key: TpmIdentityKey, card: NodeCard, mesh: string, c: EnrollChallenge): EnrollAnswer {
  if (c.mesh !== mesh) throw new EnrollError("mesh", `the challenge is for mesh ${c.mesh.slice(0, 16)}…, not this node's ${mesh.slice(0, 16)}…`);
  if (c.node_id !== card.node_id) throw new EnrollError("node", `the challenge is for node ${c.node_id.slice(0, 16)}…, not this one (${card.node_id.slice(0, 16)}…)`);
  const ak = card.tpm_evidence?.ak_public;
  if (!ak) throw new EnrollError("no_evidence", "this node's card carries no TPM evidence (dsm init --tpm again to add it)");
  // Before any TPM work: a credential for another AK could never activate here.
  if (c.ak_name !== toHex(parsePublicArea(fromHex(ak)).name)) throw new EnrollError("ak", "the challenge is for another AK than this node's");
  const credential = key.activateCredential(fromHex(c.credential_blob), fromHex(c.secret));
  return answerEnrollChallenge(c, credential);
}
