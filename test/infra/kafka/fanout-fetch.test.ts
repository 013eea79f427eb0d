import { describe, expect, test } from "bun:test";
import { createRecordsBatch } from "@platformatic/kafka";
import { channelTopic, topicHash } from "../../../src/domain/channel.ts";
import { fromFanoutRecord, toFanoutRecords } from "../../../src/infra/kafka/fanout-bus.ts";
import { RecordBytes, walkRecords } from "../../../src/infra/kafka/fanout-fetch.ts";
import type { FanoutMessage } from "../../../src/ports/fanout-bus.ts";
import { headersOf } from "../../../src/ports/sink.ts";

/** One record batch at `baseOffset` holding these messages as the gateway writes them. */
function batch(baseOffset: number, messages: FanoutMessage[], compression = "none"): Buffer {
  const records = toFanoutRecords("fanout", messages).map((record) => {
    return {
      key: Buffer.from(record.key as string),
      value: Buffer.from(record.value as string),
      headers: new Map(Object.entries(headersOf(record)).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
      topic: "fanout",
      partition: 0,
    };
  });
  const bytes = Buffer.from(
    createRecordsBatch(records as never, { compression: compression as never }).buffer,
  );
  bytes.writeBigInt64BE(BigInt(baseOffset), 0);
  return bytes;
}

const message = (channel: string, n: number): FanoutMessage => ({
  tenant: "acme",
  channel,
  dataJson: `{"n":${n}}`,
  ts: 1700000000000 + n,
});

/** Walks `bytes` from `from`, wanting `wanted` channels; answers what was handed on and the next offset. */
function walk(bytes: Buffer, from: bigint, wanted: string[]) {
  const asked: string[] = [];
  const delivered: Array<{ offset: bigint; message: unknown }> = [];
  const next = walkRecords(
    bytes,
    from,
    {
      mayWant: () => true,
      wants: (tenant, channel) => {
        asked.push(`${tenant}/${channel}`);
        return channel !== undefined && wanted.includes(channel);
      },
    },
    (offset, headers, value) => delivered.push({ offset, message: fromFanoutRecord(headers, value) }),
  );
  return { asked, delivered, next };
}

describe("walkRecords: the live reader's walk over fetched record batches", () => {
  test("a record whose topic hash no wanted channel has is skipped before anything is decoded", () => {
    const channels = Array.from({ length: 40 }, (_, i) => `room-${i}`);
    const bytes = batch(
      10,
      [...channels, ...channels].map((channel, n) => message(channel, n)),
    );
    const hashes = new Set([topicHash(channelTopic("acme", "room-7"))]);
    const asked: string[] = [];
    const delivered: bigint[] = [];
    const next = walkRecords(
      bytes,
      10n,
      {
        mayWant: (hash) => hashes.has(hash),
        wants: (tenant, channel) => {
          asked.push(`${tenant}/${channel}`);
          return true;
        },
      },
      (offset) => delivered.push(offset),
    );
    expect(asked).toEqual(["acme/room-7"]);
    expect(delivered).toEqual([17n, 57n]);
    expect(next).toBe(90n);
  });

  test("asks once per tenant and channel in a walk, again in the next walk; many channels, names not ASCII", () => {
    const channels = [...Array.from({ length: 40 }, (_, i) => `room-${i}`), "é", "ü"];
    const messages = [...channels, ...channels].map((channel, n) => message(channel, n));
    const wanted = channels.filter((_, i) => i % 3 === 0);
    const bytes = batch(0, messages);
    const first = walk(bytes, 0n, wanted);
    expect(first.delivered.map(({ message }) => (message as FanoutMessage).channel)).toEqual(
      messages.map((sent) => sent.channel).filter((channel) => wanted.includes(channel as string)),
    );
    expect(first.asked.length).toBeGreaterThanOrEqual(channels.length);
    expect(first.asked.length).toBeLessThan(messages.length);
    // A subscription made between two fetches counts in the next walk.
    const second = walk(bytes, 0n, ["room-1"]);
    expect(second.delivered.map(({ message }) => (message as FanoutMessage).channel)).toEqual([
      "room-1",
      "room-1",
    ]);
  });

  test("hands on only wanted channels, decoded as the client would; answers the offset after the last batch", () => {
    const bytes = Buffer.concat([
      batch(10, [message("a", 0), message("b", 1), message("a", 2)]),
      batch(13, [message("c", 3)]),
    ]);
    const { asked, delivered, next } = walk(bytes, 10n, ["a"]);
    // Each tenant and channel is asked once per walk.
    expect(asked).toEqual(["acme/a", "acme/b", "acme/c"]);
    expect(delivered).toEqual([
      { offset: 10n, message: message("a", 0) },
      { offset: 12n, message: message("a", 2) },
    ]);
    expect(next).toBe(14n);
  });

  test("records before the requested offset (a batch fetched again from its middle) are skipped", () => {
    const bytes = batch(10, [message("a", 0), message("a", 1), message("a", 2)]);
    const { delivered, next } = walk(bytes, 11n, ["a"]);
    expect(delivered.map((d) => d.offset)).toEqual([11n, 12n]);
    expect(next).toBe(13n);
  });

  test("a batch cut off by the fetch's byte limit is left for the next fetch", () => {
    const whole = batch(10, [message("a", 0)]);
    const cut = Buffer.concat([whole, batch(11, [message("a", 1)]).subarray(0, 70)]);
    const { delivered, next } = walk(cut, 10n, ["a"]);
    expect(delivered.map((d) => d.offset)).toEqual([10n]);
    expect(next).toBe(11n);
  });

  test("broadcasts are handed on without asking; compressed batches are walked too", () => {
    const broadcast: FanoutMessage = { tenant: "acme", broadcast: true, dataJson: "{}", ts: 1 };
    const bytes = batch(0, [broadcast, message("b", 1), message("a", 2)], "gzip");
    const { asked, delivered } = walk(bytes, 0n, ["a"]);
    expect(asked).toEqual(["acme/b", "acme/a"]);
    expect(delivered).toEqual([
      { offset: 0n, message: broadcast },
      { offset: 2n, message: message("a", 2) },
    ]);
  });

  test("a record without tenant or channel headers is never handed on", () => {
    const record = {
      key: Buffer.from("k"),
      value: Buffer.from("{}"),
      headers: new Map(),
      topic: "f",
      partition: 0,
    };
    const bytes = Buffer.from(createRecordsBatch([record] as never).buffer);
    expect(walk(bytes, 0n, ["a"]).delivered).toEqual([]);
  });
});

describe("RecordBytes: a partition's record set from the chunks it arrived in", () => {
  test("a record set spread over socket reads is walked as if it came whole, answer after answer", () => {
    const bytes = new RecordBytes(64 * 1024);
    const whole = Buffer.concat([
      batch(0, [message("a", 0), message("b", 1)]),
      batch(2, [message("a", 2), message("a", 3)]),
    ]);
    const reads = (cuts: number[]) =>
      [0, ...cuts].map((start, i) => Buffer.from(whole.subarray(start, cuts[i] ?? whole.length)));
    const expected = walk(whole, 0n, ["a"]);
    for (const cuts of [[], [1], [50, 51, 130], [whole.length - 1]]) {
      expect(walk(bytes.join(reads(cuts)), 0n, ["a"])).toEqual(expected);
    }
    // One bigger than it keeps is joined all the same.
    const small = new RecordBytes(16);
    expect(walk(small.join(reads([40])), 0n, ["a"])).toEqual(expected);
  });
});
