import { join } from "node:path";
import { type Config, DEV_JWT_SECRET } from "./config/config.ts";
import { createIngestModule } from "./features/ingest/module.ts";
import { HealthState } from "./features/operations/health.ts";
import { createMetricsApp } from "./features/operations/metrics-app.ts";
import { createOperationsModule } from "./features/operations/module.ts";
import { createPublisher, createPublishModule, tracedPublisher } from "./features/publish/module.ts";
import type { Connection } from "./features/realtime/connection.ts";
import { createRealtimeModule, FANOUT_STARTING_REASON } from "./features/realtime/module.ts";
import { bearerToken } from "./http/bearer.ts";
import { CorsPolicy } from "./http/cors.ts";
import { Idempotency } from "./http/idempotency.ts";
import { RequestBodies } from "./http/request-bodies.ts";
import { Router } from "./http/router.ts";
import { tracedRoute } from "./http/traced-route.ts";
import { createAuthenticator } from "./infra/auth/authenticator.ts";
import { createS3ObjectClient } from "./infra/aws/s3.ts";
import {
  CONNECTING_REASON,
  DeliveryQueue,
  type DeliveryQueueOptions,
  UNHEALTHY_REASON,
} from "./infra/delivery/delivery-queue.ts";
import { batchBytesLimit } from "./infra/delivery/record-size.ts";
import { MemoryRecordIdStore } from "./infra/idempotency/memory-record-ids.ts";
import { MemoryIdempotencyStore } from "./infra/idempotency/memory-store.ts";
import { RedisRecordIdStore } from "./infra/idempotency/redis-record-ids.ts";
import { RedisIdempotencyStore } from "./infra/idempotency/redis-store.ts";
import { LocalFanoutBus } from "./infra/local/fanout-bus.ts";
import { LocalLogWriter } from "./infra/local/log-writer.ts";
import { RedisPresence } from "./infra/presence/redis-presence.ts";
import { createAdmission } from "./infra/ratelimit/admission.ts";
import { RateLimits } from "./infra/ratelimit/limiter.ts";
import { TenantQuotas } from "./infra/ratelimit/tenant-quotas.ts";
import { createOtelTracing } from "./infra/tracing/otel.ts";
import { createSchemaRegistry } from "./infra/validation/registry.ts";
import { msUntil, withDeadline } from "./lib/time.ts";
import { type DrainStep, drainPlan } from "./lifecycle/drain-plan.ts";
import type { Undelivered } from "./lifecycle/lifecycle.ts";
import { type HeldStores, SUPERVISOR_CALL_TIMEOUT_MS, supervisorStores } from "./lifecycle/worker-stores.ts";
import { supervisorEndpoint, WORKER_ENV, workerFanoutRelay } from "./lifecycle/workers.ts";
import type { Logger } from "./log/logger.ts";
import { createMetrics, type Metrics } from "./metrics/metrics.ts";
import type { FanoutBus } from "./ports/fanout-bus.ts";
import type { HealthReasons } from "./ports/health.ts";
import type { IdempotencyStore } from "./ports/idempotency.ts";
import type { Module } from "./ports/module.ts";
import type { RecordIdStore } from "./ports/record-ids.ts";
import type { SinkWriter } from "./ports/sink.ts";
import type { GatewayApp, HttpRequest, RunningServer } from "./ports/transport.ts";
import { startNamingSetting } from "./start-setting.ts";

export interface Gateway {
  app: GatewayApp<Connection>;
  /** Served on METRICS_PORT when it is set (then /metrics is not on the main port). */
  metricsApp?: GatewayApp<never>;
  /** Connects every module to the listening server. */
  attach(server: RunningServer): void;
  /** The drain, in order, given the server once it listens. */
  drainSteps(server: RunningServer): DrainStep[];
  /** Records accepted and not yet delivered to the sink, and their bytes: what an exit now loses. */
  undelivered(): Undelivered;
}

/** What starting a sink is given. */
export interface SinkEnvironment {
  config: Config;
  log: Logger;
  metrics: Metrics;
  health: HealthReasons;
  /** Wraps the sink's writer in spans when tracing is on. */
  traceWrites: (writer: SinkWriter) => SinkWriter;
  queueOptions: DeliveryQueueOptions;
}

