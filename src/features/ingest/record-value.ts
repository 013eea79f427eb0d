import { type EventRecord, jsonString } from "../../domain/record.ts";
import { utf8Length } from "../../lib/utf8.ts";
import type { SinkMessage } from "../../ports/sink.ts";

/*
 * A record's Kafka value is
 *   {"id":…,"type":"…"[,"ts":…][,"channel":"…"][,"key":…],"data":…,"tenant":"…","receivedAt":"…"}
 * with `data` and `ts` exactly as sent. Each value is measured from its
 * parts, and the values of a request are written as UTF-8 into one buffer by
 * one native call: the delivery queue and the Kafka writer read their
 * lengths and copy their bytes. A string per value had to be flattened and
 * measured with Buffer.byteLength (by the queue and again by the encoder),
 * then encoded by a native call per record. The text of one value is made
 * again only for the consumers that need it (a dead letter, the local log),
 * from those bytes.
 */

/** The characters every value has besides its parts (all ASCII): `{"id":` … `"}`. */
const FIXED_BYTES = '{"id":,"type":"","data":,"tenant":"","receivedAt":""}'.length;
const TS_BYTES = ',"ts":'.length;
const CHANNEL_BYTES = ',"channel":""'.length;
const KEY_BYTES = ',"key":'.length;
const AFTER_DATA_BYTES = ',"tenant":"","receivedAt":""}'.length;

/** An empty buffer for messages whose values are not written yet. */
const NOT_WRITTEN = Buffer.alloc(0);

/**
 * An ingested record's Kafka message. Its value is `valueEnd - valueStart`
 * bytes of `valueBytes`, its request's buffer of values (see RecordValues),
 * which is set once every record of the request is checked; `value` decodes
 * them on demand.
 */
export class RecordMessage implements SinkMessage {
  valueBytes: Buffer = NOT_WRITTEN;
  /** Where the record's `data` lies in `valueBytes` (see `RecordValues.locateData`): the fan-out record copies it. */
  dataStart = -1;
  dataEnd = -1;
  constructor(
    readonly topic: string,
    readonly key: string,
    readonly headers: SinkMessage["headers"],
    readonly valueStart: number,
    readonly valueEnd: number,
  ) {}

  get value(): string {
    return this.valueBytes.toString("utf8", this.valueStart, this.valueEnd);
  }
}

/** The value's text; a generated id is ASCII needing no escape. */
function recordValue(record: EventRecord, idGenerated: boolean): string {
  // type, channel and receivedAt match patterns of ASCII characters that need no escaping; tenant needs none either.
  let value = `{"id":${idGenerated ? `"${record.id}"` : jsonString(record.id)},"type":"${record.type}"`;
  if (record.tsJson !== undefined) value += `,"ts":${record.tsJson}`;
  if (record.channel !== undefined) value += `,"channel":"${record.channel}"`;
  if (record.key !== undefined) value += `,"key":${jsonString(record.key)}`;
  return `${value},"data":${record.dataJson},"tenant":"${record.tenant}","receivedAt":"${record.receivedAt}"}`;
}

/** The UTF-8 length of `text` as JSON.stringify writes it (see `jsonString`): its length and quotes when ASCII needing no escape. */
function quotedLength(text: string): number {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x20 || code === 0x22 || code === 0x5c || code > 0x7f) return utf8Length(jsonString(text));
  }
  return text.length + 2;
}

/**
 * The values of one request's records (one tenant, one `receivedAt`), in
 * order: each is measured, then added, and `write` puts them all into one
 * buffer, sized exactly (the records stay queued until Kafka acknowledges
 * them, and the body they came from is not kept).
 */
export class RecordValues {
  private text = "";
  private bytes = 0;
  /** The bytes of every value of the request besides its own parts. */
  private readonly shared: number;
  /** The bytes after a value's `data`: `,"tenant":"…","receivedAt":"…"}`. */
  private readonly afterData: number;
  /** The UTF-8 length of `data` in the value measured last. */
  private measuredData = 0;

  constructor(tenant: string, receivedAt: string) {
    const tenantBytes = utf8Length(tenant);
    this.shared = FIXED_BYTES + tenantBytes + receivedAt.length;
    this.afterData = AFTER_DATA_BYTES + tenantBytes + receivedAt.length;
  }

  /**
   * The UTF-8 length of `record`'s value. `dataBytes` is the length of its
   * `data` text in UTF-8 when the caller knows it (the span of an ASCII
   * `data` in the body), else -1; `idGenerated` says its id is the
   * gateway's (a UUIDv7: ASCII, nothing to escape).
   */
  measure(record: EventRecord, dataBytes: number, idGenerated: boolean): number {
    let bytes =
      this.shared + (idGenerated ? record.id.length + 2 : quotedLength(record.id)) + record.type.length;
    this.measuredData = dataBytes >= 0 ? dataBytes : utf8Length(record.dataJson);
    bytes += this.measuredData;
    if (record.tsJson !== undefined) bytes += TS_BYTES + utf8Length(record.tsJson);
    if (record.channel !== undefined) bytes += CHANNEL_BYTES + record.channel.length;
    if (record.key !== undefined) bytes += KEY_BYTES + quotedLength(record.key);
    return bytes;
  }

  /** Sets where `message`'s `data` will lie, `message` being that of the value measured last (its `data` comes right before the tenant). */
  locateData(message: RecordMessage): void {
    message.dataEnd = message.valueEnd - this.afterData;
    message.dataStart = message.dataEnd - this.measuredData;
  }

  /** Adds `record`'s value, of `length` bytes (`measure`'s answer for it); answers where it ends. */
  add(record: EventRecord, length: number, idGenerated: boolean): number {
    this.text += recordValue(record, idGenerated);
    this.bytes += length;
    return this.bytes;
  }

  get length(): number {
    return this.bytes;
  }

  /** The values' bytes. As many as characters: all ASCII, copied by a latin1 write without UTF-8 encoding. */
  write(): Buffer {
    const text = this.text;
    const values = Buffer.allocUnsafe(this.bytes);
    const written = values.write(text, 0, text.length === this.bytes ? "latin1" : "utf8");
    // Measured and written apart: a mismatch would send bytes never written (allocUnsafe).
    if (written !== this.bytes) throw new Error("record values were measured wrong");
    return values;
  }
}
