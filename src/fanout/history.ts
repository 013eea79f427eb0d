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
  /** Offset of the newest evicted event: a `since` older than it can no longer be served. */
  evictedUpTo = -1n;
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

  constructor(private readonly limits: HistoryLimits) {}

  /** Records where this instance's knowledge of a partition starts (its first consumed offset). */
  setOrigin(epoch: string, partition: number, offset: bigint): void {
    if (this.epoch !== epoch) {
      this.epoch = epoch;
      this.origins.clear();
      this.logs.clear();
    }
    if (!this.origins.has(partition)) this.origins.set(partition, offset);
  }

  append(channelKey: string, event: HistoryEvent): void {
    let log = this.logs.get(channelKey);
    if (log) this.logs.delete(channelKey);
    else {
      log = new ChannelLog();
      if (this.logs.size >= this.limits.channels) {
        const oldest = this.logs.keys().next().value;
        if (oldest !== undefined) this.logs.delete(oldest);
      }
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

  lastId(channelKey: string): string | undefined {
    const events = this.logs.get(channelKey)?.events;
    return events?.[events.length - 1]?.id;
  }

  /**
   * Events after `since`. Not servable (`ok: false`) when `since` is from
   * another epoch or older than what is kept.
   */
  after(channelKey: string, since: string | undefined): Replay {
    const log = this.logs.get(channelKey);
    const events = log?.events ?? [];
    if (since === undefined) return { ok: true, events: [...events] };
    const position = parseEventId(since);
    if (!position || position.epoch !== this.epoch) return { ok: false };
    const origin = this.origins.get(position.partition);
    if (origin === undefined || position.offset + 1n < origin) return { ok: false };
    if (log && position.offset < log.evictedUpTo) return { ok: false };
    const index = events.findIndex((event) => event.position.offset > position.offset);
    return { ok: true, events: index < 0 ? [] : events.slice(index) };
  }

  get channelCount(): number {
    return this.logs.size;
  }
}
