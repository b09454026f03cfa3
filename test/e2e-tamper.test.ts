// End to end: `dsm verify` finds one altered byte anywhere in the ledger and names it.
// A node ingests 50 Suricata alerts and records a mitigation; each case below gets a
// fresh copy of that data dir, changes ONE thing with bun:sqlite, and runs dist/dsm verify.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  checkpoint,
  initNode,
  type InitInfo,
  ledgerFile,
  removeDir,
  requireBinary,
  runDsm,
  suricataLine,
  tempDir,
} from "./helpers/spawn-dsm.ts";

const EVENTS = 50;

interface MbRow {
  rowid: number;
  seq: number;
  id: Uint8Array;
  prev: Uint8Array;
  timestamp: string;
  event_type: string;
  payload_hash: Uint8Array;
  key: Uint8Array;
  sig: Uint8Array;
}

interface Expected {
  kind: string;
  rowid?: number;
  seq?: number;
  /** What problems[0].message must say. */
  message: RegExp;
  /** Text the human output must contain (the row, or the certificate). */
  human: RegExp;
  /** Further problems expected after the first, by rowid. */
  more?: { rowid: number; message: RegExp }[];
}

interface Case {
  name: string;
  tamper: (db: Database) => Expected;
}

let root: string;
let base: string;
let node: InitInfo;
let caseNo = 0;

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const flipByte = (b: Uint8Array, i: number): Uint8Array => {
  const out = Uint8Array.from(b);
  out[i]! ^= 0x01;
  return out;
};
const mbAt = (db: Database, rowid: number) => db.query("SELECT rowid, * FROM microblocks WHERE rowid = ?").get(rowid) as MbRow;
const rowText = (rowid: number, seq: number) => new RegExp(`#${rowid}\\b[^\\n]*\\bseq ${seq}\\b`);

/** A copy of the pristine data dir (ledger checkpointed, no -wal/-shm), with its ledger tampered by fn. */
function tamperedCopy(fn: ((db: Database) => Expected) | null): { dir: string; expected: Expected | null } {
  const dir = path.join(root, `case-${++caseNo}`);
  fs.cpSync(base, dir, { recursive: true, filter: (src) => !/-(wal|shm)$/.test(src) });
  let expected: Expected | null = null;
  if (fn) {
    const db = new Database(ledgerFile(dir));
    try {
      expected = fn(db);
    } finally {
      db.close();
    }
  }
  return { dir, expected };
}

