/**
 * Budgets shared across instances, spent locally: an instance leases a slice
 * of a key's budget for the current window from a shared counter (Redis) and
 * spends it with no round trip per request. Slices follow the key's recent
 * local spend (the last window's, or this one's projected over the window:
 * about LEASES_PER_WINDOW leases a window) and the shared store
 * never hands out more than a quarter of what is left, so slices shrink as a
 * window runs dry and what other instances hold unspent stays small. Unspent
 * slices expire with the window: no instance can spend more than it leased,
 * so the instances together never admit more than the budget.
 */

/** What the shared store granted: `granted` units (0: `need` did not fit), `left` after it, and the window's remaining time. */
export interface Lease {
  granted: number;
  left: number;
  windowMs: number;
}

export interface LeaseStore {
  /**
   * Takes between `need` and `want` units (0 when fewer than `need` are
   * left) from `key`'s counter for the current window of `windowMs`, of
   * `limit`. Rejects when the store cannot answer.
   */
  lease(key: string, limit: number, need: number, want: number, windowMs: number): Promise<Lease>;
}

/** The outcome of spending: how much of the budget is left as far as this instance knows, and when the window ends. */
export interface Spent {
  admitted: boolean;
  limit: number;
  remaining: number;
  resetMs: number;
}

export const WINDOW_MS = 1000;
/** spendLocally(): the cost does not fit the local slice; nothing was spent. */
export const NOT_LOCAL = -1;
/** Slices sized to a tenth of the key's spend in the last window: about ten leases a window per busy key. */
const LEASES_PER_WINDOW = 10;
/**
 * This window's spend is projected over the whole window from at least this
 * much of it: a key turning busy gets slices of its new rate within a few
 * leases, not a tenth more per lease (about 60 leases, and requests waiting on
 * them, in a fresh key's first second at 20k/s), and a short burst at the
 * window's start is not taken for a rate more than ten times it.
 */
const PROJECT_FROM = WINDOW_MS / 10;
/**
 * What spend() resolves while a key's lease failed within the last window: the caller's per-process
 * limiter decides at once. A Redis slower than its timeout answers no lease, and without the pause every
 * request of the key would wait the timeout for it again (each of a request's budgets in turn).
 */
const STORE_FAILED: Promise<undefined> = Promise.resolve(undefined);
/** A slice running below this share of its target is topped up in the background, before a request waits. */
const REFILL_BELOW = 0.5;
/** No background top-up in the window's last tenth: it would expire mostly unspent. */
const NO_REFILL_IN_LAST = WINDOW_MS / 10;

interface Bucket {
  /** Leased and not yet spent; valid until `windowEndsAt`. */
  slice: number;
  /** What the shared counter had left after this instance's last lease: no lease can get more. */
  sharedLeft: number;
  /** performance.now() at which the window (and the slice) ends; 0 until the first lease. */
  windowEndsAt: number;
  spentThisWindow: number;
  spentLastWindow: number;
  /** Units wanted by requests waiting for the lease in flight. */
  waiting: number;
  /** The one lease in flight for this key, if any. */
  leasing: Promise<Lease | undefined> | undefined;
  /** performance.now() before which the store is not asked for this key: its last lease failed. */
  askAgainAt: number;
}

function newBucket(): Bucket {
  return {
    slice: 0,
    sharedLeft: 0,
    windowEndsAt: 0,
    spentThisWindow: 0,
    spentLastWindow: 0,
    waiting: 0,
    leasing: undefined,
    askAgainAt: 0,
  };
}

/**
 * The buckets of keys seen in the last one to two windows, in two
 * generations swapped every window (or when the young one is full): a key
 * not seen for a whole window is dropped, and by then its slice has expired.
 */
class Buckets {
  private young = new Map<string, Bucket>();
  private old = new Map<string, Bucket>();
  private swappedAt = performance.now();

