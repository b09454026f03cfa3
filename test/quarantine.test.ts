// Quarantine requests and decisions (src/protocol/quarantine.ts), pure: a request is one
// validator's signed word, dated by mesh epoch; a decision needs f + 1 observed attestation
// failures or a quorum, by distinct validators, all current for the node's decision count.
// A 4-validator mesh (f = 1, q = 3) from the consensus simulation's fixed keys.
import { beforeAll, describe, expect, test } from "bun:test";
import { blsSign } from "../src/crypto/bls.ts";
import {
  decisionFromSeq,
  decisionMet,
  decisionProblem,
  eligibleDecision,
  makeQuarantine,
  parseQuarantine,
  type QuarantineAction,
  type QuarantineReason,
  type QuarantineRecord,
} from "../src/protocol/quarantine.ts";
import { type SimMesh, simMesh } from "./helpers/consensus-sim.ts";

let m: SimMesh;
beforeAll(async () => {
  m = await simMesh(4);
});

const NODE = "ab".repeat(32);
function req(validator: number, f: { action?: QuarantineAction; reason?: QuarantineReason; basis?: number; epoch?: number; node?: string; fromSeq?: number } = {}): QuarantineRecord {
  return makeQuarantine({
    mesh: m.mesh,
    nodeId: f.node ?? NODE,
    action: f.action ?? "quarantine",
    fromSeq: f.fromSeq ?? 1,
    reason: f.reason ?? "operator",
    basis: f.basis ?? 0,
    epoch: f.epoch ?? 10,
    detail: `by ${validator}`,
    validator,
    sign: (d) => blsSign(m.secrets[validator]!, d),
  });
}

