// Regression tests for the review fixes of 5c248e6 and a3400b1 that show at the command
// line: each drives the compiled binary dist/dsm (`bun run test` builds it first; run
// `bun run build` before `bun test test/e2e-review.test.ts` by hand). Each test fails on
// the code before its fix. The library side is in test/review-fixes.test.ts.
import { describe, expect, test } from "bun:test";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ndjson, type RunResult, type TempNode, withTempNode } from "./helpers/e2e.ts";
import { SURICATA_ALERT } from "./helpers/fixtures.ts";

const TOKEN = /^ip-[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;

const ALERT = SURICATA_ALERT;

async function microblockCount(node: TempNode): Promise<number> {
  return JSON.parse((await node.ok(["status", "--json"])).stdout).ledger.microblocks;
}

/** One clear line on stderr from the named command, exit 1. */
function expectOneLineError(r: RunResult, command: string, message: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.errLines).toHaveLength(1);
  expect(r.errLines[0]).toStartWith(`dsm ${command}: `);
  expect(r.errLines[0]).toMatch(message);
}

// ---------------------------------------------------------------------------
describe("8. read-only commands need no secrets", () => {
  test("with identity.pem, bls.key, privacy.key and libp2p.key gone: verify, log, show, status, card work; emit fails clearly", async () => {
    await withTempNode(
      async (node) => {
        const ing = await node.ok(["ingest", "--json"], { stdin: JSON.stringify(ALERT) + "\n" });
        const [res] = ndjson<{ id: string }>(ing.stdout);
        expect(res!.id).toMatch(HEX64);
        await node.ok(["emit", "--event-type", "test.event", "--payload", '{"n":1}']);
        for (const f of ["identity.pem", "bls.key", "privacy.key", "libp2p.key"]) {
          expect(existsSync(join(node.dataDir, f))).toBe(true);
          rmSync(join(node.dataDir, f));
        }

        const verify = await node.run(["verify", "--json"]);
        expect(verify.code).toBe(0);
        const report = JSON.parse(verify.stdout);
        expect(report).toMatchObject({ ok: true, microblocks: 2, problem_count: 0 });

        const log = await node.run(["log", "--json"]);
        expect(log.code).toBe(0);
        expect(ndjson(log.stdout)).toHaveLength(2);

        const shown = await node.run(["show", res!.id, "--json"]);
        expect(shown.code).toBe(0);
        const payload = JSON.parse(shown.stdout).payload;
        expect(payload.original.src_ip).toMatch(TOKEN); // ingested with anonymisation on
        expect(shown.stdout).not.toContain("10.137.3.54");

        const status = await node.run(["status", "--json"]);
        expect(status.code).toBe(0);
        expect(JSON.parse(status.stdout)).toMatchObject({ key_kind: "software", anonymize_ips: true, ledger: { microblocks: 2 } });
        expect((await node.run(["status"])).code).toBe(0);

        const card = await node.run(["card", "--json"]);
        expect(card.code).toBe(0);
        expect(JSON.parse(card.stdout).node_id).toBe(JSON.parse(status.stdout).node_id);

        const emit = await node.run(["emit", "--event-type", "test.event", "--payload", '{"n":2}']);
        expectOneLineError(emit, "emit", /identity key .*identity\.pem.* not found/);
        expect(emit.stdout).toBe("");
        expect(await microblockCount(node)).toBe(2);
      },
      { env: { DSM_PRIVACY_ANONYMIZE_IPS: "true" } },
    );
  });
});

// ---------------------------------------------------------------------------
describe("12. identity.kind tpm is refused, never silently signed with the software key", () => {
  test("DSM_IDENTITY_KIND=tpm dsm emit / mitigation on a software node: exit 1, one clear line, nothing stored", async () => {
    await withTempNode(async (node) => {
      await node.ok(["emit", "--event-type", "test.event", "--payload", "{}"]);
      const tpm = { env: { DSM_IDENTITY_KIND: "tpm" } };
      const emit = await node.run(["emit", "--event-type", "test.event", "--payload", '{"n":2}'], tpm);
      expectOneLineError(emit, "emit", /identity\.kind is tpm, but the node in .* has a software identity key/);
      expect(emit.stdout).toBe("");
      const mit = await node.run(["mitigation", "--action", "block", "--target", "x"], tpm);
      expectOneLineError(mit, "mitigation", /identity\.kind is tpm, but the node in .* has a software identity key/);
      expect(await microblockCount(node)).toBe(1);
    });
  });
});
