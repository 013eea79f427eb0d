import type { Metrics } from "../../metrics/metrics.ts";
import type { Module } from "../../ports/module.ts";
import type { HealthState } from "./health.ts";
import { healthRoutes, operationRoutes } from "./routes.ts";

export const DRAINING_REASON = "draining";

/**
 * /health, /health/live and, unless it has a port of its own (METRICS_PORT), /metrics;
 * on drain, /health turns 503 at once.
 */
export function createOperationsModule(
  health: HealthState,
  metrics: Metrics,
  options: { metricsOnMainPort: boolean },
): Module {
  return {
    name: "operations",
    routes: options.metricsOnMainPort ? operationRoutes(health, metrics) : healthRoutes(health),
    drain: {
      unready: () => {
        health.set(DRAINING_REASON, true);
        metrics.draining.set(1);
        metrics.drainStarted.set(Date.now() / 1000);
      },
    },
  };
}
