import pkg from "../../package.json" with { type: "json" };
import { command, commonArgs, print, printJson } from "./common.ts";

// Set by `bun build --define` in package.json's build scripts; absent when run from source.
declare const DSM_BUILD_COMMIT: string | undefined;
declare const DSM_BUILD_TIME: string | undefined;

export interface BuildInfo {
  version: string;
  /** The git commit the binary was built from, when the build knew it. */
  commit: string | null;
  /** When the binary was built (RFC 3339 UTC), when the build said. */
  build_time: string | null;
  /** The Bun runtime inside the binary. */
  bun: string;
  platform: string;
  arch: string;
}

export function buildInfo(): BuildInfo {
  const commit = typeof DSM_BUILD_COMMIT === "string" && /^[0-9a-f]{7,64}$/.test(DSM_BUILD_COMMIT) ? DSM_BUILD_COMMIT : null;
  const built = typeof DSM_BUILD_TIME === "string" && /^\d{4}-\d\d-\d\dT[\d:]+Z$/.test(DSM_BUILD_TIME) ? DSM_BUILD_TIME : null;
  return { version: pkg.version, commit, build_time: built, bun: Bun.version, platform: process.platform, arch: process.arch };
}

export default command({
  meta: { name: "version", description: "Print the version and build information" },
  help: `Prints "dsm VERSION" and what the binary was built from: the git commit and build time
(when the build knew them), the Bun runtime, platform and architecture. --json prints
{"version","commit","build_time","bun","platform","arch"} (commit and build_time are null
for a binary built outside git, or when run from source). dsm --version prints the first
line only; dsm --version --json is dsm version --json.

EXAMPLES
  dsm version
  dsm --version --json`,
  args: { ...commonArgs },
  async run({ args }) {
    const info = buildInfo();
    if (args.json) return printJson(info);
    print(`dsm ${info.version}`);
    print(`commit      ${info.commit ?? "unknown"}`);
    print(`built       ${info.build_time ?? "unknown"}`);
    print(`bun         ${info.bun}`);
    print(`platform    ${info.platform}/${info.arch}`);
  },
});
