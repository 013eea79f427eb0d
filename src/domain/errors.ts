/**
 * The catalogue of errors the gateway answers with: HTTP error codes, the
 * codes of WebSocket `error` frames, WebSocket close codes and the codes of
 * per-record refusals. Every code is stable (part of the public contract:
 * clients branch on it) and carries what it means and whether and when to
 * retry; `docs/errors.md` is generated from this file
 * (`bun scripts/gen-docs.ts`). Modules throw `GatewayError`; only the HTTP
 * edge (`errorReply`) turns one into a response.
 */

/** An entry of the catalogue: what the code means, and whether and when a client should retry. */
export interface ErrorMeaning {
  meaning: string;
  /** Whether sending the same thing again can succeed (without changing it or the token). */
  retry: boolean;
  /** When and how to retry, or what to change instead. */
  advice: string;
}

/** HTTP error codes: the `error` member of every error body, with its status. */
export const HTTP_ERRORS = {
  bad_request: {
    status: 400,
    meaning:
      "The request is malformed: a bad query parameter (a `since` or SSE `Last-Event-ID` that is not an event id included), an empty batch, a body that is not a JSON object or array, a publish body nested deeper than 64 levels or holding a key twice, a malformed percent-encoding in the path, or broken request framing (then the connection is closed).",
    retry: false,
    advice: "Fix the request; the message says what is wrong.",
  },
  malformed_json: {
    status: 400,
    meaning:
      "The body is not JSON, or no NDJSON line of it parses (also when the first 100 lines are all malformed: the rest is not read).",
    retry: false,
    advice: "Fix the body.",
  },
  unauthorized: {
    status: 401,
    meaning:
      'No bearer token, a malformed `Authorization` header, or a token that is invalid, expired or not for this gateway (`iss`, `aud`). `WWW-Authenticate` is RFC 6750\'s challenge: `Bearer` without a bearer token, `Bearer error="invalid_request", …` for a malformed one, `Bearer error="invalid_token", error_description="…"` for a bad one.',
    retry: true,
    advice: "Once, with a fresh token (the official client refreshes on 401); never with the same token.",
  },
  forbidden: {
    status: 403,
    meaning:
      'The token lacks the route\'s scope (`ingest`, `subscribe`, `publish`), its `channels` claim does not allow the channel or limits it and it broadcasts (these carry `WWW-Authenticate: Bearer error="insufficient_scope", …`, with `scope="…"` for a missing scope: RFC 6750), or the browser origin is not in `CORS_ORIGINS` (preflights and WebSocket upgrades).',
    retry: false,
    advice: "Needs another token or configuration.",
  },
  not_found: {
    status: 404,
    meaning: "No route has this path.",
    retry: false,
    advice: "Check the path (every route is under `/v1`, besides `/health`, `/health/live` and `/metrics`).",
  },
  method_not_allowed: {
    status: 405,
    meaning: "The route exists but not with this method; `Allow` lists the methods it has.",
    retry: false,
    advice: "Use a method from `Allow`.",
  },
  upgrade_required: {
    status: 426,
    meaning:
      "A `GET` of `/v1/ws` that asks for no WebSocket upgrade (no `Upgrade: websocket`); `Upgrade: websocket` names what to ask for. An upgrade that is asked for but malformed (no valid `Sec-WebSocket-Key`), or asked for in a `HEAD` (only a `GET` upgrades), is a 400 `bad_request` instead; a `HEAD` without one gets this 426. Also an upgrade asking for another WebSocket version than 13 (`Sec-WebSocket-Version: 13` names the one spoken, RFC 6455 §4.4).",
    retry: false,
    advice: "Open it with a WebSocket client.",
  },
  idempotency_in_flight: {
    status: 409,
    meaning: "A request with the same `Idempotency-Key` is still being handled (`Retry-After: 1`).",
    retry: true,
    advice: "After `Retry-After`: the repeat then gets the first request's answer.",
  },
  duplicate_in_flight: {
    status: 409,
    meaning:
      "Per-record deduplication (a tenant setting): another request is writing a record with the same `id` right now, so nothing of this request was written (`Retry-After: 1`).",
    retry: true,
    advice:
      "After `Retry-After`: the repeat then gets those records acknowledged as `duplicates`, or written if the other write failed.",
  },
  history_gone: {
    status: 410,
    meaning:
      "`since` cannot be served: older than the history kept or the fan-out topic's retention, or from another epoch or partition.",
    retry: false,
    advice: "Not with this `since`: start again without it (live only) and reload the state from elsewhere.",
  },
  payload_too_large: {
    status: 413,
    meaning:
      "The body is over `MAX_BODY_BYTES` (also once decompressed), a publish body over `PUBLISH_MAX_BYTES`, or a batch holds more than `MAX_RECORDS_PER_REQUEST` records. The connection is closed (the rest of the upload is not read).",
    retry: false,
    advice: "Split the batch into smaller requests.",
  },
  record_too_large: {
    status: 413,
    meaning:
      "A record can never fit a Kafka batch (`KAFKA_MAX_MESSAGE_BYTES`), or Kafka refused it as too large; it was dead-lettered (or dropped).",
    retry: false,
    advice: "The record itself must shrink.",
  },
  unsupported_media_type: {
    status: 415,
    meaning:
      "`Content-Type` is not JSON or NDJSON (`application/json`, `application/*+json`, `application/x-ndjson`, `application/ndjson`, `application/jsonl`; `POST /v1/publish`: `application/json` only), or `Content-Encoding` is not `gzip`, `x-gzip` or `identity` (`POST /v1/publish`: any `Content-Encoding` but `identity`), or its `charset` is not UTF-8 (`utf-8`, `utf8` or `us-ascii`; without one, UTF-8).",
    retry: false,
    advice: "Send a supported type and encoding.",
  },
  all_rejected: {
    status: 422,
    meaning:
      "Every record of the batch was refused; the body is the ingest answer, with a code per record in `errors` (see the record codes below).",
    retry: false,
    advice: "Not the same records: fix them by their codes.",
  },
  record_refused: {
    status: 422,
    meaning:
      "Kafka refused a record for good as invalid (`INVALID_RECORD`, `CORRUPT_MESSAGE`); it was dead-lettered (or dropped).",
    retry: false,
    advice: "Not the same record.",
  },
  idempotency_key_reused: {
    status: 422,
    meaning:
      "The `Idempotency-Key` was used within `IDEMPOTENCY_WINDOW_SEC` with another request (body, content type or query; the body compared with its `Content-Encoding` undone).",
    retry: false,
    advice: "Use a new key for a new request.",
  },
  rate_limited: {
    status: 429,
    meaning:
      "Over the client IP's request budget or the tenant's event budget; `RateLimit-*` headers say which and when the window resets. A batch that does not fit in what is left is refused whole.",
    retry: true,
    advice: "After `Retry-After` seconds (the official client waits for it, capped at `maxRetryAfterMs`).",
  },
  batch_over_budget: {
    status: 429,
    meaning:
      "The batch holds more events than the tenant's whole event budget per second (`RATE_LIMIT_EVENTS_PER_SEC` or its `TENANT_QUOTAS` entry; while Redis is down, this instance's share of it; `RateLimit-Limit` says it): it never fits a window, however long the client waits. A 429 with `Retry-After` and `RateLimit-*` as `rate_limited` is, so a client that reads only the status backs off; nothing was spent or written.",
    retry: false,
    advice:
      "Not the same batch: split it into batches of at most `RateLimit-Limit` events (the official client halves it until it fits).",
  },
  client_closed_request: {
    status: 499,
    meaning:
      "Never sent: the client went away (or trickled its body past 10 s) before its request was read. Counted as 499 in metrics and logged at debug, as nginx does, so it is not a server fault.",
    retry: true,
    advice: "It is the client's own doing: send the request again.",
  },
  internal: {
    status: 500,
    meaning: "An unexpected fault in the gateway; the details are in its log, not in the answer.",
    retry: true,
    advice: "With backoff; records may have been delivered, so send client `id`s to deduplicate downstream.",
  },
  overloaded: {
    status: 503,
    meaning:
      "The producer queue is full (`KAFKA_QUEUE_MAX_RECORDS`, `KAFKA_QUEUE_MAX_BYTES`), or past half full and this tenant holds its share of it (docs/delivery-faults.md); or the request bodies being received fill `REQUEST_BODIES_MAX_BYTES`, or this tenant's hold its share of it (answered before the body is read).",
    retry: true,
    advice: "After `Retry-After` seconds.",
  },
  try_again: {
    status: 503,
    meaning:
      "A replay bound was hit while reading history back from the fan-out topic (`REPLAY_*`: concurrent replays, bytes, time).",
    retry: true,
    advice: "After `Retry-After` seconds, from the last event received.",
  },
  unavailable: {
    status: 503,
    meaning:
      "A dependency cannot serve the request: Kafka unreachable or not acknowledging within `INGEST_ACK_TIMEOUT_MS` (the records stay queued and may still be delivered), Kafka not authorizing the write, a token whose signing keys cannot be fetched (JWKS), or a WebSocket upgrade past this instance's connection caps.",
    retry: true,
    advice:
      "After `Retry-After` seconds; with client `id`s a repeated record can be deduplicated downstream.",
  },
  draining: {
    status: 503,
    meaning: "This instance is shutting down (after SIGTERM).",
    retry: true,
    advice: "After `Retry-After` (1 s): the load balancer sends it to another instance.",
  },
} as const satisfies Record<string, ErrorMeaning & { status: number }>;

