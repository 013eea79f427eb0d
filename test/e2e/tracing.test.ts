import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

/** An OTLP/JSON span as the exporter sends it (ids in hex). */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: { stringValue?: string; intValue?: number | string } }>;
  links?: Array<{ traceId: string; spanId: string }>;
}
const SPAN_KIND_SERVER = 2;
const SPAN_KIND_PRODUCER = 4;

/** A local OTLP/HTTP receiver: keeps every span POSTed to /v1/traces (JSON, the exporter's default). */
function otlpReceiver(): { server: Server<undefined>; spans: OtlpSpan[] } {
  const spans: OtlpSpan[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      if (request.method !== "POST" || new URL(request.url).pathname !== "/v1/traces")
        return new Response("not found", { status: 404 });
      const body = (await request.json()) as {
        resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
      };
      for (const resource of body.resourceSpans)
        for (const scope of resource.scopeSpans) spans.push(...scope.spans);
      return Response.json({});
    },
  });
  return { server, spans };
}

function attribute(span: OtlpSpan, key: string): string | number | undefined {
  const value = span.attributes.find((entry) => entry.key === key)?.value;
  return value?.stringValue ?? (value?.intValue === undefined ? undefined : Number(value.intValue));
}

async function waitFor<T>(find: () => T | undefined, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

describe.each(RUNTIMES)("OpenTelemetry spans over OTLP on %s", (runtime) => {
  let gateway: RunningGateway;
  let receiver: ReturnType<typeof otlpReceiver>;
  let topic: string;
  let fanoutTopic: string;

  beforeAll(async () => {
    receiver = otlpReceiver();
    topic = await createTopic(`tracing-${runtime}`, 1);
    fanoutTopic = await createTopic(`tracing-fanout-${runtime}`, 1);
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_FANOUT_TOPIC: fanoutTopic,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.server.port}`,
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    receiver.server.stop(true);
  });

  test("a server span per request, child of the client's traceparent; a producer span per batch linked to it; the record carries the server span", async () => {
    const clientTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const clientSpanId = "00f067aa0ba902b7";
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
      "content-type": "application/json",
      traceparent: `00-${clientTraceId}-${clientSpanId}-01`,
      tracestate: "rojo=00f067aa0ba902b7",
    };
    const ingest = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers,
      body: JSON.stringify({ type: "click", id: "traced", data: { element: "t" } }),
    });
    expect(ingest.status).toBe(202);
    const publish = await fetch(`${gateway.url}/v1/publish`, {
      method: "POST",
      headers,
      body: JSON.stringify({ channel: "traced", data: { n: 1 } }),
    });
    expect(publish.status).toBe(202);

    const [record] = await readTopic(topic, 1);
    const recordHeaders = Object.fromEntries(record?.headers ?? []);
    const [, recordTraceId, recordSpanId] = String(recordHeaders.traceparent).split("-");
    expect(recordTraceId).toBe(clientTraceId);
    expect(recordHeaders.tracestate).toBe("rojo=00f067aa0ba902b7");
    const [fanned] = await readTopic(fanoutTopic, 1);
    const [, fannedTraceId, fannedSpanId] = String(
      Object.fromEntries(fanned?.headers ?? []).traceparent,
    ).split("-");
    expect(fannedTraceId).toBe(clientTraceId);

    // A drain flushes the spans still queued in the batch processor.
    expect(await gateway.stop("SIGTERM")).toBe(0);
    const serverSpan = (route: string) =>
      waitFor(
        () =>
          receiver.spans.find(
            (span) => span.kind === SPAN_KIND_SERVER && attribute(span, "http.route") === route,
          ),
        `the server span of ${route}`,
      );
    const ingestSpan = await serverSpan("/v1/events");
    expect(ingestSpan.traceId).toBe(clientTraceId);
    expect(ingestSpan.parentSpanId).toBe(clientSpanId);
    expect(attribute(ingestSpan, "http.request.method")).toBe("POST");
    expect(attribute(ingestSpan, "http.response.status_code")).toBe(202);
    // The record points consumers at the gateway's span, not at the client's.
    expect(recordSpanId).toBe(ingestSpan.spanId);
    const publishSpan = await serverSpan("/v1/publish");
    expect(publishSpan.parentSpanId).toBe(clientSpanId);
    expect(fannedSpanId).toBe(publishSpan.spanId);

    const producerSpan = (destination: string) =>
      waitFor(
        () =>
          receiver.spans.find(
            (span) =>
              span.kind === SPAN_KIND_PRODUCER &&
              attribute(span, "messaging.destination.name") === destination,
          ),
        `the producer span of ${destination}`,
      );
    const ingestBatch = await producerSpan(topic);
    expect(attribute(ingestBatch, "messaging.system")).toBe("kafka");
    expect(attribute(ingestBatch, "messaging.batch.message_count")).toBe(1);
    expect(ingestBatch.links).toContainEqual(
      expect.objectContaining({ traceId: clientTraceId, spanId: ingestSpan.spanId }),
    );
    const publishBatch = await producerSpan(fanoutTopic);
    expect(publishBatch.links).toContainEqual(
      expect.objectContaining({ traceId: clientTraceId, spanId: publishSpan.spanId }),
    );
  });
});
