import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  applyEnvOverrides,
  ConfigError,
  DEFAULT_CONFIG_TEXT,
  defaultConfig,
  type DsmConfig,
  parseConfig,
  resolveConfig,
} from "../src/config/config.ts";

const SHIPPED_PATH = join(import.meta.dir, "..", "config", "dsm.yaml");

const EXPECTED_DEFAULTS: DsmConfig = {
  node: { role: "edge", data_dir: "" },
  identity: { kind: "software", tcti: "", tpm_handle: 0x81010001 },
  keys: { signing_key_lifetime_s: 86400 },
  ledger: { file: "ledger.sqlite", batch_max_events: 1000, batch_max_ms: 50, busy_timeout_ms: 10000 },
  ingest: { format: "auto", max_line_bytes: 1048576 },
  privacy: { anonymize_ips: false, withhold_payloads: false },
  mesh: { genesis: "", max_clock_skew_s: 60 },
  consensus: { signature_timeout_s: 30, quorum_threshold: 0 },
  gossip: { host: "0.0.0.0", port: 7946, bootstrap_nodes: "", max_message_bytes: 1048576, batch_max_ms: 100 },
  metrics: { port: 0 },
  control: { port: 0 },
  attestation: { interval_epochs: 12, timeout_s: 10 },
};

/** Runs fn, which must throw a ConfigError, and returns its message. */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const message = (e as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("expected a ConfigError, got none");
}

const parse = (text: string, env: Record<string, string | undefined> = {}): DsmConfig => parseConfig(text, "/etc/dsm.yaml", env);
const parseError = (text: string, env: Record<string, string | undefined> = {}): string => errorOf(() => parse(text, env));

describe("defaults", () => {
  test("the embedded text is the shipped file", () => {
    expect(DEFAULT_CONFIG_TEXT).toBe(readFileSync(SHIPPED_PATH, "utf8"));
  });

  test("defaults are exactly the documented values", () => {
    expect(defaultConfig()).toEqual(EXPECTED_DEFAULTS);
  });

  test("the shipped file parses with no environment at all", () => {
    expect(parseConfig(readFileSync(SHIPPED_PATH, "utf8"), SHIPPED_PATH, {})).toEqual(EXPECTED_DEFAULTS);
  });

  test("empty and comment-only files are the defaults", () => {
    expect(parse("")).toEqual(EXPECTED_DEFAULTS);
    expect(parse("# nothing here\n\n")).toEqual(EXPECTED_DEFAULTS);
  });

  test("a section with every key commented out is empty, not an error", () => {
    expect(parse("privacy:\n  # anonymize_ips: true\n")).toEqual(EXPECTED_DEFAULTS);
  });

  test("a partial file overrides only what it sets", () => {
    const config = parse("ledger:\n  batch_max_ms: 20\nprivacy:\n  anonymize_ips: true\nnode:\n  role: both\n");
    expect(config.ledger).toEqual({ ...EXPECTED_DEFAULTS.ledger, batch_max_ms: 20 });
    expect(config.privacy.anonymize_ips).toBe(true);
    expect(config.node).toEqual({ role: "both", data_dir: "" });
    expect(config.mesh).toEqual(EXPECTED_DEFAULTS.mesh);
  });

  test("returned configs are independent copies", () => {
    const a = parse("");
    a.ledger.batch_max_ms = 7;
    expect(parse("").ledger.batch_max_ms).toBe(50);
    expect(defaultConfig().ledger.batch_max_ms).toBe(50);
  });

  test("tpm identity is accepted; deciding whether it is usable is the caller's job", () => {
    const config = parse("identity:\n  kind: tpm\n  tcti: device:/dev/tpmrm0\n");
    expect(config.identity).toEqual({ kind: "tpm", tcti: "device:/dev/tpmrm0", tpm_handle: 0x81010001 });
    expect(parse("identity:\n  tpm_handle: 0x81000002\n").identity.tpm_handle).toBe(0x81000002);
    expect(() => parse("identity:\n  tpm_handle: 0x80000000\n")).toThrow(/tpm_handle/);
  });
});

