// The daemon's log lines, on stderr: a level on every line, as text for a person (with the
// syslog priority prefix journald reads when stderr is the journal) or as one JSON object
// a line for log shippers. Pure formatting; the writer is given.

export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = (typeof LEVELS)[number];
export type LogFormat = "text" | "json";

/** One log call: a level, a message a person reads, and optional fields for machines. */
export interface DaemonLog {
  (level: Level, message: string, fields?: Record<string, unknown>): void;
}

/** sd-daemon(3) priority prefixes: journald strips them and files the line at that level. */
const SYSLOG_PRIORITY: Record<Level, number> = { debug: 7, info: 6, warn: 4, error: 3 };

export interface LoggerOptions {
  format: LogFormat;
  /** Lines below this level are dropped. */
  level: Level;
  write: (line: string) => void;
  /** stderr is the journal (systemd sets JOURNAL_STREAM): text lines get a <N> prefix. */
  journal?: boolean;
  now?: () => Date;
  /** The text prefix, the program's name. */
  name?: string;
}

export function formatLine(level: Level, message: string, fields: Record<string, unknown> | undefined, opts: Omit<LoggerOptions, "write" | "level">): string {
  if (opts.format === "json") {
    const ts = (opts.now?.() ?? new Date()).toISOString();
    // The fixed keys come last so a field can never overwrite them.
    return JSON.stringify({ ...fields, ts, level, msg: message });
  }
  const tag = level === "info" || level === "debug" ? "" : `${level === "warn" ? "warning" : "error"}: `;
  const prefix = opts.journal ? `<${SYSLOG_PRIORITY[level]}>` : "";
  // One event, one line: a message from a library may carry newlines (and a stack).
  return `${prefix}${opts.name ?? "dsm run"}: ${tag}${message.replace(/\s*\n\s*/g, " ")}`;
}

export function createLogger(opts: LoggerOptions): DaemonLog {
  const min = LEVELS.indexOf(opts.level);
  return (level, message, fields) => {
    if (LEVELS.indexOf(level) < min) return;
    opts.write(formatLine(level, message, fields, opts) + "\n");
  };
}
