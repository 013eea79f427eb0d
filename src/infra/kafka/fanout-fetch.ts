import {
  type Callback,
  type Connection,
  type Consumer,
  compressionsAlgorithmsByBitmask,
  createAPI,
  fetchV12,
  fetchV13,
  fetchV14,
  fetchV15,
  fetchV16,
  fetchV17,
  kGetApi,
  kGetConnection,
  type Reader,
  ResponseError,
} from "@platformatic/kafka";
import { channelTopicHashAt } from "../../domain/channel.ts";

/**
 * The live reader of the fan-out topic, below the client's message stream:
 * Fetch requests whose record sets are kept as bytes, then walked record by
 * record with no object per record. Only a record's offset and its `tenant`,
 * `channel` and `broadcast` headers are looked at until the filter says
 * yes; a record nobody here wants costs a few varint reads and a hash of its
 * tenant and channel bytes, with nothing allocated.
 */

/** A partition's error when the log no longer holds the offset asked for (deleted, or cut back). */
export const OFFSET_OUT_OF_RANGE = 1;

/**
 * One partition's records as they arrived, undecoded: views of the chunks
 * the connection read them in (one, or more when the answer spanned socket
 * reads; `RecordBytes` joins them); none when `errorCode` is `OFFSET_OUT_OF_RANGE`.
 */
export interface RawPartition {
  partitionIndex: number;
  errorCode: number;
  /** The partition's first offset the log holds; -1 when the broker did not say. */
  logStartOffset: bigint;
  records: Buffer[] | undefined;
}

/** Fetch responses v12–v17 share one layout but for the topic (a name up to v12, an id after). */
function rawParser(byName: boolean) {
  return (_correlationId: number, apiKey: number, apiVersion: number, reader: Reader) => {
    reader.readInt32(); // throttle_time_ms
    const errorCode = reader.readInt16();
    reader.readInt32(); // session_id
    const partitions: RawPartition[] = [];
    reader.readArray((r: Reader) => {
      if (byName) r.readString();
      else r.readUUID();
      r.readArray((r: Reader) => {
        const partition: RawPartition = {
          partitionIndex: r.readInt32(),
          errorCode: r.readInt16(),
          logStartOffset: -1n,
          records: undefined,
        };
        r.readInt64(); // high_watermark
        r.readInt64(); // last_stable_offset
        partition.logStartOffset = r.readInt64();
        r.readArray((r: Reader) => {
          r.readInt64();
          r.readInt64();
        });
        r.readInt32(); // preferred_read_replica
        const size = r.readUnsignedVarInt() - 1;
        if (size > 0) {
          // Views, not a copy: each socket read is a buffer of its own, which the connection never writes again.
          partition.records = r.buffer.subarray(r.position, r.position + size).buffers;
          r.skip(size);
        }
        partitions.push(partition);
      });
    });
    // Out of range is the reader's to resolve (it moves to what the log holds); any other error fails the fetch.
    const failed = partitions.find(
      (partition) => partition.errorCode !== 0 && partition.errorCode !== OFFSET_OUT_OF_RANGE,
    );
    if (errorCode !== 0 || failed) {
      throw new ResponseError(apiKey, apiVersion, { "": [errorCode || (failed?.errorCode ?? 0), null] }, {});
    }
    return partitions;
  };
}

const REQUESTS = { 12: fetchV12, 13: fetchV13, 14: fetchV14, 15: fetchV15, 16: fetchV16, 17: fetchV17 };

type RawFetch = (
  connection: Connection,
  maxWaitMs: number,
  minBytes: number,
  maxBytes: number,
  isolationLevel: number,
  sessionId: number,
  sessionEpoch: number,
  topics: unknown[],
  forgotten: unknown[],
  rackId: string,
  callback: Callback<RawPartition[]>,
) => void;

