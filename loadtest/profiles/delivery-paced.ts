// The Kafka delivery side alone, paced: the gateway's DeliveryQueue and
// KafkaWriter (acks=all, idempotent) in one process, no HTTP. Every millisecond
// the requests due are enqueued ("acknowledged", EVENTS records each, keys
// k0..k<KEYS-1> in turn, or one key when KEYS=1), and each is timed from its
// scheduled time to its acknowledgement. Variants (KAFKA_PRODUCERS values) run
// ROUNDS times in turn, each on a fresh writer after a one-second warm-up.
//   KAFKA_BROKERS=host:port bun loadtest/profiles/delivery-paced.ts
//   node: bun build loadtest/profiles/delivery-paced.ts --target=node --packages=external --outfile=dist/delivery-paced.mjs && node dist/delivery-paced.mjs
//   PRODUCERS=1,2,4 RATE=10000 (requests/s) EVENTS=1 KEYS=16 ROUNDS=3 DURATION=4 PARTITIONS=6
import pino from "pino";
import { loadConfig } from "../../src/config/config.ts";
import { HealthState } from "../../src/features/operations/health.ts";
import { DeliveryQueue } from "../../src/infra/delivery/delivery-queue.ts";
import { batchBytesLimit } from "../../src/infra/delivery/record-size.ts";
import { kafkaConnectionOptions } from "../../src/infra/kafka/client-options.ts";
import { KafkaWriter } from "../../src/infra/kafka/writer.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type { SinkMessage } from "../../src/ports/sink.ts";

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const producerCounts = env("PRODUCERS", "1,2,4").split(",").map(Number);
const rate = Number(env("RATE", "10000"));
const events = Number(env("EVENTS", "1"));
const keys = Number(env("KEYS", "16"));
const rounds = Number(env("ROUNDS", "3"));
const durationSec = Number(env("DURATION", "4"));
const partitions = Number(env("PARTITIONS", "6"));
const topic = env("TOPIC", `delivery-paced-${partitions}`);
const runtime = typeof Bun === "undefined" ? `node ${process.version}` : `bun ${Bun.version}`;

const value =
  '{"id":"0190c0de-0000-7000-8000-000000000000","type":"page_view","ts":null,"channel":null,"key":null,' +
  '"data":{"url":"https://example.com/bench","title":"bench"},"tenant":"bench","receivedAt":"2026-12-04T00:00:00.000Z"}';
const headers = { tenant: "bench", type: "page_view", "content-type": "application/json" };

function percentile(sorted: Float64Array, share: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)] ?? 0;
}

async function run(producers: number, seconds: number) {
  const config = loadConfig({
    KAFKA_BROKERS: env("KAFKA_BROKERS", ""),
    KAFKA_PRODUCERS: String(producers),
    KAFKA_TOPIC: topic,
    DEV_MODE: "true",
  });
  const writer = new KafkaWriter(kafkaConnectionOptions(config.kafka), config.kafka);
  await writer.ensureTopics([topic], partitions);
  const queue = new DeliveryQueue(
    writer,
    {
      lingerMs: 0,
      batchBytes: config.kafka.batchBytes,
      maxBatchBytes: batchBytesLimit(config.kafka.maxMessageBytes, config.kafka.compression !== "none"),
      maxRecords: config.kafka.queueMaxRecords,
      maxBytes: config.kafka.queueMaxBytes,
      unhealthyAfterMs: config.kafka.unhealthyAfterMs,
      maxInFlight: 1,
      probeIntervalMs: 2000,
      writeTimeoutMs: config.kafka.writeTimeoutMs,
      retryBaseMs: 100,
      retryMaxMs: 3000,
      unavailableRetryMs: config.kafka.topicRetryMs,
    },
    createMetrics("bench", "0"),
    new HealthState(),
    pino({ level: "silent" }),
  );
  const requests = Array.from({ length: Math.max(1, keys) }, (_, k): SinkMessage[] =>
    Array.from({ length: events }, () => ({ topic, key: `k${k}`, value, headers })),
  );
  const scheduled = Math.round(rate * seconds);
  const latencies = new Float64Array(scheduled);
  let done = 0;
  let failed = 0;
  let next = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (next < scheduled && started + (next * 1000) / rate <= now) {
        const at = started + (next * 1000) / rate;
        queue.enqueue(requests[next % requests.length] as SinkMessage[], "acknowledged", "bench").then(
          () => {
            latencies[done++] = performance.now() - at;
            if (done + failed === scheduled) resolve();
          },
          () => {
            failed++;
            if (done + failed === scheduled) resolve();
          },
        );
        next++;
      }
      if (next < scheduled) setTimeout(tick, 1);
    };
    tick();
  });
  const cpu = process.cpuUsage(cpuBefore);
  const elapsed = (performance.now() - started) / 1000;
  await queue.close(5000);
  const sorted = latencies.slice(0, done).sort();
  return {
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    cpu: (cpu.user + cpu.system) / 1e6 / elapsed,
    failed,
  };
}

const results = new Map(producerCounts.map((n) => [n, [] as Awaited<ReturnType<typeof run>>[]]));
for (let round = 0; round < rounds; round++) {
  for (const producers of producerCounts) {
    await run(producers, 1); // warm-up: connections, metadata, producer ids, JIT
    results.get(producers)?.push(await run(producers, durationSec));
  }
}
const ms = (value: number) => value.toFixed(1);
for (const [producers, runs] of results) {
  const median = [...runs].sort((a, b) => a.p99 - b.p99)[Math.floor(runs.length / 2)];
  if (!median) continue;
  console.log(
    `| ${runtime} | ${rate} × ${events} | ${keys} | ${producers} | ${ms(median.p50)} / ${ms(median.p99)} / ${ms(median.p999)} | ${runs.map((each) => ms(each.p99)).join(" ")} | ${Math.round(median.cpu * 100)}% | ${runs.reduce((sum, each) => sum + each.failed, 0)} |`,
  );
}
process.exit(0);
