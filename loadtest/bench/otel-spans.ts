/** In-process cost of the OpenTelemetry spans: a route with and without its SERVER span, a traced Kafka batch (spans exported to a local receiver). */

import pino from "pino";
import { tracedRoute } from "../../src/http/traced-route.ts";
import { createOtelTracing } from "../../src/infra/tracing/otel.ts";
import type { Route } from "../../src/ports/route.ts";

const receiver = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Response.json({}) });
const tracing = await createOtelTracing({
  tracesUrl: `http://127.0.0.1:${receiver.port}/v1/traces`,
  protocol: "http/json",
  serviceName: "b",
  serviceVersion: "0",
  sampler: "parentbased_always_on",
  samplerRatio: 1,
  compression: "none",
  exportTimeoutMs: 10_000,
  spanLimits: {},
  log: pino({ level: "silent" }),
});
const reply = { status: 202, body: "" };
const plain: Route = { method: "POST", path: "/v1/events", handler: () => reply };
const traced = tracedRoute(plain, tracing);
const headers: Record<string, string> = {
  traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
};
const request = {
  method: "POST",
  path: "/v1/events",
  query: new URLSearchParams(),
  remoteAddress: "1",
  header: (n: string) => headers[n],
  body: async () => new Uint8Array(),
};
const writer = tracing.traceWriter({ kind: "kafka", write: async () => {}, close: async () => {} });
const batch = Array.from({ length: 100 }, (_, i) => ({
  topic: "t",
  key: "k",
  value: "v",
  headers: {
    traceparent: `00-4bf92f3577b34da6a3ce929d0e0e4736-${(i + 1).toString(16).padStart(16, "0")}-01`,
  },
}));
async function time(name: string, n: number, f: () => unknown) {
  for (let i = 0; i < 2000; i++) await f();
  const t = performance.now();
  for (let i = 0; i < n; i++) await f();
  console.log(name, (((performance.now() - t) * 1000) / n).toFixed(3), "µs");
}
for (let round = 0; round < 2; round++) {
  await time("plain route", 20000, () => plain.handler(request as never, {}));
  await time("traced route (span + export)", 20000, () => traced.handler(request as never, {}));
  await time("traced batch of 100 records / 100 links", 5000, () => writer.write(batch));
}
await tracing.shutdown(10_000);
receiver.stop(true);
