// Imported first by bin/dsm.ts, before citty reads the environment: help text piped to
// a file or another program must be plain text, so colour only on a terminal.
if (!process.stdout.isTTY && process.env.NO_COLOR === undefined) process.env.NO_COLOR = "1";
