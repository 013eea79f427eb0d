import { fullFormats } from "ajv-formats/dist/formats.js";
import { traceparentOf, tracestateOf } from "../../http/trace-context.ts";
import type { HttpRequest } from "../../ports/transport.ts";
import type { RawRecord } from "./body.ts";

/**
 * CloudEvents 1.0 on `POST /v1/events` (HTTP protocol binding 1.0.2): a
 * structured event (`application/cloudevents+json`), a batch of them
 * (`application/cloudevents-batch+json`), or binary mode (the attributes in
 * `ce-*` headers, the body is `data`). Each event becomes a record: `type`,
 * `id`, `time` → `ts`, `data` (its exact bytes), `partitionkey` → `key`,
 * the extension `channel` → `channel` (fanned out as any record's); it is
 * then validated as any record. Its context attributes travel as Kafka
 * headers `ce_<name>` (the Kafka protocol binding's binary mode), `source`,
 * `subject` and `datacontenttype` included. The binding would map
 * `datacontenttype` to the record's `content-type`, but that header describes
 * the record's value, which is the gateway's JSON record around `data`, not
 * `data` alone: it stays `application/json`, and the event's own media type
 * (`application/vnd.shop+json`, a charset) travels as `ce_datacontenttype`.
 */

export const CLOUDEVENT_TYPE = "application/cloudevents+json";
export const CLOUDEVENT_BATCH_TYPE = "application/cloudevents-batch+json";

/** Context attributes of one event, by name, as strings. */
export type CloudEventAttributes = Record<string, string>;

/** Members of a structured event that are not attributes carried as headers. */
const NOT_HEADERS = new Set(["data", "data_base64"]);
/**
 * CloudEvents attribute names: lower-case letters and digits (spec 1.0.2,
 * "Attribute Naming Convention"). Past 20 characters a name is only
 * discouraged (SHOULD NOT), and SDKs send such names: they are attributes too.
 */
const ATTRIBUTE_NAME = /^[a-z0-9]+$/;
/** An attribute's value longer than this is refused, never written as a Kafka header nor dropped unsaid. */
const MAX_ATTRIBUTE_LENGTH = 4096;
/** The CloudEvents Integer type's range (spec 1.0.2, "Type System"). */
const MIN_INTEGER = -(2 ** 31);
const MAX_INTEGER = 2 ** 31 - 1;
/**
 * RFC 3339's `date-time` shape (section 5.6): `T` between date and time
 * (lower case allowed, a space is not), an offset `Z` or `±hh:mm`. The
 * schema format below checks the values (the date, a leap second) but also
 * takes a space, `+01` and `+0100`, which CloudEvents SDKs do not parse back.
 */
const RFC3339_SHAPE = /^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)$/;
/**
 * RFC 3339's values (offset required, the date and a leap second checked), as a
 * schema's `format: date-time` judges them; Date.parse would also take `1`,
 * `2020-01-01` or an RFC 1123 date, which are no CloudEvents Timestamp.
 */
const dateTime = fullFormats["date-time"] as { validate(text: string): boolean };

/** A binary-mode event's attributes, from its `ce-*` headers. */
export interface BinaryCloudEvent {
  attributes: CloudEventAttributes;
  /** Why a header's value cannot be read (HTTP binding 3.1.3.2), when one cannot: the event is refused. */
  problem?: string;
}

/**
 * The attributes of a binary-mode event, or undefined when the request is not
 * one (no `ce-specversion`): every `ce-<name>` header, extensions included
 * (HTTP binding 3.1.3), but those whose name is no attribute name.
 */
export function binaryCloudEvent(request: HttpRequest): BinaryCloudEvent | undefined {
  if (request.header("ce-specversion") === undefined) return undefined;
  const event: BinaryCloudEvent = { attributes: {} };
  for (const header of request.headerNames()) {
    if (!header.startsWith("ce-")) continue;
    const name = header.slice("ce-".length);
    const value = request.header(header);
    if (!ATTRIBUTE_NAME.test(name) || value === undefined) continue;
    const decoded = headerValue(value);
    if (decoded === undefined)
      event.problem ??= `header ${header} is not a percent-encoded UTF-8 value (HTTP binding 3.1.3.2)`;
    else event.attributes[name] = decoded;
  }
  return event;
}

