import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { decodeBody, type RawRecord } from "../../../src/features/ingest/body.ts";
import { TOO_DEEP_REASON } from "../../../src/lib/json-scan.ts";

const LIMITS = { maxBytes: 1024 * 1024, maxRecords: 1000 };
const bytes = (text: string) => new TextEncoder().encode(text);
const parsed = (value: unknown, dataJson?: string, tsJson?: string): RawRecord => ({
  ok: true,
  value,
  dataJson,
  tsJson,
});

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
      parsed({ a: 1 }),
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
      parsed({ a: 1 }),
      { ok: false, reason: "malformed JSON line", code: "malformed_json" },
      parsed({ a: 3 }),
    ]);
  });

  test("gzip is decoded, and a gzip bomb is cut at the limit", async () => {
    const packed = gzipSync(bytes('[{"a":1}]'));
    expect(await decodeBody(packed, "application/json", "gzip", LIMITS)).toEqual([parsed({ a: 1 })]);
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

  test("data and ts keep the exact bytes the client sent, numbers beyond 2^53 included", async () => {
    const body = '[{"type":"t","ts":1700000000123456789,"data":{"n":9007199254740993, "f":1.50,"e":1E2}}]';
    const [record] = await decodeBody(bytes(body), "application/json", undefined, LIMITS);
    expect(record).toMatchObject({
      ok: true,
      dataJson: '{"n":9007199254740993, "f":1.50,"e":1E2}',
      tsJson: "1700000000123456789",
    });
    const line = await decodeBody(
      bytes('{"data" : [ 12345678901234567890 ] }\n'),
      "application/x-ndjson",
      undefined,
      LIMITS,
    );
    expect(line[0]).toMatchObject({ dataJson: "[ 12345678901234567890 ]" });
  });

  test("a key spelled with escapes is the same key: twice, it refuses the record on its own", async () => {
    const body = '[{"d\\u0061ta":{"a":1},"data":{"b":2}},{"data":{"amount":-5,"amount":1}},{"data":{}}]';
    const records = await decodeBody(bytes(body), "application/json", undefined, LIMITS);
    expect(records).toEqual([
      { ok: false, reason: 'duplicate key "data"', code: "duplicate_key" },
      { ok: false, reason: 'duplicate key "amount"', code: "duplicate_key" },
      parsed({ data: {} }, "{}"),
    ]);
    const [escaped] = await decodeBody(
      bytes('{"d\\u0061ta":{"a":1}}'),
      "application/json",
      undefined,
      LIMITS,
    );
    expect(escaped).toMatchObject({ dataJson: '{"a":1}' });
  });

  test("a record nested too deep is refused on its own, and the others go on", async () => {
    const deep = `{"type":"t","data":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    const records = await decodeBody(bytes(`[${deep},{"data":{}}]`), "application/json", undefined, LIMITS);
    expect(records).toEqual([
      { ok: false, reason: TOO_DEEP_REASON, code: "too_deep" },
      parsed({ data: {} }, "{}"),
    ]);
    const lines = await decodeBody(bytes(`${deep}\n{"data":{}}`), "application/x-ndjson", undefined, LIMITS);
    expect(lines).toEqual([
      { ok: false, reason: TOO_DEEP_REASON, code: "too_deep" },
      parsed({ data: {} }, "{}"),
    ]);
    expect(await codeOf(decodeBody(bytes(`${deep}]`), "application/json", undefined, LIMITS))).toBe(
      "malformed_json",
    );
  });

  test("a body of bad NDJSON lines: past maxRecords it is a 413, all-bad leading lines a 400", async () => {
    const junk = "not json\n".repeat(200_000);
    expect(await codeOf(decodeBody(bytes(junk), "application/x-ndjson", undefined, LIMITS))).toBe(
      "malformed_json",
    );
    const mixed = `{"a":1}\n${junk}`;
    expect(await codeOf(decodeBody(bytes(mixed), "application/x-ndjson", undefined, LIMITS))).toBe(
      "payload_too_large",
    );
  });

  test("a UTF-8 byte order mark is ignored, as TextDecoder did", async () => {
    const body = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes('{"a":"é"}')]);
    expect(await decodeBody(body, "application/json", undefined, LIMITS)).toEqual([parsed({ a: "é" })]);
  });
});
