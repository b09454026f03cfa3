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
