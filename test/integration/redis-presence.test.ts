import { afterAll, expect, test } from "bun:test";
import { Redis as IORedis, type Redis } from "ioredis";
import pino from "pino";
import type { Principal } from "../../src/domain/principal.ts";
import { Presence } from "../../src/features/realtime/presence.ts";
import { RedisPresence } from "../../src/infra/presence/redis-presence.ts";
import type { PresenceMembers, PresencePage } from "../../src/ports/presence.ts";
import type { HttpReply, HttpRequest } from "../../src/ports/transport.ts";
import { services } from "../support/kafka.ts";

const log = pino({ level: "silent" });
const options = { redisUrl: services().redisUrl, ttlMs: 900, flushMs: 50, commandTimeoutMs: 500 };
const open: RedisPresence[] = [];
function instance(): RedisPresence {
  const store = new RedisPresence(options, log);
  open.push(store);
  return store;
}
afterAll(async () => {
  await Promise.all(open.map((store) => store.close()));
});

/** Asks until the members are `expected` (the stores write in the background), or fails with the last answer. */
async function eventually(
  store: RedisPresence,
  key: string,
  expected: Record<string, number>,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  let members: PresenceMembers = new Map();
  while (Date.now() < deadline) {
    members = await store
      .members(key, 1000)
      .then((page) => page.members)
      .catch(() => new Map());
    if (JSON.stringify(Object.fromEntries([...members].sort())) === JSON.stringify(expected)) return;
    await Bun.sleep(30);
  }
  expect(Object.fromEntries(members)).toEqual(expected);
}

test("instances share presence through Redis: counts add up, a leaver is removed, a closed instance leaves at once", async () => {
  const key = `t/it-${Date.now()}/room`;
  const a = instance();
  const b = instance();
  a.changed(key, new Map([["ann", 2]]));
  b.changed(
    key,
    new Map([
      ["ann", 1],
      ["bob", 1],
    ]),
  );
  await eventually(a, key, { ann: 3, bob: 1 });
  await eventually(b, key, { ann: 3, bob: 1 });
  b.changed(key, new Map([["ann", 1]]));
  await eventually(a, key, { ann: 3 });
  await a.close();
  await eventually(b, key, { ann: 1 });
});

test("a crashed instance's entries vanish by themselves after the TTL, while a live one's are refreshed", async () => {
  const key = `t/it-${Date.now()}/crash`;
  const crashed = new RedisPresence(options, log);
  const live = instance();
  crashed.changed(key, new Map([["cat", 1]]));
  live.changed(key, new Map([["liv", 1]]));
  await eventually(live, key, { cat: 1, liv: 1 });
  // A crash: no goodbye written, the process just stops writing.
  (crashed as unknown as { redis: { disconnect(): void } }).redis.disconnect();
  clearInterval((crashed as unknown as { timer: ReturnType<typeof setInterval> }).timer);
  await eventually(live, key, { liv: 1 });
  // Well past several TTLs, the live instance's entry is still there.
  await Bun.sleep(options.ttlMs * 2);
  await eventually(live, key, { liv: 1 });
});

test("an instance answers with its own members as they are now, not as last written", async () => {
  const key = `t/it-${Date.now()}/own`;
  // Writes nothing during the test: whatever it answers of its own comes from its live members.
  const slow = new RedisPresence({ ...options, flushMs: 60_000, ttlMs: 180_000 }, log);
  open.push(slow);
  const other = instance();
  other.changed(key, new Map([["bob", 1]]));
  await eventually(slow, key, { bob: 1 });
  slow.changed(key, new Map([["ann", 1]]));
  expect(Object.fromEntries((await slow.members(key, 1000)).members)).toEqual({ ann: 1, bob: 1 });
  slow.changed(key, new Map());
  expect(Object.fromEntries((await slow.members(key, 1000)).members)).toEqual({ bob: 1 });
});

test("while Redis cannot be reached, channels joined and left again are not held for a write: the outage does not grow memory", async () => {
  // Nothing listens there: the store never gets ready, as through an outage.
  const down = new RedisPresence({ ...options, redisUrl: "redis://127.0.0.1:1" }, log);
  open.push(down);
  const dirty = (down as unknown as { dirty: Set<string> }).dirty;
  for (let i = 0; i < 1000; i++) {
    const key = `t/outage/room-${i}`;
    down.changed(key, new Map([["ann", 1]]));
    down.changed(key, new Map());
  }
  down.changed("t/outage/stays", new Map([["bob", 1]]));
  await Bun.sleep(options.flushMs * 3);
  // Only the channel that still has a member waits for Redis to come back.
  expect([...dirty]).toEqual(["t/outage/stays"]);
});

