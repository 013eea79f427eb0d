import { describe, expect, test } from "bun:test";
import { Admin, ConfigResourceTypes, compressionsAlgorithms, murmur2 } from "@platformatic/kafka";
import { COMPRESSIONS, loadConfig } from "../../src/config/config.ts";
import { kafkaConnectionOptions } from "../../src/infra/kafka/client-options.ts";
import { KafkaWriter } from "../../src/infra/kafka/writer.ts";
import type { SinkMessage } from "../../src/ports/sink.ts";
import { createTopic, type KcatRecord, readWithKcat, services, storedCompression } from "../support/kafka.ts";

const PARTITIONS = 3;

function batch(topic: string): SinkMessage[] {
  const pageView = { type: "page_view", tenant: "acme", "content-type": "application/json" };
  const click = { type: "click", tenant: "acme", "content-type": "application/json" };
  return Array.from({ length: 300 }, (_, i) => ({
    topic,
    key: `device-${i % 11}`,
    value: `{"id":"id-${i}","data":{"text":"ünïcødé ✓ 𝄞","n":9007199254740993,"i":${i}}}`,
    headers: i < 200 ? pageView : click,
  }));
}

describe.each(COMPRESSIONS.filter((name) => compressionsAlgorithms[name].available))(
  "KafkaWriter against the real broker, compression %s",
  (compression) => {
    test("every record is read back once, byte for byte, on its key's partition, in order", async () => {
      const topic = await createTopic(`writer-${compression}`, PARTITIONS);
      const config = loadConfig({
        KAFKA_BROKERS: services().brokers,
        KAFKA_COMPRESSION: compression,
        DEV_MODE: "true",
      });
      const writer = new KafkaWriter(kafkaConnectionOptions(config.kafka), config.kafka);
      const sent = batch(topic);
      try {
        await writer.write(sent.slice(0, 150));
        await writer.write(sent.slice(150));
      } finally {
        await writer.close();
      }
      const read = await readWithKcat(topic);
      expect(read).toHaveLength(sent.length);
      const byId = new Map(read.map((message) => [JSON.parse(message.payload).id as string, message]));
      for (const message of sent) {
        const got = byId.get(JSON.parse(message.value).id) as KcatRecord;
        expect(got.payload).toBe(message.value);
        expect(got.key).toBe(message.key);
        expect(Object.fromEntries(pairs(got.headers ?? []))).toEqual(message.headers);
        // The client's own partitioner, so a key stays on the partition it had before.
        expect(got.partition).toBe((murmur2(Buffer.from(message.key)) >>> 0) % PARTITIONS);
      }
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const order = read
          .filter((message) => message.partition === partition)
          .sort((a, b) => a.offset - b.offset)
          .map((message) => JSON.parse(message.payload).id);
        expect(order).toEqual(
          sent.map((message) => JSON.parse(message.value).id).filter((id) => order.includes(id)),
        );
      }
    }, 40_000);
  },
);

function pairs(flat: string[]): Array<[string, string]> {
  const result: Array<[string, string]> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) result.push([flat[i] as string, flat[i + 1] as string]);
  return result;
}

describe("KafkaWriter, writes handed over together", () => {
  test("every batch is stored, none acknowledged as a duplicate of another", async () => {
    const topic = await createTopic("writer-together", 1);
    const config = loadConfig({ KAFKA_BROKERS: services().brokers, DEV_MODE: "true" });
    const writer = new KafkaWriter(kafkaConnectionOptions(config.kafka), config.kafka);
    const batch = (n: number): SinkMessage[] =>
      Array.from({ length: 50 }, (_, i) => ({ topic, key: "k", value: `{"n":${n},"i":${i}}`, headers: {} }));
    try {
      await writer.write(batch(0));
      await Promise.all([1, 2, 3, 4].map((n) => writer.write(batch(n))));
    } finally {
      await writer.close();
    }
    const read = await readWithKcat(topic);
    expect(new Set(read.map((message) => message.payload)).size).toBe(250);
    // One partition, so the order of the writes is the order of the records.
    expect(read.map((message) => JSON.parse(message.payload).n)).toEqual(
      [0, 1, 2, 3, 4].flatMap((n) => Array(50).fill(n)),
    );
  }, 40_000);
});

