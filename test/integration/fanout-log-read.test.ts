import { expect, test } from "bun:test";
import { Producer, stringSerializers } from "@platformatic/kafka";
import pino from "pino";
import { HealthState } from "../../src/features/operations/health.ts";
import { KafkaFanoutBus, toFanoutRecords } from "../../src/infra/kafka/fanout-bus.ts";
import type { FanoutMessage } from "../../src/ports/fanout-bus.ts";
import { headersOf } from "../../src/ports/sink.ts";
import { busConnection, createTopic, discardingQueue } from "../support/kafka.ts";
import { waitUntil } from "../support/wait.ts";

const connection = busConnection("fanout-log-read-test");
const queue = discardingQueue;

// Found from outside: a broadcast naming a channel (POST /v1/publish {"channel","broadcast":true})
// came back in that channel's history read from the fan-out topic (GET …/events with or without
// since, a WebSocket resume) when the tenant's broadcasts shared the channel's partition, while
// memory never keeps a broadcast: the same request answered differently by where it was served.
test("a read of a channel's log leaves out broadcasts naming the channel, as memory does", async () => {
  const topic = await createTopic("fanout-log-read", 1);
  const bus = new KafkaFanoutBus(connection, topic, queue, pino({ level: "silent" }), new HealthState());
  const producer = new Producer({ ...connection, serializers: stringSerializers });
  try {
    await bus.start({ deliver: () => {}, origin: () => {} });
    const messages: FanoutMessage[] = [
      { tenant: "acme", channel: "x", dataJson: '{"n":1}', ts: 1 },
      { tenant: "acme", channel: "x", broadcast: true, dataJson: '{"b":1}', ts: 2 },
      { tenant: "acme", channel: "x", dataJson: '{"n":2}', ts: 3 },
    ];
    await producer.send({
      messages: toFanoutRecords(topic, messages).map((record) => ({
        topic,
        key: record.key,
        value: record.value as string,
        headers: headersOf(record),
      })),
    });
    await waitUntil(async () => (bus.head("acme/x")?.next ?? 0n) >= 3n, "the live reader at the log's end");
    const head = bus.head("acme/x");
    const read = await bus.readLog({
      tenant: "acme",
      channel: "x",
      epoch: head?.epoch ?? "",
      partition: 0,
      from: 0n,
      until: 3n,
      maxMessages: 10,
      maxBytes: 1 << 20,
      deadline: Date.now() + 10_000,
    });
    expect(read.gone ? [] : read.messages.map((message) => message.dataJson)).toEqual(['{"n":1}', '{"n":2}']);
  } finally {
    await Promise.all([bus.close(), producer.close()]);
  }
}, 30_000);
