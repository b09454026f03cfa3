// Validator-set changes across processes (issue 14): four genesis validators, a fifth
// validator node that the genesis does not name, and an edge, each `dist/dsm run` on
// 127.0.0.1. A quorum adds the fifth: its daemon starts voting two epochs after the
// checkpoint that decided it, and with one genesis validator stopped, finality needs its
// signature (4 of 5). A quorum of the new set then removes the stopped one: with a second
// validator stopped too, three of the four left finalize, which the old set could not. A
// quorum rotates one validator's BLS key, and finality then needs its new key.
// Every event stays provable with only the genesis. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { cleanEnv, requireBinary, runDsm } from "./helpers/e2e.ts";
import { killDaemons, startDaemon } from "./helpers/daemons.ts";
import { cleanupTempDirs, tempDir } from "./helpers/node.ts";
import { signerIndices } from "../src/protocol/validator-set.ts";

let root: string;
let env: Record<string, string>;
let genesisFile: string;
const V: string[] = [];
let E: string;
const ids: string[] = [];
const procs = new Map<string, Subprocess>();
const logs = new Map<string, string>();
const boot: string[] = [];
let sent = 0;

async function ok(args: string[]): Promise<string> {
  const r = await runDsm(args, env);
  if (r.code !== 0) throw new Error(`dsm ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function ingest(n: number, tag: string): Promise<void> {
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ event_type: "alert", src_ip: "10.1.2.3", alert: { signature: `${tag} ${i}` } })).join("\n") + "\n";
  const r = await runDsm(["ingest", "--data-dir", E, "--format", "json"], env, { stdin: lines });
  if (r.code !== 0) throw new Error(`ingest: ${r.stderr}`);
  sent += n;
}

interface Cert {
  checkpoint: { epoch: number; tree_size: number; set_change?: { change: { action: string } } };
  signers: string;
}

const latest = async (d: string) => {
  const r = await runDsm(["checkpoint", "show", "--data-dir", d, "--json"], env);
  return r.code === 0 ? (JSON.parse(r.stdout) as Cert) : null;
};

async function until<T>(dirs: string[], fn: (d: string) => Promise<T>, pass: (t: T) => boolean, what: string, timeoutMs = 45_000): Promise<T[]> {
  const end = Date.now() + timeoutMs;
  let last: T[] = [];
  while (Date.now() < end) {
    last = await Promise.all(dirs.map(fn));
    if (last.every(pass)) return last;
    await Bun.sleep(300);
  }
  throw new Error(`${what} not reached in ${timeoutMs} ms: ${JSON.stringify(last)}\n${[...logs].map(([d, l]) => `--- ${path.basename(d)}\n${l.slice(-4000)}`).join("\n")}`);
}

const finalized = (dirs: string[], size: number) => until(dirs, latest, (c) => c !== null && c.checkpoint.tree_size >= size, `finality over ${size} leaves`);
const validators = async (d: string) => JSON.parse(await ok(["validators", "--data-dir", d, "--json"])) as { current: { validators: { node_id: string }[]; quorum: number; from_epoch: number; in_force: boolean }; history: unknown[] };

async function stop(d: string): Promise<void> {
  const p = procs.get(d)!;
  p.kill("SIGKILL");
  await p.exited;
  procs.delete(d);
}

beforeAll(async () => {
  requireBinary();
  root = tempDir();
  env = cleanEnv(root, { DSM_GOSSIP_HOST: "127.0.0.1", DSM_GOSSIP_PORT: "0", DSM_CONSENSUS_SIGNATURE_TIMEOUT_S: "2" });
  const cards: string[] = [];
  for (let i = 0; i < 5; i++) {
    const d = path.join(root, `v${i}`);
    V.push(d);
    await ok(["init", "--data-dir", d, "--role", "validator"]);
    const card = path.join(root, `v${i}.card`);
    fs.writeFileSync(card, await ok(["card", "--data-dir", d, "--json"]));
    cards.push(card);
    ids.push((JSON.parse(fs.readFileSync(card, "utf8")) as { node_id: string }).node_id);
  }
  genesisFile = path.join(root, "genesis.json");
  const t0 = new Date(Math.floor(Date.now() / 1000) * 1000 - 2000).toISOString();
  // v4 is a validator node the genesis does not name.
  await ok(["genesis", "--name", "changing", ...cards.slice(0, 4).flatMap((c) => ["--validator", c]), "--admission", "open", "--epoch-duration", "2", "--genesis-time", t0, "-o", genesisFile]);
  env.DSM_MESH_GENESIS = genesisFile;
  E = path.join(root, "edge");
  await ok(["init", "--data-dir", E, "--genesis", genesisFile, "--role", "edge"]);
  for (const d of [...V, E]) boot.push(await startDaemon(d, env, [...boot], procs, logs));
  await ingest(5, "a");
  await finalized(V.slice(0, 4), sent);
}, 90_000);

afterAll(async () => {
  await killDaemons(procs);
  cleanupTempDirs();
});

describe("the validator set changes by quorum, with dsm run processes", () => {
  test("one validator's request to add a node changes nothing; three of four add it, and the new set is the same everywhere", async () => {
    await ok(["validators", "propose", "add", path.join(root, "v4.card"), "--detail", "e2e: site B", "--data-dir", V[0]!]);
    await ingest(2, "b");
    await finalized(V.slice(0, 4), sent);
    for (const d of V.slice(0, 4)) expect((await validators(d)).current.validators).toHaveLength(4);
    const notValidator = await runDsm(["validators", "propose", "remove", ids[0]!.slice(0, 8), "--detail", "x", "--data-dir", E], env);
    expect(notValidator.code).toBe(1);
    expect(notValidator.stderr).toMatch(/only a validator of the set in force signs set-change requests/);

    for (const i of [1, 2]) await ok(["validators", "propose", "add", path.join(root, "v4.card"), "--detail", `e2e: validator ${i} agrees`, "--data-dir", V[i]!]);
    // In force once the mesh reaches its epoch: waited for everywhere, so that no node is read
    // on the other side of that boundary (in_force follows the clock, the rest the ledger).
    const sets = await until([...V, E], validators, (s) => s.current.validators.length === 5 && s.current.in_force === true, "the five-validator set in force everywhere");
    for (const s of sets) expect(s.current).toEqual(sets[0]!.current);
    expect(sets[0]!.current.validators.map((v) => v.node_id)).toEqual([...ids]);
    expect(sets[0]!.current.quorum).toBe(4);
    // The checkpoint that decided it, the same bytes on every validator.
    // (Two quorums may have aggregated at once: every node keeps the better one as it travels.)
    const decided = sets[0]!.current.from_epoch - 2;
    const shown = await until(V.slice(0, 4), (d) => ok(["checkpoint", "show", String(decided), "--data-dir", d, "--json"]), () => true, "the change's checkpoint");
    let same = shown;
    for (let i = 0; i < 40 && !same.every((s) => s === same[0]); i++) {
      await Bun.sleep(250);
      same = await Promise.all(V.slice(0, 4).map((d) => ok(["checkpoint", "show", String(decided), "--data-dir", d, "--json"])));
    }
    for (const s of same) expect(s).toBe(same[0]!);
    expect((JSON.parse(same[0]!) as Cert).checkpoint.set_change!.change.action).toBe("add");
    expect(logs.get(V[4]!)).toMatch(/validator set changed \(1 change\(s\) since genesis\): this node is validator 4 of 5/);
  }, 90_000);

  test("the added validator votes: with a genesis validator stopped, 4 of 5 finalize only with its signature", async () => {
    await stop(V[3]!);
    await ingest(3, "c");
    const certs = await finalized([V[0]!, V[1]!, V[2]!, V[4]!], sent);
    for (const c of certs) {
      const signers = signerIndices(c!.signers);
      expect(signers).toContain(4);
      expect(signers).not.toContain(3);
      expect(c!.signers.length).toBe(2); // one byte: five validators
    }
  }, 90_000);

  test("a quorum of the new set removes the stopped validator; then three of the four left finalize", async () => {
    for (const i of [0, 1, 2, 4]) await ok(["validators", "propose", "remove", ids[3]!.slice(0, 12), "--detail", "e2e: retired", "--data-dir", V[i]!]);
    await until([V[0]!, V[1]!, V[2]!, V[4]!], validators, (s) => s.current.validators.length === 4, "the four-validator set", 60_000);
    const now = (await validators(V[0]!)).current;
    expect(now.validators.map((v) => v.node_id)).toEqual([ids[0]!, ids[1]!, ids[2]!, ids[4]!]);
    expect(now.quorum).toBe(3);
    // The next checkpoint is for the new set's first epoch or later: three of its four are a quorum.
    await stop(V[1]!);
    await ingest(2, "d");
    const certs = await finalized([V[0]!, V[2]!, V[4]!], sent);
    for (const c of certs) expect(signerIndices(c!.signers).sort()).toEqual([0, 2, 3]); // v0, v2 and v4 (index 3 now)
  }, 120_000);

  test("a validator's BLS key is rotated by quorum: it switches when the set names its new card, and finality needs the new key", async () => {
    const card = JSON.parse(await ok(["validators", "new-keys", "--data-dir", V[2]!, "--json"])) as { bls_pub: string; node_id: string };
    expect(card.node_id).toBe(ids[2]!);
    const before = (await validators(V[0]!)).current.validators[2]! as unknown as { bls_pub: string };
    expect(card.bls_pub).not.toBe(before.bls_pub);
    const again = await runDsm(["validators", "new-keys", "--data-dir", V[2]!], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/a key rotation is already waiting/);
    for (const i of [0, 2, 4]) await ok(["validators", "propose", "rotate", path.join(V[2]!, "card.json.next"), "--detail", "e2e: key exposed", "--data-dir", V[i]!]);
    const sets = await until([V[0]!, V[2]!, V[4]!], validators, (s) => (s.current.validators[2] as unknown as { bls_pub: string }).bls_pub === card.bls_pub, "the rotated card in the set");
    expect(sets[0]!.history).toHaveLength(4);
    // v1 is stopped: v0, v2 and v4 are the quorum, so v2 must sign with its new key.
    await ingest(2, "e");
    const certs = await finalized([V[0]!, V[2]!, V[4]!], sent);
    for (const c of certs) expect(signerIndices(c!.signers).sort()).toEqual([0, 2, 3]);
    expect(fs.existsSync(path.join(V[2]!, "bls.key.old"))).toBe(true);
    expect((JSON.parse(fs.readFileSync(path.join(V[2]!, "card.json"), "utf8")) as { bls_pub: string }).bls_pub).toBe(card.bls_pub);
    expect(logs.get(V[2]!)).toMatch(/this validator's keys were rotated: it signs with its new BLS key/);
  }, 90_000);

  test("an event finalized by the latest set is proved offline with only the genesis; dsm verify holds on every validator", async () => {
    const last = JSON.parse((await ok(["log", "--data-dir", E, "--json", "--limit", "0"])).trim().split("\n").at(-1)!) as { id: string };
    const bundle = path.join(root, "proof.json");
    await ok(["proof", "inclusion", last.id, "--data-dir", V[0]!, "-o", bundle]);
    const r = await runDsm(["verify-proof", bundle, "--genesis", genesisFile], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(fs.readFileSync(bundle, "utf8")).set_changes).toHaveLength(3);
    for (const d of [V[0]!, V[2]!, V[4]!]) {
      const v = await runDsm(["verify", "--data-dir", d, "--json"], env);
      expect(v.code, v.stdout).toBe(0);
    }
  }, 60_000);
});
