import { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { GatewayError } from "../../domain/errors.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";

export type LimitScope = "tenant_events" | "ip_requests" | "ws_connect";

export interface RateLimitOptions {
  redisUrl: string | undefined;
  eventsPerSec: number;
  requestsPerSec: number;
  connectsPerSec: number;
  /** Per-process share of a global budget while Redis is unavailable: budget ÷ this. */
  expectedInstances: number;
  /** A Redis call slower than this falls back to the per-process limiter. */
  redisTimeoutMs: number;
}

interface Limiter {
  points: number;
  consume(key: string, cost: number): Promise<RateLimiterRes>;
}

export type RateLimitHeaders = Record<string, string>;

function headersOf(points: number, result: RateLimiterRes): RateLimitHeaders {
  return {
    "ratelimit-limit": String(points),
    "ratelimit-remaining": String(Math.max(0, result.remainingPoints)),
    "ratelimit-reset": String(Math.max(1, Math.ceil(result.msBeforeNext / 1000))),
  };
}

/**
 * Fixed one-second windows per tenant (events) and per client IP (requests,
 * WebSocket connects), shared through Redis across instances. When Redis is
 * down or slow an in-memory limiter with the per-process share takes over, so
 * Redis never causes a 5xx; keys already over budget are refused from memory
 * without a Redis round trip.
 */
export class RateLimits {
  private readonly redis: Redis | undefined;
  private readonly limiters: Record<LimitScope, Limiter>;
  /** Event limiters for tenants with their own budget, one per distinct budget (bounded by the quota table). */
  private readonly tenantLimiters = new Map<number, Limiter>();
  private degraded = false;

  constructor(
    private readonly options: RateLimitOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    if (options.redisUrl) {
      this.redis = new Redis(options.redisUrl, {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        commandTimeout: options.redisTimeoutMs,
        maxRetriesPerRequest: 0,
        retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
      });
      this.redis.on("ready", () => this.setDegraded(false));
      this.redis.on("error", (error) => this.setDegraded(true, error));
      this.redis.on("close", () => this.setDegraded(true));
      // Until the first "ready", the per-process limiter is in charge.
      this.degraded = true;
      metrics.rateLimiterDegraded.set(1);
    }
    this.limiters = {
      tenant_events: this.limiter("rl:ev", options.eventsPerSec),
      ip_requests: this.limiter("rl:ip", options.requestsPerSec),
      ws_connect: this.limiter("rl:wsc", options.connectsPerSec),
    };
  }

  /**
   * Spends `cost` from the key's budget (or from `budget` per second when
   * given, e.g. a tenant's own quota); throws a 429 with Retry-After and
   * RateLimit-* when it does not fit.
   */
  async admit(scope: LimitScope, key: string, cost = 1, budget?: number): Promise<RateLimitHeaders> {
    const limiter = budget === undefined ? this.limiters[scope] : this.budgetLimiter(budget);
    try {
      return headersOf(limiter.points, await limiter.consume(key, cost));
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) {
        // Neither Redis nor the insurance limiter answered: let the request through rather than fail it.
        this.log.warn({ err: rejection, scope }, "rate limiter error; request admitted");
        return {};
      }
      this.metrics.rateLimited.inc({ scope });
      const headers = headersOf(limiter.points, rejection);
      throw new GatewayError(
        "rate_limited",
        cost > limiter.points
          ? `a batch of ${cost} exceeds the budget of ${limiter.points} per second`
          : "rate limit exceeded",
        { ...headers, "retry-after": headers["ratelimit-reset"] as string },
      );
    }
  }

  private budgetLimiter(points: number): Limiter {
    let limiter = this.tenantLimiters.get(points);
    if (!limiter) {
      limiter = this.limiter("rl:ev", points);
      this.tenantLimiters.set(points, limiter);
    }
    return limiter;
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
  }

  private limiter(prefix: string, points: number): Limiter {
    const local = new RateLimiterMemory({
      keyPrefix: prefix,
      points: Math.max(1, Math.floor(points / (this.redis ? this.options.expectedInstances : 1))),
      duration: 1,
    });
    if (!this.redis) return { points, consume: (key, cost) => local.consume(key, cost) };
    const shared = new RateLimiterRedis({
      storeClient: this.redis,
      keyPrefix: prefix,
      points,
      duration: 1,
      rejectIfRedisNotReady: true,
      inMemoryBlockOnConsumed: points,
      inMemoryBlockDuration: 1,
      insuranceLimiter: local,
    });
    return { points, consume: (key, cost) => shared.consume(key, cost) };
  }

  private setDegraded(degraded: boolean, error?: unknown): void {
    if (this.degraded === degraded) return;
    this.degraded = degraded;
    this.metrics.rateLimiterDegraded.set(degraded ? 1 : 0);
    if (degraded) this.log.warn({ err: error }, "Redis unavailable: rate limits are per process");
    else this.log.info("Redis ready: rate limits are shared across instances");
  }
}
