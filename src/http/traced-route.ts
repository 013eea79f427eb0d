import { isGatewayError } from "../domain/errors.ts";
import type { Route } from "../ports/route.ts";
import type { Tracing } from "../ports/tracing.ts";
import type { HttpRequest } from "../ports/transport.ts";
import { traceContextOf } from "./trace-context.ts";

/**
 * `route` inside a SERVER span, a child of the request's traceparent when it
 * sent a valid one. The handler sees the span's own traceparent (and the
 * request's tracestate, kept only with a valid traceparent), so the records
 * it writes point consumers at this span.
 */
export function tracedRoute(route: Route, tracing: Tracing): Route {
  return {
    ...route,
    handler: async (request, params) => {
      const parent = traceContextOf(request);
      const span = tracing.startRequest(request, route.path, parent);
      const view: HttpRequest = {
        method: request.method,
        path: request.path,
        query: request.query,
        remoteAddress: request.remoteAddress,
        body: () => request.body(),
        headerNames: () => request.headerNames(),
        header: (name) => {
          if (name === "traceparent") return span.traceparent;
          if (name === "tracestate") return parent?.tracestate;
          return request.header(name);
        },
      };
      try {
        const reply = await route.handler(view, params);
        span.end(reply.status);
        return reply;
      } catch (error) {
        // Unknown errors are answered 500 (reply.ts).
        span.end(isGatewayError(error) ? error.status : 500);
        throw error;
      }
    },
  };
}