test("a channel written to Redis and then left is still written once more: its entries are removed", async () => {
  const key = `t/it-${Date.now()}/left`;
  const a = instance();
  const b = instance();
  a.changed(key, new Map([["ann", 1]]));
  await eventually(b, key, { ann: 1 });
  a.changed(key, new Map());
  await eventually(b, key, {});
});

test("a leave whose write failed is written at the next flush: the subject does not linger until its entry expires", async () => {
  const key = `t/it-${Date.now()}/retry`;
  // Entries that outlive the test: only a removal written to Redis takes the subject out in time.
  const leaving = new RedisPresence({ ...options, ttlMs: 60_000 }, log);
  open.push(leaving);
  const reader = instance();
  leaving.changed(key, new Map([["dan", 1]]));
  await eventually(reader, key, { dan: 1 });
  // The next batch fails, as when the connection drops under it (what it queued never reaches Redis).
  const redis = (leaving as unknown as { redis: Redis }).redis;
  const pipeline = redis.pipeline.bind(redis);
  let failed = false;
  redis.pipeline = ((...args: Parameters<typeof pipeline>) => {
    const batch = pipeline(...args);
    if (!failed) {
      failed = true;
      batch.exec = () => Promise.reject(new Error("Connection is closed."));
    }
    return batch;
  }) as typeof redis.pipeline;
  leaving.changed(key, new Map());
  await eventually(reader, key, {});
  expect(failed).toBe(true);
});

/** `count` subjects named `<prefix>-000000`…, one connection each. */
function subjects(prefix: string, count: number): Map<string, number> {
  return new Map(Array.from({ length: count }, (_, i) => [`${prefix}-${String(i).padStart(6, "0")}`, 1]));
}

/** Bytes Redis sent (to every client) while `work` ran: what reading a channel costs it and the reader. */
/**
 * The bytes Redis sent `store` while `work` ran, read off the store's own connection: the server's
 * total would count the other test files' traffic on the same Redis (the suite runs files in parallel).
 */
async function bytesSentTo(store: RedisPresence, work: () => Promise<unknown>): Promise<number> {
  const before = connectionOf(store).bytesRead;
  await work();
  return connectionOf(store).bytesRead - before;
}
const connectionOf = (store: RedisPresence) =>
  (store as unknown as { redis: { stream: { bytesRead: number; bytesWritten: number } } }).redis.stream;
const probe = new IORedis(services().redisUrl);
afterAll(() => probe.disconnect());

async function askPresence(presence: Presence, channel: string) {
  const who: Principal = {
    subject: "reader",
    tenant: "acme",
    scopes: new Set(["subscribe"]),
    channels: undefined,
    expiresAt: Date.now() + 60_000,
  };
  const checks = { admission: { read: () => undefined }, authenticate: async () => who };
  const reply = (await presence.route(checks).handler({} as HttpRequest, { channel })) as HttpReply;
  return JSON.parse(reply.body as string) as { total: number; members: Array<{ subject: string }> };
}

test("a channel of 20,000 members on two instances costs each check and each answer a bounded read, not every member", async () => {
  const channel = `crowd-${Date.now()}`;
  const key = `t/acme/${channel}`;
  // Long-lived entries: no refresh of 10,000 entries runs while the reads are measured.
  const writers = [0, 1].map(() => new RedisPresence({ ...options, ttlMs: 600_000 }, log));
  open.push(...writers);
  writers.forEach((writer, index) => {
    writer.changed(key, subjects(`user-${index}`, 10_000));
  });
  const readerStore = instance();
  const reader = new Presence(readerStore, log);
  const deadline = Date.now() + 20_000;
  while ((await askPresence(reader, channel).catch(() => ({ total: 0 }))).total !== 20_000)
    if (Date.now() > deadline) throw new Error("the 20,000 members were never all written");
    else await Bun.sleep(100);

  reader.watch(key, 1);
  // Each second, for every channel someone here watches: a count, the members being too many to follow.
  const checked = await bytesSentTo(readerStore, () => reader.check());
  // The answer: the total, and the first 1,000 members only.
  let answer = { total: 0, members: [] as Array<{ subject: string }> };
  const answered = await bytesSentTo(readerStore, async () => {
    answer = await askPresence(reader, channel);
  });
  expect(answer.total).toBe(20_000);
  expect(answer.members.map((member) => member.subject)).toEqual([...subjects("user-0", 1000).keys()]);
  // Reading every member is about 1 MB.
  expect(checked).toBeLessThan(5_000);
  expect(answered).toBeLessThan(100_000);
}, 60_000);

