import { join } from "node:path";
import { createAuthenticator } from "./auth/authenticator.ts";
import { bearerToken } from "./auth/bearer.ts";
import { createS3ObjectClient } from "./aws/s3.ts";
import { type Config, DEV_JWT_SECRET } from "./config/config.ts";
import type { FanoutBus } from "./fanout/bus.ts";
import { Fanout } from "./fanout/fanout.ts";
import { ChannelHistory } from "./fanout/history.ts";
import { KafkaFanoutBus } from "./fanout/kafka-bus.ts";
import { LocalFanoutBus } from "./fanout/local-bus.ts";
import { fanoutRoutes } from "./fanout/routes.ts";
import { HealthState } from "./health/health.ts";
import { operationRoutes } from "./health/routes.ts";
import { CorsPolicy } from "./http/cors.ts";
import { Router } from "./http/router.ts";
import { ingestRoute } from "./ingest/ingest-route.ts";
import type { EventRecord } from "./ingest/record.ts";
import { kafkaConnectionOptions } from "./kafka/client-options.ts";
import type { DrainStep } from "./lifecycle/lifecycle.ts";
import { startWithRetry } from "./lifecycle/retry.ts";
import { sleep } from "./lifecycle/time.ts";
import { WORKER_ENV } from "./lifecycle/workers.ts";
import type { Logger } from "./log/logger.ts";
import { createMetrics } from "./metrics/metrics.ts";
import { clientIp } from "./ratelimit/client-ip.ts";
import { RateLimits } from "./ratelimit/limiter.ts";
import { TenantQuotas } from "./ratelimit/tenant-quotas.ts";
import { DeliveryQueue } from "./sink/delivery-queue.ts";
import { KafkaWriter } from "./sink/kafka-writer.ts";
import { LocalLogWriter } from "./sink/local-log-writer.ts";
import type { SinkWriter } from "./sink/types.ts";
import type { GatewayApp, HttpRequest, RunningServer } from "./transport/types.ts";
import { createSchemaRegistry } from "./validation/registry.ts";
import { type ConnectionState, WsHub } from "./ws/hub.ts";

export interface Gateway {
  app: GatewayApp<ConnectionState>;
  /** Connects the fan-out to the listening server. */
  attach(server: RunningServer): void;
  /** Drain steps, in order, given the server once it listens. */
  drainSteps(server: RunningServer): DrainStep[];
}

export interface GatewayEnvironment {
  config: Config;
  log: Logger;
  runtime: string;
  version: string;
  /** The bundled sample schemas, used when SCHEMAS is unset. */
  defaultSchemas: string;
}

