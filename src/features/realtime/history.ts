import { tenantOfTopic } from "../../domain/channel.ts";
import { type EventPosition, parseEventId } from "../../domain/event-id.ts";

export interface HistoryEvent {
  id: string;
  position: EventPosition;
  /** The serialised `event` frame, kept so a replay costs no new serialisation. */
  frame: string;
}

export interface HistoryLimits {
  eventsPerChannel: number;
  bytesPerChannel: number;
  /** Channels kept by the instance; past this, the tenant holding the most channels loses its least recently written one. */
  channels: number;
  /** Bytes kept by the instance (see `storedBytes`); past this, the tenant holding the most bytes loses its oldest events. */
  maxBytes: number;
  /** Bytes one tenant may keep; past this, that tenant loses its own oldest events. */
  tenantMaxBytes: number;
}

/** Why events left the history: a bound of the channel, of its tenant, or of the instance. */
export type EvictionCause = "channel" | "channels" | "tenant_budget" | "instance_budget";

/**
 * `not_kept`: older than what this instance keeps (the log may still hold it).
 * `unknown_position`: malformed, from another epoch, or another partition than the channel's.
 */
export type Replay =
  | { ok: true; events: HistoryEvent[] }
  | { ok: false; reason: "not_kept" | "unknown_position" };

/**
 * What an event costs as stored: its strings counted as UTF-16 (2 bytes per
 * code unit, what V8 and JavaScriptCore allocate for a two-byte string and an
 * upper bound for a one-byte one) plus the objects around them.
 */
const EVENT_OVERHEAD_BYTES = 120;
const CHANNEL_OVERHEAD_BYTES = 200;
export const storedBytes = (event: HistoryEvent) =>
  2 * (event.frame.length + event.id.length) + EVENT_OVERHEAD_BYTES;

class TenantHistory {
  /** This tenant's channels, least recently written first. */
  readonly channels = new Map<string, ChannelLog>();
  bytes = 0;
  events = 0;
  /**
   * Per partition, the newest offset of any of this tenant's channels dropped
   * whole. A channel of this tenant with no log here may be one of them, so a
   * `since` older than this cannot be served for it: saying `history_gone` (or
   * reading the log) too often is safe, missing events is not.
   */
  readonly droppedUpTo = new Map<number, bigint>();

  constructor(readonly name: string) {}
}

class ChannelLog {
  events: HistoryEvent[] = [];
  /** Bytes of `events`; the log's own cost (`overheadBytes`) counts for its tenant and the instance only. */
  bytes = 0;
  /** The channel's own bounds evicted from it: it holds as many of its latest events as it may keep. */
  full = false;
  readonly overheadBytes: number;

  constructor(
    readonly key: string,
    readonly tenant: TenantHistory,
    /** The partition of the channel's events (one channel, one key, one partition). */
    readonly partition: number,
    /** Offset of the newest evicted event: a `since` older than it can no longer be served. */
    public evictedUpTo: bigint,
  ) {
    this.overheadBytes = CHANNEL_OVERHEAD_BYTES + 2 * key.length;
  }
}

/**
 * The bounded per-channel history each instance keeps for resume. Bounded per
 * channel (events, bytes), per tenant (bytes) and per instance (bytes,
 * channels). A tenant past its share evicts only its own events; past the
 * instance's bounds, the tenant holding the most pays. Every bound evicts
 * oldest first (the least recently written channel's oldest events).
 */
export class ChannelHistory {
  private readonly logs = new Map<string, ChannelLog>();
  private readonly tenants = new Map<string, TenantHistory>();
  private epoch: string | undefined;
  /** Per partition, the first offset this instance delivers: nothing older is known here. */
  private readonly origins = new Map<number, bigint>();
  /**
   * The `droppedUpTo` marks of tenants that no longer hold any channel (their
   * state is freed), oldest first, at most `limits.channels` tenants: a mark
   * holds for its own tenant only, as a live tenant's does.
   */
  private readonly formerTenants = new Map<string, Map<number, bigint>>();
  /**
   * The marks of former tenants pushed out of `formerTenants`, merged: they
   * hold for every tenant (needless `history_gone` at worst, never a gap).
   */
  private readonly forgottenTenantsDroppedUpTo = new Map<number, bigint>();
  private totalBytes = 0;

  constructor(
    private readonly limits: HistoryLimits,
    private readonly onEvict: (cause: EvictionCause, events: number) => void = () => {},
    /**
     * `every`: every channel's events are appended (the in-process bus: memory
     * is the only history). `watched`: only channels started with `watch` are
     * complete here; the reader skips the others' messages, so a channel
     * without a log answers `not_kept` for any `since` (the log holds it).
     */
    private readonly keeps: "every" | "watched" = "every",
  ) {}

