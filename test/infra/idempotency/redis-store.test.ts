import { afterAll, describe, expect, test } from "bun:test";
import pino from "pino";
import { RedisIdempotencyStore } from "../../../src/infra/idempotency/redis-store.ts";
import { services } from "../../support/kafka.ts";
import { waitUntil } from "../../support/wait.ts";

const stores: RedisIdempotencyStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close();
});

/**
 * A store on `redisUrl`. Its command timeout is for Redis's answers, which a loaded machine delays
 * (a turn of the loop runs a due timer before the reply that came): at 200 ms, one pause of the test
 * process failed an answered command open, and the failure counts the tests check went up.
 */
function store(redisUrl: string, commandTimeoutMs = 1000, leaseMs = 5000) {
  let failures = 0;
  const created = new RedisIdempotencyStore(
    { redisUrl, windowMs: 60_000, pendingMs: 5000, leaseMs, commandTimeoutMs, onFailOpen: () => failures++ },
    pino({ level: "silent" }),
  );
  stores.push(created);
  return { store: created, failures: () => failures };
}

/** The first commands may come before the connection is up (no offline queue): wait for one that Redis answered. */
async function connected(made: ReturnType<typeof store>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const before = made.failures();
    await made.store.claim(`probe-${Math.random()}`, "f");
    if (made.failures() === before) return;
    await Bun.sleep(20);
  }
  throw new Error("Redis never answered");
}

describe("RedisIdempotencyStore", () => {
  test("two instances share a key: one claims, the other sees it pending, then the answer", async () => {
    const first = store(services().redisUrl);
    const second = store(services().redisUrl);
    await connected(first);
    await connected(second);
    const failuresBefore = first.failures() + second.failures();
    const id = `test-${Date.now()}-${Math.random()}`;
    expect(await first.store.claim(id, "f1")).toEqual({ state: "claimed" });
    expect(await second.store.claim(id, "f1")).toEqual({ state: "pending", fingerprint: "f1" });
    const reply = { status: 202, headers: { "content-type": "application/json" }, body: "{}" };
    await first.store.complete(id, "f1", reply);
    expect(await second.store.claim(id, "f2")).toEqual({ state: "done", fingerprint: "f1", reply });
    const released = `${id}-released`;
    expect(await first.store.claim(released, "f1")).toEqual({ state: "claimed" });
    await first.store.release(released);
    expect(await second.store.claim(released, "f2")).toEqual({ state: "claimed" });
    expect(first.failures() + second.failures()).toBe(failuresBefore);
  });

  test("a claim lives while its instance renews it, lapses within the lease once it is gone, and is then taken over", async () => {
    const first = store(services().redisUrl, undefined, 1000);
    const second = store(services().redisUrl, undefined, 1000);
    await connected(first);
    await connected(second);
    const id = `lease-${Date.now()}-${Math.random()}`;
    expect(await first.store.claim(id, "f")).toEqual({ state: "claimed" });
    // Renewed past three leases while the request runs.
    await Bun.sleep(3000);
    expect(await second.store.claim(id, "f")).toEqual({ state: "pending", fingerprint: "f" });
    // Its instance gone (no more renewals): taken over within a lease, long before the pending bound (5 s).
    // Asked until taken: a renewal sent just before the close can reach Redis later than that, and
    // restart the lease past a fixed wait of 1.1 s.
    await first.store.close();
    await waitUntil(
      async () => (await second.store.claim(id, "f")).state === "claimed",
      "the claim taken over",
      3000,
    );
  });

  test("a claimant whose lease lapsed neither overwrites nor deletes the claim that took over", async () => {
    const stalled = store(services().redisUrl, undefined, 1000);
    const other = store(services().redisUrl, undefined, 1000);
    const third = store(services().redisUrl, undefined, 1000);
    await connected(stalled);
    await connected(other);
    await connected(third);
    const id = `stalled-${Date.now()}-${Math.random()}`;
    expect(await stalled.store.claim(id, "f")).toEqual({ state: "claimed" });
    // A stall past the lease, as a SIGSTOP: the key lapses and the retry elsewhere takes it.
    const redis = new (await import("ioredis")).Redis(services().redisUrl);
    await redis.del(`idem:${id}`);
    redis.disconnect();
    expect(await other.store.claim(id, "f")).toEqual({ state: "claimed" });
    const reply = (status: number) => ({ status, headers: {}, body: `{"from":${status}}` });
    await stalled.store.release(id);
    expect(await third.store.claim(id, "f")).toEqual({ state: "pending", fingerprint: "f" });
    await stalled.store.complete(id, "f", reply(202));
    expect(await third.store.claim(id, "f")).toEqual({ state: "pending", fingerprint: "f" });
    await other.store.complete(id, "f", reply(200));
    expect(await third.store.claim(id, "f")).toEqual({ state: "done", fingerprint: "f", reply: reply(200) });
  });

  test("Redis unreachable: every call fails open (the request runs), counted, never a rejection", async () => {
    const down = store("redis://127.0.0.1:1");
    expect(await down.store.claim("k", "f")).toEqual({ state: "claimed" });
    await down.store.complete("k", "f", { status: 202, headers: {}, body: "{}" });
    expect(down.failures()).toBe(2);
    // A claim that failed open stored nothing: its release has nothing to delete and sends nothing.
    await down.store.release("k");
    expect(down.failures()).toBe(2);
  });

  test("Redis known down (its connection attempt failed): a claim fails open at once, not after the command timeout", async () => {
    const down = store("redis://127.0.0.1:1", 1000);
    // Nothing listens on port 1: the first attempt is refused within milliseconds, then ioredis waits to retry.
    await Bun.sleep(100);
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      expect(await down.store.claim(`k${i}`, "f")).toEqual({ state: "claimed" });
      // Not the command timeout (1000 ms); the bound leaves room for a loaded machine's pauses (it was 100 ms).
      expect(performance.now() - started).toBeLessThan(500);
    }
    expect(down.failures()).toBe(3);
  });

  test("at the start, the first claim waits for the connection in progress rather than fail open", async () => {
    const fresh = store(services().redisUrl, 2000);
    const id = `start-${Date.now()}-${Math.random()}`;
    expect(await fresh.store.claim(id, "f")).toEqual({ state: "claimed" });
    expect(fresh.failures()).toBe(0);
    // The claim reached Redis: a second client sees it pending.
    const other = store(services().redisUrl, 2000);
    expect(await other.store.claim(id, "f")).toEqual({ state: "pending", fingerprint: "f" });
  });
});
