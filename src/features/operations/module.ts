import type { Metrics } from "../../metrics/metrics.ts";
import type { Module } from "../../ports/module.ts";
import type { HealthState } from "./health.ts";
import { operationRoutes } from "./routes.ts";

export const DRAINING_REASON = "draining";

/** /health, /health/live and /metrics; on drain, /health turns 503 at once. */
export function createOperationsModule(health: HealthState, metrics: Metrics): Module {
  return {
    name: "operations",
    routes: operationRoutes(health, metrics),
    drain: {
      unready: () => {
        health.set(DRAINING_REASON, true);
        metrics.draining.set(1);
      },
    },
  };
}
