import { isUtf8 } from "node:buffer";
import { gunzip } from "node:zlib";
import { GatewayError, type RecordErrorCode } from "../../domain/errors.ts";
import { requireUtf8Charset } from "../../http/charset.ts";
import { exactNumbersOf } from "../../lib/exact-numbers.ts";
import {
  DEPTH_ERROR,
  DUPLICATE_KEY_ERROR,
  JsonScanner,
  MEMBER,
  type Member,
  type RecordSpans,
  SYNTAX_ERROR,
  TOO_DEEP_REASON,
} from "../../lib/json-scan.ts";
import { withoutUtf8Bom } from "../../lib/utf8-bom.ts";
import type { ExactNumbers } from "../../ports/schemas.ts";
import {
  type BinaryCloudEvent,
  CLOUDEVENT_BATCH_TYPE,
  CLOUDEVENT_TYPE,
  fromBinaryEvent,
  fromStructuredEvent,
} from "./cloudevents.ts";

/**
 * One item of a request body: what `normalizeRecord` reads of it, with the
 * exact text of its `data` and `ts` members (and of the numbers in `data`
 * that JSON.parse rounded), or why it was refused on its own.
 */
export type RawRecord =
  | {
      ok: true;
      /**
       * A plain record's members `type`, `id`, `ts`, `channel`, `key` and
       * `data`, as JSON.parse gives them (the others are dropped by
       * normalizeRecord, so they are not parsed); a CloudEvent's record; or
       * the parsed value when the item is not an object.
       */
      value: unknown;
      dataJson: string | undefined;
      tsJson: string | undefined;
      exactNumbers?: ExactNumbers;
      /** Kafka headers of its own (a CloudEvent's `ce_*` attributes). */
      headers?: Record<string, string>;
      /** A CloudEvent's `source`: its `id` is unique only within it (CloudEvents 1.0, "id"). */
      idSource?: string;
      /**
       * Where a plain record's whole text lies (`sentAs` reads it for a dead
       * letter): the request's body, valid while the request is handled.
       */
      source?: Buffer;
      sourceStart?: number;
      sourceEnd?: number;
      /**
       * `dataJson`'s UTF-8 length when its bytes in the body are its text as
       * is (ASCII): their count, known without measuring the string; -1 when
       * they are not.
       */
      dataBytes?: number;
    }
  | { ok: false; reason: string; code: RecordErrorCode };

/** A plain record's members as `RawRecord.value` holds them (undefined when absent). */
export interface RecordMembers {
  type: unknown;
  id: unknown;
  ts: unknown;
  channel: unknown;
  key: unknown;
  data: unknown;
}

/**
 * The item's JSON text as the client sent it, every member included: what a
 * dead letter carries. A parsed copy written again would round its numbers
 * (`9007199254740993`, `1e400` as null), so the letter would not show what
 * was refused. A CloudEvent's record is written from its members, its `data`
 * as sent.
 */
export function sentAs(raw: RawRecord & { ok: true }): string {
  if (raw.source !== undefined) return raw.source.toString("utf8", raw.sourceStart, raw.sourceEnd);
  const value = raw.value;
  if (raw.dataJson === undefined || value === null || typeof value !== "object" || Array.isArray(value))
    return JSON.stringify(value);
  const { data: _parsed, ...members } = value as Record<string, unknown>;
  const head = JSON.stringify(members);
  return `${head.slice(0, -1)}${head === "{}" ? "" : ","}"data":${raw.dataJson}}`;
}

export interface BodyLimits {
  /** Limit on the decoded (decompressed) body, to stop gzip bombs. */
  maxBytes: number;
  maxRecords: number;
}

const MALFORMED_LINE: RawRecord = { ok: false, reason: "malformed JSON line", code: "malformed_json" };
const TOO_DEEP: RawRecord = { ok: false, reason: TOO_DEEP_REASON, code: "too_deep" };
/** Ingest refuses objects with a key twice: what is validated must be what consumers read. */
const SCANNER_OPTIONS = { rejectDuplicateKeys: true };
/** An NDJSON body whose first lines are all malformed is not NDJSON: stop reading it there. */
const MALFORMED_LINES_BEFORE_GIVING_UP = 100;
const LF = 0x0a;
const QUOTE = 0x22;
/** A type longer than this is not kept as the last one seen (TYPE_PATTERN allows 128). */
const MAX_KEPT_TYPE_LENGTH = 128;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

