// decisions.listen as dsm run reads it: HOST:PORT, a bracketed IPv6 host, or "on".
import { expect, test } from "bun:test";
import { DaemonStartError, hostPort } from "../src/mesh/daemon.ts";

test("decisions.listen", () => {
  expect(hostPort("127.0.0.1:8081")).toEqual({ host: "127.0.0.1", port: 8081 });
  expect(hostPort("[::1]:9000")).toEqual({ host: "::1", port: 9000 });
  expect(hostPort("on")).toEqual({ host: "127.0.0.1", port: 8081 });
  for (const bad of ["8081", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:8081", "true", "127.0.0.1:80x"]) {
    expect(() => hostPort(bad)).toThrow(DaemonStartError);
    expect(() => hostPort(bad)).toThrow(/decisions.listen must be HOST:PORT/);
  }
});
