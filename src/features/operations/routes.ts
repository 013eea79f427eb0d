import { json } from "../../http/reply.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { Route } from "../../ports/route.ts";
import type { HealthState } from "./health.ts";

/** /health for the load balancer, /health/live for liveness, /metrics for Prometheus. */
export function operationRoutes(health: HealthState, metrics: Metrics): Route[] {
  return [
    {
      method: "GET",
      path: "/health",
      handler: () =>
        health.ready
          ? json(200, { status: "ok" })
          : json(503, { status: "unavailable", reasons: health.list() }),
    },
    { method: "GET", path: "/health/live", handler: () => json(200, { status: "ok" }) },
    {
      method: "GET",
      path: "/metrics",
      handler: async () => ({
        status: 200,
        headers: { "content-type": metrics.registry.contentType },
        body: await metrics.registry.metrics(),
      }),
    },
  ];
}