describe("quarantine requests", () => {
  test("a request signed for an epoch after the receiver's is refused; its own epoch and earlier are taken", () => {
    const r = req(0, { epoch: 12 });
    expect(parseQuarantine(r, m.mesh, m.set, "q", { maxEpoch: 12 })).toEqual(r);
    expect(() => parseQuarantine(r, m.mesh, m.set, "q", { maxEpoch: 11 })).toThrow(/signed for epoch 12, but epoch 11 is the mesh's current one/);
    const far = req(0, { action: "lift", epoch: 2 ** 40 });
    expect(() => parseQuarantine(far, m.mesh, m.set, "q", { maxEpoch: 12 })).toThrow(/request from the future is refused/);
  });

  test("the signature covers the basis and the epoch; another mesh's request and version 1 records are refused", () => {
    const r = req(1);
    expect(() => parseQuarantine({ ...r, basis: 1 }, m.mesh, m.set)).toThrow(/signature of validator 1 does not verify/);
    expect(() => parseQuarantine({ ...r, epoch: 9 }, m.mesh, m.set)).toThrow(/signature of validator 1 does not verify/);
    expect(() => parseQuarantine({ ...r, from_seq: 9 }, m.mesh, m.set)).toThrow(/signature of validator 1 does not verify/);
    expect(() => parseQuarantine({ ...req(1, { action: "lift" }), from_seq: 3 }, m.mesh, m.set)).toThrow(/"from_seq"/);
    expect(() => parseQuarantine({ ...r, validator: 2 }, m.mesh, m.set)).toThrow(/signature of validator 2 does not verify/);
    expect(() => parseQuarantine(r, "cd".repeat(32), m.set)).toThrow(/another mesh/);
    const { basis: _b, epoch: _e, ...old } = r;
    expect(() => parseQuarantine({ ...old, v: 1, from_seq: 3, issued: "2026-12-02T00:00:00.000Z" }, m.mesh, m.set)).toThrow(/version 1 record .* no longer accepted/);
    expect(() => parseQuarantine({ ...r, action: "lift", from_seq: 0, reason: "attestation_failed" }, m.mesh, m.set)).toThrow(/"reason"/);
  });
});

describe("decisions", () => {
  test("f + 1 observed attestation failures or a quorum quarantine; a lift needs a quorum (n = 4: f = 1, q = 3)", () => {
    const obs = (v: number) => req(v, { reason: "attestation_failed" });
    expect(decisionMet("quarantine", [obs(0)], m.set)).toBe(false);
    expect(decisionMet("quarantine", [obs(0), obs(3)], m.set)).toBe(true);
    expect(decisionMet("quarantine", [req(0), req(1)], m.set)).toBe(false);
    expect(decisionMet("quarantine", [obs(0), req(1)], m.set)).toBe(false);
    expect(decisionMet("quarantine", [req(0), req(1), req(2)], m.set)).toBe(true);
    const lift = (v: number) => req(v, { action: "lift" });
    expect(decisionMet("lift", [lift(0), lift(1)], m.set)).toBe(false);
    expect(decisionMet("lift", [lift(0), lift(1), lift(3)], m.set)).toBe(true);
  });

  test("decisionProblem refuses one validator's word, repeated signers, stale or forged requests, and a decision the node's standing does not call for", () => {
    const free = { decisions: 0, quarantined: false, decided: false };
    const good = { node_id: NODE, action: "quarantine" as const, requests: [req(0), req(1), req(2)] };
    expect(decisionProblem(good, free, m.set)).toBeNull();
    expect(decisionProblem({ ...good, requests: [req(0)] }, free, m.set)).toMatch(/1 request\(s\) are not enough/);
    expect(decisionProblem({ ...good, requests: [req(0), req(0, { epoch: 11 }), req(1)] }, free, m.set)).toMatch(/distinct validators/);
    expect(decisionProblem({ ...good, requests: [req(1), req(0), req(2)] }, free, m.set)).toMatch(/distinct validators in index order/);
    expect(decisionProblem(good, { decisions: 1, quarantined: false, decided: false }, m.set)).toMatch(/signed after 0 decision\(s\), the node has 1/);
    expect(decisionProblem(good, { decisions: 0, quarantined: true, decided: false }, m.set)).toMatch(/quarantined already/);
    // A request dated after the checkpoint that would carry it (a byzantine validator's own) is refused.
    expect(decisionProblem({ ...good, requests: [req(0), req(1), req(2, { epoch: 50 })] }, free, m.set, 49)).toMatch(/signed for epoch 50, after the checkpoint's/);
    expect(decisionProblem(good, free, m.set, 10)).toBeNull();
    expect(decisionProblem({ ...good, requests: [req(0), req(1), req(2, { node: "cd".repeat(32) })] }, free, m.set)).toMatch(/another node or action/);
    const forged = { ...req(2), sig: req(3).sig };
    expect(decisionProblem({ ...good, requests: [req(0), req(1), forged] }, free, m.set)).toMatch(/validator 2 has a signature that does not verify/);
    const lift = { node_id: NODE, action: "lift" as const, requests: [0, 1, 2].map((v) => req(v, { action: "lift", basis: 1 })) };
    expect(decisionProblem(lift, { decisions: 1, quarantined: true, decided: true }, m.set)).toBeNull();
    expect(decisionProblem(lift, { decisions: 1, quarantined: false, decided: false }, m.set)).toMatch(/not quarantined by a decision/);
    // Fork evidence is never lifted: a lift needs a decided quarantine.
    expect(decisionProblem(lift, { decisions: 1, quarantined: true, decided: false }, m.set)).toMatch(/fork evidence is never lifted/);
    // A lift signed for the first quarantine cannot lift a later one.
    expect(decisionProblem(lift, { decisions: 3, quarantined: true, decided: true }, m.set)).toMatch(/signed after 1 decision\(s\), the node has 3/);
  });

  test("a quarantine keeps out from the earliest seq its requests name, never one already in the log", () => {
    const d = { node_id: NODE, action: "quarantine" as const, requests: [req(0, { fromSeq: 9 }), req(1, { fromSeq: 7 }), req(2, { fromSeq: 12 })] };
    expect(decisionFromSeq(d, 0)).toBe(7);
    expect(decisionFromSeq(d, 6)).toBe(7);
    expect(decisionFromSeq(d, 10)).toBe(11);
  });

  test("eligibleDecision takes one current request per validator, for what the node's standing calls for", () => {
    const pending = [req(0, { epoch: 3 }), req(0, { epoch: 5 }), req(2, { basis: 1 }), req(1, { action: "lift" })];
    const free = { decisions: 0, quarantined: false, decided: false };
    expect(eligibleDecision(NODE, pending, free, m.set)).toBeNull();
    // Validator 2's request is stale (basis 1) and validator 1 asked for a lift: two operators' requests are not a quorum.
    expect(eligibleDecision(NODE, [...pending, req(3)], free, m.set)).toBeNull();
    const e = eligibleDecision(NODE, [...pending, req(3), req(1)], free, m.set)!;
    expect(e.requests.map((r) => [r.validator, r.epoch])).toEqual([[0, 5], [1, 10], [3, 10]]);
    expect(decisionProblem(e, free, m.set)).toBeNull();
    // Held by fork evidence alone: nothing to decide (neither a quarantine nor a lift).
    expect(eligibleDecision(NODE, [...pending, req(3), req(1)], { decisions: 0, quarantined: true, decided: false }, m.set)).toBeNull();
  });
});
