// Quarantine records (src/protocol/quarantine.ts): signed by a genesis validator, parsed and
// checked by every receiver; a record whose `issued` is in the receiver's future is refused,
// since records apply in issue order and a future date would outrank every honest record.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { blsSign } from "../src/crypto/bls.ts";
import { defaultConfig } from "../src/config/config.ts";
import { DSMNode } from "../src/node/node.ts";
import { makeLocalGenesis, meshIdOf } from "../src/protocol/genesis.ts";
import { makeQuarantine, parseQuarantine, quarantineState } from "../src/protocol/quarantine.ts";
import { validatorSetOf } from "../src/protocol/validator-set.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

describe("quarantine records", () => {
  test("a record issued in the receiver's future is refused; one within the allowed skew is taken", async () => {
    const dir = path.join(tempDir(), "v");
    await DSMNode.init({ dataDir: dir, config: defaultConfig(), role: "validator" });
    const card = JSON.parse(fs.readFileSync(path.join(dir, "card.json"), "utf8"));
    const sk = new Uint8Array(fs.readFileSync(path.join(dir, "bls.key")));
    const genesis = makeLocalGenesis(card, Date.now() - 60_000);
    const mesh = meshIdOf(genesis);
    const set = validatorSetOf(genesis);
    const now = Date.UTC(2026, 11, 2, 2, 0, 0);
    const record = (action: "quarantine" | "lift", atMs: number) =>
      makeQuarantine({ mesh, nodeId: "ab".repeat(32), action, fromSeq: 5, reason: "operator", detail: "test", validator: 0, nowMs: atMs, sign: (d) => blsSign(sk, d) });
    const honest = record("quarantine", now - 1000);
    const future = record("lift", Date.UTC(9999, 11, 31));
    // Why it matters: in issue order, the far-future lift wins over every honest record.
    expect(quarantineState([honest, future])).toBeNull();
    expect(parseQuarantine(honest, mesh, set, "q", { notAfterMs: now + 60_000 })).toEqual(honest);
    expect(() => parseQuarantine(future, mesh, set, "q", { notAfterMs: now + 60_000 })).toThrow(/issued 9999-12-31T00:00:00.000Z is in the future/);
    const slightlyAhead = record("quarantine", now + 30_000);
    expect(parseQuarantine(slightlyAhead, mesh, set, "q", { notAfterMs: now + 60_000 })).toEqual(slightlyAhead);
    // The signature still covers everything: a changed from_seq does not verify.
    expect(() => parseQuarantine({ ...honest, from_seq: 1 }, mesh, set, "q", { notAfterMs: now + 60_000 })).toThrow(/signature of validator 0 does not verify/);
  });
});
