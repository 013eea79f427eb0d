import { afterAll, describe, expect, test } from "bun:test";
import pino from "pino";
import { MemoryRecordIdStore } from "../../../src/infra/idempotency/memory-record-ids.ts";
import { RedisRecordIdStore } from "../../../src/infra/idempotency/redis-record-ids.ts";
import type { RecordIdStore } from "../../../src/ports/record-ids.ts";
import { services } from "../../support/kafka.ts";
import { waitUntil } from "../../support/wait.ts";

const stores: RecordIdStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close();
});

function redisStore(redisUrl: string, pendingMs: number, commandTimeoutMs = 500, leaseMs = pendingMs) {
  let failures = 0;
  const store = new RedisRecordIdStore(
    { redisUrl, pendingMs, leaseMs, commandTimeoutMs, onFailOpen: () => failures++ },
    pino({ level: "silent" }),
  );
  stores.push(store);
  return { store, failures: () => failures };
}

/** Two instances of each kind: the memory store's two are one store (it is per process), Redis's are two clients. */
const KINDS: Array<[string, (pendingMs: number) => [RecordIdStore, RecordIdStore]]> = [
  [
    "memory",
    (pendingMs) => {
      const store = new MemoryRecordIdStore({ pendingMs, maxIds: 10_000 });
      return [store, store];
    },
  ],
  [
    "redis",
    (pendingMs) => [
      redisStore(services().redisUrl, pendingMs).store,
      redisStore(services().redisUrl, pendingMs).store,
    ],
  ],
];

const unique = (prefix: string) => `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2)}`;

describe.each(KINDS)("%s record id store", (_, make) => {
  test("new once, pending while its request writes, seen once confirmed; per tenant", async () => {
    const [a, b] = make(60_000);
    const tenant = unique("t");
    expect(await a.claim(tenant, ["x", "y"], "r1", 60_000)).toEqual(["new", "new"]);
    expect(await b.claim(tenant, ["x", "z"], "r2", 60_000)).toEqual(["pending", "new"]);
    expect(await b.claim(`${tenant}-other`, ["x"], "r3", 60_000)).toEqual(["new"]);
    await a.confirm(tenant, "r1", 60_000);
    expect(await b.claim(tenant, ["x", "y", "z"], "r4", 60_000)).toEqual(["seen", "seen", "pending"]);
  });

  test("a released request's ids can be claimed again, and then belong to the new request", async () => {
    const [a, b] = make(60_000);
    const tenant = unique("t");
    await a.claim(tenant, ["x"], "r1", 60_000);
    await a.release(tenant, "r1");
    expect(await b.claim(tenant, ["x"], "r2", 60_000)).toEqual(["new"]);
    await a.confirm(tenant, "r1", 60_000);
    expect(await a.claim(tenant, ["x"], "r3", 60_000)).toEqual(["pending"]);
    await b.confirm(tenant, "r2", 60_000);
    expect(await a.claim(tenant, ["x"], "r3", 60_000)).toEqual(["seen"]);
  });

  test("forgotten ids of a confirmed request are new again, the others stay seen; an id taken over meanwhile is left alone", async () => {
    const [a, b] = make(60_000);
    const tenant = unique("t");
    expect(await a.claim(tenant, ["x", "y", "z"], "r1", 60_000)).toEqual(["new", "new", "new"]);
    await a.forget(tenant, "r1", ["y", "z"]);
    // z is claimed by another request before r1 is confirmed: forgetting it again must not free r2's claim.
    expect(await b.claim(tenant, ["z"], "r2", 60_000)).toEqual(["new"]);
    await a.forget(tenant, "r1", ["z"]);
    await a.confirm(tenant, "r1", 60_000);
    expect(await b.claim(tenant, ["x", "y", "z"], "r3", 60_000)).toEqual(["seen", "new", "pending"]);
  });

  test("a request that never confirms loses its claims after the pending time; a window ends", async () => {
    const [a, b] = make(50);
    const tenant = unique("t");
    await a.claim(tenant, ["x"], "r1", 60_000);
    await Bun.sleep(80);
    // The window is counted from the claim: "seen" needs the next claim within it, which a loaded machine
    // could delay past the 150 ms it was.
    expect(await b.claim(tenant, ["x"], "r2", 500)).toEqual(["new"]);
    await b.confirm(tenant, "r2", 500);
    expect(await a.claim(tenant, ["x"], "r3", 500)).toEqual(["seen"]);
    await Bun.sleep(550);
    expect(await a.claim(tenant, ["x"], "r4", 500)).toEqual(["new"]);
  });
});

