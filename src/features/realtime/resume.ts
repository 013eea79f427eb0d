import { channelTopic } from "../../domain/channel.ts";
import { GatewayError } from "../../domain/errors.ts";
import { type EventPosition, formatEventId, isEventId, parseEventId } from "../../domain/event-id.ts";
import type {
  DeliveredMessage,
  FanoutBus,
  LivePosition,
  LogRead,
  LogReadResult,
} from "../../ports/fanout-bus.ts";
import { historyEvent } from "./fanout.ts";
import type { ChannelHistory, HistoryEvent } from "./history.ts";
import { LatestCache, type ScannedLatest } from "./latest-cache.ts";

export interface ReplayLimits {
  /** Reads from the log under way on this instance. */
  maxConcurrent: number;
  /** Reads from the log under way for one tenant. */
  maxConcurrentPerTenant: number;
  /** Payload bytes one read returns (and live bytes a socket holds back while it runs). */
  maxBytes: number;
  timeoutMs: number;
  /** Offsets of its partition a scan for a channel's latest events reads back at most. */
  scanMaxOffsets: number;
  /** Bytes the scans' results kept for the next request of the same channel's latest events may take (`LatestCache`). */
  latestCacheBytes: number;
}

/**
 * `events`: in order, after `since`; `complete` when nothing after them was
 * left out, else `next` is the position to resume from (the last event's id,
 * or where a read of the log stopped). `truncated`: a channel's latest
 * events whose scan of the log a bound ended before it found as many as the
 * history keeps or reached the partition's start: older events may exist
 * that were not read. `gone`: `since` can no longer be served. `try_again`:
 * a replay bound was hit; nothing was left out silently.
 */
export type ResumeOutcome =
  | { kind: "events"; events: HistoryEvent[]; complete: boolean; next: string | null; truncated?: true }
  | { kind: "gone"; message: string }
  | { kind: "try_again"; retryAfterMs: number; message: string };

/** `since` is older than what memory keeps and, with Kafka, than what the fan-out topic still holds. */
const OLDER_THAN_KEPT: ResumeOutcome = { kind: "gone", message: "since is older than the kept history" };
/**
 * `since` names another epoch of the fan-out topic (it was deleted and made
 * again) or another partition than the channel's: no history of this channel
 * follows it.
 */
const NOT_THIS_LOG: ResumeOutcome = {
  kind: "gone",
  message: "since is not a position of this channel's log (another epoch or partition of the fan-out topic)",
};

/** `since` is at or past the end of its partition: no event has that id (a client's bug, most likely). */
const PAST_THE_END: ResumeOutcome = {
  kind: "gone",
  message: "since is not a position of this channel's log (past the end of the fan-out topic)",
};

/** A read of the log under way; live delivery of the channel takes over at offset `until`. */
export interface PendingResume {
  until: bigint;
  outcome: Promise<ResumeOutcome>;
}

/**
 * A `since` a client sent over HTTP (`name`: the parameter or header it came
 * in), checked to be an event id: anything else is a client bug, a 400
 * `bad_request`, never `history_gone` (which would look like lost history).
 * A well-formed id from another epoch or partition stays for `after` to judge.
 */
export function requireSince(since: string | undefined, name: string): string | undefined {
  if (since !== undefined && !isEventId(since))
    throw new GatewayError("bad_request", `${name} must be an event id (<epoch>-<partition>-<offset>)`);
  return since;
}

/** What a read of the log is for: a resume, a scan back for a channel's latest events, or a read on from the last scan. */
export type LogReadKind = "since" | "scan" | "read_on";

/** How long a client waits after a refusal for lack of replay capacity. */
const BUSY_RETRY_MS = 1000;

/**
 * Offsets of the partition the first window of a scan for a channel's latest
 * events reads back from the end; each further window is twice the last.
 */
const FIRST_WINDOW_OFFSETS = 1024n;

/** How often a resume from ahead of this instance's live reader looks whether the reader got there. */
const CATCH_UP_POLL_MS = 10;

/**
 * Resume and history for every transport (WebSocket, the HTTP delta route,
 * Server-Sent Events): the events of a channel after an event id, from the
 * in-memory history when it holds them, else read back from the fan-out log
 * while it retains them, within the replay bounds.
 */
