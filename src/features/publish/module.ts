import { isUtf8 } from "node:buffer";
import { requireChannel } from "../../domain/channel.ts";
import { GatewayError, isGatewayError } from "../../domain/errors.ts";
import { insufficientScope, mayBroadcast, type Principal } from "../../domain/principal.ts";
import { authorizedCaller, type CallerChecks } from "../../http/caller.ts";
import { requireUtf8Charset } from "../../http/charset.ts";
import { type Idempotency, idempotencyKeyOf, idempotencyScope } from "../../http/idempotency.ts";
import { json } from "../../http/reply.ts";
import type { RequestBodies } from "../../http/request-bodies.ts";
import { traceContextOf } from "../../http/trace-context.ts";
import {
  DEPTH_ERROR,
  DUPLICATE_KEY_ERROR,
  JsonScanner,
  type RecordSpans,
  TOO_DEEP_REASON,
} from "../../lib/json-scan.ts";
import { Deadlines } from "../../lib/time.ts";
import { utf8Length } from "../../lib/utf8.ts";
import { withoutUtf8Bom } from "../../lib/utf8-bom.ts";
import type { Admission } from "../../ports/admission.ts";
import type { FanoutBus, FanoutMessage } from "../../ports/fanout-bus.ts";
import type { Module } from "../../ports/module.ts";
import type { Publish } from "../../ports/publish.ts";
import type { Tracing } from "../../ports/tracing.ts";
import type { HttpReply, HttpRequest } from "../../ports/transport.ts";

export interface PublishDependencies extends CallerChecks {
  /** Requests with an Idempotency-Key run through it. */
  idempotency: Pick<Idempotency, "run">;
  /** A publish costs one request of the client's IP budget and one event of the tenant's. */
  admission: Pick<Admission, "request" | "events">;
  bus: FanoutBus;
  /** Bounds the bodies being received at once. */
  bodies: Pick<RequestBodies, "read">;
  /** Body bytes past which a publish gets 413 (bounded again by MAX_BODY_BYTES while it is read). */
  maxBytes: number;
  /** How long a publish waits for Kafka's acknowledgement before a 503 (INGEST_ACK_TIMEOUT_MS, as ingest). */
  ackTimeoutMs: number;
}

/**
 * The publish body, checked by the scanner before JSON.parse (bounded nesting,
 * no exception on bad input), with the exact text of its `data`.
 */
function parsePublishBody(sent: Uint8Array): {
  body: Record<string, unknown>;
  dataJson: string | undefined;
} {
  // A leading byte order mark is not JSON: ingest skips it, and so does this route.
  const bytes = withoutUtf8Bom(sent);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // JSON text is UTF-8 (RFC 8259): invalid bytes would be delivered as U+FFFD, not as sent.
  if (!isUtf8(text)) throw new GatewayError("malformed_json", "the body is not valid UTF-8");
  // Its `data` is forwarded byte for byte: a key twice would be read differently by different consumers.
  const scanner = new JsonScanner(text, { rejectDuplicateKeys: true });
  let spans: RecordSpans;
  try {
    spans = scanner.record();
    scanner.end();
  } catch (failure) {
    if (failure === DEPTH_ERROR) throw new GatewayError("bad_request", TOO_DEEP_REASON);
    if (failure === DUPLICATE_KEY_ERROR)
      throw new GatewayError("bad_request", `duplicate key ${JSON.stringify(scanner.duplicateKey)}`);
    throw new GatewayError("malformed_json", `malformed JSON near byte ${scanner.pos}`);
  }
  const body = JSON.parse(text.toString("utf8", spans.start, spans.end)) as unknown;
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new GatewayError("bad_request", "the body must be a JSON object");
  }
  return {
    body: body as Record<string, unknown>,
    dataJson: spans.data && text.toString("utf8", spans.data.start, spans.data.end),
  };
}

/**
 * The publish both transports share: `data` within `maxBytes` (a WebSocket
 * frame's; an HTTP body was held to it whole), the channel checked against
 * the token, one event of the tenant's budget, then the bus, answered once
 * Kafka acknowledged (or a 503 after `ackTimeoutMs`).
 */
