import { expect, test } from "bun:test";
import { kGetApi, MultipleErrors, ResponseError, UserError } from "@platformatic/kafka";
import pino from "pino";
import type { EventRecord } from "../../../src/domain/record.ts";
import { HealthState } from "../../../src/features/operations/health.ts";
import {
  fromFanoutRecord,
  ingestedFanoutRecords,
  KafkaFanoutBus,
  toFanoutRecords,
} from "../../../src/infra/kafka/fanout-bus.ts";
import { encodeRecordBatch } from "../../../src/infra/kafka/produce-request.ts";
import {
  type FanoutMessage,
  fanoutMessagesOf,
  type LogRead,
  type LogReadResult,
} from "../../../src/ports/fanout-bus.ts";
import { headersOf as allHeadersOf, type RecordQueue, type SinkMessage } from "../../../src/ports/sink.ts";
import { waitUntil } from "../../support/wait.ts";

/** Headers and values as the consumer hands them over: raw bytes. */
const raw = (headers: Record<string, string>) =>
  new Map(Object.entries(headers).map(([key, value]) => [Buffer.from(key), Buffer.from(value)]));
const headersOf = (record: SinkMessage) => raw(allHeadersOf(record));
const toFanoutRecord = (topic: string, message: FanoutMessage) =>
  toFanoutRecords(topic, [message])[0] as SinkMessage;

test("a message survives the trip through a Kafka record, its payload byte for byte", () => {
  const message: FanoutMessage = {
    tenant: "acme",
    channel: "orders",
    dataJson: '{"n":9007199254740993, "f":1.50}',
    record: { type: "click", id: "r-1" },
    ts: 1_700_000_000_000,
  };
  const record = toFanoutRecord("fanout", message);
  expect(record.key).toBe("acme/orders");
  expect(record.value).toBe(message.dataJson);
  expect(fromFanoutRecord(headersOf(record), Buffer.from(record.value as string))).toEqual(message);

  const broadcast: FanoutMessage = { tenant: "acme", broadcast: true, dataJson: "null", ts: 1 };
  const sent = toFanoutRecord("fanout", broadcast);
  expect(sent.key).toBe("acme/$broadcast");
  expect(fromFanoutRecord(headersOf(sent), Buffer.from(sent.value as string))).toEqual(broadcast);
});

test("the publisher's trace context comes back from the record's headers (a later version as version 00); an invalid traceparent does not", () => {
  const traced: FanoutMessage = {
    tenant: "acme",
    channel: "orders",
    dataJson: "{}",
    ts: 1,
    traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    tracestate: "rojo=00f067aa0ba902b7",
  };
  const record = toFanoutRecord("fanout", traced);
  expect(fromFanoutRecord(headersOf(record), Buffer.from("{}"))).toEqual(traced);
  const later = raw({ ...allHeadersOf(record), traceparent: `01-${traced.traceparent?.slice(3)}-more` });
  expect(fromFanoutRecord(later, Buffer.from("{}"))).toEqual(traced);
  // A tracestate W3C calls invalid (a key named twice, a control character) is not passed on; the traceparent is.
  for (const tracestate of ["a=1,a=2", 'a=1"},"x":"\n'])
    expect(fromFanoutRecord(raw({ ...allHeadersOf(record), tracestate }), Buffer.from("{}"))).toEqual({
      ...traced,
      tracestate: undefined,
    });
  const forged = raw({ ...allHeadersOf(record), traceparent: '00-x"}', tracestate: "a=1" });
  expect(fromFanoutRecord(forged, Buffer.from("{}"))).toEqual({
    tenant: "acme",
    channel: "orders",
    dataJson: "{}",
    ts: 1,
  });
});

