import type { DeliveredMessage } from "../../ports/fanout-bus.ts";

/**
 * What a scan of the log for a channel's latest events established: every
 * message of the channel at offsets `from` to `until` (exclusive) of its
 * partition, oldest first. The next request for the channel's latest events
 * reads only the offsets after `until` and merges.
 */
export interface ScannedLatest {
  epoch: string;
  partition: number;
  from: bigint;
  until: bigint;
  messages: DeliveredMessage[];
}

/**
 * What an entry costs beside its messages' strings (the key, the entry, the
 * array), and what each message does (its object, its position and offset,
 * its record: about 230 bytes measured on Bun).
 */
const ENTRY_OVERHEAD_BYTES = 200;
const MESSAGE_OVERHEAD_BYTES = 256;

/** UTF-16 bytes of a string the message holds, or none. */
const stringBytes = (text: string | undefined) => 2 * (text?.length ?? 0);

/**
 * Bytes an entry holds: every string of its messages as UTF-16 (each message
 * read from the log holds strings of its own, tenant and channel too) plus
 * the objects around them.
 */
function entryBytes(key: string, scanned: ScannedLatest): number {
  let bytes = ENTRY_OVERHEAD_BYTES + stringBytes(key);
  for (const message of scanned.messages) {
    bytes +=
      MESSAGE_OVERHEAD_BYTES +
      stringBytes(message.dataJson) +
      stringBytes(message.tenant) +
      stringBytes(message.channel) +
      stringBytes(message.record?.type) +
      stringBytes(message.record?.id) +
      stringBytes(message.traceparent) +
      stringBytes(message.tracestate);
  }
  return bytes;
}

/**
 * The last scan's result per tenant and channel (`ScannedLatest`), within
 * `maxBytes` (every entry costs at least its overhead, which bounds their
 * number too): least recently used first out. An entry of another epoch of
 * the fan-out topic than the live reader's clears every entry (the topic was
 * made again: none of them stands for it).
 */
export class LatestCache {
  private readonly entries = new Map<string, { scanned: ScannedLatest; bytes: number }>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string, epoch: string, partition: number): ScannedLatest | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.scanned.epoch !== epoch) {
      this.clear();
      return undefined;
    }
    // The channel's key maps to a partition added since: the entry stands for another log.
    if (entry.scanned.partition !== partition) {
      this.delete(key);
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.scanned;
  }

  set(key: string, scanned: ScannedLatest): void {
    this.delete(key);
    const bytes = entryBytes(key, scanned);
    if (bytes > this.maxBytes) return;
    while (this.bytes + bytes > this.maxBytes) {
      const oldest = this.entries.keys().next().value as string;
      this.delete(oldest);
    }
    this.entries.set(key, { scanned, bytes });
    this.bytes += bytes;
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Bytes held, as counted against `maxBytes`. */
  get heldBytes(): number {
    return this.bytes;
  }

  private clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
