import {
  boolean,
  brokerList,
  host,
  httpsUrlExceptLoopback,
  integer,
  nonEmpty,
  oneOf,
  originList,
  otlpHeaders,
  ratio,
  redisUrl,
  resourceAttributes,
  secret,
  topicName,
  url,
} from "./parse.ts";

export const SASL_MECHANISMS = ["none", "plain", "scram-sha-256", "scram-sha-512", "aws-msk-iam"] as const;
export const COMPRESSIONS = ["none", "gzip", "snappy", "lz4", "zstd"] as const;
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Public dev secret, used only in an explicitly requested dev mode (DEV_MODE=true) when neither
 * JWT_SECRET nor JWKS_URL is set; logged as insecure at start.
 */
export const DEV_JWT_SECRET = "edge-gateway-dev-secret-change-me";
/**
 * One topic's share of the producer queue's bounds (KAFKA_QUEUE_MAX_RECORDS, KAFKA_QUEUE_MAX_BYTES), so a
 * failing topic leaves room for the others; high enough that a queue filling up with one topic still
 * crosses the GatewayQueueNearFull alert's 80%.
 */
export const TOPIC_QUEUE_SHARE = 9 / 10;
/** HS256 needs a key at least as long as its 256-bit output (RFC 7518 §3.2). */
export const MIN_JWT_SECRET_BYTES = 32;
/** uWebSockets.js's HTTP idle timeout, compiled in (`HTTP_IDLE_TIMEOUT_S`): the keep-alive default on Bun too. */
const UWS_HTTP_IDLE_TIMEOUT_SEC = 10;

export interface Config {
  host: string;
  port: number;
  /** Where /metrics is served: unset, on PORT beside the API; else on this port alone (0 picks a free one). */
  metricsPort: number | undefined;
  workers: number;
  /** Start on uWebSockets.js's pure-JS fallback (a Node without its native build) instead of refusing. */
  uwsAllowFallback: boolean;
  logLevel: (typeof LOG_LEVELS)[number];
  maxBodyBytes: number;
  /** Bytes of the request bodies being received at once, per process (see RequestBodies). */
  requestBodiesMaxBytes: number;
  /** Seconds an idle keep-alive HTTP connection stays open (Bun; uWebSockets.js's is fixed at 10). */
  httpKeepAliveSec: number;
  /** Body bytes of one `/v1/publish`: every instance keeps the message in its history. */
  maxPublishBytes: number;
  maxRecordsPerRequest: number;
  ackTimeoutMs: number;
  /** The scope an ingested record with a `channel` needs besides `ingest`'s: none, or `publish`. */
  ingestChannelScope: IngestChannelScope;
  drainDelayMs: number;
  drainTimeoutMs: number;
  /** Browser origins allowed by CORS; undefined: no CORS headers at all. */
  corsOrigins: "*" | string[] | undefined;
  kafka: {
    brokers: string[] | undefined;
    clientId: string;
    topic: string;
    fanoutTopic: string;
    dlqTopic: string | undefined;
    saslMechanism: (typeof SASL_MECHANISMS)[number];
    saslUsername: string | undefined;
    saslPassword: string | undefined;
    tls: boolean;
    awsRegion: string | undefined;
    compression: (typeof COMPRESSIONS)[number];
    /** The fan-out topic's: every instance decompresses every batch of it, wanted or not. */
    fanoutCompression: (typeof COMPRESSIONS)[number];
    lingerMs: number;
    batchBytes: number;
    maxMessageBytes: number;
    queueMaxRecords: number;
    queueMaxBytes: number;
    unhealthyAfterMs: number;
    /** Whether Kafka failing past unhealthyAfterMs turns /health 503 (ingest answers 503 either way). */
    affectsHealth: boolean;
    topicPartitions: number;
    producers: number;
    writeTimeoutMs: number;
    /** How often a topic Kafka refuses as a whole (or an unwritable local log) is tried again. */
    topicRetryMs: number;
  };
  localLog: {
    dir: string;
    rotateBytes: number;
  };
  redisUrl: string | undefined;
  auth: {
    jwtSecret: string | undefined;
    jwksUrl: string | undefined;
    /** Required `iss` of every token, when set. */
    issuer: string | undefined;
    /** Required `aud` (one of the token's audiences), when set. */
    audience: string | undefined;
    /** Seconds a token's `exp`, `nbf` and `iat` may be off from this host's clock. */
    clockSkewSec: number;
    /** DEV_MODE=true and no JWT_SECRET or JWKS_URL: tokens are checked against DEV_JWT_SECRET. */
    usingDevSecret: boolean;
    tokenCacheSize: number;
    /** Bytes the verified-token cache may take (tokens and their claims, with per-entry overhead). */
    tokenCacheBytes: number;
  };
  schemas: {
    source: string | undefined;
    refreshMs: number;
  };
  /** How s3:// sources (SCHEMAS, TENANT_QUOTAS) reach S3; credentials come from the default AWS chain. */
  s3: {
    endpoint: string | undefined;
    forcePathStyle: boolean;
    region: string;
  };
  rateLimit: {
    enabled: boolean;
    tenantQuotas: string | undefined;
    tenantQuotasRefreshMs: number;
    eventsPerSec: number;
    requestsPerSec: number;
    trustProxyHops: number;
    expectedInstances: number;
    redisTimeoutMs: number;
  };
  ws: {
    pingIntervalMs: number;
    authTimeoutMs: number;
    maxPayloadBytes: number;
    backpressureBytes: number;
    /** Bytes queued towards every WebSocket client together; a tenant's clients may hold half. */
    queuedMaxBytes: number;
    idleTimeoutSec: number;
    maxConnections: number;
    maxUnauthenticated: number;
    maxConnectionsPerTenant: number;
    maxSubscriptions: number;
    /** Distinct channels subscribed to on this instance, in all and per tenant. */
    maxChannels: number;
    maxTenantChannels: number;
    maxMessagesPerSec: number;
    connectsPerSecPerIp: number;
    /** How long before its token's exp a socket gets `token_expiring`; 0: never. */
    tokenExpiryWarningMs: number;
  };
  /** Server-Sent Events (`GET /v1/sse`); the caps and backpressure limit are the WebSocket ones. */
  sse: {
    heartbeatMs: number;
  };
  presence: {
    /** A crashed instance's presence entries vanish this long after its last write (Redis). */
    ttlMs: number;
  };
  idempotency: {
    /** How long the answer to a request with an Idempotency-Key is kept for its repeats. */
    windowMs: number;
    /** How long a key stays claimed by a request that never answered (e.g. its instance died). */
    pendingMs: number;
    /** With REDIS_URL: how long a claim outlives its instance's last renewal (a dead instance's claim lapses then). */
    leaseMs: number;
    /** Keys and answer bytes kept in memory when REDIS_URL is unset. */
    maxKeys: number;
    maxBytes: number;
    /** Record ids kept in memory for per-record deduplication when REDIS_URL is unset. */
    maxRecordIds: number;
  };
  history: {
    eventsPerChannel: number;
    bytesPerChannel: number;
    channels: number;
    maxBytes: number;
    tenantMaxBytes: number;
    /** How long a channel's history is kept after its last local watcher left (Kafka bus). */
    keepIdleMs: number;
  };
  replay: {
    maxConcurrent: number;
    maxConcurrentPerTenant: number;
    maxBytes: number;
    timeoutMs: number;
    /** Offsets of its partition a history page without since reads back at most, looking for a channel's latest events. */
    scanMaxOffsets: number;
    /** Memory for what scans for channels' latest events found, read on from by the next request (0: none kept). */
    latestCacheBytes: number;
  };
  tracing: {
    /** Where spans go (an OTLP/HTTP traces URL, or a gRPC endpoint); unset: no spans, and the OpenTelemetry SDK is never loaded. */
    tracesUrl: string | undefined;
    protocol: OtlpProtocol;
    serviceName: string;
    /** OTEL_TRACES_SAMPLER, and its ratio (OTEL_TRACES_SAMPLER_ARG), which only the ratio samplers use. */
    sampler: TracesSampler;
    samplerRatio: number;
    /** OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION: how export requests are compressed. */
    compression: OtlpCompression;
    /** OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT: one export's deadline. */
    exportTimeoutMs: number;
    /** OTEL_SPAN_*_LIMIT and OTEL_ATTRIBUTE_*_LIMIT; unset ones are the SDK's defaults. */
    spanLimits: SpanLimits;
  };
}

