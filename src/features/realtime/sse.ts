import { broadcastTopic, channelTopic, isBroadcastTopic, requireChannel } from "../../domain/channel.ts";
import { GatewayError } from "../../domain/errors.ts";
import { parseEventId } from "../../domain/event-id.ts";
import { type Principal, requireScope, requireUnexpired } from "../../domain/principal.ts";
import { bearerToken } from "../../http/bearer.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { AdmittedHeaders } from "../../ports/admission.ts";
import type { Route } from "../../ports/route.ts";
import type { HttpRequest, HttpStream } from "../../ports/transport.ts";
import type { FanoutTarget } from "./fanout.ts";
import type { HistoryEvent } from "./history.ts";
import { type PresenceListener, presenceTopic } from "./presence.ts";
import { overBudget, type QueuedBytes } from "./queued-budget.ts";
import { isPending, type Resume, type ResumeOutcome } from "./resume.ts";
import { parseCursor, StreamCursor } from "./stream-cursor.ts";

export interface SseOptions {
  /** A comment line at least this often, so proxies and clients see the stream alive. */
  heartbeatMs: number;
  /**
   * Bytes the client may lag behind: past them its stream is dropped at the
   * next sweep, past twice them at once (as the engines cap a WebSocket), and
   * a replay writes no more than them at a time.
   */
  backpressureBytes: number;
  /** Channels one stream may carry (the WebSocket subscription cap). */
  maxChannels: number;
  /** Bytes queued towards every stream together, half of it per tenant (`WS_QUEUED_MAX_BYTES`, see `overBudget`). */
  queuedMaxBytes: number;
}

export interface SseDependencies {
  /** The same resume path as WebSockets: memory, else the fan-out log, within the replay bounds. */
  resume: Resume;
  metrics: Metrics;
  /** Per-IP request budget, with its RateLimit fields for the stream's head; rejects with a 429 GatewayError. */
  admitRead(request: HttpRequest): AdmittedHeaders | Promise<AdmittedHeaders>;
  /** Token from `Authorization` or `?token=` to a principal; rejects with a 401 or 503 GatewayError. */
  verify(token: string): Promise<Principal>;
  /** Takes a connection slot of the instance and tenant (shared with WebSockets), or says which cap is full. */
  claimSlot(tenant: string): GatewayError | undefined;
  releaseSlot(tenant: string): void;
  /** A subject joined (1) or left (-1) a channel, for presence. */
  presence(channelKey: string, subject: string, delta: 1 | -1): void;
  /**
   * A stream started (1) or stopped (-1) asking for a channel's join and leave
   * events (`?presence=true`); false when a start is refused (too many channels watched).
   */
  watchPresence(channelKey: string, delta: 1 | -1): boolean;
}

const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  // Proxies (nginx) must pass each event on at once, never hold it to fill a buffer.
  "x-accel-buffering": "no",
};

/**
 * An SSE event. `data` cannot hold a line break, so the text is cut into one
 * `data:` line per line; the client joins them with "\n", which is the same
 * JSON (a line break in JSON text is whitespace).
 */
export function sseEvent(event: string, data: string, id?: string): string {
  const head = id === undefined ? `event: ${event}\n` : `id: ${id}\nevent: ${event}\n`;
  return `${head}data: ${data.split(/\r\n|\r|\n/).join("\ndata: ")}\n\n`;
}

const HEARTBEAT = ": ping\n\n";

/** Live events of a channel held back while its replay is read from the log. */
interface PendingReplay {
  channel: string;
  /** Live delivery takes over at this offset: earlier ones come with the replay. */
  until: bigint;
  held: Array<{ frame: string; id: string; offset: bigint }>;
  heldBytes: number;
}