test("redis: racing requests with the same 2,500 ids on two clients: each id is new for exactly one", async () => {
  const tenant = unique("race");
  // What this asks is atomicity, not speed: six claims of 2,500 ids queue in Redis one after the other, and
  // on a loaded machine the last could pass the 500 ms command timeout and fail open ("new" for all).
  const clients = [
    redisStore(services().redisUrl, 60_000, 10_000),
    redisStore(services().redisUrl, 60_000, 10_000),
  ];
  const ids = Array.from({ length: 2500 }, (_, n) => `id-${n}`);
  const verdicts = await Promise.all(
    Array.from({ length: 6 }, (_, n) => clients[n % 2]?.store.claim(tenant, ids, `r${n}`, 60_000) ?? []),
  );
  expect(clients.map((client) => client.failures())).toEqual([0, 0]);
  for (let at = 0; at < ids.length; at++) {
    expect(verdicts.filter((one) => one[at] === "new").length).toBe(1);
  }
});

test("redis: a request's claim lives while its instance renews it, and lapses within the lease once it is gone", async () => {
  const tenant = unique("lease");
  const [writing, other] = [
    redisStore(services().redisUrl, 60_000, 500, 1000),
    redisStore(services().redisUrl, 60_000, 500, 1000),
  ];
  expect(await writing.store.claim(tenant, ["x"], "r1", 60_000)).toEqual(["new"]);
  // Renewed past two leases while the request writes.
  await Bun.sleep(2500);
  expect(await other.store.claim(tenant, ["x"], "r2", 60_000)).toEqual(["pending"]);
  // Its instance gone (no more renewals): the id is taken over within a lease, not after pendingMs.
  // Asked until taken: a renewal sent just before the close can reach Redis later than that, and
  // restart the lease past a fixed wait of 1.1 s.
  await writing.store.close();
  await waitUntil(
    async () => (await other.store.claim(tenant, ["x"], "r3", 60_000))[0] === "new",
    "the id taken over",
    3000,
  );
});

test("redis unreachable: every id is new (fail open), counted, never a rejection", async () => {
  const down = redisStore("redis://127.0.0.1:1", 1000, 100);
  expect(await down.store.claim("acme", ["a", "b"], "r1", 1000)).toEqual(["new", "new"]);
  await down.store.confirm("acme", "r1", 1000);
  await down.store.release("acme", "r1");
  expect(down.failures()).toBe(3);
});

test("redis known down (its connection attempt failed): a claim fails open at once, not after the command timeout", async () => {
  const down = redisStore("redis://127.0.0.1:1", 1000, 1000);
  // Nothing listens on port 1: the first attempt is refused within milliseconds, then ioredis waits to retry.
  await Bun.sleep(100);
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    expect(await down.store.claim("acme", ["a"], `r${i}`, 1000)).toEqual(["new"]);
    // Not the command timeout (1000 ms); the bound leaves room for a loaded machine's pauses (it was 100 ms).
    expect(performance.now() - started).toBeLessThan(500);
  }
  expect(down.failures()).toBe(3);
});

test("memory: bounded by count, oldest first, early evictions counted", async () => {
  let early = 0;
  const store = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 3, onEarlyEviction: () => early++ });
  await store.claim("acme", ["1", "2", "3", "4", "5"], "r1", 60_000);
  expect(store.size).toEqual({ ids: 3, requests: 1 });
  expect(early).toBe(2);
  expect(await store.claim("acme", ["1", "5"], "r2", 60_000)).toEqual(["new", "pending"]);
  await store.close();
  expect(store.size).toEqual({ ids: 0, requests: 0 });
});

test("memory: a tenant writing more ids than the store keeps pushes out its own, never another tenant's", async () => {
  let early = 0;
  const store = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 1000, onEarlyEviction: () => early++ });
  expect(await store.claim("quiet", ["order-1"], "q1", 60_000)).toEqual(["new"]);
  await store.confirm("quiet", "q1", 60_000);
  for (let request = 0; request < 30; request++) {
    const ids = Array.from({ length: 100 }, (_, n) => `${request}-${n}`);
    await store.claim("noisy", ids, `n${request}`, 60_000);
    await store.confirm("noisy", `n${request}`, 60_000);
  }
  expect(await store.claim("quiet", ["order-1"], "q2", 60_000)).toEqual(["seen"]);
  expect(await store.claim("noisy", ["0-0"], "n-again", 60_000)).toEqual(["new"]);
  expect(store.size.ids).toBeLessThanOrEqual(1000);
  expect(early).toBeGreaterThan(0);
});