/** The OpenTelemetry span limits an operator set (the SDK's SpanLimits, each one optional). */
export interface SpanLimits {
  attributeCountLimit?: number | undefined;
  attributeValueLengthLimit?: number | undefined;
  eventCountLimit?: number | undefined;
  linkCountLimit?: number | undefined;
  attributePerEventCountLimit?: number | undefined;
  attributePerLinkCountLimit?: number | undefined;
}

/** The OTLP transports of the OpenTelemetry exporter specification (OTEL_EXPORTER_OTLP_PROTOCOL). */
export const OTLP_PROTOCOLS = ["http/protobuf", "http/json", "grpc"] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
const TRACES_EXPORTERS = ["otlp", "none"] as const;
/** The OTLP exporter's compressions (OTEL_EXPORTER_OTLP_COMPRESSION). */
export const OTLP_COMPRESSIONS = ["none", "gzip"] as const;
export type OtlpCompression = (typeof OTLP_COMPRESSIONS)[number];
/** The samplers of the OpenTelemetry SDK configuration (OTEL_TRACES_SAMPLER) that the JavaScript SDK has. */
export const TRACES_SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;
export type TracesSampler = (typeof TRACES_SAMPLERS)[number];

/** Tracing off: no traces URL (the SDK is never loaded), and the OpenTelemetry defaults of the rest. */
const TRACING_OFF: Config["tracing"] = Object.freeze({
  tracesUrl: undefined,
  protocol: "http/protobuf",
  serviceName: "edge-gateway",
  sampler: "parentbased_always_on",
  samplerRatio: 1,
  compression: "none",
  exportTimeoutMs: 10_000,
  spanLimits: {},
});

/**
 * The traces URL as the OpenTelemetry exporter specification derives it: a
 * signal-specific endpoint as is; the base one as is for gRPC, else with
 * /v1/traces appended to its path.
 */
