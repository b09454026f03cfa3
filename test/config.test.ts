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
  type ResolveOptions,
  SYSTEM_CONFIG_PATH,
} from "../src/config/config.ts";

const SHIPPED_PATH = join(import.meta.dir, "..", "config", "dsm.yaml");

const EXPECTED_DEFAULTS: DsmConfig = {
  node: { role: "edge", data_dir: "" },
  identity: { kind: "software", tcti: "", tpm_handle: 0x81000100 },
  keys: { signing_key_lifetime_s: 86400 },
  ledger: { file: "ledger.sqlite", batch_max_events: 1000, batch_max_ms: 50, busy_timeout_ms: 10000 },
  ingest: { format: "auto", max_line_bytes: 1048576 },
  privacy: { anonymize_ips: false, withhold_payloads: false },
  mesh: { genesis: "", max_clock_skew_s: 60 },
  consensus: { signature_timeout_s: 30, quorum_threshold: 0 },
  gossip: { host: "0.0.0.0", port: 7946, bootstrap_nodes: "", max_message_bytes: 1048576, batch_max_ms: 100 },
  metrics: { port: 0, listen: "127.0.0.1" },
  control: { port: 0, token_file: "control.token" },
  attestation: { interval_epochs: 12, timeout_s: 10 },
  logging: { format: "text", level: "info" },
  intel: {
    rules: [],
    local_networks: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"],
  },
  decisions: { listen: "" },
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

  test("the file dsm init writes says where gossip listens, and why one might change it", () => {
    const gossip = DEFAULT_CONFIG_TEXT.slice(DEFAULT_CONFIG_TEXT.indexOf("\ngossip:\n"));
    const section = gossip.slice(0, gossip.indexOf("\n\n", gossip.indexOf("port:")));
    expect(section).toMatch(/\n  host: 0\.0\.0\.0\n/);
    expect(section).toContain("127.0.0.1");
    expect(section).toMatch(/router/);
    expect(section).toMatch(/\n  port: 7946$/);
    expect(section).toContain("Docker");
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
    expect(config.identity).toEqual({ kind: "tpm", tcti: "device:/dev/tpmrm0", tpm_handle: 0x81000100 });
    expect(parse("identity:\n  tpm_handle: 0x81000002\n").identity.tpm_handle).toBe(0x81000002);
    expect(() => parse("identity:\n  tpm_handle: 0x80000000\n")).toThrow(/tpm_handle/);
  });
});

