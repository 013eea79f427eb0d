import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { isAfter } from "./event-id.js";
import { resolveToken, type TokenSource } from "./token.js";

/** The WebSocket surface this client needs: the browser's, Bun's, Node's (22+, or 20 with `--experimental-websocket`) or the `ws` package. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** One event on a channel, as the gateway delivers it. */
export interface ChannelEvent {
  channel: string;
  /** Increases within a channel; the position this client resumes from. */
  id: string;
  data: unknown;
  /** Type and id of the ingested record, for events that came from `POST /v1/events`. */
  recordType?: string;
  recordId?: string;
  /** A broadcast to every connection of the tenant. */
  broadcast?: boolean;
}

export interface SubscriberEvents {
  /** Authenticated; subscriptions are being (re)sent. */
  connected: { connection: string };
  subscribed: { channel: string; lastEventId: string | null };
  unsubscribed: { channel: string };
  event: ChannelEvent;
  /**
   * Events may have been missed on `channel`: `history_gone` when the gateway
   * can no longer replay from `since` (restarted, or it kept less), `behind`
   * when its keep-alive showed a newer event than the last received (a replay is
   * asked for at once). Reload whatever state you build from the channel.
   */
  gap: { channel: string; since: string; reason: "history_gone" | "behind" };
  /** An error frame from the gateway (`forbidden`, `bad_channel`, …), or `token` when the token callback failed. */
  error: { code: string; message: string; channel?: string };
  /** The socket closed; `reconnectInMs` is undefined when the subscriber will not reconnect. */
  disconnected: { code: number; reason: string; reconnectInMs: number | undefined };
}

export interface SubscriberOptions {
  /** The gateway's base URL (`https://…`, turned into `wss://…/v1/ws`), or the full `ws(s)://…/v1/ws` URL. */
  url: string;
  /** Called before every connection; with `{ refresh: true }` after the gateway closed with 4001. */
  token: TokenSource;
  /** Channels to subscribe to from the start. */
  channels?: string[];
  /** Reconnect backoff. Defaults: 500 ms doubling up to 30 s, jittered. */
  reconnect?: Partial<BackoffOptions>;
  /** A client ping this often checks that the connection is alive; 0 turns it off. Default 20 s. */
  heartbeatMs?: number;
  /** Consecutive refused tokens (close 4001 before `connected`) after which the subscriber stops. Default 5. */
  maxAuthFailures?: number;
  WebSocket?: WebSocketConstructor;
}

export type SubscriberState = "connecting" | "open" | "waiting" | "closed";

/** Close codes of the gateway's protocol. */
const CLOSE = { goingAway: 1001, tryAgainLater: 1013, unauthorized: 4001 } as const;
/** A connection that lasted this long resets the backoff. */
const STABLE_AFTER_MS = 5000;
/** The longest wait a `reconnect` frame may ask for. */
const MAX_SERVER_DELAY_MS = 60_000;

function toWebSocketUrl(url: string): string {
  if (/^wss?:/i.test(url)) return url;
  const base = url.replace(/\/+$/, "").replace(/^http/i, "ws");
  return `${base}/v1/ws`;
}

/**
 * A WebSocket subscription to gateway channels that survives disconnects:
 * first-message auth, automatic reconnect with jittered backoff (or the delay
 * the gateway asks for in its `reconnect` frame), and resume from the last
 * event id of each channel, with duplicates from an overlapping replay dropped.
 */
export class Subscriber extends Emitter<SubscriberEvents> {
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly wsUrl: string;
  private readonly backoff: BackoffOptions;
  /** Channels the caller wants, kept across reconnects. */
  private readonly channels = new Set<string>();
  /** Last event id seen (or known to be current) per channel: the `since` of the next subscribe. */
  private readonly positions = new Map<string, string>();
  private socket: WebSocketLike | undefined;
  private currentState: SubscriberState = "connecting";
  private attempt = 0;
  private authFailures = 0;
  private refreshToken = false;
  private connectedAt = 0;
  /** The delay of the gateway's last `reconnect` frame on this connection. */
  private serverDelayMs: number | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private awaitingPong = false;