/** One event stream: its principal, its engine topics, and the response it writes to once that is open. */
class EventStream {
  private stream: HttpStream | undefined;
  /** Events that came between the replay and the response opening (same turn of the event loop: few). */
  private early = "";
  private ended = false;
  /** Channels being read back from the log: their live events are held until the replay is written. */
  readonly replays = new Map<string, PendingReplay>();
  /** Channels not caught up (a replay under way, refused or cut short), with the position each resumes from. */
  readonly behind = new Map<string, string>();
  /** A replay did not finish: the stream ends once the others under way are written. */
  private endingAfterReplays = false;
  /** The channels (keys) whose join and leave events it watches: those it asked for, less any refused. */
  readonly watching = new Set<string>();

  constructor(
    /** Bytes it may hold unsent: a write past them drops it (`lagging`), so no stream holds more for long. */
    private readonly maxBufferedBytes: number,
    private readonly lagging: (stream: EventStream) => void,
    readonly principal: Principal,
    readonly channels: string[],
    /** Its channels' keys, for presence (in the order of `channels`). */
    readonly channelKeys: string[],
    /** Every engine topic it hears: its channels, the tenant's broadcasts and, when asked, its channels' presence. */
    readonly topics: string[],
    /** It asked for its channels' join and leave events. */
    readonly presence: boolean,
    /** Its position on each partition, when its channels lie on several: its `id:` lines carry it. */
    readonly cursor: StreamCursor | undefined,
  ) {}

  /**
   * The text of a channel event sent now: `id:` its own id, as SPEC.md writes
   * an event. With a cursor, a block of just `id:` the cursor past it follows
   * in the same write: EventSource dispatches no event for it but takes it as
   * its last event id (HTML's "dispatch the event" sets it before it looks at
   * the data), so the `Last-Event-ID` it sends back resumes every partition.
   * While a channel is behind (read back from the log, or cut short), that
   * `id:` stays at its position: a drop before its replay is written resumes
   * it from there, not past the events it never got.
   */
  eventText(frame: string, id: string): string {
    const event = sseEvent("event", frame, id);
    if (this.cursor) {
      this.cursor.after(id);
      const text =
        this.behind.size === 0 ? this.cursor.toString() : this.cursor.cappedAt(this.behind.values());
      return `${event}id: ${text}\n\n`;
    }
    const floor = this.behind.size === 0 ? undefined : oldestBefore(id, this.behind.values());
    return floor === undefined ? event : `${event}id: ${floor}\n\n`;
  }

  opened(stream: HttpStream): void {
    this.stream = stream;
    if (this.early !== "") stream.write(this.early);
    this.early = "";
    if (this.ended) stream.end();
  }

  write(text: string): void {
    // Nothing after the end: an event written after a last `id:` put there would take its place.
    if (this.ended) return;
    if (this.stream) this.stream.write(text);
    else this.early += text;
    if (!this.ended && this.bufferedAmount() > this.maxBufferedBytes) this.lagging(this);
  }

  bufferedAmount(): number {
    return this.stream ? this.stream.bufferedAmount() : this.early.length;
  }

  end(): void {
    this.ended = true;
    this.stream?.end();
  }

  /**
   * Ends the stream for a replay not done, so that the `Last-Event-ID`
   * EventSource sends back is no further on than any channel not caught up:
   * the last `id:` goes back to the oldest such position (on its partition,
   * for a cursor). Other channels' events since then come again; left at the
   * last event sent, the id skipped those of the channel behind.
   */
  endBehind(): void {
    const positions = [...this.behind.values()];
    let rewound: string | undefined;
    if (this.cursor && positions.length > 0) {
      for (const position of positions) this.cursor.rewind(position);
      rewound = this.cursor.toString();
    } else rewound = oldest(positions);
    if (rewound !== undefined) this.write(`id: ${rewound}\n\n`);
    this.end();
  }

  /**
   * `endBehind` once the replays under way are written: ended at once, they
   * would be read again at the reconnect, and a stream with more channels to
   * read than the tenant's concurrent replays would never get past them.
   */
  endWhenReplayed(): void {
    if (this.replays.size === 0) this.endBehind();
    else this.endingAfterReplays = true;
  }

