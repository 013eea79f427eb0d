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
});
