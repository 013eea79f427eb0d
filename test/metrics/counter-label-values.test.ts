import { expect, test } from "bun:test";
import { REJECT_REASON } from "../../src/features/ingest/record.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";

/** The label sets a counter exports, by metric name, read from a scrape. */
function seriesOf(page: string, name: string): string[] {
  return [...page.matchAll(new RegExp(`^${name}\\{([^}]*)\\} 0$`, "gm"))].map(
    ([, labels]) => labels as string,
  );
}

// A series born at its first increment has no earlier sample: increase() and rate() read that increment as none.
// Seen with a real gateway and Prometheus: one record Kafka refused as too large left
// increase(gateway_events_undeliverable_total[5m]) at 0, and GatewayEventsUndeliverable never fired.
test("every value a labelled counter can take is exported at 0 before anything is counted", async () => {
  const page = await createMetrics("bun", "0").registry.metrics();
  expect(seriesOf(page, "gateway_events_undeliverable_total").sort()).toEqual([
    'reason="invalid_record"',
    'reason="too_large"',
  ]);
  expect(seriesOf(page, "gateway_dead_letters_dropped_total").sort()).toEqual([
    'reason="full"',
    'reason="refused"',
    'reason="unavailable"',
    'reason="undelivered_at_exit"',
  ]);
  expect(new Set(seriesOf(page, "gateway_events_rejected_total"))).toEqual(
    new Set(Object.values(REJECT_REASON).map((reason) => `reason="${reason}"`)),
  );
  expect(seriesOf(page, "gateway_ws_resumes_total")).toContain('result="history_gone"');
  expect(seriesOf(page, "gateway_rate_limit_leases_total")).toContain(
    'scope="tenant_events",outcome="failed"',
  );
});

// Those two are resolved where they are counted: requests by route, method and status as they come, evictions by
// the realtime module for each of its bounds.
const RESOLVED_ELSEWHERE = new Set(["gateway_http_requests_total", "gateway_history_evictions_total"]);

test("no other counter starts without series (a counter without labels exports its 0 by itself)", async () => {
  const metrics = createMetrics("bun", "0");
  const empty = (await metrics.registry.getMetricsAsJSON())
    .filter((metric) => String(metric.type) === "counter" && metric.name.startsWith("gateway_"))
    .filter((metric) => !RESOLVED_ELSEWHERE.has(metric.name))
    .filter((metric) => metric.values.length === 0)
    .map((metric) => metric.name);
  expect(empty).toEqual([]);
});
