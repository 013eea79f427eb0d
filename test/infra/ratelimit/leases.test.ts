import { afterAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import {
  type Lease,
  LeasedBudgets,
  type LeaseStore,
  type Spent,
  WINDOW_MS,
} from "../../../src/infra/ratelimit/leases.ts";
import { RedisLeaseStore } from "../../../src/infra/ratelimit/redis-leases.ts";
import { services } from "../../support/kafka.ts";

const redis = new Redis(services().redisUrl, { enableAutoPipelining: true });
const store = new RedisLeaseStore(redis);
afterAll(() => redis.disconnect());

/** The Redis store, counting its calls and how many were in flight at once. */
class CountingStore implements LeaseStore {
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;

  async lease(key: string, limit: number, need: number, want: number, windowMs: number): Promise<Lease> {
    this.calls++;
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      return await store.lease(key, limit, need, want, windowMs);
    } finally {
      this.inFlight--;
    }
  }
}

const unique = (name: string) => `${name}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const noFailure = (_granted: number, error?: unknown) => {
  if (error !== undefined) throw error;
};

async function spend(budgets: LeasedBudgets, key: string, cost: number, limit: number): Promise<Spent> {
  const spent = await budgets.spend(key, cost, limit);
  if (!spent) throw new Error("the store failed");
  return spent;
}

/** Waits (on a deadline) until a new window can start: the key's counter in Redis has expired. */
async function untilExpired(key: string): Promise<void> {
  const deadline = Date.now() + 3 * WINDOW_MS;
  while ((await redis.exists(key)) === 1) {
    if (Date.now() > deadline) throw new Error(`${key} never expired`);
    await Bun.sleep(20);
  }
}

describe("leased budgets on a real Redis", () => {
  test("the lease script grants between need and want, at most a quarter of what is left past need, and never past the limit", async () => {
    const key = unique("rl:test");
    expect(await store.lease(key, 100, 10, 500, WINDOW_MS)).toMatchObject({ granted: 25, left: 75 });
    expect(await store.lease(key, 100, 1, 5, WINDOW_MS)).toMatchObject({ granted: 5, left: 70 });
    expect(await store.lease(key, 100, 60, 60, WINDOW_MS)).toMatchObject({ granted: 60, left: 10 });
    const refused = await store.lease(key, 100, 11, 11, WINDOW_MS);
    expect(refused).toMatchObject({ granted: 0, left: 10 });
    expect(refused.windowMs).toBeGreaterThan(0);
    expect(refused.windowMs).toBeLessThanOrEqual(WINDOW_MS);
    expect(Number(await redis.get(key))).toBe(90);
    expect(await redis.pttl(key)).toBeGreaterThan(0);
  });

  test("a busy key costs a few leases a window, not one per request, and the slice is spent locally", async () => {
    const counting = new CountingStore();
    const budgets = new LeasedBudgets(counting, "rl:test", 1000, noFailure);
    const key = unique("busy");
    let admitted = 0;
    // Two windows' worth of single-unit requests, well within the limit.
    const until = performance.now() + 2 * WINDOW_MS;
    let requests = 0;
    while (performance.now() < until) {
      for (let i = 0; i < 100; i++) {
        requests++;
        if ((await spend(budgets, key, 1, 1_000_000)).admitted) admitted++;
      }
      await Bun.sleep(1);
    }
    expect(admitted).toBe(requests);
    expect(requests).toBeGreaterThan(2000);
    expect(counting.calls).toBeLessThan(requests / 20);
  });

  test("a fresh key turning busy gets slices of its rate within its first window, not a tenth more per lease", async () => {
    const counting = new CountingStore();
    const budgets = new LeasedBudgets(counting, "rl:test", 1000, noFailure);
    const key = unique("fresh");
    // Most of one window at a steady rate (tens of thousands a second), from no history.
    const until = performance.now() + 0.8 * WINDOW_MS;
    let requests = 0;
    while (performance.now() < until) {
      for (let i = 0; i < 100; i++) {
        requests++;
        await spend(budgets, key, 1, 10_000_000);
      }
      await Bun.sleep(1);
    }
    expect(requests).toBeGreaterThan(5000);
    // Slices grown a tenth per lease took ~100 leases here (at ~70k/s); projected from the window's
    // spend, 26: they double over the window's first tenth, then about ten a window.
    expect(counting.calls).toBeLessThan(45);
  });

  test("requests that find no slice wait for one lease per key, not one each", async () => {
    const counting = new CountingStore();
    const budgets = new LeasedBudgets(counting, "rl:test", 1000, noFailure);
    const key = unique("burst");
    const results = await Promise.all(Array.from({ length: 200 }, () => spend(budgets, key, 1, 1000)));
    expect(results.every((result) => result.admitted)).toBe(true);
    expect(counting.maxInFlight).toBe(1);
    expect(counting.calls).toBeLessThan(40);
  });

  test("two instances together admit the budget of a window and no more, both leasing", async () => {
    const limit = 1000;
    const first = new CountingStore();
    const second = new CountingStore();
    const instances = [
      new LeasedBudgets(first, "rl:test", 1000, noFailure),
      new LeasedBudgets(second, "rl:test", 1000, noFailure),
    ];
    const key = unique("shared");
    // Each instance first sees a steady rate (so its slices grow), then both run the window dry.
    let admitted = 0;
    const outcomes = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        spend(instances[i % 2] as LeasedBudgets, key, 5, limit).then((result) => {
          if (result.admitted) admitted += 5;
          return result;
        }),
      ),
    );
    expect(admitted).toBeLessThanOrEqual(limit);
    expect(admitted).toBeGreaterThanOrEqual(limit * 0.9);
    expect(first.calls).toBeGreaterThan(0);
    expect(second.calls).toBeGreaterThan(0);
    const refused = outcomes.find((outcome) => !outcome.admitted) as Spent;
    expect(refused.remaining).toBe(0);
    expect(refused.resetMs).toBeGreaterThan(0);
    expect(refused.resetMs).toBeLessThanOrEqual(WINDOW_MS);
  });

  test("a batch that does not fit is refused whole and spends nothing; a smaller one still fits", async () => {
    const budgets = new LeasedBudgets(store, "rl:test", 1000, noFailure);
    const key = unique("batch");
    expect(await spend(budgets, key, 60, 100)).toMatchObject({ admitted: true, remaining: 40 });
    expect(await spend(budgets, key, 50, 100)).toMatchObject({ admitted: false, remaining: 0 });
    expect(await spend(budgets, key, 40, 100)).toMatchObject({ admitted: true, remaining: 0 });
    expect(await spend(budgets, key, 1, 100)).toMatchObject({ admitted: false });
  });

  test("a slice does not outlive its window: the next window leases anew and gets the whole budget", async () => {
    const counting = new CountingStore();
    const budgets = new LeasedBudgets(counting, "rl:test", 1000, noFailure);
    const key = unique("expiry");
    expect((await spend(budgets, key, 100, 100)).admitted).toBe(true);
    expect((await spend(budgets, key, 1, 100)).admitted).toBe(false);
    await untilExpired(`rl:test:${key}`);
    const calls = counting.calls;
    expect(await spend(budgets, key, 100, 100)).toMatchObject({ admitted: true, remaining: 0 });
    expect(counting.calls).toBe(calls + 1);
  });

  test("keys are bounded: past the bound the least recent are dropped", async () => {
    const budgets = new LeasedBudgets(store, "rl:test", 50, noFailure);
    const prefix = unique("many");
    for (let i = 0; i < 300; i++) await spend(budgets, `${prefix}-${i}`, 1, 10);
    expect(budgets.keys).toBeLessThanOrEqual(100);
  });

  test("a store that fails resolves undefined (the caller falls back) and reports it", async () => {
    const failures: unknown[] = [];
    const failing: LeaseStore = { lease: () => Promise.reject(new Error("Redis timed out")) };
    const budgets = new LeasedBudgets(failing, "rl:test", 1000, (_granted, error) => failures.push(error));
    expect(await budgets.spend(unique("down"), 1, 10)).toBeUndefined();
    expect(failures).toHaveLength(1);
  });

  test("a key whose lease failed is not leased again for a window: a slow Redis costs a wait per key per window, not per request", async () => {
    let calls = 0;
    // Redis slower than REDIS_TIMEOUT_MS: the command times out after the wait.
    const slow: LeaseStore = {
      lease: async () => {
        calls++;
        await Bun.sleep(50);
        throw new Error("Command timed out");
      },
    };
    const budgets = new LeasedBudgets(slow, "rl:test", 1000, () => {});
    const key = unique("slow");
    const first = performance.now();
    expect(await budgets.spend(key, 1, 10)).toBeUndefined();
    expect(performance.now() - first).toBeGreaterThanOrEqual(45);
    const started = performance.now();
    for (let i = 0; i < 20; i++) expect(await budgets.spend(key, 1, 10)).toBeUndefined();
    // A wait each would take 20 x 50 ms; the bound leaves room for a loaded machine's pauses (it was 45 ms).
    expect(performance.now() - started).toBeLessThan(500);
    expect(calls).toBe(1);
    // Another key is asked (its own wait); the window over, this one is asked again.
    expect(await budgets.spend(unique("other"), 1, 10)).toBeUndefined();
    expect(calls).toBe(2);
    await Bun.sleep(WINDOW_MS);
    expect(await budgets.spend(key, 1, 10)).toBeUndefined();
    expect(calls).toBe(3);
  });
});
