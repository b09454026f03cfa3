// A real software TPM (swtpm) for tests: its own state dir and free loopback ports, started
// on demand and stopped by the test. State survives stop()/start() with the same dir, like a
// TPM across a reboot.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./net.ts";

export { freePort };

export interface Swtpm {
  port: number;
  ctrlPort: number;
  stateDir: string;
  /** TCTI config string for this TPM. */
  tcti: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** True when swtpm is installed (CI installs it; .ci/run does). */
export function haveSwtpm(): boolean {
  return Bun.which("swtpm") !== null;
}

/** Two consecutive free ports (swtpm's server and control). */
async function portPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p >= 65535) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once("error", () => resolve(false));
      srv.listen(p + 1, "127.0.0.1", () => srv.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new Error("no two consecutive free loopback ports for swtpm");
}

async function waitListening(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (up) return;
    await Bun.sleep(20);
  }
  throw new Error(`swtpm did not listen on 127.0.0.1:${port} within ${ms} ms`);
}

export async function startSwtpm(stateDir?: string): Promise<Swtpm> {
  const dir = stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "dsm-swtpm-"));
  const port = await portPair();
  let proc: ReturnType<typeof Bun.spawn> | null = null;
  const t: Swtpm = {
    port,
    ctrlPort: port + 1,
    stateDir: dir,
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    async start() {
      proc = Bun.spawn(
        [
          "swtpm", "socket", "--tpm2",
          "--server", `type=tcp,port=${port},bindaddr=127.0.0.1`,
          "--ctrl", `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
          "--tpmstate", `dir=${dir}`,
          "--flags", "not-need-init,startup-clear",
        ],
        { stdout: "ignore", stderr: "pipe" },
      );
      await waitListening(port, 5000);
    },
    async stop() {
      if (!proc) return;
      proc.kill("SIGTERM");
      await proc.exited;
      proc = null;
    },
  };
  await t.start();
  return t;
}