describe("validation errors", () => {
  test("malformed YAML carries the parser's reason", () => {
    const message = parseError("ledger: [1, 2\n");
    expect(message).toStartWith("config /etc/dsm.yaml: invalid YAML: ");
    expect(message.length).toBeGreaterThan("config /etc/dsm.yaml: invalid YAML: ".length);
  });

  test("top level must be a mapping", () => {
    expect(parseError("- node\n- ledger\n")).toStartWith("config /etc/dsm.yaml: top level: expected a mapping of sections");
    expect(parseError("just text\n")).toContain('got "just text"');
  });

  test("a section must be a mapping", () => {
    expect(parseError("ledger: 5\n")).toBe("config /etc/dsm.yaml: ledger: expected a mapping of keys, got 5");
  });

  test("unknown section, with a suggestion", () => {
    const message = parseError("ledgr:\n  file: x\n");
    expect(message).toStartWith("config /etc/dsm.yaml: ledgr: unknown section (did you mean ledger?)");
  });

  test("unknown section without a near name lists the known ones", () => {
    const message = parseError("telemetry:\n  on: true\n");
    expect(message).toStartWith("config /etc/dsm.yaml: telemetry: unknown section; known sections: node, identity");
  });

  test("a key written at top level points to its section", () => {
    expect(parseError("role: edge\n")).toStartWith("config /etc/dsm.yaml: role: unknown section (did you mean node.role?)");
  });

  test("unknown key, with a suggestion", () => {
    const message = parseError("ledger:\n  batch_max_event: 5\n");
    expect(message).toStartWith("config /etc/dsm.yaml: ledger.batch_max_event: unknown key (did you mean ledger.batch_max_events?)");
  });

  test("a key in the wrong section points to the right one", () => {
    expect(parseError("ledger:\n  max_line_bytes: 4096\n")).toStartWith(
      "config /etc/dsm.yaml: ledger.max_line_bytes: unknown key (did you mean ingest.max_line_bytes?)",
    );
  });

  test("unknown key with no near name lists the section's keys", () => {
    expect(parseError("privacy:\n  encrypt: true\n")).toBe(
      "config /etc/dsm.yaml: privacy.encrypt: unknown key; known keys in privacy: anonymize_ips, withhold_payloads",
    );
  });

  test("integer of the wrong type", () => {
    expect(parseError("ledger:\n  batch_max_events: abc\n")).toBe(
      'config /etc/dsm.yaml: ledger.batch_max_events: expected an integer between 1 and 100000, got "abc"',
    );
    expect(parseError("ledger:\n  batch_max_ms: 1.5\n")).toBe(
      "config /etc/dsm.yaml: ledger.batch_max_ms: expected an integer between 1 and 60000, got 1.5",
    );
    expect(parseError("ledger:\n  batch_max_ms: true\n")).toContain("got true");
  });

  test("a quoted number in the file is still a string", () => {
    expect(parseError('ledger:\n  batch_max_ms: "50"\n')).toBe(
      'config /etc/dsm.yaml: ledger.batch_max_ms: expected an integer between 1 and 60000, got "50"',
    );
  });

  test.each([
    ["ledger", "batch_max_events", 1, 100000],
    ["ledger", "batch_max_ms", 1, 60000],
    ["ledger", "busy_timeout_ms", 0, 600000],
    ["ingest", "max_line_bytes", 1024, 67108864],
    ["keys", "signing_key_lifetime_s", 60, 31536000],
    ["mesh", "max_clock_skew_s", 0, 86400],
  ] as const)("%s.%s accepts %d..%d and nothing outside", (section, key, min, max) => {
    const at = (n: number): string => `${section}:\n  ${key}: ${n}\n`;
    const read = (c: DsmConfig): unknown => (c[section] as Record<string, unknown>)[key];
    expect(read(parse(at(min)))).toBe(min);
    expect(read(parse(at(max)))).toBe(max);
    const expected = `config /etc/dsm.yaml: ${section}.${key}: expected an integer between ${min} and ${max}, got`;
    expect(parseError(at(min - 1))).toBe(`${expected} ${min - 1}`);
    expect(parseError(at(max + 1))).toBe(`${expected} ${max + 1}`);
  });

  test("booleans must be YAML booleans in the file", () => {
    expect(parseError("privacy:\n  anonymize_ips: yes\n")).toBe(
      'config /etc/dsm.yaml: privacy.anonymize_ips: expected true or false, got "yes"',
    );
  });

  test("enums", () => {
    expect(parseError("node:\n  role: leader\n")).toBe(
      'config /etc/dsm.yaml: node.role: expected one of edge, validator, both, got "leader"',
    );
    expect(parseError("identity:\n  kind: hsm\n")).toBe(
      'config /etc/dsm.yaml: identity.kind: expected one of software, tpm, got "hsm"',
    );
    expect(parseError("ingest:\n  format: Suricata\n")).toContain("ingest.format: expected one of auto, suricata, zeek, json");
  });

  test("strings must be strings", () => {
    expect(parseError("ledger:\n  file: 123\n")).toBe("config /etc/dsm.yaml: ledger.file: expected a string, got 123");
    expect(parseError("mesh:\n  genesis:\n")).toBe("config /etc/dsm.yaml: mesh.genesis: expected a string, got nothing (null)");
    expect(parseError("mesh:\n  genesis: [a]\n")).toBe("config /etc/dsm.yaml: mesh.genesis: expected a string, got a list");
  });

  test("values with newlines stay on one line in the message", () => {
    expect(parseError('node:\n  role: "edge\\nboth"\n')).toContain('got "edge\\nboth"');
  });
});