const JSON_TYPE = "application/json";
const JSON_TYPES = new Set([JSON_TYPE]);
const NDJSON_TYPES = new Set(["application/x-ndjson", "application/ndjson", "application/jsonl"]);

/**
 * Turns a request body into raw records: one JSON object, a JSON array of
 * objects, or NDJSON (one object per line). A body that is not JSON at all is
 * a 400; an NDJSON line that does not parse, or a record nested too deep,
 * rejects only that record. More than `maxRecords` records is a 413, found
 * before any record is parsed.
 */
export async function decodeBody(
  bytes: Uint8Array,
  contentType: string | undefined,
  contentEncoding: string | undefined,
  limits: BodyLimits,
  /** A binary-mode CloudEvent's `ce-*` attributes: the body is then its data. */
  binaryEvent?: BinaryCloudEvent,
): Promise<RawRecord[]> {
  const mediaType = readableMediaType(contentType, contentEncoding);
  const ndjson = NDJSON_TYPES.has(mediaType);
  // Most bodies are not compressed: no await (and no microtask turn) for them.
  const inflated =
    contentEncoding === undefined ? bytes : await decompress(bytes, contentEncoding, limits.maxBytes);
  const decoded = withoutUtf8Bom(inflated);
  const text = Buffer.isBuffer(decoded)
    ? decoded
    : Buffer.from(decoded.buffer, decoded.byteOffset, decoded.byteLength);
  // JSON text is UTF-8 (RFC 8259): invalid bytes would reach Kafka as U+FFFD, not as sent. One native pass.
  const utf8 = isUtf8(text);
  if (!utf8 && !ndjson) throw new GatewayError("malformed_json", "the body is not valid UTF-8");
  if (mediaType === CLOUDEVENT_TYPE || mediaType === CLOUDEVENT_BATCH_TYPE) {
    const batch = mediaType === CLOUDEVENT_BATCH_TYPE;
    if (firstByte(text) !== (batch ? OPEN_BRACKET : OPEN_BRACE)) {
      throw wrongShape(
        text,
        batch ? "a CloudEvents batch is a JSON array of events" : "a structured CloudEvent is a JSON object",
      );
    }
    const events = scanJson(text, limits.maxRecords, readEvent);
    if (events.length === 0) throw new GatewayError("bad_request", "the body holds no events");
    return events.map(fromStructuredEvent);
  }
  // Only now: the Content-Type decides the mode, and a structured event MAY
  // repeat its attributes as ce-* headers (HTTP binding 1.0.2, 3 and 3.2.3).
  if (binaryEvent !== undefined) {
    if (ndjson) throw new GatewayError("unsupported_media_type", "a binary-mode CloudEvent's data is JSON");
    return [fromBinaryEvent(scanValue(text), binaryEvent, contentType)];
  }
  const records = ndjson
    ? scanNdjson(text, limits.maxRecords, !utf8)
    : scanJson(text, limits.maxRecords, plainRecordReader(text));
  if (records.length === 0) throw new GatewayError("bad_request", "the body holds no records");
  return records;
}

/**
 * The body's media type, when the body can be read: a JSON or NDJSON type and
 * no content coding but gzip; else a 415. Headers alone decide it, so the
 * route asks before reading the body too: a client refused for its type does
 * not first upload a body that is never read (it is answered while it waits
 * on `Expect: 100-continue`).
 */
