import type { Redis } from "ioredis";
import type { Logger } from "../../log/logger.ts";
import type { IdempotencyClaim, IdempotencyStore, StoredReply } from "../../ports/idempotency.ts";
import { connectionWait, connectRedis } from "../redis/client.ts";

export interface RedisIdempotencyOptions {
  redisUrl: string;
  windowMs: number;
  pendingMs: number;
  commandTimeoutMs: number;
  /** Called when Redis did not answer and the request ran without the shared check. */
  onFailOpen: () => void;
}

/** Stored value: the body fingerprint, and the answer once there is one. */
interface Stored {
  f: string;
  r?: StoredReply;
}

const PREFIX = "idem:";
const CLAIMED: IdempotencyClaim = Object.freeze({ state: "claimed" });
/** At most one warning per this long while Redis fails: an outage must not flood the log. */
const WARN_EVERY_MS = 10_000;

/**
 * Keys shared by every instance through Redis: the claim is `SET NX` with the
 * pending TTL (one instance wins a race between two retries), the answer then
 * replaces it for the window. When Redis does not answer in time the request
 * runs anyway (fail open: a retry during the outage may write twice), counted
 * and logged, never a 5xx.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly redis: Redis;
  private lastWarning = 0;
  /** What to wait for before a claim: a connection attempt in progress (the start), not a Redis known down. */
  private readonly connected: () => Promise<void> | undefined;

  constructor(
    private readonly options: RedisIdempotencyOptions,
    private readonly log: Logger,
  ) {
    // Reconnects on its own; each command that fails meanwhile fails open.
    this.redis = connectRedis(options.redisUrl, options.commandTimeoutMs);
    this.connected = connectionWait(this.redis, options.commandTimeoutMs);
  }

  async claim(id: string, fingerprint: string): Promise<IdempotencyClaim> {
    const key = PREFIX + id;
    try {
      // At start the first requests wait briefly for the connection rather than fail open; once Redis
      // is known down (a failed attempt or a drop), they fail open at once, as the command would.
      const connecting = this.connected();
      if (connecting) await connecting;
      const value = JSON.stringify({ f: fingerprint } satisfies Stored);
      for (let attempt = 0; attempt < 2; attempt++) {
        if ((await this.redis.set(key, value, "PX", this.options.pendingMs, "NX")) === "OK") return CLAIMED;
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
    try {
      const value = JSON.stringify({ f: fingerprint, r: reply } satisfies Stored);
      await this.redis.set(PREFIX + id, value, "PX", this.options.windowMs);
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async release(id: string): Promise<void> {
    try {
      await this.redis.del(PREFIX + id);
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private failedOpen(error: unknown): void {
    this.options.onFailOpen();
    const now = Date.now();
    if (now - this.lastWarning < WARN_EVERY_MS) return;
    this.lastWarning = now;
    this.log.warn({ err: error }, "Redis unavailable: Idempotency-Key checked without the shared store");
  }
}
