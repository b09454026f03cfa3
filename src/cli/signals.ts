// SIGINT and SIGTERM for the commands that work through an input (ingest, import, verify):
// the first asks the work to stop at its next safe point (what was acknowledged stays
// acknowledged), a second exits at once. A stopped run exits 130 or 143, never 0, so a
// script can tell a partial run from a complete one.
import type { StopSignal } from "../ingest/pipeline.ts";

const CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type StopName = keyof typeof CODES;

export interface Stop extends StopSignal {
  /** The signal that stopped the run, if one did. */
  signal: StopName | null;
  /** 128 + the signal's number once stopped; otherwise `code`. */
  exitCode(code: number): number;
  /** Removes the handlers (the default action returns). */
  release(): void;
  /**
   * Once stopped, ends the process with `code` as soon as stdout has taken everything
   * written (the acknowledgements): the input may still be open, a pipe whose writer goes
   * on, and an open stdin would keep the process alive. Not stopped: sets the exit code.
   */
  finish(code: number): Promise<void>;
}

export function onStopSignals(): Stop {
  const handlers: [StopName, () => void][] = [];
  const stop: Stop = {
    stopped: false,
    signal: null,
    exitCode: (code) => (stop.signal === null ? code : CODES[stop.signal]),
    release: () => {
      for (const [name, fn] of handlers) process.off(name, fn);
    },
    finish: async (code) => {
      process.exitCode = code;
      if (stop.signal === null) return;
      await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
      process.exit(code);
    },
  };
  for (const name of Object.keys(CODES) as StopName[]) {
    const fn = () => {
      // Nothing pending was acknowledged, so exiting now loses nothing acknowledged.
      if (stop.stopped) process.exit(CODES[name]);
      stop.stopped = true;
      stop.signal = name;
      stop.cancel?.();
    };
    handlers.push([name, fn]);
    process.on(name, fn);
  }
  return stop;
}
