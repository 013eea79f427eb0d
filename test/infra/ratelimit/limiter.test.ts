import { expect, test } from "bun:test";
import pino from "pino";
import type { GatewayError } from "../../../src/domain/errors.ts";
import { RateLimits } from "../../../src/infra/ratelimit/limiter.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import { services } from "../../support/kafka.ts";
import { waitUntil } from "../../support/wait.ts";

/** The per-process limiter alone (no REDIS_URL), as a single instance runs it. */
function perProcess(budget: { eventsPerSec?: number; requestsPerSec?: number } = {}): RateLimits {
  return new RateLimits(
    {
      redisUrl: undefined,
      eventsPerSec: budget.eventsPerSec ?? 10,
      requestsPerSec: budget.requestsPerSec ?? 1000,
      connectsPerSec: 100,
      expectedInstances: 1,
      redisTimeoutMs: 250,
    },
    createMetrics("test", "0"),
    pino({ level: "silent" }),
  );
}

/** "admitted" or the 429's code, for one admit(). */
const outcome = (limits: RateLimits, key: string, cost: number): Promise<string> =>
  limits.admit("tenant_events", key, cost).then(
    () => "admitted",
    (error: GatewayError) => error.code,
  );

test("per process, a refused batch spends nothing: what was left still fits, to the last event", async () => {
  const limits = perProcess({ eventsPerSec: 10 });
  const tenant = `t${Date.now()}`;
  // The whole run lasts well under the one-second window.
  expect(await outcome(limits, tenant, 4)).toBe("admitted");
  expect(await outcome(limits, tenant, 4)).toBe("admitted");
  expect(await outcome(limits, tenant, 4)).toBe("rate_limited");
  expect(await outcome(limits, tenant, 1)).toBe("admitted");
  expect(await outcome(limits, tenant, 1)).toBe("admitted");
  expect(await outcome(limits, tenant, 1)).toBe("rate_limited");
  await limits.close();
});

test("per process, a batch larger than the whole budget is refused as batch_over_budget and leaves the budget whole", async () => {
  const limits = perProcess({ eventsPerSec: 10 });
  const tenant = `big${Date.now()}`;
  const refused = await limits.admit("tenant_events", tenant, 11).catch((error: GatewayError) => error);
  // Not rate_limited: waiting never makes it fit.
  expect((refused as GatewayError).code).toBe("batch_over_budget");
  expect((refused as GatewayError).status).toBe(429);
  expect((refused as GatewayError).headers["ratelimit-limit"]).toBe("10");
  expect((refused as GatewayError).headers["ratelimit-remaining"]).toBe("0");
  expect((refused as GatewayError).headers["retry-after"]).toBe("1");
  const admitted = await limits.admit("tenant_events", tenant, 10);
  expect(admitted["ratelimit-remaining"]).toBe("0");
  await limits.close();
});

test("per process, a wall clock stepped back within a window never makes Retry-After longer than the window", async () => {
  const limits = perProcess({ eventsPerSec: 1 });
  const tenant = `clock${Date.now()}`;
  expect(await outcome(limits, tenant, 1)).toBe("admitted");
  // An NTP step back by an hour, within the window.
  const wallClock = Date.now;
  Date.now = () => wallClock() - 3_600_000;
  try {
    const refused = await limits.admit("tenant_events", tenant, 1).catch((error: GatewayError) => error);
    expect((refused as GatewayError).code).toBe("rate_limited");
    expect((refused as GatewayError).headers["retry-after"]).toBe("1");
    expect((refused as GatewayError).headers["ratelimit-reset"]).toBe("1");
  } finally {
    Date.now = wallClock;
    await limits.close();
  }
});

test("per process, a client IP's refused requests do not count: the budget is its admitted requests", async () => {
  const limits = perProcess({ requestsPerSec: 3 });
  const ip = `192.0.2.${Date.now() % 250}`;
  const outcomes: string[] = [];
  for (let i = 0; i < 6; i++) {
    outcomes.push(
      await limits.allow("ip_requests", ip).then(
        () => "admitted",
        (error: GatewayError) => error.code,
      ),
    );
  }
  expect(outcomes).toEqual([
    "admitted",
    "admitted",
    "admitted",
    "rate_limited",
    "rate_limited",
    "rate_limited",
  ]);
  await limits.close();
});