export function readableMediaType(
  contentType: string | undefined,
  contentEncoding: string | undefined,
): string {
  const mediaType = contentType === JSON_TYPE ? JSON_TYPE : mediaTypeOf(contentType);
  if (!NDJSON_TYPES.has(mediaType) && !JSON_TYPES.has(mediaType) && !mediaType.endsWith("+json")) {
    throw new GatewayError(
      "unsupported_media_type",
      "use Content-Type application/json or application/x-ndjson",
    );
  }
  if (mediaType !== contentType) requireUtf8Charset(contentType);
  if (contentEncoding !== undefined && !READABLE_CODINGS.has(contentEncoding.trim().toLowerCase())) {
    // RFC 9110 §15.5.16: a 415 for a content coding says which codings would have been read.
    throw new GatewayError(
      "unsupported_media_type",
      `Content-Encoding ${contentEncoding.trim().toLowerCase()} is not supported; use gzip`,
      { "accept-encoding": "gzip" },
    );
  }
  return mediaType;
}

/** `Content-Encoding` values a body is read with: none (identity) or gzip. */
const READABLE_CODINGS = new Set(["", "identity", "gzip", "x-gzip"]);

function firstByte(text: Buffer): number {
  const scanner = new JsonScanner(text);
  scanner.skipWhitespace();
  return scanner.peek();
}

/** The whole body as one value (a binary-mode CloudEvent's data): its text is the data's. */
function scanValue(text: Buffer): RawRecord {
  const scanner = new JsonScanner(text, SCANNER_OPTIONS);
  try {
    const record = readEvent(scanner, text, "record", true);
    scanner.end();
    return record;
  } catch (failure) {
    if (failure === SYNTAX_ERROR) throw malformed(scanner);
    throw failure;
  }
}

/** `type/subtype` of a Content-Type, lower-case, without parameters. */
function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

function tooManyRecords(maxRecords: number): GatewayError {
  return new GatewayError("payload_too_large", `at most ${maxRecords} records per request`);
}

function malformed(scanner: JsonScanner): GatewayError {
  return new GatewayError("malformed_json", `malformed JSON near byte ${scanner.pos}`);
}

/**
 * A body whose first byte is not the shape asked for. JSON all the same
 * (`42`, `"x"`, an object where an array is asked for) is a `bad_request`,
 * as the catalogue and `/v1/publish` say: the client sent the wrong value,
 * not broken JSON. Only a body that is not JSON is `malformed_json`.
 */
function wrongShape(text: Buffer, shape: string): GatewayError {
  const scanner = new JsonScanner(text);
  try {
    scanner.value();
    scanner.end();
  } catch (failure) {
    if (failure === SYNTAX_ERROR) return malformed(scanner);
  }
  return new GatewayError("bad_request", shape);
}

/** Reads the item at the scanner's position: `readRecord` or `readEvent`. */
type ItemReader = (scanner: JsonScanner, text: Buffer, unit: "record" | "line") => RawRecord;

/** A JSON body: one object, or an array of them. */
function scanJson(text: Buffer, maxRecords: number, read: ItemReader): RawRecord[] {
  const scanner = new JsonScanner(text, SCANNER_OPTIONS);
  scanner.skipWhitespace();
  const first = scanner.peek();
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    throw wrongShape(text, "the body must be a JSON object or an array of objects");
  }
  const records: RawRecord[] = [];
  try {
    if (first === OPEN_BRACE) records.push(read(scanner, text, "record"));
    else {
      scanner.pos++;
      scanner.skipWhitespace();
      if (scanner.peek() === CLOSE_BRACKET) scanner.pos++;
      else {
        for (;;) {
          if (records.length === maxRecords) throw tooManyRecords(maxRecords);
          records.push(read(scanner, text, "record"));
          scanner.skipWhitespace();
          const next = scanner.peek();
          scanner.pos++;
          if (next === CLOSE_BRACKET) break;
          if (next !== COMMA) throw SYNTAX_ERROR;
        }
      }
    }
    scanner.end();
  } catch (failure) {
    if (failure === SYNTAX_ERROR) throw malformed(scanner);
    throw failure;
  }
  return records;
}

/**
 * An NDJSON body: each non-blank line is one record, refused on its own when
 * it does not parse or, in a body that is not all UTF-8 (`checkUtf8`), when
 * the line is not.
 */
