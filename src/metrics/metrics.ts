import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { ResolvedCounter, ResolvedHistogram, SampledGauge } from "./resolved.ts";

// Up to 60 s: an ingest request waits for Kafka's acknowledgement up to INGEST_ACK_TIMEOUT_MS (15 s by default,
// tens of seconds when raised), a produce attempt up to KAFKA_WRITE_TIMEOUT_MS and a history page's topic read up
// to REPLAY_TIMEOUT_MS, all settable well past 10 s; ending at 10 s put such requests in +Inf, where
// histogram_quantile cannot tell 11 s from 59 s. 15 is the default acknowledgement deadline (answered within it,
// or timed out). Three buckets more, not a finer scale: each is one more series per route, method and status.
export const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60,
];
const SIZE_BUCKETS = [1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000];

/** Every combination of the values of `values`' labels. */
function labelSets(values: Readonly<Record<string, readonly string[]>>): Array<Record<string, string>> {
  return Object.entries(values).reduce<Array<Record<string, string>>>(
    (sets, [label, labelValues]) =>
      sets.flatMap((set) => labelValues.map((value) => ({ ...set, [label]: value }))),
    [{}],
  );
}

/**
 * Every metric the gateway exports, in one registry. Labels only ever carry
 * values from small fixed sets (route templates, status codes, reason codes),
 * never ids, raw paths or tenants.
 */
