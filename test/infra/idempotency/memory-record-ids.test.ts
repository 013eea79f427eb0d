import { expect, test } from "bun:test";
import { MemoryRecordIdStore } from "../../../src/infra/idempotency/memory-record-ids.ts";

test("an id is new once, pending while its claim holds, seen once confirmed, per tenant", async () => {
  const store = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 });
  expect(await store.claim("acme", ["a", "b"], "r1")).toEqual(["new", "new"]);
  expect(await store.claim("acme", ["a", "c"], "r2")).toEqual(["pending", "new"]);
  expect(await store.claim("globex", ["a"], "r3")).toEqual(["new"]);
  await store.confirm("acme", ["a", "b"], "r1", 60_000);
  expect(await store.claim("acme", ["a", "b"], "r4")).toEqual(["seen", "seen"]);
});

test("a release frees only the releasing request's claims; a failed write can be retried", async () => {
  const store = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 });
  await store.claim("acme", ["a"], "r1");
  await store.release("acme", ["a"], "someone-else");
  expect(await store.claim("acme", ["a"], "r2")).toEqual(["pending"]);
  await store.release("acme", ["a"], "r1");
  expect(await store.claim("acme", ["a"], "r2")).toEqual(["new"]);
});

test("claims and windows expire; a confirmation leaves another request's newer claim alone", async () => {
  const store = new MemoryRecordIdStore({ pendingMs: 20, maxIds: 100 });
  await store.claim("acme", ["a", "b"], "r1");
  await Bun.sleep(30);
  // r1's claim expired: r2 claims "a"; r1's write then succeeds and confirms only "b".
  expect(await store.claim("acme", ["a"], "r2")).toEqual(["new"]);
  await store.confirm("acme", ["a", "b"], "r1", 20);
  expect(await store.claim("acme", ["a", "b"], "r3")).toEqual(["pending", "seen"]);
  await Bun.sleep(30);
  expect(await store.claim("acme", ["b"], "r4")).toEqual(["new"]);
});

test("bounded by count, oldest first, early evictions counted", async () => {
  let early = 0;
  const store = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 3, onEarlyEviction: () => early++ });
  await store.claim("acme", ["1", "2", "3", "4", "5"], "r1");
  expect(store.size).toBe(3);
  expect(early).toBe(2);
  expect(await store.claim("acme", ["1", "5"], "r2")).toEqual(["new", "pending"]);
  await store.close();
  expect(store.size).toBe(0);
});
