// Secrets and state files: created 0600, written whole (temp + fsync + rename) so a
// crash never leaves half a key, and never silently replaced.
import * as fs from "node:fs";
import * as path from "node:path";

export class FileExistsError extends Error {}

export function writeFileAtomic(file: string, data: string | Uint8Array, opts: { overwrite: boolean; mode?: number }): void {
  const mode = opts.mode ?? 0o600;
  if (!opts.overwrite && fs.existsSync(file)) throw new FileExistsError(`${file} already exists`);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, mode); // umask may have narrowed or a stale temp may have had other bits
  if (!opts.overwrite) {
    // link() fails if the target appeared meanwhile: no race with a concurrent init.
    try {
      fs.linkSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new FileExistsError(`${file} already exists`);
      throw e;
    }
    fs.rmSync(tmp, { force: true });
  } else {
    fs.renameSync(tmp, file);
  }
  syncDir(path.dirname(file));
}

function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // some filesystems refuse fsync on directories; the data itself is already synced
  }
}

/** Reads a secret file and refuses one that others can read: a leaked key must not go unnoticed. */
export function readSecretFile(file: string): Buffer {
  const st = fs.statSync(file);
  if ((st.mode & 0o077) !== 0) {
    throw new Error(`${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`);
  }
  return fs.readFileSync(file);
}