function tracesUrlOf(
  protocol: OtlpProtocol,
  tracesEndpoint: string | undefined,
  baseEndpoint: string | undefined,
): string | undefined {
  if (tracesEndpoint !== undefined || baseEndpoint === undefined || protocol === "grpc")
    return tracesEndpoint ?? baseEndpoint;
  // Appended to the path: a query (a backend's key) stays the query, not the end of the path.
  const url = new URL(baseEndpoint);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/traces`;
  return url.href;
}

export class ConfigError extends Error {
  /** Each problem starts with the variable(s) it is about: `PORT: …`, `KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: …`. */
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
    this.name = "ConfigError";
  }

  /** The variables named by the problems, each once, in order. */
  get variables(): string[] {
    const names = this.problems.flatMap((problem) => problem.slice(0, problem.indexOf(":")).split("/"));
    return [...new Set(names.filter((name) => name !== ""))];
  }
}

type Env = Record<string, string | undefined>;

/**
 * What fans an ingested record out to its `channel`: the `ingest` scope (the SPEC's record has a
 * channel, its route asks for `ingest`), or, for operators whose ingest tokens sit in web pages or
 * devices, `publish` as `POST /v1/publish` does.
 */
export const INGEST_CHANNEL_SCOPES = ["ingest", "publish"] as const;
export type IngestChannelScope = (typeof INGEST_CHANNEL_SCOPES)[number];

const DEFAULT_DRAIN_DELAY_MS = 5000;
/** Bytes queued towards WebSocket clients in all: inside the 30% of a pod's memory the deploy sum leaves. */
const DEFAULT_WS_QUEUED_MAX_BYTES = 256 * 1024 * 1024;
/** What the default delay leaves the drain (in-flight requests, the flush, the sockets' goodbyes) at least. */
const DRAIN_AFTER_DELAY_MS = 2000;
const DEFAULT_DRAIN_TIMEOUT_MS = 25_000;

/**
 * Reads every setting from the environment and validates it. All problems are
 * collected so the operator fixes them in one pass; each names its variable.
 */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];

  function read<T>(name: string, parse: (raw: string) => T, fallback: T): T;
  function read<T>(name: string, parse: (raw: string) => T): T | undefined;
  function read<T>(name: string, parse: (raw: string) => T, fallback?: T): T | undefined {
    const raw = env[name];
    if (raw === undefined || raw.trim() === "") return fallback;
    try {
      return parse(raw);
    } catch (error) {
      // The problem is printed and logged: a URL's password (REDIS_URL, JWKS_URL…) must not be.
      problems.push(`${name}: ${withoutPasswords((error as Error).message)}`);
      return fallback;
    }
  }

  const jwtSecret = read("JWT_SECRET", secret(MIN_JWT_SECRET_BYTES));
  // Keys fetched over plain http could be swapped by anyone on the path: only a loopback IdP may use it.
  const jwksUrl = read("JWKS_URL", httpsUrlExceptLoopback);
  const devMode = read("DEV_MODE", boolean, false);
  // The dev secret is in the source: anyone can sign tokens with it, so only dev mode may run on it.
  if (jwtSecret === DEV_JWT_SECRET && !devMode) {
    problems.push(
      "JWT_SECRET: is the public dev secret, which anyone can sign tokens with; set a secret of your own (DEV_MODE=true to run on it)",
    );
  }
  // Auth fails closed: without a way to verify tokens the gateway does not start, unless asked for dev mode.
  if (
    jwtSecret === undefined &&
    jwksUrl === undefined &&
    !devMode &&
    // A bad JWT_SECRET or JWKS_URL is named already: "required" would send the operator after the wrong one.
    !problems.some((problem) => problem.startsWith("JWT_SECRET:") || problem.startsWith("JWKS_URL:"))
  ) {
    problems.push(
      "JWT_SECRET: required (at least 32 bytes), or set JWKS_URL; DEV_MODE=true runs on the public dev secret",
    );
  }
  const saslMechanism = read("KAFKA_SASL_MECHANISM", oneOf(SASL_MECHANISMS), "none");
  /**
   * The OpenTelemetry settings, read (and a bad one refused) only when spans are exported: an
   * endpoint set, and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none. Platforms inject
   * OTEL_* variables into every container (an operator's webhook, a shared ConfigMap): a gateway that
   * exports nothing reads none of them, so none of them may stop it.
   */
  function readTracing(): Config["tracing"] {
    const endpointSet = [env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, env.OTEL_EXPORTER_OTLP_ENDPOINT].some(
      (raw) => raw !== undefined && raw.trim() !== "",
    );
    if (
      !endpointSet ||
      read("OTEL_SDK_DISABLED", boolean, false) ||
      read("OTEL_TRACES_EXPORTER", oneOf(TRACES_EXPORTERS), "otlp") === "none"
    )
      return TRACING_OFF;
    // The OpenTelemetry default; the traces-specific variable wins over the general one.
    const protocol =
      read("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", oneOf(OTLP_PROTOCOLS)) ??
      read("OTEL_EXPORTER_OTLP_PROTOCOL", oneOf(OTLP_PROTOCOLS), TRACING_OFF.protocol);
    // The exporter's other settings are read here too, not by the SDK: it drops a bad value (a
    // timeout of "10s", "zstd", a header without "=") with a diagnostic nothing reads. Both the
    // general and the traces variable are checked, the traces one wins. The headers are read by the
    // SDK itself (kept out of the config, which is logged: they carry credentials), only checked here.
    const general = read("OTEL_EXPORTER_OTLP_COMPRESSION", oneOf(OTLP_COMPRESSIONS), TRACING_OFF.compression);
    // Above 2^31 - 1 ms a timer fires at once; 10 min is past any sane export.
    const timeoutMs = read("OTEL_EXPORTER_OTLP_TIMEOUT", integer(1, 600_000), TRACING_OFF.exportTimeoutMs);
    read("OTEL_EXPORTER_OTLP_HEADERS", otlpHeaders);
    read("OTEL_EXPORTER_OTLP_TRACES_HEADERS", otlpHeaders);
    // Read by the SDK too, which drops a value it cannot parse whole (every attribute missing from the spans).
    read("OTEL_RESOURCE_ATTRIBUTES", resourceAttributes);
    // The span limits too: the SDK takes a value that is not a number ("1k") for its default, saying
    // so only on its diagnostic channel, and a negative or fractional one as written. The span
    // variable wins over the general one, as in the SDK.
    const attributeCountLimit = read("OTEL_ATTRIBUTE_COUNT_LIMIT", integer(0));
    const attributeValueLengthLimit = read("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", integer(0));
    const spanLimits: SpanLimits = {
      attributeCountLimit: read("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", integer(0)) ?? attributeCountLimit,
      attributeValueLengthLimit:
        read("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", integer(0)) ?? attributeValueLengthLimit,
      eventCountLimit: read("OTEL_SPAN_EVENT_COUNT_LIMIT", integer(0)),
      linkCountLimit: read("OTEL_SPAN_LINK_COUNT_LIMIT", integer(0)),
      attributePerEventCountLimit: read("OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT", integer(0)),
      attributePerLinkCountLimit: read("OTEL_SPAN_ATTRIBUTE_PER_LINK_COUNT_LIMIT", integer(0)),
    };
    return {
      tracesUrl: tracesUrlOf(
        protocol,
        read("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url(["http:", "https:"])),
        read("OTEL_EXPORTER_OTLP_ENDPOINT", url(["http:", "https:"])),
      ),
      protocol,
      serviceName: read("OTEL_SERVICE_NAME", nonEmpty, TRACING_OFF.serviceName),
      // The sampler too: the SDK takes an unknown one or a bad ratio for its default (every trace
      // sampled) and says so only on its diagnostic channel.
      sampler: read("OTEL_TRACES_SAMPLER", oneOf(TRACES_SAMPLERS), TRACING_OFF.sampler),
      samplerRatio: read("OTEL_TRACES_SAMPLER_ARG", ratio, TRACING_OFF.samplerRatio),
      compression: read("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", oneOf(OTLP_COMPRESSIONS)) ?? general,
      exportTimeoutMs: read("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", integer(1, 600_000)) ?? timeoutMs,
      spanLimits,
    };
  }

  const saslUsername = read("KAFKA_SASL_USERNAME", nonEmpty);
  const saslPassword = read("KAFKA_SASL_PASSWORD", nonEmpty);
  const needsPassword = saslMechanism === "plain" || saslMechanism.startsWith("scram");
  if (needsPassword && (saslUsername === undefined || saslPassword === undefined)) {
    problems.push(
      `KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: required when KAFKA_SASL_MECHANISM=${saslMechanism}`,
    );
  }
  const wsMaxConnections = read("WS_MAX_CONNECTIONS", integer(1), 100_000);
  // Sockets still authenticating turn over within WS_AUTH_TIMEOUT_MS: a tenth of the slots is ample.
  const wsMaxUnauthenticatedDefault = Math.max(100, Math.ceil(wsMaxConnections / 10));
  // Fits a 1.5 GiB pod next to 100k idle sockets and the delivery queue (see docs/configuration.md).
  const historyMaxBytes = read("HISTORY_MAX_BYTES", integer(1024 * 1024), 256 * 1024 * 1024);
  const awsRegion = read("AWS_REGION", nonEmpty) ?? read("AWS_DEFAULT_REGION", nonEmpty);
  // The MSK IAM signer signs for a region: without one the gateway could never authenticate.
  if (saslMechanism === "aws-msk-iam" && awsRegion === undefined) {
    problems.push(
      "AWS_REGION: required when KAFKA_SASL_MECHANISM=aws-msk-iam (AWS_DEFAULT_REGION also does)",
    );
  }
  const s3Endpoint = read("S3_ENDPOINT", url(["https:", "http:"]));
  const port = read("PORT", integer(0, 65535), 8080);
  const metricsPort = read("METRICS_PORT", integer(0, 65535));
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port) {
    problems.push("METRICS_PORT: must differ from PORT (unset serves /metrics on PORT)");
  }
  const drainTimeoutMs = read("DRAIN_TIMEOUT_MS", integer(100, 3_600_000), DEFAULT_DRAIN_TIMEOUT_MS);
  // Unset, the delay is SPEC's 5000 ms as long as that leaves the drain DRAIN_AFTER_DELAY_MS, else what
  // does (half the timeout at least: DRAIN_TIMEOUT_MS=3000 alone gives 1500 ms), rather than refusing
  // a short timeout over a delay the operator never set. Half in every case made DRAIN_TIMEOUT_MS=8000
  // alone a 4000 ms delay, where 5000 left the drain time enough.
  const defaultDelayMs = Math.min(
    DEFAULT_DRAIN_DELAY_MS,
    Math.max(Math.floor(drainTimeoutMs / 2), drainTimeoutMs - DRAIN_AFTER_DELAY_MS),
  );
  const drainDelayMs = read("DRAIN_DELAY_MS", integer(0, 600_000), defaultDelayMs);
  // Either one may be the mistake (a longer DRAIN_DELAY_MS under the default timeout, say): name both.
  if (drainTimeoutMs <= drainDelayMs) {
    problems.push(
      `DRAIN_DELAY_MS/DRAIN_TIMEOUT_MS: DRAIN_TIMEOUT_MS (${drainTimeoutMs}) must be greater than DRAIN_DELAY_MS (${drainDelayMs})`,
    );
  }

  const wsBackpressureBytes = read("WS_BACKPRESSURE_BYTES", integer(1024, 256 * 1024 * 1024), 1024 * 1024);
  // A tenant may hold half: one socket at the engine's cap (twice the backpressure bound) must fit in it.
  const wsQueuedDefault = Math.max(DEFAULT_WS_QUEUED_MAX_BYTES, 4 * wsBackpressureBytes);
  const wsQueuedMaxBytes = read("WS_QUEUED_MAX_BYTES", integer(4096, 68_719_476_736), wsQueuedDefault);
  if (wsQueuedMaxBytes < 4 * wsBackpressureBytes)
    problems.push(
      `WS_QUEUED_MAX_BYTES: must be at least 4 × WS_BACKPRESSURE_BYTES (${4 * wsBackpressureBytes}): a tenant's share, half of it, holds one socket at twice its bound`,
    );

  const config: Config = {
    host: read("HOST", host, "0.0.0.0"),
    port,
    metricsPort,
    workers: read("WORKERS", integer(1, 256), 1),
    uwsAllowFallback: read("UWS_ALLOW_FALLBACK", boolean, false),
    logLevel: read("LOG_LEVEL", oneOf(LOG_LEVELS), "info"),
    // As small as a test of the 413 wants: one byte refuses every body but "" and single digits.
    maxBodyBytes: read("MAX_BODY_BYTES", integer(1, 64 * 1024 * 1024), 1024 * 1024),
    requestBodiesMaxBytes: read("REQUEST_BODIES_MAX_BYTES", integer(1024), 64 * 1024 * 1024),
    // At most 255: what Bun takes for a connection's timeout.
    httpKeepAliveSec: read("HTTP_KEEP_ALIVE_SEC", integer(1, 255), UWS_HTTP_IDLE_TIMEOUT_SEC),
    maxPublishBytes: read("PUBLISH_MAX_BYTES", integer(128, 16 * 1024 * 1024), 64 * 1024),
    maxRecordsPerRequest: read("MAX_RECORDS_PER_REQUEST", integer(1, 1_000_000), 10_000),
    ackTimeoutMs: read("INGEST_ACK_TIMEOUT_MS", integer(100, 600_000), 15_000),
    ingestChannelScope: read("INGEST_CHANNEL_SCOPE", oneOf(INGEST_CHANNEL_SCOPES), "ingest"),
    drainDelayMs,
    drainTimeoutMs,
    corsOrigins: read("CORS_ORIGINS", originList),
    kafka: {
      brokers: read("KAFKA_BROKERS", brokerList),
      clientId: read("KAFKA_CLIENT_ID", nonEmpty, "edge-gateway"),
      topic: read("KAFKA_TOPIC", topicName, "events"),
      fanoutTopic: read("KAFKA_FANOUT_TOPIC", topicName, "fanout"),
      dlqTopic: read("KAFKA_DLQ_TOPIC", topicName),
      saslMechanism,
      saslUsername,
      saslPassword,
      tls: read("KAFKA_TLS", boolean, saslMechanism === "aws-msk-iam"),
      awsRegion,
      compression: read("KAFKA_COMPRESSION", oneOf(COMPRESSIONS), "lz4"),
      // Uncompressed by default: each instance reads every fan-out batch, so decompressing costs CPU once per instance.
      fanoutCompression: read("KAFKA_FANOUT_COMPRESSION", oneOf(COMPRESSIONS), "none"),
      lingerMs: read("KAFKA_LINGER_MS", integer(0, 60_000), 0),
      batchBytes: read("KAFKA_BATCH_BYTES", integer(1024, 64 * 1024 * 1024), 1024 * 1024),
      // Kafka's and MSK's default message.max.bytes: every batch is cut to fit it.
      maxMessageBytes: read("KAFKA_MAX_MESSAGE_BYTES", integer(4096, 64 * 1024 * 1024), 1024 * 1024),
      queueMaxRecords: read("KAFKA_QUEUE_MAX_RECORDS", integer(1, 100_000_000), 200_000),
      queueMaxBytes: read("KAFKA_QUEUE_MAX_BYTES", integer(1024, 16 * 1024 * 1024 * 1024), 256 * 1024 * 1024),
      unhealthyAfterMs: read("KAFKA_UNHEALTHY_AFTER_MS", integer(0, 3_600_000), 10_000),
      affectsHealth: read("KAFKA_AFFECTS_HEALTH", boolean, true),
      writeTimeoutMs: read("KAFKA_WRITE_TIMEOUT_MS", integer(100, 600_000), 5000),
      topicRetryMs: read("KAFKA_TOPIC_RETRY_MS", integer(100, 600_000), 5000),
      topicPartitions: read("KAFKA_TOPIC_PARTITIONS", integer(1, 10_000), 6),
      // Idempotent producers per topic, each owning a share of its partitions with one batch in flight;
      // 1 by default: more measured no lower p99 here, where an acknowledgement costs CPU, not a round trip (RESULTS.md).
      producers: read("KAFKA_PRODUCERS", integer(1, 16), 1),
    },
    localLog: {
      dir: read("LOCAL_LOG_DIR", nonEmpty, "./data/events"),
      rotateBytes: read("LOCAL_LOG_ROTATE_BYTES", integer(1024, 64 * 1024 * 1024 * 1024), 64 * 1024 * 1024),
    },
    redisUrl: read("REDIS_URL", redisUrl),
    auth: {
      jwtSecret,
      jwksUrl,
      issuer: read("JWT_ISSUER", nonEmpty),
      audience: read("JWT_AUDIENCE", nonEmpty),
      clockSkewSec: read("JWT_CLOCK_SKEW_SEC", integer(0, 300), 5),
      usingDevSecret: devMode && jwtSecret === undefined && jwksUrl === undefined,
      tokenCacheSize: read("AUTH_TOKEN_CACHE_SIZE", integer(0, 10_000_000), 10_000),
      // 10,000 tokens of about 2.5 KB each: the count bounds ordinary tokens, this one large ones.
      tokenCacheBytes: read("AUTH_TOKEN_CACHE_BYTES", integer(64 * 1024), 32 * 1024 * 1024),
    },
    schemas: {
      source: read("SCHEMAS", nonEmpty),
      refreshMs: read("SCHEMAS_REFRESH_MS", integer(1000, 86_400_000), 30_000),
    },
    s3: {
      endpoint: s3Endpoint,
      // S3-compatible stores mostly serve buckets under the path, not as a DNS name per bucket.
      forcePathStyle: read("S3_FORCE_PATH_STYLE", boolean, s3Endpoint !== undefined),
      // S3 is addressed through a region even with an endpoint; us-east-1 is what compatible stores expect.
      region: awsRegion ?? "us-east-1",
    },
    rateLimit: {
      enabled: read("RATE_LIMIT_ENABLED", boolean, true),
      tenantQuotas: read("TENANT_QUOTAS", nonEmpty),
      tenantQuotasRefreshMs: read("TENANT_QUOTAS_REFRESH_MS", integer(1000, 86_400_000), 30_000),
      eventsPerSec: read("RATE_LIMIT_EVENTS_PER_SEC", integer(1), 100_000),
      requestsPerSec: read("RATE_LIMIT_REQUESTS_PER_SEC", integer(1), 10_000),
      trustProxyHops: read("TRUST_PROXY", integer(0, 16), 0),
      expectedInstances: read("RATE_LIMIT_EXPECTED_INSTANCES", integer(1, 10_000), 1),
      redisTimeoutMs: read("REDIS_TIMEOUT_MS", integer(1, 10_000), 250),
    },
    ws: {
      pingIntervalMs: read("WS_PING_INTERVAL_MS", integer(100, 3_600_000), 30_000),
      authTimeoutMs: read("WS_AUTH_TIMEOUT_MS", integer(100, 60_000), 5000),
      maxPayloadBytes: read("WS_MAX_PAYLOAD_BYTES", integer(128, 16 * 1024 * 1024), 64 * 1024),
      backpressureBytes: wsBackpressureBytes,
      queuedMaxBytes: wsQueuedMaxBytes,
      idleTimeoutSec: read("WS_IDLE_TIMEOUT_SEC", integer(8, 960), 120),
      maxConnections: wsMaxConnections,
      maxUnauthenticated: read("WS_MAX_UNAUTHENTICATED", integer(1), wsMaxUnauthenticatedDefault),
      maxConnectionsPerTenant: read("WS_MAX_CONNECTIONS_PER_TENANT", integer(1), 20_000),
      maxSubscriptions: read("WS_MAX_SUBSCRIPTIONS", integer(1, 100_000), 100),
      // Each distinct channel holds state of its own (6-9 KB measured, with presence in Redis): bounded per
      // instance, and per tenant so one tenant's channels cannot take every place.
      maxChannels: read("WS_MAX_CHANNELS", integer(1, 10_000_000), 50_000),
      maxTenantChannels: read("WS_MAX_TENANT_CHANNELS", integer(1, 10_000_000), 10_000),
      maxMessagesPerSec: read("WS_MAX_MESSAGES_PER_SEC", integer(1), 100),
      connectsPerSecPerIp: read("WS_CONNECTS_PER_SEC_PER_IP", integer(1), 1000),
      tokenExpiryWarningMs: read("WS_TOKEN_EXPIRY_WARNING_MS", integer(0, 86_400_000), 60_000),
    },
    sse: {
      // At most 15 s between comment lines (the contract); 10 s also stays under common proxy idle timeouts.
      heartbeatMs: read("SSE_HEARTBEAT_MS", integer(100, 15_000), 10_000),
    },
    idempotency: {
      windowMs: read("IDEMPOTENCY_WINDOW_SEC", integer(1, 30 * 86_400), 86_400) * 1000,
      pendingMs: read("IDEMPOTENCY_PENDING_SEC", integer(1, 3600), 60) * 1000,
      leaseMs: read("IDEMPOTENCY_LEASE_MS", integer(1000, 60_000), 5000),
      maxKeys: read("IDEMPOTENCY_MAX_KEYS", integer(1, 100_000_000), 100_000),
      maxBytes: read("IDEMPOTENCY_MAX_BYTES", integer(1024), 64 * 1024 * 1024),
      maxRecordIds: read("DEDUP_MAX_IDS", integer(1000, 100_000_000), 200_000),
    },
    presence: {
      ttlMs: read("PRESENCE_TTL_MS", integer(3000, 3_600_000), 30_000),
    },
    history: {
      eventsPerChannel: read("HISTORY_EVENTS_PER_CHANNEL", integer(1, 1_000_000), 1000),
      bytesPerChannel: read("HISTORY_BYTES_PER_CHANNEL", integer(1024), 1024 * 1024),
      channels: read("HISTORY_MAX_CHANNELS", integer(1), 10_000),
      maxBytes: historyMaxBytes,
      tenantMaxBytes: read("HISTORY_TENANT_MAX_BYTES", integer(1024), Math.floor(historyMaxBytes / 4)),
      keepIdleMs: read("HISTORY_KEEP_IDLE_MS", integer(0, 24 * 3600 * 1000), 5 * 60 * 1000),
    },
    replay: {
      // At least 1: with 0 every resume and history page the topic must serve is try_again, retried forever.
      maxConcurrent: read("REPLAY_MAX_CONCURRENT", integer(1, 10_000), 16),
      maxConcurrentPerTenant: read("REPLAY_MAX_CONCURRENT_PER_TENANT", integer(1, 10_000), 4),
      maxBytes: read("REPLAY_MAX_BYTES", integer(1024, 1024 * 1024 * 1024), 8 * 1024 * 1024),
      timeoutMs: read("REPLAY_TIMEOUT_MS", integer(100, 600_000), 10_000),
      scanMaxOffsets: read("REPLAY_SCAN_MAX_OFFSETS", integer(1024, 1_000_000_000), 262_144),
      latestCacheBytes: read("REPLAY_LATEST_CACHE_BYTES", integer(0, 1024 * 1024 * 1024), 16 * 1024 * 1024),
    },
    tracing: readTracing(),
  };

  // One topic in two roles mixes what each carries: every instance reads the fan-out topic as channel
  // messages, and consumers of the ingest topic take whatever lands there for accepted events. Kafka
  // itself refuses one name twice in a CreateTopics, which the gateway would report as "Kafka unreachable".
  const topics: Array<[string, string | undefined]> = [
    ["KAFKA_TOPIC", config.kafka.topic],
    ["KAFKA_FANOUT_TOPIC", config.kafka.fanoutTopic],
    ["KAFKA_DLQ_TOPIC", config.kafka.dlqTopic],
  ];
  for (const [index, [name, topic]] of topics.entries())
    for (const [other, otherTopic] of topics.slice(index + 1))
      if (topic !== undefined && topic === otherTopic)
        problems.push(`${name}/${other}: must name different topics, both are "${topic}"`);
  // A request the queue could not hold even empty would be 503 overloaded, Retry-After: 1, forever.
  const queueRecords = Math.floor(config.kafka.queueMaxRecords * TOPIC_QUEUE_SHARE);
  if (queueRecords < config.maxRecordsPerRequest)
    problems.push(
      `KAFKA_QUEUE_MAX_RECORDS/MAX_RECORDS_PER_REQUEST: the queue must hold one full request, but KAFKA_QUEUE_MAX_RECORDS (${config.kafka.queueMaxRecords}) gives a topic ${queueRecords} records (9/10 of it), fewer than MAX_RECORDS_PER_REQUEST (${config.maxRecordsPerRequest})`,
    );
  // A body of MAX_BODY_BYTES would be 503 overloaded, Retry-After: 1, forever.
  if (config.requestBodiesMaxBytes < config.maxBodyBytes)
    problems.push(
      `REQUEST_BODIES_MAX_BYTES/MAX_BODY_BYTES: the bodies being received at once must hold one full body, but REQUEST_BODIES_MAX_BYTES (${config.requestBodiesMaxBytes}) is less than MAX_BODY_BYTES (${config.maxBodyBytes})`,
    );
  // Bodies only bound a request's bytes in Kafka from below (each record gains an id, tenant and headers):
  // this catches the queue that can never take a full one, not every request it cannot take.
  const queueBytes = Math.floor(config.kafka.queueMaxBytes * TOPIC_QUEUE_SHARE);
  for (const [name, bytes] of [
    ["MAX_BODY_BYTES", config.maxBodyBytes],
    ["PUBLISH_MAX_BYTES", config.maxPublishBytes],
  ] as const)
    if (queueBytes < bytes)
      problems.push(
        `KAFKA_QUEUE_MAX_BYTES/${name}: the queue must hold one full request, but KAFKA_QUEUE_MAX_BYTES (${config.kafka.queueMaxBytes}) gives a topic ${queueBytes} bytes (9/10 of it), fewer than ${name} (${bytes})`,
      );
  // Settings for reaching Kafka say Kafka is meant: without KAFKA_BROKERS (unset, or a typo in its name)
  // the gateway would answer 202 into the embedded local log, a pod's disk, with a warning line only.
  if (config.kafka.brokers === undefined) {
    const meant = [
      ...(saslMechanism !== "none" ? [`KAFKA_SASL_MECHANISM=${saslMechanism}`] : []),
      // TLS is on by default only with aws-msk-iam, named already: on otherwise, it was asked for.
      ...(config.kafka.tls && saslMechanism !== "aws-msk-iam" ? ["KAFKA_TLS=true"] : []),
    ];
    if (meant.length > 0 && !problems.some((problem) => problem.startsWith("KAFKA_BROKERS:")))
      problems.push(
        `KAFKA_BROKERS: required with ${meant.join(" and ")} (unset runs the embedded local log, which reaches no Kafka)`,
      );
  }
  // MSK serves IAM authentication on its TLS listeners only: over plaintext the gateway could never connect.
  if (saslMechanism === "aws-msk-iam" && !config.kafka.tls)
    problems.push(
      "KAFKA_SASL_MECHANISM/KAFKA_TLS: aws-msk-iam needs TLS (MSK serves IAM authentication on its TLS listeners only, ports 9098 and 9198); unset KAFKA_TLS or set it to true",
    );
  if (config.workers > 1 && config.port === 0)
    problems.push("WORKERS/PORT: more than 1 worker needs a fixed PORT, not 0");
  // Each worker would pick a free port of its own: N unrelated /metrics ports, none known to a scraper.
  if (config.workers > 1 && config.metricsPort === 0)
    problems.push("WORKERS/METRICS_PORT: more than 1 worker needs a fixed METRICS_PORT, not 0");
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Settings that are set and do nothing, with why: each is one warning at start. */
export interface IgnoredSettings {
  variables: string[];
  message: string;
}

