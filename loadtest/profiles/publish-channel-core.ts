// The publishing side of a channel in process, without sockets or a broker:
// publish-channel.ts's 100-event batches (records without a channel, then the
// same records with one) through the real ingest module (scanner, records,
// the fan-out of accepted records through the Kafka fan-out bus's records),
// the real delivery queue, and a writer that encodes each batch as the
// Produce request the Kafka writer sends (lz4 for the events topic, none for
// the fan-out topic, as the defaults) and, for fan-out batches, walks the
// encoded records as the live reader walks a fetched answer with no
// subscriber here. Prints CPU-µs per event of each case and their ratio,
// alternating the cases ROUNDS times, so a change to that path is compared in
// seconds, A and B in one sitting. Not a substitute for
// bench/publish-channel.ts: no HTTP, no client bookkeeping, no sockets.
//   bun loadtest/profiles/publish-channel-core.ts [seconds per round=2] [ROUNDS=5] [plain|channel: that case alone]
//   bun build loadtest/profiles/publish-channel-core.ts --target=node --packages=external --outfile=dist/publish-channel-core.mjs && node dist/publish-channel-core.mjs
import { join } from "node:path";
import pino from "pino";
import type { Principal } from "../../src/domain/principal.ts";
import { createIngestModule } from "../../src/features/ingest/module.ts";
import { HealthState } from "../../src/features/operations/health.ts";
import { RequestBodies } from "../../src/http/request-bodies.ts";
import { DeliveryQueue } from "../../src/infra/delivery/delivery-queue.ts";
import { KafkaFanoutBus } from "../../src/infra/kafka/fanout-bus.ts";
import { walkRecords } from "../../src/infra/kafka/fanout-fetch.ts";
import { createProduceRequest, type PartitionRecords } from "../../src/infra/kafka/produce-request.ts";
import { toPartitions } from "../../src/infra/kafka/sink-producer.ts";
import { createSchemaRegistry } from "../../src/infra/validation/registry.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type { Route } from "../../src/ports/route.ts";
import type { SinkMessage, SinkWriter } from "../../src/ports/sink.ts";
import type { HttpRequest } from "../../src/ports/transport.ts";

// Run from the checkout's root (the Node build lives in dist/).
const ROOT = process.cwd();
const seconds = Number(process.argv[2] ?? 2);
const rounds = Number(process.argv[3] ?? 5);
/** `plain` or `channel` runs that case alone (for a profile of it). */
const only = process.argv[4];
const BATCH = 100;
const PARTITIONS = 6;
const EVENTS_TOPIC = "events";
const FANOUT_TOPIC = "fanout";
const body = (channel: boolean) =>
  Buffer.from(
    JSON.stringify(
      Array.from({ length: BATCH }, (_, i) => ({
        type: "click",
        ...(channel ? { channel: `c${i % 10}` } : {}),
        data: { element: `button-${i}`, pad: "x".repeat(80) },
      })),
    ),
  );
const bodies = { plain: body(false), channel: body(true) };

const log = pino({ level: "silent" });
const schemas = createSchemaRegistry({ source: join(ROOT, "schemas"), refreshMs: 3_600_000, log });
await schemas.start();

/** Nobody here subscribes: the walk skips every record by its hash, as the live reader does. */
const nobody = { mayWant: () => false, wants: () => false };
let walked = 0;
const writer: SinkWriter = {
  kind: "kafka",
  async write(batch: SinkMessage[]) {
    const topic = (batch[0] as SinkMessage).topic;
    const messages = toPartitions(topic, batch, PARTITIONS) as PartitionRecords[];
    const fanout = topic === FANOUT_TOPIC;
    const request = createProduceRequest(11, -1, 30_000, messages, { compression: fanout ? "none" : "lz4" });
    if (!fanout) return;
    // Each partition's record batch is one buffer of the request: walked as the broker hands it back.
    for (const buffer of request.buffers)
      if (buffer.length >= 61 && buffer[16] === 2 && buffer.readBigInt64BE(0) === 0n)
        walkRecords(buffer, 0n, nobody, () => {});
    walked += batch.length;
  },
  async close() {},
};

