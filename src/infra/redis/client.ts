import { Redis } from "ioredis";

/**
 * A Redis connection for work that must never wait on Redis: no offline
 * queue and no retries per command (a call while disconnected fails at once,
 * one slower than `commandTimeoutMs` fails then), reconnecting in the
 * background. Its owner decides what a failure means and closes it.
 * `autoPipelining`: commands of one tick share a write (the rate limiter's leases).
 * A Redis that answers nothing for `stalledAfterMs(commandTimeoutMs)` while
 * the connection stays open has it dropped and reconnected (see `dropWhenStalled`).
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
  dropWhenStalled(redis, stalledAfterMs(commandTimeoutMs));
  return redis;
}

/** How long Redis may leave the oldest command sent unanswered before the connection is dropped: 4 timeouts, at least 1 s. */
export function stalledAfterMs(commandTimeoutMs: number): number {
  return Math.max(1000, 4 * commandTimeoutMs);
}

/**
 * Drops the connection (and reconnects) once the oldest command sent has had
 * no answer for `stallMs`. ioredis's command timeout only rejects the
 * caller's promise: the command stays in the connection's queue (with its
 * arguments, promise and timer) until Redis answers it, since answers come
 * in order. A Redis that hangs with its connection open (stopped, a long
 * script, a network path that drops packets until TCP gives up, some 15
 * minutes) was sent a command per lease, claim and presence write all the
 * while, and each was kept: 50 MB of heap in 50 s at 130 requests a second.
 * Dropping the connection fails them all at once (their callers have fallen
 * back already) and frees them; commands meanwhile fail at once, as while
 * Redis is down. The check runs a few times per `stallMs`, on a timer freed
 * with the connection (`end`).
 */
function dropWhenStalled(redis: Redis, stallMs: number): void {
  let oldest: unknown;
  let oldestSince = 0;
  const timer = setInterval(() => {
    const front = redis.commandQueue.peekFront();
    const now = performance.now();
    if (front !== oldest) {
      oldest = front;
      oldestSince = now;
      return;
    }
    if (front === undefined || now - oldestSince < stallMs) return;
    oldest = undefined;
    // Said as a connection error (the owners log it as Redis unavailable), then the connection goes.
    redis.emit("error", new Error(`Redis answered nothing for ${stallMs} ms; reconnecting`));
    redis.disconnect(true);
  }, stallMs / 4);
  timer.unref?.();
  redis.once("end", () => clearInterval(timer));
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
