// QuarantineStore (src/ledger/quarantine-store.ts) in a real ledger: what gossip asks before
// it adds a record (already held? how many of this validator's?), which bounds what one
// validator can pile up on every node.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { blsSign } from "../src/crypto/bls.ts";
import { defaultConfig } from "../src/config/config.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { QuarantineStore } from "../src/ledger/quarantine-store.ts";
import { DSMNode } from "../src/node/node.ts";
import { makeLocalGenesis, meshIdOf } from "../src/protocol/genesis.ts";
import { makeQuarantine } from "../src/protocol/quarantine.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";

afterAll(cleanupTempDirs);

describe("QuarantineStore", () => {
  test("has() and countOf(validator) see exactly what is stored", async () => {
    const dir = path.join(tempDir(), "v");
    await DSMNode.init({ dataDir: dir, config: defaultConfig(), role: "validator" });
    const card = JSON.parse(fs.readFileSync(path.join(dir, "card.json"), "utf8"));
    const sk = new Uint8Array(fs.readFileSync(path.join(dir, "bls.key")));
    const mesh = meshIdOf(makeLocalGenesis(card, Date.now()));
    const ledger = Ledger.open(path.join(tempDir(), "ledger.sqlite"));
    const store = new QuarantineStore(ledger, mesh);
    const rec = (validator: number, i: number) =>
      makeQuarantine({ mesh, nodeId: (i % 250).toString(16).padStart(2, "0").repeat(32), action: "quarantine", fromSeq: 1 + i, reason: "operator", detail: `r${i}`, validator, nowMs: Date.UTC(2026, 11, 2) + i, sign: (d) => blsSign(sk, d) });
    const a = [0, 1, 2].map((i) => rec(0, i));
    const b = rec(1, 9);
    expect(store.countOf(0)).toBe(0);
    expect(store.has(a[0]!)).toBe(false);
    for (const r of [...a, b]) expect(store.add(r)).toBe(true);
    expect(store.add(a[0]!)).toBe(false);
    expect([store.countOf(0), store.countOf(1), store.countOf(2)]).toEqual([3, 1, 0]);
    expect(store.has(a[1]!)).toBe(true);
    expect(store.has(rec(0, 99))).toBe(false);
    ledger.close();
  });
});
