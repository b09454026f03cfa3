// The library's event handlers (src/node/handlers.ts) with real nodes in temp dirs:
// what MitigationLogger and SecurityEventHandler store.
import { describe, expect, test } from "bun:test";
import { sha256Hex } from "../src/crypto/sha256.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { MitigationLogger, SecurityEventHandler } from "../src/node/handlers.ts";
import type { DSMNode } from "../src/node/node.ts";
import type { Microblock } from "../src/protocol/microblock.ts";
import { SURICATA_ALERT } from "./helpers/fixtures.ts";
import { useScratch } from "./helpers/scratch.ts";

const { newNode } = useScratch("dsm-handlers-");

function storedPayload(node: DSMNode, mb: Microblock): { text: string; value: any } {
  const text = node.ledger.payload(mb.payload_hash);
  expect(text).not.toBeNull();
  return { text: text!, value: JSON.parse(text!) };
}

const TOKEN = /^ip-[0-9a-f]{32}$/;

// ---------------------------------------------------------------------------
describe("handlers with privacy.anonymize_ips: addresses anonymised before event_id", () => {
  test("MitigationLogger: no clear IP in the payload, and event_id is not a hash of the clear record", async () => {
    const { node } = await newNode("anon-mit", (c) => (c.privacy.anonymize_ips = true));
    const threat = "9c1e".repeat(16);
    const mb = await new MitigationLogger(node).onMitigationExecuted(threat, {
      action: "block",
      target: "10.1.2.3",
      reason: "brute force from 10.1.2.3",
    });
    const { text, value: p } = storedPayload(node, mb);
    expect(text).not.toContain("10.1.2.3");
    expect(p.original.target).toMatch(TOKEN);
    expect(p.indicators.target).toBe(p.original.target);
    expect(p.original.reason).toBe(`brute force from ${p.original.target}`);

    // What event_id was before the fix: a hash of the record with the clear IP in it,
    // which anyone can confirm by guessing addresses.
    const clear: Record<string, unknown> = {
      action: "block",
      target: "10.1.2.3",
      status: "executed",
      time: p.original.time,
      threat,
      reason: "brute force from 10.1.2.3",
    };
    expect(p.event_id).not.toBe(sha256Hex(canonicalize(clear)).slice(0, 32));
    // Now: a hash of the anonymised record, which is exactly what is stored.
    expect(p.event_id).toBe(sha256Hex(canonicalize(p.original)).slice(0, 32));
  });

  test("SecurityEventHandler.onSuricataAlert stores what dsm ingest stores for the same record", async () => {
    const { node } = await newNode("anon-suri", (c) => (c.privacy.anonymize_ips = true));
    const record = {
      ...SURICATA_ALERT,
      alert: { ...SURICATA_ALERT.alert, signature: "ET SCAN from 10.137.3.54", severity: 2 },
    };

    // The ingest path (the same PreparedEvent dsm ingest chains for this line).
    const expected = node.prepareRecord(structuredClone(record), "suricata");
    const mb = await new SecurityEventHandler(node).onSuricataAlert(structuredClone(record));
    expect(mb.event_type).toBe(expected.eventType);
    expect(mb.payload_hash).toBe(expected.payloadHash);
    const { text, value: p } = storedPayload(node, mb);
    expect(text).toBe(expected.canonical);
    expect(p.event_id).toBe(JSON.parse(expected.canonical).event_id);
    for (const ip of ["10.137.3.54", "10.128.2.48"]) expect(text).not.toContain(ip);
  });
});

// ---------------------------------------------------------------------------
describe("MitigationLogger: a block with a duration advises the mesh (issue 15)", () => {
  test("record(): the mitigation keeps hashing its target under anonymize_ips, the advisory after it names the target in clear", async () => {
    const { node } = await newNode("anon-advise", (c) => (c.privacy.anonymize_ips = true));
    const threat = "9c1e".repeat(16);
    const r = await new MitigationLogger(node).record(threat, { action: "block", target: "203.0.113.9", duration: 3600, category: "bruteforce", reason: "from 203.0.113.9 to 10.1.2.3" });
    const m = storedPayload(node, r.mitigation);
    expect(m.text).not.toContain("203.0.113.9");
    expect(m.value.original).toMatchObject({ duration: 3600 });
    expect(m.value.original.target).toMatch(TOKEN);
    expect(r.advisory!.event_type).toBe("threat.advisory");
    expect(r.advisory!.seq).toBe(r.mitigation.seq + 1);
    const a = storedPayload(node, r.advisory!);
    expect(a.value).toEqual({
      v: 1,
      kind: "advisory",
      indicators: [{ scope: "ip", value: "203.0.113.9" }],
      category: "bruteforce",
      severity: "high",
      confidence: 80,
      ttl: 3600,
      evidence: [r.mitigation.id, threat],
      reason: "mitigation.block for 1h",
    });
    expect(r.indicators).toEqual([{ scope: "ip", value: "203.0.113.9" }]);
  });

  test("onMitigationExecuted still resolves to the mitigation; a local target or a failed block advises nothing", async () => {
    const { node } = await newNode("advise-local");
    const logger = new MitigationLogger(node);
    const mb = await logger.onMitigationExecuted(null, { action: "block", target: "198.51.100.7", duration: 600 });
    expect(mb.event_type).toBe("mitigation.block");
    const local = await logger.record(null, { action: "block", target: "192.168.1.20", duration: 600 });
    expect([local.advisory, local.noAdvisory]).toEqual([null, "ip:192.168.1.20 is inside intel.local_networks: a local address is not advised to the mesh"]);
    expect((await logger.record(null, { action: "block", target: "198.51.100.7", duration: 600, success: false })).advisory).toBeNull();
    expect(node.ledger.list({ eventType: "threat.advisory" }).length).toBe(1);
    await expect(logger.record(null, { action: "block", target: "198.51.100.7", duration: 10 })).rejects.toThrow("the duration must be 1m to 30d, got 10s");
  });
});