/** The composition root: builds every module and wires them together. */
export async function createGateway({
  config,
  log,
  runtime,
  version,
  defaultSchemas,
}: GatewayEnvironment): Promise<Gateway> {
  const metrics = createMetrics(runtime, version);
  const health = new HealthState();

  if (config.auth.usingDevSecret)
    log.warn("DEV_MODE: JWT_SECRET and JWKS_URL unset, tokens are checked against the public dev secret");
  const authenticator = createAuthenticator({
    jwtSecret: config.auth.usingDevSecret ? DEV_JWT_SECRET : config.auth.jwtSecret,
    jwksUrl: config.auth.jwksUrl,
    cacheSize: config.auth.tokenCacheSize,
  });
  const authenticate = (request: HttpRequest) =>
    authenticator.verify(bearerToken(request.header("authorization")));

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
  await schemas.start();

  const { writer, queue, bus } = await createSink(config, log, metrics, health);

  const history = new ChannelHistory(config.history);
  const fanout = new Fanout(history, metrics);
  const busStarter = startWithRetry("fan-out bus", () => bus.start(fanout), log);

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
  await quotas?.start();

  const hub = new WsHub(
    {
      runtime,
      pingIntervalMs: config.ws.pingIntervalMs,
      authTimeoutMs: config.ws.authTimeoutMs,
      backpressureBytes: config.ws.backpressureBytes,
      maxConnections: config.ws.maxConnections,
      maxUnauthenticated: config.ws.maxUnauthenticated,
      maxConnectionsPerTenant: config.ws.maxConnectionsPerTenant,
      maxSubscriptions: config.ws.maxSubscriptions,
      maxMessagesPerSec: config.ws.maxMessagesPerSec,
    },
    {
      authenticator,
      history,
      metrics,
      log,
      admitConnection: async (ip) => {
        if (config.rateLimit.enabled) await limits.admit("ws_connect", ip);
      },
    },
  );

  const fanOutRecords = (records: EventRecord[]) => {
    const messages = records
      .filter((record) => record.channel !== undefined)
      .map((record) => ({
        tenant: record.tenant,
        channel: record.channel,
        dataJson: record.dataJson,
        record: { type: record.type, id: record.id },
        ts: Date.now(),
      }));
    if (messages.length === 0) return;
    // Live fan-out is best effort: the records themselves are already queued for the events topic.
    try {
      bus.publish(messages).catch(() => {});
    } catch (error) {
      log.debug({ err: error }, "fan-out of ingested records skipped");
    }
  };

  const router = new Router(
    [
      ...operationRoutes(health, metrics),
      ingestRoute(
        {
          topic: config.kafka.topic,
          dlqTopic: config.kafka.dlqTopic,
          maxBodyBytes: config.maxBodyBytes,
          maxRecords: config.maxRecordsPerRequest,
          ackTimeoutMs: config.ackTimeoutMs,
        },
        {
          authenticate,
          admit: {
            request: async (request) => {
              if (config.rateLimit.enabled)
                await limits.admit("ip_requests", clientIp(request, config.rateLimit.trustProxyHops));
            },
            events: async (principal, cost) => {
              if (!config.rateLimit.enabled) return {};
              return limits.admit(
                "tenant_events",
                principal.tenant,
                cost,
                quotas?.eventsPerSec(principal.tenant),
              );
            },
          },
          schemas,
          queue,
          metrics,
          fanOut: fanOutRecords,
        },
      ),
      ...fanoutRoutes({ authenticate, bus, history, maxBodyBytes: config.maxBodyBytes }),
    ],
    metrics,
    log,
    config.corsOrigins ? new CorsPolicy(config.corsOrigins) : undefined,
  );

  return {
    app: { http: router.handle, wsPath: "/v1/ws", ws: router.guardUpgrades(hub) },
    attach: (server) => {
      hub.attach((topic, frame) => server.publish(topic, frame));
      fanout.attach(hub);
    },
    drainSteps: (server) => {
      const startedAt = Date.now();
      const remaining = () => Math.max(100, config.drainTimeoutMs - (Date.now() - startedAt) - 500);
      return [
        {
          name: "mark unhealthy",
          run: () => {
            health.set("draining", true);
            metrics.draining.set(1);
          },
        },
        { name: "wait for the load balancer", run: () => sleep(config.drainDelayMs) },
        { name: "stop listening", run: () => server.stopListening() },
        { name: "disconnect websockets", run: () => hub.disconnectAll(Math.min(2000, remaining() / 4)) },
        // Exiting with unread bytes on a socket makes the kernel reset it, and the client then loses the close frame.
        { name: "let close handshakes finish", run: () => sleep(Math.min(500, remaining() / 8)) },
        { name: "finish in-flight requests", run: () => router.whenIdle() },
        { name: "flush the queue", run: () => queue.close(remaining()) },
        {
          name: "release resources",
          run: async () => {
            hub.stop();
            schemas.stop();
            busStarter.stop();
            quotas?.stop();
            await Promise.allSettled([bus.close(), limits.close()]);
            log.info({ sink: writer.kind }, "resources released");
          },
        },
      ];
    },
  };
}

async function createSink(
  config: Config,
  log: Logger,
  metrics: ReturnType<typeof createMetrics>,
  health: HealthState,
): Promise<{ writer: SinkWriter; queue: DeliveryQueue; bus: FanoutBus }> {
  const queueOptions = {
    lingerMs: config.kafka.lingerMs,
    batchBytes: config.kafka.batchBytes,
    maxRecords: config.kafka.queueMaxRecords,
    maxBytes: config.kafka.queueMaxBytes,
    unhealthyAfterMs: config.kafka.unhealthyAfterMs,
    maxInFlight: config.kafka.maxInFlight,
    probeIntervalMs: 2000,
    writeTimeoutMs: config.kafka.writeTimeoutMs,
    retryBaseMs: 100,
    retryMaxMs: 3000,
  };
  if (!config.kafka.brokers) {
    // Each worker process appends to a log of its own.
    const worker = process.env[WORKER_ENV];
    const dir = worker === undefined ? config.localLog.dir : join(config.localLog.dir, `worker-${worker}`);
    const writer = new LocalLogWriter({ ...config.localLog, dir });
    await writer.connect();
    log.warn(
      { dir },
      "KAFKA_BROKERS unset: embedded default (local NDJSON log as sink, in-process fan-out bus)",
    );
    return {
      writer,
      queue: new DeliveryQueue(writer, queueOptions, metrics, health, log),
      bus: new LocalFanoutBus(),
    };
  }
  const connection = kafkaConnectionOptions(config.kafka);
  const writer = new KafkaWriter(connection, config.kafka);
  const topics = [
    config.kafka.topic,
    config.kafka.fanoutTopic,
    ...(config.kafka.dlqTopic ? [config.kafka.dlqTopic] : []),
  ];
  const queue = new DeliveryQueue(writer, queueOptions, metrics, health, log);
  try {
    await writer.ensureTopics(topics, config.kafka.topicPartitions);
  } catch (error) {
    // Not fatal: the queue retries, /health reports the outage, the producer auto-creates topics later.
    log.error({ err: error, brokers: config.kafka.brokers }, "Kafka unreachable at start");
    queue.noteFailure(error);
  }
  queue.startMonitor(() => writer.probe());
  log.info(
    { brokers: config.kafka.brokers, topic: config.kafka.topic, sasl: config.kafka.saslMechanism },
    "Kafka sink",
  );
  return { writer, queue, bus: new KafkaFanoutBus(connection, config.kafka.fanoutTopic, queue, log) };
}
