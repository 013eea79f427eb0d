import { describe, expect, test } from "bun:test";
import { decodeBody } from "../../../src/features/ingest/body.ts";
import { binaryCloudEvent } from "../../../src/features/ingest/cloudevents.ts";
import type { HttpRequest } from "../../../src/ports/transport.ts";
import { fakeRequest } from "../../support/http.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const LIMITS = { maxBytes: 1 << 20, maxRecords: 100 };
const EVENT = { specversion: "1.0", type: "click", source: "/s", id: "e1" };

function headers(values: Record<string, string>): HttpRequest {
  return fakeRequest("POST", "/v1/events", values);
}

describe("CloudEvents bodies", () => {
  test("a structured event becomes a record with its attributes as ce_* headers, datacontenttype included", async () => {
    const body = JSON.stringify({
      ...EVENT,
      time: "2026-01-01T00:00:00Z",
      ext1: 7,
      datacontenttype: "application/vnd.shop+json; charset=utf-8",
      data: { element: "x" },
    });
    const [record] = await decodeBody(
      bytes(body),
      "application/cloudevents+json; charset=utf-8",
      undefined,
      LIMITS,
    );
    expect(record).toEqual({
      ok: true,
      value: { type: "click", id: "e1", ts: "2026-01-01T00:00:00Z", data: { element: "x" } },
      dataJson: '{"element":"x"}',
      tsJson: '"2026-01-01T00:00:00Z"',
      headers: {
        ce_specversion: "1.0",
        ce_type: "click",
        ce_source: "/s",
        ce_id: "e1",
        ce_time: "2026-01-01T00:00:00Z",
        ce_ext1: "7",
        ce_datacontenttype: "application/vnd.shop+json; charset=utf-8",
      },
      idSource: "/s",
    });
  });

  test("the traceparent and tracestate extension attributes are checked as W3C Trace Context headers: invalid ones are dropped, a later version goes on as 00", async () => {
    const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const events = [
      { traceparent: parent, tracestate: "vendor=1" },
      { traceparent: "not a traceparent", tracestate: "vendor=1" },
      { traceparent: "00-00000000000000000000000000000000-b7ad6b7169203331-01" },
      { traceparent: parent.toUpperCase() },
      { traceparent: `00${parent.slice(2)}-extra` },
      { traceparent: `01${parent.slice(2)}-more-fields` },
      { traceparent: parent, tracestate: "=no key,a=1,a=2" },
      { traceparent: 7 },
      { traceparent: `${parent}\u0001`, tracestate: `a=${"x".repeat(5000)}` },
    ];
    const body = JSON.stringify(
      events.map((trace, index) => ({ ...EVENT, id: `t${index}`, ...trace, data: {} })),
    );
    const records = await decodeBody(bytes(body), "application/cloudevents-batch+json", undefined, LIMITS);
    const traces = records.map((record) => {
      if (!record.ok) return record.reason;
      const { ce_traceparent, ce_tracestate } = record.headers ?? {};
      return { ce_traceparent, ce_tracestate };
    });
    expect(traces).toEqual([
      { ce_traceparent: parent, ce_tracestate: "vendor=1" },
      { ce_traceparent: undefined, ce_tracestate: undefined },
      { ce_traceparent: undefined, ce_tracestate: undefined },
      { ce_traceparent: undefined, ce_tracestate: undefined },
      { ce_traceparent: undefined, ce_tracestate: undefined },
      { ce_traceparent: parent, ce_tracestate: undefined },
      { ce_traceparent: parent, ce_tracestate: undefined },
      { ce_traceparent: undefined, ce_tracestate: undefined },
      { ce_traceparent: undefined, ce_tracestate: undefined },
    ]);
    // Binary mode: the same checks on the ce-* headers.
    const binary = binaryCloudEvent(
      headers({
        "ce-specversion": "1.0",
        "ce-type": "click",
        "ce-source": "/s",
        "ce-id": "b",
        "ce-traceparent": "junk",
      }),
    );
    const [record] = await decodeBody(bytes("{}"), "application/json", undefined, LIMITS, binary);
    expect(record).toMatchObject({ ok: true });
    expect((record as { headers?: Record<string, string> }).headers?.ce_traceparent).toBeUndefined();
  });

  test("a null attribute is an unset one (JSON format 2.2); a null data is kept, for the record check to refuse", async () => {
    const body = JSON.stringify([
      {
        ...EVENT,
        subject: null,
        time: null,
        datacontenttype: null,
        dataschema: null,
        partitionkey: null,
        data_base64: null,
        unsetextension: null,
        data: { element: "x" },
      },
      { ...EVENT, id: null, data: { element: "x" } },
      { ...EVENT, data: null },
    ]);
    const [unset, noId, nullData] = await decodeBody(
      bytes(body),
      "application/cloudevents-batch+json",
      undefined,
      LIMITS,
    );
    expect(unset).toEqual({
      ok: true,
      value: { type: "click", id: "e1", data: { element: "x" } },
      dataJson: '{"element":"x"}',
      tsJson: undefined,
      headers: { ce_specversion: "1.0", ce_type: "click", ce_source: "/s", ce_id: "e1" },
      idSource: "/s",
    });
    expect(noId).toMatchObject({ ok: false, reason: 'CloudEvent: "id" must be a non-empty string' });
    expect(nullData).toMatchObject({ ok: true, value: { data: null } });
  });

  test("each event of a batch is refused on its own; the batch must be an array, the event an object", async () => {
    const body = JSON.stringify([
      { ...EVENT, data: { element: "x" } },
      { ...EVENT, specversion: "0.3" },
      { ...EVENT, data_base64: "AAAA" },
      { ...EVENT, time: "yesterday" },
      // Date.parse takes these; none is an RFC 3339 timestamp (no time, no offset, RFC 1123, no such day).
      { ...EVENT, time: "1" },
      { ...EVENT, time: "2026-01-01" },
      { ...EVENT, time: "2026-01-01T00:00:00" },
      { ...EVENT, time: "Thu, 01 Jan 2026 00:00:00 GMT" },
      { ...EVENT, time: "2026-02-30T00:00:00Z" },
      // A schema's date-time format takes these too; RFC 3339 has a T and an offset of ±hh:mm.
      { ...EVENT, time: "2026-01-01 00:00:00Z" },
      { ...EVENT, time: "2026-01-01T00:00:00+01" },
      { ...EVENT, time: "2026-01-01T00:00:00+0100" },
      // RFC 3339 allows fractions of any length, lower-case t and z, and a leap second.
      { ...EVENT, time: "2026-01-01T00:00:00.123456789+02:00", data: { element: "x" } },
      { ...EVENT, time: "2016-12-31t23:59:60z", data: { element: "x" } },
      { ...EVENT, id: "" },
      { ...EVENT, datacontenttype: "text/plain", data: "x" },
      // Optional attributes that, when present, must be non-empty Strings (spec 1.0.2).
      { ...EVENT, subject: "" },
      { ...EVENT, subject: 5 },
      { ...EVENT, dataschema: "" },
    ]);
    const records = await decodeBody(bytes(body), "application/cloudevents-batch+json", undefined, LIMITS);
    expect(records.map((record) => (record.ok ? "ok" : record.reason))).toEqual([
      "ok",
      'CloudEvent: "specversion" must be "1.0"',
      'CloudEvent: "data_base64" is not carried: send data as a JSON object',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      'CloudEvent: "time" must be an RFC 3339 timestamp',
      "ok",
      "ok",
      'CloudEvent: "id" must be a non-empty string',
      'CloudEvent: "datacontenttype" must be application/json (data is carried as a JSON object)',
      'CloudEvent: "subject" must be a non-empty string when present',
      'CloudEvent: "subject" must be a non-empty string when present',
      'CloudEvent: "dataschema" must be a non-empty string when present',
    ]);
    await expect(
      decodeBody(bytes("{}"), "application/cloudevents-batch+json", undefined, LIMITS),
    ).rejects.toThrow("a CloudEvents batch is a JSON array of events");
    await expect(decodeBody(bytes("[]"), "application/cloudevents+json", undefined, LIMITS)).rejects.toThrow(
      "a structured CloudEvent is a JSON object",
    );
  });

  test("binary mode: percent-decoded ce-* headers, the whole body as data, byte for byte", async () => {
    const attributes = binaryCloudEvent(
      headers({ "ce-specversion": "1.0", "ce-type": "click", "ce-source": "/a%20b", "ce-id": "e2" }),
    );
    expect(attributes).toEqual({
      attributes: { specversion: "1.0", type: "click", source: "/a b", id: "e2" },
    });
    expect(binaryCloudEvent(headers({ "content-type": "application/json" }))).toBeUndefined();
    const data = '{"element":"y","n":9007199254740993}';
    const [record] = await decodeBody(bytes(data), "application/json", undefined, LIMITS, attributes);
    expect(record).toMatchObject({
      ok: true,
      dataJson: data,
      headers: { ce_source: "/a b", ce_id: "e2", ce_datacontenttype: "application/json" },
    });
    // The Content-Type is the event's datacontenttype (HTTP binding 3.1.1): a ce-datacontenttype header is not.
    const [plain] = await decodeBody(bytes(data), "text/plain+json", undefined, LIMITS, {
      attributes: { ...attributes?.attributes, datacontenttype: "application/other+json" },
    });
    expect(plain).toMatchObject({ ok: true, headers: { ce_datacontenttype: "text/plain+json" } });
    const [wrong] = await decodeBody(bytes(data), "application/json", undefined, LIMITS, {
      attributes: { ...attributes?.attributes, specversion: "2" },
    });
    expect(wrong).toMatchObject({ ok: false, code: "invalid_record" });
  });

  test("binary mode: every ce-* header is an attribute, extensions included; a name that is no attribute name is not", async () => {
    const attributes = binaryCloudEvent(
      headers({
        "ce-specversion": "1.0",
        "ce-type": "click",
        "ce-source": "/s",
        "ce-id": "e3",
        "ce-region": "eu%2Dwest%201",
        "ce-comexampleextension1": "value",
        "ce-my-extension": "not an attribute name",
        "content-type": "application/json",
        "x-ce-id": "other",
      }),
    );
    expect(attributes?.attributes).toEqual({
      specversion: "1.0",
      type: "click",
      source: "/s",
      id: "e3",
      region: "eu-west 1",
      comexampleextension1: "value",
    });
    const [record] = await decodeBody(bytes("{}"), "application/json", undefined, LIMITS, attributes);
    expect(record).toMatchObject({
      ok: true,
      headers: { ce_id: "e3", ce_region: "eu-west 1", ce_comexampleextension1: "value" },
    });
  });

  test("binary mode: a header value is unquoted (RFC 7230 quoted-string), then percent-decoded once; one that is not UTF-8 refuses the event", async () => {
    // HTTP binding 1.0.2, 3.1.3.2: double-quoted values MUST be supported (older senders), then one round of percent-decoding.
    const quoted = binaryCloudEvent(
      headers({
        "ce-specversion": '"1.0"',
        "ce-type": "click",
        "ce-source": '"my \\"quoted\\" source"',
        "ce-id": '"e%204"',
        "ce-subject": "Euro%20%e2%82%ac%20%F0%9F%98%80",
        "ce-region": "%2541",
      }),
    );
    expect(quoted).toEqual({
      attributes: {
        specversion: "1.0",
        type: "click",
        source: 'my "quoted" source',
        id: "e 4",
        subject: "Euro \u20ac \u{1f600}",
        region: "%41",
      },
    });
    const [record] = await decodeBody(bytes("{}"), "application/json", undefined, LIMITS, quoted);
    expect(record).toMatchObject({ ok: true, headers: { ce_source: 'my "quoted" source', ce_id: "e 4" } });
    // "encoded byte sequences which are invalid in UTF-8 MUST be rejected": an overlong space, a lone byte,
    // an encoded surrogate; and what is no percent-encoding or no quoted-string at all.
    for (const value of ["%C0%A0", "caf%E9", "%ED%A0%80", "100%", "%4", "%zz", '"open', '"a"b"']) {
      const event = binaryCloudEvent(
        headers({
          "ce-specversion": "1.0",
          "ce-type": "click",
          "ce-source": "/s",
          "ce-id": "e5",
          "ce-subject": value,
        }),
      );
      expect(event?.problem).toBe(
        "header ce-subject is not a percent-encoded UTF-8 value (HTTP binding 3.1.3.2)",
      );
      const [refused] = await decodeBody(bytes("{}"), "application/json", undefined, LIMITS, event);
      expect(refused).toEqual({
        ok: false,
        reason: "CloudEvent: header ce-subject is not a percent-encoded UTF-8 value (HTTP binding 3.1.3.2)",
        code: "invalid_record",
      });
    }
  });

  test("an attribute holding a character a CloudEvents String excludes is refused: control characters, noncharacters, lone surrogates", async () => {
    // Spec 1.0.2, Type System, String: "\uDEAD" is invalid, "\uD800\uDEAD" legal. They would reach Kafka headers
    // as sent (NUL, DEL) or, for a lone surrogate, as U+FFFD.
    for (const [name, text] of <Array<[string, string]>>[
      ["subject", "a\\u0000b"],
      ["subject", "line\\nbreak"],
      ["source", "\\u007f"],
      ["id", "\\u0085"],
      ["subject", "\\ufdd0"],
      ["region", "\\uffff"],
      ["subject", "\\udead"],
      ["type", "click\\ud800"],
    ]) {
      const members = { specversion: "1.0", type: "click", source: "/s", id: "e9", data: {}, [name]: "@" };
      const body = JSON.stringify(members).replace('"@"', `"${text}"`);
      const [record] = await decodeBody(bytes(body), "application/cloudevents+json", undefined, LIMITS);
      expect(record).toEqual({
        ok: false,
        reason: `CloudEvent: "${name}" holds a control character, a noncharacter or a lone surrogate, which a CloudEvents String excludes`,
        code: "invalid_record",
      });
    }
    // Binary mode: a percent-encoded control character is one too.
    const binary = binaryCloudEvent(
      headers({
        "ce-specversion": "1.0",
        "ce-type": "click",
        "ce-source": "/s",
        "ce-id": "e9",
        "ce-subject": "a%00b",
      }),
    );
    const [fromHeaders] = await decodeBody(bytes("{}"), "application/json", undefined, LIMITS, binary);
    expect(fromHeaders).toMatchObject({ ok: false, code: "invalid_record" });
    // A pair, other non-ASCII text, and control characters inside data are fine.
    const good = `{"specversion":"1.0","type":"click","source":"/s","id":"e9","subject":"\\ud83d\\ude00 caf\\u00e9","data":{"t":"\\u0000"}}`;
    const [kept] = await decodeBody(bytes(good), "application/cloudevents+json", undefined, LIMITS);
    expect(kept).toMatchObject({ ok: true, headers: { ce_subject: "\u{1f600} café" } });
  });

  test("no attribute is dropped unsaid after a 202: a name past 20 characters is carried, a value of no CloudEvents type or too long refuses the event", async () => {
    // Spec 1.0.2: names past 20 characters are only discouraged (SHOULD NOT), and SDKs send them.
    const long = "comexamplelongextensionname";
    const body = JSON.stringify([
      {
        ...EVENT,
        [long]: "v",
        min: -(2 ** 31),
        max: 2 ** 31 - 1,
        flag: false,
        fits: "x".repeat(4096),
        data: {},
      },
      { ...EVENT, ratio: 1.5, data: {} },
      { ...EVENT, count: 2 ** 31, data: {} },
      { ...EVENT, nested: { a: 1 }, data: {} },
      { ...EVENT, list: ["a"], data: {} },
      { ...EVENT, huge: "x".repeat(4097), data: {} },
      { ...EVENT, source: `/${"x".repeat(4096)}`, data: {} },
    ]);
    const records = await decodeBody(bytes(body), "application/cloudevents-batch+json", undefined, LIMITS);
    expect(records[0]).toMatchObject({
      ok: true,
      headers: { [`ce_${long}`]: "v", ce_min: "-2147483648", ce_max: "2147483647", ce_flag: "false" },
    });
    expect((records[0] as { headers: Record<string, string> }).headers.ce_fits).toHaveLength(4096);
    expect(records.slice(1).map((record) => (record.ok ? "ok" : record.reason))).toEqual([
      'CloudEvent: "ratio" must be a CloudEvents Integer (-2147483648 to 2147483647) when it is a number',
      'CloudEvent: "count" must be a CloudEvents Integer (-2147483648 to 2147483647) when it is a number',
      'CloudEvent: "nested" must be a String, a Boolean or an Integer: CloudEvents attributes have no other type',
      'CloudEvent: "list" must be a String, a Boolean or an Integer: CloudEvents attributes have no other type',
      'CloudEvent: "huge" is longer than 4096 characters',
      'CloudEvent: "source" is longer than 4096 characters',
    ]);
    // Binary mode: a long name is an attribute too, a long value refuses the event.
    const binary = binaryCloudEvent(
      headers({
        "ce-specversion": "1.0",
        "ce-type": "click",
        "ce-source": "/s",
        "ce-id": "e10",
        [`ce-${long}`]: "v",
      }),
    );
    const [carried] = await decodeBody(bytes("{}"), "application/json", undefined, LIMITS, binary);
    expect(carried).toMatchObject({ ok: true, headers: { [`ce_${long}`]: "v" } });
    const tooLong = { attributes: { ...binary?.attributes, big: "x".repeat(5000) } };
    const [refused] = await decodeBody(bytes("{}"), "application/json", undefined, LIMITS, tooLong);
    expect(refused).toMatchObject({ ok: false, code: "invalid_record" });
  });

  test("the Content-Type decides the mode: a structured event with ce-* headers is read as structured", async () => {
    // Binding 3.2.3: a structured event MAY carry the binary mode's headers as well.
    const attributes = binaryCloudEvent(
      headers({ "ce-specversion": "1.0", "ce-type": "other", "ce-source": "/h", "ce-id": "h1" }),
    );
    const body = JSON.stringify({ ...EVENT, data: { element: "x" } });
    for (const contentType of ["application/cloudevents+json", "application/cloudevents-batch+json"]) {
      const text = contentType.includes("batch") ? `[${body}]` : body;
      const [record] = await decodeBody(bytes(text), contentType, undefined, LIMITS, attributes);
      expect(record).toMatchObject({
        ok: true,
        value: { type: "click", id: "e1", data: { element: "x" } },
        dataJson: '{"element":"x"}',
        headers: { ce_type: "click", ce_source: "/s", ce_id: "e1" },
      });
    }
  });
});
