// The batch body path in process, without sockets or a broker: POST /v1/events
// with post.lua's 100-event body through the real ingest route (scanner,
// parsing, validation against schemas/, records and their Kafka messages), the
// real delivery queue, and a writer that encodes each batch as the Produce
// request the Kafka writer sends (lz4, as the gateway's default), then
// acknowledges it. Prints CPU-µs per event of this process and the same run's
// floor (JSON.parse + ajv of the same events), so changes to that path can be
// compared in seconds, A and B in one sitting. Not a substitute for measure.ts
// (no HTTP, no client bookkeeping, no network). The main thread's share of the
// CPU (Linux) tells the JavaScript apart from the runtime's JIT and GC threads.
//   bun loadtest/profiles/batch-core.ts [seconds]
//   bun build loadtest/profiles/batch-core.ts --target=node --packages=external --outfile=dist/batch-core.mjs && node dist/batch-core.mjs
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import pino from "pino";
import type { Principal } from "../../src/domain/principal.ts";
import { ingestRoute } from "../../src/features/ingest/route.ts";
import { HealthState } from "../../src/features/operations/health.ts";
import { RequestBodies } from "../../src/http/request-bodies.ts";
import { DeliveryQueue } from "../../src/infra/delivery/delivery-queue.ts";
import { createProduceRequest, type PartitionRecords } from "../../src/infra/kafka/produce-request.ts";
import { toPartitions } from "../../src/infra/kafka/sink-producer.ts";
import { createSchemaRegistry } from "../../src/infra/validation/registry.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type { SinkMessage, SinkWriter } from "../../src/ports/sink.ts";
import type { HttpRequest } from "../../src/ports/transport.ts";

// Run from the checkout's root (the Node build lives in dist/).
const ROOT = process.cwd();
const seconds = Number(process.argv[2] ?? 3);
const BATCH = 100;
const PARTITIONS = 6;
const event = /local event = '([^']+)'/.exec(
  readFileSync(join(ROOT, "loadtest/bench/post.lua"), "utf8"),
)?.[1] as string;
const body = Buffer.from(`[${Array(BATCH).fill(event).join(",")}]`);

const log = pino({ level: "silent" });
const schemas = createSchemaRegistry({ source: join(ROOT, "schemas"), refreshMs: 3_600_000, log });
await schemas.start();

let encodedBytes = 0;
const writer: SinkWriter = {
  kind: "kafka",
  async write(batch: SinkMessage[]) {
    const messages = toPartitions((batch[0] as SinkMessage).topic, batch, PARTITIONS) as PartitionRecords[];
    const request = createProduceRequest(11, -1, 30_000, messages, { compression: "lz4" });
    encodedBytes += request.length;
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
  createMetrics("batch-core", "0"),
  new HealthState(),
  log,
);
const principal = {
  subject: "bench",
  tenant: "bench",
  scopes: new Set(["ingest"]),
  channels: undefined,
} as unknown as Principal;
const settled = Promise.resolve({});
const route = ingestRoute(
  {
    topic: "events",
    dlqTopic: undefined,
    maxBodyBytes: 1024 * 1024,
    maxRecords: 1000,
    ackTimeoutMs: 30_000,
    channelScope: "ingest",
  },
  {
    admission: { request: () => settled, events: () => settled } as never,
    authenticate: async () => principal,
    idempotency: { run: () => Promise.reject(new Error("unused")) } as never,
    bodies: new RequestBodies(64 * 1024 * 1024, 1024 * 1024),
    schemas,
    queue,
    metrics: createMetrics("batch-core-ingest", "0"),
    fanOut: () => undefined,
    // No tenant deduplicates, as by default.
    dedup: { windowMs: () => undefined, store: undefined as never },
  },
);
const headers: Record<string, string> = { "content-type": "application/json" };
const request: HttpRequest = {
  method: "POST",
  path: "/v1/events",
  query: new URLSearchParams(),
  header: (name) => headers[name],
  headerNames: () => Object.keys(headers),
  remoteAddress: "127.0.0.1",
  body: () => Promise.resolve(body),
};

/** Requests in flight at once, as wrk's connections keep them. */
const CONCURRENCY = 16;
async function drive(ms: number): Promise<number> {
  const until = performance.now() + ms;
  let events = 0;
  const worker = async () => {
    while (performance.now() < until) {
      const reply = await route.handler(request, {});
      if (reply.status !== 202) throw new Error(`status ${reply.status}: ${reply.body}`);
      events += BATCH;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return events;
}

/** CPU-µs of the main thread (its /proc stat, in clock ticks of 10 ms): the process's minus the runtime's helpers (JIT, GC). */
function mainThreadMicros(): number {
  const text = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

await drive(Math.min(1000, (seconds * 1000) / 3));
const cpu = process.cpuUsage();
const mainFrom = mainThreadMicros();
const events = await drive(seconds * 1000);
const used = process.cpuUsage(cpu);
const microsPerEvent = (used.user + used.system) / events;
const mainShare = (mainThreadMicros() - mainFrom) / (used.user + used.system);

// The floor in the same process: JSON.parse of each event and ajv (formats on) of its data.
const ajv = new Ajv2020({ allErrors: false, strict: false });
addFormats.default(ajv);
const validate = ajv.compile(JSON.parse(readFileSync(join(ROOT, "schemas/page_view.json"), "utf8")));
const floorFrom = process.cpuUsage();
let floorEvents = 0;
const floorUntil = performance.now() + 1000;
while (performance.now() < floorUntil) {
  for (let i = 0; i < 1000; i++) if (!validate(JSON.parse(event).data)) throw new Error("invalid");
  floorEvents += 1000;
}
const floorUsed = process.cpuUsage(floorFrom);
const floorMicros = (floorUsed.user + floorUsed.system) / floorEvents;
console.log(
  `${typeof Bun === "undefined" ? "node" : "bun"}: ${microsPerEvent.toFixed(3)} CPU-µs/event (${events} events, ${(encodedBytes / events).toFixed(1)} request bytes/event); floor ${floorMicros.toFixed(3)} µs/event; ratio ${(floorMicros / microsPerEvent).toFixed(3)}; main thread ${(mainShare * 100).toFixed(0)}% of the CPU`,
);
schemas.stop();
process.exit(0);