  constructor(private readonly maxKeys: number) {}

  get(key: string, now: number): Bucket {
    if (now - this.swappedAt >= WINDOW_MS || this.young.size >= this.maxKeys) {
      this.old = this.young;
      this.young = new Map();
      this.swappedAt = now;
    }
    let bucket = this.young.get(key);
    if (bucket) return bucket;
    bucket = this.old.get(key);
    if (bucket) this.old.delete(key);
    else bucket = newBucket();
    this.young.set(key, bucket);
    return bucket;
  }

  get size(): number {
    return this.young.size + this.old.size;
  }
}

/** One scope's keys (tenants, client IPs) leasing from one shared store. */
export class LeasedBudgets {
  private readonly buckets: Buckets;

  constructor(
    private readonly store: LeaseStore,
    /** The store's key is `prefix:key`. */
    private readonly prefix: string,
    maxKeys: number,
    /** Told of each lease's outcome; `error` when the store failed. */
    private readonly onLease: (granted: number, error?: unknown) => void,
  ) {
    this.buckets = new Buckets(maxKeys);
  }

  /** Keys held (for tests of the bound). */
  get keys(): number {
    return this.buckets.size;
  }

  /**
   * The per-request fast path, allocating nothing: spends `cost` of `key`'s
   * budget of `limit` from the local slice when it fits and returns what is
   * left as far as this instance knows (within the current window, whose
   * end is at most WINDOW_MS away), else NOT_LOCAL without spending.
   */
  spendLocally(key: string, cost: number, limit: number): number {
    const now = performance.now();
    const bucket = this.buckets.get(key, now);
    if (now >= bucket.windowEndsAt) this.rollOver(bucket, now);
    if (cost > bucket.slice) return NOT_LOCAL;
    this.take(bucket, cost);
    this.refillIfLow(key, bucket, limit, now);
    return this.remaining(bucket, limit);
  }

  /**
   * Spends `cost` of `key`'s budget of `limit` per window: from the local
   * slice when it fits (no I/O), else after one lease shared with the other
   * requests waiting on this key. Resolves undefined when the store failed,
   * and at once for a window after that (the caller falls back to its
   * per-process limiter).
   */
  spend(key: string, cost: number, limit: number): Spent | Promise<Spent | undefined> {
    const now = performance.now();
    const bucket = this.buckets.get(key, now);
    if (now >= bucket.windowEndsAt) this.rollOver(bucket, now);
    if (cost <= bucket.slice) {
      this.take(bucket, cost);
      this.refillIfLow(key, bucket, limit, now);
      return this.spent(true, bucket, limit, now);
    }
    if (bucket.windowEndsAt !== 0 && cost > bucket.slice + bucket.sharedLeft) {
      return this.spent(false, bucket, limit, now);
    }
    if (now < bucket.askAgainAt) return STORE_FAILED;
    return this.spendAfterLease(key, bucket, cost, limit);
  }

  private async spendAfterLease(
    key: string,
    bucket: Bucket,
    cost: number,
    limit: number,
  ): Promise<Spent | undefined> {
    for (;;) {
      if (bucket.leasing) {
        bucket.waiting += cost;
        const lease = await bucket.leasing;
        bucket.waiting -= cost;
        if (!lease) return undefined;
      } else {
        const need = cost - bucket.slice;
        const want = Math.max(
          need,
          this.target(bucket, performance.now()),
          bucket.waiting + cost - bucket.slice,
        );
        const lease = await this.lease(key, bucket, limit, need, want);
        if (!lease) return undefined;
        if (lease.granted === 0) return this.spent(false, bucket, limit, performance.now());
      }
      const now = performance.now();
      if (now >= bucket.windowEndsAt) this.rollOver(bucket, now);
      if (cost <= bucket.slice) {
        this.take(bucket, cost);
        return this.spent(true, bucket, limit, now);
      }
      if (bucket.windowEndsAt !== 0 && cost > bucket.slice + bucket.sharedLeft) {
        return this.spent(false, bucket, limit, now);
      }
    }
  }

