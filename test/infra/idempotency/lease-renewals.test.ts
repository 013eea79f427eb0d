import { expect, test } from "bun:test";
import { LeaseRenewals } from "../../../src/infra/idempotency/lease-renewals.ts";
import { waitUntil } from "../../support/wait.ts";

test("held keys are renewed in slices of at most 1000, a lost one is dropped, and the timer stops with the last key", async () => {
  const calls: number[] = [];
  const renewals = new LeaseRenewals(
    { leaseMs: 300, pendingMs: 60_000 },
    async (keys) => {
      calls.push(keys.length);
      return keys[0] === "k0" ? [1] : [];
    },
    () => {},
  );
  for (let i = 0; i < 2500; i++) renewals.hold(`k${i}`, "v");
  await Bun.sleep(150);
  expect(calls.slice(0, 3)).toEqual([1000, 1000, 500]);
  expect(renewals.valueOf("k0")).toBeUndefined();
  expect(renewals.valueOf("k1")).toBe("v");
  for (let i = 1; i < 2500; i++) renewals.drop(`k${i}`);
  const after = calls.length;
  await Bun.sleep(250);
  expect(calls.length).toBe(after);
});

test("a renewal that fails is reported once per tick, and the keys stay held for the next", async () => {
  const errors: unknown[] = [];
  const renewals = new LeaseRenewals(
    { leaseMs: 300, pendingMs: 60_000 },
    () => Promise.reject(new Error("Redis down")),
    (error) => errors.push(error),
  );
  for (let i = 0; i < 1500; i++) renewals.hold(`k${i}`);
  await Bun.sleep(150);
  expect(errors).toHaveLength(1);
  expect(renewals.valueOf("k1499")).toBe("");
  renewals.clear();
});

test("a tick is skipped while the previous renewal still runs (a slow Redis), and the next one after it runs", async () => {
  const calls: number[] = [];
  let answer = () => {};
  const renewals = new LeaseRenewals(
    { leaseMs: 300, pendingMs: 60_000 },
    (keys) => {
      calls.push(keys.length);
      return new Promise<number[]>((resolve) => {
        answer = () => resolve([]);
      });
    },
    () => {},
  );
  for (let i = 0; i < 1500; i++) renewals.hold(`k${i}`);
  // Ticks every 100 ms: three came while the first slice of the first waits.
  await Bun.sleep(350);
  expect(calls).toEqual([1000]);
  answer();
  await Bun.sleep(10);
  expect(calls).toEqual([1000, 500]);
  answer();
  await waitUntil(() => calls.length === 3, "the next tick's renewal");
  expect(calls).toEqual([1000, 500, 1000]);
  renewals.clear();
  answer();
});