  /**
   * From now on the channel's events are kept: its log starts at `next`, the
   * live reader's next offset on the channel's partition. Earlier messages of
   * the channel may have been skipped, so nothing before is served from here.
   */
  watch(channelKey: string, partition: number, next: bigint): void {
    if (this.logs.has(channelKey)) return;
    if (this.logs.size >= this.limits.channels) this.dropChannelOfLargest(tenantOfTopic(channelKey));
    const log = this.createLog(channelKey, partition);
    if (next - 1n > log.evictedUpTo) log.evictedUpTo = next - 1n;
    log.tenant.channels.set(channelKey, log);
  }

  /** The channel is no longer wanted: its events are freed (a later `since` reads the log). */
  forget(channelKey: string): void {
    const log = this.logs.get(channelKey);
    if (log) this.dropChannel(log);
  }

  /**
   * Records where this instance's knowledge of a partition starts: the first
   * offset it will deliver. Announced again when a start is retried, and the
   * later announcement wins: the offsets between the two were never read.
   */
  setOrigin(epoch: string, partition: number, offset: bigint): void {
    if (this.epoch !== epoch) {
      this.epoch = epoch;
      this.origins.clear();
      this.formerTenants.clear();
      this.forgottenTenantsDroppedUpTo.clear();
      this.logs.clear();
      this.tenants.clear();
      this.totalBytes = 0;
    }
    this.origins.set(partition, offset);
  }

  /** `channelKey` is the channel's engine topic, `t/<tenant>/<channel>`. */
  append(channelKey: string, event: HistoryEvent): void {
    let log = this.logs.get(channelKey);
    if (log && log.partition !== event.position.partition) {
      // The channel's key now maps to a partition added to the fan-out topic: positions there
      // do not compare with the old ones, so its history starts again (an older `since` is gone).
      this.dropChannel(log);
      log = undefined;
    }
    if (log) log.tenant.channels.delete(channelKey);
    else {
      if (this.logs.size >= this.limits.channels) this.dropChannelOfLargest(tenantOfTopic(channelKey));
      log = this.createLog(channelKey, event.position.partition);
    }
    const tenant = log.tenant;
    tenant.channels.set(channelKey, log);
    const bytes = storedBytes(event);
    log.events.push(event);
    log.bytes += bytes;
    tenant.bytes += bytes;
    tenant.events++;
    this.totalBytes += bytes;
    let evicted = 0;
    while (
      log.events.length > this.limits.eventsPerChannel ||
      (log.bytes > this.limits.bytesPerChannel && log.events.length > 1)
    ) {
      this.evictOldest(log);
      evicted++;
    }
    if (evicted > 0) {
      log.full = true;
      this.onEvict("channel", evicted);
    }
    evicted = 0;
    while (tenant.bytes > this.limits.tenantMaxBytes && tenant.events > 1) {
      this.evictOldestOf(tenant);
      evicted++;
    }
    if (evicted > 0) this.onEvict("tenant_budget", evicted);
    evicted = 0;
    while (this.totalBytes > this.limits.maxBytes) {
      const victim = this.largest(tenant.name, (t) => t.bytes, this.totalBytes);
      if (!victim || (victim === tenant && tenant.events <= 1)) break;
      this.evictOldestOf(victim);
      evicted++;
    }
    if (evicted > 0) this.onEvict("instance_budget", evicted);
  }

  /** The most events one channel keeps: what an answer of a channel's latest events holds at most. */
  get eventsPerChannel(): number {
    return this.limits.eventsPerChannel;
  }

  /**
   * Whether the kept events are the channel's latest as far as this history
   * would keep them: always when every channel is kept; with `watched`, once
   * the channel's own bounds evicted from its log (what it skipped before its
   * watch would have been evicted too).
   */
  holdsLatest(channelKey: string): boolean {
    return this.keeps === "every" || this.logs.get(channelKey)?.full === true;
  }

  lastId(channelKey: string): string | undefined {
    const events = this.logs.get(channelKey)?.events;
    return events?.[events.length - 1]?.id;
  }

  /**
   * Events after `since`. Not servable when `since` is from another epoch or
   * partition (`unknown_position`), or older than what is kept or was dropped
   * (`not_kept`).
   */
  after(channelKey: string, since: string | undefined): Replay {
    const log = this.logs.get(channelKey);
    const events = log?.events ?? [];
    if (since === undefined) return { ok: true, events: [...events] };
    const position = parseEventId(since);
    if (!position || position.epoch !== this.epoch) return { ok: false, reason: "unknown_position" };
    if (log && log.partition !== position.partition) return { ok: false, reason: "unknown_position" };
    const origin = this.origins.get(position.partition);
    if (origin === undefined) return { ok: false, reason: "unknown_position" };
    if (position.offset + 1n < origin) return { ok: false, reason: "not_kept" };
    if (!log && this.keeps === "watched") return { ok: false, reason: "not_kept" };
    const evictedUpTo = log
      ? log.evictedUpTo
      : this.droppedUpTo(tenantOfTopic(channelKey), position.partition);
    if (position.offset < evictedUpTo) return { ok: false, reason: "not_kept" };
    const index = events.findIndex((event) => event.position.offset > position.offset);
    return { ok: true, events: index < 0 ? [] : events.slice(index) };
  }

