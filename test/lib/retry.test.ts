import { expect, test } from "bun:test";
import pino from "pino";
import { startWithRetry } from "../../src/lib/retry.ts";
import { waitUntil } from "../support/wait.ts";

function recordingLog() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

test("a start that fails is retried until it succeeds, warned once and reported once after", async () => {
  const { log, lines } = recordingLog();
  let calls = 0;
  startWithRetry(
    "kafka",
    async () => {
      calls++;
      if (calls < 4) throw new Error(`down ${calls}`);
    },
    log,
    5,
  );
  await waitUntil(() => lines.some((line) => line.msg === "started after retries"), "the fourth attempt");
  expect(calls).toBe(4);
  expect(lines.filter((line) => line.msg === "start failed; retrying in the background")).toHaveLength(1);
  expect(lines.find((line) => line.msg === "started after retries")).toMatchObject({
    component: "kafka",
    failures: 3,
  });
});

test("a first attempt that succeeds logs nothing and is not repeated", async () => {
  const { log, lines } = recordingLog();
  let calls = 0;
  startWithRetry("redis", async () => void calls++, log, 5);
  await Bun.sleep(0);
  expect(calls).toBe(1);
  expect(lines).toEqual([]);
});

test("stop ends the attempts: none is made after it", async () => {
  const { log } = recordingLog();
  let calls = 0;
  const retrying = startWithRetry(
    "s3",
    async () => {
      calls++;
      throw new Error("down");
    },
    log,
    5,
  );
  await waitUntil(() => calls >= 2, "a retry");
  retrying.stop();
  const stoppedAt = calls;
  // A retry would come within 5 ms; twenty intervals without one is no retry at all.
  await Bun.sleep(100);
  expect(calls).toBe(stoppedAt);
});