/** Where accepted records go, and the bus that fans them out. */
export interface StartedSink {
  queue: DeliveryQueue;
  bus: FanoutBus;
}

/** The one path where WebSocket upgrades are taken. */
const WS_PATH = "/v1/ws";
/** How long the port waits for the fan-out reader's first start (a few hundred ms even with Kafka down here). */
const FANOUT_START_WAIT_MS = 5000;

export interface GatewayEnvironment {
  config: Config;
  log: Logger;
  runtime: string;
  /** What serves HTTP and WebSockets (bun, uws-native, uws-js-fallback): gateway_engine_info. */
  engine: string;
  version: string;
  /** The bundled sample schemas, used when SCHEMAS is unset. */
  defaultSchemas: string;
}

/**
 * The composition root: builds the infrastructure, hands each feature the
 * ports it needs, and returns the modules as one app. Policy lives in the
 * features and the drain plan, not here.
 */
export async function createGateway(environment: GatewayEnvironment): Promise<Gateway> {
  const { config, log, runtime, engine, version, defaultSchemas } = environment;
  const metrics = createMetrics(runtime, version);
  metrics.engineInfo.set({ engine }, 1);
  const health = new HealthState(
    config.kafka.affectsHealth ? [] : [CONNECTING_REASON, UNHEALTHY_REASON, FANOUT_STARTING_REASON],
  );

  if (config.auth.usingDevSecret)
    log.warn("DEV_MODE: JWT_SECRET and JWKS_URL unset, tokens are checked against the public dev secret");
  const authenticator = createAuthenticator({
    jwtSecret: config.auth.usingDevSecret ? DEV_JWT_SECRET : config.auth.jwtSecret,
    jwksUrl: config.auth.jwksUrl,
    issuer: config.auth.issuer,
    audience: config.auth.audience,
    clockToleranceSec: config.auth.clockSkewSec,
    onJwksFetchFailure: (reason) => log.warn({ reason }, "JWKS fetch failed; tokens with new keys get 503"),
    onJwksUnusableKeys: (kids) =>
      log.warn(
        { kids },
        "JWKS holds keys that cannot be imported; tokens naming them get 503 unless a last good copy serves",
      ),
    cacheSize: config.auth.tokenCacheSize,
    cacheBytes: config.auth.tokenCacheBytes,
  });
  // A cached token's principal at once (the usual request): no promise to await.
  const authenticate = (request: HttpRequest) => {
    const token = bearerToken(request.header("authorization"));
    return authenticator.cached(token) ?? authenticator.verify(token);
  };

  // One client for every s3:// source, so they share its connections and cached credentials.
  const s3Client = createS3ObjectClient(config.s3);
  const schemas = createSchemaRegistry({
    source: config.schemas.source ?? defaultSchemas,
    refreshMs: config.schemas.refreshMs,
    log,
    onRefreshFailure: () => metrics.schemaRefreshFailures.inc(),
    onLoaded: (count) => metrics.schemaTypes.set(count),
    s3Client,
  });
  await startNamingSetting("SCHEMAS", schemas.start());

  // Without an OTLP endpoint nothing is traced and the OpenTelemetry SDK is never imported.
  const tracesUrl = config.tracing.tracesUrl;
  const tracing = tracesUrl
    ? await createOtelTracing({
        tracesUrl,
        protocol: config.tracing.protocol,
        serviceName: config.tracing.serviceName,
        serviceVersion: version,
        sampler: config.tracing.sampler,
        samplerRatio: config.tracing.samplerRatio,
        compression: config.tracing.compression,
        exportTimeoutMs: config.tracing.exportTimeoutMs,
        spanLimits: config.tracing.spanLimits,
        log,
      })
    : undefined;
  if (tracesUrl)
    log.info(
      { url: tracesUrl, protocol: config.tracing.protocol },
      "OpenTelemetry: exporting spans over OTLP",
    );
  const traced = (module: Module): Module =>
    tracing ? { ...module, routes: module.routes?.map((route) => tracedRoute(route, tracing)) } : module;

  const { queue, bus } = await createSink({
    config,
    log,
    metrics,
    health,
    traceWrites: (writer) => (tracing ? tracing.traceWriter(writer) : writer),
    queueOptions: deliveryQueueOptions(config),
  });

  const limits = new RateLimits(
    {
      redisUrl: config.redisUrl,
      eventsPerSec: config.rateLimit.eventsPerSec,
      requestsPerSec: config.rateLimit.requestsPerSec,
      connectsPerSec: config.ws.connectsPerSecPerIp,
      expectedInstances: config.rateLimit.expectedInstances,
      redisTimeoutMs: config.rateLimit.redisTimeoutMs,
    },
    metrics,
    log,
  );
  const quotas = config.rateLimit.tenantQuotas
    ? new TenantQuotas({
        source: config.rateLimit.tenantQuotas,
        refreshMs: config.rateLimit.tenantQuotasRefreshMs,
        log,
        s3Client,
        onRefreshFailure: () => metrics.tenantQuotaRefreshFailures.inc(),
      })
    : undefined;
  if (quotas) await startNamingSetting("TENANT_QUOTAS", quotas.start());
  const admission = createAdmission(limits, quotas, {
    enabled: config.rateLimit.enabled,
    trustProxyHops: config.rateLimit.trustProxyHops,
  });
  const supervisor = config.redisUrl ? undefined : supervisorEndpoint();
  // WORKERS > 1 without Redis: the supervisor holds one store of each for all workers.
  const shared = supervisor
    ? supervisorStores(supervisor, {
        timeoutMs: SUPERVISOR_CALL_TIMEOUT_MS,
        onIdempotencyFailOpen: () => metrics.idempotencyStoreFailures.inc(),
        onRecordIdsFailOpen: () => metrics.recordDedupStoreFailures.inc(),
      })
    : undefined;
  const idempotencyOptions = idempotencyStoreOptions(config);
  const idempotencyStore: IdempotencyStore = config.redisUrl
    ? new RedisIdempotencyStore(
        {
          redisUrl: config.redisUrl,
          windowMs: idempotencyOptions.windowMs,
          pendingMs: idempotencyOptions.pendingMs,
          leaseMs: idempotencyOptions.leaseMs,
          commandTimeoutMs: config.rateLimit.redisTimeoutMs,
          onFailOpen: () => metrics.idempotencyStoreFailures.inc(),
        },
        log,
      )
    : (shared?.idempotency ?? new MemoryIdempotencyStore(idempotencyOptions));
  const idempotency = new Idempotency(idempotencyStore, metrics);
  const bodies = new RequestBodies(config.requestBodiesMaxBytes, config.maxBodyBytes);
  metrics.requestBodiesBytes.sampleFrom(() => bodies.size.bytes);
  metrics.requestBodiesCapacityBytes.set(config.requestBodiesMaxBytes);
  // Per-record deduplication is asked for per tenant, in the tenant table; without one, no tenant has it.
  const recordIds: RecordIdStore = config.redisUrl
    ? new RedisRecordIdStore(
        {
          redisUrl: config.redisUrl,
          pendingMs: idempotencyOptions.pendingMs,
          leaseMs: idempotencyOptions.leaseMs,
          commandTimeoutMs: config.rateLimit.redisTimeoutMs,
          onFailOpen: () => metrics.recordDedupStoreFailures.inc(),
        },
        log,
      )
    : (shared?.recordIds ?? memoryRecordIdStore(config, () => metrics.recordDedupEarlyEvictions.inc()));
  const dedup = {
    windowMs: (tenant: string) => quotas?.dedupWindowMs(tenant),
    store: recordIds,
  };

  // WebSocket publish frames: the publish of POST /v1/publish, in a span of their own when tracing.
  const publisher = createPublisher({
    admission,
    bus,
    ackTimeoutMs: config.ackTimeoutMs,
    maxBytes: config.maxPublishBytes,
  });
  const realtime = createRealtimeModule(
    {
      ws: {
        runtime,
        pingIntervalMs: config.ws.pingIntervalMs,
        authTimeoutMs: config.ws.authTimeoutMs,
        backpressureBytes: config.ws.backpressureBytes,
        queuedMaxBytes: config.ws.queuedMaxBytes,
        maxConnections: config.ws.maxConnections,
        maxUnauthenticated: config.ws.maxUnauthenticated,
        maxConnectionsPerTenant: config.ws.maxConnectionsPerTenant,
        maxSubscriptions: config.ws.maxSubscriptions,
        maxChannels: config.ws.maxChannels,
        maxTenantChannels: config.ws.maxTenantChannels,
        maxMessagesPerSec: config.ws.maxMessagesPerSec,
        trustProxyHops: config.rateLimit.trustProxyHops,
        tokenExpiryWarningMs: config.ws.tokenExpiryWarningMs,
      },
      sse: config.sse,
      history: config.history,
      replay: config.replay,
    },
    {
      authenticator,
      authenticate,
      bus,
      metrics,
      log,
      admitConnection: admission.connection,
      admitRead: admission.read,
      publish: tracing ? tracedPublisher(publisher, tracing, "publish") : publisher,
      health,
      presenceStore: config.redisUrl
        ? new RedisPresence(
            {
              redisUrl: config.redisUrl,
              ttlMs: config.presence.ttlMs,
              flushMs: 1000,
              commandTimeoutMs: config.rateLimit.redisTimeoutMs,
            },
            log,
          )
        : undefined,
    },
  );
  // The port opens once the fan-out reader has started (bounded, as the topic check is): with Kafka up the
  // instance is ready as soon as it listens; past the bound, /health says fanout_starting until it has.
  await withDeadline(
    realtime.fanoutStartSettled,
    FANOUT_START_WAIT_MS,
    () => new Error("fan-out start"),
  ).catch(() =>
    log.warn({ waitedMs: FANOUT_START_WAIT_MS }, "fan-out reader not started yet; listening all the same"),
  );
  const modules: Module[] = [
    { name: "schemas", close: () => schemas.stop() },
    {
      name: "rate limits",
      close: () => {
        quotas?.stop();
        return limits.close();
      },
    },
    { name: "sink", drain: { flush: (deadline) => queue.close(msUntil(deadline)) } },
    // Before the wait for in-flight requests: a body trickling in would hold it to the deadline.
    { name: "request bodies", drain: { disconnect: (deadline) => bodies.cutAtDrain(deadline) } },
    { name: "idempotency keys", close: () => idempotencyStore.close() },
    { name: "record ids", close: () => recordIds.close() },
    { name: "fan-out bus", close: () => bus.close() },
    createOperationsModule(health, metrics, { metricsOnMainPort: config.metricsPort === undefined }),
    traced(
      createIngestModule(
        {
          topic: config.kafka.topic,
          dlqTopic: config.kafka.dlqTopic,
          maxBodyBytes: config.maxBodyBytes,
          maxRecords: config.maxRecordsPerRequest,
          ackTimeoutMs: config.ackTimeoutMs,
          channelScope: config.ingestChannelScope,
        },
        { authenticate, admission, idempotency, dedup, schemas, queue, bodies, bus, metrics, log },
      ),
    ),
    traced(
      createPublishModule({
        authenticate,
        admission,
        idempotency,
        bus,
        bodies,
        maxBytes: config.maxPublishBytes,
        ackTimeoutMs: config.ackTimeoutMs,
      }),
    ),
    realtime,
    // Closed after the sink's flush, so the last batches' spans are exported.
    ...(tracing
      ? [{ name: "tracing", close: (deadline: number) => tracing.shutdown(msUntil(deadline)) }]
      : []),
  ];

  const router = new Router(
    modules.flatMap((module) => module.routes ?? []),
    metrics,
    log,
    config.corsOrigins ? new CorsPolicy(config.corsOrigins) : undefined,
    WS_PATH,
  );

  return {
    app: { http: router.handle, wsPath: WS_PATH, ws: router.guardUpgrades(realtime.ws) },
    metricsApp: config.metricsPort === undefined ? undefined : createMetricsApp(metrics, log),
    attach: (server) => {
      for (const module of modules) module.attach?.(server);
    },
    drainSteps: (server) =>
      drainPlan({ modules, server, requests: router, drainDelayMs: config.drainDelayMs, log }),
    undelivered: () => queue.undelivered,
  };
}

