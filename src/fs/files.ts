// Secrets and state files: created 0600, written whole (temp + fsync + rename) so a
// crash never leaves half a key, and never silently replaced.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export class FileExistsError extends Error {}

export function writeFileAtomic(file: string, data: string | Uint8Array, opts: { overwrite: boolean; mode?: number }): void {
  const mode = opts.mode ?? 0o600;
  if (!opts.overwrite && fs.existsSync(file)) throw new FileExistsError(`${file} already exists`);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // A fresh, unguessable name opened O_EXCL|O_NOFOLLOW: a link planted in the directory
  // cannot redirect a key to a file of someone else's choosing.
  const tmp = `${file}.tmp-${crypto.randomBytes(8).toString("hex")}`;
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, mode);
  try {
    fs.fchmodSync(fd, mode); // the umask may have narrowed it
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  } finally {
    fs.closeSync(fd);
  }
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

/**
 * The node's data dir holds its keys: created 0700, and an existing one must be ours and
 * closed to other users, or a local attacker could swap files under us.
 */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir); // a link to a private dir is fine: what matters is the dir itself
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (typeof process.getuid === "function" && st.uid !== process.getuid()) {
    throw new Error(`${dir} belongs to another user (uid ${st.uid}); a node's data dir must be its own`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new Error(`${dir} is writable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 700 ${dir}`);
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