const CASES: Case[] = [
  {
    name: "a byte of a microblock's event_type",
    tamper(db) {
      const r = mbAt(db, 8);
      const changed = r.event_type.slice(0, -1) + (r.event_type.endsWith("x") ? "y" : "x");
      db.query("UPDATE microblocks SET event_type = ? WHERE rowid = 8").run(changed);
      return { kind: "microblock", rowid: 8, seq: 8, message: /id does not match|altered|event_type/, human: rowText(8, 8) };
    },
  },
  {
    name: "a byte of a microblock's sig",
    tamper(db) {
      db.query("UPDATE microblocks SET sig = ? WHERE rowid = 33").run(flipByte(mbAt(db, 33).sig, 3));
      return { kind: "microblock", rowid: 33, seq: 33, message: /signature/, human: rowText(33, 33) };
    },
  },
  {
    name: "a byte of a microblock's prev",
    tamper(db) {
      db.query("UPDATE microblocks SET prev = ? WHERE rowid = 15").run(flipByte(mbAt(db, 15).prev, 17));
      return { kind: "microblock", rowid: 15, seq: 15, message: /id does not match|altered|prev/, human: rowText(15, 15) };
    },
  },
  {
    name: "a byte of a microblock's id",
    tamper(db) {
      db.query("UPDATE microblocks SET id = ? WHERE rowid = 20").run(flipByte(mbAt(db, 20).id, 31));
      return {
        kind: "microblock",
        rowid: 20,
        seq: 20,
        message: /id does not match|altered/,
        human: rowText(20, 20),
        // The next row still links to the real id, which is no longer in the chain.
        more: [{ rowid: 21, message: /prev/ }],
      };
    },
  },
  {
    name: "the last microblock's seq + 1",
    tamper(db) {
      const last = db.query("SELECT max(rowid) AS r FROM microblocks").get() as { r: number };
      expect(last.r).toBe(EVENTS + 1);
      db.query("UPDATE microblocks SET seq = seq + 1 WHERE rowid = ?").run(last.r);
      return { kind: "microblock", rowid: last.r, seq: last.r + 1, message: /id does not match|altered|seq|gap/, human: rowText(last.r, last.r + 1) };
    },
  },
  {
    name: "a byte of a microblock's timestamp",
    tamper(db) {
      const ts = mbAt(db, 45).timestamp; // 2026-11-26T00:39:45.720Z: change the last millisecond digit
      const d = ts.charAt(22);
      const changed = ts.slice(0, 22) + String((Number(d) + 1) % 10) + ts.slice(23);
      expect(changed.length).toBe(ts.length);
      db.query("UPDATE microblocks SET timestamp = ? WHERE rowid = 45").run(changed);
      return { kind: "microblock", rowid: 45, seq: 45, message: /id does not match|altered|timestamp/, human: rowText(45, 45) };
    },
  },
  {
    name: "a byte of a payload body",
    tamper(db) {
      const hash = mbAt(db, 27).payload_hash;
      const p = db.query("SELECT body FROM payloads WHERE hash = ?").get(hash) as { body: Uint8Array };
      db.query("UPDATE payloads SET body = ? WHERE hash = ?").run(flipByte(p.body, Math.floor(p.body.length / 2)), hash);
      return { kind: "microblock", rowid: 27, seq: 27, message: /payload/, human: rowText(27, 27) };
    },
  },
  {
    name: "a byte of a key certificate body",
    tamper(db) {
      // The ingest process's certificate: change one hex digit of its signature.
      const k = db.query("SELECT key, body FROM key_certs WHERE first_seq = 1").get() as { key: Uint8Array; body: Uint8Array };
      const text = Buffer.from(k.body).toString("utf8");
      const at = text.indexOf('"sig":"') + 7 + 20;
      const body = Buffer.from(k.body);
      body[at] = text.charAt(at) === "0" ? 0x31 : 0x30;
      db.query("UPDATE key_certs SET body = ? WHERE key = ?").run(body, k.key);
      const key16 = hex(k.key).slice(0, 16);
      return {
        kind: "key_certificate",
        message: new RegExp(`key certificate ${key16}`),
        human: new RegExp(`key certificate ${key16}`),
        // Without a valid certificate, nothing that key signed verifies.
        more: [{ rowid: 1, message: /key certificate/ }],
      };
    },
  },
  {
    name: "a middle microblock row deleted (a gap)",
    tamper(db) {
      db.query("DELETE FROM microblocks WHERE rowid = 25").run();
      return { kind: "microblock", rowid: 26, seq: 26, message: /gap|expected seq 25/, human: rowText(26, 26) };
    },
  },
  {
    name: "a payload of our own chain deleted",
    tamper(db) {
      db.query("DELETE FROM payloads WHERE hash = ?").run(mbAt(db, 30).payload_hash);
      return { kind: "microblock", rowid: 30, seq: 30, message: /payload.*missing|missing.*payload/, human: rowText(30, 30) };
    },
  },
  {
    name: "two payload bodies swapped",
    tamper(db) {
      const a = mbAt(db, 12).payload_hash;
      const b = mbAt(db, 40).payload_hash;
      const body = (h: Uint8Array) => (db.query("SELECT body FROM payloads WHERE hash = ?").get(h) as { body: Uint8Array }).body;
      const [ba, bb] = [body(a), body(b)];
      db.query("UPDATE payloads SET body = ? WHERE hash = ?").run(bb, a);
      db.query("UPDATE payloads SET body = ? WHERE hash = ?").run(ba, b);
      return { kind: "microblock", rowid: 12, seq: 12, message: /payload/, human: rowText(12, 12), more: [{ rowid: 40, message: /payload/ }] };
    },
  },
];

