import { json } from "../../http/reply.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { Route } from "../../ports/route.ts";
import type { HealthState } from "./health.ts";

/** /health for the load balancer, /health/live for liveness. */
export function healthRoutes(health: HealthState): Route[] {
  return [
    {
      method: "GET",
      path: "/health",
      handler: () => {
        // `degraded` only when there is something to say: the healthy answer stays `{"status":"ok"}`.
        const degraded = health.degraded();
        const extra = degraded.length > 0 ? { degraded } : {};
        return health.ready
          ? json(200, { status: "ok", ...extra })
          : json(503, { status: "unavailable", reasons: health.list(), ...extra });
      },
    },
    { method: "GET", path: "/health/live", handler: () => json(200, { status: "ok" }) },
  ];
}

/** /metrics for Prometheus. */
export function metricsRoutes(metrics: Metrics): Route[] {
  return [
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

/** Every operations route, as served on one port when METRICS_PORT is unset. */
export function operationRoutes(health: HealthState, metrics: Metrics): Route[] {
  return [...healthRoutes(health), ...metricsRoutes(metrics)];
}
