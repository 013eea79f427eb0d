import { afterEach, expect, setSystemTime, test } from "bun:test";
import { isoNow, sleep, withDeadline } from "../../src/lib/time.ts";

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
