// Durations as operators write them (90s, 30m, 4h, 7d, 1h30m) and as Go prints them
// (CrowdSec's bouncers read "3h59m12s"). Pure.

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const DURATION = /^(?:\d+[smhdw])+$/;

/** Seconds in "4h", "1h30m", "90s", "7d" (a bare number is seconds). Null when malformed or not positive. */
export function parseDuration(text: string): number | null {
  const t = text.trim();
  if (/^\d+$/.test(t)) return +t > 0 && +t <= Number.MAX_SAFE_INTEGER ? +t : null;
  if (!DURATION.test(t)) return null;
  let total = 0;
  for (const [, n, u] of t.matchAll(/(\d+)([smhdw])/g)) total += +n! * UNIT_S[u!]!;
  return total > 0 && Number.isSafeInteger(total) ? total : null;
}

/** Go's time.Duration text for whole seconds and more: "3h59m12s", "59m0s", "12s"; never negative. */
export function goDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** "4h", "1h30m", "45s": the shortest text parseDuration reads back to the same seconds. */
export function formatDuration(seconds: number): string {
  let rest = seconds;
  let out = "";
  for (const [u, n] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (rest >= n) {
      out += `${Math.floor(rest / n)}${u}`;
      rest %= n;
    }
  }
  return out || "0s";
}
