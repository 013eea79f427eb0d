import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "../../log/logger.ts";
import type { PresenceMembers, PresenceStore } from "../../ports/presence.ts";
import { connectRedis } from "../redis/client.ts";

export interface RedisPresenceOptions {
  redisUrl: string;
  /** An instance's entries vanish this long after it last wrote them (a crashed instance's too). */
  ttlMs: number;
  /** Changes are written at most this often, batched: never a round trip per subscribe. */
  flushMs: number;
  commandTimeoutMs: number;
}

/** Entries are `<instance>\0<subject>`: no subject or instance id holds a NUL. */
const SEPARATOR = "\u0000";

/**
 * Presence in Redis, per channel: a sorted set of `<instance>\0<subject>`
 * scored by when the entry expires, and a hash of the same members' connection
 * counts. Each instance writes its own entries (changed channels every
 * `flushMs`, all of them again every `ttlMs / 3`), so a crashed instance's
 * entries expire by themselves; readers skip and prune expired ones.
 */
export class RedisPresence implements PresenceStore {
  private readonly redis: Redis;
  private readonly instance = randomUUID();
  /** This instance's members per channel, as last told (the feature's live maps). */
  private readonly local = new Map<string, PresenceMembers>();
  /** Subjects this instance wrote per channel, to remove the ones that left. */
  private readonly written = new Map<string, Set<string>>();
  private readonly dirty = new Set<string>();
  private readonly timer: ReturnType<typeof setInterval>;
  private lastRefresh = Date.now();
  private flushing = false;

  constructor(
    private readonly options: RedisPresenceOptions,
    private readonly log: Logger,
  ) {
    // Reconnects on its own; the next flush rewrites what changed meanwhile.
    this.redis = connectRedis(options.redisUrl, options.commandTimeoutMs);
    this.timer = setInterval(() => void this.flush(), options.flushMs);
    this.timer.unref?.();
  }

  changed(channelKey: string, members: PresenceMembers): void {
    if (members.size === 0) {
      this.local.delete(channelKey);
      // Left before this instance wrote it (Redis down, or between two flushes): nothing in Redis to remove. Kept
      // dirty, every channel a client passed through while Redis was unreachable stayed here until it came back.
      if (!this.written.has(channelKey)) {
        this.dirty.delete(channelKey);
        return;
      }
    } else this.local.set(channelKey, members);
    this.dirty.add(channelKey);
  }

  async members(channelKey: string): Promise<PresenceMembers> {
    const now = Date.now();
    const [live, counts, expired] = (await this.redis
      .multi()
      .zrangebyscore(setKey(channelKey), now, "+inf")
      .hgetall(countKey(channelKey))
      .zrangebyscore(setKey(channelKey), "-inf", `(${now}`)
      .exec()) as Array<[Error | null, unknown]>;
    const stale = (expired?.[1] as string[] | undefined) ?? [];
    if (stale.length > 0) {
      this.redis
        .multi()
        .zrem(setKey(channelKey), ...stale)
        .hdel(countKey(channelKey), ...stale)
        .exec()
        .catch(() => {});
    }
    const countOf = (counts?.[1] as Record<string, string> | undefined) ?? {};
    const members = new Map<string, number>();
    for (const entry of (live?.[1] as string[] | undefined) ?? []) {
      const separator = entry.indexOf(SEPARATOR);
      // This instance's own entries lag its connections by up to a flush: its live map below is what holds.
      if (entry.slice(0, separator) === this.instance) continue;
      const subject = entry.slice(separator + 1);
      members.set(subject, (members.get(subject) ?? 0) + (Number(countOf[entry]) || 1));
    }
    // A client that subscribed (or left) here is seen so at once by a read here: the answer, and join and leave events.
    for (const [subject, count] of this.local.get(channelKey) ?? [])
      members.set(subject, (members.get(subject) ?? 0) + count);
    return members;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    // Leaving: this instance's entries go now rather than at their expiry.
    for (const channelKey of this.local.keys()) this.changed(channelKey, new Map());
    await this.flush().catch(() => {});
    this.redis.disconnect();
  }

  /** Writes the channels that changed, or every channel when the entries are due for refresh. */
  private async flush(): Promise<void> {
    if (this.flushing || this.redis.status !== "ready") return;
    const now = Date.now();
    const refresh = now - this.lastRefresh >= this.options.ttlMs / 3;
    const channels = refresh ? new Set([...this.dirty, ...this.local.keys()]) : new Set(this.dirty);
    if (channels.size === 0) return;
    this.flushing = true;
    this.dirty.clear();
    const expiresAt = now + this.options.ttlMs;
    const batch = this.redis.multi();
    /** `written` as it was before this batch, for the channels in it: merged back if the batch fails. */
    const writtenBefore = new Map<string, Set<string> | undefined>();
    for (const channelKey of channels) {
      const members = this.local.get(channelKey) ?? new Map<string, number>();
      const before = this.written.get(channelKey) ?? new Set<string>();
      writtenBefore.set(channelKey, this.written.get(channelKey));
      const gone = [...before].filter((subject) => !members.has(subject)).map((s) => this.entry(s));
      if (gone.length > 0) batch.zrem(setKey(channelKey), ...gone).hdel(countKey(channelKey), ...gone);
      for (const [subject, count] of members) {
        const entry = this.entry(subject);
        batch.zadd(setKey(channelKey), expiresAt, entry).hset(countKey(channelKey), entry, count);
      }
      if (members.size > 0) {
        batch
          .pexpire(setKey(channelKey), this.options.ttlMs)
          .pexpire(countKey(channelKey), this.options.ttlMs);
        this.written.set(channelKey, new Set(members.keys()));
      } else this.written.delete(channelKey);
    }
    try {
      await batch.exec();
      if (refresh) this.lastRefresh = now;
    } catch (error) {
      // The batch may have landed or not (a timeout, a dropped connection): Redis may hold the entries
      // written before it and those it wrote, so both count as written, and the next flush removes each
      // subject that left among them. Counting only the batch's, a leave in it would stay in Redis until
      // its entry expired (PRESENCE_TTL_MS) instead of the next flush.
      for (const [channelKey, before] of writtenBefore) {
        const either = new Set([...(before ?? []), ...(this.written.get(channelKey) ?? [])]);
        if (either.size > 0) this.written.set(channelKey, either);
        else this.written.delete(channelKey);
      }
      // Written again on the next flush: nothing is lost but time. A channel with neither members nor
      // entries written has nothing to write (as in `changed`), so failures in a row do not pile them up.
      for (const channelKey of channels)
        if (this.local.has(channelKey) || this.written.has(channelKey)) this.dirty.add(channelKey);
      this.log.debug({ err: error }, "presence write failed; retrying");
    } finally {
      this.flushing = false;
    }
  }

  private entry(subject: string): string {
    return `${this.instance}${SEPARATOR}${subject}`;
  }
}

const setKey = (channelKey: string) => `pr:${channelKey}`;
const countKey = (channelKey: string) => `prc:${channelKey}`;