/** The Fetch API the broker and the client agree on, answering raw record sets. */
export function rawFetchApi(
  consumer: Consumer<Buffer, Buffer, Buffer, Buffer>,
): Promise<{ fetch: RawFetch; byName: boolean }> {
  return new Promise((resolve, reject) => {
    // biome-ignore lint/suspicious/noExplicitAny: the client's API lookup is a symbol-keyed method
    (consumer as any)[kGetApi]("Fetch", (error: Error | null, api: { version: number }) => {
      if (error) return reject(error);
      const request = REQUESTS[api.version as keyof typeof REQUESTS];
      if (!request) return reject(new Error(`Fetch v${api.version} is not supported for the fan-out reader`));
      const byName = api.version === 12;
      const raw = createAPI(1, api.version, request.createRequest, rawParser(byName) as never);
      resolve({ fetch: raw as unknown as RawFetch, byName });
    });
  });
}

export function connectionTo(
  consumer: Consumer<Buffer, Buffer, Buffer, Buffer>,
  broker: { host: string; port: number },
): Promise<Connection> {
  return new Promise((resolve, reject) => {
    // biome-ignore lint/suspicious/noExplicitAny: the client's connection pool is reached through a symbol-keyed method
    (consumer as any)[kGetConnection](broker, (error: Error | null, connection: Connection) =>
      error ? reject(error) : resolve(connection),
    );
  });
}

/**
 * A partition's fetched bytes as one buffer for the walk: a record set that
 * came in one socket read is walked where it lies; one spread over several
 * is copied into a buffer owned here and reused by the next answer, rather
 * than into a new one per answer (garbage the collector must find: at tens
 * of megabytes a second it ran full collections, for the memory outside the
 * heap, several times a second). Only for use until the next `join`: the
 * walk keeps nothing of the bytes (wanted records are decoded to strings).
 * Holds at most `keep` bytes; a larger record set gets a buffer of its own.
 */
export class RecordBytes {
  private scratch = Buffer.alloc(0);

  constructor(private readonly keep: number) {}

  join(chunks: Buffer[]): Buffer {
    if (chunks.length === 1) return chunks[0] as Buffer;
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    if (length > this.keep) return Buffer.concat(chunks, length);
    if (this.scratch.length < length) this.scratch = Buffer.allocUnsafe(Math.min(this.keep, length * 2));
    let at = 0;
    for (const chunk of chunks) at += chunk.copy(this.scratch, at);
    return this.scratch.subarray(0, length);
  }
}

/** What the walk hands on for a wanted record: its offset, headers and value as views of the fetched bytes. */
export type RawRecordSink = (offset: bigint, headers: Array<[Buffer, Buffer]>, value: Buffer | null) => void;

/** Which records the walk hands on, asked from their headers (see `FanoutListener`). */
export interface RecordFilter {
  /** False when no wanted channel's topic has this hash (`topicHash`): the record is skipped unread. */
  mayWant(topicHash: number): boolean;
  /** Whether a record of this tenant and channel is wanted (never asked for a broadcast). */
  wants(tenant: string, channel: string | undefined): boolean;
}

/** A batch attribute: transaction markers, which carry no message. */
const CONTROL_BATCH = 0x20;
const COMPRESSION_MASK = 0x07;
/** Bytes of a record batch before its records (through the record count). */
const BATCH_HEAD = 61;
const TENANT = Buffer.from("tenant");
const CHANNEL = Buffer.from("channel");
const BROADCAST = Buffer.from("broadcast");

/**
 * Whether `bytes` (one partition's fetched record batches) hold a batch
 * compressed with `bitmask`'s codec: read from each batch's attributes only.
 */
export function holdsCompression(bytes: Buffer, bitmask: number): boolean {
  let at = 0;
  while (bytes.length - at >= BATCH_HEAD) {
    const end = at + 12 + bytes.readInt32BE(at + 8);
    if (end > bytes.length) break;
    const attributes = bytes.readInt16BE(at + 21);
    if ((attributes & CONTROL_BATCH) === 0 && (attributes & COMPRESSION_MASK) === bitmask) return true;
    at = end;
  }
  return false;
}

/**
 * Walks the record batches of one partition's fetched bytes from offset
 * `next` on; `filter` decides, from the headers, whether a record is
 * decoded (a broadcast always is).
 * Answers the next offset to fetch.
 */
