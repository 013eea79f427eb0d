import { describe, expect, test } from "bun:test";
import { tally } from "./tally.ts";

const bunRun = (body: string) => `bun test v1.4.5 (a7733435c)\n\nx.test.ts:\n${body}`;

describe("tally counts the tests inside a group's log", () => {
  test("bun's summary: skips and todos are skipped, an unloadable file is a failure bun already counts", () => {
    const log = bunRun(
      "(pass) ok\n(skip) sk\n(todo) td\n(fail) bad\n\n# Unhandled error between tests\n\n 1 pass\n 1 skip\n 1 todo\n 2 fail\n 1 error\nRan 5 tests across 2 files. [6.00ms]\n",
    );
    expect(tally(log, 1)).toEqual({ passed: 1, failed: 2, skipped: 2 });
  });

  test("a bun run that crashed before its summary: the tests it reported, and the crash as a failure", () => {
    expect(tally(bunRun("(pass) a\n(pass) b\n(skip) c\nSegmentation fault\n"), 139)).toEqual({
      passed: 2,
      failed: 1,
      skipped: 1,
    });
  });

  test("several bun runs in one log (deploy/check) add up", () => {
    const run = bunRun(" 3 pass\n 0 fail\nRan 3 tests across 1 file.\n");
    expect(tally(`${run}\n${run}`, 0)).toEqual({ passed: 6, failed: 0, skipped: 0 });
  });

  test("Schemathesis's test cases: failing and errored cases fail, skipped ones are skipped", () => {
    expect(tally("Test cases:\n  208 generated, 208 passed, 8 skipped\n", 0)).toEqual({
      passed: 200,
      failed: 0,
      skipped: 8,
    });
    expect(
      tally("Test cases:\n  100 generated, 3 found 2 unique failures, 1 errored, 4 skipped\n", 1),
    ).toEqual({
      passed: 92,
      failed: 4,
      skipped: 4,
    });
  });

  test("check lines from our scripts (k6 checks and thresholds, the soak)", () => {
    const log = "check: pass k6 on node: 202 accepted\ncheck: fail soak on bun: heap\ncheck: skip x\n";
    expect(tally(log, 1)).toEqual({ passed: 1, failed: 1, skipped: 1 });
  });

  test("a failed exit with no failure reported is one failure; a silent group is one test", () => {
    expect(tally(bunRun(" 4 pass\n 0 fail\nRan 4 tests across 1 file.\n"), 1)).toEqual({
      passed: 4,
      failed: 1,
      skipped: 0,
    });
    expect(tally("lint output\n", 0)).toEqual({ passed: 1, failed: 0, skipped: 0 });
    expect(tally("lint output\n", 1)).toEqual({ passed: 0, failed: 1, skipped: 0 });
  });
});
