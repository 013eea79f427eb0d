import { expect, test } from "bun:test";
import { createMetrics } from "../../src/metrics/metrics.ts";

/** The smallest finite `le` of a histogram's buckets that counts `count` observations, if any does. */
function finiteBucketHolding(page: string, metric: string, count: number): number | undefined {
  const bounds = [...page.matchAll(new RegExp(`^${metric}_bucket\\{le="([^"]+)"[^}]*\\} (\\S+)$`, "gm"))]
    .filter(([, le, value]) => le !== "+Inf" && Number(value) >= count)
    .map(([, le]) => Number(le));
  return bounds.length > 0 ? Math.min(...bounds) : undefined;
}

test("latency histograms tell an 11 s request from a 59 s one: both land in finite buckets, not +Inf", async () => {
  const latencies = [
    "gateway_http_request_duration_seconds",
    "gateway_kafka_produce_duration_seconds",
    "gateway_ws_publish_duration_seconds",
    "gateway_fanout_latency_seconds",
  ];
  for (const seconds of [11, 59]) {
    const metrics = createMetrics("bun", "0");
    metrics.httpDuration.child({ route: "/v1/events", method: "POST", status: "503" }).observe(seconds);
    metrics.produceDuration.observe(seconds);
    metrics.wsPublishDuration.observe({ result: "published" }, seconds);
    metrics.fanoutLatency.observe(seconds);
    const page = await metrics.registry.metrics();
    for (const metric of latencies) {
      const bucket = finiteBucketHolding(page, metric, 1);
      expect({ metric, seconds, bucket }).toEqual({ metric, seconds, bucket: seconds === 11 ? 15 : 60 });
    }
  }
});
