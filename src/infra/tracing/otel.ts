import type { Attributes, Link, SpanContext, Tracer } from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { OtlpCompression, OtlpProtocol, SpanLimits, TracesSampler } from "../../config/config.ts";
import { withDeadline } from "../../lib/time.ts";
import type { Logger } from "../../log/logger.ts";
import { OccasionalLine } from "../../log/occasional-line.ts";
import type { SinkMessage, SinkWriter } from "../../ports/sink.ts";
import type { RequestSpan, TracedRequest, Tracing } from "../../ports/tracing.ts";

export interface OtelOptions {
  /** Full OTLP/HTTP traces URL (…/v1/traces), or the gRPC endpoint. */
  tracesUrl: string;
  protocol: OtlpProtocol;
  serviceName: string;
  serviceVersion: string;
  /** OTEL_TRACES_SAMPLER as the config validated it, with its ratio (OTEL_TRACES_SAMPLER_ARG). */
  sampler: TracesSampler;
  samplerRatio: number;
  /** OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION and _TIMEOUT as the config validated them. */
  compression: OtlpCompression;
  exportTimeoutMs: number;
  /** The span limits as the config validated them. */
  spanLimits: SpanLimits;
  log: Logger;
}

/** Spans waiting for export beyond this are dropped (counted by the SDK), never buffered without bound. */
const MAX_QUEUED_SPANS = 4096;
const EXPORT_BATCH_SPANS = 512;
const EXPORT_DELAY_MS = 1000;
/** A batch links to at most this many request spans (the SDK's default link limit). */
const MAX_LINKS = 128;
/** Where WebSocket frames arrive (the app's `wsPath`). */
const WS_PATH = "/v1/ws";
/**
 * Query parameters whose values a span never records: the semantic conventions' list of URL
 * signatures (url.query), and `token`, the gateway's own bearer token in a query.
 */
const REDACTED_QUERY_KEYS = new Set(["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature", "token"]);
/**
 * Longest client-written text a span records (a query, a user agent, a host), cut beyond: a request
 * head may hold 16 KiB, and MAX_QUEUED_SPANS of those would hold 64 MiB while a receiver is down.
 */
const MAX_CLIENT_TEXT = 1024;
const clipped = (text: string) => (text.length > MAX_CLIENT_TEXT ? text.slice(0, MAX_CLIENT_TEXT) : text);
/** `host`, `host:port`, `[v6]` or `[v6]:port`, as a Host header holds it. */
const HOST_HEADER = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/;

/**
 * The span attributes of a request's query (semantic conventions: url.query, required when there is
 * one), with the values of REDACTED_QUERY_KEYS replaced by `REDACTED`.
 */
function queryAttribute(query: URLSearchParams): Attributes {
  if (query.size === 0) return {};
  const scrubbed = new URLSearchParams();
  for (const [key, value] of query) scrubbed.append(key, REDACTED_QUERY_KEYS.has(key) ? "REDACTED" : value);
  return { "url.query": clipped(scrubbed.toString()) };
}

/** server.address and server.port from the Host header, as the HTTP semantic conventions take them. */
function serverAttributes(host: string | undefined): Attributes {
  const match = host === undefined ? null : HOST_HEADER.exec(host.trim());
  if (!match?.[1]) return {};
  const port = match[2] === undefined ? undefined : Number(match[2]);
  return {
    "server.address": clipped(match[1].replace(/^\[(.*)\]$/, "$1")),
    ...(port === undefined || port > 65535 ? {} : { "server.port": port }),
  };
}

/** The batch processor's report of spans it dropped with its queue full (to the SDK's diagnostic channel). */
const DROPPED_SPANS = /^Dropped (\d+) spans because maxQueueSize reached/;
/** At most one line about dropped spans this often, with how many were dropped since the last one. */
const DROPPED_SPANS_LINE_MS = 60_000;

/**
 * Logs the spans the batch processor drops when its queue is full (a receiver slower than the spans
 * come): the SDK says so only on its diagnostic channel, which nothing reads, so spans went missing
 * without a word. A line at most once a minute, never one per drop.
 */