/** What the delivery queue needs to know of its sink, from the settings: the same in front of Kafka and of the local log. */
function deliveryQueueOptions(config: Config): DeliveryQueueOptions {
  return {
    lingerMs: config.kafka.lingerMs,
    batchBytes: config.kafka.batchBytes,
    maxBatchBytes: batchBytesLimit(
      config.kafka.maxMessageBytes,
      config.kafka.compression !== "none" || config.kafka.fanoutCompression !== "none",
    ),
    maxRecords: config.kafka.queueMaxRecords,
    maxBytes: config.kafka.queueMaxBytes,
    unhealthyAfterMs: config.kafka.unhealthyAfterMs,
    // One batch at a time per writer of a topic: a Kafka producer sends one at a time anyway (see KafkaWriter.write).
    maxInFlight: 1,
    probeIntervalMs: 2000,
    writeTimeoutMs: config.kafka.writeTimeoutMs,
    retryBaseMs: 100,
    retryMaxMs: 3000,
    unavailableRetryMs: config.kafka.topicRetryMs,
    deadLetterTopic: config.kafka.dlqTopic,
    eventsTopic: config.kafka.topic,
  };
}

/**
 * The delivery queue and the fan-out bus: Kafka's when KAFKA_BROKERS is set, loaded only then (importing the
 * Kafka client costs a start ~0.8 CPU-s, loadtest/RESULTS.md), or the embedded local log and in-process bus.
 */
