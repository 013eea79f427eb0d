import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createRecordsBatch } from "@platformatic/kafka";
import { batchBytesLimit, recordBytes, recordBytesAtMost } from "../../../src/infra/delivery/record-size.ts";
import type { SinkMessage } from "../../../src/ports/sink.ts";

/** The bytes the Kafka client really puts on the wire for these messages in one record batch. */
function encodedBatchBytes(messages: SinkMessage[], compression: string): number {
  const records = messages.map((message) => ({
    topic: message.topic,
    partition: 0,
    key: Buffer.from(message.key),
    value: Buffer.from(message.value),
    headers: new Map(
      Object.entries(message.headers).map(([name, value]) => [Buffer.from(name), Buffer.from(value)]),
    ),
  }));
  return (createRecordsBatch(records as never, { compression } as never) as unknown as { length: number })
    .length;
}

function message(valueBytes: number): SinkMessage {
  // Random base64 and multi-byte characters: incompressible, and longer in UTF-8 than in UTF-16.
  const data = randomBytes(Math.ceil((valueBytes * 3) / 4) + 3)
    .toString("base64")
    .slice(0, valueBytes);
  const value = `{"data":"${data}é€"}`;
  return { topic: "events", key: "tenant-ü", value, headers: { tenant: "tenant-ü", type: "click" } };
}

describe("recordBytesAtMost", () => {
  test("bounds recordBytes from above, whatever the characters", () => {
    for (const value of ["", "a".repeat(500), "é€".repeat(300), "𝄞".repeat(200), "\ud800".repeat(10)]) {
      const one = { ...message(0), value };
      expect(recordBytesAtMost(one)).toBeGreaterThanOrEqual(recordBytes(one));
    }
  });
});

describe("a value given as bytes", () => {
  test("is counted by its bytes, as its text would be, and never read as text", () => {
    for (const value of ["", "a".repeat(500), "é€".repeat(300), "𝄞".repeat(200)]) {
      const text = { ...message(0), value };
      const bytes = Buffer.from(`xx${value}yy`);
      const given: SinkMessage = {
        topic: text.topic,
        key: text.key,
        headers: text.headers,
        valueBytes: bytes,
        valueStart: 2,
        valueEnd: bytes.length - 2,
        get value(): string {
          throw new Error("read as text");
        },
      };
      expect(recordBytes(given)).toBe(recordBytes(text));
      expect(recordBytesAtMost(given)).toBeGreaterThanOrEqual(recordBytes(given));
    }
  });
});

describe("recordBytes", () => {
  test("is an upper bound of each record's encoded size, counted in UTF-8", () => {
    for (const size of [0, 10, 127, 128, 16_383, 16_384, 300_000]) {
      const one = message(size);
      expect(recordBytes(one)).toBeGreaterThanOrEqual(encodedBatchBytes([one], "none") - 61);
      expect(recordBytes(one)).toBeLessThan(encodedBatchBytes([one], "none") - 61 + 64);
    }
  });

  const compressions = ["none", "gzip", "snappy", "lz4", ...(typeof Bun !== "undefined" ? ["zstd"] : [])];
  test.each(compressions)(
    "a batch filled to batchBytesLimit fits message.max.bytes with %s",
    (compression) => {
      const maxMessageBytes = 1024 * 1024;
      const limit = batchBytesLimit(maxMessageBytes, compression !== "none");
      const batch: SinkMessage[] = [];
      let bytes = 0;
      for (;;) {
        const next = message(50_000);
        if (bytes + recordBytes(next) > limit) break;
        batch.push(next);
        bytes += recordBytes(next);
      }
      // Top it up to the very limit with one last record.
      const rest = message(0);
      batch.push(message(limit - bytes - recordBytes(rest)));
      const filled = batch.reduce((sum, each) => sum + recordBytes(each), 0);
      expect(filled).toBeLessThanOrEqual(limit);
      expect(filled).toBeGreaterThan(limit - 100);
      expect(encodedBatchBytes(batch, compression)).toBeLessThanOrEqual(maxMessageBytes);
    },
  );
});

describe("recordBytes with shared headers", () => {
  test("counts each message's own headers when messages alternate between headers objects", () => {
    const short = { tenant: "a" };
    const long = { tenant: "a-much-longer-tenant", type: "page_view" };
    const of = (headers: Record<string, string>) => ({ topic: "t", key: "k", value: "v", headers });
    const alone = (headers: Record<string, string>) => recordBytes(of({ ...headers }));
    expect([recordBytes(of(short)), recordBytes(of(long)), recordBytes(of(short))]).toEqual([
      alone(short),
      alone(long),
      alone(short),
    ]);
    expect(alone(long)).toBeGreaterThan(alone(short));
  });
});