export function walkRecords(bytes: Buffer, next: bigint, filter: RecordFilter, sink: RawRecordSink): bigint {
  const asked = new WantsMemo(filter);
  let at = 0;
  while (bytes.length - at >= BATCH_HEAD) {
    const batchLength = bytes.readInt32BE(at + 8);
    const end = at + 12 + batchLength;
    // A batch cut off by the fetch's byte limit comes whole with the next fetch.
    if (end > bytes.length) break;
    const baseOffset = bytes.readBigInt64BE(at);
    const attributes = bytes.readInt16BE(at + 21);
    const lastOffsetDelta = bytes.readInt32BE(at + 23);
    const count = bytes.readInt32BE(at + 57);
    const batchEnd = baseOffset + BigInt(lastOffsetDelta) + 1n;
    if (batchEnd > next && (attributes & CONTROL_BATCH) === 0) {
      const compression = attributes & COMPRESSION_MASK;
      if (compression === 0) walkBatch(bytes, at + BATCH_HEAD, count, baseOffset, next, asked, sink);
      else {
        const algorithm = compressionsAlgorithmsByBitmask[compression];
        if (!algorithm) throw new Error(`unsupported compression ${compression} in the fan-out topic`);
        const records = algorithm.decompressSync(bytes.subarray(at + BATCH_HEAD, end)) as Buffer;
        walkBatch(records, 0, count, baseOffset, next, asked, sink);
      }
    }
    if (batchEnd > next) next = batchEnd;
    at = end;
  }
  return next;
}

function walkBatch(
  bytes: Buffer,
  start: number,
  count: number,
  baseOffset: bigint,
  from: bigint,
  asked: WantsMemo,
  sink: RawRecordSink,
): void {
  const cursor = { at: start };
  // Offsets before `from` were read by an earlier fetch: deltas below this are skipped.
  const skipBelow = from > baseOffset ? Number(from - baseOffset) : 0;
  for (let i = 0; i < count; i++) {
    const length = readVarint(bytes, cursor);
    const recordEnd = cursor.at + length;
    cursor.at++; // attributes
    skipVarint(bytes, cursor); // timestamp delta
    const offsetDelta = readVarint(bytes, cursor);
    if (offsetDelta < skipBelow) {
      cursor.at = recordEnd;
      continue;
    }
    const keyLength = readVarint(bytes, cursor);
    if (keyLength > 0) cursor.at += keyLength;
    const valueLength = readVarint(bytes, cursor);
    const valueStart = cursor.at;
    if (valueLength > 0) cursor.at += valueLength;
    const headerCount = readVarint(bytes, cursor);
    const headersStart = cursor.at;
    let tenantStart = -1;
    let tenantEnd = -1;
    let channelStart = -1;
    let channelEnd = -1;
    let broadcast = false;
    for (let h = 0; h < headerCount; h++) {
      const nameLength = readVarint(bytes, cursor);
      const nameStart = cursor.at;
      cursor.at += Math.max(0, nameLength);
      const valueLength = readVarint(bytes, cursor);
      const start = cursor.at;
      cursor.at += Math.max(0, valueLength);
      if (valueLength < 0) continue;
      if (equalsAt(bytes, nameStart, nameLength, TENANT)) {
        tenantStart = start;
        tenantEnd = cursor.at;
      } else if (equalsAt(bytes, nameStart, nameLength, CHANNEL)) {
        channelStart = start;
        channelEnd = cursor.at;
      } else if (equalsAt(bytes, nameStart, nameLength, BROADCAST)) broadcast = true;
    }
    cursor.at = recordEnd;
    if (tenantStart < 0 || (channelStart < 0 && !broadcast)) continue;
    if (!broadcast && !asked.wants(bytes, tenantStart, tenantEnd, channelStart, channelEnd)) continue;
    sink(
      baseOffset + BigInt(offsetDelta),
      headersOf(bytes, headersStart, headerCount),
      valueLength < 0 ? null : bytes.subarray(valueStart, valueStart + valueLength),
    );
  }
}

const MEMO_SLOTS = 16;

