// Produces N records with @platformatic/kafka and reads them back from the
// beginning of a fresh topic; prints one JSON line with what it read. Plain
// JavaScript so the same file runs under Node and under Bun.
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from "@platformatic/kafka";

const bootstrapBrokers = process.env.KAFKA_BROKERS.split(",");
const count = Number(process.env.ROUNDTRIP_COUNT ?? 100);
const topic = `roundtrip-${process.versions.bun ? "bun" : "node"}-${Date.now()}`;

const admin = new Admin({ clientId: "roundtrip", bootstrapBrokers });
await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 });
await admin.close();

const producer = new Producer({
  clientId: "roundtrip",
  bootstrapBrokers,
  idempotent: true,
  serializers: stringSerializers,
});
const sent = Array.from({ length: count }, (_, i) => `record-${i}`);
await producer.send({
  messages: sent.map((value, i) => ({
    topic,
    key: `k${i % 4}`,
    value,
    headers: { runtime: process.versions.bun ? "bun" : "node" },
  })),
});
await producer.close();

const consumer = new Consumer({
  clientId: "roundtrip",
  groupId: `roundtrip-${Date.now()}`,
  bootstrapBrokers,
  deserializers: stringDeserializers,
  maxWaitTime: 200,
});
const stream = await consumer.consume({
  topics: [topic],
  mode: "earliest",
  autocommit: false,
  maxWaitTime: 200,
});
const received = [];
await new Promise((resolve) => {
  const timer = setTimeout(resolve, 20_000);
  stream.on("data", (message) => {
    received.push({ value: message.value, header: message.headers.get("runtime") });
    if (received.length >= count) {
      clearTimeout(timer);
      setTimeout(resolve, 200);
    }
  });
});
await stream.close();
await consumer.close(true);
console.log(JSON.stringify({ topic, sent, received }));
