// RFC 3339 UTC with exactly three fractional digits: the only time format DESIGN.md allows.
const RFC3339_MS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$/;

export function formatTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** Parses the strict form, returning epoch milliseconds, or undefined when it is not exactly that form. */
export function parseTime(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = RFC3339_MS.exec(value);
  if (!m) return undefined;
  const ms = Date.parse(value);
  // Date.parse rolls over impossible dates (Feb 30); the round trip rejects them.
  if (!Number.isFinite(ms) || new Date(ms).toISOString() !== value) return undefined;
  return ms;
}
