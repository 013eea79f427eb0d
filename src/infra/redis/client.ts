import { Redis } from "ioredis";

/**
 * A Redis connection for work that must never wait on Redis: no offline
 * queue and no retries per command (a call while disconnected fails at once,
 * one slower than `commandTimeoutMs` fails then), reconnecting in the
 * background. Its owner decides what a failure means and closes it.
 */
export function connectRedis(url: string, commandTimeoutMs: number): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    commandTimeout: commandTimeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
  // Connection errors are retried by the client itself; each failed command is handled by its caller.
  redis.on("error", () => {});
  return redis;
}
