import type { Redis } from "ioredis";
import { RateLimiterMemory } from "rate-limiter-flexible";
import { GatewayError } from "../../domain/errors.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import { LeasedBudgets, NOT_LOCAL, type Spent, WINDOW_MS } from "./leases.ts";

export { NOT_LOCAL };

import { OccasionalLine } from "../../log/occasional-line.ts";
import { connectRedis } from "../redis/client.ts";
import { RedisLeaseStore } from "./redis-leases.ts";

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

export type RateLimitHeaders = Record<string, string>;

const PREFIXES: Record<LimitScope, string> = {
  tenant_events: "rl:ev",
  ip_requests: "rl:ip",
  ws_connect: "rl:wsc",
};
/** Keys (tenants, client IPs) whose leases each scope keeps; past it the least recent go (and what they held). */
const MAX_KEYS_PER_SCOPE = 100_000;
/** What allow() answers when the local slice paid: one settled promise, so a caller can tell without awaiting it. */
export const ALLOWED: Promise<void> = Promise.resolve();
const NOTHING = (): void => undefined;
const LEASE_FAILURE_LOG_INTERVAL_MS = 10_000;

/** The last limit's text: budgets are few (the default and the quota table's), and most requests repeat one. */
let limitText = { limit: 0, text: "0" };

function headers(limit: number, remaining: number, resetMs: number): RateLimitHeaders {
  if (limitText.limit !== limit) limitText = { limit, text: String(limit) };
  return {
    "ratelimit-limit": limitText.text,
    "ratelimit-remaining": String(Math.max(0, remaining)),
    // Windows are one second: within one, the reset is "1" (no number to format).
    "ratelimit-reset": resetMs <= 1000 ? "1" : String(Math.ceil(resetMs / 1000)),
  };
}

/** A refund this close to the window's end is skipped: the window it would land in may already be the next one. */
const REFUND_MARGIN_MS = 2;

/**
 * Gives back what a refused consume() took: RateLimiterMemory counts the
 * points of a request it rejects, so a refused batch would spend budget that
 * the requests after it could have used (a leased budget refuses without
 * spending; the per-process limiter must agree). The memory store changes
 * synchronously within reward(). The refund is skipped when the window the
 * consume() counted in has ended (or is about to), since reward() would then
 * open the next window below zero; that window's counter is gone anyway.
 */
function refund(
  limiter: RateLimiterMemory,
  key: string,
  cost: number,
  consumedAt: number,
  windowLeftMs: number,
): void {
  if (Date.now() + REFUND_MARGIN_MS >= consumedAt + windowLeftMs) return;
  void limiter.reward(key, cost);
}

/**
 * Fixed one-second windows per tenant (events) and per client IP (requests,
 * WebSocket connects), shared through Redis across instances: each instance
 * leases slices of a key's budget and spends them locally (leases.ts), so a
 * request costs a Redis round trip only when its key's slice runs out. When
 * Redis is down or slow an in-memory limiter with the per-process share takes
 * over, so Redis never causes a 5xx.
 */
export class RateLimits {
  private readonly redis: Redis | undefined;
  private readonly points: Record<LimitScope, number>;
  private readonly leased: Record<LimitScope, LeasedBudgets> | undefined;
  /**
   * Per-process counters (without Redis, or while it is down), one limiter per
   * scope whatever the budget: each admit compares the key's count with its
   * own budget. A limiter per budget would live as long as the process, and a
   * quota table refreshed with new numbers would keep adding them.
   */
  private readonly local: Record<LimitScope, RateLimiterMemory>;
  private degraded = false;
  /** "Redis unavailable" was logged since Redis was last ready (or since the start): once per outage, not per retry. */
  private unavailableLogged = false;
  /** close() was called: the connection's end is not Redis going down. */
  private closed = false;
  private readonly leaseFailureLine = new OccasionalLine(LEASE_FAILURE_LOG_INTERVAL_MS);

  constructor(
    private readonly options: RateLimitOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.points = {
      tenant_events: options.eventsPerSec,
      ip_requests: options.requestsPerSec,
      ws_connect: options.connectsPerSec,
    };
    const counter = (scope: LimitScope) =>
      // Never refuses by itself (its points are no budget): admitLocally compares the count with the key's.
      new RateLimiterMemory({
        keyPrefix: PREFIXES[scope],
        points: Number.MAX_SAFE_INTEGER,
        duration: WINDOW_MS / 1000,
      });
    this.local = {
      tenant_events: counter("tenant_events"),
      ip_requests: counter("ip_requests"),
      ws_connect: counter("ws_connect"),
    };
    if (!options.redisUrl) return;
    const redis = connectRedis(options.redisUrl, options.redisTimeoutMs, true);
    this.redis = redis;
    redis.on("ready", () => this.setDegraded(false));
    redis.on("error", (error) => this.setDegraded(true, error));
    redis.on("close", () => this.setDegraded(true));
    // Until the first "ready", the per-process limiter is in charge.
    this.degraded = true;
    metrics.rateLimiterDegraded.set(1);
    const store = new RedisLeaseStore(redis);
    const budgets = (scope: LimitScope) =>
      new LeasedBudgets(store, PREFIXES[scope], MAX_KEYS_PER_SCOPE, (granted, error) =>
        this.leaseAnswered(scope, granted, error),
      );
    this.leased = {
      tenant_events: budgets("tenant_events"),
      ip_requests: budgets("ip_requests"),
      ws_connect: budgets("ws_connect"),
    };
  }