export type ErrorCode = keyof typeof HTTP_ERRORS;

/** The HTTP status of each error code. */
export const ERROR_STATUS = Object.fromEntries(
  Object.entries(HTTP_ERRORS).map(([code, { status }]) => [code, status]),
) as { readonly [Code in ErrorCode]: (typeof HTTP_ERRORS)[Code]["status"] };

/**
 * The codes of WebSocket `{"type":"error","code",…}` frames (Server-Sent
 * Events streams send `history_gone`, `try_again` and `unauthorized` as `event: problem`).
 */
export const WS_ERRORS = {
  bad_frame: {
    meaning:
      "A frame that is not a JSON object, nested deeper than 8 levels (a publish frame 64, as its HTTP body), a binary frame whose bytes are not UTF-8, of an unknown `type` or missing members, or a `subscribe` whose `since` is not an event id (then not subscribed). The socket stays open.",
    retry: false,
    advice: "Fix the frame.",
  },
  bad_channel: {
    meaning:
      "Not a valid channel name (`[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}`; `/` and a leading `$` are reserved).",
    retry: false,
    advice: "Use a valid name.",
  },
  forbidden: {
    meaning:
      "The token's `channels` claim does not allow the channel, or limits it and it publishes a broadcast; a publish without scope `publish`; a refresh token that cannot replace the current one (another tenant or subject, or expiring sooner: the socket keeps its token); or the first token lacks scope `subscribe` (then close 4001).",
    retry: false,
    advice: "Needs another token.",
  },
  too_many_subscriptions: {
    meaning: "Past `WS_MAX_SUBSCRIPTIONS` channels on one connection.",
    retry: false,
    advice: "Unsubscribe from another channel first, or open another connection.",
  },
  payload_too_large: {
    meaning:
      "A publish whose `data` is over `PUBLISH_MAX_BYTES`, or that Kafka can never take (`KAFKA_MAX_MESSAGE_BYTES`, or the topic's own limit: HTTP's `record_too_large`). Not published.",
    retry: false,
    advice: "Publish less data.",
  },
  history_gone: {
    meaning: "`since` cannot be served (as HTTP 410). The subscription still happens: live events follow.",
    retry: false,
    advice: "Reload the channel's state from elsewhere; live events keep coming.",
  },
  try_again: {
    meaning:
      "A replay bound was hit (concurrent replays, bytes per replay, time), or the channel would be one more than the instance (`WS_MAX_CHANNELS`) or the tenant (`WS_MAX_TENANT_CHANNELS`) holds subscribers for. Not subscribed.",
    retry: true,
    advice: "Subscribe again after `retryAfterMs`, with `since` the last event received.",
  },
  rate_limited: {
    meaning:
      "More than `WS_MAX_MESSAGES_PER_SEC` frames (the extra ones are ignored, one error a second); a publish past the tenant's event budget or past 32 publishes of the connection waiting for Kafka (with `retryAfterMs`); or (then close 1013, with `retryAfterMs`) too many connections for the tenant or connection attempts from the IP.",
    retry: true,
    advice: "Slow down; after a close, reconnect after `retryAfterMs`, with backoff.",
  },
  unavailable: {
    meaning:
      "This instance has no room for more connections (close 1013, with `retryAfterMs`), or the token's signing keys cannot be fetched (with `retryAfterMs`; close 1013 for the first token, while a refresh keeps the socket on its current token), or Kafka did not acknowledge a publish in time (with `retryAfterMs`; it may still be delivered).",
    retry: true,
    advice: "After `retryAfterMs` or with backoff.",
  },
  unauthorized: {
    meaning:
      "No `auth` frame within `WS_AUTH_TIMEOUT_MS`, a frame before authenticating, an invalid token, or a token that expired while connected (close 4001 follows).",
    retry: true,
    advice: "Reconnect with a fresh token.",
  },
} as const satisfies Record<string, ErrorMeaning>;

