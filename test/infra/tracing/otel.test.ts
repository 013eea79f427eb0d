import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import pino from "pino";
import type { SpanLimits, TracesSampler } from "../../../src/config/config.ts";
import { createOtelTracing } from "../../../src/infra/tracing/otel.ts";
import type { Logger } from "../../../src/log/logger.ts";
import type { SinkMessage } from "../../../src/ports/sink.ts";
import type { TracedRequest } from "../../../src/ports/tracing.ts";
import { waitUntil } from "../../support/wait.ts";

type OtlpValue = { stringValue?: string; intValue?: string | number };
type OtlpAttributes = Array<{ key: string; value: OtlpValue }>;
interface Export {
  resourceSpans: Array<{
    resource: { attributes: OtlpAttributes };
    scopeSpans: Array<{ spans: Array<{ name: string; attributes: OtlpAttributes }> }>;
  }>;
}

const attributeOf = (attributes: OtlpAttributes, key: string) => {
  const value = attributes.find((entry) => entry.key === key)?.value;
  return value?.intValue !== undefined ? Number(value.intValue) : value?.stringValue;
};

/** An OTLP/HTTP JSON receiver on loopback: what the exporter sends, request by request; it refuses them while `refusing`. */
let exports: Export[] = [];
let refusing = false;
let requests = 0;
let receiver: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      requests++;
      if (refusing) return new Response("no", { status: 400 });
      exports.push((await request.json()) as Export);
      return Response.json({});
    },
  });
});
afterAll(() => receiver.stop(true));

const OTEL_ENV = ["OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"] as const;
afterEach(() => {
  exports = [];
  refusing = false;
  for (const name of OTEL_ENV) delete process.env[name];
});

/** Tracing exported as OTLP/JSON to the test's receiver. */
function tracingToReceiver(
  log: Logger = pino({ level: "silent" }),
  sampler: TracesSampler = "parentbased_always_on",
  samplerRatio = 1,
  spanLimits: SpanLimits = {},
) {
  return createOtelTracing({
    tracesUrl: `http://127.0.0.1:${receiver.port}/v1/traces`,
    protocol: "http/json",
    serviceName: process.env.OTEL_SERVICE_NAME ?? "edge-gateway",
    serviceVersion: "1.2.3",
    sampler,
    samplerRatio,
    compression: "none",
    exportTimeoutMs: 10_000,
    spanLimits,
    log,
  });
}

/** A POST to `path` as the transports give it: `target` is the request target (path and query). */
function post(target: string, headers: Record<string, string> = {}): TracedRequest {
  const url = new URL(target, "http://gateway.invalid");
  return { method: "POST", path: url.pathname, query: url.searchParams, header: (name) => headers[name] };
}

/** Ends one request span and exports it: the resource and the span, as the receiver got them. */
async function exportOneRequest(status = 202, request = post("/v1/events"), spanLimits: SpanLimits = {}) {
  const tracing = await tracingToReceiver(undefined, undefined, undefined, spanLimits);
  tracing.startRequest(request, "/v1/events", undefined).end(status);
  await tracing.shutdown(10_000);
  const [sent] = exports;
  const resourceSpans = sent?.resourceSpans[0];
  return {
    resource: resourceSpans?.resource.attributes ?? [],
    span: resourceSpans?.scopeSpans[0]?.spans[0],
  };
}

test("the resource carries the SDK's attributes, the gateway's name and version, and OTEL_RESOURCE_ATTRIBUTES", async () => {
  process.env.OTEL_RESOURCE_ATTRIBUTES = "deployment.environment.name=prod,k8s.pod.name=gw-0";
  const { resource } = await exportOneRequest();
  expect(attributeOf(resource, "service.name")).toBe("edge-gateway");
  expect(attributeOf(resource, "service.version")).toBe("1.2.3");
  expect(attributeOf(resource, "deployment.environment.name")).toBe("prod");
  expect(attributeOf(resource, "k8s.pod.name")).toBe("gw-0");
  expect(attributeOf(resource, "telemetry.sdk.language")).toBe("nodejs");
  expect(attributeOf(resource, "telemetry.sdk.name")).toBe("opentelemetry");
});

test("service.name: OTEL_SERVICE_NAME first, then OTEL_RESOURCE_ATTRIBUTES, then the gateway's own", async () => {
  process.env.OTEL_RESOURCE_ATTRIBUTES = "service.name=from-attributes";
  expect(attributeOf((await exportOneRequest()).resource, "service.name")).toBe("from-attributes");
  exports = [];
  process.env.OTEL_SERVICE_NAME = "from-service-name";
  expect(attributeOf((await exportOneRequest()).resource, "service.name")).toBe("from-service-name");
});

test("the span limits the config read apply to the spans; a limit left unset keeps the SDK's default", async () => {
  const request = post("/v1/events?a=1", { host: "gateway.example:8443", "user-agent": "curl/8" });
  const limited = (
    await exportOneRequest(202, request, { attributeCountLimit: 2, eventCountLimit: undefined })
  ).span;
  expect(limited?.attributes).toHaveLength(2);
  exports = [];
  expect((await exportOneRequest(202, request)).span?.attributes.length).toBeGreaterThan(2);
});

