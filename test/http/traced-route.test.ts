import { expect, test } from "bun:test";
import { GatewayError } from "../../src/domain/errors.ts";
import { tracedRoute } from "../../src/http/traced-route.ts";
import type { Route } from "../../src/ports/route.ts";
import type { Tracing } from "../../src/ports/tracing.ts";
import type { HttpRequest } from "../../src/ports/transport.ts";

const SPAN_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";

/** A Tracing that records what the route asked of it. */
function recordingTracing() {
  const started: Array<{ route: string; path?: string; parent: unknown }> = [];
  const ended: number[] = [];
  const tracing: Tracing = {
    startRequest: (request, route, parent) => {
      started.push({ route, path: request.path, parent });
      return { traceparent: SPAN_TRACEPARENT, end: (status) => ended.push(status) };
    },
    startFrame: (type, parent) => {
      started.push({ route: type, parent });
      return { traceparent: SPAN_TRACEPARENT, end: (status) => ended.push(status) };
    },
    traceWriter: (writer) => writer,
    shutdown: async () => {},
  };
  return { tracing, started, ended };
}

function requestWith(headers: Record<string, string>): HttpRequest {
  return {
    method: "POST",
    path: "/v1/events",
    query: new URLSearchParams(),
    remoteAddress: "127.0.0.1",
    header: (name) => headers[name],
    headerNames: () => Object.keys(headers),
    body: async () => new Uint8Array(),
  };
}

test("the handler sees the span's traceparent and the client's tracestate; the span ends with the reply's status", async () => {
  const { tracing, started, ended } = recordingTracing();
  const seen: Array<string | undefined> = [];
  const route: Route = {
    method: "POST",
    path: "/v1/events",
    handler: (request) => {
      seen.push(request.header("traceparent"), request.header("tracestate"), request.header("authorization"));
      return { status: 202, body: "" };
    },
  };
  const client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  await tracedRoute(route, tracing).handler(
    requestWith({ traceparent: client, tracestate: "rojo=1", authorization: "Bearer x" }),
    {},
  );
  expect(started).toEqual([
    { route: "/v1/events", path: "/v1/events", parent: { traceparent: client, tracestate: "rojo=1" } },
  ]);
  expect(seen).toEqual([SPAN_TRACEPARENT, "rojo=1", "Bearer x"]);
  expect(ended).toEqual([202]);
});

test("an invalid traceparent starts a root span and its tracestate is dropped; a GatewayError ends the span with its status", async () => {
  const { tracing, started, ended } = recordingTracing();
  let tracestate: string | undefined = "unset";
  const route: Route = {
    method: "POST",
    path: "/v1/events",
    handler: async (request) => {
      tracestate = request.header("tracestate");
      throw new GatewayError("unavailable", "down");
    },
  };
  const handled = tracedRoute(route, tracing).handler(
    requestWith({ traceparent: "00-zz-00f067aa0ba902b7-01", tracestate: "rojo=1" }),
    {},
  );
  await expect(Promise.resolve(handled)).rejects.toThrow("down");
  expect(started).toEqual([{ route: "/v1/events", path: "/v1/events", parent: undefined }]);
  expect(tracestate).toBeUndefined();
  expect(ended).toEqual([503]);
});