/**
 * Settings set where they do nothing on this runtime or with these other
 * settings. Warned about, not refused: deployments that template every
 * variable set them all.
 */
export function ignoredSettings(config: Config, runtime: "bun" | "node-uws"): IgnoredSettings[] {
  return [...ignoredKafkaCredentials(config), ...ignoredKeepAlive(config, runtime)];
}

/** uWebSockets.js compiles its HTTP idle timeout in: Node cannot keep an idle connection longer or shorter. */
function ignoredKeepAlive(config: Config, runtime: "bun" | "node-uws"): IgnoredSettings[] {
  if (runtime === "bun" || config.httpKeepAliveSec === UWS_HTTP_IDLE_TIMEOUT_SEC) return [];
  return [
    {
      variables: ["HTTP_KEEP_ALIVE_SEC"],
      message:
        "HTTP_KEEP_ALIVE_SEC: ignored on Node, where uWebSockets.js closes idle keep-alive connections at its own fixed timeout (10 s)",
    },
  ];
}

/**
 * Kafka credentials set where nothing uses them: an operator who set them
 * believes the gateway authenticates with them. (A SASL mechanism or TLS
 * without KAFKA_BROKERS is refused by loadConfig instead: it means a Kafka,
 * and events would land in the embedded local log.)
 */