describe("${VAR} expansion", () => {
  const file = (text: string, env: Record<string, string | undefined> = {}): string => parse(`ledger:\n  file: '${text}'\n`, env).ledger.file;

  test("set variable", () => {
    expect(file("${DIR}/ledger.sqlite", { DIR: "/srv" })).toBe("/srv/ledger.sqlite");
    expect(file("${A}${B}", { A: "x", B: "y" })).toBe("xy");
  });

  test("default when unset or empty", () => {
    expect(file("${DIR:-/var/lib}/l.db")).toBe("/var/lib/l.db");
    expect(file("${DIR:-/var/lib}/l.db", { DIR: "" })).toBe("/var/lib/l.db");
    expect(file("${DIR:-/var/lib}/l.db", { DIR: "/srv" })).toBe("/srv/l.db");
  });

  test("empty default", () => {
    expect(file("a${A:-}b")).toBe("ab");
  });

  test("a set but empty variable without default is empty, not an error", () => {
    expect(file("a${A}b", { A: "" })).toBe("ab");
  });

  test("$$ is a literal $", () => {
    expect(file("cost$$5")).toBe("cost$5");
    expect(file("$${NOT_EXPANDED}")).toBe("${NOT_EXPANDED}");
    expect(file("$$$${X}")).toBe("$${X}");
    expect(file("$$${X}", { X: "v" })).toBe("$v");
  });

  test("a $ not followed by a name or brace is literal", () => {
    expect(file("a$")).toBe("a$");
    expect(file("a$ b$1")).toBe("a$ b$1");
  });

  test("nested-looking text", () => {
    expect(file("{${A:-x}}")).toBe("{x}");
    expect(file("${A:-{x}}")).toBe("{x}");
    expect(file("${A:-x}}")).toBe("x}");
    expect(file("${A:-a:-b}")).toBe("a:-b");
    expect(file("${A:-$${B}}")).toBe("${B}");
  });

  test("a default may itself hold a reference, evaluated only when used", () => {
    expect(file("${A:-${B:-c}}")).toBe("c");
    expect(file("${A:-${B:-c}}", { B: "b" })).toBe("b");
    expect(file("${A:-${B}}", { A: "a" })).toBe("a");
    expect(parseError("ledger:\n  file: ${A:-${B}}\n")).toContain("environment variable B is not set");
  });

  test("unset variable names the key and the variable", () => {
    expect(parseError("ledger:\n  file: ${DSM_X}/l.db\n")).toBe(
      "config /etc/dsm.yaml: ledger.file: environment variable DSM_X is not set (use ${DSM_X:-default})",
    );
  });

  test("unterminated ${", () => {
    for (const text of ["${A", "a${", "${A:-x", "${A:-${B}"]) {
      expect(parseError(`ledger:\n  file: '${text}'\n`)).toStartWith('config /etc/dsm.yaml: ledger.file: unterminated "${"');
    }
  });

  test("invalid and unsupported references", () => {
    expect(parseError("ledger:\n  file: '${}'\n")).toContain("ledger.file: invalid variable reference");
    expect(parseError("ledger:\n  file: '${1A}'\n")).toContain("ledger.file: invalid variable reference");
    expect(parseError("ledger:\n  file: '${A:?no}'\n")).toContain("ledger.file: unsupported reference");
    expect(parseError("ledger:\n  file: '${A-x}'\n")).toContain("ledger.file: unsupported reference");
  });

  test("an unbraced $NAME is rejected rather than left silently unexpanded", () => {
    expect(parseError("ledger:\n  file: $HOME/l.db\n")).toBe(
      'config /etc/dsm.yaml: ledger.file: "$HOME" is not expanded: write ${HOME}, or $$ for a literal $',
    );
  });

  test("numbers and booleans may come from expansion", () => {
    const text = "ledger:\n  batch_max_ms: ${BATCH:-50}\n  batch_max_events: ${EVENTS}\nprivacy:\n  anonymize_ips: ${ANON:-false}\n";
    const config = parse(text, { EVENTS: "250", ANON: "1" });
    expect(config.ledger.batch_max_ms).toBe(50);
    expect(config.ledger.batch_max_events).toBe(250);
    expect(config.privacy.anonymize_ips).toBe(true);
    expect(parse(text, { EVENTS: "1", BATCH: "7" }).ledger.batch_max_ms).toBe(7);
  });

  test("an expanded value is still type and range checked", () => {
    expect(parseError("ledger:\n  batch_max_ms: ${BATCH:-fast}\n")).toBe(
      'config /etc/dsm.yaml: ledger.batch_max_ms: expected an integer between 1 and 60000, got "fast" (expanded from "${BATCH:-fast}")',
    );
    expect(parseError("ledger:\n  batch_max_ms: ${BATCH}\n", { BATCH: "0" })).toContain('got "0" (expanded from "${BATCH}")');
    expect(parseError("node:\n  role: ${ROLE}\n", { ROLE: "leader" })).toContain("node.role: expected one of edge, validator, both");
    expect(parseError("privacy:\n  anonymize_ips: ${ANON}\n", { ANON: "yes" })).toContain(
      "privacy.anonymize_ips: expected true, false, 1 or 0",
    );
  });

  test("enums may come from expansion", () => {
    expect(parse("node:\n  role: ${ROLE:-validator}\n").node.role).toBe("validator");
  });
});