export function createPublisher(
  deps: Pick<PublishDependencies, "admission" | "bus" | "ackTimeoutMs" | "maxBytes">,
): Publish {
  // One timer for every publish waiting for its acknowledgement (they share the time limit).
  const acknowledgements = new Deadlines(deps.ackTimeoutMs);
  return async (principal, request) => {
    // A UTF-16 unit is at most 3 UTF-8 bytes: most data is measured without counting its bytes.
    if (request.dataJson.length * 3 > deps.maxBytes && utf8Length(request.dataJson) > deps.maxBytes)
      throw new GatewayError("payload_too_large", `a publish's data is at most ${deps.maxBytes} bytes`);
    const message: FanoutMessage = { tenant: principal.tenant, dataJson: request.dataJson, ts: Date.now() };
    if (request.trace !== undefined) {
      message.traceparent = request.trace.traceparent;
      if (request.trace.tracestate !== undefined) message.tracestate = request.trace.tracestate;
    }
    if (request.broadcast) {
      if (!mayBroadcast(principal))
        throw insufficientScope("a token limited by a channels claim cannot broadcast");
      message.broadcast = true;
      if (request.channel !== undefined) message.channel = requireChannel(principal, request.channel);
    } else message.channel = requireChannel(principal, request.channel);
    const admitted = deps.admission.events(principal, 1);
    const rateLimit = admitted instanceof Promise ? await admitted : admitted;
    await acknowledgements.within(
      deps.bus.publish([message]),
      () =>
        new GatewayError(
          "unavailable",
          "Kafka did not acknowledge in time; the event may still be published",
          {
            "retry-after": "5",
          },
        ),
    );
    return rateLimit;
  };
}

/**
 * `publish` inside a SERVER span, a child of the publisher's trace context:
 * the message then carries the span's own traceparent. For WebSocket frames
 * (HTTP requests get theirs from `tracedRoute`).
 */
export function tracedPublisher(publish: Publish, tracing: Tracing, frameType: string): Publish {
  return async (principal, request) => {
    const span = tracing.startFrame(frameType, request.trace);
    const trace = {
      traceparent: span.traceparent,
      ...(request.trace?.tracestate === undefined ? {} : { tracestate: request.trace.tracestate }),
    };
    try {
      const headers = await publish(principal, { ...request, trace });
      span.end(202);
      return headers;
    } catch (error) {
      span.end(isGatewayError(error) ? error.status : 500);
      throw error;
    }
  };
}

/** POST /v1/publish: server-side publish to a channel, or to every connection of the tenant, through the bus. */
export function createPublishModule(deps: PublishDependencies): Module {
  const publisher = createPublisher(deps);
  const publish = async (
    request: HttpRequest,
    principal: Principal,
    bytes: Uint8Array,
  ): Promise<HttpReply> => {
    const { body, dataJson } = parsePublishBody(bytes);
    // A `broadcast` that is not a boolean ("true", 1) is a client bug, refused as the WebSocket
    // publish frame refuses it: read as false, a publish meant for the whole tenant went to its channel alone.
    if (body.broadcast !== undefined && typeof body.broadcast !== "boolean")
      throw new GatewayError("bad_request", "broadcast must be true or false");
    const rateLimit = await publisher(principal, {
      channel: body.channel,
      broadcast: body.broadcast === true,
      dataJson: dataJson ?? "null",
      trace: traceContextOf(request),
    });
    return json(202, { published: 1 }, rateLimit?.own, rateLimit?.shared);
  };
  return {
    name: "publish",
    routes: [
      {
        method: "POST",
        path: "/v1/publish",
        handler: async (request) => {
          const principal = await authorizedCaller(request, "publish", deps);
          const mediaType = request.header("content-type")?.split(";")[0]?.trim().toLowerCase();
          if (mediaType !== "application/json")
            throw new GatewayError("unsupported_media_type", "use application/json");
          requireUtf8Charset(request.header("content-type"));
          // This route reads the body as sent: a compressed one would be taken for JSON (a 400 for
          // gzip, and a brotli body that happens to be JSON text would be published as is).
          const coding = request.header("content-encoding")?.trim().toLowerCase();
          if (coding !== undefined && coding !== "" && coding !== "identity")
            throw new GatewayError(
              "unsupported_media_type",
              `Content-Encoding ${coding} is not supported on /v1/publish; send the body uncompressed`,
              { "accept-encoding": "identity" },
            );
          // Refused on its announced length (a valid Content-Length is digits: the adapters checked the
          // framing) before the body is read, as ingest's body limit is.
          if (Number(request.header("content-length") ?? 0) > deps.maxBytes)
            throw publishTooLarge(deps.maxBytes);
          // So is a malformed Idempotency-Key.
          const idempotencyKey = idempotencyKeyOf(request);
          const bytes = await deps.bodies.read(request, principal.tenant);
          if (bytes.byteLength > deps.maxBytes) throw publishTooLarge(deps.maxBytes);
          if (idempotencyKey === undefined) return publish(request, principal, bytes);
          return deps.idempotency.run(request, idempotencyKey, idempotencyScope(principal), bytes, () =>
            publish(request, principal, bytes),
          );
        },
      },
    ],
  };
}

function publishTooLarge(maxBytes: number): GatewayError {
  return new GatewayError("payload_too_large", `a publish body is at most ${maxBytes} bytes`);
}
