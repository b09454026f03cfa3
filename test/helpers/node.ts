// Shared fixture: a real dsm node (keys, card, local genesis, SQLite ledger) in a temp dir.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultConfig, type DsmConfig } from "../../src/config/config.ts";
import { DSMNode } from "../../src/node/node.ts";

const dirs: string[] = [];

/** A fresh temp dir, removed by cleanupTempDirs(). */
export function tempDir(prefix = "dsm-test-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export function cleanupTempDirs(): void {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export function testConfig(patch?: (c: DsmConfig) => void): DsmConfig {
  const c = defaultConfig();
  patch?.(c);
  return c;
}

/** Initialises a data dir and opens the node on it. */
export async function makeNode(opts: { config?: DsmConfig; dataDir?: string } = {}): Promise<{ node: DSMNode; dataDir: string; config: DsmConfig }> {
  const config = opts.config ?? testConfig();
  const dataDir = opts.dataDir ?? path.join(tempDir(), "node");
  await DSMNode.init({ dataDir, config });
  return { node: DSMNode.open(dataDir, config), dataDir, config };
}

/** Closes a node, tolerating a ledger that a test has already closed. */
export function closeQuietly(node: DSMNode): void {
  try {
    node.close();
  } catch {
    // already closed
  }
}

/** A ReadableStream over the given chunks (strings are UTF-8 encoded), each its own read. */
export function chunkStream(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i >= chunks.length) {
        controller.close();
        return;
      }
      const c = chunks[i++]!;
      controller.enqueue(typeof c === "string" ? enc.encode(c) : c);
    },
  });
}
