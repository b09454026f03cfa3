// The receive path: what a validator daemon does with every gossiped microblock
// (Daemon.#store: split the batch, parseExchangeLine, Receiver.acceptKeyCert /
// acceptMicroblock, one BEGIN IMMEDIATE per batch), against a raw P-256 verify and a
// JSON.parse of the same lines, plus a per-stage breakdown on the same data.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Receiver } from "../src/chain/accept.ts";
import { exchangeChunks, parseExchangeLine } from "../src/chain/exchange.ts";
import { microblockIdBytes, type Microblock } from "../src/protocol/microblock.ts";
import { defaultConfig, type DsmConfig } from "../src/config/config.ts";
import { importPublicKey, verify } from "../src/crypto/p256.ts";
import { canonicalize } from "../src/encoding/jcs.ts";
import { fromHex } from "../src/encoding/hex.ts";
import { parseKeyCert } from "../src/protocol/keycert.ts";
import { toSecurityEvent } from "../src/ingest/records.ts";
import { type Genesis, makeLocalGenesis } from "../src/protocol/genesis.ts";
import { DSMNode } from "../src/node/node.ts";
import { eveAlert, fmtRate, fmtRatio, fmtUs, gc, note, now, removeTempDir, Rng, say, table, tempDir } from "./lib.ts";

const APPEND_BATCH = 1000;
// The daemon's gossip batch bound (gossip.max_message_bytes - 1024: 1 MiB by default).
const BATCH_BYTES = defaultConfig().gossip.max_message_bytes - 1024;
const WARM_EVENTS = 2000;

export interface ReceiveSummary {
  n: number;
  batches: number;
  avgLineBytes: number;
  receiveEps: number;
  baselineVerifyEps: number;
  baselineParseEps: number;
  ratio: number;
  stagesUs: Record<string, number>;
}

/** Appends `count` microblocks with realistic EVE payloads, as bench/verify.ts grow() does. */
async function fill(node: DSMNode, count: number): Promise<void> {
  const rng = new Rng(0xacce);
  const base = Date.UTC(2026, 10, 25, 18, 0, 0);
  for (let done = 0; done < count; done += APPEND_BATCH) {
    const k = Math.min(APPEND_BATCH, count - done);
    const batch = new Array(k);
    for (let j = 0; j < k; j++) {
      const ev = toSecurityEvent(eveAlert(rng, done + j, base), "suricata");
      batch[j] = node.prepare(ev.eventType, ev.payload);
    }
    await node.append(batch);
  }
}

/** The edge's chain as gossip batches, exactly the daemon's (exchangeChunks). */
function gossipBatches(edge: DSMNode, maxBytes: number): string[] {
  return [...exchangeChunks(edge.ledger, edge.mesh, edge.nodeId, 1, maxBytes)].map((c) => c.text);
}

/**
 * Daemon.#onMicroblocks + #store minus the bookkeeping: split, then every line through
 * the Receiver in one transaction per batch. A receiver per run, like a daemon's.
 * Anything but "stored" is a bench bug, so it throws instead of counting verdicts.
 */
function receiveAll(node: DSMNode, batches: readonly string[], config: DsmConfig): number {
  const receiver = new Receiver(node.ledger, node.policy, { maxClockSkewMs: config.mesh.max_clock_skew_s * 1000 });
  let stored = 0;
  for (const text of batches) {
    const lines = text.split("\n").filter((l) => l !== "");
    receiver.batch(() => {
      for (const [i, line] of lines.entries()) {
        const rec = parseExchangeLine(line, `gossip line ${i + 1}`);
        if (rec.kind === "key_certificate") receiver.acceptKeyCert(rec.certificate);
        else {
          const out = receiver.acceptMicroblock(rec.microblock, rec.payload ?? undefined);
          if (out.status !== "stored") throw new Error(`receive: microblock ${out.microblock.seq} was ${out.status}`);
          stored++;
        }
      }
    });
  }
  return stored;
}

function timed(fn: () => void): number {
  gc();
  const t0 = now();
  fn();
  return now() - t0;
}

interface Stage {
  key: string;
  name: string;
  us: number;
}