beforeAll(async () => {
  requireBinary();
  root = tempDir("tamper");
  base = path.join(root, "base");
  node = await initNode(base);
  const input = path.join(root, "in.ndjson");
  fs.writeFileSync(input, Array.from({ length: EVENTS }, (_, i) => suricataLine("tamper", i)).join("\n") + "\n");
  const ing = await runDsm(["ingest", "--data-dir", base, input], { stdoutFile: path.join(root, "ingest.out") });
  if (ing.code !== 0) throw new Error(`ingest failed (${ing.code}): ${ing.stderr}`);
  const mit = await runDsm(["mitigation", "--action", "block", "--target", "203.0.113.9", "--json", "--data-dir", base]);
  if (mit.code !== 0) throw new Error(`mitigation failed (${mit.code}): ${mit.stderr}`);
  expect(JSON.parse(mit.stdout).seq).toBe(EVENTS + 1);
  checkpoint(ledgerFile(base));
});
afterAll(() => removeDir(root));

describe("dsm verify on a tampered ledger", () => {
  test("the untampered copy verifies (exit 0)", async () => {
    const { dir } = tamperedCopy(null);
    const j = await runDsm(["verify", "--json", "--data-dir", dir]);
    expect(j.code, j.stderr).toBe(0);
    const report = JSON.parse(j.stdout);
    expect(report).toMatchObject({ ok: true, microblocks: EVENTS + 1, chains: 1, key_certificates: 2, payloads_checked: EVENTS + 1, problem_count: 0 });
    const h = await runDsm(["verify", "--data-dir", dir]);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout).toStartWith("OK");
  });

  for (const c of CASES) {
    test(c.name, async () => {
      const { dir, expected } = tamperedCopy(c.tamper);
      const e = expected!;
      const j = await runDsm(["verify", "--json", "--data-dir", dir]);
      expect(j.code, `verify --json exit code; stderr: ${j.stderr}`).toBe(2);
      const report = JSON.parse(j.stdout);
      expect(report.ok).toBe(false);
      expect(report.problem_count).toBeGreaterThanOrEqual(1 + (e.more?.length ?? 0));
      const first = report.problems[0];
      expect(first.kind).toBe(e.kind);
      if (e.rowid !== undefined) expect(first.rowid).toBe(e.rowid);
      if (e.seq !== undefined) expect(first.seq).toBe(e.seq);
      if (e.kind === "microblock" || e.kind === "key_certificate") expect(first.node_id).toBe(node.node_id);
      expect(first.message).toMatch(e.message);
      e.more?.forEach((m, k) => {
        const p = report.problems[k + 1];
        expect(p?.rowid, `problems[${k + 1}]: ${JSON.stringify(p)}`).toBe(m.rowid);
        expect(p.message).toMatch(m.message);
      });

      const h = await runDsm(["verify", "--data-dir", dir]);
      expect(h.code, `verify exit code; stderr: ${h.stderr}`).toBe(2);
      expect(h.stdout).toStartWith("FAILED");
      expect(h.stdout).toMatch(e.human);
    });
  }

  async function expectOneLineError(dir: string) {
    for (const json of [false, true]) {
      const r = await runDsm(["verify", ...(json ? ["--json"] : []), "--data-dir", dir]);
      expect(r.code, `verify${json ? " --json" : ""}: ${r.stdout}`).not.toBe(0);
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines.length, `stderr: ${r.stderr}`).toBe(1);
      // With --json the one line is {"error","code"}.
      const message = json ? (JSON.parse(lines[0]!) as { error: string; code: number }).error : lines[0]!;
      if (json) expect(JSON.parse(lines[0]!).code).toBe(r.code);
      else expect(lines[0]).toStartWith("dsm verify: ");
      expect(message).toMatch(/ledger|database|malformed|corrupt/i);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stdout).toBe("");
    }
  }

  test("a ledger truncated to half its size: one clear error line, non-zero exit", async () => {
    const { dir } = tamperedCopy(null);
    const file = ledgerFile(dir);
    fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
    await expectOneLineError(dir);
  });

  test("random bytes in place of the ledger: one clear error line, non-zero exit", async () => {
    const { dir } = tamperedCopy(null);
    const file = ledgerFile(dir);
    fs.writeFileSync(file, crypto.getRandomValues(new Uint8Array(fs.statSync(file).size)));
    await expectOneLineError(dir);
  });
});
