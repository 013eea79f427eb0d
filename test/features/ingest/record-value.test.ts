import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type EventRecord, jsonString } from "../../../src/domain/record.ts";
import { RecordValues } from "../../../src/features/ingest/record-value.ts";

/** The value's text as the gateway always wrote it: `data` and `ts` as sent, ids and keys as JSON.stringify writes them. */
function reference(record: EventRecord): string {
  let value = `{"id":${JSON.stringify(record.id)},"type":"${record.type}"`;
  if (record.tsJson !== undefined) value += `,"ts":${record.tsJson}`;
  if (record.channel !== undefined) value += `,"channel":"${record.channel}"`;
  if (record.key !== undefined) value += `,"key":${JSON.stringify(record.key)}`;
  return `${value},"data":${record.dataJson},"tenant":"${record.tenant}","receivedAt":"${record.receivedAt}"}`;
}

/**
 * The bytes of `records`' values (one request's: the first one's tenant and
 * receivedAt), each measured with `dataBytes` (its data's length, or -1);
 * answers each one's bytes.
 */
function written(records: EventRecord[], dataBytes: (record: EventRecord) => number = () => -1): Buffer[] {
  const first = records[0] as EventRecord;
  const values = new RecordValues(first.tenant, first.receivedAt);
  const spans = records.map((record) => {
    const start = values.length;
    const idGenerated = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(record.id);
    const length = values.measure(record, dataBytes(record), idGenerated);
    return [start, values.add(record, length, idGenerated)] as const;
  });
  const bytes = values.write();
  expect(bytes.length).toBe(values.length);
  return spans.map(([start, end]) => bytes.subarray(start, end));
}

const text = fc.oneof(
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: "binary" }),
  fc.constantFrom("", '"', "\\", "\u0000", "\u001f", "\u007f", "\ud800", "a\udc00b", "😀", "\u2028"),
);
const ascii = fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/);
const record = fc.record(
  {
    id: fc.oneof(text, fc.uuid({ version: 7 })),
    type: ascii,
    tsJson: fc.oneof(
      fc.constant("1733270400123"),
      fc.string({ unit: "grapheme" }).map((s) => JSON.stringify(s)),
    ),
    channel: ascii,
    key: text,
    dataJson: fc.jsonValue().map((value) => JSON.stringify({ value })),
    tenant: fc.constant<string>("ténant"),
    receivedAt: fc.constant("2026-12-04T00:00:00.000Z"),
  },
  { requiredKeys: ["id", "type", "dataJson", "tenant", "receivedAt"] },
);

describe("record values", () => {
  test("ids and keys are written as JSON.stringify writes them, whatever they hold", () => {
    fc.assert(
      fc.property(text, text, (id, key) => {
        expect(jsonString(id)).toBe(JSON.stringify(id));
        const [value] = written([
          {
            id,
            key,
            type: "t",
            dataJson: '{"a":1}',
            tenant: "acme",
            receivedAt: "2026-12-04T00:00:00.000Z",
          },
        ]) as [Buffer];
        expect(JSON.parse(value.toString())).toEqual({
          id,
          type: "t",
          key,
          data: { a: 1 },
          tenant: "acme",
          receivedAt: "2026-12-04T00:00:00.000Z",
        });
        expect(value.toString()).toBe(
          `{"id":${JSON.stringify(id)},"type":"t","key":${JSON.stringify(key)},"data":{"a":1},"tenant":"acme","receivedAt":"2026-12-04T00:00:00.000Z"}`,
        );
      }),
      { numRuns: 2000 },
    );
  });

  test("each value's bytes are the UTF-8 of its text, measured exactly, ASCII or not, with its data's length given or measured", () => {
    fc.assert(
      fc.property(
        fc.array(record, { minLength: 1, maxLength: 5 }),
        fc.constantFrom("acme", "ténant"),
        (records, tenant) => {
          for (const record of records) record.tenant = tenant;
          const expected = records.map((record) => Buffer.from(reference(record)));
          for (const value of [
            written(records),
            // The length of an ASCII data's bytes in the body, as the scanner gives it.
            written(records, (record) =>
              Buffer.byteLength(record.dataJson) === record.dataJson.length ? record.dataJson.length : -1,
            ),
          ]) {
            expect(value.map((bytes) => bytes.toString("hex"))).toEqual(
              expected.map((bytes) => bytes.toString("hex")),
            );
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
