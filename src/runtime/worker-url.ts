// Where a worker thread's module is. In the compiled binary every worker is an extra
// build entrypoint (package.json "build"), addressed from the bundle root as its path
// under src/; run from source, it is a file beside its caller.
export function workerUrl(pathUnderSrc: string, besideCaller: URL): string {
  return import.meta.url.includes("$bunfs") ? `./src/${pathUnderSrc}` : besideCaller.href;
}