describe("environment overrides", () => {
  test("DSM_<SECTION>_<KEY> sets one key, coerced by type", () => {
    const config = applyEnvOverrides(defaultConfig(), {
      DSM_PRIVACY_ANONYMIZE_IPS: "true",
      DSM_LEDGER_BATCH_MAX_MS: "20",
      DSM_NODE_ROLE: "validator",
      DSM_MESH_GENESIS: "/etc/dsm/genesis.json",
    });
    expect(config.privacy.anonymize_ips).toBe(true);
    expect(config.ledger.batch_max_ms).toBe(20);
    expect(config.node.role).toBe("validator");
    expect(config.mesh.genesis).toBe("/etc/dsm/genesis.json");
    expect(config.ledger.batch_max_events).toBe(1000);
  });

  test("booleans accept true, false, 1 and 0", () => {
    const anon = (v: string): boolean => applyEnvOverrides(defaultConfig(), { DSM_PRIVACY_ANONYMIZE_IPS: v }).privacy.anonymize_ips;
    expect(anon("true")).toBe(true);
    expect(anon("1")).toBe(true);
    expect(anon("false")).toBe(false);
    expect(anon("0")).toBe(false);
    expect(errorOf(() => anon("yes"))).toBe(
      'environment variable DSM_PRIVACY_ANONYMIZE_IPS: privacy.anonymize_ips: expected true, false, 1 or 0, got "yes"',
    );
  });

  test("an invalid value names the variable and the key", () => {
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_LEDGER_BATCH_MAX_MS: "fast" }))).toBe(
      'environment variable DSM_LEDGER_BATCH_MAX_MS: ledger.batch_max_ms: expected an integer between 1 and 60000, got "fast"',
    );
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_LEDGER_BATCH_MAX_MS: "" }))).toContain("got \"\"");
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_LEDGER_BATCH_MAX_MS: " 20" }))).toContain('got " 20"');
  });

  test("override values are literal: no ${VAR} expansion", () => {
    const config = applyEnvOverrides(defaultConfig(), { DSM_LEDGER_FILE: "${X}.db" });
    expect(config.ledger.file).toBe("${X}.db");
  });

  test("a known section with an unknown key is an error", () => {
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_LEDGER_BATCH_MAX_EVENT: "5" }))).toStartWith(
      "environment variable DSM_LEDGER_BATCH_MAX_EVENT: ledger.batch_max_event: unknown key (did you mean DSM_LEDGER_BATCH_MAX_EVENTS?)",
    );
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_PRIVACY_MODE: "x" }))).toStartWith(
      "environment variable DSM_PRIVACY_MODE: privacy.mode: unknown key",
    );
  });

  test("DSM_NODE_DATA_DIR is refused in favour of DSM_DATA_DIR", () => {
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_NODE_DATA_DIR: "/x" }))).toBe(
      "environment variable DSM_NODE_DATA_DIR: node.data_dir: use DSM_DATA_DIR to choose the data directory",
    );
  });

  test("special and foreign variables are ignored", () => {
    const env = {
      DSM_DATA_DIR: "/data",
      DSM_CONFIG: "/etc/dsm.yaml",
      DSM_LOG_LEVEL: "debug",
      DSM_TOKEN: "x",
      DSM_: "x",
      HOME: "/root",
      DSM_LEDGER_FILE: undefined,
    };
    expect(applyEnvOverrides(defaultConfig(), env)).toEqual(EXPECTED_DEFAULTS);
  });

  test("the input config is not mutated", () => {
    const base = defaultConfig();
    applyEnvOverrides(base, { DSM_LEDGER_BATCH_MAX_MS: "5" });
    expect(base).toEqual(EXPECTED_DEFAULTS);
  });
});