const QUOTE = '"';
const BACKSLASH = "\\";
const HEX_PAIR = /^[0-9A-Fa-f]{2}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * An attribute's value from its header (HTTP binding 1.0.2, 3.1.3.2): a
 * double-quoted string is unquoted first (RFC 7230 3.2.6, its `\` escapes
 * undone; older senders quote), then one round of percent-decoding; undefined
 * when the value cannot be read so: a quote left open, a `%` without two hex
 * digits after it, or bytes that are not UTF-8 (`%C0%A0`, an overlong space,
 * which the binding says MUST be rejected). A value of neither is as sent.
 */
function headerValue(header: string): string | undefined {
  let text = header;
  if (text.startsWith(QUOTE)) {
    let unquoted = "";
    let closed = false;
    for (let at = 1; at < text.length; at++) {
      const char = text[at] as string;
      if (char === BACKSLASH) {
        if (at + 1 === text.length) return undefined;
        unquoted += text[++at];
      } else if (char === QUOTE) {
        if (at !== text.length - 1) return undefined;
        closed = true;
      } else unquoted += char;
    }
    if (!closed) return undefined;
    text = unquoted;
  }
  if (!text.includes("%")) return text;
  const bytes: number[] = [];
  for (let at = 0; at < text.length; at++) {
    const char = text[at] as string;
    if (char === "%") {
      const pair = text.slice(at + 1, at + 3);
      if (!HEX_PAIR.test(pair)) return undefined;
      bytes.push(Number.parseInt(pair, 16));
      at += 2;
    } else bytes.push(...Buffer.from(char, "utf8"));
  }
  try {
    return utf8.decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}

function refused(reason: string): RawRecord {
  return { ok: false, reason: `CloudEvent: ${reason}`, code: "invalid_record" };
}

/**
 * Characters a CloudEvents String excludes (spec 1.0.2, "Type System"):
 * control characters (U+0000-U+001F, U+007F-U+009F), noncharacters, and
 * surrogates not used in pairs (in `u` mode a pair is one code point).
 */
const EXCLUDED_CHARACTER = /[\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/u;

/** The checks every event gets, whichever mode carried it; a reason, or undefined when it holds. */
function attributeProblem(attributes: Record<string, unknown>): string | undefined {
  if (attributes.specversion !== "1.0") return '"specversion" must be "1.0"';
  for (const name in attributes) {
    if (NOT_HEADERS.has(name) || !ATTRIBUTE_NAME.test(name)) continue;
    const value = attributes[name];
    // An invalid traceparent or tracestate is dropped (kafkaHeaders), not refused, as a request's headers are.
    if (TRACE_ATTRIBUTES.has(name)) continue;
    const problem = valueProblem(name, value);
    if (problem !== undefined) return problem;
  }
  for (const name of ["id", "source", "type"]) {
    const value = attributes[name];
    if (typeof value !== "string" || value === "") return `"${name}" must be a non-empty string`;
  }
  // Spec 1.0.2: "if present, MUST be a non-empty string" (subject), "a non-empty URI" (dataschema).
  for (const name of ["subject", "dataschema"]) {
    const value = attributes[name];
    if (value !== undefined && (typeof value !== "string" || value === ""))
      return `"${name}" must be a non-empty string when present`;
  }
  const time = attributes.time;
  if (
    time !== undefined &&
    (typeof time !== "string" || !RFC3339_SHAPE.test(time) || !dateTime.validate(time))
  )
    return '"time" must be an RFC 3339 timestamp';
  const contentType = attributes.datacontenttype;
  if (contentType !== undefined && !isJsonMediaType(contentType))
    return '"datacontenttype" must be application/json (data is carried as a JSON object)';
  return undefined;
}

/**
 * Why an attribute's value is none the gateway carries, or undefined: it must
 * be of a CloudEvents type (String, Boolean, Integer; the others are Strings
 * in JSON), and fit a Kafka header. An object, an array, `1.5` or `2^31` is
 * no attribute value at all, and a value dropped would be lost after a 202.
 */
function valueProblem(name: string, value: unknown): string | undefined {
  if (typeof value === "boolean") return undefined;
  if (typeof value === "number") {
    return Number.isInteger(value) && value >= MIN_INTEGER && value <= MAX_INTEGER
      ? undefined
      : `"${name}" must be a CloudEvents Integer (-2147483648 to 2147483647) when it is a number`;
  }
  if (typeof value !== "string")
    return `"${name}" must be a String, a Boolean or an Integer: CloudEvents attributes have no other type`;
  if (EXCLUDED_CHARACTER.test(value))
    return `"${name}" holds a control character, a noncharacter or a lone surrogate, which a CloudEvents String excludes`;
  if (value.length > MAX_ATTRIBUTE_LENGTH)
    return `"${name}" is longer than ${MAX_ATTRIBUTE_LENGTH} characters`;
  return undefined;
}

function isJsonMediaType(contentType: unknown): boolean {
  if (typeof contentType !== "string") return false;
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return mediaType === "application/json" || mediaType.endsWith("+json");
}

/** The Distributed Tracing extension's attributes, checked below rather than carried as sent. */
const TRACE_ATTRIBUTES = new Set(["traceparent", "tracestate"]);

/**
 * Kafka headers `ce_<name>` for the scalar attributes (CloudEvents Kafka
 * binding, binary mode). The Distributed Tracing extension's `traceparent`
 * and `tracestate` are checked as a request's headers are (W3C Trace
 * Context, see `traceparentOf`): an invalid traceparent is dropped with its
 * tracestate, an invalid tracestate alone, a later version goes on as 00, so a
 * consumer continuing the trace never reads a malformed one.
 */
function kafkaHeaders(attributes: Record<string, unknown>): Record<string, string> {
  const headers: Record<string, string> = {};
  const { traceparent, tracestate } = attributes;
  const parent = typeof traceparent === "string" ? traceparentOf(traceparent) : undefined;
  if (parent !== undefined) {
    headers.ce_traceparent = parent;
    const state = typeof tracestate === "string" ? tracestateOf(tracestate) : undefined;
    if (state !== undefined) headers.ce_tracestate = state;
  }
  for (const name in attributes) {
    if (NOT_HEADERS.has(name) || TRACE_ATTRIBUTES.has(name) || !ATTRIBUTE_NAME.test(name)) continue;
    // attributeProblem let only Strings, Booleans and Integers of at most MAX_ATTRIBUTE_LENGTH through.
    headers[`ce_${name}`] = String(attributes[name]);
  }
  return headers;
}

/** The record an event makes: what normalizeRecord reads, with the event's data bytes and its headers. */
function toRecord(
  attributes: Record<string, unknown>,
  data: unknown,
  dataJson: string | undefined,
  exactNumbers: (RawRecord & { ok: true })["exactNumbers"],
): RawRecord {
  const value: Record<string, unknown> = { type: attributes.type, id: attributes.id, data };
  if (typeof attributes.time === "string") value.ts = attributes.time;
  if (attributes.partitionkey !== undefined) value.key = attributes.partitionkey;
  // An extension of the gateway's own: without it no event could reach subscribers.
  if (attributes.channel !== undefined) value.channel = attributes.channel;
  const record: RawRecord = {
    ok: true,
    value,
    dataJson,
    tsJson: typeof attributes.time === "string" ? JSON.stringify(attributes.time) : undefined,
    headers: kafkaHeaders(attributes),
    idSource: attributes.source as string,
  };
  if (exactNumbers) record.exactNumbers = exactNumbers;
  return record;
}

/**
 * The event's members without those whose value is `null`: JSON format 1.0.2
 * §2.2 says a decoder MUST treat a null attribute as unset (other SDKs write
 * `"subject": null`). `data: null` stays: an explicit null payload, refused
 * as any data that is not an object.
 */
function unsetNulls(event: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(event).filter(([name, value]) => value !== null || name === "data"),
  );
}

/** One event of a structured or batched body (scanned and parsed as a record, `data` spanned). */
export function fromStructuredEvent(raw: RawRecord): RawRecord {
  if (!raw.ok) return raw;
  const event = raw.value;
  if (event === null || typeof event !== "object" || Array.isArray(event))
    return refused("an event must be a JSON object");
  const attributes = unsetNulls(event as Record<string, unknown>);
  if (attributes.data_base64 !== undefined)
    return refused('"data_base64" is not carried: send data as a JSON object');
  const problem = attributeProblem(attributes);
  if (problem !== undefined) return refused(problem);
  return toRecord(attributes, attributes.data, raw.dataJson, raw.exactNumbers);
}

/** A binary-mode event: `raw` is its body (the data, scanned as one JSON value), `binary` its `ce-*` headers. */
export function fromBinaryEvent(
  raw: RawRecord,
  binary: BinaryCloudEvent,
  contentType: string | undefined,
): RawRecord {
  if (!raw.ok) return raw;
  if (binary.problem !== undefined) return refused(binary.problem);
  // In binary mode the Content-Type is the event's datacontenttype (HTTP binding 3.1.1).
  const event = { ...binary.attributes, datacontenttype: contentType };
  const problem = attributeProblem(event);
  if (problem !== undefined) return refused(problem);
  return toRecord(event, raw.value, raw.dataJson, raw.exactNumbers);
}