  /** The one lease in flight for the bucket; its grant lands in the slice. */
  private lease(
    key: string,
    bucket: Bucket,
    limit: number,
    need: number,
    want: number,
  ): Promise<Lease | undefined> {
    const sentAt = performance.now();
    const leasing = this.store.lease(`${this.prefix}:${key}`, limit, need, want, WINDOW_MS).then(
      (lease) => {
        bucket.leasing = undefined;
        // The store's window started no earlier than the call was sent: ending ours from then ends it no later.
        const windowEndsAt = sentAt + lease.windowMs;
        // Within one window the computed end moves only by the spread of round trips; a later window's is a window later.
        if (bucket.windowEndsAt !== 0 && windowEndsAt > bucket.windowEndsAt + WINDOW_MS / 2) {
          // The store opened a new window: what was left of the old slice is gone there too.
          bucket.spentLastWindow = bucket.spentThisWindow;
          bucket.spentThisWindow = 0;
          bucket.slice = 0;
        }
        bucket.windowEndsAt = windowEndsAt;
        bucket.slice += lease.granted;
        bucket.sharedLeft = lease.left;
        this.onLease(lease.granted);
        return lease;
      },
      (error: unknown) => {
        bucket.leasing = undefined;
        bucket.askAgainAt = performance.now() + WINDOW_MS;
        this.onLease(0, error);
        return undefined;
      },
    );
    bucket.leasing = leasing;
    return leasing;
  }

  private refillIfLow(key: string, bucket: Bucket, limit: number, now: number): void {
    const target = this.target(bucket, now);
    if (
      bucket.leasing ||
      now < bucket.askAgainAt ||
      bucket.slice >= target * REFILL_BELOW ||
      bucket.sharedLeft === 0 ||
      bucket.windowEndsAt - now < NO_REFILL_IN_LAST
    ) {
      return;
    }
    void this.lease(key, bucket, limit, 1, target);
  }

  /** The slice to ask for: a share of the key's local spend in the last window or, projected, in this one. */
  private target(bucket: Bucket, now: number): number {
    // The window started when the store opened it (no later than its first lease here).
    const elapsed = bucket.windowEndsAt === 0 ? 0 : now - (bucket.windowEndsAt - WINDOW_MS);
    const projected = (bucket.spentThisWindow * WINDOW_MS) / Math.max(elapsed, PROJECT_FROM);
    return Math.ceil(Math.max(bucket.spentLastWindow, projected) / LEASES_PER_WINDOW);
  }

  private take(bucket: Bucket, cost: number): void {
    bucket.slice -= cost;
    bucket.spentThisWindow += cost;
  }

  /** The window has ended here: the slice is void, the next lease opens the next one. */
  private rollOver(bucket: Bucket, now: number): void {
    if (bucket.windowEndsAt === 0) return;
    // A window that ended more than a window ago says nothing about the recent rate.
    bucket.spentLastWindow = now - bucket.windowEndsAt < WINDOW_MS ? bucket.spentThisWindow : 0;
    bucket.spentThisWindow = 0;
    bucket.slice = 0;
    bucket.sharedLeft = 0;
    bucket.windowEndsAt = 0;
  }

  /** Others' unspent slices count as spent: an estimate that never promises too much. */
  private remaining(bucket: Bucket, limit: number): number {
    return Math.min(limit, bucket.slice + bucket.sharedLeft);
  }

  private spent(admitted: boolean, bucket: Bucket, limit: number, now: number): Spent {
    return {
      admitted,
      limit,
      remaining: admitted ? this.remaining(bucket, limit) : 0,
      resetMs: bucket.windowEndsAt === 0 ? WINDOW_MS : Math.max(0, bucket.windowEndsAt - now),
    };
  }
}