function reportDroppedSpans(api: typeof import("@opentelemetry/api"), log: Logger): void {
  const line = new OccasionalLine(DROPPED_SPANS_LINE_MS);
  const quiet = () => {};
  const warn = (message: string) => {
    const dropped = DROPPED_SPANS.exec(message);
    const count = dropped === null ? undefined : line.due(Number(dropped[1]));
    if (count !== undefined)
      log.warn(
        { dropped: count, maxQueued: MAX_QUEUED_SPANS },
        "OpenTelemetry: spans dropped, the export queue is full (the receiver takes them slower than they come)",
      );
  };
  api.diag.setLogger(
    { error: quiet, warn, info: quiet, debug: quiet, verbose: quiet },
    api.DiagLogLevel.WARN,
  );
}

type Sampler = import("@opentelemetry/sdk-trace-base").Sampler;

/** The sampler OTEL_TRACES_SAMPLER names, built as the SDK would build it from the environment. */
function samplerOf(
  api: typeof import("@opentelemetry/api"),
  sdk: typeof import("@opentelemetry/sdk-trace-base"),
  name: TracesSampler,
  ratio: number,
): Sampler {
  switch (name) {
    case "always_on":
      return new sdk.AlwaysOnSampler();
    case "always_off":
      return new sdk.AlwaysOffSampler();
    case "traceidratio":
      return new sdk.TraceIdRatioBasedSampler(ratio);
    case "parentbased_always_on":
      return linksDecide(api, sdk, new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() }));
    case "parentbased_always_off":
      return linksDecide(api, sdk, new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() }));
    case "parentbased_traceidratio":
      return linksDecide(
        api,
        sdk,
        new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio) }),
      );
  }
}

/**
 * A parent-based sampler that also follows the spans a parentless span links
 * to: a batch's PRODUCER span has no one parent (it writes the records of
 * several requests) but links to each request's span, so it is sampled when
 * one of them was and dropped when none was. The parent-based sampler alone
 * sees a root there and asks its root sampler: every batch of unsampled
 * requests exported under `parentbased_always_on`, none of sampled ones under
 * `parentbased_always_off`.
 */
function linksDecide(
  api: typeof import("@opentelemetry/api"),
  sdk: typeof import("@opentelemetry/sdk-trace-base"),
  parentBased: Sampler,
): Sampler {
  return {
    shouldSample(context, traceId, spanName, spanKind, attributes, links) {
      if (links.length === 0 || api.trace.getSpanContext(context) !== undefined)
        return parentBased.shouldSample(context, traceId, spanName, spanKind, attributes, links);
      const sampled = links.some((link) => (link.context.traceFlags & api.TraceFlags.SAMPLED) !== 0);
      return {
        decision: sampled ? sdk.SamplingDecision.RECORD_AND_SAMPLED : sdk.SamplingDecision.NOT_RECORD,
      };
    },
    toString: () => `LinksDecide{${parentBased.toString()}}`,
  };
}

type ExporterSettings = NonNullable<
  ConstructorParameters<typeof import("@opentelemetry/exporter-trace-otlp-http").OTLPTraceExporter>[0]
>;

/**
 * The official exporter of each OTLP transport, imported only when chosen.
 * The headers it reads from the environment itself (checked by the config).
 */
async function otlpExporter(options: OtelOptions): Promise<SpanExporter> {
  const settings = {
    url: options.tracesUrl,
    // The SDK's CompressionAlgorithm enum holds these very strings.
    compression: options.compression as ExporterSettings["compression"],
    timeoutMillis: options.exportTimeoutMs,
  };
  switch (options.protocol) {
    case "http/protobuf":
      return new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter(settings);
    case "http/json":
      return new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter(settings);
    case "grpc":
      return new (await import("@opentelemetry/exporter-trace-otlp-grpc")).OTLPTraceExporter(settings);
  }
}

/**
 * OpenTelemetry tracing exported over OTLP (HTTP with protobuf or JSON, or
 * gRPC). The SDK is imported here, lazily: a gateway without an OTLP
 * endpoint never loads it.
 */
