import { broadcastTopic, channelTopic, requireChannel } from "../../domain/channel.ts";
import { GatewayError } from "../../domain/errors.ts";
import { type Principal, requireScope } from "../../domain/principal.ts";
import { bearerToken } from "../../http/bearer.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { Route } from "../../ports/route.ts";
import type { HttpRequest, HttpStream } from "../../ports/transport.ts";
import type { FanoutTarget } from "./fanout.ts";
import type { ChannelHistory } from "./history.ts";

export interface SseOptions {
  /** A comment line at least this often, so proxies and clients see the stream alive. */
  heartbeatMs: number;
  /** Bytes the client may lag behind before its stream is ended. */
  backpressureBytes: number;
  /** Channels one stream may carry (the WebSocket subscription cap). */
  maxChannels: number;
}

export interface SseDependencies {
  history: ChannelHistory;
  metrics: Metrics;
  /** Per-IP request budget; rejects with a 429 GatewayError. */
  admitRequest(request: HttpRequest): Promise<void>;
  /** Token from `Authorization` or `?token=` to a principal; rejects with a 401 or 503 GatewayError. */
  verify(token: string): Promise<Principal>;
  /** Takes a connection slot of the instance and tenant (shared with WebSockets), or says which cap is full. */
  claimSlot(tenant: string): GatewayError | undefined;
  releaseSlot(tenant: string): void;
  /** A subject joined (1) or left (-1) a channel, for presence. */
  presence(channelKey: string, subject: string, delta: 1 | -1): void;
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

/** One event stream: its principal, its engine topics, and the response it writes to once that is open. */
class EventStream {
  private stream: HttpStream | undefined;
  /** Events that came between the replay and the response opening (same turn of the event loop: few). */
  private early = "";
  private ended = false;

  constructor(
    readonly principal: Principal,
    /** Its channels' keys, for presence. */
    readonly channelKeys: string[],
    /** Every engine topic it hears: its channels and the tenant's broadcasts. */
    readonly topics: string[],
  ) {}

  opened(stream: HttpStream): void {
    this.stream = stream;
    if (this.early !== "") stream.write(this.early);
    this.early = "";
    if (this.ended) stream.end();
  }

  write(text: string): void {
    if (this.stream) this.stream.write(text);
    else this.early += text;
  }

  bufferedAmount(): number {
    return this.stream ? this.stream.bufferedAmount() : this.early.length;
  }

  end(): void {
    this.ended = true;
    this.stream?.end();
  }

  /** A client that stopped reading: its connection and what waits for it are dropped. */
  abort(): void {
    if (this.stream) this.stream.abort();
    else this.end();
  }
}

/**
 * `GET /v1/sse`: Server-Sent Events for clients that only read. Each stream
 * carries the events of its channels (and the tenant's broadcasts) as
 * `id: <eventId>`, `event: event`, `data: <the WebSocket event frame>`, after
 * a replay from the same history WebSocket resume uses. It is the registry of
 * open streams by topic (a `FanoutTarget` beside the WebSocket hub), and owns
 * the timer that sends heartbeats and ends slow or expired streams.
 */
export class SseStreams implements FanoutTarget {
  private readonly streams = new Set<EventStream>();
  private readonly byTopic = new Map<string, Set<EventStream>>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastHeartbeat = Date.now();
  private draining = false;

  constructor(
    private readonly options: SseOptions,
    private readonly deps: SseDependencies,
  ) {}

  route(): Route {
    return { method: "GET", path: "/v1/sse", handler: (request) => this.open(request) };
  }

  start(): void {
    this.timer = setInterval(() => this.sweep(Date.now()), Math.min(1000, this.options.heartbeatMs));
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  publish(topic: string, frame: string, id: string): number {
    const streams = this.byTopic.get(topic);
    if (!streams) return 0;
    const text = sseEvent("event", frame, id);
    for (const stream of streams) stream.write(text);
    this.deps.metrics.sseEventsSent.inc(streams.size);
    return streams.size;
  }

  /** The drain: every stream gets `event: reconnect` and ends. */
  disconnectAll(): void {
    this.draining = true;
    for (const stream of [...this.streams]) {
      const afterMs = 250 + Math.floor(Math.random() * 4750);
      stream.write(sseEvent("reconnect", JSON.stringify({ afterMs })));
      stream.end();
    }
  }

  get size(): number {
    return this.streams.size;
  }

  private async open(request: HttpRequest) {
    if (this.draining)
      throw new GatewayError("draining", "the gateway is shutting down", { "retry-after": "1" });
    await this.deps.admitRequest(request);
    const principal = await this.deps.verify(tokenOf(request));
    requireScope(principal, "subscribe");
    const channels = [...new Set(request.query.getAll("channel"))];
    if (channels.length === 0) throw new GatewayError("bad_request", "name at least one channel (?channel=)");
    if (channels.length > this.options.maxChannels)
      throw new GatewayError("bad_request", `at most ${this.options.maxChannels} channels per stream`);
    for (const channel of channels) requireChannel(principal, channel);
    const since = request.header("last-event-id") || request.query.get("since") || undefined;
    const full = this.deps.claimSlot(principal.tenant);
    if (full) throw full;

    const { history } = this.deps;
    let first = `retry: 2000\n\n`;
    for (const channel of channels) {
      const topic = channelTopic(principal.tenant, channel);
      const replay = since === undefined ? undefined : history.after(topic, since);
      if (replay === undefined) continue;
      this.deps.metrics.wsResumes.inc({ result: replay.ok ? "served" : "history_gone" });
      if (!replay.ok) {
        const gone = { code: "history_gone", channel, message: "since is older than the kept history" };
        first += sseEvent("error", JSON.stringify(gone));
        continue;
      }
      for (const event of replay.events) first += sseEvent("event", event.frame, event.id);
    }
    const channelKeys = channels.map((channel) => channelTopic(principal.tenant, channel));
    const eventStream = new EventStream(principal, channelKeys, [
      ...channelKeys,
      broadcastTopic(principal.tenant),
    ]);
    // Registered in the same tick as the replay was read: no live event falls between the two.
    this.register(eventStream);
    return {
      status: 200,
      headers: SSE_HEADERS,
      body: first,
      stream: {
        open: (stream: HttpStream) => eventStream.opened(stream),
        closed: () => this.unregister(eventStream),
      },
    };
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
    for (const key of stream.channelKeys) this.deps.presence(key, stream.principal.subject, 1);
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
    this.deps.releaseSlot(stream.principal.tenant);
    this.deps.metrics.sseStreams.dec();
  }

  /** Every second (and every heartbeat): ends slow and expired streams, sends the heartbeat when due. */
  sweep(now: number): void {
    const heartbeat = now - this.lastHeartbeat >= this.options.heartbeatMs;
    if (heartbeat) this.lastHeartbeat = now;
    for (const stream of [...this.streams]) {
      if (stream.bufferedAmount() > this.options.backpressureBytes) {
        this.deps.metrics.sseSlowConsumerDisconnects.inc();
        stream.abort();
      } else if (stream.principal.expiresAt <= now) {
        stream.write(sseEvent("error", '{"code":"unauthorized","message":"token expired"}'));
        stream.end();
      } else if (heartbeat) stream.write(HEARTBEAT);
    }
  }
}

/** EventSource cannot set headers, so the token may come as `?token=`. */
function tokenOf(request: HttpRequest): string {
  const header = request.header("authorization");
  return header !== undefined ? bearerToken(header) : (request.query.get("token") ?? bearerToken(undefined));
}
