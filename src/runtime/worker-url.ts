// Where a worker thread's module is. In the compiled binary every worker is an extra
// build entrypoint (package.json "build"), addressed from the bundle root as its path
// under src/; run from source, it is a file beside its caller.
import * as os from "node:os";

/** A second thread only pays where there is a second core to run it (a 1-core SBC gains nothing). */
export function useWorkers(): boolean {
  return os.availableParallelism() > 1 && process.env.DSM_NO_WORKERS === undefined;
}

export function workerUrl(pathUnderSrc: string, besideCaller: URL): string {
  return import.meta.url.includes("$bunfs") ? `./src/${pathUnderSrc}` : besideCaller.href;
}
