import { afterAll, expect, test } from "bun:test";
import { type AddressInfo, createServer, connect as netConnect, type Socket } from "node:net";
import { Redis } from "ioredis";
import pino from "pino";
import { RateLimits } from "../../src/infra/ratelimit/limiter.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import { services } from "../support/kafka.ts";
import { waitUntil } from "../support/wait.ts";

const log = pino({ level: "silent" });
const options = {
  redisUrl: services().redisUrl,
  eventsPerSec: 100,
  requestsPerSec: 1000,
  connectsPerSec: 100,
  expectedInstances: 2,
  redisTimeoutMs: 500,
};
const firstMetrics = createMetrics("test", "0");
const secondMetrics = createMetrics("test", "0");
const first = new RateLimits(options, firstMetrics, log);
const second = new RateLimits(options, secondMetrics, log);
afterAll(async () => {
  await Promise.all([first.close(), second.close()]);
});

/** Resolves once the limiter reports Redis ready: until then it decides alone, per process. */
const redisReady = (metrics: ReturnType<typeof createMetrics>) =>
  waitUntil(
    async () =>
      (await metrics.registry.getSingleMetricAsString("gateway_rate_limiter_degraded")).endsWith(" 0"),
    "the limiter to report Redis ready",
  );

test("two limiters on one real Redis share one tenant budget, and the key lives in Redis", async () => {
  // Waited for rather than a fixed 300 ms: a limiter not yet connected admits from its per-process
  // share, and the key never reaches Redis.
  await Promise.all([redisReady(firstMetrics), redisReady(secondMetrics)]);
  const tenant = `it-${Date.now()}`;
  let admitted = 0;
  for (let i = 0; i < 15; i++) {
    const limiter = i % 2 === 0 ? first : second;
    try {
      await limiter.admit("tenant_events", tenant, 10);
      admitted += 10;
    } catch (error) {
      expect((error as { code: string }).code).toBe("rate_limited");
    }
  }
  expect(admitted).toBe(100);
  const redis = new Redis(services().redisUrl);
  expect(Number(await redis.get(`rl:ev:${tenant}`))).toBeGreaterThanOrEqual(100);
  redis.disconnect();
});

test("per-IP requests and WebSocket connects are shared budgets too, refused with Retry-After past them", async () => {
  const ip = `192.0.2.${Date.now() % 250}-${Math.random().toString(36).slice(2, 8)}`;
  const outcomes = await Promise.all(
    Array.from({ length: 150 }, (_, i) =>
      (i % 2 === 0 ? first : second).allow("ws_connect", ip).then(
        () => "admitted",
        (error: { code: string; headers: Record<string, string> }) => {
          expect(error.code).toBe("rate_limited");
          expect(Number(error.headers["retry-after"])).toBeGreaterThanOrEqual(1);
          return "refused";
        },
      ),
    ),
  );
  // The key is new, so its window opens with this burst: at most its budget of 100 in it.
  const admitted = outcomes.filter((outcome) => outcome === "admitted").length;
  expect(admitted).toBeGreaterThanOrEqual(95);
  expect(admitted).toBeLessThanOrEqual(100);
  expect(outcomes).toContain("refused");
});

test("a busy key is paid from leased slices: Redis is asked far less than once per request, and the leases are counted", async () => {
  const metrics = createMetrics("test", "0");
  const limits = new RateLimits({ ...options, requestsPerSec: 1_000_000 }, metrics, log);
  try {
    await redisReady(metrics);
    const ip = `198.51.100.${Date.now() % 250}-${Math.random().toString(36).slice(2, 8)}`;
    for (let i = 0; i < 3000; i++) await limits.allow("ip_requests", ip);
    const leases = (await metrics.rateLimitLeases.get()).values
      .filter((value) => value.labels.scope === "ip_requests")
      .reduce((sum, value) => sum + value.value, 0);
    expect(leases).toBeGreaterThan(0);
    expect(leases).toBeLessThan(300);
  } finally {
    await limits.close();
  }
});

test("a Redis that stops answering with its connection still open: the per-process limiter decides, never a refusal for it", async () => {
  // A relay to the real Redis that the test freezes: no byte passes either way, no connection closes (a hung
  // Redis, or a partition dropping packets), so every lease runs into the command timeout.
  const target = new URL(services().redisUrl);
  let frozen = false;
  const sockets: Socket[] = [];
  const relay = createServer((client) => {
    const upstream = netConnect(Number(target.port), target.hostname);
    sockets.push(client, upstream);
    client.on("data", (chunk) => void (frozen || upstream.write(chunk)));
    upstream.on("data", (chunk) => void (frozen || client.write(chunk)));
    client.on("error", () => {});
    upstream.on("error", () => {});
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const metrics = createMetrics("test", "0");
  const limits = new RateLimits(
    {
      ...options,
      redisUrl: `redis://127.0.0.1:${(relay.address() as AddressInfo).port}`,
      redisTimeoutMs: 200,
    },
    metrics,
    log,
  );
  const leases = async (outcome: string) =>
    (await metrics.rateLimitLeases.get()).values
      .filter((value) => value.labels.outcome === outcome)
      .reduce((sum, value) => sum + value.value, 0);
  try {
    await redisReady(metrics);
    const tenant = `hung-${Date.now()}`;
    await limits.admit("tenant_events", tenant, 10);
    expect(await leases("granted")).toBeGreaterThan(0);
    frozen = true;
    // Fresh keys hold no slice here: each needs a lease, which Redis never answers.
    const outcomes = await Promise.all([
      ...Array.from({ length: 5 }, (_, i) =>
        limits.admit("tenant_events", `${tenant}-${i}`, 10).then(
          () => "admitted",
          (error: { code: string }) => error.code,
        ),
      ),
      limits.allow("ip_requests", `198.51.100.${Date.now() % 250}`).then(
        () => "admitted",
        (error: { code: string }) => error.code,
      ),
    ]);
    expect(outcomes as string[]).toEqual(Array(6).fill("admitted"));
    expect(await leases("failed")).toBeGreaterThan(0);
    // Still limited meanwhile: past the per-process share (100 ÷ 2 instances) a batch is a 429.
    const past = await limits
      .admit("tenant_events", `${tenant}-0`, 45)
      .catch((error: { code: string }) => error);
    expect((past as { code: string }).code).toBe("rate_limited");
  } finally {
    frozen = false;
    await limits.close();
    for (const socket of sockets) socket.destroy();
    relay.close();
  }
});
