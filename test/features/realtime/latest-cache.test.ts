import { describe, expect, test } from "bun:test";
import { LatestCache, type ScannedLatest } from "../../../src/features/realtime/latest-cache.ts";
import { message } from "../../support/fanout-log.ts";

const scanned = (messages: number, epoch = "e1", partition = 0): ScannedLatest => ({
  epoch,
  partition,
  from: 0n,
  until: 100n,
  messages: Array.from({ length: messages }, (_, offset) => message(offset)),
});

describe("LatestCache: what scans for channels' latest events found", () => {
  test("holds entries within its bytes, the least recently used going first", () => {
    const cache = new LatestCache(3300);
    cache.set("acme", "a", scanned(3));
    cache.set("acme", "b", scanned(3));
    expect(cache.get("acme", "a", "e1", 0)).toBeDefined();
    cache.set("acme", "c", scanned(3));
    cache.set("acme", "d", scanned(3));
    expect(cache.heldBytes).toBeLessThanOrEqual(3300);
    // b was the least recently used: it went first.
    expect(cache.get("acme", "b", "e1", 0)).toBeUndefined();
    expect(cache.get("acme", "d", "e1", 0)).toBeDefined();
  });

  test("an entry larger than the whole bound is not kept; with 0 bytes nothing is", () => {
    const cache = new LatestCache(1000);
    cache.set("acme", "big", scanned(100));
    expect(cache.size).toBe(0);
    const none = new LatestCache(0);
    none.set("acme", "a", scanned(0));
    expect(none.size).toBe(0);
  });

  // Found by review: one tenant asking for many channels' latest events pushed every other tenant's
  // entries out (least recently used first, whoever held them), so their next requests scanned again.
  test("a tenant filling the cache pushes out its own entries, not those of a tenant holding less", () => {
    const cache = new LatestCache(20_000);
    cache.set("globex", "quiet", scanned(3));
    for (let n = 0; n < 100; n++) cache.set("acme", `c${n}`, scanned(3));
    expect(cache.heldBytes).toBeLessThanOrEqual(20_000);
    expect(cache.get("globex", "quiet", "e1", 0)).toBeDefined();
    expect(cache.get("acme", "c99", "e1", 0)).toBeDefined();
    expect(cache.get("acme", "c0", "e1", 0)).toBeUndefined();
    // The same channel name of another tenant is another entry.
    expect(cache.get("globex", "c99", "e1", 0)).toBeUndefined();
  });

  // Found in the tenant-versus-tenant audit: the writer's bytes were counted before its new entry, so a
  // tenant holding as much as another, once that entry was in, pushed the other's entries out.
  test("the writer counts with the entry it brings and pays on a tie; an entry only another tenant's could make room for is not kept", () => {
    const cache = new LatestCache(2500);
    cache.set("globex", "a", scanned(3));
    cache.set("globex", "b", scanned(3));
    cache.set("acme", "x", scanned(3));
    // globex held more than acme would: it paid once.
    expect(cache.get("globex", "a", "e1", 0)).toBeUndefined();
    cache.set("acme", "y", scanned(3));
    // acme would hold as much as globex: acme pays, globex keeps b.
    expect(cache.get("globex", "b", "e1", 0)).toBeDefined();
    expect(cache.get("acme", "x", "e1", 0)).toBeUndefined();
    expect(cache.get("acme", "y", "e1", 0)).toBeDefined();

    // Room for one entry, two tenants of names as long (entries as large): the first one's stays.
    const one = new LatestCache(1500);
    one.set("abcd", "a", scanned(3));
    one.set("acme", "a", scanned(3));
    expect(one.get("abcd", "a", "e1", 0)).toBeDefined();
    expect(one.get("acme", "a", "e1", 0)).toBeUndefined();
  });

  test("the fan-out topic made again (another epoch) drops every entry; another partition drops that one", () => {
    const cache = new LatestCache(1 << 20);
    cache.set("acme", "a", scanned(1));
    cache.set("acme", "b", scanned(1));
    expect(cache.get("acme", "a", "e1", 1)).toBeUndefined();
    expect(cache.size).toBe(1);
    expect(cache.get("acme", "b", "e2", 0)).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.heldBytes).toBe(0);
  });
});

// Found by review: an entry counted only its messages' payloads and record ids, yet each message read
// from the log holds strings of its own (tenant, channel, record type, trace context: a tracestate up to
// 512 characters) and more than 120 bytes of objects (about 230 measured on Bun): the memory the cache
// took could be several times REPLAY_LATEST_CACHE_BYTES.
test("an entry counts every string its messages hold, and their objects", () => {
  const plain = message(1, "orders.eu-west-1", "acme-tenant");
  const traced = {
    ...plain,
    record: { type: "order.created", id: "r-1" },
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    tracestate: `vendor=${"x".repeat(500)}`,
  };
  const held = (one: typeof plain) => {
    const cache = new LatestCache(1 << 20);
    cache.set("acme", "k", { epoch: "e1", partition: 0, from: 0n, until: 2n, messages: [one] });
    return cache.heldBytes;
  };
  const strings = (one: typeof traced) =>
    2 *
    (one.tenant.length +
      (one.channel?.length ?? 0) +
      one.dataJson.length +
      one.record.type.length +
      one.record.id.length +
      one.traceparent.length +
      one.tracestate.length);
  expect(held(plain)).toBeGreaterThanOrEqual(230 + 2 * (plain.dataJson.length + 16 + 11));
  expect(held(traced)).toBeGreaterThanOrEqual(230 + strings(traced));
});
