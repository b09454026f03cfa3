// The enrollments a verifier keeps (src/ledger/enrollment-store.ts), in a real SQLite ledger:
// one TPM is one enrolled node, a pending challenge is answered once and not after its TTL,
// and everything survives a reopen.
import { afterAll, describe, expect, test } from "bun:test";
import * as path from "node:path";
import { EnrollmentStore, PENDING_TTL_MS } from "../src/ledger/enrollment-store.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { challengeDigest, type EnrollChallenge } from "../src/protocol/enrollment.ts";
import type { NodeCard } from "../src/protocol/card.ts";
import type { Enrollment, PendingEnrollment } from "../src/tpm/enroll.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

const MESH = "ab".repeat(32);
const card = (nodeId: string) => ({ node_id: nodeId }) as unknown as NodeCard;
const enrollment = (nodeId: string, ekDigest: string, at = 1000): Enrollment => ({
  node_id: nodeId,
  ak_name: "000b" + nodeId,
  ak_public: "00",
  ek: { method: "certificate", issuer: "test CA", digest: ekDigest },
  enrolled_at: at,
  card: card(nodeId),
});

function pending(nodeId: string, created: string): PendingEnrollment {
  const challenge: EnrollChallenge = { v: 1, type: "enroll-challenge", mesh: MESH, node_id: nodeId, ak_name: "000b" + nodeId, credential_blob: "11", secret: "22", verifier: "cd".repeat(32), created };
  return { challenge, credential: new Uint8Array(32).fill(7), ek: { method: "allowlist", digest: "ee".repeat(32) }, ak_public: "00", card: card(nodeId) };
}

describe("EnrollmentStore", () => {
  test("one TPM is one enrolled node: enrolling a node drops another's enrollment with the same EK", () => {
    const ledger = Ledger.open(path.join(tempDir(), "ledger.sqlite"));
    const store = new EnrollmentStore(ledger, MESH);
    const [a, b, c] = ["01".repeat(32), "02".repeat(32), "03".repeat(32)];
    expect(store.put(enrollment(a, "aa".repeat(32)))).toEqual([]);
    expect(store.put(enrollment(c, "cc".repeat(32)))).toEqual([]);
    expect(store.put(enrollment(b, "aa".repeat(32)))).toEqual([a]);
    expect(store.get(a)).toBeNull();
    expect([store.has(a), store.has(b), store.has(c)]).toEqual([false, true, true]);
    expect(store.all().map((e) => e.node_id).sort()).toEqual([b, c]);
    // Re-enrolling the same node replaces its record and clears its last quote.
    store.quoted(b, 5000, "ff".repeat(32), "passed");
    expect(store.get(b)).toMatchObject({ quoted_at: 5000, result: "passed" });
    expect(store.put(enrollment(b, "aa".repeat(32), 6000))).toEqual([]);
    expect(store.get(b)).toMatchObject({ enrolled_at: 6000, quoted_at: null, result: null });
    ledger.close();
  });

  test("a pending challenge is found by its digest, once, and not after its TTL; it survives a reopen", () => {
    const file = path.join(tempDir(), "ledger.sqlite");
    const now = Date.UTC(2026, 11, 2);
    let ledger = Ledger.open(file);
    let store = new EnrollmentStore(ledger, MESH);
    const fresh = pending("04".repeat(32), new Date(now).toISOString());
    const old = pending("05".repeat(32), new Date(now - PENDING_TTL_MS - 1000).toISOString());
    const d1 = store.addPending(fresh, now);
    const d2 = store.addPending(old, now - PENDING_TTL_MS - 1000);
    expect(d1).toBe(challengeDigest(fresh.challenge));
    ledger.close();
    ledger = Ledger.open(file);
    store = new EnrollmentStore(ledger, MESH);
    expect(store.pending(d1, now)).toMatchObject({ challenge: fresh.challenge, credential: fresh.credential });
    // Older than the TTL: never an answer, even though no newer challenge swept it out yet.
    expect(store.pending(d2, now)).toBeNull();
    store.dropPending(d1);
    expect(store.pending(d1, now)).toBeNull();
    ledger.close();
  });
});
