import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "../../log/logger.ts";
import type { IdempotencyClaim, IdempotencyStore, StoredReply } from "../../ports/idempotency.ts";
import { connectionWait, connectRedis } from "../redis/client.ts";
import { LeaseRenewals } from "./lease-renewals.ts";

export interface RedisIdempotencyOptions {
  redisUrl: string;
  windowMs: number;
  /** The longest a claim is held for a request still running (renewed until then). */
  pendingMs: number;
  /** How long a claim outlives its instance's last renewal: a retry after the claimant died waits at most this. */
  leaseMs: number;
  commandTimeoutMs: number;
  /** Called when Redis did not answer and the request ran without the shared check. */
  onFailOpen: () => void;
}

/** Stored value: the body fingerprint, and the answer once there is one; a claim's own name while pending. */
interface Stored {
  f: string;
  r?: StoredReply;
  c?: string;
}

/** Extends each key (KEYS) whose value is still ARGV[i+1] by ARGV[1] ms; returns the indexes (1-based) of those lost. */
const RENEW = `
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call("GET", key) == ARGV[i + 1] then redis.call("PEXPIRE", key, ARGV[1]) else lost[#lost + 1] = i end
end
return lost`;
/** Stores the answer (ARGV[2]) for ARGV[3] ms if the key is still this claim (ARGV[1]) or gone, not another's. */
const COMPLETE = `
local now = redis.call("GET", KEYS[1])
if now ~= false and now ~= ARGV[1] then return 0 end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
return 1`;
/** Deletes the key only while it is still this claim (ARGV[1]). */
const RELEASE = `
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`;

interface LeaseCommands {
  idempotencyRenew(...args: (string | number)[]): Promise<number[]>;
  idempotencyComplete(key: string, claim: string, value: string, windowMs: number): Promise<number>;
  idempotencyRelease(key: string, claim: string): Promise<number>;
}

const PREFIX = "idem:";
const CLAIMED: IdempotencyClaim = Object.freeze({ state: "claimed" });
/** At most one warning per this long while Redis fails: an outage must not flood the log. */
const WARN_EVERY_MS = 10_000;

/**
 * Keys shared by every instance through Redis: the claim is `SET NX` with a
 * short lease (one instance wins a race between two retries), which the
 * instance renews while the request runs (one timer for all its claims, up
 * to the pending bound), so a claim whose instance died lapses within the
 * lease and a retry elsewhere takes it over; the answer then replaces the
 * claim for the window. Each claim stores its own name, so a claimant whose
 * lease lapsed (stalled past it) never stores its answer over, nor deletes,
 * the claim of the request that took over. When Redis does not answer in
 * time the request runs anyway (fail open: a retry during the outage may
 * write twice), counted and logged, never a 5xx.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly redis: Redis & LeaseCommands;
  private lastWarning = 0;
  /** Claims this instance renews, by key, with the value each stored (its name inside); each leaves on its answer, its release, loss or pending bound. */
  private readonly held: LeaseRenewals;
  /** What to wait for before a claim: a connection attempt in progress (the start), not a Redis known down. */
  private readonly connected: () => Promise<void> | undefined;

  constructor(
    private readonly options: RedisIdempotencyOptions,
    private readonly log: Logger,
  ) {
    // Reconnects on its own; each command that fails meanwhile fails open.
    const redis = connectRedis(options.redisUrl, options.commandTimeoutMs);
    redis.defineCommand("idempotencyRenew", { lua: RENEW });
    redis.defineCommand("idempotencyComplete", { lua: COMPLETE, numberOfKeys: 1 });
    redis.defineCommand("idempotencyRelease", { lua: RELEASE, numberOfKeys: 1 });
    this.redis = redis as Redis & LeaseCommands;
    this.connected = connectionWait(redis, options.commandTimeoutMs);
    // One script for every claim held (keys one Redis holds: no cluster slots to split by). A claim
    // past the pending bound is left to lapse: a retry then runs again (documented).
    this.held = new LeaseRenewals(
      options,
      (keys, values) => this.redis.idempotencyRenew(keys.length, ...keys, options.leaseMs, ...values),
      (error) => this.warn(error),
    );
  }

  async claim(id: string, fingerprint: string): Promise<IdempotencyClaim> {
    const key = PREFIX + id;
    try {
      // At start the first requests wait briefly for the connection rather than fail open; once Redis
      // is known down (a failed attempt or a drop), they fail open at once, as the command would.
      const connecting = this.connected();
      if (connecting) await connecting;
      const value = JSON.stringify({ f: fingerprint, c: randomUUID() } satisfies Stored);
      for (let attempt = 0; attempt < 2; attempt++) {
        if ((await this.redis.set(key, value, "PX", this.options.leaseMs, "NX")) === "OK") {
          this.held.hold(key, value);
          return CLAIMED;
        }
        const text = await this.redis.get(key);
        // Gone between the two commands (expired): claim it again, once.
        if (text === null) continue;
        const stored = JSON.parse(text) as Stored;
        return stored.r
          ? { state: "done", fingerprint: stored.f, reply: stored.r }
          : { state: "pending", fingerprint: stored.f };
      }
      return CLAIMED;
    } catch (error) {
      this.failedOpen(error);
      return CLAIMED;
    }
  }

  async complete(id: string, fingerprint: string, reply: StoredReply): Promise<void> {
    const key = PREFIX + id;
    // A claim that failed open holds nothing: "" matches no stored value, so the answer is stored only if the key is free.
    const claim = this.held.valueOf(key) ?? "";
    this.held.drop(key);
    try {
      const value = JSON.stringify({ f: fingerprint, r: reply } satisfies Stored);
      await this.redis.idempotencyComplete(key, claim, value, this.options.windowMs);
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async release(id: string): Promise<void> {
    const key = PREFIX + id;
    const claim = this.held.valueOf(key);
    this.held.drop(key);
    if (claim === undefined) return;
    try {
      await this.redis.idempotencyRelease(key, claim);
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async close(): Promise<void> {
    this.held.clear();
    this.redis.disconnect();
  }

  private failedOpen(error: unknown): void {
    this.options.onFailOpen();
    this.warn(error);
  }

  /** A renewal that failed is no request run without the shared check: logged, not counted as one. */
  private warn(error: unknown): void {
    const now = Date.now();
    if (now - this.lastWarning < WARN_EVERY_MS) return;
    this.lastWarning = now;
    this.log.warn({ err: error }, "Redis unavailable: Idempotency-Key checked without the shared store");
  }
}