async function createSink(sink: SinkEnvironment): Promise<StartedSink> {
  if (sink.config.kafka.brokers) return (await import("./kafka-sink.ts")).startKafkaSink(sink);
  const { config, log, metrics, health, traceWrites, queueOptions } = sink;
  // Each worker process appends to a log of its own.
  const worker = process.env[WORKER_ENV];
  const dir = worker === undefined ? config.localLog.dir : join(config.localLog.dir, `worker-${worker}`);
  const writer = new LocalLogWriter({ ...config.localLog, dir }, log);
  // A folder that cannot be created or written (a file in the way, a read-only disk) is the setting's fault.
  const { truncatedBytes } = await startNamingSetting("LOCAL_LOG_DIR", writer.connect(), "cannot open");
  if (truncatedBytes > 0)
    log.warn({ path: writer.currentPath, bytes: truncatedBytes }, "local log: cut a torn last line");
  log.warn(
    { dir },
    "KAFKA_BROKERS unset: embedded default (local NDJSON log as sink, in-process fan-out bus)",
  );
  return {
    queue: new DeliveryQueue(traceWrites(writer), queueOptions, metrics, health, log),
    bus: new LocalFanoutBus(workerFanoutRelay()),
  };
}

/** A claim must outlive the longest a request can wait for Kafka, or a retry would run beside it. */
function idempotencyStoreOptions(config: Config) {
  const pendingMs = Math.max(config.idempotency.pendingMs, config.ackTimeoutMs + 5000);
  return {
    ...config.idempotency,
    pendingMs,
    // A lease longer than the longest claim would only keep a dead instance's claims longer.
    leaseMs: Math.min(config.idempotency.leaseMs, pendingMs),
  };
}