export class Resume {
  private active = 0;
  private readonly activePerTenant = new Map<string, number>();
  /**
   * Reads under way by what they read (tenant, channel, from, until, limit):
   * clients resuming the same channel from the same event at once (every
   * subscriber after a restart) share one read. At most `maxConcurrent` entries.
   */
  private readonly reading = new Map<string, Promise<ResumeOutcome>>();
  /**
   * Scans for a channel's latest events under way, by tenant and channel:
   * every request for them while one runs joins it, whatever its limit (each
   * takes its page of what the scan found). At most `maxConcurrent` entries.
   */
  private readonly scanning = new Map<string, { until: bigint; found: Promise<ResumeOutcome> }>();
  /** What the last scan for a channel's latest events found: the next one reads only the offsets after it. */
  private readonly scanned: LatestCache;

  constructor(
    private readonly history: ChannelHistory,
    private readonly bus: Pick<FanoutBus, "head" | "readLog" | "logEnd">,
    readonly limits: ReplayLimits,
    private readonly countOffsetsRead: (read: LogReadKind, offsets: number) => void = () => {},
  ) {
    this.scanned = new LatestCache(limits.latestCacheBytes);
  }

  /** Reads of the log under way. */
  get inProgress(): number {
    return this.active;
  }

  /**
   * The channel's current position, valid as a later `since`: its newest
   * event, or for a channel with none kept here, the newest offset the live
   * reader delivered on the channel's partition, or, on a partition nothing
   * was ever written to, the position before its first offset (SPEC: a
   * position also when the channel has no events yet). Null only while this
   * instance does not know the partition's position at all: before its
   * fan-out reader started (a moment after start, or while Kafka is unreachable).
   */
  position(tenant: string, channel: string): string | null {
    const last = this.history.lastId(channelTopic(tenant, channel));
    if (last !== undefined) return last;
    const head = this.bus.head(`${tenant}/${channel}`);
    if (!head) return null;
    // `next - 1n` is BEFORE_FIRST_OFFSET on an empty partition: every later event is after it.
    return formatEventId({ epoch: head.epoch, partition: head.partition, offset: head.next - 1n });
  }

  /** The partition of the fan-out topic the channel's events go to; undefined until the reader knows. */
  partitionOf(tenant: string, channel: string): number | undefined {
    return this.bus.head(`${tenant}/${channel}`)?.partition;
  }

  /**
   * One position valid as a later `since` for every one of `channels`: where
   * the live reader stands on their partition (every later event of any of
   * them is after it), when they all share one; null when they span several
   * partitions, or before this instance knows the partition.
   */
  sharedPosition(tenant: string, channels: readonly string[]): string | null {
    let shared: LivePosition | undefined;
    for (const channel of channels) {
      const head = this.bus.head(`${tenant}/${channel}`);
      if (!head || (shared && (head.epoch !== shared.epoch || head.partition !== shared.partition)))
        return null;
      shared = head;
    }
    if (!shared) return null;
    return formatEventId({ epoch: shared.epoch, partition: shared.partition, offset: shared.next - 1n });
  }

  /**
   * At most `limit` events of the channel after `since` (every kept event
   * without it). Answered at once from memory; a `PendingResume` when the log
   * has to be read.
   */
  after(
    tenant: string,
    channel: string,
    since: string | undefined,
    limit: number,
  ): ResumeOutcome | PendingResume {
    const ahead = this.ahead(tenant, channel, since);
    if (ahead) return ahead;
    const kept = this.history.after(channelTopic(tenant, channel), since);
    if (kept.ok) {
      return firstOf({ kind: "events", events: kept.events, complete: true, next: null }, limit);
    }
    const position = since === undefined ? undefined : parseEventId(since);
    const head = this.bus.head(`${tenant}/${channel}`);
    // Right after a start (a restart's reconnect wave) the live reader may not have its positions yet:
    // nothing can be said of `since` until it has, and "gone" would lose the client's place.
    if (!head && position) return busy("this instance has not started reading the fan-out log yet");
    if (
      kept.reason === "unknown_position" ||
      !position ||
      !head ||
      head.epoch !== position.epoch ||
      head.partition !== position.partition
    ) {
      return NOT_THIS_LOG;
    }
    if (!this.bus.readLog) return OLDER_THAN_KEPT;
    const key = `${tenant}\n${channel}\n${position.offset}\n${head.next}\n${limit}`;
    const shared = this.reading.get(key);
    if (shared) return { until: head.next, outcome: shared };
    if (this.active >= this.limits.maxConcurrent) return busy("this instance is replaying as much as it may");
    if ((this.activePerTenant.get(tenant) ?? 0) >= this.limits.maxConcurrentPerTenant)
      return busy("this tenant is replaying as much as it may");
    const outcome = this.readLog(tenant, channel, position, head.next, limit).finally(() =>
      this.reading.delete(key),
    );
    this.reading.set(key, outcome);
    return { until: head.next, outcome };
  }

