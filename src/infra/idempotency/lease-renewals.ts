/** Keys renewed by one script call at most. */
const SLICE = 1000;

export interface LeaseTiming {
  /** How long a key outlives its instance's last renewal. */
  leaseMs: number;
  /** The longest a key is renewed: past it, it is left to lapse. */
  pendingMs: number;
}

/**
 * Renews the keys (with the values they should still hold) in one call, and
 * resolves with the 1-based indexes of those no longer this instance's.
 */
export type RenewKeys = (keys: string[], values: string[]) => Promise<number[]>;

/**
 * The Redis keys this instance holds under a short lease while their requests
 * run, renewed together: one timer for all of them, every third of the lease
 * (two renewals may fail or come late before a key lapses), running only while
 * some key is held. A key leaves when its request ends (`drop`), when Redis
 * says it is no longer this instance's (lapsed while it stalled, maybe taken
 * over), or at the pending bound, after which it is left to lapse.
 */
export class LeaseRenewals {
  private readonly held = new Map<string, { value: string; renewUntil: number }>();
  private timer: ReturnType<typeof setInterval> | undefined;
  /**
   * A tick's renewal still runs (a slow Redis, thousands of keys): the next tick is skipped rather than
   * started beside it, which would pile calls of every key onto the Redis that is already slow.
   */
  private renewing = false;

  constructor(
    private readonly timing: LeaseTiming,
    private readonly renew: RenewKeys,
    private readonly onError: (error: unknown) => void,
  ) {}

  hold(key: string, value = ""): void {
    this.held.set(key, { value, renewUntil: Date.now() + this.timing.pendingMs });
    this.timer ??= setInterval(() => this.tick(), Math.max(100, Math.floor(this.timing.leaseMs / 3)));
    this.timer.unref?.();
  }

  /** The value a held key should still hold in Redis; undefined when it is not held. */
  valueOf(key: string): string | undefined {
    return this.held.get(key)?.value;
  }

  drop(key: string): void {
    this.held.delete(key);
    if (this.held.size > 0 || this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  clear(): void {
    this.held.clear();
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (this.renewing) return;
    this.renewing = true;
    void this.renewAll().finally(() => {
      this.renewing = false;
    });
  }

  private async renewAll(): Promise<void> {
    const now = Date.now();
    const keys: string[] = [];
    const values: string[] = [];
    for (const [key, held] of this.held) {
      if (held.renewUntil <= now) this.drop(key);
      else {
        keys.push(key);
        values.push(held.value);
      }
    }
    // In slices: one script call blocks Redis while it runs, and its arguments are spread.
    for (let start = 0; start < keys.length; start += SLICE) {
      const sliceKeys = keys.slice(start, start + SLICE);
      const sliceValues = values.slice(start, start + SLICE);
      try {
        const lost = await this.renew(sliceKeys, sliceValues);
        for (const index of lost) {
          const key = sliceKeys[index - 1] as string;
          // Held again meanwhile (a new claim of the same key) is that claim's: left alone.
          if (this.held.get(key)?.value === sliceValues[index - 1]) this.drop(key);
        }
      } catch (error) {
        this.onError(error);
        return;
      }
    }
  }
}