describe("KafkaWriter with several producers per topic", () => {
  test("each partition has one producer; writes through all of them together are stored, each partition in order", async () => {
    const topic = await createTopic("writer-producers", 6);
    const config = loadConfig({ KAFKA_BROKERS: services().brokers, KAFKA_PRODUCERS: "3", DEV_MODE: "true" });
    const writer = new KafkaWriter(kafkaConnectionOptions(config.kafka), config.kafka);
    const partitionOf = (key: string) => (murmur2(Buffer.from(key)) >>> 0) % 6;
    const records: SinkMessage[] = Array.from({ length: 600 }, (_, i) => ({
      topic,
      key: `device-${i % 37}`,
      value: `{"i":${i}}`,
      headers: {},
    }));
    // Per producer, its records in 4 batches handed over at once: they queue behind each other, the producers run side by side.
    const batches: SinkMessage[][][] = [[], [], []];
    try {
      await writer.ensureTopics([topic], 6);
      for (const record of records) {
        const owner = writer.writerOf(record);
        expect(owner).toBe(partitionOf(record.key) % 3);
        const mine = batches[owner] as SinkMessage[][];
        if (mine.length === 0 || (mine.at(-1) as SinkMessage[]).length === 50) mine.push([]);
        (mine.at(-1) as SinkMessage[]).push(record);
      }
      expect(batches.every((mine) => mine.length > 1)).toBe(true);
      await Promise.all(batches.flatMap((mine, owner) => mine.map((batch) => writer.write(batch, owner))));
    } finally {
      await writer.close();
    }
    const read = await readWithKcat(topic);
    expect(new Set(read.map((message) => message.payload)).size).toBe(600);
    for (let partition = 0; partition < 6; partition++) {
      const stored = read
        .filter((message) => message.partition === partition)
        .map((message) => message.payload);
      const handedOver = (batches[partition % 3] as SinkMessage[][])
        .flat()
        .filter((record) => partitionOf(record.key) === partition)
        .map((record) => record.value);
      expect(stored).toEqual(handedOver);
    }
  }, 40_000);
});

describe("KafkaWriter, compression per topic", () => {
  test("the fan-out topic is written with KAFKA_FANOUT_COMPRESSION (none by default), the others with KAFKA_COMPRESSION", async () => {
    const events = await createTopic("writer-compression-events", 1);
    const fanout = await createTopic("writer-compression-fanout", 1);
    const config = loadConfig({
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: events,
      KAFKA_FANOUT_TOPIC: fanout,
      DEV_MODE: "true",
    });
    expect(config.kafka.compression).toBe("lz4");
    expect(config.kafka.fanoutCompression).toBe("none");
    const writer = new KafkaWriter(kafkaConnectionOptions(config.kafka), config.kafka);
    const records = (topic: string): SinkMessage[] =>
      Array.from({ length: 20 }, (_, i) => ({
        topic,
        key: "k",
        value: `{"i":${i},"pad":"${"x".repeat(50)}"}`,
        headers: {},
      }));
    try {
      await writer.write(records(events));
      await writer.write(records(fanout));
    } finally {
      await writer.close();
    }
    expect(await storedCompression(events)).toBe(compressionsAlgorithms.lz4.bitmask);
    expect(await storedCompression(fanout)).toBe(0);
  }, 40_000);
});

describe("KafkaWriter, topic limits", () => {
  test("a topic's max.message.bytes is read although another topic is missing (not created: no CreateTopic permission)", async () => {
    const small = await createTopic("writer-limits");
    const admin = new Admin({ clientId: "writer-limits", bootstrapBrokers: services().brokers.split(",") });
    const config = loadConfig({ KAFKA_BROKERS: services().brokers, DEV_MODE: "true" });
    const writer = new KafkaWriter(kafkaConnectionOptions(config.kafka), config.kafka);
    const missing = `writer-limits-missing-${Date.now()}`;
    try {
      await admin.incrementalAlterConfigs({
        resources: [
          {
            resourceType: ConfigResourceTypes.TOPIC,
            resourceName: small,
            configs: [{ name: "max.message.bytes", configOperation: 0, value: "65536" }],
          },
        ],
      });
      const { limits, unreadable } = await writer.messageLimits([small, missing]);
      expect(Object.fromEntries(limits)).toEqual({ [small]: 65536 });
      expect([...unreadable.keys()]).toEqual([missing]);
    } finally {
      await admin.close();
      await writer.close();
    }
  }, 30_000);
});
