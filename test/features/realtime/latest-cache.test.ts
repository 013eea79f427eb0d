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
    const cache = new LatestCache(2000);
    cache.set("a", scanned(3));
    cache.set("b", scanned(3));
    expect(cache.get("a", "e1", 0)).toBeDefined();
    cache.set("c", scanned(3));
    cache.set("d", scanned(3));
    expect(cache.heldBytes).toBeLessThanOrEqual(2000);
    // b was the least recently used: it went first.
    expect(cache.get("b", "e1", 0)).toBeUndefined();
    expect(cache.get("d", "e1", 0)).toBeDefined();
  });

  test("an entry larger than the whole bound is not kept; with 0 bytes nothing is", () => {
    const cache = new LatestCache(1000);
    cache.set("big", scanned(100));
    expect(cache.size).toBe(0);
    const none = new LatestCache(0);
    none.set("a", scanned(0));
    expect(none.size).toBe(0);
  });

  test("the fan-out topic made again (another epoch) drops every entry; another partition drops that one", () => {
    const cache = new LatestCache(1 << 20);
    cache.set("a", scanned(1));
    cache.set("b", scanned(1));
    expect(cache.get("a", "e1", 1)).toBeUndefined();
    expect(cache.size).toBe(1);
    expect(cache.get("b", "e2", 0)).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.heldBytes).toBe(0);
  });
});