  /**
   * The channel's latest events (as many as the history keeps of a channel),
   * oldest first, the first `limit` of them: what `after` answers without
   * `since` when memory has kept the channel. Memory answers when it holds
   * them; else (a channel no connection here watched long enough) they are
   * found in the log: its partition is read back from the live reader's
   * position in growing windows, each forward, within the replay bounds. A
   * bound (bytes, deadline, offsets) or the partition's start ends the scan with what
   * it found: the newest events, without a gap up to the reader's position.
   */
  latest(tenant: string, channel: string, limit: number): ResumeOutcome | PendingResume {
    const head = this.bus.head(`${tenant}/${channel}`);
    if (!this.bus.readLog || this.history.holdsLatest(channelTopic(tenant, channel)))
      return this.after(tenant, channel, undefined, limit);
    if (!head) return busy("this instance has not started reading the fan-out log yet");
    if (head.next <= 0n) return this.after(tenant, channel, undefined, limit);
    const key = `${tenant}\n${channel}`;
    const scan = this.scanning.get(key);
    if (scan) return { until: scan.until, outcome: scan.found.then((found) => firstOf(found, limit)) };
    if (this.active >= this.limits.maxConcurrent) return busy("this instance is replaying as much as it may");
    if ((this.activePerTenant.get(tenant) ?? 0) >= this.limits.maxConcurrentPerTenant)
      return busy("this tenant is replaying as much as it may");
    const found = this.readLatest(tenant, channel, head).finally(() => this.scanning.delete(key));
    this.scanning.set(key, { until: head.next, found });
    return { until: head.next, outcome: found.then((outcome) => firstOf(outcome, limit)) };
  }

  /**
   * A `since` this instance's live reader has not reached yet: an id another
   * instance, further on in the log, delivered (a client that moved from it,
   * or whose load balancer takes turns). Neither memory nor the log has
   * anything after it yet, but answered now the channel would then get live
   * the events up to `since` that the client already holds, again, after a
   * `subscribed` older than its own id. So the answer waits for the reader to
   * deliver `since` (live events after it are held back meanwhile, as for a
   * read of the log: `until` is the offset after it), within the replay
   * bounds; past `timeoutMs`, `try_again`. Only with a log every instance
   * shares: the in-process bus has given every id of its epoch, so one ahead
   * of it was never given (past the end, as Kafka's high watermark says).
   */
  private ahead(
    tenant: string,
    channel: string,
    since: string | undefined,
  ): ResumeOutcome | PendingResume | undefined {
    const position = since === undefined ? undefined : parseEventId(since);
    const key = `${tenant}/${channel}`;
    const head = this.bus.head(key);
    if (
      !position ||
      !head ||
      head.epoch !== position.epoch ||
      head.partition !== position.partition ||
      position.offset < head.next
    )
      return undefined;
    if (!this.bus.readLog) return PAST_THE_END;
    const until = position.offset + 1n;
    const readKey = `${tenant}\n${channel}\n${position.offset}\nahead`;
    const shared = this.reading.get(readKey);
    if (shared) return { until, outcome: shared };
    const refused =
      this.active >= this.limits.maxConcurrent
        ? "this instance is replaying as much as it may"
        : (this.activePerTenant.get(tenant) ?? 0) >= this.limits.maxConcurrentPerTenant
          ? "this tenant is replaying as much as it may"
          : undefined;
    if (refused) return busy(refused);
    const outcome = this.catchUp(tenant, key, position).finally(() => this.reading.delete(readKey));
    this.reading.set(readKey, outcome);
    return { until, outcome };
  }