  /**
   * It ends once the replays under way are written: its channels' live events
   * are no longer written (they come again at the reconnect, from the `id:`
   * it ends with), or one of a channel cut short would come before the rest
   * of that channel's replay, and again after it.
   */
  get ending(): boolean {
    return this.endingAfterReplays;
  }

  /** A replay was written: the stream ends now if it was waiting for that. */
  replayed(): void {
    if (this.endingAfterReplays && this.replays.size === 0) this.endBehind();
  }

  get closed(): boolean {
    return this.ended;
  }

  /** A client that stopped reading: its connection and what waits for it are dropped. */
  abort(): void {
    if (this.ended) return;
    this.ended = true;
    this.early = "";
    this.stream?.abort();
  }
}

/**
 * `GET /v1/sse`: Server-Sent Events for clients that only read. Each stream
 * carries the events of its channels (and the tenant's broadcasts, without
 * the `id:`) as `id: <eventId>`, `event: event`, `data: <the WebSocket event frame>`, after
 * a replay from the same history WebSocket resume uses. It is the registry of
 * open streams by topic (a `FanoutTarget` beside the WebSocket hub), and owns
 * the timer that sends heartbeats and ends slow or expired streams.
 */
export class SseStreams implements FanoutTarget, PresenceListener {
  private readonly streams = new Set<EventStream>();
  private readonly byTopic = new Map<string, Set<EventStream>>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastHeartbeat = Date.now();
  private draining = false;
  /** The sweep's period: every second, or every heartbeat if they are more often. */
  private readonly sweepMs: number;

  constructor(
    private readonly options: SseOptions,
    private readonly deps: SseDependencies,
  ) {
    this.sweepMs = Math.min(1000, options.heartbeatMs);
  }

  route(): Route {
    return { method: "GET", path: "/v1/sse", handler: (request) => this.open(request) };
  }