function scanNdjson(text: Buffer, maxRecords: number, checkUtf8: boolean): RawRecord[] {
  const records: RawRecord[] = [];
  let parsedAny = false;
  let lineStart = 0;
  while (lineStart < text.length) {
    let lineEnd = text.indexOf(LF, lineStart);
    if (lineEnd < 0) lineEnd = text.length;
    const scanner = new JsonScanner(text.subarray(lineStart, lineEnd), SCANNER_OPTIONS);
    lineStart = lineEnd + 1;
    scanner.skipWhitespace();
    if (scanner.peek() === -1) continue;
    if (records.length === maxRecords) throw tooManyRecords(maxRecords);
    let record: RawRecord;
    try {
      if (checkUtf8 && !isUtf8(scanner.bytes)) throw SYNTAX_ERROR;
      record = readRecord(scanner, scanner.bytes as Buffer, "line");
      scanner.end();
    } catch (failure) {
      if (failure !== SYNTAX_ERROR) throw failure;
      record = MALFORMED_LINE;
    }
    records.push(record);
    parsedAny ||= record.ok;
    if (!parsedAny && records.length >= MALFORMED_LINES_BEFORE_GIVING_UP) break;
  }
  if (records.length > 0 && !parsedAny)
    throw new GatewayError("malformed_json", "no line of the body is valid JSON");
  return records;
}

/** Why the scanner refused the item at its position, as the item's own refusal, or rethrows. */
function refusalOf(failure: unknown, scanner: JsonScanner, unit: "record" | "line"): RawRecord {
  if (failure === DEPTH_ERROR) return TOO_DEEP;
  if (failure === DUPLICATE_KEY_ERROR) {
    return {
      ok: false,
      reason: `duplicate key ${JSON.stringify(scanner.duplicateKey)}`,
      code: "duplicate_key",
    };
  }
  if (unit === "line" && failure === SYNTAX_ERROR) return MALFORMED_LINE;
  throw failure;
}

/**
 * `readRecord` for the records of one JSON body, with the body decoded once
 * as latin1: a member of ASCII bytes is then a slice of that text (as its
 * UTF-8 decoding would read) instead of a native decode per record. Decoded
 * when first sliced: a body whose records all have channels or non-ASCII
 * data never pays for (nor holds) that text.
 */
function plainRecordReader(text: Buffer): ItemReader {
  let latin1: string | undefined;
  const bodyText = () => {
    latin1 ??= text.toString("latin1");
    return latin1;
  };
  return (scanner, bytes, unit) => readRecord(scanner, bytes, unit, bodyText);
}

/**
 * Scans the plain record at the scanner's position and parses what ingest
 * reads of it: its `data` text is decoded once, parsed once, and is the text
 * forwarded; `ts` likewise; `type`, `id`, `channel` and `key` are decoded
 * from their bytes. The record's other members are scanned (grammar,
 * nesting, duplicate keys) but not parsed. Only text the scanner accepted
 * reaches JSON.parse, so it cannot throw or recurse deeply. `latin1` gives
 * `text` decoded as latin1, when the caller has it (see plainRecordReader).
 */
