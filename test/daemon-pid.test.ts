// A pid left in run.json or head-check.json counts as the data dir's daemon only while it is
// a live `dsm run`: a reused pid (another dsm command, any other program) does not.
import { expect, test } from "bun:test";
import { isDsmDaemon } from "../src/runtime/daemon-pid.ts";

function spawnWith(args: string[]) {
  return Bun.spawn([process.execPath, "-e", "setTimeout(() => {}, 20000)", ...args], { stdout: "ignore", stderr: "ignore" });
}

test("only a live process whose command line is dsm ... run", async () => {
  const daemon = spawnWith(["/opt/dsm/dist/dsm", "run", "--data-dir", "/x"]);
  const emit = spawnWith(["/opt/dsm/dist/dsm", "emit", "--event-type", "run"]);
  const other = spawnWith(["/usr/bin/unrelated", "run"]);
  const global = spawnWith(["/opt/dsm/dist/dsm", "--data-dir", "/x", "run"]);
  try {
    await Bun.sleep(300);
    expect(isDsmDaemon(daemon.pid)).toBe(true);
    expect(isDsmDaemon(emit.pid)).toBe(false);
    expect(isDsmDaemon(other.pid)).toBe(false);
    expect(isDsmDaemon(global.pid)).toBe(true);
    expect(isDsmDaemon(process.pid)).toBe(false);
    expect(isDsmDaemon("123")).toBe(false);
    expect(isDsmDaemon(1)).toBe(false);
  } finally {
    for (const p of [daemon, emit, other, global]) p.kill();
  }
  await daemon.exited;
  expect(isDsmDaemon(daemon.pid)).toBe(false);
});
