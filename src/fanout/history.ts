import { type EventPosition, parseEventId } from "./event-id.ts";

export interface HistoryEvent {
  id: string;
  position: EventPosition;
  /** The serialised `event` frame, kept so a replay costs no new serialisation. */
  frame: string;
}

export interface HistoryLimits {
  eventsPerChannel: number;
  bytesPerChannel: number;
  /** Channels kept; the least recently written one is dropped past this. */
  channels: number;
}

export type Replay = { ok: true; events: HistoryEvent[] } | { ok: false };

class ChannelLog {
  events: HistoryEvent[] = [];
  bytes = 0;

  constructor(
    /** The partition of the channel's events (one channel, one key, one partition). */
    readonly partition: number,
    /** Offset of the newest evicted event: a `since` older than it can no longer be served. */
    public evictedUpTo: bigint,
  ) {}
}

/**
 * The bounded per-channel history each instance keeps for resume. Bounded in
 * events and bytes per channel and in channels overall (LRU by last write).
 */
export class ChannelHistory {
  private readonly logs = new Map<string, ChannelLog>();
  private epoch: string | undefined;
  /** Per partition, the first offset this instance has seen: nothing older is known here. */
  private readonly origins = new Map<number, bigint>();
  /**
   * Per partition, the newest offset of any channel dropped whole. A channel
   * with no log here may be one of them, so a `since` older than this cannot
   * be served for it: saying `history_gone` too often is safe, missing events is not.
   */
  private readonly droppedUpTo = new Map<number, bigint>();

  constructor(private readonly limits: HistoryLimits) {}

  /** Records where this instance's knowledge of a partition starts (its first consumed offset). */
  setOrigin(epoch: string, partition: number, offset: bigint): void {
    if (this.epoch !== epoch) {
      this.epoch = epoch;
      this.origins.clear();
      this.droppedUpTo.clear();
      this.logs.clear();
    }
    if (!this.origins.has(partition)) this.origins.set(partition, offset);
  }

  append(channelKey: string, event: HistoryEvent): void {
    let log = this.logs.get(channelKey);
    if (log) this.logs.delete(channelKey);
    else {
      if (this.logs.size >= this.limits.channels) this.dropOldestChannel();
      const partition = event.position.partition;
      // A channel created now may have been dropped before: it inherits what was dropped.
      log = new ChannelLog(partition, this.droppedUpTo.get(partition) ?? -1n);
    }
    this.logs.set(channelKey, log);
    log.events.push(event);
    log.bytes += event.frame.length;
    let evict = 0;
    while (
      log.events.length - evict > this.limits.eventsPerChannel ||
      (log.bytes > this.limits.bytesPerChannel && log.events.length - evict > 1)
    ) {
      log.bytes -= (log.events[evict] as HistoryEvent).frame.length;
      evict++;
    }
    if (evict > 0) {
      log.evictedUpTo = (log.events[evict - 1] as HistoryEvent).position.offset;
      log.events.splice(0, evict);
    }
  }

  private dropOldestChannel(): void {
    const [key, log] = this.logs.entries().next().value ?? [];
    if (key === undefined || log === undefined) return;
    this.logs.delete(key);
    const newest = log.events[log.events.length - 1]?.position.offset ?? log.evictedUpTo;
    const dropped = this.droppedUpTo.get(log.partition) ?? -1n;
    if (newest > dropped) this.droppedUpTo.set(log.partition, newest);
  }

  lastId(channelKey: string): string | undefined {
    const events = this.logs.get(channelKey)?.events;
    return events?.[events.length - 1]?.id;
  }

  /**
   * Events after `since`. Not servable (`ok: false`) when `since` is from
   * another epoch or partition, or older than what is kept (or was dropped).
   */
  after(channelKey: string, since: string | undefined): Replay {
    const log = this.logs.get(channelKey);
    const events = log?.events ?? [];
    if (since === undefined) return { ok: true, events: [...events] };
    const position = parseEventId(since);
    if (!position || position.epoch !== this.epoch) return { ok: false };
    const origin = this.origins.get(position.partition);
    if (origin === undefined || position.offset + 1n < origin) return { ok: false };
    const evictedUpTo = log ? log.evictedUpTo : (this.droppedUpTo.get(position.partition) ?? -1n);
    if (position.offset < evictedUpTo) return { ok: false };
    if (log && log.partition !== position.partition) return { ok: false };
    const index = events.findIndex((event) => event.position.offset > position.offset);
    return { ok: true, events: index < 0 ? [] : events.slice(index) };
  }

  get channelCount(): number {
    return this.logs.size;
  }
}
