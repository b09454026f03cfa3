// Bun runs signal handlers only when its event loop reaches the I/O phase. A loop of awaits
// on data that is always ready (a file, a fast pipe, a worker's answers) never gets there,
// so SIGTERM used to wait for the whole input. A macrotask hop every few milliseconds lets
// the handler run, at a cost too small to measure.
let last = 0;

export async function letSignalsIn(everyMs = 20): Promise<void> {
  const now = performance.now();
  if (now - last < everyMs) return;
  last = now;
  await new Promise<void>((resolve) => setImmediate(resolve));
}
