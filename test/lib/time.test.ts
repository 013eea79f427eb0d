import { afterEach, expect, setSystemTime, test } from "bun:test";
import { Deadlines, isoNow, sleep, withDeadline } from "../../src/lib/time.ts";

afterEach(() => {
  setSystemTime();
});

test("isoNow is the current time in ISO 8601, and follows the clock from one millisecond to the next", () => {
  setSystemTime(new Date("2026-01-02T03:04:05.006Z"));
  expect(isoNow()).toBe("2026-01-02T03:04:05.006Z");
  expect(isoNow()).toBe("2026-01-02T03:04:05.006Z");
  setSystemTime(new Date("2026-01-02T03:04:05.007Z"));
  expect(isoNow()).toBe("2026-01-02T03:04:05.007Z");
});

test("withDeadline settles as the promise does in time, else rejects with the deadline's error and ignores a late outcome", async () => {
  const timeout = () => new Error("too late");
  expect(await withDeadline(Promise.resolve(7), 1000, timeout)).toBe(7);
  await expect(withDeadline(Promise.reject(new Error("refused")), 1000, timeout)).rejects.toThrow("refused");
  let failLate!: (error: Error) => void;
  const late = new Promise<number>((_, reject) => {
    failLate = reject;
  });
  await expect(withDeadline(late, 5, timeout)).rejects.toThrow("too late");
  // Rejecting after the deadline is no unhandled rejection: the deadline's promise already answered.
  failLate(new Error("after the deadline"));
  await sleep(0);
});

test("Deadlines: each promise settles as it does in time, else rejects at its own deadline; the timer goes when none waits", async () => {
  const deadlines = new Deadlines(40);
  const timeout = () => new Error("too late");
  expect(await deadlines.within(Promise.resolve(7), timeout)).toBe(7);
  await expect(deadlines.within(Promise.reject(new Error("refused")), timeout)).rejects.toThrow("refused");

  // Three waits started 20 ms apart: the first two expire at their own deadlines, the third is answered in time.
  const outcomes: string[] = [];
  const started = performance.now();
  const watch = (name: string, promise: Promise<unknown>) =>
    promise.then(
      () => outcomes.push(`${name} answered`),
      (error: Error) =>
        outcomes.push(`${name} ${error.message} at ${Math.round((performance.now() - started) / 20)}`),
    );
  const never = () => new Promise<never>(() => {});
  const first = watch("first", deadlines.within(never(), timeout));
  await sleep(20);
  const second = watch("second", deadlines.within(never(), timeout));
  await sleep(20);
  let answer!: () => void;
  const third = watch(
    "third",
    deadlines.within(
      new Promise<void>((resolve) => {
        answer = resolve;
      }),
      timeout,
    ),
  );
  await Promise.all([first, second]);
  answer();
  await third;
  // Deadlines at 40 and 60 ms (in units of 20 ms: 2 and 3, give or take the timers' slack).
  expect(outcomes.slice(0, 2).map((outcome) => outcome.replace(/ at \d+$/, ""))).toEqual([
    "first too late",
    "second too late",
  ]);
  expect(Number(outcomes[0]?.split(" at ")[1])).toBeGreaterThanOrEqual(2);
  expect(Number(outcomes[1]?.split(" at ")[1])).toBeGreaterThanOrEqual(3);
  expect(outcomes[2]).toBe("third answered");
  // Nothing waits: no timer keeps the process alive.
  expect((deadlines as unknown as { timer: unknown }).timer).toBeUndefined();
});