  get channelCount(): number {
    return this.logs.size;
  }

  /** Bytes held, as counted against the budgets. */
  get bytes(): number {
    return this.totalBytes;
  }

  private createLog(channelKey: string, partition: number): ChannelLog {
    const name = tenantOfTopic(channelKey);
    let tenant = this.tenants.get(name);
    if (!tenant) {
      tenant = new TenantHistory(name);
      // A tenant back after its state was freed takes up its marks again.
      const former = this.formerTenants.get(name);
      if (former) for (const [partition, offset] of former) tenant.droppedUpTo.set(partition, offset);
      this.formerTenants.delete(name);
      this.tenants.set(name, tenant);
    }
    // A channel created now may have been dropped before: it inherits what was dropped.
    const log = new ChannelLog(channelKey, tenant, partition, this.droppedUpTo(name, partition));
    tenant.bytes += log.overheadBytes;
    this.totalBytes += log.overheadBytes;
    this.logs.set(channelKey, log);
    return log;
  }

  private droppedUpTo(tenantName: string, partition: number): bigint {
    const marks = this.tenants.get(tenantName)?.droppedUpTo ?? this.formerTenants.get(tenantName);
    const own = marks?.get(partition) ?? -1n;
    const forgotten = this.forgottenTenantsDroppedUpTo.get(partition) ?? -1n;
    return own > forgotten ? own : forgotten;
  }

  /** Drops the oldest event of the channel (the whole channel once it has none left). */
  private evictOldest(log: ChannelLog): void {
    const event = log.events.shift();
    if (!event) {
      // A watched channel with nothing yet: it goes whole (a later append starts it again).
      this.dropChannel(log);
      return;
    }
    const bytes = storedBytes(event);
    log.bytes -= bytes;
    log.tenant.bytes -= bytes;
    log.tenant.events--;
    this.totalBytes -= bytes;
    log.evictedUpTo = event.position.offset;
    if (log.events.length === 0) this.dropChannel(log);
  }

  /** The tenant's least recently written channel loses its oldest event. */
  private evictOldestOf(tenant: TenantHistory): void {
    const log = tenant.channels.values().next().value;
    if (log) this.evictOldest(log);
  }

  /** Past the instance's channel bound: the tenant holding the most channels loses its least recently written one. */
  private dropChannelOfLargest(writer: string): void {
    const victim = this.largest(writer, (tenant) => tenant.channels.size, this.logs.size);
    const log = victim?.channels.values().next().value;
    if (!log) return;
    this.onEvict("channels", log.events.length);
    this.dropChannel(log);
  }

  private dropChannel(log: ChannelLog): void {
    const tenant = log.tenant;
    tenant.bytes -= log.bytes + log.overheadBytes;
    tenant.events -= log.events.length;
    this.totalBytes -= log.bytes + log.overheadBytes;
    const newest = log.events[log.events.length - 1]?.position.offset ?? log.evictedUpTo;
    const marks = tenant.droppedUpTo;
    if (newest > (marks.get(log.partition) ?? -1n)) marks.set(log.partition, newest);
    this.logs.delete(log.key);
    tenant.channels.delete(log.key);
    if (tenant.channels.size === 0) {
      // The tenant's state is freed; its marks stay, its own (they once held for every tenant,
      // so one tenant's dropped channels made another's resume history_gone).
      if (marks.size > 0) this.keepFormerMarks(tenant.name, marks);
      this.tenants.delete(tenant.name);
    }
  }

  /** Keeps a freed tenant's marks; past `limits.channels` such tenants, the oldest one's hold for all. */
  private keepFormerMarks(name: string, marks: Map<number, bigint>): void {
    this.formerTenants.set(name, marks);
    if (this.formerTenants.size <= this.limits.channels) return;
    const [oldest, forgotten] = this.formerTenants.entries().next().value as [string, Map<number, bigint>];
    this.formerTenants.delete(oldest);
    for (const [partition, offset] of forgotten) {
      if (offset > (this.forgottenTenantsDroppedUpTo.get(partition) ?? -1n))
        this.forgottenTenantsDroppedUpTo.set(partition, offset);
    }
  }

  /**
   * The tenant holding the most by `measure` (whose sum over tenants is
   * `total`): the writing tenant when it holds at least the average, the
   * common case, which needs no scan; otherwise the largest, found by a scan.
   */
  private largest(
    writer: string,
    measure: (tenant: TenantHistory) => number,
    total: number,
  ): TenantHistory | undefined {
    const candidate = this.tenants.get(writer);
    if (candidate && measure(candidate) * this.tenants.size >= total) return candidate;
    let largest: TenantHistory | undefined;
    for (const tenant of this.tenants.values()) {
      if (!largest || measure(tenant) > measure(largest)) largest = tenant;
    }
    return largest;
  }
}
