// A real software TPM (swtpm) for tests: its own state dir and free loopback ports, started
// on demand and stopped by the test. State survives stop()/start() with the same dir, like a
// TPM across a reboot.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { expect } from "bun:test";
import { TpmError } from "../../src/tpm/tpm.ts";
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

/** A local EK CA (swtpm_localca): a root and the intermediate that signs EK certificates. */
export interface EkCa {
  dir: string;
  /** PEM of the root CA certificate. */
  root: string;
  /** PEM of the intermediate ("swtpm-localca") that issues the EK certificates. */
  intermediate: string;
}

export interface SwtpmOptions {
  /** State dir; a new temp dir when absent. */
  stateDir?: string;
  /**
   * Manufacture the TPM first as swtpm_setup does for a real vTPM: RSA 2048 EK at 0x81010001
   * and ECC P-384 EK at 0x81010016, their certificates in NV 0x01c00002 and 0x01c00016, issued
   * under this CA dir (created on first use, so TPMs given the same dir share one CA).
   */
  ekCa?: string;
}

/** Runs swtpm_setup --create-ek-cert into stateDir with swtpm_localca issuing under caDir. */
export function manufacture(stateDir: string, caDir: string): EkCa {
  fs.mkdirSync(caDir, { recursive: true });
  const conf = path.join(caDir, "localca.conf");
  if (!fs.existsSync(conf)) {
    fs.writeFileSync(conf, `statedir = ${caDir}\nsigningkey = ${caDir}/signkey.pem\nissuercert = ${caDir}/issuercert.pem\ncertserial = ${caDir}/certserial\n`);
    fs.writeFileSync(path.join(caDir, "localca.options"), "--platform-manufacturer Debian\n--platform-version 2.1\n--platform-model QEMU\n");
    fs.writeFileSync(path.join(caDir, "setup.conf"), `create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = ${conf}\ncreate_certs_tool_options = ${caDir}/localca.options\n`);
  }
  const r = Bun.spawnSync(["swtpm_setup", "--tpm2", "--tpmstate", stateDir, "--create-ek-cert", "--config", path.join(caDir, "setup.conf"), "--overwrite", "--pcr-banks", "sha256"], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`swtpm_setup failed (${r.exitCode}): ${r.stderr.toString()}${r.stdout.toString()}`);
  return ekCaOf(caDir);
}

export function ekCaOf(caDir: string): EkCa {
  return {
    dir: caDir,
    root: fs.readFileSync(path.join(caDir, "swtpm-localca-rootca-cert.pem"), "utf8"),
    intermediate: fs.readFileSync(path.join(caDir, "issuercert.pem"), "utf8"),
  };
}

export async function startSwtpm(opts?: string | SwtpmOptions): Promise<Swtpm & { ekCa?: EkCa }> {
  const o: SwtpmOptions = typeof opts === "string" ? { stateDir: opts } : (opts ?? {});
  const dir = o.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "dsm-swtpm-"));
  const ekCa = o.ekCa !== undefined ? manufacture(dir, o.ekCa) : undefined;
  const port = await portPair();
  let proc: ReturnType<typeof Bun.spawn> | null = null;
  const t: Swtpm & { ekCa?: EkCa } = {
    ekCa,
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

/** Runs fn with a TpmError expected; returns it. */
export function tpmError(fn: () => unknown): TpmError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TpmError);
    return e as TpmError;
  }
  throw new Error("expected a TpmError, nothing was thrown");
}
