import { describe, expect, test } from "bun:test";
import * as kafka from "@platformatic/kafka";
import {
  type CompressionAlgorithmValue,
  compressionsAlgorithms,
  createRecordsBatch,
  type MessageRecord,
  NumericMap,
  Reader,
  readRecordsBatch,
} from "@platformatic/kafka";
import fc from "fast-check";
import {
  createProduceRequest,
  encodeRecordBatch,
  type PartitionRecords,
} from "../../../src/infra/kafka/produce-request.ts";
import type { SinkMessage } from "../../../src/ports/sink.ts";

const NOW = 1_790_000_000_123;

/** Every Produce version the installed client speaks (7–11 in 1.x, 3–11 in 2.x), with its request builder. */
const clientProduceApis = Object.entries(kafka)
  .filter(([name]) => /^produceV\d+$/.test(name))
  .map(([, module]) => module as unknown as typeof kafka.produceV7)
  .map((module) => [module.api.version, module] as const)
  .sort(([a], [b]) => a - b);

const COMPRESSIONS = (["none", "gzip", "snappy", "lz4", "zstd"] as CompressionAlgorithmValue[]).filter(
  (name) => compressionsAlgorithms[name].available,
);

function record(topic: string, message: Partial<SinkMessage>, key = ""): SinkMessage {
  return { topic, key, value: "{}", headers: {}, ...message };
}

/** The same record as the client's own encoder takes it: every string a Buffer, headers a Map. */
function asClientMessage(message: SinkMessage, partition: number): MessageRecord {
  const headers = new Map<Buffer, Buffer>();
  for (const [name, value] of Object.entries({ ...message.headers, ...message.ownHeaders }))
    headers.set(Buffer.from(name), Buffer.from(value));
  return {
    topic: message.topic,
    partition,
    key: Buffer.from(message.key),
    value: Buffer.from(message.value),
    headers,
    timestamp: BigInt(NOW),
  };
}

function sequences(entries: Array<[string, number]>): NumericMap {
  const map = new NumericMap();
  for (const [key, value] of entries) map.set(key, value);
  return map;
}

const shared = { type: "page_view", tenant: "acme", "content-type": "application/json" };
const other = { type: "click", tenant: "acme" };
/** Records of partition 2 of "events". */
const SAMPLE: SinkMessage[] = [
  ...Array.from({ length: 150 }, (_, i) =>
    record(
      "events",
      { value: JSON.stringify({ i, text: "ünïcødé ✓ 𝄞" }), headers: shared },
      `device-${i % 7}`,
    ),
  ),
  record("events", { value: '{"big":9007199254740993}', headers: other }, "k"),
  record("events", { value: "x".repeat(20_000), headers: {} }),
  // Fan-out records: shared headers plus each record's own.
  ...Array.from({ length: 5 }, (_, i) =>
    record(
      "events",
      { value: `{"i":${i}}`, headers: shared, ownHeaders: { channel: `c${i % 2}`, "record-id": `r-ü-${i}` } },
      `acme/c${i % 2}`,
    ),
  ),
  record("events", { value: "{}", headers: {}, ownHeaders: { "record-id": "only" } }),
];

