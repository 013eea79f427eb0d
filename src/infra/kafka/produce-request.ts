import {
  type CompressionAlgorithmValue,
  type CreateRecordsBatchOptions,
  compressionsAlgorithms,
  crc32c,
  ProduceAcks,
  Writer,
} from "@platformatic/kafka";
import { utf8Length } from "../../lib/utf8.ts";
import type { SinkMessage } from "../../ports/sink.ts";
import { valueLength as valueBytesOf } from "../delivery/record-size.ts";

/**
 * One client message as the producer hands it to the Produce API: all the
 * records of a write for one partition ride as `value` (keys and headers
 * included), so the client does its per-message bookkeeping (serializers,
 * partition, header maps, sequence keys) once per partition, not once per
 * record, and each record is written straight into the request.
 * `partition` was set by the caller.
 */
export interface PartitionRecords {
  value: readonly SinkMessage[];
  topic: string;
  partition: number;
}

export type ProduceRequestOptions = Partial<
  Pick<CreateRecordsBatchOptions, "transactionalId" | "compression" | "producerId" | "producerEpoch">
> & {
  /** Each partition's first sequence, by `sequenceKey` (the client's NumericMap, or a SinkProducer's own). */
  sequences?: Pick<CreateRecordsBatchOptions["sequences"] & object, "getWithDefault">;
};

/** Record batch v2, from baseOffset to the record count: every field before the records. */
const BATCH_HEADER_BYTES = 61;
/** The CRC covers the batch from `attributes` (after baseOffset, length, leader epoch, magic, crc). */
const CRC_FROM = 21;
const MAGIC = 2;
const TRANSACTIONAL = 0x10;
/** The first version whose request is "flexible" (compact strings and arrays, tagged fields). */
const FIRST_FLEXIBLE_VERSION = 9;

/** Kafka varints are zig-zag encoded signed integers. */
function zigzag(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0;
}

function varintBytes(zigzagged: number): number {
  if (zigzagged < 0x80) return 1;
  if (zigzagged < 0x4000) return 2;
  if (zigzagged < 0x200000) return 3;
  if (zigzagged < 0x10000000) return 4;
  return 5;
}