test("an ingested batch's records of one channel share one key and one headers object; the record id is each record's own", () => {
  const batch: FanoutMessage[] = ["a", "b", "a"].map((channel, i) => ({
    tenant: "acme",
    channel,
    dataJson: `{"i":${i}}`,
    record: { type: "click", id: `r-${i}` },
    ts: 1_700_000_000_000,
  }));
  batch.push({ ...batch[0], record: { type: "view", id: "r-3" } } as FanoutMessage);
  const records = toFanoutRecords("fanout", batch);
  expect(records[2]?.headers).toBe(records[0]?.headers as SinkMessage["headers"]);
  expect(records[2]?.key).toBe(records[0]?.key as string);
  expect(records[1]?.headers).not.toBe(records[0]?.headers as SinkMessage["headers"]);
  expect(records[3]?.headers).not.toBe(records[0]?.headers as SinkMessage["headers"]);
  expect(records[1]?.headers.channel).toBe("b");
  expect([records[1]?.ownHeader, records[1]?.ownHeaderValue]).toEqual(["record-id", "r-1"]);
  records.forEach((record, i) => {
    expect(record.key).toBe(`acme/${batch[i]?.channel}`);
    expect(fromFanoutRecord(headersOf(record), Buffer.from(record.value))).toEqual(batch[i] as FanoutMessage);
  });
});

test("broadcasts of one run with different channels (or none) keep each its own channel header", () => {
  const batch: FanoutMessage[] = ["a", "b", undefined, "a"].map((channel, i) => ({
    tenant: "acme",
    broadcast: true,
    ...(channel === undefined ? {} : { channel }),
    dataJson: `{"i":${i}}`,
    ts: 1_700_000_000_000,
  }));
  const records = toFanoutRecords("fanout", batch);
  expect(records.map((record) => record.headers.channel)).toEqual(["a", "b", undefined, "a"]);
  expect(records.map((record) => record.key)).toEqual(batch.map(() => "acme/$broadcast"));
  records.forEach((record, i) => {
    expect(fromFanoutRecord(headersOf(record), Buffer.from(record.value))).toEqual(batch[i] as FanoutMessage);
  });
});

test("ingested records become the fan-out records their messages would: same keys, values and headers; none without a channel", () => {
  const ts = 1_700_000_000_000;
  const records: EventRecord[] = ["a", undefined, "b", "a", "b"].map((channel, i) => ({
    id: `r-${i}`,
    type: i === 3 ? "view" : "click",
    dataJson: `{"i":${i},"s":"ü"}`,
    tenant: "acme",
    receivedAt: "2026-12-05T00:00:00.000Z",
    ...(channel === undefined ? {} : { channel }),
  }));
  const trace = {
    traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    tracestate: "rojo=00f067aa0ba902b7",
  };
  for (const traced of [undefined, trace]) {
    const direct = ingestedFanoutRecords("fanout", records, ts, traced);
    const viaMessages = toFanoutRecords("fanout", fanoutMessagesOf(records, ts, traced));
    expect(direct.length).toBe(4);
    expect(direct.map((record) => [record.topic, record.key, record.value, allHeadersOf(record)])).toEqual(
      viaMessages.map((record) => [record.topic, record.key, record.value, allHeadersOf(record)]),
    );
    // Channel b's click records share their headers; channel a's view record has its own.
    expect(direct[3]?.headers).toBe(direct[1]?.headers as SinkMessage["headers"]);
    expect(direct[2]?.headers).not.toBe(direct[0]?.headers as SinkMessage["headers"]);
  }
  expect(
    ingestedFanoutRecords(
      "fanout",
      records.filter((record) => !record.channel),
      ts,
      undefined,
    ),
  ).toEqual([]);
});

test("with the records' data as bytes, fan-out records copy them: the same batch as from the text", () => {
  const records: EventRecord[] = ["a", undefined, "b", "a"].map((channel, i) => ({
    id: `r-${i}`,
    type: "click",
    dataJson: `{"i":${i},"s":"ü 𝄞"}`,
    tenant: "acme",
    receivedAt: "2026-12-05T00:00:00.000Z",
    ...(channel === undefined ? {} : { channel }),
  }));
  // The data of records 0 and 2 (unknown for 3: its text is used) inside one buffer, as the ingest route's values hold them.
  const texts = records.map((record) => Buffer.from(record.dataJson));
  const valueBytes = Buffer.concat([Buffer.from("{…"), ...texts]);
  let at = Buffer.byteLength("{…");
  const dataBytes = texts.map((text, i) => {
    const span = { valueBytes, dataStart: i === 3 ? -1 : at, dataEnd: i === 3 ? -1 : at + text.length };
    at += text.length;
    return span;
  });
  const fromBytes = ingestedFanoutRecords("fanout", records, 1, undefined, dataBytes);
  const fromText = ingestedFanoutRecords("fanout", records, 1, undefined);
  expect(fromBytes.map((record) => record.valueBytes !== undefined)).toEqual([true, true, false]);
  const batch = (sent: SinkMessage[]) => encodeRecordBatch("fanout", 0, sent, {}, 1);
  expect(batch(fromBytes).equals(batch(fromText))).toBe(true);
});

