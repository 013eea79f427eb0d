import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { compareCodePoints } from "../../lib/sorted-strings.ts";
import type { Logger } from "../../log/logger.ts";
import type { PresenceMembers, PresencePage, PresenceStore } from "../../ports/presence.ts";
import { connectRedis } from "../redis/client.ts";

export interface RedisPresenceOptions {
  redisUrl: string;
  /** An instance's entries vanish this long after it last wrote them (a crashed instance's too). */
  ttlMs: number;
  /** Changes are written at most this often, batched: never a round trip per subscribe. */
  flushMs: number;
  commandTimeoutMs: number;
}

/** Expired entries removed per script run: a crashed instance's many go over several runs, none long. */
export const PRUNE_BATCH = 500;
/** Runs of PRUNE_BATCH one read may take; past that (over 50,000 expired at once) it fails, the next goes on. */
const MAX_PRUNE_PASSES = 100;
/**
 * Subjects written (and as many removed) per script run, and per round trip of a flush: each write's command
 * timeout then covers its own work, not that of every write queued before it in one pipeline (20,000 subjects
 * took some 250 ms, REDIS_TIMEOUT_MS: each flush failed and was sent again a second later, all channels, forever).
 */
const WRITE_SLICE = 1000;
/** What `written` holds of a subject whose write may have landed or not: any count differs, it is written again. */
const UNKNOWN_CONNECTIONS = -1;
/** Subjects a read looks up among its instance's changes since its last write; past that it writes them first. */
const MAX_LOOKUPS = 1000;
/** A script run weighs at least as many subjects (its prune, its key checks): at most 100 runs per round trip. */
const MIN_WRITE_WEIGHT = 10;

/**
 * Shared by both scripts. A channel's keys: KEYS[1] its entries
 * `<instance>\0<subject>` (no instance id holds a NUL) scored by when they expire, in ms by Redis's clock (`now`:
 * one clock for every instance; by each instance's own, one 25 s ahead removed the others' live entries at each
 * write, and one behind wrote entries the others took for expired), KEYS[2] each entry's
 * connections, and per subject (kept by every change of an entry, so nothing
 * is ever counted by reading them all): KEYS[3] the subjects in order (score
 * 0, for a first page by ZRANGEBYLEX and a count by ZCARD), KEYS[4] its
 * connections on all instances (an entry has at least one: a subject none is
 * left to is no member).
 */
const ENTRIES = `
local entries, entryConnections, subjects, connections = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local function drop(entry)
  if redis.call('ZREM', entries, entry) == 0 then return end
  local subject = string.sub(entry, string.find(entry, '\\0', 1, true) + 1)
  local had = tonumber(redis.call('HGET', entryConnections, entry)) or 0
  redis.call('HDEL', entryConnections, entry)
  if redis.call('HINCRBY', connections, subject, -had) <= 0 then
    redis.call('HDEL', connections, subject)
    redis.call('ZREM', subjects, subject)
  end
end
-- The four keys count one another's contents (an entry's connections, a subject's entries): Redis evicting one
-- (maxmemory) would leave the others wrong for as long as the channel has members, a ghost member or a count
-- doubled at each refresh. All go instead: each instance's entries are back at its next refresh, as after a restart.
local function discardIfTorn()
  local held = redis.call('EXISTS', entries, entryConnections, subjects, connections)
  if held ~= 0 and held ~= 4 then redis.call('DEL', entries, entryConnections, subjects, connections) end
end
local function prune()
  discardIfTorn()
  local expired = redis.call('ZRANGEBYSCORE', entries, '-inf', '(' .. now, 'LIMIT', 0, ${PRUNE_BATCH})
  for _, entry in ipairs(expired) do drop(entry) end
  return #expired
end
`;

/**
 * One instance's members of a channel. ARGV: TTL, instance,
 * how many subjects it has, those subjects and their connections in pairs,
 * then the subjects it no longer has.
 */
