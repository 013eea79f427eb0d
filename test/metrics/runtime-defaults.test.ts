import { expect, test } from "bun:test";
import { createMetrics } from "../../src/metrics/metrics.ts";

const HEAP_SPACES = [
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
];

// Bun computes v8.getHeapSpaceStatistics() by walking the heap: measured with a million live objects, each scrape
// of a Bun gateway stopped its event loop for 0.3-0.6 s, nearly all of it in this collector (Node: under 1 ms).
test("a Bun gateway's scrape does not collect the heap spaces, which Bun computes by walking the heap", async () => {
  const page = await createMetrics("bun", "0").registry.metrics();
  expect(HEAP_SPACES.filter((name) => page.includes(name))).toEqual([]);
  expect(page).toContain("nodejs_heap_size_used_bytes ");
});

test("a Node gateway keeps them", async () => {
  const page = await createMetrics("node-uws", "0").registry.metrics();
  expect(HEAP_SPACES.filter((name) => !page.includes(`${name}{space=`))).toEqual([]);
});
