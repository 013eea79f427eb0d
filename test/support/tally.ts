/**
 * Counts the tests inside one group's log for scripts/test-all, from each
 * runner's own report:
 *
 * - bun test: its summary (" N pass", " N skip", " N todo", " N fail"; a file
 *   that fails to load is an "Unhandled error between tests", which bun counts
 *   as a fail). A bun run that printed its header but no summary crashed: the
 *   tests it reported one by one count, and the crash is one failure more.
 * - Schemathesis: its test-case summary ("Test cases:" then "N generated,
 *   N passed" or "N generated, N found N unique failures", then ", N errored",
 *   ", N skipped"); generated cases that are neither failed, errored nor skipped passed.
 * - Our own scripts (loadtest/run for k6's checks and thresholds, the soak):
 *   one line per check, `check: pass|fail|skip <what>`.
 *
 * A group with a non-zero exit status and no failure in its report counts one
 * failure more; a group that reports nothing counts as one test.
 *
 *   bun test/support/tally.ts <log> <exit status>   prints "<passed> <failed> <skipped>"
 */
import { readFileSync } from "node:fs";

export interface Tally {
  passed: number;
  failed: number;
  skipped: number;
}

function countBunRun(lines: string[]): Tally & { complete: boolean } {
  const tally = { passed: 0, failed: 0, skipped: 0, complete: false };
  const summary = { pass: 0, fail: 0, skip: 0, todo: 0 };
  const oneByOne = { passed: 0, failed: 0, skipped: 0 };
  for (const line of lines) {
    const total = /^ *(\d+) (pass|fail|skip|todo)$/.exec(line);
    if (total) summary[total[2] as keyof typeof summary] = Number(total[1]);
    if (/^Ran \d+ tests? across/.test(line)) tally.complete = true;
    if (line.startsWith("(pass) ")) oneByOne.passed++;
    if (line.startsWith("(fail) ")) oneByOne.failed++;
    if (line.startsWith("(skip) ") || line.startsWith("(todo) ")) oneByOne.skipped++;
  }
  if (tally.complete) {
    tally.passed = summary.pass;
    tally.failed = summary.fail;
    tally.skipped = summary.skip + summary.todo;
  } else {
    tally.passed = oneByOne.passed;
    tally.failed = oneByOne.failed + 1; // the crash
    tally.skipped = oneByOne.skipped;
  }
  return tally;
}

export function tally(log: string, status: number): Tally {
  const lines = log.split("\n").map((line) => line.replace(/\r$/, ""));
  const result: Tally = { passed: 0, failed: 0, skipped: 0 };
  let reported = false;

  // Each bun run starts with its header line; a log can hold several (deploy/check runs one inside).
  const starts = lines.flatMap((line, index) => (/^bun test v\d/.test(line) ? [index] : []));
  starts.forEach((start, i) => {
    const run = countBunRun(lines.slice(start, starts[i + 1] ?? lines.length));
    result.passed += run.passed;
    result.failed += run.failed;
    result.skipped += run.skipped;
    reported = true;
  });

  lines.forEach((line, index) => {
    const check = /^check: (pass|fail|skip) /.exec(line);
    if (check) {
      reported = true;
      if (check[1] === "pass") result.passed++;
      else if (check[1] === "fail") result.failed++;
      else result.skipped++;
    }
    if (/^Test cases:\s*$/.test(line)) {
      reported = true;
      const cases = lines[index + 1] ?? "";
      const count = (pattern: string) => Number(new RegExp(`(\\d+) ${pattern}`).exec(cases)?.[1] ?? 0);
      const failed = count("found") + count("errored");
      const skipped = count("skipped");
      result.passed += Math.max(0, count("generated") - failed - skipped);
      result.failed += failed;
      result.skipped += skipped;
    }
  });

  if (!reported) {
    if (status === 0) result.passed++;
    else result.failed++;
  } else if (status !== 0 && result.failed === 0) {
    result.failed++;
  }
  return result;
}

if (import.meta.main) {
  const [path, status] = process.argv.slice(2);
  if (path === undefined || status === undefined) throw new Error("usage: tally.ts <log> <exit status>");
  const { passed, failed, skipped } = tally(readFileSync(path, "utf8"), Number(status));
  console.log(`${passed} ${failed} ${skipped}`);
}