test("fan-out copies whose data is a small share of the request's values get a buffer of their own, so a queued copy does not hold the whole body; a fair share is not copied", () => {
  // Found from outside: a request of nine 100 KiB records and one small one with a channel left each
  // queued fan-out copy holding 900 KiB, counted as ~350 bytes, while the fan-out topic lagged.
  const record = (i: number, channel: string | undefined, dataJson: string): EventRecord => ({
    id: `r-${i}`,
    type: "click",
    dataJson,
    tenant: "acme",
    receivedAt: "2026-12-08T00:00:00.000Z",
    ...(channel === undefined ? {} : { channel }),
  });
  const big = JSON.stringify({ pad: "x".repeat(100 * 1024) });
  const layout = (records: EventRecord[]) => {
    const texts = records.map((one) => Buffer.from(one.dataJson));
    const valueBytes = Buffer.concat(texts);
    let at = 0;
    const dataBytes = texts.map((text) => {
      const span = { valueBytes, dataStart: at, dataEnd: at + text.length };
      at += text.length;
      return span;
    });
    return { valueBytes, dataBytes };
  };
  const lopsided = [
    ...Array.from({ length: 4 }, (_, i) => record(i, undefined, big)),
    record(4, "a", '{"n":1}'),
    ...Array.from({ length: 5 }, (_, i) => record(5 + i, undefined, big)),
    record(10, "b", '{"n":"ü"}'),
  ];
  const apart = layout(lopsided);
  const copies = ingestedFanoutRecords("fanout", lopsided, 1, undefined, apart.dataBytes);
  expect(copies.map((copy) => copy.valueBytes?.byteLength)).toEqual([17, 17]);
  expect(copies[0]?.valueBytes).toBe(copies[1]?.valueBytes as Buffer);
  const batch = (sent: SinkMessage[]) => encodeRecordBatch("fanout", 0, sent, {}, 1);
  expect(batch(copies).equals(batch(ingestedFanoutRecords("fanout", lopsided, 1, undefined)))).toBe(true);

  const fair = [record(0, "a", big), record(1, undefined, big), record(2, "b", '{"n":2}')];
  const together = layout(fair);
  for (const copy of ingestedFanoutRecords("fanout", fair, 1, undefined, together.dataBytes))
    expect(copy.valueBytes).toBe(together.valueBytes);
});

test("publishes and ingested records' fan-out copies are queued in their tenant's name: they count in its share of the producer queue", async () => {
  const queued: Array<{ topic: string | undefined; until: string; tenant: string | undefined }> = [];
  const queue: RecordQueue = {
    maxRecordBytes: 1_000_000,
    fits: () => true,
    enqueue: async (messages, until, tenant) => {
      queued.push({ topic: messages[0]?.topic, until, tenant });
    },
  };
  const bus = new KafkaFanoutBus({} as never, "fanout", queue, pino({ level: "silent" }), new HealthState());
  await bus.publish([{ tenant: "acme", channel: "orders", dataJson: "1", ts: 1 }]);
  const record = (channel?: string): EventRecord => ({
    id: "r",
    type: "click",
    dataJson: "1",
    tenant: "globex",
    receivedAt: "2026-12-05T00:00:00.000Z",
    ...(channel === undefined ? {} : { channel }),
  });
  await bus.publishRecords([record(), record("orders")], 1, undefined);
  expect(queued).toEqual([
    { topic: "fanout", until: "acknowledged", tenant: "acme" },
    { topic: "fanout", until: "acknowledged", tenant: "globex" },
  ]);
});