function readRecord(
  scanner: JsonScanner,
  text: Buffer,
  unit: "record" | "line",
  latin1?: () => string,
): RawRecord {
  try {
    scanner.scanRecord();
  } catch (failure) {
    return refusalOf(failure, scanner, unit);
  }
  const start = scanner.recordStart;
  const end = scanner.recordEnd;
  if (text[start] !== OPEN_BRACE) {
    // Not an object: normalizeRecord refuses it by its value.
    return {
      ok: true,
      value: JSON.parse(text.toString("utf8", start, end)),
      dataJson: undefined,
      tsJson: undefined,
    };
  }
  const members = scanner.members;
  // A slice keeps the whole body's text alive while it lives: only for a record without a
  // channel, whose texts end with its request (a channel's go on to the fan-out).
  const slices = (members[2 * MEMBER.channel] as number) < 0 ? latin1 : undefined;
  const dataJson = spanText(text, scanner, MEMBER.data, slices);
  const data: unknown = dataJson === undefined ? undefined : JSON.parse(dataJson);
  const tsJson = spanText(text, scanner, MEMBER.ts, slices);
  const dataAscii = dataJson !== undefined && (scanner.nonAsciiMembers & (1 << MEMBER.data)) === 0;
  const value: RecordMembers = {
    type: typeOf(text, scanner),
    id: memberValue(text, scanner, MEMBER.id),
    ts: tsJson === undefined ? undefined : JSON.parse(tsJson),
    channel: channelOf(text, scanner),
    key: memberValue(text, scanner, MEMBER.key),
    data,
  };
  const record: RawRecord = {
    ok: true,
    value,
    dataJson,
    tsJson,
    source: text,
    sourceStart: start,
    sourceEnd: end,
    dataBytes: dataAscii
      ? (members[2 * MEMBER.data + 1] as number) - (members[2 * MEMBER.data] as number)
      : -1,
  };
  // Rare (a number JSON.parse rounds): keep the texts so schema limits hold for the numbers as sent.
  if (scanner.inexactNumbers && dataJson !== undefined) record.exactNumbers = exactNumbersOf(dataJson, data);
  return record;
}

/**
 * The text of member `member`'s value, or undefined when the record has none:
 * a slice of `latin1()` (the body's text) when its bytes are all ASCII, which
 * latin1 and UTF-8 read alike, else decoded from its bytes.
 */
function spanText(
  text: Buffer,
  scanner: JsonScanner,
  member: Member,
  latin1: (() => string) | undefined,
): string | undefined {
  const members = scanner.members;
  const start = members[2 * member] as number;
  if (start < 0) return undefined;
  const end = members[2 * member + 1] as number;
  if (latin1 !== undefined && (scanner.nonAsciiMembers & (1 << member)) === 0)
    return latin1().slice(start, end);
  return text.toString("utf8", start, end);
}

/** Member `member`'s value: a string without escapes straight from its bytes, anything else through JSON.parse. */
function memberValue(text: Buffer, scanner: JsonScanner, member: Member): unknown {
  const members = scanner.members;
  const start = members[2 * member] as number;
  if (start < 0) return undefined;
  const end = members[2 * member + 1] as number;
  if (text[start] !== QUOTE || (scanner.escapedMembers & (1 << member)) !== 0)
    return JSON.parse(text.toString("utf8", start, end));
  return text.toString("utf8", start + 1, end - 1);
}

/** The last `type` decoded; a batch is mostly of one type, so its bytes are compared instead of decoded again. */
let lastType = "";

/** The record's `type`: the last one seen when its bytes spell it, else decoded (and kept when short and ASCII). */
function typeOf(text: Buffer, scanner: JsonScanner): unknown {
  const members = scanner.members;
  const start = members[2 * MEMBER.type] as number;
  const end = members[2 * MEMBER.type + 1] as number;
  if (
    start >= 0 &&
    text[start] === QUOTE &&
    (scanner.escapedMembers & (1 << MEMBER.type)) === 0 &&
    end - start - 2 === lastType.length
  ) {
    let same = true;
    for (let index = 0; index < lastType.length; index++) {
      if (text[start + 1 + index] !== lastType.charCodeAt(index)) {
        same = false;
        break;
      }
    }
    if (same) return lastType;
  }
  const type = memberValue(text, scanner, MEMBER.type);
  // Only ASCII is kept: its bytes and its UTF-16 code units are then the same numbers.
  if (typeof type === "string" && type.length <= MAX_KEPT_TYPE_LENGTH && isAscii(type)) lastType = type;
  return type;
}

/** Channels kept by a hash of their bytes (a fixed table, a slot overwritten on a miss): a batch repeats a few. */
const CHANNEL_SLOTS = 64;
const MAX_KEPT_CHANNEL_LENGTH = 32;
const keptChannels = new Array<string>(CHANNEL_SLOTS).fill("");