export function createMetrics(runtime: string, version: string) {
  const registry = new Registry();
  // The event-loop delay histogram samples on a timer of this period. Node's counts the period itself in every
  // reading (an idle loop reads as the period), so Node keeps prom-client's 10 ms, which the 200 ms lag alert
  // and the dashboards assume. Bun's reads the delay alone, so it samples every 100 ms: at 10 ms the timer woke an
  // idle instance ~100 times a second, most of its idle CPU (19 -> 13 ms/s); a stall still shows whole in the
  // one sample it delays.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: runtime === "bun" ? 100 : 10 });
  // These three are gauges named like counters; `promtool check metrics` rejects them.
  for (const name of [
    "nodejs_active_handles_total",
    "nodejs_active_requests_total",
    "nodejs_active_resources_total",
  ]) {
    registry.removeSingleMetric(name);
  }
  // Bun computes v8.getHeapSpaceStatistics() by walking the heap: with a million live objects (a full resume
  // history) each scrape stopped the event loop for 0.3-0.6 s, where Node takes under a millisecond. It fills
  // one space of seven; nodejs_heap_size_* (process.memoryUsage) still give the heap.
  if (runtime === "bun") {
    for (const name of [
      "nodejs_heap_space_size_total_bytes",
      "nodejs_heap_space_size_used_bytes",
      "nodejs_heap_space_size_available_bytes",
    ]) {
      registry.removeSingleMetric(name);
    }
  }
  const r = [registry];

  const metrics = {
    registry,
    info: new Gauge({
      name: "gateway_info",
      help: "Build and runtime of this instance",
      labelNames: ["runtime", "version"],
      registers: r,
    }),
    engineInfo: new Gauge({
      name: "gateway_engine_info",
      help: "What serves HTTP and WebSockets: bun, uws-native, or uws-js-fallback (UWS_ALLOW_FALLBACK)",
      labelNames: ["engine"],
      registers: r,
    }),
    // Observed on every request: children resolved once per route, method and status.
    httpRequests: new ResolvedCounter(
      "gateway_http_requests_total",
      "HTTP requests by route, method and status; WebSocket upgrades too (101, or the refusal's status)",
      ["route", "method", "status"],
      registry,
    ),
    httpDuration: new ResolvedHistogram(
      "gateway_http_request_duration_seconds",
      // A stream's lifetime (minutes, hours) would swamp every latency panel and the SLO alert.
      "HTTP request latency by route, method and status; an event stream (/v1/sse) until its head is sent, not its lifetime",
      ["route", "method", "status"],
      LATENCY_BUCKETS,
      registry,
    ),
    // Read when scraped (from each router's count): nothing to set on the request path.
    inFlightRequests: new SampledGauge(
      "gateway_http_requests_in_flight",
      "HTTP requests being handled (an open event stream is not one: gateway_sse_streams counts those)",
      registry,
    ),
    eventsAccepted: new Counter({
      name: "gateway_events_accepted_total",
      help: "Records accepted for delivery",
      registers: r,
    }),
    eventsRejected: new Counter({
      name: "gateway_events_rejected_total",
      // The reasons are fewer than the codes of a 202/422 body's errors (REJECT_REASON): say which code is which.
      help: "Records rejected (each in a 202 or 422 body's errors), by reason, the body's code in brackets where it differs: malformed_json, invalid_record (invalid_record, too_deep, duplicate_key, record_refused), unknown_type, schema (schema_invalid), forbidden_channel, too_large (record_too_large), unavailable (record_unavailable)",
      labelNames: ["reason"],
      registers: r,
    }),
    eventsProduced: new Counter({
      name: "gateway_events_produced_total",
      help: "Ingested records (POST /v1/events) acknowledged by the sink: KAFKA_TOPIC or the local log. Fan-out copies, publishes and dead letters, written to other topics, are not counted",
      registers: r,
    }),
    eventsUndeliverable: new Counter({
      name: "gateway_events_undeliverable_total",
      help: "Records the sink refused for good (dead-lettered when KAFKA_DLQ_TOPIC is set, else dropped), by reason",
      labelNames: ["reason"],
      registers: r,
    }),
    produceDuration: new Histogram({
      name: "gateway_kafka_produce_duration_seconds",
      help: "Time from sending a batch to its acknowledgement",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    produceBatchRecords: new Histogram({
      name: "gateway_kafka_batch_records",
      help: "Records per produced batch",
      buckets: SIZE_BUCKETS,
      registers: r,
    }),
    produceErrors: new Counter({
      name: "gateway_kafka_produce_errors_total",
      help: "Failed produce attempts (retried)",
      registers: r,
    }),
    topicAvailable: new Gauge({
      name: "gateway_sink_topic_available",
      help: "0 while the sink refuses a whole topic (not authorized, missing, disk full), else 1; topics come from config",
      labelNames: ["topic"],
      registers: r,
    }),
    deadLettersDropped: new Counter({
      name: "gateway_dead_letters_dropped_total",
      help: "Dead letters dropped instead of written, by reason (full, unavailable, refused, undelivered_at_exit)",
      labelNames: ["reason"],
      registers: r,
    }),
    kafkaUp: new Gauge({
      name: "gateway_kafka_up",
      help: "1 while the sink answers; 0 from a failed write or probe (or, for Kafka, from the start) until it answers again, without waiting for KAFKA_UNHEALTHY_AFTER_MS",
      registers: r,
    }),
    // Read when scraped, from the queue's own counts.
    queueRecords: new SampledGauge(
      "gateway_queue_records",
      "Records queued for the sink, not yet acknowledged",
      registry,
    ),
    queueBytes: new SampledGauge(
      "gateway_queue_bytes",
      "Bytes queued for the sink, not yet acknowledged",
      registry,
    ),
    queueCapacityRecords: new Gauge({
      name: "gateway_queue_capacity_records",
      help: "Queue bound in records",
      registers: r,
    }),
    // Read when scraped, from the instance's count (REQUEST_BODIES_MAX_BYTES).
    requestBodiesBytes: new SampledGauge(
      "gateway_request_bodies_bytes",
      "Bytes of request bodies being received, each counted from its Content-Length (or as MAX_BODY_BYTES without one) until it came",
      registry,
    ),
    requestBodiesCapacityBytes: new Gauge({
      name: "gateway_request_bodies_capacity_bytes",
      help: "Bound on the bytes of request bodies being received at once (REQUEST_BODIES_MAX_BYTES); past it, or past a tenant's share, 503 overloaded",
      registers: r,
    }),
    queueCapacityBytes: new Gauge({
      name: "gateway_queue_capacity_bytes",
      help: "Queue bound in bytes",
      registers: r,
    }),
    overloaded: new Counter({
      name: "gateway_overloaded_total",
      help: "Requests refused with 503 because the queue was full or the sink down",
      registers: r,
    }),
    idempotencyOutcomes: new Counter({
      name: "gateway_idempotency_requests_total",
      help: "Requests with an Idempotency-Key, by outcome: first (ran), replayed, in_flight (409), key_reused (422)",
      labelNames: ["outcome"],
      registers: r,
    }),
    idempotencyStoreFailures: new Counter({
      name: "gateway_idempotency_store_failures_total",
      help: "Idempotency store calls that failed (Redis, or the WORKERS supervisor, down or slow): the request ran without the shared check",
      registers: r,
    }),
    recordDedup: new Counter({
      name: "gateway_record_dedup_total",
      help: "Records of tenants with per-record deduplication, by outcome: new (written), duplicate (acknowledged, not written again), in_flight (its id was being written: request answered 409)",
      labelNames: ["outcome"],
      registers: r,
    }),
    recordDedupStoreFailures: new Counter({
      name: "gateway_record_dedup_store_failures_total",
      help: "Record id store calls that failed (Redis, or the WORKERS supervisor, down or slow): the records were written without the shared check",
      registers: r,
    }),
    recordDedupEarlyEvictions: new Counter({
      name: "gateway_record_dedup_early_evictions_total",
      help: "Record ids evicted from the in-memory store before their window ended (DEDUP_MAX_IDS too small for the traffic)",
      registers: r,
    }),
    rateLimited: new Counter({
      name: "gateway_rate_limited_total",
      help: "Requests or connections refused by a rate limit, by scope: tenant_events, ip_requests, ws_connect (connection attempts per IP), ws_message (frames per socket), tenant_connections (WS_MAX_CONNECTIONS_PER_TENANT, WebSockets and event streams)",
      labelNames: ["scope"],
      registers: r,
    }),
    rateLimitLeases: new Counter({
      name: "gateway_rate_limit_leases_total",
      help: "Slices of a shared rate-limit budget asked of Redis, by scope and outcome (granted, refused: none left, failed: Redis did not answer)",
      labelNames: ["scope", "outcome"],
      registers: r,
    }),
    rateLimiterDegraded: new Gauge({
      name: "gateway_rate_limiter_degraded",
      help: "1 while Redis is unavailable and the per-process limiter is in charge",
      registers: r,
    }),
    wsConnections: new Gauge({
      name: "gateway_ws_connections",
      help: "Open WebSocket connections",
      labelNames: ["runtime"],
      registers: r,
    }),
    wsSubscriptions: new Gauge({
      name: "gateway_ws_subscriptions",
      help: "Active channel subscriptions",
      registers: r,
    }),
    wsMessagesSent: new Counter({
      name: "gateway_ws_messages_sent_total",
      help: "WebSocket messages sent to clients",
      registers: r,
    }),
    wsBytesSent: new Counter({
      name: "gateway_ws_bytes_sent_total",
      help: "WebSocket payload bytes sent to clients",
      registers: r,
    }),
    wsMessagesDropped: new Counter({
      name: "gateway_ws_messages_dropped_total",
      help: "WebSocket messages dropped because of backpressure",
      registers: r,
    }),
    wsPublishes: new Counter({
      name: "gateway_ws_publishes_total",
      help: "WebSocket publish frames, by result: published (Kafka acknowledged), forbidden, bad_channel, rate_limited, unavailable",
      labelNames: ["result"],
      registers: r,
    }),
    wsPublishDuration: new Histogram({
      name: "gateway_ws_publish_duration_seconds",
      help: "Time from a WebSocket publish frame to its answer (published or error), by result",
      labelNames: ["result"],
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    sseStreams: new Gauge({
      name: "gateway_sse_streams",
      help: "Open Server-Sent Events streams",
      registers: r,
    }),
    sseEventsSent: new Counter({
      name: "gateway_sse_events_sent_total",
      help: "Events written to Server-Sent Events streams",
      registers: r,
    }),
    sseSlowConsumerDisconnects: new Counter({
      name: "gateway_sse_slow_consumer_disconnects_total",
      help: "Server-Sent Events streams ended past the backpressure limit",
      registers: r,
    }),
    wsSlowConsumerDisconnects: new Counter({
      name: "gateway_ws_slow_consumer_disconnects_total",
      help: "Connections closed with 1013 past the backpressure limit",
      registers: r,
    }),
    // One result per resume, so that summing over `result` counts resumes (the history_gone share in
    // GatewayResumesGone and the dashboard): reads of the fan-out log are counted apart.
    wsResumes: new Counter({
      name: "gateway_ws_resumes_total",
      help: "Resumes (WebSocket subscribe with since, SSE Last-Event-ID), each once by its result: served, history_gone, try_again",
      labelNames: ["result"],
      registers: r,
    }),
    wsResumeLogReads: new Counter({
      name: "gateway_ws_resume_log_reads_total",
      help: "Resumes read from the fan-out log (memory no longer held their events), counted when the read starts; each gets its result in gateway_ws_resumes_total too",
      registers: r,
    }),
    fanoutWantedChannels: new Gauge({
      name: "gateway_fanout_wanted_channels",
      help: "Channels whose fan-out messages this instance decodes and keeps. Kafka bus: those watched here, or within HISTORY_KEEP_IDLE_MS; embedded bus, which keeps every channel: those with history held (a channel subscribed to but without events yet is not counted)",
      registers: r,
    }),
    historyChannels: new Gauge({
      name: "gateway_history_channels",
      help: "Channels with resume history held in memory",
      registers: r,
    }),
    replaysInProgress: new Gauge({
      name: "gateway_replays_in_progress",
      help: "Reads of the fan-out log under way for resumes and history pages (bounded by REPLAY_MAX_CONCURRENT)",
      registers: r,
    }),
    replayOffsetsRead: new Counter({
      name: "gateway_replay_offsets_read_total",
      help: "Offsets of the fan-out log read for resumes and history pages, by read: since (a resume), scan (a channel's latest events scanned back), read_on (read on from the last scan's)",
      labelNames: ["read"],
      registers: r,
    }),
    presenceChannels: new Gauge({
      name: "gateway_presence_channels",
      help: "Channels with at least one member connected to this instance",
      registers: r,
    }),
    presenceWatchedChannels: new Gauge({
      name: "gateway_presence_watched_channels",
      help: "Channels whose join and leave events a connection to this instance asked for (checked each second)",
      registers: r,
    }),
    presenceEvents: new Counter({
      name: "gateway_presence_events_total",
      help: "Join and leave events this instance sent (each counted once, however many watchers got it), by kind",
      labelNames: ["kind"],
      registers: r,
    }),
    historyBytes: new Gauge({
      name: "gateway_history_bytes",
      help: "Bytes of resume history held, as counted against HISTORY_MAX_BYTES",
      registers: r,
    }),
    historyEvictions: new ResolvedCounter(
      "gateway_history_evictions_total",
      "Events evicted from the resume history, by the bound that evicted them",
      ["cause"],
      registry,
    ),
    fanoutLatency: new Histogram({
      name: "gateway_fanout_latency_seconds",
      help: "Time from the fan-out message timestamp to delivery",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    schemaRefreshFailures: new Counter({
      name: "gateway_schema_refresh_failures_total",
      help: "Failed schema registry refreshes",
      registers: r,
    }),
    tenantQuotaRefreshFailures: new Counter({
      name: "gateway_tenant_quota_refresh_failures_total",
      help: "Failed tenant quota refreshes (the last good table stays in use)",
      registers: r,
    }),
    schemaTypes: new Gauge({
      name: "gateway_schema_types",
      help: "Event types in the loaded schema registry",
      registers: r,
    }),
    draining: new Gauge({
      name: "gateway_draining",
      help: "1 while the instance drains before exit",
      registers: r,
    }),
    drainStarted: new Gauge({
      name: "gateway_drain_started_timestamp_seconds",
      help: "Unix time the drain began (0 while serving): how long a drain has run, for GatewayDrainStuck",
      registers: r,
    }),
  };
  // The values each labelled counter's labels can take (its help lists them), exported at 0 from the start: a
  // series born at its first increment has no earlier sample, so increase() and rate() read that increment as
  // none, and a one-off refusal would never fire GatewayEventsUndeliverable or GatewayDeadLettersDropped.
  const labelValues: Array<[Counter, Record<string, readonly string[]>]> = [
    [
      metrics.eventsRejected,
      {
        reason: [
          "malformed_json",
          "invalid_record",
          "unknown_type",
          "schema",
          "forbidden_channel",
          "too_large",
          "unavailable",
        ],
      },
    ],
    [metrics.eventsUndeliverable, { reason: ["too_large", "invalid_record"] }],
    [metrics.deadLettersDropped, { reason: ["full", "unavailable", "refused", "undelivered_at_exit"] }],
    [metrics.idempotencyOutcomes, { outcome: ["first", "replayed", "in_flight", "key_reused"] }],
    [metrics.recordDedup, { outcome: ["new", "duplicate", "in_flight"] }],
    [
      metrics.rateLimited,
      { scope: ["tenant_events", "ip_requests", "ws_connect", "ws_message", "tenant_connections"] },
    ],
    [
      metrics.rateLimitLeases,
      { scope: ["tenant_events", "ip_requests", "ws_connect"], outcome: ["granted", "refused", "failed"] },
    ],
    [
      metrics.wsPublishes,
      { result: ["published", "forbidden", "bad_channel", "rate_limited", "unavailable"] },
    ],
    [metrics.wsResumes, { result: ["served", "history_gone", "try_again"] }],
    [metrics.replayOffsetsRead, { read: ["since", "scan", "read_on"] }],
    [metrics.presenceEvents, { kind: ["join", "leave"] }],
  ];
  for (const [counter, values] of labelValues) {
    for (const labels of labelSets(values)) counter.inc(labels, 0);
  }
  metrics.info.set({ runtime, version }, 1);
  metrics.draining.set(0);
  metrics.drainStarted.set(0);
  metrics.wsConnections.set({ runtime }, 0);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