function ignoredKafkaCredentials(config: Config): IgnoredSettings[] {
  const { brokers, saslMechanism, saslUsername, saslPassword } = config.kafka;
  const variables = [
    ...(saslUsername === undefined ? [] : ["KAFKA_SASL_USERNAME"]),
    ...(saslPassword === undefined ? [] : ["KAFKA_SASL_PASSWORD"]),
  ];
  const why =
    brokers === undefined
      ? "KAFKA_BROKERS is unset: the embedded local log takes the events, and nothing authenticates"
      : saslMechanism === "none"
        ? "KAFKA_SASL_MECHANISM is none: set it to plain, scram-sha-256 or scram-sha-512 to authenticate with them"
        : saslMechanism === "aws-msk-iam"
          ? "KAFKA_SASL_MECHANISM=aws-msk-iam signs with the AWS credentials of the environment (the pod's role), not a username and password"
          : undefined;
  if (variables.length === 0 || why === undefined) return [];
  return [{ variables, message: `${variables.join("/")}: ignored, ${why}` }];
}

/**
 * A Redis AUTH command as a logged error quotes it: ioredis's ReplyError carries its command, so a wrong
 * REDIS_URL password (or a right one Redis refused) is `"command":{"name":"auth","args":["user","secret"]}`.
 */