test("per process, a tenant has one count whatever its budget: a budget changed within the window (a quota refresh) is no fresh budget", async () => {
  const limits = perProcess({ eventsPerSec: 10 });
  const tenant = `quota${Date.now()}`;
  const spend = (cost: number, budget: number) =>
    limits.admit("tenant_events", tenant, cost, budget).then(
      (answer) => `admitted, ${answer["ratelimit-remaining"]} left`,
      (error: GatewayError) => error.code,
    );
  expect(await spend(8, 10)).toBe("admitted, 2 left");
  // The table now says 12: 8 of them are spent already in this window.
  expect(await spend(8, 12)).toBe("rate_limited");
  expect(await spend(4, 12)).toBe("admitted, 0 left");
  expect(await spend(1, 12)).toBe("rate_limited");
  await limits.close();
});

test("per process, budgets of many sizes take no memory per budget: nothing is kept per budget for the process's life", async () => {
  const limits = perProcess({ eventsPerSec: 10 });
  const heapAfter = async (budgets: number, from: number) => {
    // A quota table refreshed over weeks with new numbers: each budget once, for one tenant.
    for (let budget = from; budget < from + budgets; budget++)
      await limits.admit("tenant_events", "tenant", 0, budget); // nothing spent: only the budget varies
    Bun.gc(true);
    return process.memoryUsage().heapUsed;
  };
  const before = await heapAfter(1000, 1);
  const after = await heapAfter(20_000, 1001);
  expect(after - before).toBeLessThan(2 * 1024 * 1024);
  await limits.close();
});

test("a Redis unreachable from the start is logged once, not per retry, and the per-process limiter decides", async () => {
  const lines: Array<{ msg: string; err?: unknown }> = [];
  const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const metrics = createMetrics("test", "0");
  const limits = new RateLimits(
    {
      // Nothing listens on port 1: each connection attempt is refused at once.
      redisUrl: "redis://127.0.0.1:1",
      eventsPerSec: 10,
      requestsPerSec: 1000,
      connectsPerSec: 100,
      expectedInstances: 1,
      redisTimeoutMs: 250,
    },
    metrics,
    log,
  );
  try {
    // Reconnects after 200, 400 and 600 ms: four refused attempts by 1.5 s.
    await Bun.sleep(1500);
    const unavailable = lines.filter((line) => line.msg === "Redis unavailable: rate limits are per process");
    expect(unavailable).toHaveLength(1);
    expect(unavailable[0]?.err).toBeDefined();
    expect(await metrics.registry.getSingleMetricAsString("gateway_rate_limiter_degraded")).toEndWith(" 1");
    expect(await outcome(limits, `down${Date.now()}`, 10)).toBe("admitted");
  } finally {
    await limits.close();
  }
});

test("Redis down: the per-process share is the budget answered, and a batch larger than it is batch_over_budget, not a 429 to retry", async () => {
  const limits = new RateLimits(
    {
      // Nothing listens on port 1: Redis is down from the start.
      redisUrl: "redis://127.0.0.1:1",
      eventsPerSec: 10,
      requestsPerSec: 1000,
      connectsPerSec: 100,
      expectedInstances: 2,
      redisTimeoutMs: 250,
    },
    createMetrics("test", "0"),
    pino({ level: "silent" }),
  );
  try {
    const tenant = `share${Date.now()}`;
    // 8 of a budget of 10 never fits this process's 5, whatever the window: split it, do not wait.
    const refused = await limits.admit("tenant_events", tenant, 8).catch((error: GatewayError) => error);
    expect((refused as GatewayError).code).toBe("batch_over_budget");
    expect((refused as GatewayError).headers["ratelimit-limit"]).toBe("5");
    const admitted = await limits.admit("tenant_events", tenant, 4);
    expect(admitted).toMatchObject({ "ratelimit-limit": "5", "ratelimit-remaining": "1" });
    expect(await outcome(limits, tenant, 2)).toBe("rate_limited");
  } finally {
    await limits.close();
  }
});

test("closing at the drain is not Redis going down: no 'Redis unavailable' warning as the gateway exits", async () => {
  const lines: Array<{ msg: string }> = [];
  const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const limits = new RateLimits(
    {
      redisUrl: services().redisUrl,
      eventsPerSec: 10,
      requestsPerSec: 1000,
      connectsPerSec: 100,
      expectedInstances: 1,
      redisTimeoutMs: 250,
    },
    createMetrics("test", "0"),
    log,
  );
  await waitUntil(() => lines.some((line) => line.msg.startsWith("Redis ready")), "Redis ready");
  await limits.close();
  // The connection's "close" event comes on a later turn of the loop.
  await Bun.sleep(200);
  expect(lines.map((line) => line.msg)).toEqual(["Redis ready: rate limits are shared across instances"]);
});
