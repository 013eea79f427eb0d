import type { Redis } from "ioredis";
import type { Logger } from "../../log/logger.ts";
import type { RecordIdStore, RecordIdVerdict } from "../../ports/record-ids.ts";
import { connectRedis } from "../redis/client.ts";

export interface RedisRecordIdOptions {
  redisUrl: string;
  /** How long a claim holds without a confirmation (its request died, or Kafka is that slow). */
  pendingMs: number;
  commandTimeoutMs: number;
  /** Called when Redis did not answer and the records were written without the shared check. */
  onFailOpen: () => void;
}

/** Keys per script call: a call runs alone in Redis, so a batch of 10,000 ids goes in slices. */
const SLICE = 1000;
/** At most one warning per this long while Redis fails: an outage must not flood the log. */
const WARN_EVERY_MS = 10_000;

/** Per id: SET NX the claim; else 1 when written, 2 when another request's claim. */
const CLAIM = `local out = {}
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then out[i] = 0
  elseif redis.call('GET', KEYS[i]) == '' then out[i] = 1
  else out[i] = 2 end
end
return out`;
/** Per id: written for the window, unless another request claimed it since (it confirms it itself). */
const CONFIRM = `for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v == false or v == '' or v == ARGV[1] then redis.call('SET', KEYS[i], '', 'PX', ARGV[2]) end
end
return 0`;
/** Per id: forgotten, when still this request's claim. */
const RELEASE = `for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0`;

interface RecordIdCommands {
  recordIdsClaim(count: number, ...keysAndArgs: string[]): Promise<number[]>;
  recordIdsConfirm(count: number, ...keysAndArgs: string[]): Promise<number>;
  recordIdsRelease(count: number, ...keysAndArgs: string[]): Promise<number>;
}

const VERDICTS: readonly RecordIdVerdict[] = ["new", "seen", "pending"];

/**
 * Record ids shared by every instance through Redis, one key per id
 * (`rid:{tenant}:<id>`: a tenant's keys share a cluster slot, so one script
 * sees them all). Each call is one Lua script per slice of ids, atomic: of two
 * requests racing with the same id, exactly one claims it. When Redis does not
 * answer in time the records are written anyway (fail open), counted and
 * logged, never a 5xx.
 */
export class RedisRecordIdStore implements RecordIdStore {
  private readonly redis: Redis & RecordIdCommands;
  private lastWarning = 0;
  /** While not connected: one shared wait for "ready", bounded by the command timeout. */
  private connecting: Promise<void> | undefined;

  constructor(
    private readonly options: RedisRecordIdOptions,
    private readonly log: Logger,
  ) {
    const redis = connectRedis(options.redisUrl, options.commandTimeoutMs);
    redis.defineCommand("recordIdsClaim", { lua: CLAIM });
    redis.defineCommand("recordIdsConfirm", { lua: CONFIRM });
    redis.defineCommand("recordIdsRelease", { lua: RELEASE });
    this.redis = redis as Redis & RecordIdCommands;
  }

  async claim(tenant: string, ids: readonly string[], claimant: string): Promise<RecordIdVerdict[]> {
    try {
      // At start (or after a drop) the first requests wait briefly for the connection rather than fail open.
      if (this.redis.status !== "ready") await this.whenConnected();
      const slices = await Promise.all(
        slicesOf(ids).map((slice) =>
          this.redis.recordIdsClaim(
            slice.length,
            ...keysOf(tenant, slice),
            claimant,
            String(this.options.pendingMs),
          ),
        ),
      );
      return slices.flat().map((code) => VERDICTS[code] ?? "new");
    } catch (error) {
      this.failedOpen(error);
      return ids.map(() => "new");
    }
  }

  async confirm(tenant: string, ids: readonly string[], claimant: string, windowMs: number): Promise<void> {
    try {
      await Promise.all(
        slicesOf(ids).map((slice) =>
          this.redis.recordIdsConfirm(slice.length, ...keysOf(tenant, slice), claimant, String(windowMs)),
        ),
      );
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async release(tenant: string, ids: readonly string[], claimant: string): Promise<void> {
    try {
      await Promise.all(
        slicesOf(ids).map((slice) =>
          this.redis.recordIdsRelease(slice.length, ...keysOf(tenant, slice), claimant),
        ),
      );
    } catch (error) {
      this.failedOpen(error);
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private whenConnected(): Promise<void> {
    this.connecting ??= new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.redis.off("ready", done);
        this.connecting = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.options.commandTimeoutMs);
      this.redis.once("ready", done);
    });
    return this.connecting;
  }

  private failedOpen(error: unknown): void {
    this.options.onFailOpen();
    const now = Date.now();
    if (now - this.lastWarning < WARN_EVERY_MS) return;
    this.lastWarning = now;
    this.log.warn({ err: error }, "Redis unavailable: record ids deduplicated without the shared store");
  }
}

function keysOf(tenant: string, ids: readonly string[]): string[] {
  const prefix = `rid:{${tenant}}:`;
  return ids.map((id) => prefix + id);
}

function slicesOf(ids: readonly string[]): (readonly string[])[] {
  if (ids.length <= SLICE) return [ids];
  const slices: string[][] = [];
  for (let start = 0; start < ids.length; start += SLICE) slices.push(ids.slice(start, start + SLICE));
  return slices;
}
