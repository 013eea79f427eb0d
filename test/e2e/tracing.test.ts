import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import puppeteer, { type Browser } from "puppeteer-core";
import type * as PageScript from "../support/browser-trace.ts";
import { createTopic, type ReadMessage, readTopic, services } from "../support/kafka.ts";
import {
  attribute,
  type CollectedSpan,
  type Collector,
  SPAN_KIND_CLIENT,
  SPAN_KIND_PRODUCER,
  SPAN_KIND_SERVER,
  startCollector,
} from "../support/otelcol.ts";
import { token } from "../support/tokens.ts";
import {
  ingestClick,
  RUNTIMES,
  type RunningGateway,
  startGateway,
  TestSocket,
  waitForLog,
} from "./harness.ts";

/** Debian's chromium (scripts/install-tools), driven by puppeteer-core: no browser download. */
const CHROMIUM = "/usr/bin/chromium";
const PAGE_SCRIPT = new URL("../support/browser-trace.ts", import.meta.url).pathname;
const PAGE = `<!doctype html><meta charset="utf-8"><title>trace test</title>
<script type="module">import * as script from "/page.js"; globalThis.pageScript = script;</script>`;
type PageGlobals = typeof globalThis & { pageScript: typeof PageScript };

const newTraceId = () => randomBytes(16).toString("hex");
const newSpanId = () => randomBytes(8).toString("hex");

function headersOf(record: ReadMessage | undefined): Record<string, string> {
  return Object.fromEntries(record?.headers ?? []);
}

/** The ids in a W3C traceparent. */
function parseTraceparent(value: string | undefined): { traceId: string; spanId: string } {
  const [, traceId = "", spanId = ""] = String(value).split("-");
  return { traceId, spanId };
}

/** The PRODUCER spans (send batches) linked to `span`, once there is one. */
function producerSpansLinkedTo(collector: Collector, span: CollectedSpan): CollectedSpan[] {
  return collector
    .spans()
    .filter(
      (candidate) =>
        candidate.kind === SPAN_KIND_PRODUCER &&
        candidate.links?.some((link) => link.traceId === span.traceId && link.spanId === span.spanId),
    );
}

async function waitForProducerSpan(collector: Collector, span: CollectedSpan): Promise<CollectedSpan> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const [found] = producerSpansLinkedTo(collector, span);
    if (found) return found;
    if (Date.now() > deadline)
      throw new Error(`no PRODUCER span linked to ${span.name} in the Collector's file`);
    await Bun.sleep(100);
  }
}

// One real OpenTelemetry Collector for the whole file (scripts/otelcol, built by scripts/install-tools).
let collector: Collector;
let browser: Browser | undefined;
let page: ReturnType<typeof Bun.serve>;
const pageOrigin = () => `http://127.0.0.1:${page.port}`;

beforeAll(async () => {
  collector = await startCollector();
  const build = await Bun.build({ entrypoints: [PAGE_SCRIPT], target: "browser", format: "esm" });
  if (!build.success) throw new Error(build.logs.join("\n"));
  const bundle = await (build.outputs[0] as Blob).text();
  page = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      if (new URL(request.url).pathname === "/page.js")
        return new Response(bundle, { headers: { "content-type": "text/javascript" } });
      return new Response(PAGE, { headers: { "content-type": "text/html" } });
    },
  });
});
afterAll(async () => {
  await browser?.close();
  page?.stop(true);
  await collector?.stop();
});