export type WsErrorCode = keyof typeof WS_ERRORS;

/**
 * WebSocket close codes. `sent: "gateway"` codes are closed by the gateway
 * itself; `"engine"` ones come from the WebSocket engine or the network;
 * `"reserved"` ones are part of the protocol but not sent by this version.
 */
export const WS_CLOSES = {
  unauthorized: {
    code: 4001,
    sent: "gateway",
    meaning:
      "Unauthorized: no `auth` frame within `WS_AUTH_TIMEOUT_MS`, a frame before authenticating, a token that is invalid or lacks scope `subscribe`, an invalid token in a refresh `auth` frame, or a token that expired without a refresh. An `error` frame says which.",
    retry: true,
    advice: "Reconnect with a fresh token.",
  },
  goingAway: {
    code: 1001,
    sent: "gateway",
    meaning: "Going away: the instance is draining. A `reconnect` frame with `afterMs` comes first.",
    retry: true,
    advice: "Reconnect after `afterMs` (to any instance) and resume with `since`.",
  },
  tryAgainLater: {
    code: 1013,
    sent: "gateway",
    meaning:
      "Try again later: a slow consumer (more than `WS_BACKPRESSURE_BYTES` queued), a connection cap of the tenant or instance, too many connection attempts from the IP, or a first token whose signing keys could not be fetched or that was still being verified at the auth deadline. An `error` frame (`rate_limited` or `unavailable`) comes first, except for a slow consumer.",
    retry: true,
    advice: "Reconnect with backoff (after `retryAfterMs` when the error frame carries it).",
  },
  policy: {
    code: 1008,
    sent: "reserved",
    meaning:
      "Policy violation: reserved for a client that breaks the protocol; not sent by this version (hostile frames get a `bad_frame` error and the socket stays open).",
    retry: false,
    advice: "Fix the client.",
  },
  protocolError: {
    code: 1002,
    sent: "engine",
    meaning:
      "Protocol error: a frame that breaks RFC 6455 (not masked, a reserved opcode or RSV bit, a control frame over 125 bytes or fragmented, a continuation without a start, a close frame of 1 byte or with an invalid code), on Bun. On Node, uWebSockets.js drops the connection without a close frame instead (1006), answers a bad close frame with an empty one, and reads a frame that is not masked as if it were, so that connection ends at its next frame or its idle timeout.",
    retry: false,
    advice: "Fix the client (or its WebSocket library).",
  },
  invalidPayload: {
    code: 1007,
    sent: "engine",
    meaning:
      "Invalid frame payload data: a text frame, or a close frame's reason, that is not UTF-8, on Bun. On Node, uWebSockets.js drops the connection without a close frame instead (1006).",
    retry: false,
    advice: "Send text frames in UTF-8.",
  },
  messageTooBig: {
    code: 1009,
    sent: "engine",
    meaning: "Message too big: a frame over `WS_MAX_PAYLOAD_BYTES`, on Bun. Only that socket is closed.",
    retry: true,
    advice: "Reconnect and send smaller frames.",
  },
  abnormal: {
    code: 1006,
    sent: "engine",
    meaning:
      "Abnormal closure (never on the wire: the connection ended without a close frame). On Node, uWebSockets.js drops a socket that sent a frame over `WS_MAX_PAYLOAD_BYTES` or that breaks RFC 6455 (where Bun sends 1009, 1002 or 1007) this way; also any network failure or a killed instance.",
    retry: true,
    advice: "Reconnect with backoff and resume with `since`.",
  },
} as const satisfies Record<string, ErrorMeaning & { code: number; sent: "gateway" | "engine" | "reserved" }>;

