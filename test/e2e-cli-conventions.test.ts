// The conventions an operator expects of a Unix command line, checked on the compiled
// binary (issue 11): dsm version, common options before the command, stray arguments and
// repeated options refused, --type lists, export -o -, errors under --json, a closed pipe
// or a full disk on stdout, shell completion, the man page, and --help for every command.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import pkg from "../package.json" with { type: "json" };
import { subCommands } from "../src/cli/commands.ts";
import { DSM, dsmEnv, initNode, REPO, removeDir, requireBinary, runDsm, type RunResult, suricataLine, tempDir } from "./helpers/spawn-dsm.ts";

const COMMANDS = Object.keys(subCommands);
const N = 3000; // rows: their output (~300 KB of JSON) overflows any pipe buffer

let root: string;
let dataDir: string;
let lastId: string;

/** Runs a shell line with $DSM set; returns the code of `exit` in it, stdout and stderr. */
async function sh(script: string, opts: { cwd?: string } = {}): Promise<RunResult> {
  const proc = Bun.spawn(["bash", "-c", script], { stdout: "pipe", stderr: "pipe", cwd: opts.cwd, env: dsmEnv({ DSM, D: dataDir }) });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const lines = (s: string) => s.split("\n").filter((l) => l !== "");

/** Exit 1, nothing on stdout, exactly one line on stderr: returns it. */
function oneLineError(r: RunResult): string {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe("");
  expect(lines(r.stderr), r.stderr).toHaveLength(1);
  return r.stderr.trimEnd();
}

/** No stack frame, no source excerpt, no Bun crash banner. */
function noTrace(stderr: string): void {
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toMatch(/^\s*\d+ \| /m);
  expect(stderr).not.toContain("Bun v");
  expect(stderr).not.toContain("EPIPE");
}

beforeAll(async () => {
  requireBinary();
  root = tempDir("conventions");
  dataDir = path.join(root, "node");
  await initNode(dataDir);
  const input = path.join(root, "in.ndjson");
  fs.writeFileSync(input, Array.from({ length: N }, (_, i) => suricataLine("conv", i)).join("\n") + "\n");
  const ing = await runDsm(["ingest", "--data-dir", dataDir, input]);
  if (ing.code !== 0) throw new Error(`setup ingest failed (${ing.code}): ${ing.stderr}`);
  for (const t of ["honeypot.login", "zeek.notice", "suricata"]) {
    const r = await runDsm(["emit", "--data-dir", dataDir, "--event-type", t, "--payload", "{}", "--json"]);
    if (r.code !== 0) throw new Error(`setup emit failed (${r.code}): ${r.stderr}`);
  }
  lastId = JSON.parse((await runDsm(["log", "--data-dir", dataDir, "--json", "--limit", "1"])).stdout).id;
}, 120_000);

afterAll(() => removeDir(root));

// ---------------------------------------------------------------------------------------
describe("dsm version", () => {
  test("--version prints one line; version --json and --version --json print the build", async () => {
    const plain = await runDsm(["--version"]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe(`dsm ${pkg.version}\n`);
    expect((await runDsm(["-v"])).stdout).toBe(`dsm ${pkg.version}\n`);

    const outputs: string[] = [];
    for (const args of [["version", "--json"], ["--version", "--json"], ["--json", "--version"], ["--json", "version"]]) {
      const r = await runDsm(args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      expect(lines(r.stdout)).toHaveLength(1);
      outputs.push(r.stdout);
    }
    expect(new Set(outputs).size).toBe(1);
    const info = JSON.parse(outputs[0]!);
    expect(Object.keys(info).sort()).toEqual(["arch", "build_time", "bun", "commit", "platform", "version"]);
    expect(info.version).toBe(pkg.version);
    expect(info.bun).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.platform).toBe(process.platform);
    expect(info.arch).toBe(process.arch);
    expect(info.commit === null || /^[0-9a-f]{40}$/.test(info.commit)).toBe(true);
    expect(info.build_time === null || /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(info.build_time)).toBe(true);
    // `bun run build` in a git checkout says which commit it built.
    if (fs.existsSync(path.join(REPO, ".git"))) expect(info.commit).toMatch(/^[0-9a-f]{40}$/);

    const human = await runDsm(["version"]);
    expect(human.code).toBe(0);
    expect(lines(human.stdout)[0]).toBe(`dsm ${pkg.version}`);
    expect(human.stdout).toContain(info.bun);
    expect(oneLineError(await runDsm(["--version", "--bogus"]))).toContain("--bogus");
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
describe("common options before the command", () => {
  test("--data-dir, --config, --json and -q work before the command name as after it", async () => {
    const after = await runDsm(["status", "--data-dir", dataDir, "--json"]);
    expect(after.code, after.stderr).toBe(0);
    const want = JSON.parse(after.stdout);
    for (const args of [
      ["--data-dir", dataDir, "status", "--json"],
      ["--json", "--data-dir", dataDir, "status"],
      [`--data-dir=${dataDir}`, "--json", "status"],
      ["--config", path.join(dataDir, "dsm.yaml"), "--json", "status", "--data-dir", dataDir],
      ["-q", "--json", "--data-dir", dataDir, "status"],
    ]) {
      const r = await runDsm(args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      const got = JSON.parse(r.stdout);
      expect({ node_id: got.node_id, head: got.head, data_dir: got.data_dir }).toEqual({ node_id: want.node_id, head: want.head, data_dir: want.data_dir });
    }
    const log = await runDsm(["--config", path.join(dataDir, "dsm.yaml"), "--json", "log", "--data-dir", dataDir, "--limit", "2"]);
    expect(log.code, log.stderr).toBe(0);
    expect(lines(log.stdout).map((l) => JSON.parse(l).id)[0]).toBe(lastId);
  }, 60_000);

  test("an unknown option before the command is still an error, and so is a global option given twice", async () => {
    expect(oneLineError(await runDsm(["--bogus", "status"]))).toBe("dsm: unknown option --bogus (see: dsm --help)");
    expect(oneLineError(await runDsm(["--data-dir", dataDir, "--bogus", "status"]))).toContain("unknown option --bogus");
    expect(oneLineError(await runDsm(["--data-dir", dataDir]))).toContain("needs a command");
    expect(oneLineError(await runDsm(["--data-dir", dataDir, "status", "--data-dir", dataDir]))).toBe("dsm status: --data-dir given twice");
    // A command without --data-dir refuses it wherever it is given.
    expect(oneLineError(await runDsm(["--data-dir", dataDir, "completion", "bash"]))).toContain("unknown option --data-dir");
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
describe("stray arguments", () => {
  test("a command without positional arguments refuses one with one clear line", async () => {
    expect(oneLineError(await runDsm(["log", "suricata.alert", "--data-dir", dataDir]))).toBe(
      'dsm log: unexpected argument "suricata.alert" (see: dsm log --help)',
    );
    expect(oneLineError(await runDsm(["log", "--data-dir", dataDir, "--", "x"]))).toBe('dsm log: unexpected argument "x" (see: dsm log --help)');
    expect(oneLineError(await runDsm(["status", "now", "--data-dir", dataDir]))).toContain('unexpected argument "now"');
    expect(oneLineError(await runDsm(["verify", "--data-dir", dataDir, "all"]))).toContain('dsm verify: unexpected argument "all"');
    expect(oneLineError(await runDsm(["export", "--data-dir", dataDir, "out.ndjson"]))).toContain('unexpected argument "out.ndjson"');
    expect(oneLineError(await runDsm(["man", "extra"]))).toContain('unexpected argument "extra"');
  }, 60_000);

  test("option values are not arguments, and commands that take arguments still get them", async () => {
    // The word after --type is its value, even one that looks like an option's.
    const t = await runDsm(["log", "--type", "suricata.alert", "--data-dir", dataDir, "--limit", "1", "--json"]);
    expect(t.code, t.stderr).toBe(0);
    expect(JSON.parse(t.stdout).event_type).toBe("suricata.alert");
    const m = await runDsm(["mitigation", "--data-dir", dataDir, "--action", "alert", "--target", "10.0.0.1", "--reason", "-x happened", "--json"]);
    expect(m.code, m.stderr).toBe(0);

    const show = await runDsm(["show", lastId, "--data-dir", dataDir, "--json"]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(lastId);
    expect(oneLineError(await runDsm(["show", lastId, "again", "--data-dir", dataDir]))).toContain('unexpected argument "again"');

    // ingest FILE FILE and "-" (stdin), import FILE: arguments read from args._.
    const fresh = path.join(root, "fresh");
    await initNode(fresh);
    const a = path.join(root, "a.ndjson");
    const b = path.join(root, "b.ndjson");
    fs.writeFileSync(a, suricataLine("a", 1) + "\n");
    fs.writeFileSync(b, suricataLine("b", 2) + "\n");
    const ing = await runDsm(["ingest", "--data-dir", fresh, a, b, "-"], { stdin: suricataLine("c", 3) + "\n" });
    expect(ing.code, ing.stderr).toBe(0);
    expect(ing.stderr).toContain("3 stored");
    const exported = path.join(root, "fresh.ndjson");
    expect((await runDsm(["export", "--data-dir", fresh, "-o", exported])).code).toBe(0);
    const imp = await runDsm(["import", "--data-dir", fresh, exported]);
    expect(imp.code, imp.stderr).toBe(0);
    expect(imp.stderr).toContain("3 duplicate");

    const ql = await runDsm(["quarantine", "list", "--data-dir", dataDir]);
    expect(ql.code, ql.stderr).toBe(0);
    expect(oneLineError(await runDsm(["quarantine", "list", "x", "y", "--data-dir", dataDir]))).toContain('unexpected argument "y"');
    expect((await runDsm(["completion", "bash"])).code).toBe(0);
    expect(oneLineError(await runDsm(["completion", "bash", "zsh"]))).toContain('unexpected argument "zsh"');
  }, 90_000);
});

// ---------------------------------------------------------------------------------------
describe("repeated options; dsm log --type lists", () => {
  test("an option given twice is refused, unless it takes a list", async () => {
    expect(oneLineError(await runDsm(["log", "--data-dir", dataDir, "--node", "a", "--node", "b"]))).toBe("dsm log: --node given twice");
    expect(oneLineError(await runDsm(["log", "--data-dir", dataDir, "--limit=1", "--limit", "2"]))).toContain("given twice");
    expect(oneLineError(await runDsm(["export", "--data-dir", dataDir, "-o", "a", "--output", "b"]))).toContain("-o and --output are the same option, given twice");
    expect(oneLineError(await runDsm(["export", "--data-dir", dataDir, "--payloads", "--no-payloads"]))).toContain("contradict");
    // The same flag twice means the same thing.
    expect((await runDsm(["log", "--data-dir", dataDir, "--json", "--json", "--limit", "1"])).code).toBe(0);
    // genesis takes lists: the error is about the cards, not about a repeat.
    const g = await runDsm(["genesis", "--name", "t", "--validator", path.join(root, "nope1"), "--validator", path.join(root, "nope2")]);
    expect(g.code).toBe(1);
    expect(g.stderr).not.toContain("given twice");
  }, 60_000);

  async function types(...args: string[]): Promise<Map<string, number>> {
    const r = await runDsm(["log", "--data-dir", dataDir, "--json", "--limit", "0", ...args]);
    expect(r.code, r.stderr).toBe(0);
    const count = new Map<string, number>();
    for (const l of lines(r.stdout)) {
      const t = JSON.parse(l).event_type as string;
      count.set(t, (count.get(t) ?? 0) + 1);
    }
    return count;
  }

  test("--type a --type b is a OR b; a type matches itself and below; TYPE* is a prefix", async () => {
    expect(Object.fromEntries(await types("--type", "honeypot.login", "--type", "zeek.notice"))).toEqual({ "honeypot.login": 1, "zeek.notice": 1 });
    expect(Object.fromEntries(await types("--type", "suricata.*"))).toEqual({ "suricata.alert": N });
    expect(Object.fromEntries(await types("--type", "suricata"))).toEqual({ "suricata.alert": N, suricata: 1 });
    expect(Object.fromEntries(await types("--type", "hon*", "--type=zeek*"))).toEqual({ "honeypot.login": 1, "zeek.notice": 1 });
    expect(Object.fromEntries(await types("--type", "zeek.notice", "--type", "zeek.notice"))).toEqual({ "zeek.notice": 1 });
    expect(oneLineError(await runDsm(["log", "--data-dir", dataDir, "--type", "sur*ta"]))).toContain('--type "sur*ta"');
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
describe("dsm export -o -", () => {
  test("-o - is stdout, not a file named -", async () => {
    const cwd = path.join(root, "cwd");
    fs.mkdirSync(cwd, { recursive: true });
    const r = await sh(`"$DSM" export --data-dir "$D" -o - --json`, { cwd });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(path.join(cwd, "-"))).toBe(false);
    const records = lines(r.stdout).map((l) => JSON.parse(l));
    expect(records.filter((x) => x.kind === "microblock").length).toBeGreaterThanOrEqual(N);
    // No summary object among the data on stdout, and the stderr summary names no file.
    expect(records.every((x) => x.kind === "microblock" || x.kind === "key_certificate")).toBe(true);
    expect(r.stderr).not.toContain("->");
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
describe("errors", () => {
  test("with --json an error is one JSON object on stderr, with its exit code", async () => {
    const cases: [string[], string][] = [
      [["log", "--bogus", "--data-dir", dataDir, "--json"], "unknown option --bogus (see: dsm log --help)"],
      [["--json", "log", "suricata.alert", "--data-dir", dataDir], 'unexpected argument "suricata.alert" (see: dsm log --help)'],
      [["--json", "frob"], 'unknown command "frob" (see: dsm --help)'],
      [["status", "--json", "--data-dir", path.join(root, "absent")], "no dsm node in"],
      [["emit", "--json", "--data-dir", dataDir, "--event-type", "x.y"], "--payload"],
    ];
    for (const [args, message] of cases) {
      const r = await runDsm(args);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stdout).toBe("");
      expect(lines(r.stderr), r.stderr).toHaveLength(1);
      const e = JSON.parse(r.stderr);
      expect(Object.keys(e).sort()).toEqual(["code", "error"]);
      expect(e.code).toBe(1);
      expect(e.error).toContain(message);
      // Without --json, the same error is the usual line.
      const plain = await runDsm(args.filter((a) => a !== "--json"));
      expect(plain.stderr.trimEnd()).toMatch(/^dsm( [a-z-]+)?: /);
      expect(plain.stderr).toContain(message);
    }
  }, 60_000);

  // No command of the binary fails with an engine error on purpose: the report itself is
  // checked in a child process that throws one through src/cli/output.ts.
  test("an unexpected failure is one line saying where to report it, never a stack trace", async () => {
    const run = async (thrown: string, json: boolean, env: Record<string, string> = {}) => {
      const code = `import { reportFailure, setErrorContext } from "./src/cli/output.ts";
setErrorContext({ command: "dsm log", json: ${json} });
reportFailure(${thrown});`;
      const proc = Bun.spawn([process.execPath, "-e", code], { cwd: REPO, stdout: "pipe", stderr: "pipe", env: dsmEnv(env) });
      const [stderr, exit] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
      return { stderr, exit };
    };
    const bug = await run(`new TypeError("undefined is not an object (evaluating 'x.y')")`, false);
    expect(bug.exit).toBe(1);
    expect(bug.stderr).toBe(
      "dsm log: internal error: undefined is not an object (evaluating 'x.y') (DSM_DEBUG=1 shows the stack; report at https://github.com/hookprobe/dsm/issues)\n",
    );
    const bugJson = await run(`new RangeError("boom")`, true);
    expect(JSON.parse(bugJson.stderr)).toEqual({ error: expect.stringMatching(/^internal error: boom \(DSM_DEBUG=1/), code: 1 });
    // dsm's own layers throw Error with a message for the operator: that message, as is.
    expect((await run(`new Error("no dsm node in /x (run: dsm init)")`, false)).stderr).toBe("dsm log: no dsm node in /x (run: dsm init)\n");
    const write = await run(`Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", syscall: "write", errno: -28 })`, false);
    expect(write.stderr).toBe("dsm log: write error: no space left on device\n");
    const debug = await run(`new TypeError("boom")`, false, { DSM_DEBUG: "1" });
    expect(debug.stderr).toMatch(/^\s+at /m);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
describe("closed pipes and write errors on stdout", () => {
  test("dsm log | head -1 ends quietly with 141 (as a tool killed by SIGPIPE)", async () => {
    for (const args of ["log --limit 0", "log --limit 0 --json", "export", "export -o -"]) {
      const r = await sh(`"$DSM" ${args} --data-dir "$D" | head -1; exit "\${PIPESTATUS[0]}"`);
      expect({ args, code: r.code }).toEqual({ args, code: 141 });
      expect(lines(r.stdout)).toHaveLength(1);
      expect(r.stderr).toBe("");
    }
  }, 60_000);

  // The reader closes its end before dsm starts, so even a short output meets a closed pipe.
  const closedPipe = (cmd: string) => sh(`{ sleep 0.3; "$DSM" ${cmd}; } | (exec <&-; sleep 1); exit "\${PIPESTATUS[0]}"`);
  const STDOUT_COMMANDS = () => [
    `log --data-dir "$D"`,
    `show ${lastId} --data-dir "$D"`,
    `status --data-dir "$D"`,
    `status --json --data-dir "$D"`,
    `card --data-dir "$D"`,
    `verify --json --data-dir "$D"`,
    `export --data-dir "$D" --node all`,
    `version`,
    `--version --json`,
    `--help`,
    `log --help`,
    `completion bash`,
    `man`,
  ];

  test("every command that writes stdout: a closed pipe ends it quietly with 141", async () => {
    for (const cmd of STDOUT_COMMANDS()) {
      const r = await closedPipe(cmd);
      expect({ cmd, code: r.code, stderr: r.stderr }).toEqual({ cmd, code: 141, stderr: "" });
    }
    // ingest --json acknowledges on stdout; its own notes on stderr stay, with no trace.
    const fresh = path.join(root, "pipe-ingest");
    await initNode(fresh);
    const r = await closedPipe(`ingest --json --data-dir ${q(fresh)} ${q(path.join(root, "in.ndjson"))}`);
    expect(r.code).toBe(141);
    noTrace(r.stderr);
  }, 120_000);

  test("a write error (> /dev/full) is one line and exit 1, for every command", async () => {
    if (!fs.existsSync("/dev/full")) throw new Error("this test needs /dev/full");
    for (const cmd of STDOUT_COMMANDS()) {
      const r = await sh(`"$DSM" ${cmd} > /dev/full`);
      const name = cmd.startsWith("-") ? "dsm" : `dsm ${cmd.split(" ")[0]}`;
      const want = cmd.includes("--json") ? '{"error":"write error: no space left on device","code":1}' : `${name}: write error: no space left on device`;
      expect({ cmd, code: r.code, stderr: r.stderr }).toEqual({ cmd, code: 1, stderr: want + "\n" });
    }
    const fresh = path.join(root, "full-ingest");
    await initNode(fresh);
    const r = await sh(`"$DSM" ingest --json --data-dir ${q(fresh)} ${q(path.join(root, "in.ndjson"))} > /dev/full`);
    expect(r.code).toBe(1);
    noTrace(r.stderr);
    expect(lines(r.stderr).at(-1)).toBe('{"error":"write error: no space left on device","code":1}');
  }, 120_000);
});

// ---------------------------------------------------------------------------------------
describe("dsm completion", () => {
  test("bash: valid syntax, every subcommand, and it completes options and their values", async () => {
    const r = await runDsm(["completion", "bash"]);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(root, "dsm.bash");
    fs.writeFileSync(file, r.stdout);
    const syntax = Bun.spawnSync(["bash", "-n", file], { stderr: "pipe" });
    expect(syntax.stderr.toString()).toBe("");
    expect(syntax.exitCode).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^    ${c}\\)$`, "m"));

    // Complete as bash would: COMP_WORDS/COMP_CWORD in, COMPREPLY out.
    const complete = async (...words: string[]) => {
      const script = `source ${q(file)}; COMP_WORDS=(${words.map(q).join(" ")}); COMP_CWORD=${words.length - 1}; _dsm; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const out = await sh(script);
      expect(out.stderr).toBe("");
      return lines(out.stdout);
    };
    expect((await complete("dsm", "")).sort()).toEqual([...COMMANDS].sort());
    expect(await complete("dsm", "ver")).toEqual(["verify", "verify-proof", "version"]);
    expect(await complete("dsm", "--data-dir", "/tmp", "lo")).toEqual(["log"]);
    expect(await complete("dsm", "log", "--t")).toEqual(["--to-seq", "--type"]);
    expect(await complete("dsm", "ingest", "--format", "")).toEqual(["auto", "suricata", "zeek", "json"]);
    expect(await complete("dsm", "completion", "")).toEqual(["bash", "zsh", "fish"]);
    expect(await complete("dsm", "checkpoint", "--epoch", "3", "")).toEqual(["show"]);
  }, 60_000);

  test("zsh and fish: every subcommand (and valid syntax where the shell is installed)", async () => {
    for (const shell of ["zsh", "fish"]) {
      const r = await runDsm(["completion", shell]);
      expect(r.code, r.stderr).toBe(0);
      for (const c of COMMANDS) expect(r.stdout).toContain(shell === "zsh" ? `'${c}:` : `-a ${c} -d`);
      const bin = Bun.which(shell);
      if (bin) {
        const file = path.join(root, `dsm.${shell}`);
        fs.writeFileSync(file, r.stdout);
        const check = Bun.spawnSync(shell === "zsh" ? [bin, "-n", file] : [bin, "--no-execute", file], { stderr: "pipe" });
        expect(check.stderr.toString()).toBe("");
        if (shell === "fish") {
          // fish completes without a terminal: complete -C "LINE" prints the candidates.
          const complete = (line: string) => {
            const r = Bun.spawnSync([bin, "-c", `source ${q(file)}; complete -C ${q(line)}`], { stdout: "pipe", stderr: "pipe" });
            expect(r.stderr.toString()).toBe("");
            return lines(r.stdout.toString()).map((l) => l.split("\t")[0]);
          };
          expect(complete("dsm lo")).toEqual(["log"]);
          expect(complete("dsm --data-dir /tmp lo")).toEqual(["log"]);
          expect(complete("dsm log --ty")).toEqual(["--type"]);
          expect(complete("dsm ingest --format ").sort()).toEqual(["auto", "json", "suricata", "zeek"]);
          expect(complete("dsm completion ").sort()).toEqual(["bash", "fish", "zsh"]);
        }
      }
    }
    expect(oneLineError(await runDsm(["completion", "tcsh"]))).toContain('unknown shell "tcsh"');
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
describe("the man page", () => {
  let page: string;
  beforeAll(async () => {
    const r = await runDsm(["man"]);
    expect(r.code, r.stderr).toBe(0);
    page = r.stdout;
  });

  test("dsm man covers every command, its options and help, and the usual sections", async () => {
    expect(page).toMatch(/^\.TH DSM 1 /m);
    for (const s of ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", '"EXIT STATUS"', "ENVIRONMENT", "FILES"]) {
      expect(page).toMatch(new RegExp(`^\\.SH ${s.startsWith('"') ? `(${s}|${s.slice(1, -1)})` : s}$`, "m"));
    }
    for (const c of COMMANDS) expect(page).toContain(`.SS "dsm ${c.replace(/-/g, "\\-")}"`);
    expect(page).toContain("\\fB\\-\\-type\\fR \\fITYPE\\fR"); // dsm log's option
    expect(page).toContain("\\fB\\-\\-format\\fR \\fIauto|suricata|zeek|json\\fR"); // an enum
    expect(page).toContain("tail \\-F /var/log/suricata/eve.json | dsm ingest"); // help text, kept as typed
    expect(page).toContain("DSM_DATA_DIR");
    expect(page).not.toMatch(/[^\x00-\x7f]/); // non-ASCII is escaped for groff
  });

  test("it renders without warnings; bun run build wrote the same page to dist/dsm.1", async () => {
    const file = path.join(root, "dsm.1");
    fs.writeFileSync(file, page);
    if (Bun.which("groff")) {
      const g = Bun.spawnSync(["groff", "-man", "-Tutf8", "-ww", "-z", file], { stderr: "pipe" });
      expect(g.stderr.toString()).toBe("");
      expect(g.exitCode).toBe(0);
    }
    if (Bun.which("man")) {
      const m = Bun.spawnSync(["man", "--warnings", "-l", file], { stdout: "pipe", stderr: "pipe", env: { ...process.env, MANWIDTH: "80", MANPAGER: "cat", PAGER: "cat" } });
      expect(m.stderr.toString()).toBe("");
      expect(m.exitCode).toBe(0);
      const text = m.stdout.toString();
      expect(text).toContain("EXIT STATUS");
      expect(text).toContain("dsm log");
    }
    if (!Bun.which("groff") && !Bun.which("man")) console.warn("groff and man are not installed: the page was checked for structure only");
    const built = path.join(REPO, "dist", "dsm.1");
    expect(fs.existsSync(built)).toBe(true);
    // The header's date is the build's; the rest is the binary's own text.
    const body = (s: string) => s.replace(/^\.TH .*$/m, "");
    expect(body(fs.readFileSync(built, "utf8"))).toBe(body(page));
  });
});

// ---------------------------------------------------------------------------------------
describe("--help", () => {
  test("every command's --help renders", async () => {
    for (const c of COMMANDS) {
      const r = await runDsm([c, "--help"]);
      expect({ c, code: r.code, stderr: r.stderr }).toEqual({ c, code: 0, stderr: "" });
      expect(r.stdout).toContain("USAGE");
      expect(r.stdout).toContain(`dsm ${c}`);
    }
    const top = await runDsm(["--help"]);
    for (const c of COMMANDS) expect(top.stdout).toContain(c);
  }, 90_000);
});
