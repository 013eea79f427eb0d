import type { Config } from "./config/config.ts";
import { HealthState } from "./health/health.ts";
import { operationRoutes } from "./health/routes.ts";
import { Router } from "./http/router.ts";
import type { DrainStep } from "./lifecycle/lifecycle.ts";
import { sleep } from "./lifecycle/lifecycle.ts";
import type { Logger } from "./log/logger.ts";
import { createMetrics } from "./metrics/metrics.ts";
import type { GatewayApp, RunningServer } from "./transport/types.ts";
import { type ConnectionState, WsHub } from "./ws/hub.ts";

export interface Gateway {
  app: GatewayApp<ConnectionState>;
  /** Drain steps, in order, given the server once it listens. */
  drainSteps(server: RunningServer): DrainStep[];
}

/** The composition root: builds every module and wires them together. */
export function createGateway(config: Config, log: Logger, runtime: string, version: string): Gateway {
  const metrics = createMetrics(runtime, version);
  const health = new HealthState();
  const hub = new WsHub({ runtime, metrics, log });
  const router = new Router([...operationRoutes(health, metrics)], metrics, log);

  return {
    app: { http: router.handle, wsPath: "/v1/ws", ws: hub },
    drainSteps: (server) => [
      {
        name: "mark unhealthy",
        run: () => {
          health.set("draining", true);
          metrics.draining.set(1);
        },
      },
      { name: "wait for the load balancer", run: () => sleep(config.drainDelayMs) },
      { name: "stop listening", run: () => server.stopListening() },
      {
        name: "disconnect websockets",
        run: () => hub.disconnectAll(Math.min(2000, (config.drainTimeoutMs - config.drainDelayMs) / 4)),
      },
      { name: "finish in-flight requests", run: () => router.whenIdle() },
    ],
  };
}
