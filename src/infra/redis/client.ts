import { Redis } from "ioredis";

/**
 * A Redis connection for work that must never wait on Redis: no offline
 * queue and no retries per command (a call while disconnected fails at once,
 * one slower than `commandTimeoutMs` fails then), reconnecting in the
 * background. Its owner decides what a failure means and closes it.
 * `autoPipelining`: commands of one tick share a write (the rate limiter's leases).
 */
export function connectRedis(url: string, commandTimeoutMs: number, autoPipelining = false): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    enableAutoPipelining: autoPipelining,
    commandTimeout: commandTimeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    // A failover (ElastiCache's, a replica promoted by hand) leaves this connection on the old primary, now a
    // replica refusing every write, for as long as it stays up: dropped instead, the next one follows the
    // primary's name to the new one. The refused command fails (its caller falls back) and is not resent.
    // (Redis 6 quotes it inside a script's error: "ERR Error running script … -READONLY …".)
    reconnectOnError: (error) => error.message.includes("READONLY"),
  });
  redis.on("error", (error: Error & { command?: { name?: string } }) => {
    // ioredis goes on to "ready" when Redis refuses the SELECT of REDIS_URL's database (an index past the
    // server's `databases`, a cluster-mode server), and its commands then land in database 0, beside whatever
    // lives there: that connection failed instead, and the next attempt selects again.
    if (error.command?.name === "select") redis.disconnect(true);
    // Other connection errors are retried by the client itself; each failed command is handled by its caller.
  });
  return redis;
}

/** ioredis statuses of a first connection attempt still in progress (past it, a drop or a failure emits "close"). */
const ATTEMPTING = new Set(["wait", "connecting", "connect"]);

/**
 * What a command on `redis` should wait for before it is sent: undefined
 * when nothing (the connection is ready, or Redis is known to be down: an
 * attempt failed or the connection dropped, and it was not ready since; a
 * command then fails at once, without the offline queue, so the caller fails
 * open at once rather than after `timeoutMs`), else the one wait shared by
 * every caller for a connection attempt in progress (at the start), settled
 * when it is ready, when it fails, or after `timeoutMs`.
 */
export function connectionWait(redis: Redis, timeoutMs: number): () => Promise<void> | undefined {
  let down = false;
  let waiting: Promise<void> | undefined;
  redis.on("ready", () => {
    down = false;
  });
  // Emitted after every failed attempt and every drop, before the next reconnect.
  redis.on("close", () => {
    down = true;
  });
  return () => {
    if (down || !ATTEMPTING.has(redis.status)) return undefined;
    waiting ??= new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        redis.off("ready", done);
        redis.off("close", done);
        waiting = undefined;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      redis.once("ready", done);
      redis.once("close", done);
    });
    return waiting;
  };
}