  /** Resolves once the live reader delivered `since` (nothing after it to replay), or at the deadline. */
  private async catchUp(tenant: string, key: string, since: EventPosition): Promise<ResumeOutcome> {
    this.enter(tenant);
    try {
      const deadline = Date.now() + this.limits.timeoutMs;
      // Past the log's end the reader never gets there: said as soon as the end is known, rather than
      // holding a replay slot for the whole timeout and answering try_again to every retry. Asked
      // beside the wait (the answer can queue behind the reader's long poll); unknown, it is waited for.
      let pastTheEnd = false;
      this.bus.logEnd?.(since.partition).then(
        (end) => {
          pastTheEnd = since.offset >= end;
        },
        () => {},
      );
      for (;;) {
        const head = this.bus.head(key);
        if (head && (head.epoch !== since.epoch || head.partition !== since.partition)) return NOT_THIS_LOG;
        if (head && head.next > since.offset)
          return { kind: "events", events: [], complete: true, next: null };
        if (pastTheEnd) return PAST_THE_END;
        if (Date.now() >= deadline) {
          return {
            kind: "try_again",
            retryAfterMs: BUSY_RETRY_MS,
            message: "this instance has not read the fan-out log up to since yet",
          };
        }
        await new Promise((resolve) => setTimeout(resolve, CATCH_UP_POLL_MS));
      }
    } finally {
      this.leave(tenant);
    }
  }

  /** A read of the log begins for `tenant`: counted against the instance's and the tenant's bounds. */
  private enter(tenant: string): void {
    this.active++;
    this.activePerTenant.set(tenant, (this.activePerTenant.get(tenant) ?? 0) + 1);
  }

  /** That read ended, however it ended. */
  private leave(tenant: string): void {
    this.active--;
    const left = (this.activePerTenant.get(tenant) ?? 1) - 1;
    if (left > 0) this.activePerTenant.set(tenant, left);
    else this.activePerTenant.delete(tenant);
  }

  /**
   * Every latest event of the channel (as many as the history keeps of a
   * channel), oldest first: read on from what the last scan for them found
   * when that is cheaper than scanning back and gives the same answer,
   * else scanned back from the live reader's position.
   */
  private async readLatest(tenant: string, channel: string, head: LivePosition): Promise<ResumeOutcome> {
    this.enter(tenant);
    try {
      const deadline = Date.now() + this.limits.timeoutMs;
      const known = this.scanned.get(tenant, channel, head.epoch, head.partition);
      if (known && this.worthReadingOn(known, head.next)) {
        const read = await this.readOn(tenant, channel, head, known, deadline);
        if (read) return read;
      }
      this.scanned.delete(tenant, channel);
      return await this.scanBack(tenant, channel, head, deadline);
    } catch {
      return { kind: "try_again", retryAfterMs: BUSY_RETRY_MS, message: "the log could not be read in time" };
    } finally {
      this.leave(tenant);
    }
  }

  /**
   * Whether reading the offsets after `known` likely costs no more than a
   * scan back would, never past the scan's own bound: always when `known`
   * holds fewer events than wanted (a scan back would read at least those
   * offsets too, looking for more), else up to about as many offsets as
   * `known` spans (what a scan finding that many events reads).
   */
  private worthReadingOn(known: ScannedLatest, next: bigint): boolean {
    const added = next - known.until;
    const span = known.until - known.from;
    const sparse = known.messages.length < this.history.eventsPerChannel;
    return (
      added >= 0n &&
      added <= BigInt(this.limits.scanMaxOffsets) &&
      (sparse || added <= span || added <= FIRST_WINDOW_OFFSETS)
    );
  }

