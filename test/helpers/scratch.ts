// A scratch area for library-level tests: one temp root per describe (or file), fresh
// data dirs and ledgers under it, every node and ledger opened through it closed and the
// root removed afterwards. useScratch() registers the beforeAll/afterAll where it is called.
import { afterAll, beforeAll } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultConfig, type DsmConfig } from "../../src/config/config.ts";
import { Ledger } from "../../src/ledger/ledger.ts";
import { DSMNode } from "../../src/node/node.ts";

export interface Scratch {
  /** The temp root (set in beforeAll). */
  readonly root: string;
  /** Nodes to close in afterAll: push any node a test opens itself. */
  readonly opened: DSMNode[];
  /** A path under the root that does not exist yet. */
  freshDir(name: string): string;
  /** dsm init into a fresh dir (the config patched first), then the node opened on it. */
  newNode(name: string, patch?: (c: DsmConfig) => void): Promise<{ node: DSMNode; dir: string; config: DsmConfig }>;
  /** An empty ledger file of its own. */
  freshLedger(): Ledger;
}

export function useScratch(prefix = "dsm-review-"): Scratch {
  let root = "";
  const opened: DSMNode[] = [];
  const ledgers: Ledger[] = [];
  let dirCount = 0;

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });

  afterAll(() => {
    for (const n of opened.splice(0)) {
      try {
        n.close();
      } catch {
        // already closed
      }
    }
    for (const l of ledgers.splice(0)) {
      try {
        l.close();
      } catch {
        // already closed
      }
    }
    fs.rmSync(root, { recursive: true, force: true });
  });

  function freshDir(name: string): string {
    return path.join(root, `${name}-${++dirCount}`);
  }

  async function newNode(name: string, patch?: (c: DsmConfig) => void): Promise<{ node: DSMNode; dir: string; config: DsmConfig }> {
    const config = defaultConfig();
    patch?.(config);
    const dir = freshDir(name);
    await DSMNode.init({ dataDir: dir, config });
    const node = DSMNode.open(dir, config);
    opened.push(node);
    return { node, dir, config };
  }

  function freshLedger(): Ledger {
    const l = Ledger.open(path.join(freshDir("ledger"), "ledger.sqlite"));
    ledgers.push(l);
    return l;
  }

  return {
    get root() {
      return root;
    },
    opened,
    freshDir,
    newNode,
    freshLedger,
  };
}