function writeVarint(buffer: Buffer, position: number, zigzagged: number): number {
  let rest = zigzagged;
  let at = position;
  while (rest >= 0x80) {
    buffer[at++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  buffer[at++] = rest;
  return at;
}

/**
 * A headers object's entries as they sit on the wire (each name and value
 * with its length, without the count), measured, then written straight into
 * one block. A run of records sharing the object shares the block; short
 * ASCII strings are measured and copied in JavaScript, without a native call
 * per string.
 */
function encodeEntries(headers: SinkMessage["headers"]): Buffer {
  const block = Buffer.allocUnsafe(entriesBytes(headers));
  let at = 0;
  for (const name in headers) {
    at = writeString(block, at, name);
    at = writeString(block, at, headers[name] as string);
  }
  return block;
}

/** The bytes of `headers`' entries on the wire. */
function entriesBytes(headers: SinkMessage["headers"]): number {
  let bytes = 0;
  for (const name in headers) bytes += entryBytes(name, headers[name] as string);
  return bytes;
}

/** The bytes of one header entry on the wire: name and value, each with its length. */
function entryBytes(name: string, value: string): number {
  const nameLength = utf8Length(name);
  const valueLength = utf8Length(value);
  return varintBytes(zigzag(nameLength)) + nameLength + varintBytes(zigzag(valueLength)) + valueLength;
}

function entryCount(headers: SinkMessage["headers"]): number {
  let count = 0;
  for (const _ in headers) count++;
  return count;
}

/** A string of at most this many bytes has a one-byte length prefix (its zig-zag varint is below 0x80). */
const ONE_BYTE_PREFIX = 63;

/**
 * Writes `text` with its length prefix at `at`; answers the position after
 * it. A short ASCII string (names, ids, channels) is checked and copied in
 * one pass; any other is measured, then written by the native encoder over
 * what that pass left.
 */
function writeString(block: Buffer, at: number, text: string): number {
  const length = text.length;
  if (length <= ONE_BYTE_PREFIX) {
    const start = at + 1;
    let i = 0;
    for (; i < length; i++) {
      const code = text.charCodeAt(i);
      if (code > 0x7f) break;
      block[start + i] = code;
    }
    if (i === length) {
      block[at] = length << 1;
      return start + length;
    }
  }
  const bytes = utf8Length(text);
  at = writeVarint(block, at, zigzag(bytes));
  return at + block.write(text, at, bytes, "utf8");
}

/**
 * What writing a partition's records takes, per record: its key's and
 * value's UTF-8 lengths, the block of its shared `headers` entries, and its
 * headers' count and length on the wire (its own header included).
 */
interface RecordsLayout {
  keyLengths: number[];
  valueLengths: number[];
  sharedBlocks: Buffer[];
  headerCounts: number[];
  headersLengths: number[];
  bytes: number;
}

/** Headers objects a partition's layout keeps encoded blocks of: a request's fan-out records share one per channel, interleaved. */
const ENCODED = 16;

/**
 * Measures the records of one partition before anything is written. A run of
 * records shares one headers object (see the ingest route), or a request's
 * records one per channel (the fan-out bus): the entries of each are encoded
 * once while it is among the last ENCODED seen; a record's own header is
 * measured here and written in place.
 */
function layOut(records: readonly SinkMessage[]): RecordsLayout {
  const count = records.length;
  const keyLengths = new Array<number>(count);
  const valueLengths = new Array<number>(count);
  const sharedBlocks = new Array<Buffer>(count);
  const headerCounts = new Array<number>(count);
  const headersLengths = new Array<number>(count);
  const encodedHeaders: Array<SinkMessage["headers"]> = [];
  const encodedBlocks: Buffer[] = [];
  const encodedCounts: number[] = [];
  let nextEncoded = 0;
  let lastHeaders: SinkMessage["headers"] | undefined;
  let lastBlock: Buffer | undefined;
  let lastCount = 0;
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const message = records[i] as SinkMessage;
    if (message.headers !== lastHeaders || !lastBlock) {
      lastHeaders = message.headers;
      const slot = encodedHeaders.indexOf(lastHeaders);
      if (slot >= 0) {
        lastBlock = encodedBlocks[slot] as Buffer;
        lastCount = encodedCounts[slot] as number;
      } else {
        lastBlock = encodeEntries(lastHeaders);
        lastCount = entryCount(lastHeaders);
        encodedHeaders[nextEncoded] = lastHeaders;
        encodedBlocks[nextEncoded] = lastBlock;
        encodedCounts[nextEncoded] = lastCount;
        nextEncoded = (nextEncoded + 1) % ENCODED;
      }
    }
    sharedBlocks[i] = lastBlock;
    let headerCount = lastCount;
    let entries = lastBlock.length;
    const own = message.ownHeader;
    if (own !== undefined) {
      headerCount++;
      entries += entryBytes(own, message.ownHeaderValue as string);
    }
    headerCounts[i] = headerCount;
    const headersLength = varintBytes(zigzag(headerCount)) + entries;
    headersLengths[i] = headersLength;
    const keyLength = utf8Length(message.key);
    keyLengths[i] = keyLength;
    const valueLength = valueBytesOf(message);
    valueLengths[i] = valueLength;
    const body = recordBodyBytes(keyLength, valueLength, headersLength, i);
    bytes += varintBytes(zigzag(body)) + body;
  }
  return { keyLengths, valueLengths, sharedBlocks, headerCounts, headersLengths, bytes };
}

/**
 * Writes the records at `position` of `buffer`, which has `layout.bytes` room
 * there. The writer's records carry no timestamp of their own (the batch's is
 * theirs), so every timestamp delta is 0.
 */
function writeRecords(
  records: readonly SinkMessage[],
  layout: RecordsLayout,
  buffer: Buffer,
  start: number,
): void {
  let position = start;
  for (let i = 0; i < records.length; i++) {
    const message = records[i] as SinkMessage;
    const keyLength = layout.keyLengths[i] as number;
    const valueLength = layout.valueLengths[i] as number;
    const block = layout.sharedBlocks[i] as Buffer;
    position = writeVarint(
      buffer,
      position,
      zigzag(recordBodyBytes(keyLength, valueLength, layout.headersLengths[i] as number, i)),
    );
    buffer[position++] = 0; // attributes
    buffer[position++] = 0; // timestamp delta
    position = writeVarint(buffer, position, zigzag(i));
    // Its length prefix is the same zig-zag varint as a header string's.
    position = writeString(buffer, position, message.key);
    position = writeVarint(buffer, position, zigzag(valueLength));
    const bytes = message.valueBytes;
    if (bytes !== undefined) position += bytes.copy(buffer, position, message.valueStart, message.valueEnd);
    else {
      // As many bytes as characters: ASCII, whose bytes a latin1 write copies without UTF-8 encoding.
      const encoding = valueLength === message.value.length ? "latin1" : "utf8";
      position += buffer.write(message.value, position, valueLength, encoding);
    }
    position = writeVarint(buffer, position, zigzag(layout.headerCounts[i] as number));
    buffer.set(block, position);
    position += block.length;
    const own = message.ownHeader;
    if (own !== undefined) {
      position = writeString(buffer, position, own);
      position = writeString(buffer, position, message.ownHeaderValue as string);
    }
  }
}

/** One record's bytes after its length prefix: attributes, deltas, key, value, headers. */
function recordBodyBytes(keyLength: number, valueLength: number, headersLength: number, offsetDelta: number) {
  const keyBytes = varintBytes(zigzag(keyLength)) + keyLength;
  return (
    2 +
    varintBytes(zigzag(offsetDelta)) +
    keyBytes +
    varintBytes(zigzag(valueLength)) +
    valueLength +
    headersLength
  );
}

/**
 * One record batch (format v2) holding `records`, all of `topic`'s
 * `partition`, in one buffer: uncompressed records are written in place;
 * compressed ones are encoded, compressed, and the result copied once behind
 * the header.
 */
export function encodeRecordBatch(
  topic: string,
  partition: number,
  records: readonly SinkMessage[],
  options: ProduceRequestOptions,
  now: number = Date.now(),
): Buffer {
  const compression: CompressionAlgorithmValue = options.compression ?? "none";
  let batch: Buffer;
  let attributes = options.transactionalId ? TRANSACTIONAL : 0;
  const layout = layOut(records);
  if (compression === "none") {
    batch = Buffer.allocUnsafe(BATCH_HEADER_BYTES + layout.bytes);
    writeRecords(records, layout, batch, BATCH_HEADER_BYTES);
  } else {
    const algorithm = compressionsAlgorithms[compression];
    const raw = Buffer.allocUnsafe(layout.bytes);
    writeRecords(records, layout, raw, 0);
    const compressed = algorithm.compressSync(raw);
    attributes |= algorithm.bitmask;
    batch = Buffer.allocUnsafe(BATCH_HEADER_BYTES + compressed.length);
    batch.set(compressed, BATCH_HEADER_BYTES);
  }
  const timestamp = BigInt(now);
  // Defaults as the client's own encoder writes them, byte for byte (the broker sets the leader epoch).
  const sequence = options.sequences?.getWithDefault(sequenceKey(topic, partition), 0) ?? 0;
  batch.writeBigInt64BE(0n, 0); // base offset: the broker assigns it
  batch.writeInt32BE(batch.length - 12, 8);
  batch.writeInt32BE(0, 12); // partition leader epoch
  batch.writeInt8(MAGIC, 16);
  batch.writeInt16BE(attributes, 21);
  batch.writeInt32BE(records.length - 1, 23); // last offset delta
  batch.writeBigInt64BE(timestamp, 27);
  batch.writeBigInt64BE(timestamp, 35);
  batch.writeBigInt64BE(options.producerId ?? -1n, 43);
  batch.writeInt16BE(options.producerEpoch ?? 0, 51);
  batch.writeInt32BE(sequence, 53);
  batch.writeInt32BE(records.length, 57);
  batch.writeUInt32BE(crcOf(batch.subarray(CRC_FROM)), 17);
  return batch;
}

/**
 * Given a Buffer, the client's crc32c copies it into a new Uint8Array before
 * its native (or wasm) call: about 0.8 ns a byte on Node, 15-20 µs per 25 KB
 * batch, three times the CRC itself. Given one of its DynamicBuffers holding
 * one buffer, it reads that buffer in place; this one is reused (the call is
 * synchronous) and emptied after each use, so it holds no batch.
 */
const crcInput = Writer.create().dynamicBuffer;

function crcOf(bytes: Buffer): number {
  crcInput.buffers.push(bytes);
  crcInput.length = bytes.length;
  try {
    return crc32c(crcInput);
  } finally {
    crcInput.buffers.length = 0;
    crcInput.length = 0;
  }
}

/** The client's key of a partition's idempotence sequence. */
export function sequenceKey(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

/**
 * The records of `messages` grouped by topic, then partition, in the order
 * they came (per-partition order is kept). A partition normally has one
 * message; several (the writer did not know the partition count yet, see
 * `toPartitions`) are joined, in their order, into one batch.
 */
function groupByTopicPartition(
  messages: readonly PartitionRecords[],
): Map<string, Map<number, readonly SinkMessage[]>> {
  const topics = new Map<string, Map<number, readonly SinkMessage[]>>();
  for (const message of messages) {
    let partitions = topics.get(message.topic);
    if (!partitions) {
      partitions = new Map();
      topics.set(message.topic, partitions);
    }
    const group = partitions.get(message.partition);
    partitions.set(message.partition, group ? group.concat(message.value) : message.value);
  }
  return topics;
}

/**
 * The body of a Produce request (versions 3 to 11; from 9 on the request is
 * "flexible"), with the same arguments as @platformatic/kafka's own
 * `createRequest`. Each partition's batch is one buffer handed to the
 * connection as is, so the request is copied once, into the frame.
 */
export function createProduceRequest(
  version: number,
  acks: number,
  timeout: number,
  messages: readonly PartitionRecords[],
  options: ProduceRequestOptions = {},
  now: number = Date.now(),
): Writer {
  const flexible = version >= FIRST_FLEXIBLE_VERSION;
  const writer = Writer.create()
    .appendString(options.transactionalId ?? null, flexible)
    .appendInt16(acks)
    .appendInt32(timeout);
  const topics = groupByTopicPartition(messages);
  appendLength(writer, topics.size, flexible);
  for (const [topic, partitions] of topics) {
    writer.appendString(topic, flexible);
    appendLength(writer, partitions.size, flexible);
    for (const [partition, group] of partitions) {
      const batch = encodeRecordBatch(topic, partition, group, options, now);
      writer.appendInt32(partition);
      if (flexible) writer.appendUnsignedVarInt(batch.length + 1);
      else writer.appendInt32(batch.length);
      writer.append(batch);
      if (flexible) writer.appendTaggedFields();
    }
    if (flexible) writer.appendTaggedFields();
  }
  if (flexible) writer.appendTaggedFields();
  if (acks === ProduceAcks.NO_RESPONSE) writer.context.noResponse = true;
  return writer;
}

function appendLength(writer: Writer, length: number, flexible: boolean): void {
  if (flexible) writer.appendUnsignedVarInt(length + 1);
  else writer.appendInt32(length);
}