/** The close codes the gateway sends, by name (`CLOSE.unauthorized` is 4001). */
export const CLOSE = {
  unauthorized: WS_CLOSES.unauthorized.code,
  goingAway: WS_CLOSES.goingAway.code,
  tryAgainLater: WS_CLOSES.tryAgainLater.code,
  policy: WS_CLOSES.policy.code,
} as const;

/**
 * Why one record of a batch was refused: the `code` beside the prose
 * `reason` in the ingest answer's `errors: [{index, reason, code}]`.
 */
export const RECORD_ERRORS = {
  malformed_json: {
    meaning: "An NDJSON line that is not JSON.",
    retry: false,
    advice: "Fix the record.",
  },
  too_deep: {
    meaning: "The record is nested deeper than 64 levels.",
    retry: false,
    advice: "Fix the record.",
  },
  duplicate_key: {
    meaning:
      "An object of the record holds a key twice: `JSON.parse` would validate the last one while a consumer of the bytes forwarded may read the first.",
    retry: false,
    advice: "Fix the record.",
  },
  invalid_record: {
    meaning:
      "The envelope is wrong: `type`, `id`, `ts`, `channel`, `key` or `data`, or a CloudEvent's attributes (not CloudEvents 1.0, `data_base64`, a `time` that is not RFC 3339, a binary-mode `ce-*` header that is not percent-encoded UTF-8, an attribute holding a control character, a noncharacter or a lone surrogate, of no CloudEvents type, or longer than 4096 characters); the reason says which.",
    retry: false,
    advice: "Fix the record.",
  },
  unknown_type: {
    meaning: "No schema is registered for the record's `type`.",
    retry: false,
    advice: "Use a known type (or register its schema; refreshed every `SCHEMAS_REFRESH_MS`).",
  },
  schema_invalid: {
    meaning:
      "`data` fails its type's JSON Schema (numeric limits hold for the numbers as sent, and for the schema's limits as written, not as a double rounds them).",
    retry: false,
    advice: "Fix the record.",
  },
  forbidden_channel: {
    meaning:
      "The record has a `channel` that the token's `channels` claim does not allow, or the token lacks the scope `INGEST_CHANNEL_SCOPE` asks for it (`publish` when set so).",
    retry: false,
    advice: "Needs another token, or drop the `channel`.",
  },
  record_too_large: {
    meaning:
      "The record can never fit a Kafka batch (`KAFKA_MAX_MESSAGE_BYTES`), or Kafka refused it as too large (`MESSAGE_TOO_LARGE`) while it wrote the request's other records; it was dead-lettered (or dropped).",
    retry: false,
    advice: "The record itself must shrink; resend only the records named in `errors`.",
  },
  record_refused: {
    meaning:
      "Kafka refused the record for good as invalid (`INVALID_RECORD`, `CORRUPT_MESSAGE`) while it wrote the request's other records; it was dead-lettered (or dropped).",
    retry: false,
    advice: "Not the same record; resend only the records named in `errors`.",
  },
  record_unavailable: {
    meaning:
      "Kafka refused writes to the topic (held as unavailable, as a `503 unavailable`) before this record was written, while it wrote the request's other records; it was not written. The `202` carries `Retry-After`.",
    retry: true,
    advice: "Resend only the records named in `errors` (the same ids) after `Retry-After`.",
  },
} as const satisfies Record<string, ErrorMeaning>;

export type RecordErrorCode = keyof typeof RECORD_ERRORS;

export class GatewayError extends Error {
  readonly status: number;
  /**
   * The answer the request will have once work it already started settles
   * (records past their acknowledgement deadline, still being written):
   * `Idempotency-Key` keeps the key for it, so a retry is answered, not run twice.
   */
  eventualAnswer?: Promise<unknown>;

  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra response headers, e.g. Retry-After. */
    readonly headers: Record<string, string> = {},
    /** Extra fields merged into the JSON body. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "GatewayError";
    this.status = ERROR_STATUS[code];
  }
}

export function isGatewayError(error: unknown): error is GatewayError {
  return error instanceof GatewayError;
}