describe.each(RUNTIMES)("trace context and spans through a real OpenTelemetry Collector on %s", (runtime) => {
  let gateway: RunningGateway;
  let topic: string;
  let fanoutTopic: string;

  beforeAll(async () => {
    [topic, fanoutTopic] = await Promise.all([
      createTopic(`tracing-${runtime}`, 1),
      createTopic(`tracing-fanout-${runtime}`, 1),
    ]);
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_FANOUT_TOPIC: fanoutTopic,
      // A limiter of its own: the shared Redis holds other tests' budgets.
      REDIS_URL: "",
      CORS_ORIGINS: pageOrigin(),
      // With credentials and a key in the query, as for a hosted backend (the Collector ignores them):
      // never logged, and the query stays the query of <endpoint>/v1/traces.
      OTEL_EXPORTER_OTLP_ENDPOINT: `${collector.endpoint.replace("//", "//collector:s3cret@")}/?api-key=k3yval`,
      OTEL_SERVICE_NAME: `edge-gateway-${runtime}`,
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e,service.name=overridden",
    });
  });
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
  });

  test("HTTP: a SERVER span per request, child of the client's span; a PRODUCER span per batch linked to it; the records carry the SERVER span", async () => {
    const clientTraceId = newTraceId();
    const clientSpanId = newSpanId();
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
      "content-type": "application/json",
      traceparent: `00-${clientTraceId}-${clientSpanId}-01`,
      tracestate: "rojo=00f067aa0ba902b7",
    };
    const ingest = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers,
      body: JSON.stringify({ type: "click", id: `traced-${runtime}`, data: { element: "t" } }),
    });
    expect(ingest.status).toBe(202);
    const publish = await fetch(`${gateway.url}/v1/publish?src=e2e`, {
      method: "POST",
      headers: { ...headers, "user-agent": "e2e-publisher/1" },
      body: JSON.stringify({ channel: "traced", data: { n: 1 } }),
    });
    expect(publish.status).toBe(202);

    const trace = await collector.waitForTrace(
      clientTraceId,
      (spans) => spans.filter((span) => span.kind === SPAN_KIND_SERVER).length === 2,
      "the two SERVER spans",
    );
    const serverSpan = (route: string) =>
      trace.find((span) => span.kind === SPAN_KIND_SERVER && attribute(span, "http.route") === route);
    const ingestSpan = serverSpan("/v1/events") as CollectedSpan;
    expect(ingestSpan).toMatchObject({ name: "POST /v1/events", parentSpanId: clientSpanId });
    expect(ingestSpan.service).toBe(`edge-gateway-${runtime}`);
    expect(JSON.stringify(gateway.logs)).toContain("collector:***@");
    expect(JSON.stringify(gateway.logs)).not.toContain("s3cret");
    expect(JSON.stringify(gateway.logs)).not.toContain("k3yval");
    // OTEL_RESOURCE_ATTRIBUTES reaches the resource; OTEL_SERVICE_NAME wins over a service.name there.
    expect(attribute({ attributes: ingestSpan.resource }, "deployment.environment.name")).toBe("e2e");
    expect(attribute({ attributes: ingestSpan.resource }, "telemetry.sdk.language")).toBe("nodejs");
    expect(attribute(ingestSpan, "http.request.method")).toBe("POST");
    expect(attribute(ingestSpan, "http.response.status_code")).toBe(202);
    expect(attribute(ingestSpan, "url.path")).toBe("/v1/events");
    expect(attribute(ingestSpan, "url.scheme")).toBe("http");
    expect(attribute(ingestSpan, "url.query")).toBeUndefined();
    // From the Host header, as the HTTP semantic conventions take them.
    expect(attribute(ingestSpan, "server.address")).toBe("127.0.0.1");
    expect(attribute(ingestSpan, "server.port")).toBe(Number(new URL(gateway.url).port));
    const publishSpan = serverSpan("/v1/publish") as CollectedSpan;
    expect(publishSpan.parentSpanId).toBe(clientSpanId);
    expect(attribute(publishSpan, "url.query")).toBe("src=e2e");
    expect(attribute(publishSpan, "user_agent.original")).toBe("e2e-publisher/1");

    // The records point consumers at the gateway's span, in the client's trace, with its tracestate.
    const [record] = await readTopic(topic, 1);
    expect(parseTraceparent(headersOf(record).traceparent)).toEqual({
      traceId: clientTraceId,
      spanId: ingestSpan.spanId,
    });
    expect(headersOf(record).tracestate).toBe("rojo=00f067aa0ba902b7");
    const [fanned] = await readTopic(fanoutTopic, 1);
    expect(parseTraceparent(headersOf(fanned).traceparent)).toEqual({
      traceId: clientTraceId,
      spanId: publishSpan.spanId,
    });

    const ingestBatch = await waitForProducerSpan(collector, ingestSpan);
    expect(ingestBatch.name).toBe(`send ${topic}`);
    expect(attribute(ingestBatch, "messaging.system")).toBe("kafka");
    expect(attribute(ingestBatch, "messaging.destination.name")).toBe(topic);
    expect(attribute(ingestBatch, "messaging.operation.type")).toBe("send");
    expect(attribute(ingestBatch, "messaging.batch.message_count")).toBe(1);
    const publishBatch = await waitForProducerSpan(collector, publishSpan);
    expect(attribute(publishBatch, "messaging.destination.name")).toBe(fanoutTopic);
  });

  test("WebSocket publish: a SERVER span, child of the frame's traceparent; the fan-out record and the subscriber's event carry the span's", async () => {
    const clientTraceId = newTraceId();
    const clientSpanId = newSpanId();
    const channel = `traced-ws-${runtime}`;
    await waitForLog(gateway, "fan-out consumer reading");
    const authenticated = async (scopes: string[]) => {
      const socket = new TestSocket(gateway.wsUrl);
      await socket.opened();
      socket.send({ type: "auth", token: await token("acme", scopes) });
      await socket.next((frame) => frame.type === "connected");
      return socket;
    };
    const subscriber = await authenticated(["subscribe"]);
    const publisher = await authenticated(["subscribe", "publish"]);
    try {
      subscriber.send({ type: "subscribe", channel });
      await subscriber.next((frame) => frame.type === "subscribed");
      publisher.send({
        type: "publish",
        channel,
        data: { n: 1 },
        ref: "w1",
        traceparent: `00-${clientTraceId}-${clientSpanId}-01`,
        tracestate: "rojo=00f067aa0ba902b7",
      });
      expect(await publisher.next((frame) => frame.type === "published", 15_000)).toEqual({
        type: "published",
        ref: "w1",
      });
      const event = await subscriber.next((frame) => frame.type === "event", 15_000);

      const [frameSpan] = await collector.waitForTrace(
        clientTraceId,
        (spans) => spans.some((span) => span.kind === SPAN_KIND_SERVER),
        "the publish frame's SERVER span",
      );
      expect(frameSpan).toMatchObject({ name: "WebSocket publish", parentSpanId: clientSpanId });
      expect(attribute(frameSpan as CollectedSpan, "network.protocol.name")).toBe("websocket");
      const spanTraceparent = `00-${clientTraceId}-${frameSpan?.spanId}-01`;
      expect(event).toMatchObject({
        channel,
        data: { n: 1 },
        traceparent: spanTraceparent,
        tracestate: "rojo=00f067aa0ba902b7",
      });
      const records = await readTopic(fanoutTopic, 2);
      const record = records.find(
        (found) => headersOf(found).channel === channel && headersOf(found)["record-id"] === undefined,
      );
      expect(headersOf(record)).toMatchObject({
        traceparent: spanTraceparent,
        tracestate: "rojo=00f067aa0ba902b7",
      });
      const batch = await waitForProducerSpan(collector, frameSpan as CollectedSpan);
      expect(attribute(batch, "messaging.destination.name")).toBe(fanoutTopic);
      expect(attribute(batch, "messaging.system")).toBe("kafka");

      // A record ingested with a channel reaches the subscriber with its request's span too.
      const ingestTraceId = newTraceId();
      const ingest = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
          "content-type": "application/json",
          traceparent: `00-${ingestTraceId}-${newSpanId()}-01`,
        },
        body: JSON.stringify({ type: "click", id: `to-${channel}`, channel, data: { element: "c" } }),
      });
      expect(ingest.status).toBe(202);
      const ingested = await subscriber.next((frame) => frame.type === "event", 15_000);
      const [ingestSpan] = await collector.waitForTrace(
        ingestTraceId,
        (spans) => spans.some((span) => span.kind === SPAN_KIND_SERVER),
        "the ingest's SERVER span",
      );
      expect(ingested).toMatchObject({
        recordId: `to-${channel}`,
        traceparent: `00-${ingestTraceId}-${ingestSpan?.spanId}-01`,
      });
    } finally {
      subscriber.close();
      publisher.close();
    }
  });

  test("a trace started in headless Chromium: the page's span, the gateway's spans as its children, its trace id in the Kafka record", async () => {
    browser ??= await puppeteer.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    const tab = await browser.newPage();
    try {
      await tab.goto(`${pageOrigin()}/`);
      await tab.waitForFunction(() => "pageScript" in globalThis, { timeout: 5000 });
      const sent = await tab.evaluate(
        (options) => (globalThis as PageGlobals).pageScript.tracedIngest(options),
        {
          collector: collector.endpoint,
          gateway: gateway.url,
          token: await token("acme", ["ingest"]),
          event: { type: "click", id: `from-the-browser-${runtime}`, data: { element: "buy" } },
        },
      );
      expect(sent.status).toBe(202);

      const trace = await collector.waitForTrace(
        sent.traceId,
        (spans) =>
          spans.some((span) => span.kind === SPAN_KIND_CLIENT) &&
          spans.some((span) => span.kind === SPAN_KIND_SERVER),
        "the page's span and the gateway's",
      );
      const pageSpan = trace.find((span) => span.kind === SPAN_KIND_CLIENT) as CollectedSpan;
      expect(pageSpan).toMatchObject({ spanId: sent.spanId, service: "browser-page" });
      expect(pageSpan.parentSpanId ?? "").toBe("");
      const gatewaySpan = trace.find((span) => span.kind === SPAN_KIND_SERVER) as CollectedSpan;
      expect(gatewaySpan).toMatchObject({ parentSpanId: sent.spanId, service: `edge-gateway-${runtime}` });
      const batch = await waitForProducerSpan(collector, gatewaySpan);
      expect(attribute(batch, "messaging.destination.name")).toBe(topic);

      const records = await readTopic(topic, 2);
      const record = records.find(
        (found) => (JSON.parse(String(found.value)) as { id: string }).id === `from-the-browser-${runtime}`,
      );
      expect(parseTraceparent(headersOf(record).traceparent)).toEqual({
        traceId: sent.traceId,
        spanId: gatewaySpan.spanId,
      });
    } finally {
      await tab.close();
    }
  });
});

