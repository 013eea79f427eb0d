import { utf8Length } from "../../lib/utf8.ts";
import type { SinkMessage } from "../../ports/sink.ts";

/** Fixed header of a Kafka record batch (format v2): offsets, CRC, producer id and epoch, sequence, count. */
export const RECORD_BATCH_OVERHEAD = 61;

/** Varint length prefixes, attributes and deltas of one record, at their widest. */
const RECORD_OVERHEAD = 36;
const HEADER_OVERHEAD = 10;

/**
 * An upper bound of the bytes one message takes in a Kafka record batch
 * before compression: its key, value and headers in UTF-8 plus the widest
 * varints. Used for the queue's byte bounds and to size batches. A record's
 * own header is bounded by its length (as in `recordBytesAtMost`), not
 * measured: it differs per record, and the encoder measures it anyway.
 */
export function recordBytes(message: SinkMessage): number {
  return (
    RECORD_OVERHEAD +
    utf8Length(message.key) +
    valueLength(message) +
    headersBytes(message.headers) +
    ownHeaderBytesAtMost(message)
  );
}

/**
 * A cheaper, looser bound than `recordBytes`: a UTF-16 code unit never takes
 * more than 3 bytes in UTF-8, so the string lengths bound the bytes without
 * reading the strings.
 */
export function recordBytesAtMost(message: SinkMessage): number {
  return (
    RECORD_OVERHEAD +
    3 * message.key.length +
    (message.valueBytes === undefined ? 3 * message.value.length : valueLength(message)) +
    headersBytes(message.headers) +
    ownHeaderBytesAtMost(message)
  );
}

/** The UTF-8 length of `message`'s value: its bytes' when it has them, else measured from the text. */
export function valueLength(message: SinkMessage): number {
  return message.valueBytes === undefined
    ? Buffer.byteLength(message.value)
    : (message.valueEnd as number) - (message.valueStart as number);
}

/**
 * The headers objects measured last and their bytes. The records of a
 * request share one (or one per channel, interleaved, for the fan-out's):
 * each is measured once per request while it stays among the last few.
 */
const MEASURED = 16;
const measuredHeaders = new Array<SinkMessage["headers"] | undefined>(MEASURED).fill(undefined);
const measuredBytes = new Array<number>(MEASURED).fill(0);
let nextMeasured = 0;
/** The slot found last: a run of records of one headers object finds it at the first look. */
let lastMeasured = 0;

function headersBytes(headers: SinkMessage["headers"]): number {
  if (measuredHeaders[lastMeasured] === headers) return measuredBytes[lastMeasured] as number;
  for (let slot = 0; slot < MEASURED; slot++) {
    if (measuredHeaders[slot] === headers) {
      lastMeasured = slot;
      return measuredBytes[slot] as number;
    }
  }
  let bytes = 0;
  for (const name in headers) {
    bytes += HEADER_OVERHEAD + utf8Length(name) + utf8Length(headers[name] as string);
  }
  lastMeasured = nextMeasured;
  measuredHeaders[nextMeasured] = headers;
  measuredBytes[nextMeasured] = bytes;
  nextMeasured = (nextMeasured + 1) % MEASURED;
  return bytes;
}

function ownHeaderBytesAtMost(message: SinkMessage): number {
  const name = message.ownHeader;
  if (name === undefined) return 0;
  return HEADER_OVERHEAD + 3 * (name.length + (message.ownHeaderValue as string).length);
}

/**
 * How many record bytes (as counted by `recordBytes`) one batch may hold so
 * that it fits the broker's `maxMessageBytes` (`message.max.bytes`), which
 * Kafka checks after compression. Compressing incompressible data adds a
 * little (under 0.5% for lz4, less for the others): 1/64 is kept for it.
 */
export function batchBytesLimit(maxMessageBytes: number, compressed: boolean): number {
  const compressionSlack = compressed ? Math.ceil(maxMessageBytes / 64) : 0;
  return maxMessageBytes - RECORD_BATCH_OVERHEAD - compressionSlack;
}