test("an instance's own changes since its last write count at once in the total and the first page of a crowded channel", async () => {
  const key = `t/it-${Date.now()}/page`;
  const other = instance();
  other.changed(key, subjects("s", 1500));
  const own = instance();
  own.changed(
    key,
    new Map([
      ["s-000000", 1],
      ["own-only", 1],
    ]),
  );
  const pageOf = async () => {
    const page = await own.members(key, 1000);
    return { total: page.total, first: [...page.members].slice(0, 3) };
  };
  const deadline = Date.now() + 10_000;
  while ((await pageOf().catch(() => ({ total: 0 }))).total !== 1501)
    if (Date.now() > deadline) throw new Error("never written");
    else await Bun.sleep(30);
  expect(await pageOf()).toEqual({
    total: 1501,
    first: [
      ["own-only", 1],
      ["s-000000", 2],
      ["s-000001", 1],
    ],
  });
  // From here it writes nothing: what it answers of its own comes from its live members.
  clearInterval((own as unknown as { timer: ReturnType<typeof setInterval> }).timer);
  own.changed(key, new Map([["a-first", 2]]));
  expect(await pageOf()).toEqual({
    total: 1501,
    first: [
      ["a-first", 2],
      ["s-000000", 1],
      ["s-000001", 1],
    ],
  });
  const page = await own.members(key, 1000);
  expect(page.members.size).toBe(1000);
  expect([...page.members.keys()].at(-1)).toBe("s-000998");
  // Asked only if all fit: a count, no members.
  expect(await own.members(key, 1000, true)).toEqual({ total: 1501, members: new Map() });
  own.changed(key, new Map());
  expect((await own.members(key, 1000)).total).toBe(1500);
});

test("a crashed instance with more subjects than one prune removes is gone after its TTL, count and all", async () => {
  const key = `t/it-${Date.now()}/crowd-crash`;
  const crashed = new RedisPresence(options, log);
  const live = instance();
  crashed.changed(key, subjects("gone", 1200));
  live.changed(key, new Map([["liv", 1]]));
  const deadline = Date.now() + 10_000;
  while ((await live.members(key, 1).catch(() => ({ total: 0 }))).total !== 1201)
    if (Date.now() > deadline) throw new Error("never written");
    else await Bun.sleep(30);
  (crashed as unknown as { redis: { disconnect(): void } }).redis.disconnect();
  clearInterval((crashed as unknown as { timer: ReturnType<typeof setInterval> }).timer);
  await Bun.sleep(options.ttlMs + 100);
  // The first read once they expired: not one of them counted, though a run removes PRUNE_BATCH at most.
  expect(await live.members(key, 1000)).toEqual({ total: 1, members: new Map([["liv", 1]]) });
});

test("scripts Redis no longer holds (SCRIPT FLUSH) are sent again: writes go on", async () => {
  const key = `t/it-${Date.now()}/flushed`;
  const writer = instance();
  const reader = instance();
  writer.changed(key, new Map([["ann", 1]]));
  await eventually(reader, key, { ann: 1 });
  await probe.script("FLUSH");
  writer.changed(key, new Map([["bob", 1]]));
  await eventually(reader, key, { bob: 1 });
});

test("subjects are any strings: a colon, a NUL, letters of several bytes", async () => {
  const key = `t/it-${Date.now()}/odd`;
  const odd = "zoë:1\u0000ø";
  const writer = instance();
  const reader = instance();
  writer.changed(key, new Map([[odd, 2]]));
  await eventually(reader, key, { [odd]: 2 });
  // Told but not yet written: looked up by name, whatever it holds.
  reader.changed(key, new Map([[odd, 1]]));
  expect(await reader.members(key, 1000)).toEqual({ total: 1, members: new Map([[odd, 3]]) });
  writer.changed(key, new Map());
  reader.changed(key, new Map());
  await eventually(reader, key, {});
});

