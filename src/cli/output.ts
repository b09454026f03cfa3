// How dsm ends when something goes wrong: one line on stderr (one JSON object with --json),
// a documented exit code, never a stack trace; and what a closed or failing stdout does.
//
// Bun buffers process.stdout in memory when a pipe is full and writes it out from the event
// loop, so a reader that went away (`dsm log | head -1`) or a full disk (`> /dev/full`) is
// reported later as an 'error' event on process.stdout, thrown from Bun's writer if nothing
// listens (the EPIPE stack trace), not by the write() that queued the bytes. Bun.stdout's
// FileSink (dsm export) rejects the promise its write() returned. installOutputGuards
// listens for the first and watches the second, so both end the same way:
//   - a closed pipe (EPIPE): quietly, exit 141, as a Unix tool killed by SIGPIPE exits;
//   - any other write error: "dsm log: write error: no space left on device", exit 1.
import { CliError, EXIT } from "./common.ts";

/** Exit status when stdout (or stderr) is a pipe whose reader has gone: 128 + SIGPIPE. */
export const EXIT_CLOSED_PIPE = 141;

export const REPORT_URL = "https://github.com/hookprobe/dsm/issues";

interface Where {
  /** "dsm log", or "dsm" before a command was found. */
  command: string;
  /** --json was given: errors are {"error","code"} on stderr. */
  json: boolean;
}

const where: Where = { command: "dsm", json: false };

export function setErrorContext(w: Partial<Where>): void {
  Object.assign(where, w);
}

type Errno = Error & { code?: unknown; syscall?: unknown; errno?: unknown };

