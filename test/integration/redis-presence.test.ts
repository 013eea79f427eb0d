import { afterAll, expect, test } from "bun:test";
import type { Redis } from "ioredis";
import pino from "pino";
import { RedisPresence } from "../../src/infra/presence/redis-presence.ts";
import type { PresenceMembers } from "../../src/ports/presence.ts";
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
    members = await store.members(key).catch(() => new Map());
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
  expect(Object.fromEntries(await slow.members(key))).toEqual({ ann: 1, bob: 1 });
  slow.changed(key, new Map());
  expect(Object.fromEntries(await slow.members(key))).toEqual({ bob: 1 });
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
  const multi = redis.multi.bind(redis);
  let failed = false;
  redis.multi = ((...args: Parameters<typeof multi>) => {
    const batch = multi(...args);
    if (!failed) {
      failed = true;
      batch.exec = () => Promise.reject(new Error("Connection is closed."));
    }
    return batch;
  }) as typeof redis.multi;
  leaving.changed(key, new Map());
  await eventually(reader, key, {});
  expect(failed).toBe(true);
});
