// src/fs/files.ts: writing files atomically, in real temp dirs.
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../src/fs/files.ts";
import { useScratch } from "./helpers/scratch.ts";

const { freshDir } = useScratch("dsm-files-");

// ---------------------------------------------------------------------------
describe("writeFileAtomic: temp files that never follow links", () => {
  test("writeFileAtomic, create and overwrite: never through a planted link, mode applied despite the umask", () => {
    const dir = freshDir("atomic");
    fs.mkdirSync(dir, { mode: 0o700 });
    const elsewhere = freshDir("attacker");
    fs.mkdirSync(elsewhere);
    const file = path.join(dir, "secret.key");
    const target = path.join(elsewhere, "stolen");
    fs.symlinkSync(target, `${file}.tmp-${process.pid}`);
    const oldUmask = process.umask(0o022);
    try {
      writeFileAtomic(file, "first", { overwrite: false });
      writeFileAtomic(file, "second", { overwrite: true, mode: 0o640 });
    } finally {
      process.umask(oldUmask);
    }
    expect(fs.existsSync(target)).toBe(false);
    const st = fs.lstatSync(file);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o640);
    expect(fs.readFileSync(file, "utf8")).toBe("second");
    expect(fs.readdirSync(dir).sort()).toEqual(["secret.key", `secret.key.tmp-${process.pid}`]);
  });
});