const queue = new DeliveryQueue(
  writer,
  {
    lingerMs: 0,
    batchBytes: 1024 * 1024,
    maxBatchBytes: 1024 * 1024,
    maxRecords: 1_000_000,
    maxBytes: 256 * 1024 * 1024,
    unhealthyAfterMs: 60_000,
    maxInFlight: 1,
    probeIntervalMs: 60_000,
    writeTimeoutMs: 60_000,
    retryBaseMs: 10,
    retryMaxMs: 100,
    unavailableRetryMs: 1000,
  },
  createMetrics("publish-channel-core", "0"),
  new HealthState(),
  log,
);
const bus = new KafkaFanoutBus(
  { clientId: "bench", bootstrapBrokers: [] } as never,
  FANOUT_TOPIC,
  queue,
  log,
  new HealthState(),
);
const principal = {
  subject: "bench",
  tenant: "acme",
  scopes: new Set(["ingest", "publish"]),
  channels: undefined,
} as unknown as Principal;
const settled = Promise.resolve({});
const route = (
  createIngestModule(
    {
      topic: EVENTS_TOPIC,
      dlqTopic: undefined,
      maxBodyBytes: 1024 * 1024,
      maxRecords: 1000,
      ackTimeoutMs: 30_000,
      channelScope: "ingest",
    },
    {
      admission: { request: () => undefined, events: () => settled } as never,
      authenticate: () => principal,
      idempotency: { run: () => Promise.reject(new Error("unused")) } as never,
      bodies: new RequestBodies(64 * 1024 * 1024, 1024 * 1024),
      schemas,
      queue,
      bus,
      metrics: createMetrics("publish-channel-core-ingest", "0"),
      log,
      // No tenant deduplicates, as by default.
      dedup: { windowMs: () => undefined, store: undefined as never },
    },
  ).routes as Route[]
)[0] as Route;
const requestOf = (bytes: Buffer): HttpRequest => {
  const headers: Record<string, string> = { "content-type": "application/json" };
  return {
    method: "POST",
    path: "/v1/events",
    query: new URLSearchParams(),
    header: (name) => headers[name],
    headerNames: () => Object.keys(headers),
    remoteAddress: "127.0.0.1",
    body: () => Promise.resolve(bytes),
  };
};
const requests = { plain: requestOf(bodies.plain), channel: requestOf(bodies.channel) };

/** Requests in flight at once, as the bench's 16 connections keep them. */
const CONCURRENCY = 16;
async function drive(kind: keyof typeof requests, ms: number): Promise<number> {
  const until = performance.now() + ms;
  let events = 0;
  const worker = async () => {
    while (performance.now() < until) {
      const reply = await route.handler(requests[kind], {});
      if (reply.status !== 202) throw new Error(`status ${reply.status}: ${reply.body}`);
      events += BATCH;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  // The fan-out of the last requests is written (and walked) after their answers.
  await new Promise((resolve) => setTimeout(resolve, 20));
  return events;
}

const driven = { plain: 0, channel: 0 };
async function measure(kind: keyof typeof requests, ms: number): Promise<number> {
  const from = process.cpuUsage();
  const events = await drive(kind, ms);
  driven[kind] += events;
  const used = process.cpuUsage(from);
  return (used.user + used.system) / events;
}

await measure("plain", 500);
await measure("channel", 500);
const results = { plain: [] as number[], channel: [] as number[] };
for (let round = 0; round < rounds; round++) {
  if (only !== "channel") results.plain.push(await measure("plain", seconds * 1000));
  if (only !== "plain") results.channel.push(await measure("channel", seconds * 1000));
}
const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const plain = median(results.plain) ?? Number.NaN;
const channel = median(results.channel) ?? Number.NaN;
console.log(
  `${typeof Bun === "undefined" ? "node" : "bun"}: plain ${plain.toFixed(3)}, channel ${channel.toFixed(3)} CPU-µs/event (extra ${(channel - plain).toFixed(3)}), ratio ${(channel / plain).toFixed(3)}; rounds ${JSON.stringify(
    Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.map((x) => Number(x.toFixed(2)))])),
  )}; events ${JSON.stringify(driven)}, fan-out records walked ${walked}`,
);
schemas.stop();
process.exit(0);