  /**
   * Spends `cost` from the key's budget (or from `budget` per second when
   * given, e.g. a tenant's own quota); resolves with RateLimit-* or rejects
   * with a 429 carrying Retry-After and RateLimit-* when it does not fit.
   */
  admit(scope: LimitScope, key: string, cost = 1, budget?: number): Promise<RateLimitHeaders> {
    const limit = budget ?? this.points[scope];
    if (!this.leased || this.degraded) return this.admitLocally(scope, key, cost, limit);
    const spent = this.leased[scope].spend(key, cost, limit);
    if (!(spent instanceof Promise)) return this.answer(scope, cost, spent);
    return spent.then((result) =>
      result ? this.answer(scope, cost, result) : this.admitLocally(scope, key, cost, limit),
    );
  }

  /**
   * The per-request fast path of admit(), allocating nothing: spends `cost`
   * from this instance's leased slice when it fits and returns what is left
   * as far as this instance knows (the window ends within WINDOW_MS), or
   * NOT_LOCAL without spending (admit() then decides, maybe after a lease).
   */
  spendLocally(scope: LimitScope, key: string, cost: number, budget?: number): number {
    if (!this.leased || this.degraded) return NOT_LOCAL;
    return this.leased[scope].spendLocally(key, cost, budget ?? this.points[scope]);
  }

  /** The budget per window that admit() applies: `budget` when given, else the scope's default. */
  limitOf(scope: LimitScope, budget?: number): number {
    return budget ?? this.points[scope];
  }

  /** admit() for one unit of the scope's default budget, without the headers: the per-request check's fast path allocates nothing. */
  allow(scope: LimitScope, key: string): Promise<void> {
    if (!this.leased || this.degraded) return this.admit(scope, key).then(NOTHING);
    if (this.leased[scope].spendLocally(key, 1, this.points[scope]) !== NOT_LOCAL) return ALLOWED;
    const spent = this.leased[scope].spend(key, 1, this.points[scope]);
    if (spent instanceof Promise) {
      return spent.then((result) =>
        result
          ? this.answer(scope, 1, result).then(NOTHING)
          : this.admitLocally(scope, key, 1, this.points[scope]).then(NOTHING),
      );
    }
    return this.answer(scope, 1, spent).then(NOTHING);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.redis?.disconnect();
  }

  private answer(scope: LimitScope, cost: number, spent: Spent): Promise<RateLimitHeaders> {
    if (spent.admitted) return Promise.resolve(headers(spent.limit, spent.remaining, spent.resetMs));
    return Promise.reject(this.refusal(scope, cost, spent.limit, headers(spent.limit, 0, spent.resetMs)));
  }

  private async admitLocally(
    scope: LimitScope,
    key: string,
    cost: number,
    limit: number,
  ): Promise<RateLimitHeaders> {
    const limiter = this.local[scope];
    // This process's share of the budget while Redis is configured but unavailable. It is the budget
    // this process applies, so it is the one its answers state (RateLimit-Limit, the policy's q), and a
    // batch larger than it is batch_over_budget: a client told to retry a batch that cannot fit any
    // window would retry it for as long as Redis stays down.
    const points = Math.max(1, Math.floor(limit / (this.redis ? this.options.expectedInstances : 1)));
    const consumedAt = Date.now();
    const result = await limiter.consume(key, cost);
    // The memory store counts a window's end from the wall clock (its counter goes on a timer): a clock
    // stepped back within a window would make it an hour away, and Retry-After with it.
    const resetMs = Math.min(result.msBeforeNext, WINDOW_MS);
    if (result.consumedPoints <= points) {
      return headers(points, points - result.consumedPoints, resetMs);
    }
    refund(limiter, key, cost, consumedAt, result.msBeforeNext);
    // As a refusal from a leased budget: nothing left for this cost, RateLimit-Remaining 0.
    throw this.refusal(scope, cost, points, headers(points, 0, resetMs));
  }

  private refusal(scope: LimitScope, cost: number, limit: number, answer: RateLimitHeaders): GatewayError {
    this.metrics.rateLimited.inc({ scope });
    const headers = { ...answer, "retry-after": answer["ratelimit-reset"] as string };
    // One that never fits a window says so: a client retrying it after Retry-After would retry forever.
    if (cost > limit)
      return new GatewayError(
        "batch_over_budget",
        `a batch of ${cost} exceeds the whole budget of ${limit} per second: split it`,
        headers,
      );
    return new GatewayError("rate_limited", "rate limit exceeded", headers);
  }

  private leaseAnswered(scope: LimitScope, granted: number, error: unknown): void {
    const outcome = error !== undefined ? "failed" : granted > 0 ? "granted" : "refused";
    this.metrics.rateLimitLeases.inc({ scope, outcome });
    if (error === undefined) return;
    const failures = this.leaseFailureLine.due();
    if (failures === undefined) return;
    this.log.warn(
      { err: error, scope, failures },
      "Redis lease failed: the per-process limiter decides meanwhile",
    );
  }

  private setDegraded(degraded: boolean, error?: unknown): void {
    // Our own disconnect at the drain is no outage: no "Redis unavailable" warning as the gateway exits.
    if (this.closed) return;
    // The limiter starts degraded (until the first "ready"): a Redis unreachable from the start is logged on its first failure too.
    if (degraded && !this.unavailableLogged) {
      this.unavailableLogged = true;
      this.log.warn({ err: error }, "Redis unavailable: rate limits are per process");
    }
    if (this.degraded === degraded) return;
    this.degraded = degraded;
    this.metrics.rateLimiterDegraded.set(degraded ? 1 : 0);
    if (degraded) return;
    this.unavailableLogged = false;
    this.log.info("Redis ready: rate limits are shared across instances");
  }
}