test("an HTTP SERVER span has the semantic conventions' required attributes, and error.type on a 5xx", async () => {
  const { span } = await exportOneRequest(202);
  expect(span?.name).toBe("POST /v1/events");
  const attributes = span?.attributes ?? [];
  expect(attributeOf(attributes, "http.request.method")).toBe("POST");
  expect(attributeOf(attributes, "http.route")).toBe("/v1/events");
  expect(attributeOf(attributes, "url.path")).toBe("/v1/events");
  expect(attributeOf(attributes, "url.scheme")).toBe("http");
  expect(attributeOf(attributes, "http.response.status_code")).toBe(202);
  expect(attributeOf(attributes, "error.type")).toBeUndefined();
  exports = [];
  const failed = (await exportOneRequest(503)).span?.attributes ?? [];
  expect(attributeOf(failed, "error.type")).toBe("503");
});

test("an HTTP SERVER span has url.query when there is one (signatures and tokens redacted), the server and the user agent", async () => {
  const plain = (await exportOneRequest(202)).span?.attributes ?? [];
  for (const key of ["url.query", "server.address", "server.port", "user_agent.original"])
    expect(attributeOf(plain, key)).toBeUndefined();
  exports = [];
  const request = post("/v1/events?ack=none&token=eyJ.secret&sig=s1gn&note=a%20b", {
    host: "ingest.example.com:8443",
    "user-agent": "shop-app/2.1",
  });
  const attributes = (await exportOneRequest(202, request)).span?.attributes ?? [];
  expect(attributeOf(attributes, "url.path")).toBe("/v1/events");
  expect(attributeOf(attributes, "url.query")).toBe("ack=none&token=REDACTED&sig=REDACTED&note=a+b");
  expect(attributeOf(attributes, "server.address")).toBe("ingest.example.com");
  expect(attributeOf(attributes, "server.port")).toBe(8443);
  expect(attributeOf(attributes, "user_agent.original")).toBe("shop-app/2.1");
  exports = [];
  const v6 = (await exportOneRequest(202, post("/v1/events", { host: "[::1]" }))).span?.attributes ?? [];
  expect(attributeOf(v6, "server.address")).toBe("::1");
  expect(attributeOf(v6, "server.port")).toBeUndefined();
  // Client-written text is cut at 1024 characters: queued spans stay small while a receiver is down.
  exports = [];
  const long = post(`/v1/events?q=${"q".repeat(5000)}`, { "user-agent": "u".repeat(5000) });
  const clipped = (await exportOneRequest(202, long)).span?.attributes ?? [];
  expect(String(attributeOf(clipped, "url.query"))).toHaveLength(1024);
  expect(String(attributeOf(clipped, "user_agent.original"))).toHaveLength(1024);
});

test("the sampler is the configured one (OTEL_TRACES_SAMPLER as validated), not the SDK's default", async () => {
  const parent = { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" };
  const exportedNames = async (sampler: TracesSampler, ratio = 1) => {
    exports = [];
    const tracing = await tracingToReceiver(undefined, sampler, ratio);
    tracing.startRequest(post("/v1/events"), "/v1/events", undefined).end(202);
    tracing.startRequest(post("/v1/publish"), "/v1/publish", parent).end(202);
    await tracing.shutdown(10_000);
    return exports
      .flatMap((sent) =>
        sent.resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans)),
      )
      .map((span) => span.name);
  };
  expect(await exportedNames("parentbased_always_on")).toEqual(["POST /v1/events", "POST /v1/publish"]);
  expect(await exportedNames("always_off")).toEqual([]);
  // A sampled parent still decides under a parent-based sampler; a root request follows the root sampler.
  expect(await exportedNames("parentbased_always_off")).toEqual(["POST /v1/publish"]);
  expect(await exportedNames("parentbased_traceidratio", 0)).toEqual(["POST /v1/publish"]);
});

test("a batch's PRODUCER span follows the sampling of the request spans it links to, under a parent-based sampler", async () => {
  const sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const unsampled = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-00";
  const record = (traceparent?: string): SinkMessage => ({
    topic: "events",
    key: "k",
    value: "v",
    headers: traceparent === undefined ? {} : { traceparent },
  });
  const sentBatches = async (sampler: TracesSampler) => {
    exports = [];
    const tracing = await tracingToReceiver(undefined, sampler);
    const writer = tracing.traceWriter({ kind: "kafka", write: async () => {}, close: async () => {} });
    await writer.write([record(unsampled), record(unsampled)], 0);
    await writer.write([record(unsampled), record(sampled)], 0);
    await writer.write([record()], 0);
    await tracing.shutdown(10_000);
    return exports
      .flatMap((sent) =>
        sent.resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans)),
      )
      .map((span) => attributeOf(span.attributes, "messaging.batch.message_count"))
      .sort();
  };
  // Unsampled requests only: no batch span. A sampled one among them: exported. No link: the root sampler.
  expect(await sentBatches("parentbased_always_on")).toEqual([1, 2]);
  expect(await sentBatches("parentbased_always_off")).toEqual([2]);
  // A sampler that ignores parents ignores links too.
  expect(await sentBatches("always_on")).toEqual([1, 2, 2]);
});

