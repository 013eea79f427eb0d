import { describe, expect, test } from "bun:test";
import { normalizeRecord } from "../../../src/features/ingest/record.ts";
import type { SchemaValidator } from "../../../src/ports/schemas.ts";

const schemas: SchemaValidator = { validate: () => ({ ok: true }) } as unknown as SchemaValidator;
const normalize = (members: Record<string, unknown>) =>
  normalizeRecord({ type: "click", data: {}, ...members }, undefined, undefined, "acme", "now", schemas);

describe("normalizeRecord", () => {
  test("an id or key holding a lone surrogate is refused: UTF-8 cannot carry it, so every such key was the same Kafka key (U+FFFD)", () => {
    for (const text of ["\ud800", "a\udfffb", "\udc00\ud800", "x\ud83d"]) {
      expect(normalize({ key: text })).toEqual({
        ok: false,
        reason: '"key" must be well-formed Unicode: it holds a lone surrogate, which UTF-8 cannot carry',
        code: "invalid_record",
      });
      expect(normalize({ id: text })).toMatchObject({ ok: false, code: "invalid_record" });
      expect(Buffer.from(text).toString()).not.toBe(text);
    }
    // A pair is one character (U+1F600), other characters are as they come (NUL included: UTF-8 carries it).
    for (const text of ["\ud83d\ude00", "é", "a\u0000b", "\uffff"]) {
      const result = normalize({ key: text, id: text });
      expect(result).toMatchObject({ ok: true, record: { key: text, id: text } });
    }
  });

  test("a ts past a double's range (1e400) is refused naming the range, not as a ts of the wrong type; other numbers and strings are taken", () => {
    expect(normalize({ ts: Number.POSITIVE_INFINITY })).toEqual({
      ok: false,
      reason: '"ts" must be a string or a number of at most about 1.8e308 (a double)',
      code: "invalid_record",
    });
    expect(normalize({ ts: true })).toMatchObject({ ok: false, code: "invalid_record" });
    for (const ts of [0, 1733443200000, 1.5e300, "2026-12-06T00:00:00Z", "whenever"])
      expect(normalize({ ts })).toMatchObject({ ok: true });
  });

  test("optional members sent as null are absent (Python's None): an id is generated, no ts, channel or key; a null data is refused", () => {
    const result = normalize({ id: null, ts: null, channel: null, key: null });
    expect(result.ok).toBe(true);
    const record = (result as unknown as { record: Record<string, unknown> }).record;
    expect(record.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(Object.keys(record).sort()).toEqual(["dataJson", "id", "receivedAt", "tenant", "type"]);
    expect(normalize({ data: null })).toMatchObject({ ok: false, code: "invalid_record" });
    expect(normalize({ type: null })).toMatchObject({ ok: false, code: "invalid_record" });
  });
});