test("a page lists subjects in Redis's order (code points) when it merges its own unwritten ones: U+E000 before an astral letter", async () => {
  const key = `t/it-${Date.now()}/order`;
  const writer = instance();
  // In UTF-8 (Redis) and in code points: "a" < U+E000 < 😀; by `<` (UTF-16 units) 😀 comes before U+E000.
  writer.changed(
    key,
    new Map([
      ["a", 1],
      ["\uE000", 1],
      ["😀", 1],
    ]),
  );
  const reader = instance();
  await ready(reader);
  await flushOf(writer);
  // From here the reader writes nothing: its own subject is merged into each page from its live members.
  clearInterval((reader as unknown as { timer: ReturnType<typeof setInterval> }).timer);
  reader.changed(key, new Map([["😁", 1]]));
  // Redis's first two are "a" and U+E000: 😁, after both and after 😀, is not on the page.
  expect(await reader.members(key, 2)).toEqual({
    total: 4,
    members: new Map([
      ["a", 1],
      ["\uE000", 1],
    ]),
  });
  expect([...(await reader.members(key, 10)).members.keys()]).toEqual(["a", "\uE000", "😀", "😁"]);
});

test("a key of a channel evicted by Redis (maxmemory) leaves no ghost member nor doubled count: the channel is whole again after a refresh", async () => {
  for (const prefix of ["pse", "psc", "pss", "pst"]) {
    const key = `t/it-${Date.now()}/evicted-${prefix}`;
    const a = instance();
    const b = instance();
    a.changed(key, new Map([["ann", 1]]));
    b.changed(key, new Map([["bob", 1]]));
    await eventually(a, key, { ann: 1, bob: 1 });
    // What an eviction does to one of the channel's keys, the others kept.
    await probe.del(`${prefix}:${key}`);
    b.changed(key, new Map());
    // Each instance's members are written again at its next refresh (every ttlMs / 3): then exact, and bob gone.
    await eventually(a, key, { ann: 1 });
    await Bun.sleep(options.ttlMs);
    expect((await a.members(key, 1000)).members).toEqual(new Map([["ann", 1]]));
    await a.close();
    await eventually(b, key, {});
  }
}, 60_000);

/** Resolves once the store's connection is ready: a flush before that writes nothing. */
async function ready(store: RedisPresence): Promise<void> {
  const redis = (store as unknown as { redis: Redis }).redis;
  while (redis.status !== "ready") await Bun.sleep(10);
}
const flushOf = (store: RedisPresence) => (store as unknown as { flush(): Promise<void> }).flush();

test("a flush of many members goes in round trips each within the command timeout: written once, and a read meanwhile is answered", async () => {
  const lines: string[] = [];
  const debugLog = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
  // A timeout well above one round trip's work (some 20 ms), well below the whole flush's (some 400 ms).
  const big = new RedisPresence(
    { ...options, ttlMs: 600_000, flushMs: 60_000, commandTimeoutMs: 150 },
    debugLog,
  );
  open.push(big);
  const run = `t/it-${Date.now()}`;
  big.changed(`${run}/crowd`, subjects("u", 30_000));
  for (let i = 0; i < 1000; i++) big.changed(`${run}/room-${i}`, new Map([["ann", 1]]));
  await ready(big);
  const flushed = flushOf(big);
  // Asked while the flush is being written: answered (after it), not timed out behind it.
  const page = await big.members(`${run}/crowd`, 1);
  await flushed;
  expect(page.total).toBe(30_000);
  expect(lines.filter((line) => line.includes("presence write failed"))).toEqual([]);
  const reader = instance();
  await ready(reader);
  expect((await reader.members(`${run}/room-999`, 10)).members).toEqual(new Map([["ann", 1]]));
}, 30_000);

test("an instance closed while a flush is under way still removes its members at once", async () => {
  const key = `t/it-${Date.now()}/closing`;
  // Entries that outlive the test: only a removal written to Redis takes the members out in time.
  const leaving = new RedisPresence({ ...options, ttlMs: 60_000, flushMs: 60_000 }, log);
  const reader = instance();
  await ready(leaving);
  leaving.changed(key, subjects("m", 5000));
  const flushed = flushOf(leaving);
  await leaving.close();
  await flushed;
  expect((await reader.members(key, 1)).total).toBe(0);
});

