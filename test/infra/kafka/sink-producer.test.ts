import { describe, expect, test } from "bun:test";
import * as kafka from "@platformatic/kafka";
import type { PartitionRecords } from "../../../src/infra/kafka/produce-request.ts";
import { PRODUCE_APIS, RecordSequences, toPartitions } from "../../../src/infra/kafka/sink-producer.ts";
import type { SinkMessage } from "../../../src/ports/sink.ts";

/** The Produce versions this client can negotiate: each is a `produceV<N>` export. */
const clientProduceVersions = Object.entries(kafka)
  .filter(([name]) => /^produceV\d+$/.test(name))
  .map(([, module]) => (module as { api: { version: number } }).api.version)
  .sort((a, b) => a - b);

describe("SinkProducer", () => {
  test("every Produce version the client can negotiate has our request builder (an upgrade adding one fails here)", () => {
    expect([...PRODUCE_APIS.keys()].sort((a, b) => a - b)).toEqual(clientProduceVersions);
    for (const [version, api] of PRODUCE_APIS) {
      expect(api.key).toBe(0);
      expect(api.version).toBe(version);
    }
  });

  test("records go, in order, one client message per partition, to the partition the client's default partitioner picks for each key", () => {
    const batch: SinkMessage[] = Array.from({ length: 40 }, (_, i) => ({
      topic: "events",
      key: `device-${i % 9}`,
      value: `{"i":${i}}`,
      headers: {},
    }));
    const partitionOf = (key: string) => kafka.defaultPartitioner({ topic: "events" }, Buffer.from(key)) % 6;
    const messages = toPartitions("events", batch, 6);
    expect(new Set(messages.map((message) => message.partition)).size).toBe(messages.length);
    for (const message of messages) {
      expect(message.topic).toBe("events");
      expect(message.value).toEqual(batch.filter((record) => partitionOf(record.key) === message.partition));
    }
    expect(messages.flatMap((message) => message.value)).toHaveLength(batch.length);
    // Before the partition count is known: grouped by the hash, which the client takes modulo the count.
    for (const message of toPartitions("events", batch, undefined))
      for (const record of message.value ?? [])
        expect(message.partition).toBe(
          kafka.defaultPartitioner({ topic: "events" }, Buffer.from(record.key)),
        );
  });
});

describe("RecordSequences", () => {
  // Only the records' count matters here.
  const written = (partition: number, records: number): PartitionRecords => ({
    topic: "events",
    partition,
    value: { length: records } as unknown as SinkMessage[],
  });

  test("a partition's next batch starts after the records acknowledged, a new producer id or epoch at 0, and the count wraps at 2^31", () => {
    const sequences = new RecordSequences().of(7n, 0);
    expect(sequences.getWithDefault("events:1", 0)).toBe(0);
    sequences.acknowledged([written(1, 100), written(2, 3)]);
    sequences.acknowledged([written(1, 10)]);
    expect(sequences.of(7n, 0).getWithDefault("events:1", 0)).toBe(110);
    expect(sequences.getWithDefault("events:2", 0)).toBe(3);
    expect(sequences.of(7n, 1).getWithDefault("events:1", 0)).toBe(0);
    sequences.acknowledged([written(1, 4)]);
    expect(sequences.of(8n, 1).getWithDefault("events:1", 0)).toBe(0);
    const wrapping = new RecordSequences().of(1n, 0);
    for (let i = 0; i < 2; i++) wrapping.acknowledged([written(0, 2 ** 30 - 1)]);
    wrapping.acknowledged([written(0, 5)]);
    expect(wrapping.getWithDefault("events:0", 0)).toBe(3);
  });
});