export async function createOtelTracing(options: OtelOptions): Promise<Tracing> {
  const [api, sdk, exporter, resources, semconv] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/sdk-trace-base"),
    otlpExporter(options),
    import("@opentelemetry/resources"),
    import("@opentelemetry/semantic-conventions"),
  ]);
  const provider = new sdk.BasicTracerProvider({
    sampler: samplerOf(api, sdk, options.sampler, options.samplerRatio),
    // Only the limits set: the SDK merges these over its defaults, and an undefined one would lift it.
    spanLimits: Object.fromEntries(
      Object.entries(options.spanLimits).filter(([, limit]) => limit !== undefined),
    ),
    // The SDK's own attributes (telemetry.sdk.*), then ours, then what the operator set in
    // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (the OpenTelemetry precedence): without the env
    // detector a deployment.environment or k8s.* attribute set the standard way never reached the backend.
    resource: resources
      .defaultResource()
      .merge(
        resources.resourceFromAttributes({
          [semconv.ATTR_SERVICE_NAME]: options.serviceName,
          [semconv.ATTR_SERVICE_VERSION]: options.serviceVersion,
        }),
      )
      .merge(resources.detectResources({ detectors: [resources.envDetector] })),
    spanProcessors: [
      new sdk.BatchSpanProcessor(loggingFailures(exporter, options), {
        maxQueueSize: MAX_QUEUED_SPANS,
        maxExportBatchSize: EXPORT_BATCH_SPANS,
        scheduledDelayMillis: EXPORT_DELAY_MS,
      }),
    ],
  });
  reportDroppedSpans(api, options.log);
  const tracer: Tracer = provider.getTracer("edge-gateway", options.serviceVersion);

  const remoteContext = (traceparent: string, tracestate?: string): SpanContext => {
    const [, traceId, spanId, flags] = traceparent.split("-") as [string, string, string, string];
    return {
      traceId,
      spanId,
      traceFlags: Number.parseInt(flags, 16) & api.TraceFlags.SAMPLED,
      isRemote: true,
      ...(tracestate === undefined ? {} : { traceState: api.createTraceState(tracestate) }),
    };
  };

  const parentContext = (parent: { traceparent: string; tracestate?: string } | undefined) =>
    parent === undefined
      ? api.ROOT_CONTEXT
      : api.trace.setSpanContext(api.ROOT_CONTEXT, remoteContext(parent.traceparent, parent.tracestate));
  const serverSpan = (name: string, attributes: Attributes, parent: Parameters<typeof parentContext>[0]) => {
    const span = tracer.startSpan(name, { kind: api.SpanKind.SERVER, attributes }, parentContext(parent));
    const own = span.spanContext();
    const flags = own.traceFlags & api.TraceFlags.SAMPLED ? "01" : "00";
    return { span, traceparent: `00-${own.traceId}-${own.spanId}-${flags}` };
  };

  return {
    startRequest(request: TracedRequest, route: string, parent): RequestSpan {
      // The HTTP server span's required attributes (semantic conventions): url.path and url.scheme too,
      // which backends group and filter on, url.query when there is one; and, at the span's start as they
      // ask (samplers may read them), the recommended server.address, server.port and user agent. The
      // gateway serves plain HTTP (TLS ends before it).
      const userAgent = request.header("user-agent");
      const { span, traceparent } = serverSpan(
        `${request.method} ${route}`,
        {
          [semconv.ATTR_HTTP_REQUEST_METHOD]: request.method,
          [semconv.ATTR_HTTP_ROUTE]: route,
          [semconv.ATTR_URL_PATH]: request.path,
          [semconv.ATTR_URL_SCHEME]: "http",
          ...queryAttribute(request.query),
          ...serverAttributes(request.header("host")),
          ...(userAgent === undefined ? {} : { [semconv.ATTR_USER_AGENT_ORIGINAL]: clipped(userAgent) }),
        },
        parent,
      );
      return {
        traceparent,
        end(status) {
          span.setAttribute(semconv.ATTR_HTTP_RESPONSE_STATUS_CODE, status);
          if (status >= 500) {
            // An error span names its error: for an HTTP status, the status code as a string.
            span.setAttribute(semconv.ATTR_ERROR_TYPE, String(status));
            span.setStatus({ code: api.SpanStatusCode.ERROR });
          }
          span.end();
        },
      };
    },

    startFrame(type, parent): RequestSpan {
      const { span, traceparent } = serverSpan(
        `WebSocket ${type}`,
        { [semconv.ATTR_NETWORK_PROTOCOL_NAME]: "websocket", [semconv.ATTR_URL_PATH]: WS_PATH },
        parent,
      );
      return {
        traceparent,
        end(status) {
          if (status >= 500) {
            span.setAttribute(semconv.ATTR_ERROR_TYPE, String(status));
            span.setStatus({ code: api.SpanStatusCode.ERROR });
          }
          span.end();
        },
      };
    },

    traceWriter(writer: SinkWriter): SinkWriter {
      const linksOf = (batch: SinkMessage[]): Link[] => {
        const links: Link[] = [];
        let previous: string | undefined;
        for (const message of batch) {
          const traceparent = message.headers.traceparent;
          // The records of one request are adjacent in a batch: one link per request.
          if (traceparent === undefined || traceparent === previous) continue;
          previous = traceparent;
          links.push({ context: remoteContext(traceparent) });
          if (links.length === MAX_LINKS) break;
        }
        return links;
      };
      return {
        kind: writer.kind,
        ...(writer.writersPerTopic === undefined ? {} : { writersPerTopic: writer.writersPerTopic }),
        ...(writer.writerOf ? { writerOf: (message: SinkMessage) => writer.writerOf?.(message) ?? 0 } : {}),
        ...(writer.reset ? { reset: (topic: string, index?: number) => writer.reset?.(topic, index) } : {}),
        close: () => writer.close(),
        write(batch, index) {
          const topic = batch[0]?.topic ?? "";
          const span = tracer.startSpan(
            `send ${topic}`,
            {
              kind: api.SpanKind.PRODUCER,
              links: linksOf(batch),
              // Messaging semantic conventions (still "development" there, so not in the stable export).
              attributes: {
                "messaging.system": writer.kind === "kafka" ? "kafka" : "local-log",
                "messaging.destination.name": topic,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.batch.message_count": batch.length,
              },
            },
            api.ROOT_CONTEXT,
          );
          return writer.write(batch, index).then(
            () => span.end(),
            (error: unknown) => {
              // A failed operation names its error (messaging conventions): the client's error code, low in cardinality.
              span.setAttribute(semconv.ATTR_ERROR_TYPE, errorType(error));
              span.setStatus({ code: api.SpanStatusCode.ERROR, message: String(error) });
              span.end();
              throw error;
            },
          );
        },
      };
    },

    // The exporter waits up to 10 s for a receiver, more than a drain may have left.
    shutdown: (timeoutMs) =>
      withDeadline(
        provider.shutdown(),
        timeoutMs,
        () => new Error(`spans not exported within ${timeoutMs} ms of the drain's end: dropped`),
      ),
  };
}

