// Pipelining through several idempotent producers (issue 11, deliverable 3).
// N producers, each owning the partitions p with p % N === its index
// (partition = hash(key) % PARTITIONS), so every partition has one writer and
// keeps its order. Each producer sends BATCH-record batches (acks=all,
// idempotent) one after the other, as fast as the acknowledgements come back.
// Prints records acknowledged per second and this process's CPU per record
// (process.cpuUsage: the broker's share does not count).
//
//   KAFKA_BROKERS=host:port PRODUCERS=2 node loadtest/profiles/producers.mjs   (or bun)
//   KAFKA_MODULE=/tmp/pk2/node_modules/@platformatic/kafka/dist/index.js   another client version
//   SECONDS=5 PARTITIONS=6 BATCH=100 COMPRESSION=lz4|none TOPIC=producers-bench
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const kafkaModule = process.env.KAFKA_MODULE ?? "@platformatic/kafka";
const { Admin, Producer, stringSerializers } = await import(kafkaModule);
const entry = fileURLToPath(import.meta.resolve(kafkaModule));
const { version } = JSON.parse(readFileSync(entry.replace(/dist\/index\.js$/, "package.json"), "utf8"));

const brokers = (process.env.KAFKA_BROKERS ?? "").split(",").filter(Boolean);
if (brokers.length === 0) throw new Error("KAFKA_BROKERS is not set");
const producers = Number(process.env.PRODUCERS ?? 1);
const seconds = Number(process.env.SECONDS ?? 5);
const partitions = Number(process.env.PARTITIONS ?? 6);
const batchSize = Number(process.env.BATCH ?? 100);
const compression = process.env.COMPRESSION ?? "lz4";
const topic = process.env.TOPIC ?? `producers-bench-${partitions}`;

const connection = {
  clientId: "producers-bench",
  bootstrapBrokers: brokers,
  connectTimeout: 5000,
  retries: 1,
};
const admin = new Admin(connection);
if (!(await admin.listTopics()).includes(topic)) {
  await admin.createTopics({ topics: [topic], partitions, replicas: -1 });
}
await admin.close();

/** FNV-1a over the key's UTF-16 units: any stable hash does, the producer only needs a fixed owner per partition. */
function hash(key) {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// Records like the gateway's: a ~200-byte JSON value, three headers, keys spread over the partitions.
const headers = { tenant: "bench", type: "page_view", "content-type": "application/json" };
const ownKeys = Array.from({ length: producers }, () => []);
for (let i = 0; i < 4096 * producers; i++) {
  const key = randomUUID();
  const partition = hash(key) % partitions;
  ownKeys[partition % producers].push({ key, partition });
}
const values = Array.from(
  { length: 1024 },
  () =>
    `{"id":"${randomUUID()}","type":"page_view","data":{"url":"https://example.com/bench","title":"bench"},"tenant":"bench","receivedAt":"${new Date().toISOString()}"}`,
);

let acknowledged = 0;
let running = true;
async function run(index) {
  const producer = new Producer({
    ...connection,
    clientId: `producers-bench-${index}`,
    idempotent: true,
    acks: -1,
    retries: 3,
    compression,
    serializers: stringSerializers,
  });
  const keys = ownKeys[index];
  let next = 0;
  while (running) {
    const messages = new Array(batchSize);
    for (let i = 0; i < batchSize; i++) {
      const { key, partition } = keys[next++ % keys.length];
      messages[i] = { topic, key, value: values[next % values.length], headers, partition };
    }
    await producer.send({ messages });
    acknowledged += batchSize;
  }
  await producer.close();
}

const loops = Array.from({ length: producers }, (_, index) => run(index));
await new Promise((resolve) => setTimeout(resolve, 1000)); // warm-up: connections, metadata, producer ids
const startCount = acknowledged;
const startCpu = process.cpuUsage();
const startTime = performance.now();
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const count = acknowledged - startCount;
const cpu = process.cpuUsage(startCpu);
const elapsed = (performance.now() - startTime) / 1000;
running = false;
await Promise.all(loops);

const runtime = typeof Bun === "undefined" ? `node ${process.version}` : `bun ${Bun.version}`;
const cpuUs = cpu.user + cpu.system;
console.log(
  `| ${runtime} | ${version} | ${compression} | ${producers} | ${Math.round(count / elapsed)} | ${(cpuUs / count).toFixed(2)} | ${Math.round(count / (cpuUs / 1e6))} | ${((100 * cpuUs) / 1e6 / elapsed).toFixed(0)}% |`,
);
