import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { decodeBody, type RawRecord, sentAs } from "../../../src/features/ingest/body.ts";
import { TOO_DEEP_REASON } from "../../../src/lib/json-scan.ts";

const LIMITS = { maxBytes: 1024 * 1024, maxRecords: 1000 };
const bytes = (text: string) => new TextEncoder().encode(text);
/** A plain record as decodeBody gives it: the members ingest reads, and where its whole text lies. */
const parsed = (sent: Record<string, unknown>, dataJson?: string, tsJson?: string): RawRecord => ({
  ok: true,
  value: {
    type: sent.type,
    id: sent.id,
    ts: sent.ts,
    channel: sent.channel,
    key: sent.key,
    data: sent.data,
  },
  dataJson,
  tsJson,
  source: expect.any(Buffer),
  sourceStart: expect.any(Number),
  sourceEnd: expect.any(Number),
  dataBytes: dataJson !== undefined && Buffer.byteLength(dataJson) === dataJson.length ? dataJson.length : -1,
});
/** What a dead letter of each accepted item would carry. */
const sent = (records: RawRecord[]) => records.map((raw) => (raw.ok ? JSON.parse(sentAs(raw)) : raw.code));

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
    expect(sent(ndjson)).toEqual([{ a: 1 }, "malformed_json", { a: 3 }]);
  });

  test("gzip is decoded, and a gzip bomb is cut at the limit", async () => {
    const packed = gzipSync(bytes('[{"a":1}]'));
    expect(await decodeBody(packed, "application/json", "gzip", LIMITS)).toEqual([parsed({ a: 1 })]);
    const bomb = gzipSync(bytes(`["${"x".repeat(2 * 1024 * 1024)}"]`));
    expect(await codeOf(decodeBody(bomb, "application/json", "gzip", LIMITS))).toBe("payload_too_large");
  });

  test("a content coding other than gzip is a 415 naming gzip in Accept-Encoding (RFC 9110 §15.5.16)", async () => {
    const refused = await decodeBody(bytes("{}"), "application/json", "br", LIMITS).catch((error) => error);
    expect(refused).toMatchObject({ code: "unsupported_media_type", headers: { "accept-encoding": "gzip" } });
  });

  test("malformed JSON, wrong type, empty batches and too many records are refused with stable codes", async () => {
    expect(await codeOf(decodeBody(bytes("{nope"), "application/json", undefined, LIMITS))).toBe(
      "malformed_json",
    );
    expect(await codeOf(decodeBody(bytes("hello"), "application/json", undefined, LIMITS))).toBe(
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

  test("JSON that is not an object or an array is a bad_request (as on /v1/publish), not malformed_json", async () => {
    for (const body of ["42", ' "x" ', "null", "true"]) {
      expect(await codeOf(decodeBody(bytes(body), "application/json", undefined, LIMITS))).toBe(
        "bad_request",
      );
    }
    expect(await codeOf(decodeBody(bytes("[]"), "application/cloudevents+json", undefined, LIMITS))).toBe(
      "bad_request",
    );
    expect(
      await codeOf(
        decodeBody(bytes('{"specversion":"1.0"}'), "application/cloudevents-batch+json", undefined, LIMITS),
      ),
    ).toBe("bad_request");
    for (const body of ["", "nope", "42 43", '"open']) {
      expect(await codeOf(decodeBody(bytes(body), "application/json", undefined, LIMITS))).toBe(
        "malformed_json",
      );
    }
    expect(await codeOf(decodeBody(bytes("[1,"), "application/cloudevents+json", undefined, LIMITS))).toBe(
      "malformed_json",
    );
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

  test("an ASCII data's length in UTF-8 is its bytes' count; one with a byte above 0x7f anywhere in it is measured later", async () => {
    const body = Buffer.concat([
      Buffer.from('[{"note":"\u00e9té","data":{"a":"x\\u00e9"}},{"data":{"b":"'),
      Buffer.from("é"),
      Buffer.from('"}},{"data":{"c":"'),
      Buffer.from("ü"),
      Buffer.from('"},"type":"t\u00e9"}]'),
    ]);
    const records = await decodeBody(body, "application/json", undefined, LIMITS);
    expect(records.map((raw) => (raw.ok ? [raw.dataJson, raw.dataBytes] : raw.code))).toEqual([
      ['{"a":"x\\u00e9"}', 15],
      ['{"b":"é"}', -1],
      ['{"c":"ü"}', -1],
    ]);
  });

  test("data and ts are their UTF-8 texts as sent, with non-ASCII bytes before, in or after them, with or without a channel", async () => {
    const items = [
      '{"note":"ü€😀","ts":"2026-12-07T05:00:00Z","data":{"a":"x"}}',
      '{"ts":"tüsday","data":{"b":"é😀","c":[1,2.50,"\\u00e9"]},"z":"ü"}',
      '{"channel":"room.1","ts":1.50,"data":{"d":"ü"}}',
      '{"channel":"room.1","ts":"2026-12-07T05:00:00Z","data":{"e":"ascii"}}',
      '{"data":{"f":"plain"},"ts":"2026-12-07T05:00:00.000Z","type":"tü"}',
    ];
    const records = await decodeBody(
      Buffer.from(`[${items.join(" , ")}]`),
      "application/json",
      undefined,
      LIMITS,
    );
    expect(records.map((raw) => (raw.ok ? [raw.dataJson, raw.tsJson] : raw.code))).toEqual([
      ['{"a":"x"}', '"2026-12-07T05:00:00Z"'],
      ['{"b":"é😀","c":[1,2.50,"\\u00e9"]}', '"tüsday"'],
      ['{"d":"ü"}', "1.50"],
      ['{"e":"ascii"}', '"2026-12-07T05:00:00Z"'],
      ['{"f":"plain"}', '"2026-12-07T05:00:00.000Z"'],
    ]);
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

  test("a body that is not UTF-8 is a 400; in NDJSON only its bad lines are refused", async () => {
    const bad = new Uint8Array([...bytes('{"type":"t","data":{"a":"'), 0xc3, ...bytes('"}}')]);
    expect(await codeOf(decodeBody(bad, "application/json", undefined, LIMITS))).toBe("malformed_json");
    expect(await codeOf(decodeBody(bad, "application/cloudevents+json", undefined, LIMITS))).toBe(
      "malformed_json",
    );
    const good = bytes('{"type":"t","data":{"a":"é"}}');
    const lines = new Uint8Array([...good, 0x0a, ...bad, 0x0a, ...good]);
    const records = await decodeBody(lines, "application/x-ndjson", undefined, LIMITS);
    expect(records.map((record) => record.ok)).toEqual([true, false, true]);
    expect(records[1]).toMatchObject({ ok: false, code: "malformed_json" });
    expect(sent(records.filter((record) => record.ok))).toEqual([
      { type: "t", data: { a: "é" } },
      { type: "t", data: { a: "é" } },
    ]);
  });

  test("what a dead letter carries is the record's text as sent, numbers included; a CloudEvent's record has its data as sent", async () => {
    const data = '{ "n" : 9007199254740993, "huge":1e400, "one":1.0, "e":"\\u00e9" }';
    const record = `{"type":"t", "other":[-0], "data":${data}}`;
    const [plain] = await decodeBody(bytes(`[${record}]`), "application/json", undefined, LIMITS);
    if (!plain?.ok) throw new Error("refused");
    expect(sentAs(plain)).toBe(record);
    const event = `{"specversion":"1.0","id":"e-1","source":"/s","type":"t","data":${data}}`;
    const [structured] = await decodeBody(bytes(event), "application/cloudevents+json", undefined, LIMITS);
    if (!structured?.ok) throw new Error("refused");
    expect(sentAs(structured)).toBe(`{"type":"t","id":"e-1","data":${data}}`);
    const [binary] = await decodeBody(bytes(data), "application/json", undefined, LIMITS, {
      attributes: { specversion: "1.0", id: "e-2", source: "/s", type: "t", time: "2026-01-01T00:00:00Z" },
    });
    if (!binary?.ok) throw new Error("refused");
    expect(sentAs(binary)).toBe(`{"type":"t","id":"e-2","ts":"2026-01-01T00:00:00Z","data":${data}}`);
  });

  test("a UTF-8 byte order mark is ignored, as TextDecoder did", async () => {
    const body = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes('{"type":"é","a":"é"}')]);
    const records = await decodeBody(body, "application/json", undefined, LIMITS);
    expect(records).toEqual([parsed({ type: "é" })]);
    expect(sent(records)).toEqual([{ type: "é", a: "é" }]);
  });

  test("channels repeated across a batch, more than the kept ones, escaped, long or not ASCII, are read as JSON.parse reads them", async () => {
    const channels = [
      ...Array.from({ length: 300 }, (_, i) => `room-${i % 150}`),
      "c",
      String.raw`c\u0031`,
      "é",
      "x".repeat(40),
      "x".repeat(32),
      "x".repeat(31),
      "",
    ];
    const body = `[${channels.map((channel) => `{"type":"t","channel":"${channel}","data":{}}`).join(",")}]`;
    const records = await decodeBody(bytes(body), "application/json", undefined, LIMITS);
    expect(
      records.map((record) => (record.ok ? (record.value as { channel?: unknown }).channel : undefined)),
    ).toEqual((JSON.parse(body) as Array<{ channel: string }>).map((record) => record.channel));
  });

  test("type, id, channel and key are read as JSON.parse reads them: escapes, other types, the last of a batch", async () => {
    const body = String.raw`[
      {"type":"page_view","id":"a\"b\u00e9","channel":"c","key":"k","ts":"x","data":{},"other":[1]},
      {"type":"page_view","id":7,"channel":null,"key":{"k":1},"ts":5,"data":{"n":1}},
      {"type":"page_viex","data":{}},
      {"type":"\u0070age_view","data":{}},
      {"type":"pagé","data":{}},
      {"type":"pagé","data":{}},
      {"type":12,"data":{}},
      [1, 2],
      "text"
    ]`;
    const records = await decodeBody(bytes(body), "application/json", undefined, LIMITS);
    const expected = JSON.parse(body) as Array<Record<string, unknown>>;
    expect(records.slice(0, 7)).toEqual(
      expected
        .slice(0, 7)
        .map((record) =>
          parsed(
            record,
            JSON.stringify(record.data),
            record.ts === undefined ? undefined : JSON.stringify(record.ts),
          ),
        ),
    );
    expect(records.slice(7)).toEqual([
      { ok: true, value: [1, 2], dataJson: undefined, tsJson: undefined },
      { ok: true, value: "text", dataJson: undefined, tsJson: undefined },
    ]);
    expect(sent(records)).toEqual(expected);
  });
});
