import type { Redis } from "ioredis";
import type { Lease, LeaseStore } from "./leases.ts";

/**
 * One atomic step on the window's counter (the key holds what was leased in
 * the window and expires with it, as rate-limiter-flexible's counters do, so
 * both can share keys): grant at least `need` and at most `want`, never more
 * than what is left nor, past `need`, more than a quarter of it.
 * Returns { granted, left after, window ms left }.
 */
const LEASE_SCRIPT = `
local limit = tonumber(ARGV[1])
local need = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local ttl = redis.call('PTTL', KEYS[1])
local fresh = ttl < 0
local used = 0
if fresh then
  ttl = window
else
  used = tonumber(redis.call('GET', KEYS[1]))
end
local left = limit - used
if need > left then
  if left < 0 then left = 0 end
  return {0, left, ttl}
end
local granted = math.max(need, math.min(want, math.ceil(left / 4)))
if fresh then
  redis.call('SET', KEYS[1], granted, 'PX', ttl)
else
  redis.call('INCRBY', KEYS[1], granted)
end
return {granted, left - granted, ttl}
`;

type LeaseCommand = (
  key: string,
  limit: number,
  need: number,
  want: number,
  windowMs: number,
) => Promise<number[]>;

/** Leases from counters in Redis, one key per budget and window. */
export class RedisLeaseStore implements LeaseStore {
  private readonly command: LeaseCommand;

  constructor(redis: Redis) {
    redis.defineCommand("gatewayLease", { numberOfKeys: 1, lua: LEASE_SCRIPT });
    const client = redis as unknown as { gatewayLease: LeaseCommand };
    this.command = client.gatewayLease.bind(client);
  }

  async lease(key: string, limit: number, need: number, want: number, windowMs: number): Promise<Lease> {
    const [granted, left, ms] = await this.command(key, limit, need, want, windowMs);
    return { granted: granted as number, left: left as number, windowMs: ms as number };
  }
}