/** The errno name (EPIPE, ENOSPC...) of an error from a system call, else undefined. */
function errnoCode(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const { code, syscall, errno } = e as Errno;
  if (typeof syscall !== "string" && typeof errno !== "number") return undefined;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** "ENOSPC: no space left on device, write" -> "no space left on device". */
function describeErrno(e: Errno, code: string): string {
  const m = /^E[A-Z0-9]+: (.+?)(?:, [a-z_]+(?: .*)?)?$/.exec(e.message.split("\n")[0]!);
  return m ? m[1]! : code;
}

let ending = false;

/** Writes the one error report and sets the exit code. Never throws. */
function report(message: string, code: number): void {
  const line = where.json ? JSON.stringify({ error: message, code }) : `${where.command}: ${message}`;
  try {
    process.stderr.write(line + "\n");
  } catch {
    // stderr is gone too: the exit code is all that is left
  }
  process.exitCode = code;
}

/** Ends the process now, for a failure of stdout itself (nothing queued can reach anyone). */
function endNow(code: number): never {
  ending = true;
  process.exitCode = code;
  process.exit(code);
}

/** A write to stdout failed: closed pipe -> quiet 141; anything else -> one line, exit 1. */
export function stdoutFailed(e: unknown): never {
  if (ending) endNow(typeof process.exitCode === "number" ? process.exitCode : EXIT.error);
  const code = errnoCode(e);
  if (code === "EPIPE") endNow(EXIT_CLOSED_PIPE);
  report(`write error: ${code ? describeErrno(e as Errno, code) : e instanceof Error ? e.message.split("\n")[0] : String(e)}`, EXIT.error);
  endNow(EXIT.error);
}

/**
 * The failure that ended a command, reported once: a CliError as its one line and exit code;
 * a broken pipe quietly (141); a failed write as "write error: ..."; any other Error as its
 * message's first line; what only a bug throws (TypeError...) as an internal error with
 * where to report it. Never a stack trace, unless DSM_DEBUG=1.
 */
export function reportFailure(e: unknown): void {
  const debug = () => {
    if (process.env.DSM_DEBUG && e instanceof Error && e.stack) {
      try {
        process.stderr.write(`${e.stack}\n`);
      } catch {}
    }
  };
  if (e instanceof CliError) {
    report(e.message.split("\n")[0]!, e.exitCode);
    return debug();
  }
  if (e instanceof Error && e.name === "CLIError") {
    // citty's own usage errors (a missing required argument): a usage error like ours.
    report(e.message.split("\n")[0]!.replace(/\x1b\[[0-9;]*m/g, ""), EXIT.error);
    return debug();
  }
  const code = errnoCode(e);
  if (code === "EPIPE") {
    process.exitCode = EXIT_CLOSED_PIPE;
    return;
  }
  const first = (e instanceof Error ? e.message || e.name : String(e)).split("\n")[0]!;
  if (code !== undefined) {
    const syscall = (e as Errno).syscall;
    report(syscall === "write" ? `write error: ${describeErrno(e as Errno, code)}` : first, EXIT.error);
  } else if (isBug(e)) {
    report(`internal error: ${first} (DSM_DEBUG=1 shows the stack; report at ${REPORT_URL})`, EXIT.error);
  } else {
    // An Error of dsm's own layers (no node in DIR, a bad config key, a genesis that does
    // not parse, SQLITE_FULL...): written for the operator, like a CliError.
    report(first, EXIT.error);
  }
  debug();
}

/**
 * What only a bug throws: the engine's own errors (TypeError: x is undefined...) and
 * things thrown that are not Errors. dsm's layers throw Error and its subclasses with
 * messages meant for the operator.
 */
function isBug(e: unknown): boolean {
  if (!(e instanceof Error)) return true;
  return [TypeError, ReferenceError, RangeError, SyntaxError, EvalError, URIError].some((c) => e instanceof c);
}

type Sink = ReturnType<typeof Bun.stdout.writer>;

/**
 * Bun.stdout.writer(), whose write() of a large chunk returns a promise that carries the
 * write's outcome while flush() resolves at once: here a failed write ends dsm as any stdout
 * failure does, and flush() waits until what was written has been written (so a loop that
 * awaits flush() holds one chunk, and says nothing more once stdout has failed).
 */
function guardSink(sink: Sink): Sink {
  const pending = new Set<Promise<unknown>>();
  const track = (r: unknown) => {
    if (r instanceof Promise) {
      const p: Promise<unknown> = r.then(undefined, stdoutFailed).finally(() => pending.delete(p));
      pending.add(p);
    }
    return r;
  };
  return new Proxy(sink, {
    get(target, prop) {
      if (prop === "write") return (chunk: Parameters<Sink["write"]>[0]) => track(target.write(chunk));
      if (prop === "flush") {
        return async () => {
          const r = await target.flush();
          while (pending.size > 0) await Promise.all([...pending]);
          return r;
        };
      }
      if (prop === "end") return (e?: Error) => track(target.end(e));
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

let installed = false;
const tolerated: ((e: unknown) => boolean)[] = [];

/**
 * Errors nobody caught that a command knows to be harmless from now on (dsm run while it
 * stops: a socket torn down reports its abort as an error): not reported, not fatal.
 */
export function tolerate(test: (e: unknown) => boolean): void {
  tolerated.push(test);
}

/**
 * Routes every failure of stdout and stderr, and every error nothing else caught, through
 * the reports above. Call once, before any command writes.
 */
export function installOutputGuards(): void {
  if (installed) return;
  installed = true;
  process.stdout.on("error", stdoutFailed);
  // If stderr itself is gone there is no one to tell: end with the code we have.
  process.stderr.on("error", (e) => endNow(errnoCode(e) === "EPIPE" ? EXIT_CLOSED_PIPE : typeof process.exitCode === "number" && process.exitCode !== 0 ? process.exitCode : EXIT.error));
  // A write may also fail at once (a stream already ended or destroyed): same handling.
  const write = process.stdout.write.bind(process.stdout) as (...a: unknown[]) => boolean;
  process.stdout.write = ((...a: unknown[]) => {
    try {
      return write(...a);
    } catch (e) {
      stdoutFailed(e);
    }
  }) as typeof process.stdout.write;
  const writer = Bun.stdout.writer.bind(Bun.stdout);
  (Bun.stdout as { writer: typeof writer }).writer = (opts?: Parameters<typeof writer>[0]) => guardSink(writer(opts));
  const failed = (e: unknown) => {
    if (ending || tolerated.some((t) => t(e))) return;
    reportFailure(e);
    endNow(typeof process.exitCode === "number" ? process.exitCode : EXIT.error);
  };
  process.on("uncaughtException", failed);
  process.on("unhandledRejection", failed);
}