  /**
   * The channel's latest events from what a scan found up to `known.until`
   * and one forward read of the offsets from there to the live reader's
   * position: exactly what a scan back from that position would answer, or
   * undefined when that cannot be told so (the merge hit the byte bound,
   * whose cut depends on the scan's windows; or what is known does not reach
   * back as far as the scan would read; or the read stopped short).
   */
  private async readOn(
    tenant: string,
    channel: string,
    head: LivePosition,
    known: ScannedLatest,
    deadline: number,
  ): Promise<ResumeOutcome | undefined> {
    if (!this.bus.readLog) return undefined;
    const want = this.history.eventsPerChannel;
    // Nothing written since: the live reader's last fetch told where the log starts, no read of it needed.
    const read: LogReadResult =
      head.next === known.until && head.logStart !== undefined
        ? { gone: false, messages: [], next: head.next, logStart: head.logStart }
        : await this.readCounted("read_on", {
            tenant,
            channel,
            epoch: head.epoch,
            partition: head.partition,
            from: known.until,
            until: head.next,
            maxMessages: want,
            maxBytes: this.limits.maxBytes,
            deadline,
            fromEarliest: true,
            keepNewest: true,
          });
    if (read.gone || read.next < head.next || read.logStart === undefined) return undefined;
    // What a scan back from here would read: from its offset bound or the log's first offset, the later.
    const bound = head.next - BigInt(this.limits.scanMaxOffsets);
    const start = bound > 0n ? bound : 0n;
    const lowest = read.logStart > start ? read.logStart : start;
    // Every message of the channel from `covered` on is in `merged`.
    const oldestRead = read.messages[0]?.position.offset;
    const dropped = read.dropped === true && oldestRead !== undefined;
    const covered = dropped ? oldestRead : known.from > read.logStart ? known.from : read.logStart;
    const merged = (dropped ? read.messages : [...known.messages, ...read.messages]).filter(
      (message) => message.position.offset >= lowest,
    );
    const { messages, cut } = newestOf(merged, want, this.limits.maxBytes);
    if (cut === "bytes" || (cut === "none" && covered > lowest)) return undefined;
    const from = cut === "count" ? (messages[0] as DeliveredMessage).position.offset : lowest;
    this.scanned.set(tenant, channel, { ...known, from, until: head.next, messages });
    const events = messages.map(historyEvent);
    // As a scan that read to its bound without finding enough: truncated unless that was the partition's start.
    const reachedStart = read.logStart > start || start === 0n;
    if (cut === "none" && !reachedStart)
      return { kind: "events", events, complete: true, next: null, truncated: true };
    return { kind: "events", events, complete: true, next: null };
  }

  /**
   * The channel's latest events found by reading its partition back from the
   * live reader's position in growing windows, each forward; what it found is
   * kept for the next request (`readOn`) when it is every message of the
   * channel over the offsets it spans.
   */
  private async scanBack(
    tenant: string,
    channel: string,
    head: LivePosition,
    deadline: number,
  ): Promise<ResumeOutcome> {
    const want = this.history.eventsPerChannel;
    let found: DeliveredMessage[] = [];
    let end = head.next;
    let window = FIRST_WINDOW_OFFSETS;
    let reachedStart = false;
    // Every message of the channel from `covered` on is in `found`, unless a byte bound let one go (`whole`).
    let covered = head.next;
    let whole = true;
    // The farthest back the scan reads: a rare or empty channel on a long partition costs this much, not the timeout.
    const bound = head.next - BigInt(this.limits.scanMaxOffsets);
    const start = bound > 0n ? bound : 0n;
    while (found.length < want && end > start && Date.now() < deadline) {
      const from = end - window > start ? end - window : start;
      const read = await this.readWindow(tenant, channel, head, from, end, want - found.length, deadline);
      // A window not read to its end would leave a gap before what was found: the scan ends without it.
      if (!read) break;
      const newer = [...read.messages, ...found];
      found = newestWithin(newer, this.limits.maxBytes);
      covered = read.from;
      if (read.dropped || found.length < newer.length) whole = false;
      // The partition's start, or a bound (the count wanted, the bytes): nothing older fits.
      reachedStart = read.from > from || from === 0n;
      if (reachedStart || read.dropped || found.length < newer.length) break;
      end = from;
      window *= 2n;
    }
    const oldest = found[0]?.position.offset;
    if (found.length >= want && oldest !== undefined) covered = oldest;
    if (covered < head.next && (found.length >= want || whole)) {
      this.scanned.set(tenant, channel, {
        epoch: head.epoch,
        partition: head.partition,
        from: covered,
        until: head.next,
        messages: found,
      });
    }
    const events = found.map(historyEvent);
    // Short of what the history keeps and not at the partition's start: a bound (time, bytes, offsets) ended the scan.
    if (found.length < want && !reachedStart)
      return { kind: "events", events, complete: true, next: null, truncated: true };
    return { kind: "events", events, complete: true, next: null };
  }