test("thousands of members come or gone here since the last write: a read costs a page, not a lookup of each", async () => {
  const key = `t/it-${Date.now()}/exodus`;
  // Writes only when told to (or when a read needs it).
  const busy = new RedisPresence({ ...options, ttlMs: 600_000, flushMs: 60_000 }, log);
  open.push(busy);
  const other = instance();
  other.changed(key, new Map([["zed", 1]]));
  await eventually(other, key, { zed: 1 });
  await ready(busy);
  const members = subjects("u", 20_000);
  busy.changed(key, members);
  await flushOf(busy);
  expect((await other.members(key, 1)).total).toBe(20_001);
  // Every client here gone at once (a network blip), and 5,000 others come, before the next write.
  members.clear();
  for (const [subject] of subjects("v", 5000)) members.set(subject, 1);
  busy.changed(key, members);
  let page: PresencePage = { total: 0, members: new Map() };
  const sent = await bytesSentTo(busy, async () => {
    page = await busy.members(key, 1000, true);
  });
  // Old: the 20,000 gone read as a page of 21,000 and looked up, with the 5,000 come: some 760 kB.
  expect(sent).toBeLessThan(20_000);
  expect(page.total).toBe(5001);
  expect(page.members.size).toBe(0);
  expect((await busy.members(key, 2)).members).toEqual(
    new Map([
      ["v-000000", 1],
      ["v-000001", 1],
    ]),
  );
}, 30_000);

test("a subject with a lone surrogate (a JWT sub may hold one) is listed by its own instance once written, as by the others", async () => {
  const channel = `surrogate-${Date.now()}`;
  const key = `t/acme/${channel}`;
  const store = instance();
  const presence = new Presence(store, log);
  await ready(store);
  presence.change(key, "\ud800x", 1);
  await flushOf(store);
  // UTF-8 in Redis: U+FFFD for the lone surrogate, on every instance.
  expect(await askPresence(presence, channel)).toMatchObject({
    total: 1,
    members: [{ subject: "\ufffdx", connections: 1 }],
  });
  const other = instance();
  await ready(other);
  expect((await other.members(key, 10)).members).toEqual(new Map([["\ufffdx", 1]]));
});

test("an instance with a shorter TTL (PRESENCE_TTL_MS changed by a rolling deploy) does not shorten the others' presence", async () => {
  const key = `t/it-${Date.now()}/ttl`;
  const long = new RedisPresence({ ...options, ttlMs: 600_000, flushMs: 60_000 }, log);
  const short = new RedisPresence({ ...options, ttlMs: 3000 }, log);
  open.push(long, short);
  await Promise.all([ready(long), ready(short)]);
  long.changed(key, new Map([["ann", 1]]));
  await flushOf(long);
  short.changed(key, new Map([["bob", 1]]));
  await eventually(long, key, { ann: 1, bob: 1 });
  short.changed(key, new Map());
  await eventually(long, key, { ann: 1 });
  // Past the short TTL, long before the long one's next refresh.
  await Bun.sleep(3500);
  expect((await long.members(key, 10)).members).toEqual(new Map([["ann", 1]]));
}, 20_000);

/** Runs `act` with this process's clock `skewMs` off: what a store does up to its first await (reads the clock). */
function withClockSkew<T>(skewMs: number, act: () => T): T {
  const realNow = Date.now;
  Date.now = () => realNow() + skewMs;
  try {
    return act();
  } finally {
    Date.now = realNow;
  }
}

test("instances whose clocks are 25 s apart list one another's live members: entries expire by Redis's clock", async () => {
  const key = `t/it-${Date.now()}/skew`;
  const live = instance();
  live.changed(key, new Map([["liv", 1]]));
  // Written only when the test flushes them, each with its clock off by 25 s (well past the 900 ms TTL).
  const ahead = new RedisPresence({ ...options, flushMs: 60_000 }, log);
  const behind = new RedisPresence({ ...options, flushMs: 60_000 }, log);
  open.push(ahead, behind);
  // In Redis, as another instance reads it (by the right clock).
  await eventually(ahead, key, { liv: 1 });
  await ready(behind);
  ahead.changed(key, new Map([["fwd", 1]]));
  behind.changed(key, new Map([["bck", 1]]));
  await withClockSkew(25_000, () => flushOf(ahead));
  await withClockSkew(-25_000, () => flushOf(behind));
  const all = new Map([
    ["bck", 1],
    ["fwd", 1],
    ["liv", 1],
  ]);
  // Each read prunes first: by the clock ahead, the live entries; by the right one, the entries written behind.
  expect((await withClockSkew(25_000, () => ahead.members(key, 10))).members).toEqual(all);
  expect((await withClockSkew(-25_000, () => behind.members(key, 10))).members).toEqual(all);
  expect((await live.members(key, 10)).members).toEqual(all);
});