/**
 * `wants` over one walk, remembered per tenant and channel by a hash of
 * their bytes (a fixed table, a slot overwritten on a miss): a partition's
 * records repeat a few channels, which are then neither decoded nor looked up
 * again. It lives for one walk, which runs without yielding, so a
 * subscription made meanwhile counts from the next fetched answer on.
 */
class WantsMemo {
  private readonly tenants = new Array<string>(MEMO_SLOTS).fill("");
  private readonly channels = new Array<string>(MEMO_SLOTS).fill("");
  private readonly answers = new Array<boolean>(MEMO_SLOTS).fill(false);
  private filled = 0;

  constructor(private readonly filter: RecordFilter) {}

  wants(
    bytes: Buffer,
    tenantStart: number,
    tenantEnd: number,
    channelStart: number,
    channelEnd: number,
  ): boolean {
    // No wanted channel's topic hashes alike: skipped with nothing decoded, whatever the number of channels.
    if (!this.filter.mayWant(channelTopicHashAt(bytes, tenantStart, tenantEnd, channelStart, channelEnd)))
      return false;
    let hash = 0;
    for (let at = tenantStart; at < tenantEnd; at++) hash = (Math.imul(hash, 31) + (bytes[at] as number)) | 0;
    hash = Math.imul(hash, 31) | 0;
    for (let at = channelStart; at < channelEnd; at++)
      hash = (Math.imul(hash, 31) + (bytes[at] as number)) | 0;
    const slot = hash & (MEMO_SLOTS - 1);
    if (
      (this.filled & (1 << slot)) !== 0 &&
      spells(bytes, tenantStart, tenantEnd, this.tenants[slot] as string) &&
      spells(bytes, channelStart, channelEnd, this.channels[slot] as string)
    )
      return this.answers[slot] as boolean;
    const tenant = bytes.toString("utf8", tenantStart, tenantEnd);
    const channel = bytes.toString("utf8", channelStart, channelEnd);
    const wanted = this.filter.wants(tenant, channel);
    // Only ASCII is kept: its bytes and its UTF-16 code units are then the same numbers.
    if (tenant.length === tenantEnd - tenantStart && channel.length === channelEnd - channelStart) {
      this.tenants[slot] = tenant;
      this.channels[slot] = channel;
      this.answers[slot] = wanted;
      this.filled |= 1 << slot;
    }
    return wanted;
  }
}

/** Whether the bytes from `start` to `end` are `text`'s characters, one byte each. */
function spells(bytes: Buffer, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

/** A wanted record's headers as views of the fetched bytes (null values left out). */
function headersOf(bytes: Buffer, start: number, count: number): Array<[Buffer, Buffer]> {
  const cursor = { at: start };
  const headers: Array<[Buffer, Buffer]> = [];
  for (let h = 0; h < count; h++) {
    const nameLength = readVarint(bytes, cursor);
    const name = bytes.subarray(cursor.at, cursor.at + Math.max(0, nameLength));
    cursor.at += Math.max(0, nameLength);
    const valueLength = readVarint(bytes, cursor);
    if (valueLength < 0) continue;
    headers.push([name, bytes.subarray(cursor.at, cursor.at + valueLength)]);
    cursor.at += valueLength;
  }
  return headers;
}

function equalsAt(bytes: Buffer, start: number, length: number, name: Buffer): boolean {
  if (length !== name.length) return false;
  for (let i = 0; i < length; i++) if (bytes[start + i] !== name[i]) return false;
  return true;
}

/** A zigzag varint of up to 32 bits (lengths, counts, offset deltas). */
function readVarint(bytes: Buffer, cursor: { at: number }): number {
  let value = 0;
  let shift = 0;
  let byte: number;
  do {
    byte = bytes[cursor.at++] as number;
    value |= (byte & 0x7f) << shift;
    shift += 7;
  } while (byte & 0x80 && shift < 35);
  return (value >>> 1) ^ -(value & 1);
}

function skipVarint(bytes: Buffer, cursor: { at: number }): void {
  while ((bytes[cursor.at++] as number) & 0x80) {}
}
