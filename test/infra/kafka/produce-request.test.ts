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
import { headersOf, type SinkMessage } from "../../../src/ports/sink.ts";

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
  for (const [name, value] of Object.entries(headersOf(message)))
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
const channelHeaders = Array.from({ length: 20 }, (_, i) => ({ ...shared, channel: `c${i}` }));
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
  // Fan-out records: headers shared per channel, interleaved, plus each record's own.
  ...Array.from({ length: 5 }, (_, i) =>
    record(
      "events",
      {
        value: `{"i":${i}}`,
        headers: channelHeaders[i % 2] as SinkMessage["headers"],
        ownHeader: "record-id",
        ownHeaderValue: `r-ü-${i}`,
      },
      `acme/c${i % 2}`,
    ),
  ),
  record("events", { value: "{}", headers: {}, ownHeader: "record-id", ownHeaderValue: "only" }),
  // More headers objects interleaved than the encoder keeps blocks of: each record still gets its own.
  ...Array.from({ length: 60 }, (_, i) =>
    record("events", { value: `{"j":${i}}`, headers: channelHeaders[i % 20] as SinkMessage["headers"] }),
  ),
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
        ...(message.ownHeader === undefined
          ? {}
          : { ownHeader: message.ownHeader, ownHeaderValue: message.ownHeaderValue as string }),
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
      expect(headers).toEqual(Object.entries(headersOf(sent)));
    });
  });

  test("any records: same bytes as the client's encoder", () => {
    const text = fc.string({ unit: "binary", maxLength: 300 });
    const headers = fc.dictionary(fc.string({ unit: "binary", maxLength: 20 }), text, { maxKeys: 4 });
    const ownHeader = fc.option(
      fc.tuple(
        fc.string({ unit: "binary", maxLength: 20 }).map((name) => `own-${name}`),
        text,
      ),
      { nil: undefined },
    );
    // Records pick their headers object from a pool, so runs, interleavings and more objects than the encoder keeps occur.
    const pool = fc.array(headers, { minLength: 1, maxLength: 24 });
    const picks = fc.array(fc.record({ value: text, key: text, pick: fc.nat(), ownHeader }), {
      minLength: 1,
      maxLength: 40,
    });
    fc.assert(
      fc.property(pool, picks, fc.constantFrom(...COMPRESSIONS), (headerObjects, generated, compression) => {
        // Own header names never repeat a shared one (the client's encoder would see one entry for both).
        const produced = generated.map(({ value, key, pick, ownHeader }) => {
          const headers = headerObjects[pick % headerObjects.length] as SinkMessage["headers"];
          return record(
            "t",
            ownHeader
              ? { value, headers, ownHeader: ownHeader[0], ownHeaderValue: ownHeader[1] }
              : { value, headers },
            key,
          );
        });
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