function memoryRecordIdStore(config: Config, onEarlyEviction: () => void): MemoryRecordIdStore {
  return new MemoryRecordIdStore({
    pendingMs: idempotencyStoreOptions(config).pendingMs,
    maxIds: config.idempotency.maxRecordIds,
    onEarlyEviction,
  });
}

/**
 * WORKERS > 1 without Redis: the stores the supervisor keeps for all its
 * workers (the embedded default's, in its memory). An early eviction there is
 * not counted: the supervisor serves no metrics.
 */
export function createSupervisorStores(config: Config): HeldStores | undefined {
  if (config.redisUrl) return undefined;
  const options = idempotencyStoreOptions(config);
  return {
    idempotency: new MemoryIdempotencyStore(options),
    recordIds: memoryRecordIdStore(config, () => {}),
    pendingMs: options.pendingMs,
  };
}

/**
 * The embedded default's folder, held by the supervisor of workers for as long
 * as it runs: a WORKERS=1 gateway started on the same LOCAL_LOG_DIR would write
 * beside the workers' `worker-<n>/` logs, and one started first keeps the
 * workers out. Nothing to hold with Kafka.
 */
export async function holdWorkersLogFolder(config: Config): Promise<void> {
  if (config.kafka.brokers) return;
  const lock = await startNamingSetting(
    "LOCAL_LOG_DIR",
    LocalLogWriter.holdFolder(config.localLog.dir),
    "cannot open",
  );
  lock.releaseAtExit();
}