  constructor(private readonly options: SubscriberOptions) {
    super();
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) {
      throw new Error(
        "no WebSocket in this runtime: pass one as options.WebSocket (on Node 20, or run it with --experimental-websocket)",
      );
    }
    this.WebSocketImpl = WebSocketImpl;
    this.wsUrl = toWebSocketUrl(options.url);
    this.backoff = { initialDelayMs: 500, maxDelayMs: 30_000, ...options.reconnect };
    for (const channel of options.channels ?? []) this.channels.add(channel);
    void this.connect();
  }

  get state(): SubscriberState {
    return this.currentState;
  }

  /** The id of the last event received on `channel` (where a resume starts). */
  lastEventId(channel: string): string | undefined {
    return this.positions.get(channel);
  }

  /** Subscribes now if connected, and again after every reconnect. `since` resumes after that event id. */
  subscribe(channel: string, options: { since?: string } = {}): void {
    this.channels.add(channel);
    if (options.since !== undefined) this.positions.set(channel, options.since);
    if (this.currentState === "open") this.sendSubscribe(channel);
  }

  unsubscribe(channel: string): void {
    this.channels.delete(channel);
    this.positions.delete(channel);
    if (this.currentState === "open") this.send({ type: "unsubscribe", channel });
  }

  /** Closes for good: no reconnect. */
  close(): void {
    if (this.currentState === "closed") return;
    this.currentState = "closed";
    clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      socket.onclose = null;
      socket.close(1000, "client closed");
    }
    this.emit("disconnected", { code: 1000, reason: "client closed", reconnectInMs: undefined });
  }

  private async connect(): Promise<void> {
    this.currentState = "connecting";
    this.serverDelayMs = undefined;
    let token: string;
    try {
      token = await resolveToken(this.options.token, this.refreshToken);
    } catch (error) {
      if (this.isClosed()) return;
      this.emit("error", { code: "token", message: error instanceof Error ? error.message : String(error) });
      this.scheduleReconnect(backoffDelay(this.attempt++, this.backoff), 1006, "token callback failed");
      return;
    }
    if (this.isClosed()) return;
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(this.wsUrl);
    } catch (error) {
      this.scheduleReconnect(backoffDelay(this.attempt++, this.backoff), 1006, String(error));
      return;
    }
    this.socket = socket;
    // The token goes in the first message, not the URL, so it stays out of access logs.
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token }));
    socket.onmessage = (event) => this.onFrame(socket, String(event.data));
    socket.onclose = (event) => this.onClose(socket, event.code, event.reason);
    socket.onerror = () => {
      // A close event follows, and carries what matters.
    };
  }

  /** State read after an await: close() may have run meanwhile. */
  private isClosed(): boolean {
    return this.currentState === "closed";
  }

  private onFrame(socket: WebSocketLike, text: string): void {
    if (socket !== this.socket) return;
    this.awaitingPong = false;
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    switch (frame.type) {
      case "connected":
        this.currentState = "open";
        this.connectedAt = Date.now();
        this.authFailures = 0;
        this.refreshToken = false;
        this.startHeartbeat(socket);
        this.emit("connected", { connection: String(frame.connection) });
        for (const channel of this.channels) this.sendSubscribe(channel);
        return;
      case "event":
        this.onEvent(frame);
        return;
      case "subscribed": {
        const channel = String(frame.channel);
        const lastEventId = typeof frame.lastEventId === "string" ? frame.lastEventId : null;
        // Without a position, "now" is the position: a later resume starts here rather than missing events.
        if (lastEventId !== null && this.channels.has(channel) && !this.positions.has(channel)) {
          this.positions.set(channel, lastEventId);
        }
        this.emit("subscribed", { channel, lastEventId });
        return;
      }
      case "unsubscribed":
        this.emit("unsubscribed", { channel: String(frame.channel) });
        return;
      case "error":
        this.onErrorFrame(frame);
        return;
      case "reconnect":
        if (typeof frame.afterMs === "number" && frame.afterMs >= 0) {
          this.serverDelayMs = Math.min(frame.afterMs, MAX_SERVER_DELAY_MS);
        }
        return;
      case "ping":
        this.checkForGaps(frame.lastEventIds);
        return;
    }
  }

  private onEvent(frame: Record<string, unknown>): void {
    const event: ChannelEvent = { channel: String(frame.channel), id: String(frame.id), data: frame.data };
    if (typeof frame.recordType === "string") event.recordType = frame.recordType;
    if (typeof frame.recordId === "string") event.recordId = frame.recordId;
    if (frame.broadcast === true) {
      event.broadcast = true;
      this.emit("event", event);
      return;
    }
    if (!this.channels.has(event.channel)) return;
    const last = this.positions.get(event.channel);
    // A replay can overlap events already received live: each is delivered once.
    if (last !== undefined && !isAfter(event.id, last)) return;
    this.positions.set(event.channel, event.id);
    this.emit("event", event);
  }

  private onErrorFrame(frame: Record<string, unknown>): void {
    const code = String(frame.code);
    const channel = typeof frame.channel === "string" ? frame.channel : undefined;
    if (code === "history_gone" && channel !== undefined) {
      const since = this.positions.get(channel) ?? "";
      // The `subscribed` frame that follows sets the new position.
      this.positions.delete(channel);
      this.emit("gap", { channel, since, reason: "history_gone" });
      return;
    }
    if (channel !== undefined && (code === "forbidden" || code === "bad_channel")) {
      // Refused for good: not asked again after a reconnect.
      this.channels.delete(channel);
      this.positions.delete(channel);
    }
    const error: SubscriberEvents["error"] = { code, message: String(frame.message ?? code) };
    if (channel !== undefined) error.channel = channel;
    this.emit("error", error);
  }

  /** The gateway's keep-alive names each channel's newest event: one newer than ours means we missed some. */
  private checkForGaps(lastEventIds: unknown): void {
    if (lastEventIds === null || typeof lastEventIds !== "object") return;
    for (const [channel, newest] of Object.entries(lastEventIds as Record<string, unknown>)) {
      const ours = this.positions.get(channel);
      if (typeof newest !== "string" || ours === undefined || !this.channels.has(channel)) continue;
      if (isAfter(newest, ours, { sameEpochOnly: true })) {
        this.emit("gap", { channel, since: ours, reason: "behind" });
        this.sendSubscribe(channel);
      }
    }
  }

  private onClose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.stopHeartbeat();
    if (this.currentState === "closed") return;
    if (this.connectedAt > 0 && Date.now() - this.connectedAt >= STABLE_AFTER_MS) this.attempt = 0;
    this.connectedAt = 0;

    if (code === CLOSE.unauthorized) {
      this.authFailures++;
      const canRefresh = typeof this.options.token === "function";
      if (!canRefresh || this.authFailures > (this.options.maxAuthFailures ?? 5)) {
        this.currentState = "closed";
        this.emit("error", {
          code: "unauthorized",
          message: canRefresh
            ? "the gateway refused every refreshed token"
            : "the gateway refused the token; give a token callback so it can be refreshed",
        });
        this.emit("disconnected", { code, reason, reconnectInMs: undefined });
        return;
      }
      this.refreshToken = true;
    }
    let delay: number;
    if (this.serverDelayMs !== undefined) delay = this.serverDelayMs;
    else if (code === CLOSE.tryAgainLater) {
      // Too slow or too many connections: start further up the backoff.
      delay = backoffDelay(this.attempt + 2, this.backoff);
      this.attempt++;
    } else if (code === CLOSE.unauthorized && this.authFailures === 1) delay = backoffDelay(0, this.backoff);
    else delay = backoffDelay(this.attempt++, this.backoff);
    this.scheduleReconnect(delay, code, reason);
  }

  private scheduleReconnect(delay: number, code: number, reason: string): void {
    this.currentState = "waiting";
    this.emit("disconnected", { code, reason, reconnectInMs: delay });
    if (this.currentState !== "waiting") return;
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private sendSubscribe(channel: string): void {
    const since = this.positions.get(channel);
    this.send(since === undefined ? { type: "subscribe", channel } : { type: "subscribe", channel, since });
  }

  private send(frame: Record<string, unknown>): void {
    if (this.socket?.readyState === 1) this.socket.send(JSON.stringify(frame));
  }

  /**
   * Browsers do not expose protocol pings, so a dead connection (a laptop
   * waking up, a NAT that forgot us) is found by an app-level ping: no frame
   * at all for a whole interval after one means the connection is gone.
   */
  private startHeartbeat(socket: WebSocketLike): void {
    const interval = this.options.heartbeatMs ?? 20_000;
    if (interval <= 0) return;
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => {
      if (this.awaitingPong) {
        socket.onclose = null;
        socket.close();
        this.onClose(socket, 1006, "no answer to ping");
        return;
      }
      this.awaitingPong = true;
      this.send({ type: "ping" });
    }, interval);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    this.awaitingPong = false;
  }
}
