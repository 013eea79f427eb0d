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
  type ProduceRecord,
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

function record(topic: string, partition: number, message: Partial<SinkMessage>, key = ""): ProduceRecord {
  return { topic, partition, value: { topic, key, value: "{}", headers: {}, ...message } };
}

/** The same records as the client's own encoder takes them: every string a Buffer, headers a Map. */
function asClientMessage(produced: ProduceRecord): MessageRecord {
  const headers = new Map<Buffer, Buffer>();
  for (const [name, value] of Object.entries({ ...produced.value.headers, ...produced.value.ownHeaders }))
    headers.set(Buffer.from(name), Buffer.from(value));
  return {
    topic: produced.topic,
    partition: produced.partition,
    key: Buffer.from(produced.value.key),
    value: Buffer.from(produced.value.value),
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
const SAMPLE: ProduceRecord[] = [
  ...Array.from({ length: 150 }, (_, i) =>
    record(
      "events",
      2,
      { value: JSON.stringify({ i, text: "ünïcødé ✓ 𝄞" }), headers: shared },
      `device-${i % 7}`,
    ),
  ),
  record("events", 2, { value: '{"big":9007199254740993}', headers: other }, "k"),
  record("events", 2, { value: "x".repeat(20_000), headers: {} }),
  // Fan-out records: shared headers plus each record's own.
  ...Array.from({ length: 5 }, (_, i) =>
    record(
      "events",
      2,
      { value: `{"i":${i}}`, headers: shared, ownHeaders: { channel: `c${i % 2}`, "record-id": `r-ü-${i}` } },
      `acme/c${i % 2}`,
    ),
  ),
  record("events", 2, { value: "{}", headers: {}, ownHeaders: { "record-id": "only" } }),
];

describe("encodeRecordBatch", () => {
  test.each(COMPRESSIONS)("writes the bytes the client's encoder writes (compression %s)", (compression) => {
    const options = {
      compression,
      producerId: 4711n,
      producerEpoch: 3,
      sequences: sequences([["events:2", 4242]]),
    };
    const ours = encodeRecordBatch(SAMPLE, options, NOW);
    const theirs = createRecordsBatch(SAMPLE.map(asClientMessage), options).buffer;
    expect(ours.equals(theirs)).toBe(true);
  });

  test("reads back as the records given, in order, with keys, values and headers", () => {
    const batch = readRecordsBatch(Reader.from(encodeRecordBatch(SAMPLE, { compression: "lz4" }, NOW)));
    expect(batch.records).toHaveLength(SAMPLE.length);
    expect(batch.firstTimestamp).toBe(BigInt(NOW));
    batch.records.forEach((read, i) => {
      const sent = SAMPLE[i] as ProduceRecord;
      expect(read.offsetDelta).toBe(i);
      expect(read.key?.toString()).toBe(sent.value.key);
      expect(read.value?.toString()).toBe(sent.value.value);
      const headers = read.headers.map(([name, value]) => [name?.toString(), value?.toString()]);
      expect(headers).toEqual(Object.entries({ ...sent.value.headers, ...sent.value.ownHeaders }));
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
          record("t", 0, ownHeaders ? { value, headers, ownHeaders } : { value, headers }, key),
        );
        const ours = encodeRecordBatch(produced, { compression }, NOW);
        const theirs = createRecordsBatch(produced.map(asClientMessage), { compression }).buffer;
        expect(ours.equals(theirs)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe("createProduceRequest", () => {
  const records = [
    record("events", 0, { value: '{"a":1}', headers: shared }, "a"),
    record("events", 3, { value: '{"b":2}', headers: shared }, "b"),
    record("audit", 1, { value: '{"c":3}', headers: other }),
    record("events", 0, { value: '{"d":4}', headers: other }, "a"),
  ];

  test.each(clientProduceApis)(
    "version %d: the request the client would build, grouped by topic and partition",
    (version, client) => {
      const options = {
        compression: "lz4" as const,
        producerId: 9n,
        producerEpoch: 1,
        sequences: sequences([
          ["events:0", 10],
          ["events:3", 20],
        ]),
      };
      const ours = createProduceRequest(version, -1, 30_000, records, options, NOW);
      const theirs = client.createRequest(-1, 30_000, records.map(asClientMessage), options);
      expect(ours.buffer.equals(theirs.buffer)).toBe(true);
      expect(ours.context.noResponse).toBeUndefined();
    },
  );

  test("acks=0 asks the connection not to wait for an answer", () => {
    expect(createProduceRequest(11, 0, 1000, records, {}).context.noResponse).toBe(true);
  });
});