test("records not written by a gateway are skipped, never delivered as broken frames", () => {
  const good = toFanoutRecord("fanout", { tenant: "acme", channel: "orders", dataJson: "{}", ts: 1 });
  expect(fromFanoutRecord(headersOf(good), Buffer.from("{not json"))).toBeUndefined();
  expect(fromFanoutRecord(raw({ tenant: "acme" }), Buffer.from("{}"))).toBeUndefined();
  expect(fromFanoutRecord(raw({ tenant: "acme", channel: 'x"}' }), Buffer.from("{}"))).toBeUndefined();
  expect(fromFanoutRecord(raw({ channel: "orders" }), Buffer.from("{}"))).toBeUndefined();
});

test("a reader that cannot be rebuilt (Kafka down) logs its first failure with the cause, not one line per attempt", async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const queue: RecordQueue = { maxRecordBytes: 1_000_000, fits: () => true, enqueue: async () => {} };
  // Nothing listens on port 1: every attempt's first request fails at once.
  const nowhere = {
    clientId: "rebuild-test",
    bootstrapBrokers: ["127.0.0.1:1"],
    connectTimeout: 200,
    requestTimeout: 200,
    retries: 0,
    retryDelay: 10,
  };
  const bus = new KafkaFanoutBus(nowhere, "fanout", queue, log, new HealthState(), {
    restartDelayMs: 20,
    partitionCheckMs: 60_000,
  });
  const internals = bus as unknown as { newConsumer(): unknown; scheduleRestart(): void };
  const newConsumer = internals.newConsumer.bind(bus);
  let attempts = 0;
  internals.newConsumer = () => {
    attempts++;
    return newConsumer();
  };
  // What a failing fetch loop does: the rebuild loop, started as the running reader's failure starts it.
  internals.scheduleRestart();
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && attempts < 5) await Bun.sleep(20);
  await bus.close();
  expect(attempts).toBeGreaterThanOrEqual(5);
  const failed = lines.filter((line) => String(line.msg).startsWith("fan-out consumer rebuild failed"));
  expect(failed).toHaveLength(1);
  expect(failed[0]).toMatchObject({ level: 40, retryEveryMs: 20 });
  expect(failed[0]?.err).toBeDefined();
});

test("a reader whose fetches the broker refuses (READ denied) is one outage: logged once, in /health's degraded, until a fetch is answered", async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const queue: RecordQueue = { maxRecordBytes: 1_000_000, fits: () => true, enqueue: async () => {} };
  const health = new HealthState();
  const bus = new KafkaFanoutBus({} as never, "fanout", queue, log, health, {
    restartDelayMs: 10,
    partitionCheckMs: 60_000,
  });
  // Connecting and reading metadata works (Describe is allowed); every Fetch is refused.
  const consumer = {
    metadata: async () => ({
      topics: new Map([["fanout", { id: "topic-id", partitionsCount: 1, partitions: [{ leader: 1 }] }]]),
      brokers: new Map([[1, { host: "127.0.0.1", port: 1 }]]),
    }),
    [kGetApi]: (_name: string, callback: (error: null, api: { version: number }) => void) =>
      callback(null, { version: 17 }),
    close: (_force: boolean, callback: () => void) => callback(),
  };
  let refused = true;
  let fetches = 0;
  const internals = bus as unknown as {
    epoch: string;
    nextOffsets: Map<number, bigint>;
    newConsumer(): unknown;
    scheduleRestart(): void;
    fetchLoop(): Promise<void>;
    answered(): void;
  };
  // The reader started on this topic (its id's epoch): a rebuild goes on, it does not start over.
  internals.epoch = "ktopicid";
  internals.nextOffsets.set(0, 0n);
  internals.newConsumer = () => consumer;
  // TOPIC_AUTHORIZATION_FAILED (29) on the partition, as the broker answers a Fetch without READ.
  internals.fetchLoop = async () => {
    fetches++;
    if (refused) throw new ResponseError(1, 17, { "": [29, null] }, {});
    internals.answered();
    await new Promise<never>(() => {});
  };
  internals.scheduleRestart();
  await waitUntil(() => fetches >= 5, "five refused fetches");
  expect(health.degraded()).toEqual(["kafka_topic_unreadable:fanout"]);
  refused = false;
  const refusedFetches = fetches;
  await waitUntil(() => health.degraded().length === 0, "the reader reads again");
  await bus.close();
  const messages = lines.map((line) => line.msg);
  const failed = lines.filter((line) => line.msg === "fan-out consumer failed; rebuilding it");
  expect(failed).toEqual([expect.objectContaining({ code: "TOPIC_AUTHORIZATION_FAILED" })]);
  expect(
    messages.filter((msg) => msg === "fan-out consumer rebuild failed; retrying until it succeeds"),
  ).toHaveLength(1);
  const rebuilt = lines.filter((line) => line.msg === "fan-out consumer rebuilt");
  expect(rebuilt).toHaveLength(1);
  expect(rebuilt[0]?.failedAttempts).toBe(refusedFetches - 1);
});