/**
 * The record's `channel`. A short ASCII one is looked up by a hash of its
 * bytes and compared with the one kept there, so a channel repeated in a
 * batch is not decoded again (on Bun, decoding a two-byte string from a
 * Buffer cost about as much as the record's `data`).
 */
function channelOf(text: Buffer, scanner: JsonScanner): unknown {
  const members = scanner.members;
  const start = members[2 * MEMBER.channel] as number;
  const end = members[2 * MEMBER.channel + 1] as number;
  const length = end - start - 2;
  if (
    start < 0 ||
    text[start] !== QUOTE ||
    (scanner.escapedMembers & (1 << MEMBER.channel)) !== 0 ||
    length > MAX_KEPT_CHANNEL_LENGTH
  )
    return memberValue(text, scanner, MEMBER.channel);
  let hash = length;
  for (let at = start + 1; at < end - 1; at++) {
    const byte = text[at] as number;
    if (byte > 0x7f) return memberValue(text, scanner, MEMBER.channel);
    hash = (Math.imul(hash, 31) + byte) | 0;
  }
  const slot = hash & (CHANNEL_SLOTS - 1);
  const kept = keptChannels[slot] as string;
  if (kept.length === length) {
    let same = true;
    for (let index = 0; index < length; index++) {
      if (text[start + 1 + index] !== kept.charCodeAt(index)) {
        same = false;
        break;
      }
    }
    if (same) return kept;
  }
  // ASCII: its bytes are its characters.
  const channel = text.toString("latin1", start + 1, end - 1);
  keptChannels[slot] = channel;
  return channel;
}

function isAscii(text: string): boolean {
  for (let index = 0; index < text.length; index++) if (text.charCodeAt(index) > 0x7f) return false;
  return true;
}

/**
 * Scans the item at the scanner's position and parses it whole: a
 * CloudEvent (whose attributes are all read), or with `whole` the body of a
 * binary-mode CloudEvent (its text is the data's). Each string is decoded
 * from its own bytes: no record keeps the body alive.
 */
function readEvent(scanner: JsonScanner, text: Buffer, unit: "record" | "line", whole = false): RawRecord {
  let spans: RecordSpans;
  try {
    spans = scanner.record();
  } catch (failure) {
    return refusalOf(failure, scanner, unit);
  }
  const recordJson = text.toString("utf8", spans.start, spans.end);
  const value = JSON.parse(recordJson) as unknown;
  if (whole) {
    const record: RawRecord = { ok: true, value, dataJson: recordJson, tsJson: undefined };
    if (spans.inexactNumbers) record.exactNumbers = exactNumbersOf(recordJson, value);
    return record;
  }
  const dataJson = spans.data && text.toString("utf8", spans.data.start, spans.data.end);
  const record: RawRecord = {
    ok: true,
    value,
    dataJson,
    tsJson: spans.ts && text.toString("utf8", spans.ts.start, spans.ts.end),
  };
  // Rare (a number JSON.parse rounds): keep the texts so schema limits hold for the numbers as sent.
  if (spans.inexactNumbers && dataJson !== undefined && value !== null && typeof value === "object")
    record.exactNumbers = exactNumbersOf(dataJson, (value as { data?: unknown }).data);
  return record;
}

/**
 * The body with its content coding undone (gzip, at most `maxBytes` once
 * inflated, to stop gzip bombs): what the client meant to send, whatever
 * compressor and level it used. Any other coding was refused by readableMediaType.
 */
export async function decompress(
  bytes: Uint8Array,
  encoding: string | undefined,
  maxBytes: number,
): Promise<Uint8Array> {
  const name = (encoding ?? "identity").trim().toLowerCase();
  if (name === "identity" || name === "") return bytes;
  return new Promise((resolve, reject) => {
    gunzip(bytes, { maxOutputLength: maxBytes }, (error, result) => {
      if (!error) resolve(result);
      else if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        reject(new GatewayError("payload_too_large", `decompressed body exceeds ${maxBytes} bytes`));
      } else reject(new GatewayError("bad_request", "body is not valid gzip"));
    });
  });
}
