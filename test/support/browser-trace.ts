/**
 * The browser test's page script (bundled by `Bun.build`, target browser): the
 * official OpenTelemetry SDK and OTLP/HTTP exporter in the page start a root
 * CLIENT span, send its traceparent to the gateway with fetch, and export the
 * span to the Collector (CORS).
 */
import { SpanKind } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

export const PAGE_SERVICE = "browser-page";

export async function tracedIngest(options: {
  collector: string;
  gateway: string;
  token: string;
  event: Record<string, unknown>;
}): Promise<{ status: number; traceId: string; spanId: string }> {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": PAGE_SERVICE }),
    spanProcessors: [
      // `headers` makes the exporter POST with fetch/XHR (CORS) rather than sendBeacon.
      new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${options.collector}/v1/traces`, headers: {} })),
    ],
  });
  const span = provider.getTracer("page").startSpan("POST /v1/events", {
    kind: SpanKind.CLIENT,
    attributes: { "http.request.method": "POST", "url.full": `${options.gateway}/v1/events` },
  });
  const { traceId, spanId } = span.spanContext();
  const response = await fetch(`${options.gateway}/v1/events`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${options.token}`,
      "content-type": "application/json",
      traceparent: `00-${traceId}-${spanId}-01`,
    },
    body: JSON.stringify(options.event),
  });
  span.setAttribute("http.response.status_code", response.status);
  span.end();
  await provider.forceFlush();
  return { status: response.status, traceId, spanId };
}
