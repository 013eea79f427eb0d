import { afterAll, expect, test } from "bun:test";
import { Redis } from "ioredis";
import pino from "pino";
import { RateLimits } from "../../src/infra/ratelimit/limiter.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import { services } from "../support/kafka.ts";

const log = pino({ level: "silent" });
const options = {
  redisUrl: services().redisUrl,
  eventsPerSec: 100,
  requestsPerSec: 1000,
  connectsPerSec: 100,
  expectedInstances: 2,
  redisTimeoutMs: 500,
};
const first = new RateLimits(options, createMetrics("test", "0"), log);
const second = new RateLimits(options, createMetrics("test", "0"), log);
afterAll(async () => {
  await Promise.all([first.close(), second.close()]);
});

test("two limiters on one real Redis share one tenant budget, and the key lives in Redis", async () => {
  await Bun.sleep(300);
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
