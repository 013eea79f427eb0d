import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { jsonString, recordValue } from "../../src/domain/record.ts";

describe("recordValue", () => {
  test("ids and keys are written as JSON.stringify writes them, whatever they hold", () => {
    const text = fc.oneof(
      fc.string({ unit: "grapheme" }),
      fc.string({ unit: "binary" }),
      fc.constantFrom("", '"', "\\", "\u0000", "\u001f", "\u007f", "\ud800", "a\udc00b", "😀", "\u2028"),
    );
    fc.assert(
      fc.property(text, text, (id, key) => {
        expect(jsonString(id)).toBe(JSON.stringify(id));
        const value = recordValue({
          id,
          key,
          type: "t",
          dataJson: '{"a":1}',
          tenant: "acme",
          receivedAt: "2026-12-04T00:00:00.000Z",
        });
        expect(JSON.parse(value)).toEqual({
          id,
          type: "t",
          key,
          data: { a: 1 },
          tenant: "acme",
          receivedAt: "2026-12-04T00:00:00.000Z",
        });
        expect(value).toBe(
          `{"id":${JSON.stringify(id)},"type":"t","key":${JSON.stringify(key)},"data":{"a":1},"tenant":"acme","receivedAt":"2026-12-04T00:00:00.000Z"}`,
        );
      }),
      { numRuns: 2000 },
    );
  });
});
