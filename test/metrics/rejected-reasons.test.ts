import { expect, test } from "bun:test";
import type { RecordErrorCode } from "../../src/domain/errors.ts";
import { REJECT_REASON } from "../../src/features/ingest/record.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";

// An operator reads a 202/422 body's error codes and the rejected counter's reasons side by side:
// the help must say which codes each reason counts, since several codes share one reason.
test("gateway_events_rejected_total's help names every reason and the body codes it counts", async () => {
  const help = (await createMetrics("test", "0").eventsRejected.get()).help;
  const codes = new Map<string, RecordErrorCode[]>();
  for (const [code, reason] of Object.entries(REJECT_REASON) as Array<[RecordErrorCode, string]>)
    codes.set(reason, [...(codes.get(reason) ?? []), code]);
  for (const [reason, counted] of codes) {
    if (counted.length === 1 && counted[0] === reason) {
      expect(help).toMatch(new RegExp(`[:,] ${reason}(,|$)`));
      continue;
    }
    const listed = new RegExp(`[:,] ${reason} \\(([^)]*)\\)`).exec(help)?.[1]?.split(", ");
    expect(new Set(listed)).toEqual(new Set(counted));
  }
});
