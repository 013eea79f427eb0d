import type { HttpReply } from "../ports/transport.ts";

/** `*` for any origin, or the exact origins (`scheme://host[:port]`) allowed. */
export type CorsOrigins = "*" | readonly string[];

const ALLOWED_REQUEST_HEADERS =
  "authorization, content-type, content-encoding, idempotency-key, traceparent, tracestate, last-event-id, ce-specversion, ce-id, ce-source, ce-type, ce-time, ce-subject, ce-dataschema, ce-datacontenttype, ce-partitionkey";
const LISTED = new Set(ALLOWED_REQUEST_HEADERS.split(", "));
/**
 * A binary-mode CloudEvent's extension attribute header: `ce-` and a
 * CloudEvents attribute name (past 20 characters only discouraged, and carried).
 */
const CLOUDEVENTS_EXTENSION_HEADER = /^ce-[a-z0-9]+$/;
/** Extension headers one preflight may add: an event has a few, and the answer stays small. */
const MAX_EXTENSION_HEADERS = 32;
/** The response headers a browser script may read: the rate-limit state and when to retry. */
// Deprecation, Sunset and Link tell a script that the route it calls is retired (RFC 9745, RFC 8594).
// WWW-Authenticate tells it whether a new token helps (invalid_token) or which scope is missing (RFC 6750).
const EXPOSED_HEADERS =
  "RateLimit-Policy, RateLimit, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, Idempotency-Replayed, Deprecation, Sunset, Link, WWW-Authenticate";
const PREFLIGHT_MAX_AGE_SEC = "600";

/**
 * Which browser origins may call the API (CORS_ORIGINS). Tokens travel in the
 * Authorization header, never in cookies, so no credentials mode is offered.
 * With a list, every response says `Vary: Origin`, since whether it carries
 * Access-Control-Allow-Origin depends on the request's Origin.
 */
export class CorsPolicy {
  private readonly any: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly anyOriginHeaders: Record<string, string> = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers": EXPOSED_HEADERS,
  };
  private readonly varyOnly: Record<string, string> = { vary: "Origin" };
  /** The headers for each allowed origin, made once: the router keeps its header blocks by these objects. */
  private readonly originHeaders: ReadonlyMap<string, Readonly<Record<string, string>>>;

  constructor(origins: CorsOrigins) {
    this.any = origins === "*";
    this.origins = new Set(origins === "*" ? [] : origins);
    this.originHeaders = new Map(
      [...this.origins].map((origin) => [
        origin,
        {
          "access-control-allow-origin": origin,
          vary: "Origin",
          "access-control-expose-headers": EXPOSED_HEADERS,
        },
      ]),
    );
  }

  allows(origin: string | undefined): boolean {
    return origin !== undefined && (this.any || this.origins.has(origin));
  }

  /**
   * Headers for any response to a request with this Origin header (none for
   * an origin not allowed): one of a fixed set of objects, the same for every
   * request from an origin.
   */
  responseHeaders(origin: string | undefined): Readonly<Record<string, string>> {
    if (this.any) return this.anyOriginHeaders;
    return (origin === undefined ? undefined : this.originHeaders.get(origin)) ?? this.varyOnly;
  }

  /**
   * The answer to a preflight from an allowed origin for a route accepting
   * `methods`; the origin headers are added with every other response's.
   * `requestedHeaders` (Access-Control-Request-Headers) adds the `ce-*`
   * extension headers it names, which the gateway carries into Kafka as any
   * binary-mode attribute and no fixed list can name.
   */
  preflight(methods: readonly string[], requestedHeaders?: string): HttpReply {
    const extensions = (requestedHeaders ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase())
      .filter((name) => CLOUDEVENTS_EXTENSION_HEADER.test(name) && !LISTED.has(name))
      .slice(0, MAX_EXTENSION_HEADERS);
    return {
      status: 204,
      headers: {
        "access-control-allow-methods": methods.join(", "),
        "access-control-allow-headers":
          extensions.length === 0
            ? ALLOWED_REQUEST_HEADERS
            : `${ALLOWED_REQUEST_HEADERS}, ${extensions.join(", ")}`,
        "access-control-max-age": PREFLIGHT_MAX_AGE_SEC,
      },
      body: "",
    };
  }

  /**
   * A WebSocket upgrade is refused when a browser sent it from an origin not
   * allowed. Clients that are not browsers send no Origin and are let through:
   * they are not subject to CORS and authenticate with a token like any other.
   */
  refusesUpgrade(origin: string | undefined): boolean {
    return origin !== undefined && !this.allows(origin);
  }
}

/** A preflight is an OPTIONS request naming the method it asks for (Fetch standard). */
export function isPreflight(method: string, requestedMethod: string | undefined): boolean {
  return method === "OPTIONS" && requestedMethod !== undefined;
}
