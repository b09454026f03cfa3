// The shipped systemd units (config/dsm.service, dsm-checkpoint.service, dsm-checkpoint.timer):
// `systemd-analyze verify` accepts them without a warning, and `systemd-analyze security` rates
// both services 3.0 or lower. Skipped only where systemd-analyze is not installed (Debian: systemd).
//
// verify checks that ExecStart's binary exists and that Documentation=man:dsm(1) resolves, so
// the units are copied to a temp dir with /usr/local/bin/dsm rewritten to the built dist/dsm,
// and MANPATH pointed at dist/dsm.1. Without dist/dsm.1 (or without man, Debian: man-db) that
// one check is left out: the man: entry is dropped from the copies and the test's name says so.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const CONFIG = join(ROOT, "config");
const UNITS = ["dsm.service", "dsm-checkpoint.service", "dsm-checkpoint.timer"] as const;
const SERVICES = ["dsm.service", "dsm-checkpoint.service"] as const;
const INSTALLED_BINARY = "/usr/local/bin/dsm";
const MAX_EXPOSURE = 3.0;

const analyze = Bun.which("systemd-analyze");
const builtBinary = join(ROOT, "dist", "dsm");
const manPage = join(ROOT, "dist", "dsm.1");
const checkMan = existsSync(manPage) && Bun.which("man") !== null;

function unitText(name: string): string {
  return readFileSync(join(CONFIG, name), "utf8");
}

/** The unit's settings as [section, key, value] triples, in order (systemd's syntax: no continuation lines here). */
function settings(name: string): Array<[string, string, string]> {
  const out: Array<[string, string, string]> = [];
  let section = "";
  for (const line of unitText(name).split("\n")) {
    const s = line.trim();
    if (s === "" || s.startsWith("#") || s.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(s);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = s.indexOf("=");
    expect(eq).toBeGreaterThan(0);
    out.push([section, s.slice(0, eq).trim(), s.slice(eq + 1).trim()]);
  }
  return out;
}

/** All values of one key, in order (systemd list settings may repeat; an empty value resets). */
function values(name: string, key: string): string[] {
  return settings(name).filter(([, k]) => k === key).map(([, , v]) => v);
}

function run(argv: string[], env: Record<string, string> = {}): { code: number; out: string } {
  // cwd "/": verify looks for units named on the command line relative to nothing else.
  const r = Bun.spawnSync(argv, { cwd: "/", env: { ...process.env, SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "", ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: (r.stdout.toString() + r.stderr.toString()).trim() };
}

describe("systemd units as shipped", () => {
  test("the services run dsm from /usr/local/bin as user dsm, with the data dir /var/lib/dsm", () => {
    for (const unit of SERVICES) {
      expect(values(unit, "ExecStart")[0]).toStartWith(`${INSTALLED_BINARY} `);
      expect(values(unit, "User")).toEqual(["dsm"]);
      expect(values(unit, "SupplementaryGroups")).toEqual(["tss"]);
      expect(values(unit, "StateDirectory")).toEqual(["dsm"]);
      expect(values(unit, "Environment")).toContain("DSM_DATA_DIR=/var/lib/dsm");
      expect(values(unit, "Documentation").join(" ")).toContain("man:dsm(1)");
    }
  });

  test("hardening a JIT runtime and a TPM can live with", () => {
    for (const unit of SERVICES) {
      // JavaScriptCore's JIT needs writable+executable memory.
      expect(values(unit, "MemoryDenyWriteExecute")).toEqual([]);
      // A private /dev would hide /dev/tpmrm0; the device cgroup admits it instead.
      expect(values(unit, "PrivateDevices")).toEqual([]);
      expect(values(unit, "DevicePolicy")).toEqual(["closed"]);
      expect(values(unit, "DeviceAllow")).toEqual(["/dev/tpmrm0 rw"]);
      // getifaddrs (listening on 0.0.0.0) needs a netlink socket.
      expect(values(unit, "RestrictAddressFamilies")).toEqual(["AF_INET AF_INET6 AF_UNIX AF_NETLINK"]);
      expect(values(unit, "SystemCallFilter")).toEqual(["@system-service", "~@privileged @resources"]);
      expect(values(unit, "CapabilityBoundingSet")).toEqual([""]);
      expect(values(unit, "NoNewPrivileges")).toEqual(["true"]);
      expect(values(unit, "UMask")).toEqual(["0077"]);
      expect(values(unit, "ProtectSystem")).toEqual(["strict"]);
    }
  });

  test("dsm.service gives the daemon's graceful stop (about 3 s) room before SIGKILL", () => {
    expect(values("dsm.service", "KillSignal")).toEqual(["SIGTERM"]);
    expect(values("dsm.service", "TimeoutStopSec")).toEqual(["10"]);
  });

  test("the checkpoint service is a oneshot that appends NDJSON and takes exit 4 as success; its timer catches up", () => {
    expect(values("dsm-checkpoint.service", "Type")).toEqual(["oneshot"]);
    expect(values("dsm-checkpoint.service", "ExecStart")[0]).toContain(" checkpoint --json");
    expect(values("dsm-checkpoint.service", "SuccessExitStatus")).toEqual(["4"]);
    expect(values("dsm-checkpoint.service", "StandardOutput")).toEqual(["append:/var/lib/dsm/checkpoints.ndjson"]);
    expect(values("dsm-checkpoint.timer", "OnCalendar")).toEqual(["*:0/5"]);
    expect(values("dsm-checkpoint.timer", "Persistent")).toEqual(["true"]);
    expect(values("dsm-checkpoint.timer", "Unit")).toEqual(["dsm-checkpoint.service"]);
  });
});

describe.skipIf(analyze === null)("systemd-analyze", () => {
  const dir = mkdtempSync(join(tmpdir(), "dsm-units-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // verify only needs ExecStart to be an executable file; the built binary when there is one.
  const binary = existsSync(builtBinary) ? builtBinary : process.execPath;
  const manDir = join(dir, "man");
  if (checkMan) {
    mkdirSync(join(manDir, "man1"), { recursive: true });
    copyFileSync(manPage, join(manDir, "man1", "dsm.1"));
  }
  for (const unit of UNITS) {
    let text = unitText(unit).replaceAll(INSTALLED_BINARY, binary);
    if (!checkMan) text = text.replace(/^Documentation=(.*)$/gm, (_, docs: string) => `Documentation=${docs.split(/\s+/).filter((d) => !d.startsWith("man:")).join(" ")}`);
    writeFileSync(join(dir, unit), text);
  }

  test(checkMan ? "verify: all three units, man:dsm(1) included" : "verify: all three units (man:dsm(1) not checked: no dist/dsm.1 or no man)", () => {
    const r = run([analyze!, "verify", ...UNITS.map((u) => join(dir, u))], checkMan ? { MANPATH: manDir } : {});
    // verify exits 0 on warnings such as an unknown key: any output at all is a failure.
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  });

  for (const unit of SERVICES) {
    test(`security: ${unit} is rated ${MAX_EXPOSURE.toFixed(1)} or lower`, () => {
      const r = run([analyze!, "security", "--offline=true", "--no-pager", join(CONFIG, unit)]);
      expect(r.code).toBe(0);
      const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)/.exec(r.out);
      expect(m).not.toBeNull();
      const score = Number(m![1]);
      if (score > MAX_EXPOSURE) console.error(r.out);
      expect(score).toBeLessThanOrEqual(MAX_EXPOSURE);
    });
  }
});
