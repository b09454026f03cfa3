// dsm verify's second thread: P-256 signature checks, about 60% of verify's work, run
// here while the main thread reads rows and checks ids, links and payloads.
import type { KeyObject } from "node:crypto";
import { importPublicKey, verify } from "../crypto/p256.ts";

export type ToVerifyWorker =
  | { kind: "keys"; keys: [name: string, signingPubHex: string][] }
  | { kind: "batch"; batch: number; names: string[]; ids: Uint8Array; sigs: Uint8Array };

export type FromVerifyWorker = { kind: "done"; batch: number; failed: number[] };

declare const self: Worker;

const keys = new Map<string, KeyObject>();

self.onmessage = (e: MessageEvent<ToVerifyWorker>) => {
  const msg = e.data;
  if (msg.kind === "keys") {
    for (const [name, pub] of msg.keys) keys.set(name, importPublicKey(Buffer.from(pub, "hex")));
    return;
  }
  const failed: number[] = [];
  for (let i = 0; i < msg.names.length; i++) {
    const key = keys.get(msg.names[i]!);
    const ok = key !== undefined && verify(key, msg.ids.subarray(i * 32, i * 32 + 32), msg.sigs.subarray(i * 64, i * 64 + 64));
    if (!ok) failed.push(i);
  }
  self.postMessage({ kind: "done", batch: msg.batch, failed } satisfies FromVerifyWorker);
};
