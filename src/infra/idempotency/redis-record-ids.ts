import type { Redis } from "ioredis";
import type { Logger } from "../../log/logger.ts";
import type { RecordIdStore, RecordIdVerdict } from "../../ports/record-ids.ts";
import { connectionWait, connectRedis } from "../redis/client.ts";
import { LeaseRenewals } from "./lease-renewals.ts";

export interface RedisRecordIdOptions {
  redisUrl: string;
  /** The longest a request's claim is held while it writes (renewed until then). */
  pendingMs: number;
  /** How long a request's claim outlives its instance's last renewal: a retry after the claimant died waits at most this. */
  leaseMs: number;
  commandTimeoutMs: number;
  /** Called when Redis did not answer and the records were written without the shared check. */
  onFailOpen: () => void;
}

/** Ids per script call: a call runs alone in Redis, so a batch of 10,000 ids goes in slices. */
const SLICE = 1000;
/** At most one warning per this long while Redis fails: an outage must not flood the log. */
const WARN_EVERY_MS = 10_000;

/**
 * KEYS[1]: the request's state key, KEYS[2..]: its id keys; ARGV: claimant,
 * pending ms, window ms, the prefix of state keys. Marks the request pending,
 * then per id: SET NX (value: the claimant, for the window); else the owner's
 * state says: 1 written, 2 still writing, and absent (released, or its
 * instance died) lets this request take the id over. The owners' state keys
 * are not in KEYS, but share the tenant's hash tag, so the slot of KEYS[1].
 */
const CLAIM = `redis.call('SET', KEYS[1], 'p', 'PX', ARGV[2])
local out = {}
for i = 2, #KEYS do
  local verdict = 0
  if not redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[3]) then
    local owner = redis.call('GET', KEYS[i])
    local state = owner and redis.call('GET', ARGV[4] .. owner)
    if state == 'd' then verdict = 1
    elseif state == 'p' then verdict = 2
    else redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[3]) end
  end
  out[i - 1] = verdict
end
return out`;

/** KEYS: id keys; ARGV[1]: claimant. Deletes each id still this claimant's (another may have taken it over). */
const FORGET = `for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0`;

/** Extends each state key (KEYS) still pending by ARGV[1] ms; returns the indexes (1-based) of those no longer pending. */
const RENEW = `
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == 'p' then redis.call('PEXPIRE', key, ARGV[1]) else lost[#lost + 1] = i end
end
return lost`;

interface RecordIdCommands {
  recordIdsClaim(count: number, ...keysAndArgs: string[]): Promise<number[]>;
  recordIdsForget(count: number, ...keysAndArgs: string[]): Promise<number>;
  recordIdsRenew(count: number, ...keysAndArgs: string[]): Promise<number[]>;
}

const VERDICTS: readonly RecordIdVerdict[] = ["new", "seen", "pending"];

/**
 * Record ids shared by every instance through Redis: one key per id
 * (`rid:{tenant}:<id>`, its claimant as value, for the window) and one per
 * request (`rreq:{tenant}:<claimant>`: `p` while it writes, `d` once written,
 * absent once released). A tenant's keys share a cluster slot (the hash tag),
 * so one script sees them all. Claiming is one Lua script per slice of ids,
 * atomic: of two requests racing with the same id, exactly one claims it.
 * Confirming or releasing a request's ids is one command on its state key,
 * whatever their number. When Redis does not answer in time the records are
 * written anyway (fail open), counted and logged, never a 5xx.
 */
export class RedisRecordIdStore implements RecordIdStore {
  private readonly redis: Redis & RecordIdCommands;
  private lastWarning = 0;
  /** State keys of the requests writing now; each leaves on its confirmation, release or bound. */
  private readonly held: LeaseRenewals;
  /** What to wait for before a claim: a connection attempt in progress (the start), not a Redis known down. */
  private readonly connected: () => Promise<void> | undefined;

  constructor(
    private readonly options: RedisRecordIdOptions,
    private readonly log: Logger,
  ) {
    const redis = connectRedis(options.redisUrl, options.commandTimeoutMs);
    redis.defineCommand("recordIdsClaim", { lua: CLAIM });
    redis.defineCommand("recordIdsForget", { lua: FORGET });
    redis.defineCommand("recordIdsRenew", { lua: RENEW });
    this.redis = redis as Redis & RecordIdCommands;
    this.connected = connectionWait(redis, options.commandTimeoutMs);
    // One script for every request's state held (keys one Redis holds: no cluster slots to split by).
    // A key past the pending bound is left to lapse: its ids are then taken over (documented).
    this.held = new LeaseRenewals(
      options,
      (keys) => this.redis.recordIdsRenew(keys.length, ...keys, String(options.leaseMs)),
      (error) => this.warn(error),
    );
  }

  async claim(
    tenant: string,
    ids: readonly string[],
    claimant: string,
    windowMs: number,
  ): Promise<RecordIdVerdict[]> {
    try {
      // At start the first requests wait briefly for the connection rather than fail open; once Redis
      // is known down (a failed attempt or a drop), they fail open at once, as the command would.
      const connecting = this.connected();
      if (connecting) await connecting;
      const statePrefix = `rreq:{${tenant}}:`;
      const idPrefix = `rid:{${tenant}}:`;
      const slices = await Promise.all(
        slicesOf(ids).map((slice) =>
          this.redis.recordIdsClaim(
            slice.length + 1,
            statePrefix + claimant,
            ...slice.map((id) => idPrefix + id),
            claimant,
            String(this.options.leaseMs),
            String(windowMs),
            statePrefix,
          ),
        ),
      );
      this.held.hold(statePrefix + claimant);
      return slices.flat().map((code) => VERDICTS[code] ?? "new");
    } catch (error) {
      this.failedOpen(error);
      return ids.map(() => "new");
    }
  }

  async confirm(tenant: string, claimant: string, windowMs: number): Promise<void> {
    this.held.drop(`rreq:{${tenant}}:${claimant}`);
    try {
      await this.redis.set(`rreq:{${tenant}}:${claimant}`, "d", "PX", windowMs);
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async release(tenant: string, claimant: string): Promise<void> {
    this.held.drop(`rreq:{${tenant}}:${claimant}`);
    try {
      await this.redis.del(`rreq:{${tenant}}:${claimant}`);
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async forget(tenant: string, claimant: string, ids: readonly string[]): Promise<boolean> {
    const idPrefix = `rid:{${tenant}}:`;
    try {
      await Promise.all(
        slicesOf(ids).map((slice) =>
          this.redis.recordIdsForget(slice.length, ...slice.map((id) => idPrefix + id), claimant),
        ),
      );
      return true;
    } catch (error) {
      this.failedOpen(error);
      return false;
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
    this.log.warn({ err: error }, "Redis unavailable: record ids deduplicated without the shared store");
  }
}

function slicesOf(ids: readonly string[]): (readonly string[])[] {
  if (ids.length <= SLICE) return [ids];
  const slices: string[][] = [];
  for (let start = 0; start < ids.length; start += SLICE) slices.push(ids.slice(start, start + SLICE));
  return slices;
}