const WRITE = `${ENTRIES}
local ttl, instance = tonumber(ARGV[1]), ARGV[2]
local expiresAt = now + ttl
prune()
local upserts = tonumber(ARGV[3])
local at = 4
for _ = 1, upserts do
  local subject, count = ARGV[at], tonumber(ARGV[at + 1])
  at = at + 2
  local entry = instance .. '\\0' .. subject
  local before = 0
  if redis.call('ZADD', entries, expiresAt, entry) == 1 then
    redis.call('ZADD', subjects, 0, subject)
  else
    before = tonumber(redis.call('HGET', entryConnections, entry)) or 0
  end
  redis.call('HSET', entryConnections, entry, count)
  redis.call('HINCRBY', connections, subject, count - before)
end
for gone = at, #ARGV do drop(instance .. '\\0' .. ARGV[gone]) end
-- Lengthened only: an instance with a shorter PRESENCE_TTL_MS (a rolling change of it) must not make the keys
-- expire before the others' entries, which would be gone until their next refresh.
if upserts > 0 then
  for _, key in ipairs(KEYS) do
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  end
end
`;

/**
 * The count and first page of a channel, for the instance reading it, or {-1}
 * when a whole PRUNE_BATCH of expired entries was removed and more may be
 * left (the reader runs it again: a count includes no expired entry). ARGV:
 * instance, page size, the most subjects for which the page is read (-1:
 * any), the subjects to look up, each as its length in bytes, a colon and itself. Returns {count, page, lookups}: the page as
 * subject, connections on all instances, the reader's own (as last written)
 * in threes; the lookups as connections on all, the reader's own in pairs.
 */
const READ = `${ENTRIES}
local instance, size, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if prune() == ${PRUNE_BATCH} then return {-1} end
local function counts(subject)
  return tonumber(redis.call('HGET', connections, subject)) or 0,
    tonumber(redis.call('HGET', entryConnections, instance .. '\\0' .. subject)) or 0
end
local count = redis.call('ZCARD', subjects)
local page = {}
if most < 0 or count <= most then
  for _, subject in ipairs(redis.call('ZRANGEBYLEX', subjects, '-', '+', 'LIMIT', 0, size)) do
    local all, own = counts(subject)
    page[#page + 1] = subject
    page[#page + 1] = all
    page[#page + 1] = own
  end
end
local lookups = {}
local wanted, from = ARGV[4], 1
while from <= #wanted do
  local colon = string.find(wanted, ':', from, true)
  local stop = colon + tonumber(string.sub(wanted, from, colon - 1))
  local all, own = counts(string.sub(wanted, colon + 1, stop))
  lookups[#lookups + 1] = all
  lookups[#lookups + 1] = own
  from = stop + 1
end
return {count, page, lookups}
`;

type WriteCommand = (...args: Array<string | number>) => unknown;
type ReadCommand = (...args: Array<string | number>) => Promise<[number, Array<string | number>, number[]]>;

/**
 * Presence in Redis, per channel: each instance's entries, scored by when
 * they expire, with their connection counts, and per subject its connections
 * on all instances, kept up to date by the scripts
 * that change entries. A read is then a count and a first page, whatever the
 * channel's size. Each instance writes its own entries (changed channels
 * every `flushMs`, all of them again every `ttlMs / 3`), so a crashed
 * instance's entries expire by themselves; every script first removes some
 * expired ones (PRUNE_BATCH), and the subjects they alone held.
 */
export class RedisPresence implements PresenceStore {
  private readonly redis: Redis;
  private readonly read: ReadCommand;
  private readonly instance = randomUUID();
  /** This instance's members per channel, as last told (the feature's live maps). */
  private readonly local = new Map<string, PresenceMembers>();
  /** Subjects this instance wrote per channel, with their connections: to write only what changed, remove who left. */
  private readonly written = new Map<string, Map<string, number>>();
  private readonly dirty = new Set<string>();
  private readonly timer: ReturnType<typeof setInterval>;
  private lastRefresh = Date.now();
  /** The flush under way: `close` waits for it, and so does a read of a channel in `changing`. */
  private flushing: Promise<void> | undefined;
  /**
   * The channels whose members or counts the flush under way changes: a read of one waits for it (Redis then
   * holds what `written` says). The others' are the same before and after, whatever it refreshes: not held
   * up for the seconds a refresh of 200,000 members takes.
   */
  private changing = new Set<string>();