describe.each(RUNTIMES)("without OTEL_EXPORTER_OTLP_ENDPOINT on %s", (runtime) => {
  test("no exporter is started, and the record carries the client's own traceparent", async () => {
    const topic = await createTopic(`untraced-${runtime}`, 1);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      REDIS_URL: "",
    });
    try {
      const traceparent = `00-${newTraceId()}-${newSpanId()}-01`;
      const response = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
          traceparent,
        },
        body: JSON.stringify({ type: "click", data: { element: "untraced" } }),
      });
      expect(response.status).toBe(202);
      const [record] = await readTopic(topic, 1);
      // No SERVER span in between: the client's span is the record's parent.
      expect(headersOf(record).traceparent).toBe(traceparent);
      expect(gateway.logs.some((entry) => String(entry.msg).includes("OpenTelemetry"))).toBe(false);
    } finally {
      await gateway.stop("SIGKILL");
    }
  });
});

/** One event sent with a new trace's traceparent, accepted: the trace id. */
async function ingestTraced(gateway: RunningGateway): Promise<string> {
  const traceId = newTraceId();
  const response = await ingestClick(gateway, { traceparent: `00-${traceId}-${newSpanId()}-01` });
  expect(response.status).toBe(202);
  return traceId;
}

// The main describe above exports over the default transport, OTLP/HTTP with protobuf; these are the other two.
describe.each(RUNTIMES)("each OTLP transport of OTEL_EXPORTER_OTLP_PROTOCOL on %s", (runtime) => {
  for (const protocol of ["http/json", "grpc"] as const) {
    test(`${protocol}: the request's SERVER span reaches the Collector`, async () => {
      const gateway = await startGateway(runtime, {
        REDIS_URL: "",
        OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? collector.grpcEndpoint : collector.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        OTEL_SERVICE_NAME: `edge-gateway-${runtime}-${protocol}`,
      });
      try {
        const traceId = await ingestTraced(gateway);
        const [span] = await collector.waitForTrace(
          traceId,
          (spans) => spans.some((found) => found.kind === SPAN_KIND_SERVER),
          `the SERVER span sent over ${protocol}`,
        );
        expect(span?.service).toBe(`edge-gateway-${runtime}-${protocol}`);
      } finally {
        await gateway.stop("SIGKILL");
      }
    });
  }

  test("OTEL_SDK_DISABLED=true: nothing is exported even with an endpoint", async () => {
    const gateway = await startGateway(runtime, {
      REDIS_URL: "",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
      OTEL_SDK_DISABLED: "true",
    });
    try {
      const traceId = await ingestTraced(gateway);
      // Past the exporter's 1 s batch delay, a span would be in the file.
      await Bun.sleep(2_500);
      expect(collector.spans().filter((span) => span.traceId === traceId)).toEqual([]);
      expect(gateway.logs.some((entry) => String(entry.msg).includes("OpenTelemetry"))).toBe(false);
    } finally {
      await gateway.stop("SIGKILL");
    }
  });
});
