import { afterEach, expect, setSystemTime, test } from "bun:test";
import { isoNow } from "../../src/lib/time.ts";

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
