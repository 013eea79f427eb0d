import { expect, test } from "bun:test";
import { Admin, Producer, stringSerializers } from "@platformatic/kafka";
import pino from "pino";
import { HealthState } from "../../src/features/operations/health.ts";
import { KafkaFanoutBus, toFanoutRecords } from "../../src/infra/kafka/fanout-bus.ts";
import { PartitionHash } from "../../src/infra/kafka/partition-hash.ts";
import type { DeliveredMessage } from "../../src/ports/fanout-bus.ts";
import { headersOf, type SinkMessage } from "../../src/ports/sink.ts";
import { busConnection, createTopic, discardingQueue } from "../support/kafka.ts";
import { waitUntil } from "../support/wait.ts";

const connection = busConnection("fanout-partitions-test");
const queue = discardingQueue;

// Found from outside: after `kafka-topics --alter --partitions` on the fan-out topic, the events of
// channels whose key the producers then put on an added partition reached no subscriber on any
// running instance (each read only the partitions it saw at start) until every instance restarted.
test("partitions added to the fan-out topic while the reader runs are read too, from their first offset", async () => {
  const topic = await createTopic("fanout-grown", 2);
  const delivered: DeliveredMessage[] = [];
  const origins: Array<[number, bigint]> = [];
  const bus = new KafkaFanoutBus(connection, topic, queue, pino({ level: "silent" }), new HealthState(), {
    restartDelayMs: 200,
    partitionCheckMs: 200,
  });
  const admin = new Admin({
    clientId: "fanout-partitions-admin",
    bootstrapBrokers: connection.bootstrapBrokers,
  });
  const producer = new Producer({ ...connection, serializers: stringSerializers });
  try {
    await bus.start({
      deliver: (message) => void delivered.push(message),
      origin: (_epoch, partition, offset) => void origins.push([partition, offset]),
    });
    await admin.createPartitions({ topics: [{ name: topic, count: 3 }] });
    // Written to the added partition before the reader can have seen it: read from its first offset all the same.
    const record = toFanoutRecords(topic, [
      { tenant: "acme", channel: "moved", dataJson: '{"n":1}', ts: 1 },
    ])[0] as SinkMessage;
    await producer.send({
      messages: [
        {
          topic,
          partition: 2,
          key: record.key,
          value: record.value,
          headers: headersOf(record),
        },
      ],
    });
    await waitUntil(async () => delivered.length > 0, "the added partition's message delivered");
    expect(
      delivered.map((message) => [message.channel, message.position.partition, message.position.offset]),
    ).toEqual([["moved", 2, 0n]]);
    expect(origins).toContainEqual([2, 0n]);
    // The end of the added partition: after its one message.
    expect(await bus.logEnd(2)).toBe(1n);
    // Positions follow the keys over the new count, as the producers' partitioning does.
    const key = ["a", "b", "c", "d", "e", "f", "g", "h"].find(
      (k) => new PartitionHash().of(k) % 3 === 2,
    ) as string;
    expect(bus.head(key)?.partition).toBe(2);
  } finally {
    await Promise.all([bus.close(), admin.close(), producer.close()]);
  }
}, 30_000);

// Found from outside: with the fan-out topic deleted and made again under running instances, they
// read on at the old topic's offsets, skipping the new topic's first events, and under the old
// epoch, so new events took the ids of old ones (a resume from an old id then skipped events).
test("a fan-out topic made again while the reader runs is read from its start, under a new epoch", async () => {
  const topic = await createTopic("fanout-remade", 1);
  const delivered: DeliveredMessage[] = [];
  const origins: Array<[string, number, bigint]> = [];
  const bus = new KafkaFanoutBus(connection, topic, queue, pino({ level: "silent" }), new HealthState(), {
    restartDelayMs: 200,
    partitionCheckMs: 200,
  });
  const admin = new Admin({ clientId: "fanout-remade-admin", bootstrapBrokers: connection.bootstrapBrokers });
  const producer = new Producer({ ...connection, serializers: stringSerializers });
  const send = async (n: number) => {
    const record = toFanoutRecords(topic, [
      { tenant: "acme", channel: "remade", dataJson: JSON.stringify({ n }), ts: 1 },
    ])[0] as SinkMessage;
    await producer.send({
      messages: [{ topic, partition: 0, key: record.key, value: record.value, headers: headersOf(record) }],
    });
  };
  try {
    await bus.start({
      deliver: (message) => void delivered.push(message),
      origin: (epoch, partition, offset) => void origins.push([epoch, partition, offset]),
    });
    for (const n of [0, 1, 2]) await send(n);
    await waitUntil(async () => delivered.length === 3, "the old topic's messages delivered");
    const oldEpoch = delivered[0]?.position.epoch;
    await admin.deleteTopics({ topics: [topic] });
    // Deletion completes in the background: the name is free once a create succeeds.
    await waitUntil(
      () =>
        admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 }).then(
          () => true,
          () => false,
        ),
      "the topic made again",
    );
    await waitUntil(
      () =>
        send(100).then(
          () => true,
          () => false,
        ),
      "a message written to the new topic",
    );
    await waitUntil(async () => delivered.length > 3, "the new topic's message delivered");
    const fresh = delivered.slice(3).map((message) => [message.dataJson, message.position]);
    expect(fresh).toEqual([['{"n":100}', { epoch: expect.any(String), partition: 0, offset: 0n }]]);
    const newEpoch = delivered[3]?.position.epoch;
    expect(newEpoch).not.toBe(oldEpoch);
    expect(origins).toContainEqual([newEpoch as string, 0, 0n]);
    expect(bus.head("acme/remade")?.epoch).toBe(newEpoch);
  } finally {
    await Promise.all([bus.close(), admin.close(), producer.close()]);
  }
}, 40_000);
