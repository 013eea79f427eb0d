import { expect, test } from "bun:test";
import { isGatewayError } from "../../../src/domain/errors.ts";
import { claimRecordIds, type DedupCandidate } from "../../../src/features/ingest/dedup.ts";
import { MemoryRecordIdStore } from "../../../src/infra/idempotency/memory-record-ids.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";

function setup() {
  const store = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 1000 });
  const dedup = { windowMs: () => 60_000, store };
  return { dedup, store, metrics: createMetrics("test", "0") };
}

const candidates = (...ids: string[]): DedupCandidate[] =>
  ids.map((id, position) => ({ position, index: position + 1, id, key: id }));

test("ids written in the window and repeats within the request are duplicates; the rest are written", async () => {
  const { dedup, metrics } = setup();
  const first = await claimRecordIds(dedup, "acme", 60_000, candidates("a", "b", "a"), metrics);
  expect(first.duplicates).toEqual([{ index: 3, id: "a" }]);
  expect([...first.skip]).toEqual([2]);
  await first.settle(true);

  const again = await claimRecordIds(dedup, "acme", 60_000, candidates("c", "b", "a"), metrics);
  expect(again.duplicates).toEqual([
    { index: 2, id: "b" },
    { index: 3, id: "a" },
  ]);
  expect([...again.skip].sort()).toEqual([1, 2]);
  const counted = await metrics.registry.getSingleMetricAsString("gateway_record_dedup_total");
  expect(counted).toContain('gateway_record_dedup_total{outcome="new"} 3');
  expect(counted).toContain('gateway_record_dedup_total{outcome="duplicate"} 3');
});

test("a failed write releases its claims: the retry writes the records", async () => {
  const { dedup, metrics } = setup();
  const failed = await claimRecordIds(dedup, "acme", 60_000, candidates("a", "b"), metrics);
  await failed.settle(false);
  const retry = await claimRecordIds(dedup, "acme", 60_000, candidates("a", "b"), metrics);
  expect(retry.duplicates).toEqual([]);
  expect(retry.skip.size).toBe(0);
});

test("an id another request is writing: 409 with Retry-After, and this request's own claims released", async () => {
  const { dedup, metrics } = setup();
  const writing = await claimRecordIds(dedup, "acme", 60_000, candidates("a"), metrics);
  const racing = claimRecordIds(dedup, "acme", 60_000, candidates("b", "a"), metrics);
  const error = await racing.catch((caught: unknown) => caught);
  expect(isGatewayError(error) && error.code).toBe("duplicate_in_flight");
  expect(isGatewayError(error) && error.headers).toEqual({ "retry-after": "1" });
  await writing.settle(true);
  // "b" was released by the refused request; "a" is now written.
  const retry = await claimRecordIds(dedup, "acme", 60_000, candidates("b", "a"), metrics);
  expect(retry.duplicates).toEqual([{ index: 2, id: "a" }]);
});
