import { expect, test } from "bun:test";
import { Admin, Producer, stringSerializers } from "@platformatic/kafka";
import pino from "pino";
import { loadConfig } from "../../src/config/config.ts";
import { HealthState } from "../../src/features/operations/health.ts";
import { kafkaConnectionOptions } from "../../src/infra/kafka/client-options.ts";
import { KafkaFanoutBus, toFanoutRecords } from "../../src/infra/kafka/fanout-bus.ts";
import type { DeliveredMessage, FanoutListener } from "../../src/ports/fanout-bus.ts";
import { headersOf, type RecordQueue } from "../../src/ports/sink.ts";
import { createTopic, services } from "../support/kafka.ts";
import { waitUntil } from "../support/wait.ts";

const connection = () =>
  kafkaConnectionOptions(loadConfig({ KAFKA_BROKERS: services().brokers, DEV_MODE: "true" }).kafka);

test("partitions added to the fan-out topic while the reader runs are read from their start: their messages reach subscribers", async () => {
  const topic = await createTopic("fanout-grow", 1);
  const delivered: DeliveredMessage[] = [];
  const origins: Array<[number, bigint]> = [];
  const listener: FanoutListener = {
    deliver: (message) => void delivered.push(message),
    origin: (_epoch, partition, offset) => void origins.push([partition, offset]),
  };
  const queue: RecordQueue = { maxRecordBytes: 1_000_000, fits: () => true, enqueue: async () => {} };
  // Short check and rebuild delays, so the test does not wait for the production ones.
  const bus = new KafkaFanoutBus(
    connection(),
    topic,
    queue,
    pino({ level: "silent" }),
    new HealthState(),
    50,
    200,
  );
  const admin = new Admin(connection());
  const producer = new Producer({ ...connection(), serializers: stringSerializers });
  try {
    await bus.start(listener);
    await admin.createPartitions({ topics: [{ name: topic, count: 3 }] });
    // Written to the new partitions as the gateway's producer does once its metadata shows them.
    const [record] = toFanoutRecords(topic, [
      { tenant: "acme", channel: "orders", dataJson: '{"n":1}', ts: 1 },
    ]);
    if (!record) throw new Error("no fan-out record");
    await producer.send({
      messages: [1, 2].map((partition) => ({
        topic,
        partition,
        key: record.key,
        value: record.value as string,
        headers: new Map(Object.entries(headersOf(record))),
      })),
    });
    await waitUntil(() => delivered.length === 2, "the new partitions' messages delivered", 10_000);
    expect(delivered.map((message) => message.position.partition).sort()).toEqual([1, 2]);
    expect(origins).toContainEqual([1, 0n]);
    expect(origins).toContainEqual([2, 0n]);
  } finally {
    await bus.close();
    await admin.close();
    await producer.close();
  }
}, 30_000);
