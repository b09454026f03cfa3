// A sliding-window rate limit per key: at most `limit` events in any `windowMs`. What a
// peer can make this node do (TPM work, records to verify and store) is bounded with it.
export class RateWindow {
  readonly #times = new Map<string, number[]>();

  constructor(
    private readonly windowMs: number,
    /** Most keys tracked: a flood of new keys forgets the oldest, never grows without bound. */
    private readonly maxKeys = 4096,
  ) {}

  /** True, and counted, when `key` has had fewer than `limit` events in the window ending at `nowMs`. */
  take(key: string, limit: number, nowMs = Date.now()): boolean {
    const recent = (this.#times.get(key) ?? []).filter((t) => nowMs - t < this.windowMs);
    if (recent.length >= limit) {
      this.#times.set(key, recent);
      return false;
    }
    recent.push(nowMs);
    this.#times.delete(key); // re-inserted last: Map order is then least recently used first
    this.#times.set(key, recent);
    if (this.#times.size > this.maxKeys) this.#times.delete(this.#times.keys().next().value!);
    return true;
  }
}