test("a join in a channel of 5,000 members here writes that subject, not the whole channel again", async () => {
  const key = `t/it-${Date.now()}/churn`;
  // Refreshed (every member written again) only every ttlMs / 3: not during the test.
  const store = new RedisPresence({ ...options, ttlMs: 600_000, flushMs: 60_000 }, log);
  open.push(store);
  await ready(store);
  const members = subjects("u", 5000);
  store.changed(key, members);
  await flushOf(store);
  members.set("newcomer", 1);
  members.set("u-000001", 2);
  members.delete("u-000002");
  store.changed(key, members);
  // Off the store's own connection: Redis's total counts the other test files' traffic too.
  const before = connectionOf(store).bytesWritten;
  await flushOf(store);
  // Old: the 5,000 members sent again, some 80 kB.
  expect(connectionOf(store).bytesWritten - before).toBeLessThan(5_000);
  const reader = instance();
  await ready(reader);
  const page = await reader.members(key, 3);
  expect(page.total).toBe(5000);
  expect(page.members).toEqual(
    new Map([
      ["newcomer", 1],
      ["u-000000", 1],
      ["u-000001", 2],
    ]),
  );
});

test("a read of a channel with 200,000 members here, unchanged since written, does not go through them", async () => {
  const key = `t/it-${Date.now()}/huge`;
  const store = new RedisPresence(
    { ...options, ttlMs: 600_000, flushMs: 60_000, commandTimeoutMs: 5000 },
    log,
  );
  open.push(store);
  await ready(store);
  store.changed(key, subjects("u", 200_000));
  await flushOf(store);
  const small = `t/it-${Date.now()}/small`;
  store.changed(small, new Map([["ann", 1]]));
  await flushOf(store);
  const took = async (channelKey: string) => {
    const times: number[] = [];
    for (let i = 0; i < 7; i++) {
      const start = performance.now();
      await store.members(channelKey, 1, true);
      times.push(performance.now() - start);
    }
    return times.sort((a, b) => a - b)[3] as number;
  };
  const base = await took(small);
  // Old: each read spread and filtered the 200,000 twice, some 30-60 ms of the event loop.
  expect(await took(key)).toBeLessThan(base + 10);
}, 60_000);

test("a read of a channel the flush under way does not change is answered without waiting for it (a refresh of 100,000 members)", async () => {
  const run = `t/it-${Date.now()}`;
  const store = new RedisPresence(
    { ...options, ttlMs: 600_000, flushMs: 60_000, commandTimeoutMs: 5000 },
    log,
  );
  open.push(store);
  await ready(store);
  store.changed(`${run}/huge`, subjects("u", 100_000));
  store.changed(`${run}/small`, new Map([["ann", 1]]));
  await flushOf(store);
  // A refresh due: every member written again, none of them changed.
  (store as unknown as { lastRefresh: number }).lastRefresh = 0;
  let refreshed = false;
  const refresh = flushOf(store).then(() => {
    refreshed = true;
  });
  expect((await store.members(`${run}/small`, 10)).members).toEqual(new Map([["ann", 1]]));
  expect(refreshed).toBe(false);
  await refresh;
}, 60_000);

test("thousands gone during a refresh under way: the read writes them after it, not looking each up", async () => {
  const run = `t/it-${Date.now()}`;
  const store = new RedisPresence(
    { ...options, ttlMs: 600_000, flushMs: 60_000, commandTimeoutMs: 5000 },
    log,
  );
  open.push(store);
  await ready(store);
  store.changed(`${run}/huge`, subjects("u", 50_000));
  store.changed(`${run}/room`, subjects("r", 3000));
  await flushOf(store);
  (store as unknown as { lastRefresh: number }).lastRefresh = 0;
  const refresh = flushOf(store);
  store.changed(`${run}/room`, new Map());
  let page: PresencePage = { total: -1, members: new Map() };
  const sent = await bytesSentTo(store, async () => {
    page = await store.members(`${run}/room`, 1000, true);
  });
  await refresh;
  expect(page.total).toBe(0);
  // Old: a page of 4,000 entries and 3,000 lookups, some 100 kB.
  expect(sent).toBeLessThan(20_000);
}, 60_000);