/** The error.type of a failed write: the error's code (`PLT_KFK_NETWORK`, a GatewayError's), else its class, else `_OTHER`. */
function errorType(error: unknown): string {
  if (!(error instanceof Error)) return "_OTHER";
  const code = (error as Error & { code?: unknown }).code;
  return typeof code === "string" && code !== "" ? code : error.name;
}

/** ExportResultCode.SUCCESS of @opentelemetry/core (not a dependency of its own). */
const EXPORT_SUCCESS = 0;

/**
 * `exporter`, logging when exports start failing and when they succeed again:
 * the SDK reports a failed export only to its diagnostic logger, which nothing
 * reads, so a Collector that was down or refused the spans left no trace at
 * all. One line per change, not per export (one a second while it is down).
 */
function loggingFailures(
  exporter: SpanExporter,
  options: Pick<OtelOptions, "tracesUrl" | "log">,
): SpanExporter {
  let failing = false;
  const url = options.tracesUrl;
  return {
    export(spans, done) {
      exporter.export(spans, (result) => {
        if (result.code !== EXPORT_SUCCESS && !failing) {
          failing = true;
          options.log.warn(
            { url, err: result.error?.message },
            "OpenTelemetry: span export failing, spans are dropped until it succeeds",
          );
        } else if (result.code === EXPORT_SUCCESS && failing) {
          failing = false;
          options.log.info({ url }, "OpenTelemetry: span export succeeds again");
        }
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    ...(exporter.forceFlush ? { forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve() } : {}),
  };
}