  start(): void {
    this.timer = setInterval(() => this.sweep(Date.now()), this.sweepMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  publish(topic: string, frame: string, id: string): number {
    const streams = this.byTopic.get(topic);
    if (!streams) return 0;
    // A broadcast goes without `id:`: no history keeps it (no resume replays it), and its id names
    // the broadcast's partition of the fan-out topic, so as the `Last-Event-ID` EventSource sends
    // back it would make the stream's channels, on other partitions, `history_gone`. Without it
    // the stream's resume position stays its last channel event.
    const broadcast = isBroadcastTopic(topic);
    // One text for every stream, but those with a cursor or a channel behind: each has its own `id:` after it.
    const shared = broadcast ? sseEvent("event", frame) : sseEvent("event", frame, id);
    for (const stream of streams) {
      const replay = stream.replays.get(topic);
      if (replay) this.hold(stream, topic, replay, frame, id);
      else if (stream.ending && !broadcast) continue;
      else if ((stream.cursor || stream.behind.size > 0) && !broadcast)
        stream.write(stream.eventText(frame, id));
      else stream.write(shared);
    }
    this.deps.metrics.sseEventsSent.inc(streams.size);
    return streams.size;
  }

  /** A join or leave, as `event: join` / `event: leave` (no `id:`: not a position to resume from). */
  presenceEvent(channelKey: string, kind: "join" | "leave", frame: string): void {
    const streams = this.byTopic.get(presenceTopic(channelKey));
    if (!streams) return;
    const text = sseEvent(kind, frame);
    for (const stream of streams) stream.write(text);
    this.deps.metrics.sseEventsSent.inc(streams.size);
  }

  /**
   * The drain: every stream gets `event: reconnect` and ends. `retry:` carries
   * the same jittered delay, as EventSource reconnects by itself after its
   * retry time: without it every stream would come back exactly 2 s later.
   */
  disconnectAll(): void {
    this.draining = true;
    for (const stream of [...this.streams]) {
      const afterMs = 250 + Math.floor(Math.random() * 4750);
      stream.write(`${sseEvent("reconnect", JSON.stringify({ afterMs }))}retry: ${afterMs}\n\n`);
      stream.end();
    }
  }

  get size(): number {
    return this.streams.size;
  }

  private async open(request: HttpRequest) {
    if (this.draining)
      throw new GatewayError("draining", "the gateway is shutting down", { "retry-after": "1" });
    const rateLimit = await this.deps.admitRead(request);
    const principal = await this.deps.verify(tokenOf(request));
    requireUnexpired(principal, Date.now());
    requireScope(principal, "subscribe");
    const channels = [...new Set(request.query.getAll("channel"))];
    if (channels.length === 0) throw new GatewayError("bad_request", "name at least one channel (?channel=)");
    if (channels.length > this.options.maxChannels)
      throw new GatewayError("bad_request", `at most ${this.options.maxChannels} channels per stream`);
    for (const channel of channels) requireChannel(principal, channel);
    // EventSource sends back the last `id:` it got, always one of ours: anything else is a client bug.
    const lastEventId = request.header("last-event-id") || undefined;
    const given =
      lastEventId === undefined
        ? this.requireCursor(request.query.get("since") || undefined, "since")
        : this.requireCursor(lastEventId, "Last-Event-ID");
    const presence = request.query.get("presence");
    if (presence !== null && presence !== "true" && presence !== "false")
      throw new GatewayError("bad_request", "presence is true or false");
    const full = this.deps.claimSlot(principal.tenant);
    if (full) throw full;

    const resume = this.deps.resume;
    const byPartition = new Map<number, string[]>();
    for (const channel of channels) {
      const partition = resume.partitionOf(principal.tenant, channel);
      if (partition !== undefined)
        byPartition.set(partition, [...(byPartition.get(partition) ?? []), channel]);
    }
    const givenOn = (partition: number | undefined) =>
      given?.find((id) => parseEventId(id)?.partition === partition);
    /** A channel's `since`: the given position on its partition (an id resumes only its own partition's channels). */
    const sinceOf = (channel: string): string | undefined =>
      givenOn(resume.partitionOf(principal.tenant, channel)) ?? given?.[0];
    // Channels on several partitions: the stream's `id:` lines carry a position on each (the given
    // one, else where the live reader stands), so the Last-Event-ID EventSource sends back resumes
    // every channel, not only those of the last event's partition.
    const cursor =
      byPartition.size > 1
        ? new StreamCursor(
            [...byPartition].flatMap(([partition, group]) => {
              const live = resume.sharedPosition(principal.tenant, group);
              const own = givenOn(partition);
              const position =
                own !== undefined && parseEventId(own)?.epoch === (live && parseEventId(live)?.epoch)
                  ? own
                  : live;
              return position === null ? [] : [position];
            }),
          )
        : undefined;
    const channelKeys = channels.map((channel) => channelTopic(principal.tenant, channel));
    const withPresence = presence === "true";
    const eventStream = new EventStream(
      2 * this.options.backpressureBytes,
      (lagging) => this.dropSlow(lagging),
      principal,
      channels,
      channelKeys,
      [
        ...channelKeys,
        broadcastTopic(principal.tenant),
        ...(withPresence ? channelKeys.map(presenceTopic) : []),
      ],
      withPresence,
      cursor,
    );
    let first = "retry: 2000\n\n";
    if (cursor) first += `id: ${cursor}\n\n`;
    else if (given === undefined) {
      // A stream opened without a position gets one before any event, as an `id:` alone (no event
      // fires, EventSource only keeps it): one dropped before its first event reconnects with it
      // as `Last-Event-ID` and gets what was published meanwhile, not only what comes after.
      const position = resume.sharedPosition(principal.tenant, channels);
      if (position !== null) first += `id: ${position}\n\n`;
    }
    let endNow = false;
    const fromLog: Array<[string, Promise<ResumeOutcome>, bigint]> = [];
    // Every channel's replay from memory, written below in id order: channel by channel, the last `id:`
    // EventSource keeps (and sends back) could be behind events of another channel it already has.
    const replayed: Array<{ channel: string; event: HistoryEvent }> = [];
    for (const channel of given === undefined ? [] : channels) {
      const since = sinceOf(channel) as string;
      const resumed = resume.after(principal.tenant, channel, since, Number.MAX_SAFE_INTEGER);
      if (isPending(resumed)) {
        fromLog.push([channel, resumed.outcome, resumed.until]);
        eventStream.behind.set(channel, since);
        continue;
      }
      const answer = this.replayText(eventStream, channel, resumed, replayed);
      first += answer.text;
      if (answer.end) eventStream.behind.set(channel, resumedFrom(resumed, since));
      endNow ||= answer.end;
    }
    replayed.sort((a, b) => byPosition(a.event, b.event));
    // At most the backpressure bound at once (one event at least): what is left comes after EventSource
    // reconnects from the last id sent, as when a replay bound cuts it short.
    const budget = first.length + this.options.backpressureBytes;
    const sentOn = new Map<number, string>();
    for (const [index, { event }] of replayed.entries()) {
      if (index > 0 && first.length >= budget) {
        for (const { channel, event: unsent } of replayed.slice(index))
          eventStream.behind.set(
            channel,
            sentOn.get(unsent.position.partition) ?? (sinceOf(channel) as string),
          );
        endNow = true;
        break;
      }
      first += eventStream.eventText(event.frame, event.id);
      sentOn.set(event.position.partition, event.id);
    }
    // Registered in the same tick as the replay was read: no live event falls between the two.
    this.register(eventStream);
    for (const [channel, outcome, until] of fromLog) this.replayFromLog(eventStream, channel, outcome, until);
    if (endNow) eventStream.endWhenReplayed();
    return {
      status: 200,
      headers: rateLimit ? { ...SSE_HEADERS, ...rateLimit.own } : SSE_HEADERS,
      ...(rateLimit ? { sharedHeaders: rateLimit.shared } : {}),
      body: first,
      stream: {
        open: (stream: HttpStream) => eventStream.opened(stream),
        closed: () => this.unregister(eventStream),
      },
    };
  }

  /**
   * A channel's replay as stream text. A replay a bound cut short, or one
   * refused for now, ends the stream after it (`end`): `EventSource` then
   * reconnects with the last id it got and goes on from there, after the
   * `retry` delay given. A `since` nothing can serve any more is said with an
   * error event, and the channel goes on live. Given `into`, the events go
   * there instead of into the text, for the caller to write in id order.
   */
  private replayText(
    stream: EventStream,
    channel: string,
    resumed: ResumeOutcome,
    into: Array<{ channel: string; event: HistoryEvent }> | { budget: number },
  ): { text: string; end: boolean; sent: number } {
    const metrics = this.deps.metrics;
    switch (resumed.kind) {
      case "gone": {
        metrics.wsResumes.inc({ result: "history_gone" });
        const gone = { code: "history_gone", channel, message: resumed.message };
        return { text: sseEvent("problem", JSON.stringify(gone)), end: false, sent: 0 };
      }
      case "try_again": {
        metrics.wsResumes.inc({ result: "try_again" });
        const error = {
          code: "try_again",
          channel,
          retryAfterMs: resumed.retryAfterMs,
          message: resumed.message,
        };
        return {
          text: `${sseEvent("problem", JSON.stringify(error))}retry: ${resumed.retryAfterMs}\n\n`,
          end: true,
          sent: 0,
        };
      }
      case "events": {
        metrics.wsResumes.inc({ result: resumed.complete ? "served" : "try_again" });
        if (Array.isArray(into)) {
          for (const event of resumed.events) into.push({ channel, event });
          return { text: "", end: !resumed.complete, sent: resumed.events.length };
        }
        let text = "";
        let sent = 0;
        for (const event of resumed.events) {
          if (sent > 0 && text.length >= into.budget) break;
          text += stream.eventText(event.frame, event.id);
          sent++;
        }
        return { text, end: !resumed.complete || sent < resumed.events.length, sent };
      }
    }
  }

  /**
   * A `since` or `Last-Event-ID` as sent back: one event id, or a stream's
   * cursor (ids joined by commas, one per partition, at most one per channel).
   * Anything else is a client bug: a 400 naming it, never `history_gone`.
   */
  private requireCursor(text: string | undefined, name: string): string[] | undefined {
    if (text === undefined) return undefined;
    const positions = parseCursor(text, this.options.maxChannels);
    if (positions === undefined)
      throw new GatewayError(
        "bad_request",
        `${name} must be an event id (<epoch>-<partition>-<offset>), or several joined by commas`,
      );
    return positions;
  }

  /** Holds the channel's live events while the log is read, then writes the replay and what was held after it. */
  private replayFromLog(
    stream: EventStream,
    channel: string,
    outcome: Promise<ResumeOutcome>,
    until: bigint,
  ): void {
    const topic = channelTopic(stream.principal.tenant, channel);
    const replay: PendingReplay = { channel, until, held: [], heldBytes: 0 };
    stream.replays.set(topic, replay);
    this.deps.metrics.wsResumeLogReads.inc();
    void outcome.then((resumed) => {
      if (stream.replays.get(topic) !== replay || stream.closed) return;
      stream.replays.delete(topic);
      // No longer behind while its own replay is written: its events' ids are where it stands.
      const since = stream.behind.get(channel) as string;
      stream.behind.delete(channel);
      // What the client has not read yet counts, but half the bound is always there: on Bun the first
      // chunk counts until it is read, and a replay done before then would go on one event per reconnect.
      const bound = this.options.backpressureBytes;
      const answer = this.replayText(stream, channel, resumed, {
        budget: Math.max(bound / 2, bound - stream.bufferedAmount()),
      });
      stream.write(answer.text);
      if (answer.end) {
        stream.behind.set(channel, resumedFrom(resumed, since, answer.sent));
        stream.endWhenReplayed();
        return;
      }
      const last = resumed.kind === "events" ? (resumed.events.at(-1)?.position.offset ?? -1n) : -1n;
      for (const live of replay.held)
        if (live.offset > last) stream.write(stream.eventText(live.frame, live.id));
      stream.replayed();
    });
  }

  /** A live event of a channel being replayed: held if the replay will not carry it, within the replay bound. */
  private hold(stream: EventStream, topic: string, replay: PendingReplay, frame: string, id: string): void {
    const offset = parseEventId(id)?.offset ?? -1n;
    if (offset < replay.until) return;
    // Its cursor is made when it is written: a cursor moves on meanwhile.
    replay.held.push({ frame, id, offset });
    replay.heldBytes += frame.length;
    if (replay.heldBytes <= this.deps.resume.limits.maxBytes) return;
    stream.replays.delete(topic);
    const error = {
      code: "try_again",
      channel: replay.channel,
      retryAfterMs: 0,
      message: "live events outran the replay",
    };
    this.deps.metrics.wsResumes.inc({ result: "try_again" });
    stream.write(sseEvent("problem", JSON.stringify(error)));
    stream.endBehind();
  }

  /** A client that stopped reading: counted, and its connection dropped with what waits for it. */
  private dropSlow(stream: EventStream): void {
    if (stream.closed) return;
    this.deps.metrics.sseSlowConsumerDisconnects.inc();
    stream.abort();
  }

  private register(stream: EventStream): void {
    this.streams.add(stream);
    for (const topic of stream.topics) {
      let streams = this.byTopic.get(topic);
      if (!streams) {
        streams = new Set();
        this.byTopic.set(topic, streams);
      }
      streams.add(stream);
    }
    for (const [index, key] of stream.channelKeys.entries()) {
      this.deps.presence(key, stream.principal.subject, 1);
      if (!stream.presence) continue;
      if (this.deps.watchPresence(key, 1)) stream.watching.add(key);
      else {
        const refused = {
          code: "unavailable",
          channel: stream.channels[index],
          message: "no join and leave events: the tenant watches as many channels for them as it may here",
        };
        stream.write(sseEvent("problem", JSON.stringify(refused)));
      }
    }
    this.deps.metrics.sseStreams.inc();
  }

  private unregister(stream: EventStream): void {
    if (!this.streams.delete(stream)) return;
    for (const topic of stream.topics) {
      const streams = this.byTopic.get(topic);
      streams?.delete(stream);
      if (streams?.size === 0) this.byTopic.delete(topic);
    }
    for (const key of stream.channelKeys) this.deps.presence(key, stream.principal.subject, -1);
    for (const key of stream.watching) this.deps.watchPresence(key, -1);
    this.deps.releaseSlot(stream.principal.tenant);
    this.deps.metrics.sseStreams.dec();
  }

  /**
   * Every second (and every heartbeat): ends slow and expired streams (and,
   * past `queuedMaxBytes` or a tenant's half of it, the largest queues), sends
   * the heartbeat when due. Due one sweep early: waiting for the sweep past
   * `heartbeatMs` made the gap up to a sweep longer than it (16 s at 15000).
   */
  sweep(now: number): void {
    const heartbeat = now - this.lastHeartbeat >= this.options.heartbeatMs - this.sweepMs;
    if (heartbeat) this.lastHeartbeat = now;
    const queues: Array<QueuedBytes<EventStream>> = [];
    for (const stream of [...this.streams]) {
      if (stream.bufferedAmount() > this.options.backpressureBytes) this.dropSlow(stream);
      else if (stream.principal.expiresAt <= now) {
        stream.write(sseEvent("problem", '{"code":"unauthorized","message":"token expired"}'));
        stream.end();
      } else {
        if (heartbeat) stream.write(HEARTBEAT);
        const bytes = stream.bufferedAmount();
        if (bytes > 0 && !stream.closed)
          queues.push({ client: stream, bytes, tenant: stream.principal.tenant });
      }
    }
    for (const { client } of overBudget(queues, this.options.queuedMaxBytes)) this.dropSlow(client);
  }
}

/**
 * Where a channel whose replay did not finish resumes: after its last event
 * sent (the first `sent` of the replay's, when it was cut short here), else
 * from its `since`.
 */
function resumedFrom(resumed: ResumeOutcome, since: string, sent?: number): string {
  if (resumed.kind !== "events") return since;
  if (sent !== undefined && sent < resumed.events.length) return resumed.events[sent - 1]?.id ?? since;
  return resumed.next ?? resumed.events.at(-1)?.id ?? since;
}

/** Partition, then offset: the order of ids a stream's `Last-Event-ID` resumes after. */
function byPosition(a: HistoryEvent, b: HistoryEvent): number {
  if (a.position.partition !== b.position.partition) return a.position.partition - b.position.partition;
  return a.position.offset < b.position.offset ? -1 : a.position.offset > b.position.offset ? 1 : 0;
}

/** The position of `positions` furthest back on the event `id`'s partition, if it is before `id`. */
function oldestBefore(id: string, positions: Iterable<string>): string | undefined {
  const event = parseEventId(id);
  if (!event) return undefined;
  const found = oldest(
    [...positions].filter((position) => {
      const parsed = parseEventId(position);
      return parsed?.partition === event.partition && parsed.epoch === event.epoch;
    }),
  );
  return found !== undefined && (parseEventId(found)?.offset ?? event.offset) < event.offset
    ? found
    : undefined;
}

/** The position of `positions` (of one partition) furthest back. */
function oldest(positions: readonly string[]): string | undefined {
  let found: { id: string; offset: bigint } | undefined;
  for (const id of positions) {
    const offset = parseEventId(id)?.offset;
    if (offset !== undefined && (!found || offset < found.offset)) found = { id, offset };
  }
  return found?.id;
}

/** EventSource cannot set headers, so the token may come as `?token=`. */
function tokenOf(request: HttpRequest): string {
  const header = request.header("authorization");
  return header !== undefined ? bearerToken(header) : (request.query.get("token") ?? bearerToken(undefined));
}
