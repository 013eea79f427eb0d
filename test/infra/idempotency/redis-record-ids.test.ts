import { afterAll, describe, expect, test } from "bun:test";
import pino from "pino";
import { RedisRecordIdStore } from "../../../src/infra/idempotency/redis-record-ids.ts";
import { services } from "../../support/kafka.ts";

const stores: RedisRecordIdStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close();
});

function store(redisUrl: string, commandTimeoutMs = 500) {
  let failures = 0;
  const created = new RedisRecordIdStore(
    { redisUrl, pendingMs: 5000, commandTimeoutMs, onFailOpen: () => failures++ },
    pino({ level: "silent" }),
  );
  stores.push(created);
  return { store: created, failures: () => failures };
}

describe("RedisRecordIdStore", () => {
  test("two instances share ids: one claims, the other sees it pending, then seen; releases are per claimant", async () => {
    const first = store(services().redisUrl);
    const second = store(services().redisUrl);
    const tenant = `t-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    expect(await first.store.claim(tenant, ["a", "b"], "r1")).toEqual(["new", "new"]);
    expect(await second.store.claim(tenant, ["a", "c"], "r2")).toEqual(["pending", "new"]);
    await first.store.confirm(tenant, ["a"], "r1", 60_000);
    await first.store.release(tenant, ["b", "c"], "r1");
    // "b" was r1's claim and is free again; "c" is r2's and stays.
    expect(await second.store.claim(tenant, ["a", "b", "c"], "r3")).toEqual(["seen", "new", "pending"]);
    expect(await first.store.claim(`${tenant}-other`, ["a"], "r4")).toEqual(["new"]);
    expect(first.failures() + second.failures()).toBe(0);
  });

  test("racing claims of the same ids: each id is new for exactly one request", async () => {
    const tenant = `race-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const instances = [store(services().redisUrl), store(services().redisUrl)];
    const ids = Array.from({ length: 2500 }, (_, n) => `id-${n}`);
    const verdicts = await Promise.all(
      Array.from({ length: 6 }, (_, n) =>
        (instances[n % 2] as ReturnType<typeof store>).store.claim(tenant, ids, `r${n}`),
      ),
    );
    for (let at = 0; at < ids.length; at++) {
      expect(verdicts.filter((one) => one[at] === "new").length).toBe(1);
    }
  });

  test("Redis unreachable: every id is new (fail open), counted", async () => {
    const down = store("redis://127.0.0.1:1", 100);
    expect(await down.store.claim("acme", ["a", "b"], "r1")).toEqual(["new", "new"]);
    await down.store.confirm("acme", ["a"], "r1", 1000);
    expect(down.failures()).toBe(2);
  });
});
