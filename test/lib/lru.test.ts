import { describe, expect, test } from "bun:test";
import { LruCache } from "../../src/lib/lru.ts";

describe("LruCache", () => {
  test("past maxSize the least recently read or written entry goes", () => {
    const cache = new LruCache<string, number>(2);
    cache.set("a", 1);
    cache.set("b", 2);
    expect(cache.get("a")).toBe(1);
    cache.set("c", 3);
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("a")).toBe(1);
    expect(cache.get("c")).toBe(3);
  });

  test("reading the newest entry again keeps the order", () => {
    const cache = new LruCache<string, number>(2);
    cache.set("a", 1);
    cache.set("b", 2);
    expect(cache.get("b")).toBe(2);
    expect(cache.get("b")).toBe(2);
    cache.set("c", 3);
    expect(cache.get("a")).toBeUndefined();
    expect(cache.get("b")).toBe(2);
  });

  test("a deleted newest entry is read again as any other", () => {
    const cache = new LruCache<string, number>(2);
    cache.set("a", 1);
    cache.set("b", 2);
    cache.delete("b");
    cache.set("b", 3);
    expect(cache.get("a")).toBe(1);
    cache.set("c", 4);
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("a")).toBe(1);
  });

  test("maxSize 0 keeps nothing", () => {
    const cache = new LruCache<string, number>(0);
    cache.set("a", 1);
    expect(cache.get("a")).toBeUndefined();
  });

  test("past maxWeight the least recently used entries go until the new one fits; one heavier than the bound alone is not kept", () => {
    const cache = new LruCache<string, number>(100, 10);
    cache.set("a", 1, 4);
    cache.set("b", 2, 4);
    expect(cache.get("a")).toBe(1);
    cache.set("c", 3, 4);
    expect([cache.get("a"), cache.get("b"), cache.get("c")]).toEqual([1, undefined, 3]);
    // Replacing an entry gives its weight back first.
    cache.set("c", 4, 6);
    expect([cache.get("a"), cache.get("c")]).toEqual([1, 4]);
    cache.set("d", 5, 8);
    expect([cache.get("a"), cache.get("c"), cache.get("d")]).toEqual([undefined, undefined, 5]);
    cache.set("e", 6, 11);
    expect([cache.get("d"), cache.get("e")]).toEqual([5, undefined]);
    // A deleted entry's weight is freed.
    cache.delete("d");
    cache.set("f", 7, 10);
    expect(cache.get("f")).toBe(7);
  });
});