test("a fan-out topic missing at start (a cluster that does not create topics) is in /health's degraded until the reader starts", async () => {
  const queue: RecordQueue = { maxRecordBytes: 1_000_000, fits: () => true, enqueue: async () => {} };
  const health = new HealthState();
  const bus = new KafkaFanoutBus({} as never, "fanout", queue, pino({ level: "silent" }), health, {
    restartDelayMs: 10,
    partitionCheckMs: 60_000,
  });
  let exists = false;
  const consumer = {
    // The client's answer for a topic the broker does not have, after its metadata retries.
    metadata: async () => {
      if (!exists)
        throw new MultipleErrors("metadata failed 2 times.", [new UserError("Unknown topic fanout.")]);
      return {
        topics: new Map([["fanout", { id: "topic-id", partitionsCount: 1, partitions: [{ leader: 1 }] }]]),
        brokers: new Map([[1, { host: "127.0.0.1", port: 1 }]]),
      };
    },
    listOffsets: async () => new Map([["fanout", [0n]]]),
    [kGetApi]: (_name: string, callback: (error: null, api: { version: number }) => void) =>
      callback(null, { version: 17 }),
    close: (_force: boolean, callback: () => void) => callback(),
  };
  const internals = bus as unknown as { newConsumer(): unknown; fetchLoop(): Promise<void> };
  internals.newConsumer = () => consumer;
  internals.fetchLoop = () => new Promise<never>(() => {});
  const listener = { deliver: () => {}, origin: () => {} };
  await expect(bus.start(listener)).rejects.toThrow();
  expect(health.degraded()).toEqual(["kafka_topic_unreadable:fanout"]);
  exists = true;
  await bus.start(listener);
  expect(health.degraded()).toEqual([]);
  await bus.close();
});

test("a read of the log for one epoch of the fan-out topic, on a topic made again since, is gone: its messages are not taken as the old epoch's", async () => {
  const queue: RecordQueue = { maxRecordBytes: 1_000_000, fits: () => true, enqueue: async () => {} };
  const bus = new KafkaFanoutBus({} as never, "fanout", queue, pino({ level: "silent" }), new HealthState());
  const internals = bus as unknown as {
    epoch: string;
    readWith(reader: unknown, request: LogRead): Promise<LogReadResult>;
  };
  // The live reader already moved on to the new topic (epoch knewtopic); the scan began on the old one.
  internals.epoch = "knewtopic";
  const reader = {
    metadata: async () => ({
      topics: new Map([["fanout", { id: "new-topic", partitionsCount: 1, partitions: [{ leader: 1 }] }]]),
      brokers: new Map([[1, { host: "127.0.0.1", port: 1 }]]),
    }),
    listOffsets: async () => {
      throw new Error("the new topic was read as the old one");
    },
  };
  const request: LogRead = {
    tenant: "acme",
    channel: "x",
    epoch: "koldtopic",
    partition: 0,
    from: 0n,
    until: 10n,
    maxMessages: 10,
    maxBytes: 1 << 20,
    deadline: Date.now() + 1000,
  };
  expect(await internals.readWith(reader, request)).toEqual({ gone: true });
});
