import type { SinkWriter } from "./sink.ts";
import type { HttpRequest } from "./transport.ts";

/** What the SERVER span of an HTTP request records of it. */
export type TracedRequest = Pick<HttpRequest, "method" | "path" | "query" | "header">;

/** The SERVER span of one HTTP request or WebSocket frame. */
export interface RequestSpan {
  /** This span's W3C traceparent: records written for the request carry it, so a consumer continues the trace. */
  readonly traceparent: string;
  end(status: number): void;
}

/** OpenTelemetry spans, exported over OTLP; present only when an OTLP endpoint is configured. */
export interface Tracing {
  /** `route` is the template (`/v1/events`); `parent` is the request's valid `traceparent` (and `tracestate`), when it sent one. */
  startRequest(
    request: TracedRequest,
    route: string,
    parent: { traceparent: string; tracestate?: string } | undefined,
  ): RequestSpan;
  /** The same for a WebSocket frame of `type` the gateway acts on (a publish); `end` takes its outcome as an HTTP status. */
  startFrame(type: string, parent: { traceparent: string; tracestate?: string } | undefined): RequestSpan;
  /** `writer`, with a PRODUCER span per batch written, linked to the request spans of its records. */
  traceWriter(writer: SinkWriter): SinkWriter;
  /**
   * Exports the spans still queued, then stops; rejects once `timeoutMs` ran
   * out first (a receiver that does not answer), dropping what is left.
   */
  shutdown(timeoutMs: number): Promise<void>;
}