  constructor(
    private readonly options: RedisPresenceOptions,
    private readonly log: Logger,
  ) {
    // Reconnects on its own; the next flush rewrites what changed meanwhile.
    this.redis = connectRedis(options.redisUrl, options.commandTimeoutMs);
    this.redis.defineCommand("presenceWrite", { numberOfKeys: 4, lua: WRITE });
    this.redis.defineCommand("presenceRead", { numberOfKeys: 4, lua: READ });
    const client = this.redis as unknown as { presenceRead: ReadCommand };
    this.read = client.presenceRead.bind(client);
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

  /**
   * Redis holds this instance's members as last written (up to a flush ago);
   * a client that subscribed (or left) here is seen so at once by a read here:
   * its own share of the subjects that changed since is looked up and replaced
   * by its live members. What is read is the page and those subjects, never
   * the whole channel; past MAX_LOOKUPS of them (thousands of clients left
   * at once), the channel is written first instead.
   */
  async members(channelKey: string, limit: number, onlyIfAll = false): Promise<PresencePage> {
    if (this.flushing && this.changing.has(channelKey)) await this.flushing;
    let { local, arrived, left } = this.unwritten(channelKey);
    // Looked up one by one, and each leaver lengthening the page: 20,000 clients gone held Redis 130 ms per read
    // and sent it 600 kB. Written, they are the flush's work due within a second anyway, and the read a page.
    if (arrived.length + left.length > MAX_LOOKUPS) {
      // One under way (a refresh) began before these changes: they go in the next.
      if (this.flushing) await this.flushing;
      await this.flush();
      ({ local, arrived, left } = this.unwritten(channelKey));
    }
    // A subject that left here may be in the page and no longer a member: the page is read that much longer.
    const size = limit + left.length;
    const lookup = [...arrived, ...left];
    // One argument, however many: a call's arguments are bounded (Node's stack overflows past some 100,000).
    const wanted = lookup.map((subject) => `${Buffer.byteLength(subject)}:${subject}`).join("");
    let reply: Awaited<ReturnType<ReadCommand>>;
    let passes = 0;
    // A crashed instance's many entries expired: removed a batch per run, each short, before the count.
    do reply = await this.read(...keysOf(channelKey), this.instance, size, onlyIfAll ? size : -1, wanted);
    while (reply[0] < 0 && ++passes < MAX_PRUNE_PASSES);
    if (reply[0] < 0) throw new Error("presence: expired entries still being removed");
    const [count, page, lookups] = reply;
    const connectionsNow = (subject: string, all: number, own: number) =>
      all - own + (local.get(subject) ?? 0);
    let total = count;
    lookup.forEach((subject, index) => {
      const all = lookups[2 * index] as number;
      const isMember = connectionsNow(subject, all, lookups[2 * index + 1] as number) > 0;
      total += (isMember ? 1 : 0) - (all > 0 ? 1 : 0);
    });
    const listed: Array<[string, number]> = [];
    for (let at = 0; at < page.length; at += 3) {
      const subject = page[at] as string;
      const connections = connectionsNow(subject, page[at + 1] as number, page[at + 2] as number);
      if (connections > 0) listed.push([subject, connections]);
    }
    // The page read all of Redis's subjects, or up to its last: a subject only here is listed if it sorts before that,
    // in Redis's order (its UTF-8 bytes: code points).
    const pageRead = !onlyIfAll || count <= size;
    const whole = pageRead && page.length / 3 < size;
    const last = page[page.length - 3] as string | undefined;
    const inListed = new Set(listed.map(([subject]) => subject));
    for (const subject of arrived)
      if ((whole || (last !== undefined && compareCodePoints(subject, last) < 0)) && !inListed.has(subject))
        listed.push([subject, local.get(subject) ?? 0]);
    listed.sort(([a], [b]) => compareCodePoints(a, b));
    return { total, members: new Map(listed.slice(0, limit)) };
  }

  /** This instance's live members of a channel, and the subjects that came or went since it last wrote them. */
  private unwritten(channelKey: string) {
    const local = this.local.get(channelKey) ?? new Map<string, number>();
    // Unchanged since its last write (a flush changing it: a read waited for it), as in Redis: nothing to go through.
    if (!this.dirty.has(channelKey)) return { local, arrived: [], left: [] };
    const written = this.written.get(channelKey) ?? new Map<string, number>();
    const arrived = [...local.keys()].filter((subject) => !written.has(subject));
    const left = [...written.keys()].filter((subject) => !local.has(subject));
    return { local, arrived, left };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    // Leaving: this instance's entries go now rather than at their expiry.
    for (const channelKey of this.local.keys()) this.changed(channelKey, new Map());
    // A flush under way wrote the members as they were: the removals go after it.
    if (this.flushing) await this.flushing;
    await this.flush();
    this.redis.disconnect();
  }

  /** Writes the channels that changed, or every channel when the entries are due for refresh; never rejects. */
  private flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async write(): Promise<void> {
    if (this.redis.status !== "ready") return;
    const now = Date.now();
    const refresh = now - this.lastRefresh >= this.options.ttlMs / 3;
    const channels = refresh ? new Set([...this.dirty, ...this.local.keys()]) : new Set(this.dirty);
    if (channels.size === 0) return;
    this.dirty.clear();
    const changing = new Set<string>();
    this.changing = changing;
    /** Each script run's arguments, and its weight in subjects. */
    const runs: Array<{ args: Array<string | number>; weight: number }> = [];
    /** `written` as it was before this batch, for the channels in it: merged back if the batch fails. */
    const writtenBefore = new Map<string, Map<string, number> | undefined>();
    for (const channelKey of channels) {
      const members = this.local.get(channelKey) ?? new Map<string, number>();
      const before = this.written.get(channelKey) ?? new Map<string, number>();
      writtenBefore.set(channelKey, this.written.get(channelKey));
      // The subjects whose connections changed: a join in a channel of 20,000 is one subject written, not 20,000
      // every second. A refresh writes them all (their entries' expiry).
      const changed = [...members].filter(([subject, count]) => before.get(subject) !== count);
      const upserts = refresh ? [...members] : changed;
      const gone = [...before.keys()].filter((subject) => !members.has(subject));
      if (changed.length > 0 || gone.length > 0) changing.add(channelKey);
      // In slices: a call's arguments are bounded, and one script keeps Redis from every other client while it runs.
      for (let at = 0; at < Math.max(upserts.length, gone.length); at += WRITE_SLICE) {
        const slice = upserts.slice(at, at + WRITE_SLICE);
        const leaving = gone.slice(at, at + WRITE_SLICE);
        runs.push({
          args: [
            ...keysOf(channelKey),
            this.options.ttlMs,
            this.instance,
            slice.length,
            ...slice.flat(),
            ...leaving,
          ],
          weight: Math.max(MIN_WRITE_WEIGHT, slice.length + leaving.length),
        });
      }
      if (members.size > 0) this.written.set(channelKey, new Map(members));
      else this.written.delete(channelKey);
    }
    try {
      // In round trips of about WRITE_SLICE subjects; the first that fails ends the flush (retried whole).
      for (let at = 0; at < runs.length; ) {
        const batch = this.redis.pipeline();
        const write = (batch as unknown as { presenceWrite: WriteCommand }).presenceWrite.bind(batch);
        let weight = 0;
        do {
          const run = runs[at++] as (typeof runs)[number];
          write(...run.args);
          weight += run.weight;
        } while (at < runs.length && weight + (runs[at] as (typeof runs)[number]).weight <= WRITE_SLICE);
        const results = await batch.exec();
        const failed = results?.find(([error]) => error)?.[0];
        if (failed) throw failed;
      }
      if (refresh) this.lastRefresh = now;
    } catch (error) {
      // The batch may have landed or not (a timeout, a dropped connection): Redis may hold the entries
      // written before it and those it wrote, so both count as written, and the next flush removes each
      // subject that left among them. Counting only the batch's, a leave in it would stay in Redis until
      // its entry expired (PRESENCE_TTL_MS) instead of the next flush.
      // Their connections in Redis are unknown: each is written again at the next flush.
      for (const [channelKey, before] of writtenBefore) {
        const either = new Map<string, number>();
        for (const subject of [...(before?.keys() ?? []), ...(this.written.get(channelKey)?.keys() ?? [])])
          either.set(subject, UNKNOWN_CONNECTIONS);
        if (either.size > 0) this.written.set(channelKey, either);
        else this.written.delete(channelKey);
      }
      // Written again on the next flush: nothing is lost but time. A channel with neither members nor
      // entries written has nothing to write (as in `changed`), so failures in a row do not pile them up.
      for (const channelKey of channels)
        if (this.local.has(channelKey) || this.written.has(channelKey)) this.dirty.add(channelKey);
      this.log.debug({ err: error }, "presence write failed; retrying");
    }
  }
}

/**
 * A channel's keys, as the scripts take them (see ENTRIES). Named apart from the `pr:`/`prc:` of versions that
 * kept no per-subject keys: their writes and prunes would leave these wrong (an upgrade splits presence meanwhile).
 */
const keysOf = (channelKey: string) => [
  `pse:${channelKey}`,
  `psc:${channelKey}`,
  `pss:${channelKey}`,
  `pst:${channelKey}`,
];
