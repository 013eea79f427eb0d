import { expect, test } from "bun:test";
import type { Principal } from "../../../src/domain/principal.ts";
import type { EventRecord } from "../../../src/domain/record.ts";
import type { RecordMessage } from "../../../src/features/ingest/record-value.ts";
import { ingestRoute } from "../../../src/features/ingest/route.ts";
import { deadLetterFor } from "../../../src/infra/delivery/dead-letter.ts";
import { recordBytes } from "../../../src/infra/delivery/record-size.ts";
import type { SinkMessage } from "../../../src/ports/sink.ts";
import type { HttpRequest } from "../../../src/ports/transport.ts";
import { ingestDependencies, ingestOptions } from "../../support/ingest-options.ts";

const principal: Principal = {
  subject: "s",
  tenant: "acmé",
  scopes: new Set(["ingest", "publish"]),
  channels: undefined,
  expiresAt: Date.now() + 60_000,
};

/** What the route handed to the fan-out: the accepted records and their messages. */
let fannedOut: { records: EventRecord[]; messages: readonly RecordMessage[] } | undefined;

/** Posts `body` to the ingest route; answers the messages it queued. */
async function ingest(body: Buffer): Promise<SinkMessage[]> {
  const written: SinkMessage[] = [];
  const route = ingestRoute(
    ingestOptions(),
    ingestDependencies({
      authenticate: async () => principal,
      queue: {
        maxRecordBytes: 1_000_000,
        fits: () => true,
        enqueue: async (messages: SinkMessage[]) => {
          written.push(...messages);
        },
      },
      fanOut: (records, _trace, messages) => {
        fannedOut = { records, messages };
        return undefined;
      },
    }),
  );
  const request: HttpRequest = {
    method: "POST",
    path: "/v1/events",
    query: new URLSearchParams(),
    header: (name) => (name === "content-type" ? "application/json" : undefined),
    headerNames: () => ["content-type"],
    remoteAddress: "127.0.0.1",
    body: async () => body,
  };
  const reply = await route.handler(request, {});
  expect(reply.status).toBe(202);
  return written;
}

test("each record's value is written as bytes: data and ts as sent (their text), ids and keys as JSON.stringify writes them", async () => {
  const body = Buffer.concat([
    Buffer.from(
      '[{"type":"t","data":{"n":9007199254740993, "f":1.50}},' +
        '{"type":"t","id":"a\\"b\\u00e9","key":"k\\u0000ü","ts":"2026-12-05T00:00:00Z","channel":"c","data":{"s":"\\u00e9"}},' +
        '{"type":"u","data":{"s":"é 𝄞"},"ts":17},{"type":"t","data":{"s":"',
    ),
    // Two-byte UTF-8 sequences: counted by their bytes, not their characters.
    Buffer.from("ÿÃ"),
    Buffer.from('"}}]'),
  ]);
  const messages = await ingest(body);
  const values = messages.map((message) => JSON.parse(message.value) as Record<string, unknown>);
  const receivedAt = values[0]?.receivedAt as string;
  const id = values[0]?.id as string;
  expect(messages.map((message) => message.value)).toEqual([
    `{"id":"${id}","type":"t","data":{"n":9007199254740993, "f":1.50},"tenant":"acmé","receivedAt":"${receivedAt}"}`,
    `{"id":"a\\"bé","type":"t","ts":"2026-12-05T00:00:00Z","channel":"c","key":"k\\u0000ü","data":{"s":"\\u00e9"},"tenant":"acmé","receivedAt":"${receivedAt}"}`,
    `{"id":"${values[2]?.id}","type":"u","ts":17,"data":{"s":"é 𝄞"},"tenant":"acmé","receivedAt":"${receivedAt}"}`,
    `{"id":"${values[3]?.id}","type":"t","data":{"s":"ÿÃ"},"tenant":"acmé","receivedAt":"${receivedAt}"}`,
  ]);
  for (const message of messages) {
    // The bytes the Kafka writer copies are the UTF-8 of that text, and are counted as such.
    const bytes = message.valueBytes?.subarray(message.valueStart, message.valueEnd);
    expect(bytes?.equals(Buffer.from(message.value))).toBe(true);
    expect(recordBytes(message)).toBe(
      recordBytes({ ...message, value: message.value, valueBytes: undefined }),
    );
    expect(message.key).toBe(JSON.parse(message.value).key ?? "acmé");
    // Refused by Kafka for good, it is dead-lettered as it was sent (its numbers unrounded).
    const letter = deadLetterFor(message, "dlq", "MESSAGE_TOO_LARGE", 1_000_000).value;
    expect(letter).toContain(`,"record":${message.value}}`);
  }
});

test("a record with a channel tells the fan-out where its data lies in its value's bytes: exactly its data text's UTF-8", async () => {
  const body = Buffer.concat([
    Buffer.from(
      '[{"type":"t","channel":"a","data":{"n":9007199254740993, "f":1.50}},' +
        '{"type":"t","id":"a\\"b\\u00e9","key":"k\\u0000ü","ts":"2026-12-05T00:00:00Z","channel":"b","data":{"s":"\\u00e9"}},' +
        '{"type":"u","data":{"s":"no channel"}},{"type":"u","channel":"c","data":{"s":"é 𝄞"},"ts":17},' +
        '{"type":"t","channel":"d","data":{"s":"',
    ),
    Buffer.from("ÿÃ"),
    Buffer.from('"}}]'),
  ]);
  await ingest(body);
  const { records, messages } = fannedOut as NonNullable<typeof fannedOut>;
  expect(records.map((record) => record.channel)).toEqual(["a", "b", undefined, "c", "d"]);
  records.forEach((record, i) => {
    const message = messages[i] as RecordMessage;
    if (record.channel === undefined) {
      expect(message.dataStart).toBe(-1);
      return;
    }
    const data = message.valueBytes.subarray(message.dataStart, message.dataEnd);
    expect(data.equals(Buffer.from(record.dataJson))).toBe(true);
  });
});
