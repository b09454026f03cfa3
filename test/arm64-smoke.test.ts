// The arm64 build runs: .ci/arm64-smoke builds dist/dsm-arm64 and, under qemu user emulation,
// runs --version, init, ingest of the bundled samples and verify, checking each exit code
// and output. Skipped (saying why) only when qemu-aarch64-static is not installed; as root,
// `npm test` (.ci/setup) installs it (Debian: qemu-user-static libc6-arm64-cross).
import { expect, test } from "bun:test";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../.ci/arm64-smoke", import.meta.url));
const qemu = Bun.which("qemu-aarch64-static");
if (!qemu) {
  console.log("arm64 smoke test skipped: qemu-aarch64-static is not installed (Debian: apt-get install qemu-user-static libc6-arm64-cross)");
}

test.skipIf(!qemu)(
  "dist/dsm-arm64 under qemu: --version, init, ingest of config/samples, verify",
  async () => {
    const proc = Bun.spawn(["bash", SCRIPT], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) console.log(out + err);
    expect(out.trim().split("\n").at(-1)).toStartWith("arm64 smoke: ok");
    expect(code).toBe(0);
  },
  180_000,
);