describe("encodeRecordBatch", () => {
  test.each(COMPRESSIONS)("writes the bytes the client's encoder writes (compression %s)", (compression) => {
    const options = {
      compression,
      producerId: 4711n,
      producerEpoch: 3,
      sequences: sequences([["events:2", 4242]]),
    };
    const ours = encodeRecordBatch("events", 2, SAMPLE, options, NOW);
    const theirs = createRecordsBatch(
      SAMPLE.map((message) => asClientMessage(message, 2)),
      options,
    ).buffer;
    expect(ours.equals(theirs)).toBe(true);
  });

  test("values given as bytes (an ingested record's) are copied as they are: the same batch as from their text", () => {
    // Every other value as bytes in one buffer, between other bytes, as the ingest route writes a request's values.
    const texts = SAMPLE.filter((_, i) => i % 2 === 0).map((message) => Buffer.from(message.value));
    const values = Buffer.concat([Buffer.from("before"), ...texts, Buffer.from("after")]);
    let at = "before".length;
    const mixed = SAMPLE.map((message, i): SinkMessage => {
      if (i % 2 === 1) return message;
      const length = Buffer.byteLength(message.value);
      const valueStart = at;
      at += length;
      return {
        topic: message.topic,
        key: message.key,
        headers: message.headers,
        ...(message.ownHeaders ? { ownHeaders: message.ownHeaders } : {}),
        valueBytes: values,
        valueStart,
        valueEnd: at,
        get value(): string {
          throw new Error("the text of a value given as bytes is not needed");
        },
      };
    });
    for (const compression of COMPRESSIONS) {
      expect(
        encodeRecordBatch("events", 2, mixed, { compression }, NOW).equals(
          encodeRecordBatch("events", 2, SAMPLE, { compression }, NOW),
        ),
      ).toBe(true);
    }
  });

  test("reads back as the records given, in order, with keys, values and headers", () => {
    const batch = readRecordsBatch(
      Reader.from(encodeRecordBatch("events", 2, SAMPLE, { compression: "lz4" }, NOW)),
    );
    expect(batch.records).toHaveLength(SAMPLE.length);
    expect(batch.firstTimestamp).toBe(BigInt(NOW));
    batch.records.forEach((read, i) => {
      const sent = SAMPLE[i] as SinkMessage;
      expect(read.offsetDelta).toBe(i);
      expect(read.key?.toString()).toBe(sent.key);
      expect(read.value?.toString()).toBe(sent.value);
      const headers = read.headers.map(([name, value]) => [name?.toString(), value?.toString()]);
      expect(headers).toEqual(Object.entries({ ...sent.headers, ...sent.ownHeaders }));
    });
  });

  test("any records: same bytes as the client's encoder", () => {
    const text = fc.string({ unit: "binary", maxLength: 300 });
    const headers = fc.dictionary(fc.string({ unit: "binary", maxLength: 20 }), text, { maxKeys: 4 });
    const ownHeaders = fc.option(
      fc.dictionary(
        fc.string({ unit: "binary", maxLength: 20 }).map((name) => `own-${name}`),
        text,
        {
          maxKeys: 3,
        },
      ),
      { nil: undefined },
    );
    const records = fc.array(fc.record({ value: text, key: text, headers, ownHeaders }), {
      minLength: 1,
      maxLength: 40,
    });
    fc.assert(
      fc.property(records, fc.constantFrom(...COMPRESSIONS), (generated, compression) => {
        // Own header names never repeat a shared one (the client's encoder would see one entry for both).
        const produced = generated.map(({ value, key, headers, ownHeaders }) =>
          record("t", ownHeaders ? { value, headers, ownHeaders } : { value, headers }, key),
        );
        const ours = encodeRecordBatch("t", 0, produced, { compression }, NOW);
        const theirs = createRecordsBatch(
          produced.map((message) => asClientMessage(message, 0)),
          { compression },
        ).buffer;
        expect(ours.equals(theirs)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe("createProduceRequest", () => {
  /** Records in the order sent, each with its partition. */
  const records: Array<[SinkMessage, number]> = [
    [record("events", { value: '{"a":1}', headers: shared }, "a"), 0],
    [record("events", { value: '{"b":2}', headers: shared }, "b"), 3],
    [record("audit", { value: '{"c":3}', headers: other }), 1],
    [record("events", { value: '{"d":4}', headers: other }, "a"), 0],
    [record("events", { value: '{"e":5}', headers: shared }, "e"), 3],
  ];
  const theirRecords = records.map(([message, partition]) => asClientMessage(message, partition));
  /** The client's messages as the writer makes them: one per partition, holding its records in order. */
  const perPartition: PartitionRecords[] = [
    { topic: "events", partition: 0, value: [records[0]?.[0], records[3]?.[0]] as SinkMessage[] },
    { topic: "events", partition: 3, value: [records[1]?.[0], records[4]?.[0]] as SinkMessage[] },
    { topic: "audit", partition: 1, value: [records[2]?.[0]] as SinkMessage[] },
  ];
  /** One message per record (a partition's records split across messages, as before the partition count is known). */
  const perRecord: PartitionRecords[] = records.map(([message, partition]) => ({
    topic: message.topic,
    partition,
    value: [message],
  }));
  const options = () => ({
    compression: "lz4" as const,
    producerId: 9n,
    producerEpoch: 1,
    sequences: sequences([
      ["events:0", 10],
      ["events:3", 20],
    ]),
  });

  test.each(clientProduceApis)(
    "version %d: the request the client would build, grouped by topic and partition",
    (version, client) => {
      const theirs = client.createRequest(-1, 30_000, theirRecords, options());
      for (const messages of [perPartition, perRecord]) {
        const ours = createProduceRequest(version, -1, 30_000, messages, options(), NOW);
        expect(ours.buffer.equals(theirs.buffer)).toBe(true);
        expect(ours.context.noResponse).toBeUndefined();
      }
    },
  );

  test("acks=0 asks the connection not to wait for an answer", () => {
    expect(createProduceRequest(11, 0, 1000, perPartition, {}).context.noResponse).toBe(true);
  });
});
