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
 * What an entry costs beside its messages' strings (its keys, the entry, the
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
function entryBytes(tenant: string, channel: string, scanned: ScannedLatest): number {
  let bytes = ENTRY_OVERHEAD_BYTES + stringBytes(tenant) + stringBytes(channel);
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

interface Entry {
  scanned: ScannedLatest;
  bytes: number;
}

/** One tenant's entries, least recently used first, and their bytes. */
interface TenantEntries {
  entries: Map<string, Entry>;
  bytes: number;
}

/**
 * The last scan's result per tenant and channel (`ScannedLatest`), within
 * `maxBytes` (every entry costs at least its overhead, which bounds their
 * number too). Past it, the tenant holding the most bytes loses its least
 * recently used entry, the writer counted with the entry it brings and paying
 * on a tie: a tenant asking for many channels' latest events pushes out its
 * own entries, never those of a tenant holding no more than it would (an
 * entry that would need them is not kept). An
 * entry of another epoch of the fan-out topic than the live reader's clears
 * every entry (the topic was made again: none of them stands for it).
 */
export class LatestCache {
  private readonly tenants = new Map<string, TenantEntries>();
  private bytes = 0;
  private entryCount = 0;

  constructor(private readonly maxBytes: number) {}

  get(tenant: string, channel: string, epoch: string, partition: number): ScannedLatest | undefined {
    const held = this.tenants.get(tenant);
    const entry = held?.entries.get(channel);
    if (!held || !entry) return undefined;
    if (entry.scanned.epoch !== epoch) {
      this.clear();
      return undefined;
    }
    // The channel's key maps to a partition added since: the entry stands for another log.
    if (entry.scanned.partition !== partition) {
      this.delete(tenant, channel);
      return undefined;
    }
    held.entries.delete(channel);
    held.entries.set(channel, entry);
    return entry.scanned;
  }

  set(tenant: string, channel: string, scanned: ScannedLatest): void {
    this.delete(tenant, channel);
    const bytes = entryBytes(tenant, channel, scanned);
    if (bytes > this.maxBytes) return;
    while (this.bytes + bytes > this.maxBytes) {
      const payer = this.largest(tenant, bytes);
      const held = this.tenants.get(payer);
      // The writer pays and has nothing left to give: the others hold less than it would.
      if (!held) return;
      this.delete(payer, held.entries.keys().next().value as string);
    }
    let held = this.tenants.get(tenant);
    if (!held) {
      held = { entries: new Map(), bytes: 0 };
      this.tenants.set(tenant, held);
    }
    held.entries.set(channel, { scanned, bytes });
    held.bytes += bytes;
    this.bytes += bytes;
    this.entryCount++;
  }

  delete(tenant: string, channel: string): void {
    const held = this.tenants.get(tenant);
    const entry = held?.entries.get(channel);
    if (!held || !entry) return;
    held.entries.delete(channel);
    held.bytes -= entry.bytes;
    this.bytes -= entry.bytes;
    this.entryCount--;
    if (held.entries.size === 0) this.tenants.delete(tenant);
  }

  get size(): number {
    return this.entryCount;
  }

  /** Bytes held, as counted against `maxBytes`. */
  get heldBytes(): number {
    return this.bytes;
  }

  /** The tenant holding the most bytes, `writer` counted with the `incoming` bytes of its entry and chosen on a tie. */
  private largest(writer: string, incoming: number): string {
    let found = writer;
    let most = (this.tenants.get(writer)?.bytes ?? 0) + incoming;
    for (const [tenant, held] of this.tenants) {
      if (held.bytes > most) {
        found = tenant;
        most = held.bytes;
      }
    }
    return found;
  }

  private clear(): void {
    this.tenants.clear();
    this.bytes = 0;
    this.entryCount = 0;
  }
}