  /**
   * The channel's newest `want` messages in offsets `from` to `end` of the
   * partition (from its first offset, when the log no longer holds `from`),
   * as many as fit in the byte bound, in one read of the window (`dropped`
   * when older ones were let go), and where the window started; undefined
   * when the window could not be read to its end (the deadline, or the log
   * gone or cut short under the read).
   */
  private async readWindow(
    tenant: string,
    channel: string,
    { epoch, partition }: LivePosition,
    from: bigint,
    end: bigint,
    want: number,
    deadline: number,
  ): Promise<{ messages: DeliveredMessage[]; from: bigint; dropped: boolean } | undefined> {
    const read = await this.readCounted("scan", {
      tenant,
      channel,
      epoch,
      partition,
      from,
      until: end,
      maxMessages: want,
      maxBytes: this.limits.maxBytes,
      deadline,
      fromEarliest: true,
      keepNewest: true,
    });
    if (read.gone || read.next < end) return undefined;
    return { messages: read.messages, from: read.from ?? from, dropped: read.dropped === true };
  }

  /** One read of the log, its offsets counted (`gateway_replay_offsets_read_total`). */
  private async readCounted(kind: LogReadKind, request: LogRead): Promise<LogReadResult> {
    if (!this.bus.readLog) return { gone: true };
    const read = await this.bus.readLog(request);
    if (!read.gone && read.next > (read.from ?? request.from))
      this.countOffsetsRead(kind, Number(read.next - (read.from ?? request.from)));
    return read;
  }

  private async readLog(
    tenant: string,
    channel: string,
    since: EventPosition,
    until: bigint,
    limit: number,
  ): Promise<ResumeOutcome> {
    this.enter(tenant);
    try {
      if (!this.bus.readLog) return OLDER_THAN_KEPT;
      const read = await this.readCounted("since", {
        tenant,
        channel,
        epoch: since.epoch,
        partition: since.partition,
        from: since.offset + 1n,
        until,
        maxMessages: limit,
        maxBytes: this.limits.maxBytes,
        deadline: Date.now() + this.limits.timeoutMs,
      });
      if (read.gone) return OLDER_THAN_KEPT;
      const events = read.messages.map(historyEvent);
      const complete = read.next >= until;
      const next = complete ? null : formatEventId({ ...since, offset: read.next - 1n });
      return { kind: "events", events, complete, next };
    } catch {
      return { kind: "try_again", retryAfterMs: BUSY_RETRY_MS, message: "the log could not be read in time" };
    } finally {
      this.leave(tenant);
    }
  }
}

/** Keeps the newest of `messages` whose payloads fit in `maxBytes` (the newest one always). */
function newestWithin(messages: DeliveredMessage[], maxBytes: number): DeliveredMessage[] {
  let bytes = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    bytes += (messages[i] as DeliveredMessage).dataJson.length;
    if (bytes > maxBytes && i < messages.length - 1) return messages.slice(i + 1);
  }
  return messages;
}

/**
 * The newest of `messages` (oldest first) a scan back would keep: at most
 * `want`, and those whose payloads fit in `maxBytes` (the newest one always),
 * taken newest first up to the first that does not fit. `cut` says what
 * stopped it: the count, the bytes, or `none` (every message was taken).
 */
function newestOf(
  messages: DeliveredMessage[],
  want: number,
  maxBytes: number,
): { messages: DeliveredMessage[]; cut: "count" | "bytes" | "none" } {
  let bytes = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages.length - 1 - i >= want) return { messages: messages.slice(i + 1), cut: "count" };
    bytes += (messages[i] as DeliveredMessage).dataJson.length;
    if (bytes > maxBytes && i < messages.length - 1) return { messages: messages.slice(i + 1), cut: "bytes" };
  }
  return { messages, cut: messages.length >= want ? "count" : "none" };
}

/** The first `limit` events of a complete answer, with `next` after them when more follow. */
function firstOf(outcome: ResumeOutcome, limit: number): ResumeOutcome {
  if (outcome.kind !== "events" || outcome.events.length <= limit) return outcome;
  const events = outcome.events.slice(0, limit);
  const next = events.at(-1)?.id ?? null;
  return outcome.truncated
    ? { kind: "events", events, complete: false, next, truncated: true }
    : { kind: "events", events, complete: false, next };
}

function busy(message: string): ResumeOutcome {
  return { kind: "try_again", retryAfterMs: BUSY_RETRY_MS, message };
}

export function isPending(outcome: ResumeOutcome | PendingResume): outcome is PendingResume {
  return "outcome" in outcome;
}