const REDIS_AUTH_ARGS = /("name":"auth","args":\[)(?:"(?:[^"\\]|\\.)*",?)*\]/gi;

/** Where a URL's text ends in a log line: a space, a quote (JSON string) or a backslash (an escape). */
const URL_END = /[\s"\\]/g;
/** The same, or where its query starts. */
const URL_END_OR_QUERY = /[\s"\\?]/g;

/**
 * `text` with the query of every URL in it written `?***`: it may carry a secret (a presigned URL's
 * `X-Amz-Signature`, an OTLP backend's API key, ioredis's `?password=`). Each character is looked at
 * a bounded number of times, so a long line costs linear time whatever it holds.
 */
function withoutUrlQueries(text: string): string {
  let masked = "";
  let copied = 0;
  for (let at = text.indexOf("://"); at !== -1; at = text.indexOf("://", at)) {
    URL_END_OR_QUERY.lastIndex = at;
    const query = URL_END_OR_QUERY.exec(text)?.index ?? text.length;
    at = query;
    if (text[query] !== "?") continue;
    URL_END.lastIndex = query;
    const end = URL_END.exec(text)?.index ?? text.length;
    if (end > query + 1) {
      masked += `${text.slice(copied, query)}?***`;
      copied = end;
    }
    at = end;
  }
  return copied === 0 ? text : masked + text.slice(copied);
}

/**
 * `text` with every password in it masked: a URL's (`redis://:secret@host` → `redis://:***@host`), a URL's
 * query (`https://host/a.json?***`), and a Redis AUTH command's arguments (`"args":["***"]`).
 */
export function withoutPasswords(text: string): string {
  const masked = text.replace(/(\/\/[^/\s:@"]*):[^/\s@"]*@/g, "$1:***@").replace(REDIS_AUTH_ARGS, '$1"***"]');
  return masked.includes("?") ? withoutUrlQueries(masked) : masked;
}

/** Stands for a secret's value in the settings logged at start: set, but never written out. */
const SECRET_SET = "***";

/**
 * The settings in effect, as the start logs them: an operator checks there
 * that a ConfigMap or an environment took effect (the defaults filled in)
 * without reading each variable back. The secrets are only said to be set;
 * a URL's password is masked by the logger like on every line, and a URL's
 * query here, which may carry one too (ioredis takes `?password=`, a
 * presigned URL its signature).
 */
export function settingsForLog(config: Config): Config {
  const secret = (value: string | undefined) => (value === undefined ? undefined : SECRET_SET);
  const withoutQuery = (url: string | undefined) => url?.replace(/\?.*$/s, `?${SECRET_SET}`);
  return {
    ...config,
    kafka: { ...config.kafka, saslPassword: secret(config.kafka.saslPassword) },
    redisUrl: withoutQuery(config.redisUrl),
    auth: {
      ...config.auth,
      jwtSecret: secret(config.auth.jwtSecret),
      jwksUrl: withoutQuery(config.auth.jwksUrl),
    },
    schemas: { ...config.schemas, source: withoutQuery(config.schemas.source) },
    rateLimit: { ...config.rateLimit, tenantQuotas: withoutQuery(config.rateLimit.tenantQuotas) },
    tracing: { ...config.tracing, tracesUrl: withoutQuery(config.tracing.tracesUrl) },
  };
}