describe("validation errors", () => {
  test("malformed YAML carries its line and the parser's reason", () => {
    const message = parseError("ledger: [1, 2\n");
    expect(message).toStartWith("config /etc/dsm.yaml:1: invalid YAML: ");
    expect(message.length).toBeGreaterThan("config /etc/dsm.yaml:1: invalid YAML: ".length);
  });

  test("top level must be a mapping", () => {
    expect(parseError("- node\n- ledger\n")).toStartWith("config /etc/dsm.yaml: top level: expected a mapping of sections");
    expect(parseError("just text\n")).toContain('got "just text"');
  });

  test("a section must be a mapping", () => {
    expect(parseError("ledger: 5\n")).toBe("config /etc/dsm.yaml:1: ledger: expected a mapping of keys, got 5");
  });

  test("unknown section, with a suggestion", () => {
    const message = parseError("ledgr:\n  file: x\n");
    expect(message).toStartWith("config /etc/dsm.yaml:1: ledgr: unknown section (did you mean ledger?)");
  });

  test("unknown section without a near name lists the known ones", () => {
    const message = parseError("telemetry:\n  on: true\n");
    expect(message).toStartWith("config /etc/dsm.yaml:1: telemetry: unknown section; known sections: node, identity");
  });

  test("a key written at top level points to its section", () => {
    expect(parseError("role: edge\n")).toStartWith("config /etc/dsm.yaml:1: role: unknown section (did you mean node.role?)");
  });

  test("unknown key, with a suggestion", () => {
    const message = parseError("ledger:\n  batch_max_event: 5\n");
    expect(message).toStartWith("config /etc/dsm.yaml:2: ledger.batch_max_event: unknown key (did you mean ledger.batch_max_events?)");
  });

  test("a key in the wrong section points to the right one", () => {
    expect(parseError("ledger:\n  max_line_bytes: 4096\n")).toStartWith(
      "config /etc/dsm.yaml:2: ledger.max_line_bytes: unknown key (did you mean ingest.max_line_bytes?)",
    );
  });

  test("unknown key with no near name lists the section's keys", () => {
    expect(parseError("privacy:\n  encrypt: true\n")).toBe(
      "config /etc/dsm.yaml:2: privacy.encrypt: unknown key; known keys in privacy: anonymize_ips, withhold_payloads",
    );
  });

  test("integer of the wrong type", () => {
    expect(parseError("ledger:\n  batch_max_events: abc\n")).toBe(
      'config /etc/dsm.yaml:2: ledger.batch_max_events: expected an integer between 1 and 100000, got "abc"',
    );
    expect(parseError("ledger:\n  batch_max_ms: 1.5\n")).toBe(
      "config /etc/dsm.yaml:2: ledger.batch_max_ms: expected an integer between 1 and 60000, got 1.5",
    );
    expect(parseError("ledger:\n  batch_max_ms: true\n")).toContain("got true");
  });

  test("a quoted number in the file is still a string", () => {
    expect(parseError('ledger:\n  batch_max_ms: "50"\n')).toBe(
      'config /etc/dsm.yaml:2: ledger.batch_max_ms: expected an integer between 1 and 60000, got "50"',
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
    const expected = `config /etc/dsm.yaml:2: ${section}.${key}: expected an integer between ${min} and ${max}, got`;
    expect(parseError(at(min - 1))).toBe(`${expected} ${min - 1}`);
    expect(parseError(at(max + 1))).toBe(`${expected} ${max + 1}`);
  });

  test("booleans must be YAML booleans in the file", () => {
    expect(parseError("privacy:\n  anonymize_ips: yes\n")).toBe(
      'config /etc/dsm.yaml:2: privacy.anonymize_ips: expected true or false, got "yes"',
    );
  });

  test("enums", () => {
    expect(parseError("node:\n  role: leader\n")).toBe(
      'config /etc/dsm.yaml:2: node.role: expected one of edge, validator, both, got "leader"',
    );
    expect(parseError("identity:\n  kind: hsm\n")).toBe(
      'config /etc/dsm.yaml:2: identity.kind: expected one of software, tpm, got "hsm"',
    );
    expect(parseError("ingest:\n  format: Suricata\n")).toContain("ingest.format: expected one of auto, suricata, zeek, json");
  });

  test("strings must be strings", () => {
    expect(parseError("ledger:\n  file: 123\n")).toBe("config /etc/dsm.yaml:2: ledger.file: expected a string, got 123");
    expect(parseError("mesh:\n  genesis:\n")).toBe("config /etc/dsm.yaml:2: mesh.genesis: expected a string, got nothing (null)");
    expect(parseError("mesh:\n  genesis: [a]\n")).toBe("config /etc/dsm.yaml:2: mesh.genesis: expected a string, got a list");
  });

  test("values with newlines stay on one line in the message", () => {
    expect(parseError('node:\n  role: "edge\\nboth"\n')).toContain('got "edge\\nboth"');
  });
});

describe("lines in errors", () => {
  // A file shaped like the shipped one: comments, blank lines, sections of keys.
  const FILE = [
    "# my node", //             1
    "node:", //                 2
    "  role: validator", //     3
    "", //                      4
    "gossip:", //               5
    "  # LAN only", //          6
    "  host: 10.0.0.1", //      7
    "  port: 7946", //          8
    "metrics:", //              9
    "  port: 9100", //          10
    "",
  ];
  const withLine = (n: number, line: string): string => FILE.map((l, i) => (i === n - 1 ? line : l)).join("\n");
  const insert = (n: number, line: string): string => [...FILE.slice(0, n - 1), line, ...FILE.slice(n - 1)].join("\n");

  test("the file as written parses", () => {
    const config = parse(FILE.join("\n"));
    expect([config.node.role, config.gossip.host, config.gossip.port, config.metrics.port]).toEqual(["validator", "10.0.0.1", 7946, 9100]);
  });

  test("a YAML syntax error names its line: file:line: message", () => {
    expect(parseError(withLine(8, " port: 7946"))).toBe("config /etc/dsm.yaml:8: invalid YAML: unexpected token");
    expect(parseError(withLine(3, "  role: validator: edge"))).toStartWith("config /etc/dsm.yaml:3: invalid YAML: ");
    expect(parseError(withLine(7, "\thost: 10.0.0.1"))).toBe("config /etc/dsm.yaml:7: invalid YAML: tab characters cannot be used as indentation");
    expect(parseError(withLine(10, "  port: [9100"))).toStartWith("config /etc/dsm.yaml:10: invalid YAML: ");
    expect(parseError(withLine(10, "  port: *nowhere"))).toStartWith("config /etc/dsm.yaml:10: invalid YAML: ");
  });

  test("an unclosed quote is reported where it opens", () => {
    expect(parseError(withLine(7, '  host: "10.0.0.1'))).toStartWith("config /etc/dsm.yaml:7: invalid YAML: ");
    expect(parseError('ledger:\n  file: "l.sqlite\n')).toBe(
      "config /etc/dsm.yaml:2: invalid YAML: unexpected end of file (a quote or bracket opened here is not closed?)",
    );
  });

  test("a bracket closed on a later line is not an error; what follows is still located", () => {
    const text = "gossip:\n  host: [\n    a,\n    b]\nmetrics:\n port: 1\n  x: 2\n";
    expect(parseError(text)).toStartWith("config /etc/dsm.yaml:7: invalid YAML: ");
  });

  test("CRLF line ends and a byte order mark count lines the same", () => {
    const text = "\uFEFF" + withLine(8, " port: 7946").replaceAll("\n", "\r\n");
    expect(parseError(text)).toStartWith("config /etc/dsm.yaml:8: invalid YAML: ");
    expect(parseError("\uFEFF" + insert(11, "  port: 1").replaceAll("\n", "\r\n"))).toBe('config /etc/dsm.yaml:11: duplicate key "port" (first at line 10)');
  });

  test("schema errors name the line of their key or section", () => {
    expect(parseError(withLine(8, "  port: 99999"))).toBe("config /etc/dsm.yaml:8: gossip.port: expected an integer between 0 and 65535, got 99999");
    expect(parseError(withLine(8, "  prot: 7946"))).toStartWith("config /etc/dsm.yaml:8: gossip.prot: unknown key (did you mean gossip.port?)");
    expect(parseError(withLine(9, "metrix:"))).toStartWith("config /etc/dsm.yaml:9: metrix: unknown section (did you mean metrics?)");
    expect(parseError("# mine\n\nledger: 5\n")).toBe("config /etc/dsm.yaml:3: ledger: expected a mapping of keys, got 5");
  });

  test("quoted keys and flow mappings have their lines too", () => {
    expect(parseError('gossip:\n  "port": x\n')).toStartWith("config /etc/dsm.yaml:2: gossip.port: expected an integer");
    expect(parseError("gossip: {host: a,\n  port: x}\n")).toStartWith("config /etc/dsm.yaml:2: gossip.port: expected an integer");
  });
});

describe("duplicate keys", () => {
  const FILE = ["node:", "  role: edge", "gossip:", "  host: 0.0.0.0", "  port: 7946", "metrics:", "  port: 9100", ""];
  const insert = (n: number, line: string): string => [...FILE.slice(0, n - 1), line, ...FILE.slice(n - 1)].join("\n");

  test("the same key name in different sections is fine", () => {
    expect(parse(FILE.join("\n")).metrics.port).toBe(9100);
  });

  test("a key twice in one section is refused, naming both lines", () => {
    expect(parseError(insert(6, "  port: 7947"))).toBe('config /etc/dsm.yaml:6: duplicate key "port" (first at line 5)');
    expect(parseError(insert(6, '  "port": 7947'))).toBe('config /etc/dsm.yaml:6: duplicate key "port" (first at line 5)');
  });

  test("a section twice is refused, even when its keys differ", () => {
    expect(parseError(insert(8, "node:\n  data_dir: /srv"))).toBe('config /etc/dsm.yaml:8: duplicate key "node" (first at line 1)');
  });

  test("at any depth, in flow mappings, and inside sequences", () => {
    expect(parseError("a:\n  b:\n    c: 1\n    d: 2\n    c: 3\n")).toBe('config /etc/dsm.yaml:5: duplicate key "c" (first at line 3)');
    expect(parseError("gossip: {port: 1, host: a, port: 2}\n")).toBe('config /etc/dsm.yaml:1: duplicate key "port" (first at line 1)');
    expect(parseError("gossip: {port: 1,\n  port: 2}\n")).toBe('config /etc/dsm.yaml:2: duplicate key "port" (first at line 1)');
    expect(parseError("x:\n  - a: 1\n    b: 2\n    a: 3\n")).toBe('config /etc/dsm.yaml:4: duplicate key "a" (first at line 2)');
  });

  test("what only looks like a repeated key is not one", () => {
    // Separate sequence entries, separate documents' worth of text in a block scalar, a string.
    const texts = [
      "x:\n  - a: 1\n  - a: 2\n",
      "x:\n- a: 1\n- a: 2\ny: 1\n",
      "x: |\n  port: 1\n  port: 2\ny: 1\n",
      "x: >-\n  port: 1\n\n  port: 2\n",
      'x: "port: 1\n  port: 2"\ny: 2\n',
      "x: [{a: 1}, {a: 2}]\n",
      "x: a long\n  plain text: not a key\ny: 1\n",
      "x: &anchor\n  a: 1\ny:\n  <<: *anchor\n  b: 2\n",
      "# port: 1\nport: 2 # port: 3\n",
    ];
    for (const text of texts) {
      const message = errorOf(() => parse(text));
      expect(message).not.toContain("duplicate");
    }
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
      "config /etc/dsm.yaml:2: ledger.file: environment variable DSM_X is not set (use ${DSM_X:-default})",
    );
  });

  test("unterminated ${", () => {
    for (const text of ["${A", "a${", "${A:-x", "${A:-${B}"]) {
      expect(parseError(`ledger:\n  file: '${text}'\n`)).toStartWith('config /etc/dsm.yaml:2: ledger.file: unterminated "${"');
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
      'config /etc/dsm.yaml:2: ledger.file: "$HOME" is not expanded: write ${HOME}, or $$ for a literal $',
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
      'config /etc/dsm.yaml:2: ledger.batch_max_ms: expected an integer between 1 and 60000, got "fast" (expanded from "${BATCH:-fast}")',
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

  test("an integer may be hex in the environment, as YAML reads it in the file; anything else is refused", () => {
    expect(applyEnvOverrides(defaultConfig(), { DSM_IDENTITY_TPM_HANDLE: "0x81000101" }).identity.tpm_handle).toBe(0x81000101);
    expect(applyEnvOverrides(defaultConfig(), { DSM_IDENTITY_TPM_HANDLE: "2164261121" }).identity.tpm_handle).toBe(0x81000101);
    expect(() => applyEnvOverrides(defaultConfig(), { DSM_IDENTITY_TPM_HANDLE: "0x8100zz01" })).toThrow(/tpm_handle/);
    expect(() => applyEnvOverrides(defaultConfig(), { DSM_LEDGER_BATCH_MAX_MS: "1e3" })).toThrow(/batch_max_ms/);
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

describe("logging", () => {
  test("defaults: text at info", () => {
    expect(defaultConfig().logging).toEqual({ format: "text", level: "info" });
  });

  test("format text|json and level debug|info|warn|error from the file", () => {
    expect(parse("logging:\n  format: json\n  level: debug\n").logging).toEqual({ format: "json", level: "debug" });
    for (const level of ["debug", "info", "warn", "error"] as const) expect(parse(`logging:\n  level: ${level}\n`).logging.level).toBe(level);
    expect(parseError("logging:\n  format: xml\n")).toBe('config /etc/dsm.yaml:2: logging.format: expected one of text, json, got "xml"');
    expect(parseError("logging:\n  level: trace\n")).toBe('config /etc/dsm.yaml:2: logging.level: expected one of debug, info, warn, error, got "trace"');
  });

  test("DSM_LOGGING_FORMAT and DSM_LOGGING_LEVEL override the file", () => {
    const config = applyEnvOverrides(parse("logging:\n  format: text\n"), { DSM_LOGGING_FORMAT: "json", DSM_LOGGING_LEVEL: "warn" });
    expect(config.logging).toEqual({ format: "json", level: "warn" });
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_LOGGING_FORMAT: "JSON" }))).toBe(
      'environment variable DSM_LOGGING_FORMAT: logging.format: expected one of text, json, got "JSON"',
    );
  });
});

describe("resolveConfig", () => {
  const made: string[] = [];
  /** resolveConfig, never reading the machine's own /etc/dsm/dsm.yaml unless a test says which file. */
  const NO_SYSTEM_CONFIG = join(tmpdir(), "dsm-config-test-no-such-dir", "dsm.yaml");
  const resolveIn = (opts: ResolveOptions) => resolveConfig({ systemConfig: NO_SYSTEM_CONFIG, ...opts });
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
    const r = resolveIn({ env: {}, home });
    expect(r.configPath).toBeNull();
    expect(r.dataDir).toBe(join(home, ".dsm"));
    expect(r.config).toEqual({ ...EXPECTED_DEFAULTS, node: { role: "edge", data_dir: join(home, ".dsm") } });
  });

  test("config file precedence: flag > DSM_CONFIG > data-dir file > default", () => {
    const { root, home } = sandbox();
    const flagFile = writeConfig(join(root, "flag.yaml"), 1);
    const envFile = writeConfig(join(root, "env.yaml"), 2);
    const dataDirFile = writeConfig(join(home, ".dsm", "dsm.yaml"), 3);

    const both = resolveIn({ configPath: flagFile, env: { DSM_CONFIG: envFile }, home });
    expect([both.configPath, both.config.ledger.batch_max_ms]).toEqual([flagFile, 1]);

    const envOnly = resolveIn({ env: { DSM_CONFIG: envFile }, home });
    expect([envOnly.configPath, envOnly.config.ledger.batch_max_ms]).toEqual([envFile, 2]);

    const inDataDir = resolveIn({ env: {}, home });
    expect([inDataDir.configPath, inDataDir.config.ledger.batch_max_ms]).toEqual([dataDirFile, 3]);

    rmSync(dataDirFile);
    const none = resolveIn({ env: {}, home });
    expect([none.configPath, none.config.ledger.batch_max_ms]).toEqual([null, 50]);
  });

  test("the data-dir file is looked up in the data dir chosen by flag or DSM_DATA_DIR", () => {
    const { root, home } = sandbox();
    const flagDir = join(root, "flagdir");
    const envDir = join(root, "envdir");
    writeConfig(join(flagDir, "dsm.yaml"), 11);
    writeConfig(join(envDir, "dsm.yaml"), 12);
    writeConfig(join(home, ".dsm", "dsm.yaml"), 13);

    const flag = resolveIn({ dataDir: flagDir, env: { DSM_DATA_DIR: envDir }, home });
    expect([flag.dataDir, flag.configPath, flag.config.ledger.batch_max_ms]).toEqual([flagDir, join(flagDir, "dsm.yaml"), 11]);

    const env = resolveIn({ env: { DSM_DATA_DIR: envDir }, home });
    expect([env.dataDir, env.configPath, env.config.ledger.batch_max_ms]).toEqual([envDir, join(envDir, "dsm.yaml"), 12]);
  });

  test("data dir precedence: flag > DSM_DATA_DIR > node.data_dir of an explicit file > ~/.dsm", () => {
    const { root, home } = sandbox();
    const file = writeConfig(join(root, "etc", "dsm.yaml"), 5, "node:\n  data_dir: /var/lib/dsm\n");
    const plain = writeConfig(join(root, "etc", "plain.yaml"), 5);

    expect(resolveIn({ configPath: file, dataDir: join(root, "f"), env: { DSM_DATA_DIR: join(root, "e") }, home }).dataDir).toBe(join(root, "f"));
    expect(resolveIn({ configPath: file, env: { DSM_DATA_DIR: join(root, "e") }, home }).dataDir).toBe(join(root, "e"));
    const fromFile = resolveIn({ configPath: file, env: {}, home });
    expect(fromFile.dataDir).toBe("/var/lib/dsm");
    expect(fromFile.config.node.data_dir).toBe("/var/lib/dsm");
    expect(resolveIn({ configPath: plain, env: {}, home }).dataDir).toBe(join(home, ".dsm"));
  });

  test("a relative node.data_dir is relative to the config file; ~/ is the home", () => {
    const { root, home } = sandbox();
    const relative = writeConfig(join(root, "etc", "rel.yaml"), 5, "node:\n  data_dir: ../state\n");
    expect(resolveIn({ configPath: relative, env: {}, home }).dataDir).toBe(join(root, "state"));
    const tilde = writeConfig(join(root, "etc", "tilde.yaml"), 5, "node:\n  data_dir: ~/dsm-data\n");
    expect(resolveIn({ configPath: tilde, env: {}, home }).dataDir).toBe(join(home, "dsm-data"));
  });

  test("~/ and relative paths in flags and environment", () => {
    const { root, home } = sandbox();
    writeConfig(join(home, "my.yaml"), 9);
    const r = resolveIn({ configPath: "~/my.yaml", dataDir: "~/d", env: {}, home });
    expect(r.configPath).toBe(join(home, "my.yaml"));
    expect(r.dataDir).toBe(join(home, "d"));
    const rel = resolveIn({ configPath: "home/my.yaml", env: { DSM_DATA_DIR: "data" }, home, cwd: root });
    expect(rel.configPath).toBe(join(home, "my.yaml"));
    expect(rel.dataDir).toBe(join(root, "data"));
  });

  test("a dsm.yaml inside the data dir cannot move the data dir", () => {
    const { home } = sandbox();
    const dataDir = join(home, ".dsm");
    const file = writeConfig(join(dataDir, "dsm.yaml"), 5, "node:\n  data_dir: /elsewhere\n");
    expect(errorOf(() => resolveIn({ env: {}, home }))).toStartWith(`config ${file}: node.data_dir: cannot move the data dir`);
    writeConfig(file, 5, "node:\n  data_dir: .\n");
    expect(resolveIn({ env: {}, home }).dataDir).toBe(dataDir);
  });

  test("a named config file that does not exist is an error", () => {
    const { root, home } = sandbox();
    const missing = join(root, "nope.yaml");
    expect(errorOf(() => resolveIn({ configPath: missing, env: {}, home }))).toBe(`config file not found: ${missing}`);
    expect(errorOf(() => resolveIn({ env: { DSM_CONFIG: missing }, home }))).toBe(`config file not found: ${missing} (from DSM_CONFIG)`);
  });

  test("a config path that is a directory is a read error naming it", () => {
    const { root, home } = sandbox();
    expect(errorOf(() => resolveIn({ configPath: root, env: {}, home }))).toStartWith(`config ${root}: cannot read: `);
  });

  test("empty DSM_CONFIG and DSM_DATA_DIR count as unset", () => {
    const { home } = sandbox();
    const r = resolveIn({ env: { DSM_CONFIG: "", DSM_DATA_DIR: "" }, home });
    expect([r.configPath, r.dataDir]).toEqual([null, join(home, ".dsm")]);
  });

  test("file errors name the file; environment overrides apply on top of the file", () => {
    const { root, home } = sandbox();
    const bad = writeConfig(join(root, "bad.yaml"), 5, "ingest:\n  format: pcap\n");
    expect(errorOf(() => resolveIn({ configPath: bad, env: {}, home }))).toStartWith(`config ${bad}:4: ingest.format: expected one of`);

    const good = writeConfig(join(root, "good.yaml"), 5, "privacy:\n  anonymize_ips: ${ANON:-false}\n");
    const r = resolveIn({ configPath: good, env: { ANON: "true", DSM_LEDGER_BATCH_MAX_MS: "6" }, home });
    expect(r.config.privacy.anonymize_ips).toBe(true);
    expect(r.config.ledger.batch_max_ms).toBe(6);
  });

  test("ledger.file and mesh.genesis stay as written, except for ~/", () => {
    const { root, home } = sandbox();
    const relative = writeConfig(join(root, "a.yaml"), 5, "mesh:\n  genesis: mesh/genesis.json\n");
    const r = resolveIn({ configPath: relative, env: {}, home });
    expect(r.config.ledger.file).toBe("ledger.sqlite");
    expect(r.config.mesh.genesis).toBe("mesh/genesis.json");

    const tilde = join(root, "b.yaml");
    writeFileSync(tilde, "ledger:\n  file: ~/l.sqlite\nmesh:\n  genesis: ~/g.json\n");
    const t = resolveIn({ configPath: tilde, env: {}, home });
    expect(t.config.ledger.file).toBe(join(home, "l.sqlite"));
    expect(t.config.mesh.genesis).toBe(join(home, "g.json"));
  });

  test("~ with no known home is an error, not a relative path", () => {
    const { root } = sandbox();
    expect(errorOf(() => resolveIn({ env: {}, home: "", cwd: root }))).toContain("cannot expand ~");
    expect(resolveIn({ dataDir: join(root, "d"), env: {}, home: "" }).dataDir).toBe(join(root, "d"));
  });

  test("the system file is the default path, /etc/dsm/dsm.yaml", () => {
    expect(SYSTEM_CONFIG_PATH).toBe("/etc/dsm/dsm.yaml");
  });

  test("config file precedence: data-dir file > system file > built-in default", () => {
    const { root, home } = sandbox();
    const system = writeConfig(join(root, "etc", "dsm", "dsm.yaml"), 21);
    const r = resolveIn({ env: {}, home, systemConfig: system });
    expect([r.configPath, r.config.ledger.batch_max_ms]).toEqual([system, 21]);

    const dataDirFile = writeConfig(join(home, ".dsm", "dsm.yaml"), 22);
    const d = resolveIn({ env: {}, home, systemConfig: system });
    expect([d.configPath, d.config.ledger.batch_max_ms]).toEqual([dataDirFile, 22]);

    const flag = writeConfig(join(root, "flag.yaml"), 23);
    expect(resolveIn({ configPath: flag, env: {}, home, systemConfig: system }).configPath).toBe(flag);
    expect(resolveIn({ env: { DSM_CONFIG: flag }, home, systemConfig: system }).configPath).toBe(flag);

    rmSync(dataDirFile);
    expect(resolveIn({ env: {}, home, systemConfig: null }).configPath).toBeNull();
  });

  test("the system file is used when the data dir named by flag or DSM_DATA_DIR has no dsm.yaml", () => {
    const { root, home } = sandbox();
    const system = writeConfig(join(root, "etc", "dsm.yaml"), 24, "node:\n  data_dir: /var/lib/dsm\n");
    const flag = resolveIn({ dataDir: join(root, "d"), env: {}, home, systemConfig: system });
    // The flag fixes the data dir; the file's node.data_dir yields, as in a named file.
    expect([flag.configPath, flag.dataDir, flag.config.ledger.batch_max_ms]).toEqual([system, join(root, "d"), 24]);
    const env = resolveIn({ env: { DSM_DATA_DIR: join(root, "e") }, home, systemConfig: system });
    expect([env.configPath, env.dataDir]).toEqual([system, join(root, "e")]);
    writeConfig(join(root, "e", "dsm.yaml"), 25);
    expect(resolveIn({ env: { DSM_DATA_DIR: join(root, "e") }, home, systemConfig: system }).config.ledger.batch_max_ms).toBe(25);
  });

  test("node.data_dir of the system file chooses the data dir when neither flag nor DSM_DATA_DIR does", () => {
    const { root, home } = sandbox();
    const system = writeConfig(join(root, "etc", "dsm.yaml"), 26, "node:\n  data_dir: /var/lib/dsm\n");
    const r = resolveIn({ env: {}, home, systemConfig: system });
    expect([r.dataDir, r.config.node.data_dir, r.configPath]).toEqual(["/var/lib/dsm", "/var/lib/dsm", system]);
    // Relative to the file's directory, ~/ the home; without the key, ~/.dsm.
    writeConfig(system, 26, "node:\n  data_dir: ../state\n");
    expect(resolveIn({ env: {}, home, systemConfig: system }).dataDir).toBe(join(root, "state"));
    writeConfig(system, 26);
    expect(resolveIn({ env: {}, home, systemConfig: system }).dataDir).toBe(join(home, ".dsm"));
  });

  test("a system file that exists but cannot be read, or is invalid, is an error naming it", () => {
    const { root, home } = sandbox();
    const dir = join(root, "etc-dir");
    mkdirSync(dir);
    expect(errorOf(() => resolveIn({ env: {}, home, systemConfig: dir }))).toStartWith(`config ${dir}: cannot read: `);
    const bad = writeConfig(join(root, "etc", "dsm.yaml"), 5, "gossip:\n  port: 1\n  port: 2\n");
    expect(errorOf(() => resolveIn({ env: {}, home, systemConfig: bad }))).toBe(`config ${bad}:5: duplicate key "port" (first at line 4)`);
  });
});

describe("intel and decisions (issue 15)", () => {
  const RULES = `intel:
  rules:
    - name: suricata-critical-c2
      match:
        event_type: suricata.alert
        severity: [1]
        categories: ["A Network Trojan was detected"]
      indicator: alert.source.ip
      category: c2
      severity: critical
      ttl: 4h
    - name: zeek-intel
      match: { event_type: zeek.intel }
      category: malware
      ttl: 1d
    - name: scanner
      match:
        event_type: suricata.alert
        signature_ids: [2010935, 2010937]
      category: scan
      confidence: 60
      ttl: 3600
      threshold: { count: 20, window: 1m }
`;

  test("intel.rules becomes typed rules, with the documented defaults filled in", () => {
    expect(parse(RULES).intel.rules).toEqual([
      {
        name: "suricata-critical-c2",
        match: { event_type: "suricata.alert", severity: [1], categories: ["A Network Trojan was detected"] },
        indicator: "alert.source.ip",
        category: "c2",
        severity: "critical",
        confidence: 80,
        ttl: 14400,
        threshold: null,
      },
      { name: "zeek-intel", match: { event_type: "zeek.intel" }, indicator: "seen.indicator", category: "malware", severity: "high", confidence: 80, ttl: 86400, threshold: null },
      {
        name: "scanner",
        match: { event_type: "suricata.alert", signature_ids: [2010935, 2010937] },
        indicator: "src_ip",
        category: "scan",
        severity: "high",
        confidence: 60,
        ttl: 3600,
        threshold: { count: 20, window: 60 },
      },
    ]);
    // The other keys keep their defaults.
    expect(parse(RULES).intel.local_networks).toEqual(EXPECTED_DEFAULTS.intel.local_networks);
    expect(parse("intel:\n  rules:\n").intel.rules).toEqual([]);
  });

  test("a bad rule names the line of the bad key inside it, and the allowed values", () => {
    const bad = (from: string, to: string) => parseError(RULES.replace(from, to));
    expect(bad("category: scan", "category: scanning")).toBe(
      'config /etc/dsm.yaml:20: intel.rules[3].category: expected one of c2, malware, scan, exploit, bruteforce, beaconing, other, got "scanning"',
    );
    // match.severity is the one under match:, not the rule's own severity.
    expect(bad("severity: [1]", "severity: [0]")).toBe(
      "config /etc/dsm.yaml:6: intel.rules[1].match.severity: item 1: expected one of Suricata alert severities (integers 1-255, 1 the most severe), got 0",
    );
    expect(bad("severity: critical", "severity: severe")).toBe('config /etc/dsm.yaml:10: intel.rules[1].severity: expected one of critical, high, medium, low, got "severe"');
    expect(bad("ttl: 1d", "ttl: 10s")).toBe('config /etc/dsm.yaml:15: intel.rules[2].ttl: expected a duration between 60s and 2592000s such as 90s, 30m, 4h, 7d, got "10s"');
    expect(bad("count: 20", "count: 0")).toBe("config /etc/dsm.yaml:23: intel.rules[3].threshold.count: expected an integer between 1 and 1000, got 0");
    expect(bad("      confidence: 60\n", "      confidence: 60\n      colour: red\n")).toBe(
      'config /etc/dsm.yaml:22: intel.rules[3].colour: unknown key "colour"; known keys: name, match, indicator, category, severity, confidence, ttl, threshold',
    );
    expect(bad("name: scanner", "name: zeek-intel")).toBe(
      'config /etc/dsm.yaml:16: intel.rules[3].name: rule name "zeek-intel" is also rule 2\'s: names must be unique',
    );
    expect(bad("indicator: alert.source.ip", "indicator: attacker")).toMatch(/:8: intel\.rules\[1\]\.indicator: expected one of src_ip, dest_ip, alert\.source\.ip, seen\.indicator, got "attacker"$/);
    // A field read from one kind of record, asked of another.
    expect(bad("match: { event_type: zeek.intel }", "match: { event_type: zeek.intel, notes: [X] }")).toMatch(
      /:13: intel\.rules\[2\]\.match\.notes: notes are read from Zeek notices: match\.event_type must be zeek\.notice$/,
    );
    expect(parseError("intel:\n  rules: {name: x}\n")).toBe("config /etc/dsm.yaml:2: intel.rules: expected a list of rules (- name: ...), got a mapping");
    expect(parseError("intel:\n  rules:\n    - just text\n")).toBe('config /etc/dsm.yaml:3: intel.rules[1]: expected a mapping (name, match, category, ttl, ...), got "just text"');
  });

  test("intel.local_networks: CIDR ranges, kept canonical; a bad one is named", () => {
    expect(parse("intel:\n  local_networks: [203.0.113.0/24, 2001:DB8::/32, 198.51.100.7]\n").intel.local_networks).toEqual(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]);
    expect(parse("intel:\n  local_networks: []\n").intel.local_networks).toEqual([]);
    expect(parseError("intel:\n  local_networks: [10.0.0.1/8]\n")).toBe(
      'config /etc/dsm.yaml:2: intel.local_networks: item 1: expected a CIDR range with its host bits zero (e.g. 192.168.0.0/16), got "10.0.0.1/8"',
    );
    expect(parseError("intel:\n  local_networks: 10.0.0.0/8\n")).toBe(
      'config /etc/dsm.yaml:2: intel.local_networks: expected a list of CIDR ranges (e.g. [10.0.0.0/8, fc00::/7]), got "10.0.0.0/8"',
    );
    // From ${VAR}: comma-separated text.
    expect(parse("intel:\n  local_networks: ${NETS}\n", { NETS: "10.0.0.0/8, fd00::/8" }).intel.local_networks).toEqual(["10.0.0.0/8", "fd00::/8"]);
  });

  test("the default local networks hold the victim and local addresses the issue names", () => {
    const nets = defaultConfig().intel.local_networks;
    for (const n of ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "fc00::/7", "224.0.0.0/4", "ff00::/8"]) {
      expect(nets).toContain(n);
    }
  });

  test("environment overrides: DSM_INTEL_LOCAL_NETWORKS comma-separated, DSM_INTEL_RULES as YAML flow text", () => {
    const c = applyEnvOverrides(defaultConfig(), {
      DSM_INTEL_LOCAL_NETWORKS: "10.0.0.0/8,192.0.2.0/24",
      DSM_INTEL_RULES: "[{name: c2, match: {event_type: suricata.alert, severity: [1]}, category: c2, ttl: 4h}]",
      DSM_DECISIONS_LISTEN: "127.0.0.1:8081",
    });
    expect(c.intel.local_networks).toEqual(["10.0.0.0/8", "192.0.2.0/24"]);
    expect(c.intel.rules.map((r) => [r.name, r.ttl, r.indicator])).toEqual([["c2", 14400, "src_ip"]]);
    expect(c.decisions.listen).toBe("127.0.0.1:8081");
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_INTEL_RULES: "[{name: c2, match: {event_type: suricata.alert}, category: c2}]" }))).toBe(
      "environment variable DSM_INTEL_RULES: intel.rules: rule 1: ttl: expected a duration between 60s and 2592000s such as 90s, 30m, 4h, 7d, got nothing",
    );
    expect(errorOf(() => applyEnvOverrides(defaultConfig(), { DSM_INTEL_LOCAL_NETWORKS: "10.0.0.0/33" }))).toBe(
      'environment variable DSM_INTEL_LOCAL_NETWORKS: intel.local_networks: item 1: expected a CIDR range with its host bits zero (e.g. 192.168.0.0/16), got "10.0.0.0/33"',
    );
  });

  test("decisions.listen: off by default, documented with 127.0.0.1:8081 (a local CrowdSec has 8080)", () => {
    expect(defaultConfig().decisions.listen).toBe("");
    expect(parse("decisions:\n  listen: 127.0.0.1:8081\n").decisions.listen).toBe("127.0.0.1:8081");
    const section = DEFAULT_CONFIG_TEXT.slice(DEFAULT_CONFIG_TEXT.indexOf("\ndecisions:\n"));
    expect(section).toContain("127.0.0.1:8081");
    expect(section).toContain("8080");
    expect(parseError("decisions:\n  listen: 8081\n")).toBe("config /etc/dsm.yaml:2: decisions.listen: expected a string, got 8081");
  });
});