test("a failed Kafka write and a failed WebSocket publish name their error.type, as a 5xx request does", async () => {
  const tracing = await tracingToReceiver();
  const refused = Object.assign(new Error("broker gone"), { code: "PLT_KFK_NETWORK" });
  const writer = tracing.traceWriter({
    kind: "kafka",
    write: async () => {
      throw refused;
    },
    close: async () => {},
  });
  const batch = [{ topic: "events", key: "k", value: "v", headers: {} }];
  await expect(writer.write(batch, 0)).rejects.toBe(refused);
  tracing.startFrame("publish", undefined).end(503);
  tracing.startFrame("publish", undefined).end(202);
  await tracing.shutdown(10_000);
  const spans = exports.flatMap((sent) =>
    sent.resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans)),
  );
  const errorTypes = spans.map((span) => [span.name, attributeOf(span.attributes, "error.type")]);
  expect(errorTypes).toEqual([
    ["send events", "PLT_KFK_NETWORK"],
    ["WebSocket publish", "503"],
    ["WebSocket publish", undefined],
  ]);
});

test("shutdown gives up at its time limit when the receiver does not answer: the drain still ends in time", async () => {
  const silent = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Promise<Response>(() => {}) });
  try {
    const tracing = await createOtelTracing({
      tracesUrl: `http://127.0.0.1:${silent.port}/v1/traces`,
      protocol: "http/json",
      serviceName: "edge-gateway",
      serviceVersion: "1.2.3",
      sampler: "parentbased_always_on",
      samplerRatio: 1,
      compression: "none",
      exportTimeoutMs: 10_000,
      spanLimits: {},
      log: pino({ level: "silent" }),
    });
    tracing.startRequest(post("/v1/events"), "/v1/events", undefined).end(202);
    const started = performance.now();
    await expect(tracing.shutdown(300)).rejects.toThrow("spans not exported within 300 ms");
    // The exporter alone would wait 10 s for an answer.
    expect(performance.now() - started).toBeLessThan(2000);
  } finally {
    silent.stop(true);
  }
});

test("spans dropped because the export queue is full are logged, with how many, at most once a minute", async () => {
  const lines: Array<{ level: number; msg: string; dropped?: number }> = [];
  const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const tracing = await tracingToReceiver(log);
  // More spans at once than the queue holds (4096): the rest are dropped until an export makes room.
  const burst = async (spans: number) => {
    const before = requests;
    for (let i = 0; i < spans; i++)
      tracing.startRequest(post("/v1/events"), "/v1/events", undefined).end(202);
    // Room is made when an export is answered: the processor then takes the next batch out of the queue
    // and sends it. Exports go one at a time and the receiver runs in this process, so a second request
    // received after the burst means one was answered since. (A fixed 100 ms was not always enough for
    // the 512-span export on a loaded machine, and the next span was dropped too.)
    await waitUntil(() => requests >= before + 2, "an export answered after the burst", 10_000, 5);
    // The SDK reports a drop when the next span finds room again.
    tracing.startRequest(post("/v1/events"), "/v1/events", undefined).end(202);
  };
  await burst(5000);
  await burst(5000);
  await tracing.shutdown(10_000);
  const dropped = lines.filter((line) => line.msg.includes("spans dropped"));
  expect(dropped).toHaveLength(1);
  expect(dropped[0]?.level).toBe(40);
  // The queue holds 4096, and the first batch of 512 left it for the receiver at once.
  expect(dropped[0]?.dropped).toBe(5000 - 4096 - 512);
});

test("a failing export is logged once, and its recovery once", async () => {
  const lines: Array<{ level: number; msg: string; url?: string }> = [];
  const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const tracing = await tracingToReceiver(log);
  // One span, then the batch processor's next export (every second) reaching the receiver and answered.
  const exportOne = async () => {
    const before = requests;
    tracing.startRequest(post("/v1/events"), "/v1/events", undefined).end(202);
    while (requests === before) await Bun.sleep(20);
    await Bun.sleep(50);
  };
  refusing = true;
  await exportOne();
  await exportOne();
  expect(lines.map((line) => line.msg)).toEqual([
    "OpenTelemetry: span export failing, spans are dropped until it succeeds",
  ]);
  expect(lines[0]?.url).toBe(`http://127.0.0.1:${receiver.port}/v1/traces`);
  refusing = false;
  await exportOne();
  await exportOne();
  expect(lines.map((line) => line.msg)).toEqual([
    "OpenTelemetry: span export failing, spans are dropped until it succeeds",
    "OpenTelemetry: span export succeeds again",
  ]);
  await tracing.shutdown(10_000);
});