export async function runReceive(n: number): Promise<ReceiveSummary> {
  const root = tempDir("receive");
  try {
    const init = async (name: string) => {
      const dir = path.join(root, name);
      await DSMNode.init({ dataDir: dir, config: defaultConfig() });
      return dir;
    };
    const vDir = await init("validator");
    const wDir = await init("warm");
    const eDir = await init("edge");
    // One shared mesh, as test/accept.test.ts sets it up: the validator's card, open admission.
    const vCard = JSON.parse(fs.readFileSync(path.join(vDir, "card.json"), "utf8"));
    const genesis: Genesis = { ...makeLocalGenesis(vCard, Date.now()), name: "bench-mesh", admission: { policy: "open" } };
    const genesisFile = path.join(root, "genesis.json");
    fs.writeFileSync(genesisFile, JSON.stringify(genesis));
    const config = defaultConfig();
    config.mesh.genesis = genesisFile;
    const edge = DSMNode.open(eDir, config);
    const validator = DSMNode.open(vDir, config);
    const warm = DSMNode.open(wDir, config);
    try {
      if (edge.mesh !== validator.mesh) throw new Error("edge and validator name different meshes");
      note(`receive: edge appends ${n} microblocks`);
      await fill(edge, n);
      const batches = gossipBatches(edge, BATCH_BYTES);
      const lines = batches.flatMap((b) => b.split("\n").filter((l) => l !== ""));
      const mbLineCount = lines.length - lines.filter((l) => l.startsWith(`{"kind":"key_certificate"`)).length;
      if (mbLineCount !== n) throw new Error(`gossip text holds ${mbLineCount}/${n} microblocks`);
      const avgLineBytes = batches.reduce((a, b) => a + Buffer.byteLength(b), 0) / lines.length;

      // JIT warm-up on a ledger of its own: the timed validator must not hold the data yet.
      let warmBatches = 0;
      for (let events = 0; warmBatches < batches.length && events < WARM_EVENTS; warmBatches++) events += batches[warmBatches]!.split("\n").length - 2;
      receiveAll(warm, batches.slice(0, warmBatches), config);

      note(`receive: validator receives ${n} microblocks in ${batches.length} batches of <= ${BATCH_BYTES / 1024} KiB`);
      let stored = 0;
      const receiveMs = timed(() => {
        stored = receiveAll(validator, batches, config);
      });
      const head = validator.ledger.head(edge.mesh, edge.nodeId);
      const counts = validator.ledger.counts();
      if (stored !== n || head?.seq !== n || counts.microblocks !== n || counts.payloads !== n) {
        throw new Error(`validator holds ${counts.microblocks} microblocks, ${counts.payloads} payloads, head ${head?.seq}; expected ${n}`);
      }

      // Inputs for the isolated stages and baselines, prepared untimed from the same lines.
      const mbs: Microblock[] = [];
      const payloads: unknown[] = [];
      for (const line of lines) {
        const rec = JSON.parse(line);
        if (rec.kind === "microblock") {
          mbs.push(rec.microblock);
          payloads.push(rec.payload);
        }
      }
      const keyObjects = new Map<string, crypto.KeyObject>();
      for (const row of edge.ledger.iterateKeyCerts()) {
        const cert = parseKeyCert(JSON.parse(Buffer.from(row.body).toString("utf8")));
        keyObjects.set(row.key, importPublicKey(fromHex(cert.signing_pub, 33)));
      }
      const keys = mbs.map((mb) => keyObjects.get(mb.key)!);
      const ids = mbs.map((mb) => fromHex(mb.id, 32));
      const sigs = mbs.map((mb) => fromHex(mb.sig, 64));
      // Warm each stage's code once on a slice before its timed pass.
      const warmK = Math.min(n, WARM_EVENTS);

      const per = (ms: number) => (ms * 1000) / n;
      note("receive: baselines and stages");
      for (let i = 0; i < warmK; i++) crypto.verify("sha256", ids[i]!, { key: keys[i]!, dsaEncoding: "ieee-p1363" }, sigs[i]!);
      let bad = 0;
      const rawVerifyMs = timed(() => {
        for (let i = 0; i < n; i++) if (!crypto.verify("sha256", ids[i]!, { key: keys[i]!, dsaEncoding: "ieee-p1363" }, sigs[i]!)) bad++;
      });
      if (bad !== 0) throw new Error(`raw verify: ${bad} bad signatures`);

      for (let i = 0; i < warmK; i++) JSON.parse(lines[i]!);
      // Every line, certificate lines too: that is the parsing the receive path does per event.
      const parseMs = timed(() => {
        for (const line of lines) JSON.parse(line);
      });

      for (let i = 0; i < warmK; i++) canonicalize(payloads[i]);
      const canonMs = timed(() => {
        for (const p of payloads) canonicalize(p);
      });

      for (let i = 0; i < warmK; i++) microblockIdBytes(mbs[i]!);
      const idMs = timed(() => {
        for (const mb of mbs) microblockIdBytes(mb);
      });

      // What checkMicroblock does: the strict p256.verify (r, s range checks) on the hex sig.
      for (let i = 0; i < warmK; i++) verify(keys[i]!, ids[i]!, fromHex(mbs[i]!.sig));
      const verifyMs = timed(() => {
        for (let i = 0; i < n; i++) if (!verify(keys[i]!, ids[i]!, fromHex(mbs[i]!.sig))) bad++;
      });
      if (bad !== 0) throw new Error(`p256.verify: ${bad} bad signatures`);

      // Every batch repeats its key certificate line, and acceptKeyCert checks it in full
      // (two P-256 verifies, two point decompressions) even when the ledger holds it already.
      const certs = lines.filter((l) => l.startsWith(`{"kind":"key_certificate"`)).map((l) => JSON.parse(l).certificate);
      const certReceiver = new Receiver(validator.ledger, validator.policy, { maxClockSkewMs: config.mesh.max_clock_skew_s * 1000 });
      for (let i = 0; i < Math.min(certs.length, 8); i++) certReceiver.acceptKeyCert(certs[i]);
      const certMs = timed(() => {
        for (const c of certs) certReceiver.acceptKeyCert(c);
      });

      const receiveUs = per(receiveMs);
      const stages: Stage[] = [
        { key: "json_parse", name: "JSON.parse of the line", us: per(parseMs) },
        { key: "canonicalize_payload", name: "canonicalize(payload) (JCS)", us: per(canonMs) },
        { key: "microblock_id", name: "microblockIdBytes (bodyCanonical + sha256)", us: per(idMs) },
        { key: "p256_verify", name: "P-256 verify (p256.verify + fromHex(sig))", us: per(verifyMs) },
        { key: "key_cert_per_batch", name: `acceptKeyCert, ${certs.length}x (once a batch, spread over events)`, us: per(certMs) },
      ];
      const sum = stages.reduce((a, s) => a + s.us, 0);
      stages.push({ key: "everything_else", name: "everything else (receive - sum)", us: receiveUs - sum });

      const receiveEps = (n * 1000) / receiveMs;
      const baselineVerifyEps = (n * 1000) / rawVerifyMs;
      const baselineParseEps = (n * 1000) / parseMs;
      const ratio = receiveEps / baselineVerifyEps;
      say(
        table(
          `9. Receive path: ${n} gossiped microblocks into a fresh validator ledger (${batches.length} batches of <= ${BATCH_BYTES / 1024} KiB, ${avgLineBytes.toFixed(0)} B/line)`,
          ["path", "events/s", "us/event", "vs raw verify"],
          [
            ["split + parseExchangeLine + Receiver, 1 txn/batch", fmtRate(receiveEps), fmtUs(receiveUs), fmtRatio(ratio)],
            ["baseline: crypto.verify (P-256, p1363) alone", fmtRate(baselineVerifyEps), fmtUs(1e6 / baselineVerifyEps), "1.00x"],
            ["baseline: JSON.parse of every line alone", fmtRate(baselineParseEps), fmtUs(1e6 / baselineParseEps), fmtRatio(baselineParseEps / baselineVerifyEps)],
          ],
        ),
      );
      say(
        table(
          `   Receive path per-event stages, each measured alone on the same ${n} events`,
          ["stage", "us/event", "share of receive"],
          [
            ...stages.map((s) => [s.name, fmtUs(s.us), `${((100 * s.us) / receiveUs).toFixed(0)}%`]),
            ["receive path, measured", fmtUs(receiveUs), "100%"],
          ],
        ),
      );
      const stagesUs: Record<string, number> = {};
      for (const s of stages) stagesUs[s.key] = Number(s.us.toFixed(2));
      return { n, batches: batches.length, avgLineBytes, receiveEps, baselineVerifyEps, baselineParseEps, ratio, stagesUs };
    } finally {
      for (const node of [edge, validator, warm]) node.close();
    }
  } finally {
    removeTempDir(root);
  }
}