describe("resolveConfig", () => {
  const made: string[] = [];
  afterEach(() => {
    for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** A temp root with a home directory inside it. */
  function sandbox(): { root: string; home: string } {
    const root = mkdtempSync(join(tmpdir(), "dsm-config-test-"));
    made.push(root);
    const home = join(root, "home");
    mkdirSync(home);
    return { root, home };
  }

  function writeConfig(path: string, batchMaxMs: number, extra = ""): string {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, `ledger:\n  batch_max_ms: ${batchMaxMs}\n${extra}`);
    return path;
  }

  test("nothing given: built-in default and ~/.dsm", () => {
    const { home } = sandbox();
    const r = resolveConfig({ env: {}, home });
    expect(r.configPath).toBeNull();
    expect(r.dataDir).toBe(join(home, ".dsm"));
    expect(r.config).toEqual({ ...EXPECTED_DEFAULTS, node: { role: "edge", data_dir: join(home, ".dsm") } });
  });

  test("config file precedence: flag > DSM_CONFIG > data-dir file > default", () => {
    const { root, home } = sandbox();
    const flagFile = writeConfig(join(root, "flag.yaml"), 1);
    const envFile = writeConfig(join(root, "env.yaml"), 2);
    const dataDirFile = writeConfig(join(home, ".dsm", "dsm.yaml"), 3);

    const both = resolveConfig({ configPath: flagFile, env: { DSM_CONFIG: envFile }, home });
    expect([both.configPath, both.config.ledger.batch_max_ms]).toEqual([flagFile, 1]);

    const envOnly = resolveConfig({ env: { DSM_CONFIG: envFile }, home });
    expect([envOnly.configPath, envOnly.config.ledger.batch_max_ms]).toEqual([envFile, 2]);

    const inDataDir = resolveConfig({ env: {}, home });
    expect([inDataDir.configPath, inDataDir.config.ledger.batch_max_ms]).toEqual([dataDirFile, 3]);

    rmSync(dataDirFile);
    const none = resolveConfig({ env: {}, home });
    expect([none.configPath, none.config.ledger.batch_max_ms]).toEqual([null, 50]);
  });

  test("the data-dir file is looked up in the data dir chosen by flag or DSM_DATA_DIR", () => {
    const { root, home } = sandbox();
    const flagDir = join(root, "flagdir");
    const envDir = join(root, "envdir");
    writeConfig(join(flagDir, "dsm.yaml"), 11);
    writeConfig(join(envDir, "dsm.yaml"), 12);
    writeConfig(join(home, ".dsm", "dsm.yaml"), 13);

    const flag = resolveConfig({ dataDir: flagDir, env: { DSM_DATA_DIR: envDir }, home });
    expect([flag.dataDir, flag.configPath, flag.config.ledger.batch_max_ms]).toEqual([flagDir, join(flagDir, "dsm.yaml"), 11]);

    const env = resolveConfig({ env: { DSM_DATA_DIR: envDir }, home });
    expect([env.dataDir, env.configPath, env.config.ledger.batch_max_ms]).toEqual([envDir, join(envDir, "dsm.yaml"), 12]);
  });

  test("data dir precedence: flag > DSM_DATA_DIR > node.data_dir of an explicit file > ~/.dsm", () => {
    const { root, home } = sandbox();
    const file = writeConfig(join(root, "etc", "dsm.yaml"), 5, "node:\n  data_dir: /var/lib/dsm\n");
    const plain = writeConfig(join(root, "etc", "plain.yaml"), 5);

    expect(resolveConfig({ configPath: file, dataDir: join(root, "f"), env: { DSM_DATA_DIR: join(root, "e") }, home }).dataDir).toBe(join(root, "f"));
    expect(resolveConfig({ configPath: file, env: { DSM_DATA_DIR: join(root, "e") }, home }).dataDir).toBe(join(root, "e"));
    const fromFile = resolveConfig({ configPath: file, env: {}, home });
    expect(fromFile.dataDir).toBe("/var/lib/dsm");
    expect(fromFile.config.node.data_dir).toBe("/var/lib/dsm");
    expect(resolveConfig({ configPath: plain, env: {}, home }).dataDir).toBe(join(home, ".dsm"));
  });

  test("a relative node.data_dir is relative to the config file; ~/ is the home", () => {
    const { root, home } = sandbox();
    const relative = writeConfig(join(root, "etc", "rel.yaml"), 5, "node:\n  data_dir: ../state\n");
    expect(resolveConfig({ configPath: relative, env: {}, home }).dataDir).toBe(join(root, "state"));
    const tilde = writeConfig(join(root, "etc", "tilde.yaml"), 5, "node:\n  data_dir: ~/dsm-data\n");
    expect(resolveConfig({ configPath: tilde, env: {}, home }).dataDir).toBe(join(home, "dsm-data"));
  });

  test("~/ and relative paths in flags and environment", () => {
    const { root, home } = sandbox();
    writeConfig(join(home, "my.yaml"), 9);
    const r = resolveConfig({ configPath: "~/my.yaml", dataDir: "~/d", env: {}, home });
    expect(r.configPath).toBe(join(home, "my.yaml"));
    expect(r.dataDir).toBe(join(home, "d"));
    const rel = resolveConfig({ configPath: "home/my.yaml", env: { DSM_DATA_DIR: "data" }, home, cwd: root });
    expect(rel.configPath).toBe(join(home, "my.yaml"));
    expect(rel.dataDir).toBe(join(root, "data"));
  });

  test("a dsm.yaml inside the data dir cannot move the data dir", () => {
    const { home } = sandbox();
    const dataDir = join(home, ".dsm");
    const file = writeConfig(join(dataDir, "dsm.yaml"), 5, "node:\n  data_dir: /elsewhere\n");
    expect(errorOf(() => resolveConfig({ env: {}, home }))).toStartWith(`config ${file}: node.data_dir: cannot move the data dir`);
    writeConfig(file, 5, "node:\n  data_dir: .\n");
    expect(resolveConfig({ env: {}, home }).dataDir).toBe(dataDir);
  });

  test("a named config file that does not exist is an error", () => {
    const { root, home } = sandbox();
    const missing = join(root, "nope.yaml");
    expect(errorOf(() => resolveConfig({ configPath: missing, env: {}, home }))).toBe(`config file not found: ${missing}`);
    expect(errorOf(() => resolveConfig({ env: { DSM_CONFIG: missing }, home }))).toBe(`config file not found: ${missing} (from DSM_CONFIG)`);
  });

  test("a config path that is a directory is a read error naming it", () => {
    const { root, home } = sandbox();
    expect(errorOf(() => resolveConfig({ configPath: root, env: {}, home }))).toStartWith(`config ${root}: cannot read: `);
  });

  test("empty DSM_CONFIG and DSM_DATA_DIR count as unset", () => {
    const { home } = sandbox();
    const r = resolveConfig({ env: { DSM_CONFIG: "", DSM_DATA_DIR: "" }, home });
    expect([r.configPath, r.dataDir]).toEqual([null, join(home, ".dsm")]);
  });

  test("file errors name the file; environment overrides apply on top of the file", () => {
    const { root, home } = sandbox();
    const bad = writeConfig(join(root, "bad.yaml"), 5, "ingest:\n  format: pcap\n");
    expect(errorOf(() => resolveConfig({ configPath: bad, env: {}, home }))).toStartWith(`config ${bad}: ingest.format: expected one of`);

    const good = writeConfig(join(root, "good.yaml"), 5, "privacy:\n  anonymize_ips: ${ANON:-false}\n");
    const r = resolveConfig({ configPath: good, env: { ANON: "true", DSM_LEDGER_BATCH_MAX_MS: "6" }, home });
    expect(r.config.privacy.anonymize_ips).toBe(true);
    expect(r.config.ledger.batch_max_ms).toBe(6);
  });

  test("ledger.file and mesh.genesis stay as written, except for ~/", () => {
    const { root, home } = sandbox();
    const relative = writeConfig(join(root, "a.yaml"), 5, "mesh:\n  genesis: mesh/genesis.json\n");
    const r = resolveConfig({ configPath: relative, env: {}, home });
    expect(r.config.ledger.file).toBe("ledger.sqlite");
    expect(r.config.mesh.genesis).toBe("mesh/genesis.json");

    const tilde = join(root, "b.yaml");
    writeFileSync(tilde, "ledger:\n  file: ~/l.sqlite\nmesh:\n  genesis: ~/g.json\n");
    const t = resolveConfig({ configPath: tilde, env: {}, home });
    expect(t.config.ledger.file).toBe(join(home, "l.sqlite"));
    expect(t.config.mesh.genesis).toBe(join(home, "g.json"));
  });

  test("~ with no known home is an error, not a relative path", () => {
    const { root } = sandbox();
    expect(errorOf(() => resolveConfig({ env: {}, home: "", cwd: root }))).toContain("cannot expand ~");
    expect(resolveConfig({ dataDir: join(root, "d"), env: {}, home: "" }).dataDir).toBe(join(root, "d"));
  });
});
