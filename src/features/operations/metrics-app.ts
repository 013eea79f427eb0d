import { GatewayError } from "../../domain/errors.ts";
import { errorReply } from "../../http/reply.ts";
import { Router } from "../../http/router.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { GatewayApp } from "../../ports/transport.ts";
import { metricsRoutes } from "./routes.ts";

/**
 * What METRICS_PORT serves: /metrics alone, through a router of its own (so
 * scrapes are counted like any request), and no WebSockets. It is not drained:
 * Prometheus keeps scraping a draining instance until the process exits.
 */
export function createMetricsApp(metrics: Metrics, log: Logger): GatewayApp<never> {
  const router = new Router(metricsRoutes(metrics), metrics, log);
  const notHere = () => {};
  return {
    http: router.handle,
    wsPath: "/v1/ws",
    ws: {
      upgrade: async () => ({
        accept: false,
        reply: errorReply(new GatewayError("not_found", "WebSockets are served on PORT, not METRICS_PORT")),
      }),
      open: notHere,
      message: notHere,
      drain: notHere,
      close: notHere,
    },
  };
}
