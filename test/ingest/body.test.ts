import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { decodeBody } from "../../src/ingest/body.ts";

const LIMITS = { maxBytes: 1024 * 1024, maxRecords: 1000 };
const bytes = (text: string) => new TextEncoder().encode(text);

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

describe("decodeBody", () => {
  test("one object, an array, and NDJSON give one raw record per item", async () => {
    expect(await decodeBody(bytes('{"a":1}'), "application/json", undefined, LIMITS)).toEqual([
      { ok: true, value: { a: 1 } },
    ]);
    expect(
      (await decodeBody(bytes('[{"a":1},{"a":2}]'), "application/json; charset=utf-8", undefined, LIMITS))
        .length,
    ).toBe(2);
    const ndjson = await decodeBody(
      bytes('{"a":1}\n\nnot json\n{"a":3}\n'),
      "application/x-ndjson",
      undefined,
      LIMITS,
    );
    expect(ndjson).toEqual([
      { ok: true, value: { a: 1 } },
      { ok: false, reason: "malformed JSON line" },
      { ok: true, value: { a: 3 } },
    ]);
  });

  test("gzip is decoded, and a gzip bomb is cut at the limit", async () => {
    const packed = gzipSync(bytes('[{"a":1}]'));
    expect(await decodeBody(packed, "application/json", "gzip", LIMITS)).toEqual([
      { ok: true, value: { a: 1 } },
    ]);
    const bomb = gzipSync(bytes(`["${"x".repeat(2 * 1024 * 1024)}"]`));
    expect(await codeOf(decodeBody(bomb, "application/json", "gzip", LIMITS))).toBe("payload_too_large");
  });

  test("malformed JSON, wrong type, empty batches and too many records are refused with stable codes", async () => {
    expect(await codeOf(decodeBody(bytes("{nope"), "application/json", undefined, LIMITS))).toBe(
      "malformed_json",
    );
    expect(await codeOf(decodeBody(bytes("42"), "application/json", undefined, LIMITS))).toBe(
      "malformed_json",
    );
    expect(
      await codeOf(decodeBody(bytes("a=b"), "application/x-www-form-urlencoded", undefined, LIMITS)),
    ).toBe("unsupported_media_type");
    expect(await codeOf(decodeBody(bytes("{}"), undefined, undefined, LIMITS))).toBe(
      "unsupported_media_type",
    );
    expect(await codeOf(decodeBody(bytes("{}"), "application/json", "br", LIMITS))).toBe(
      "unsupported_media_type",
    );
    expect(await codeOf(decodeBody(bytes("[]"), "application/json", undefined, LIMITS))).toBe("bad_request");
    const many = JSON.stringify(Array.from({ length: 3 }, () => ({})));
    expect(
      await codeOf(decodeBody(bytes(many), "application/json", undefined, { ...LIMITS, maxRecords: 2 })),
    ).toBe("payload_too_large");
  });
});
