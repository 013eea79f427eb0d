import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { messageOf } from "./error-message.js";
import type { FetchLike } from "./event-client.js";
import { isAfter, isPosition } from "./event-id.js";
import { resolveToken, type TokenSource, tokenExpiresAt } from "./token.js";

/**
 * A handler slot of a socket, checked as a method's parameter is (both
 * ways): the platforms' own sockets type theirs with their event classes
 * (`(this: WebSocket, ev: MessageEvent) => any`), which a plain function type
 * here would refuse, so `WebSocket: WebSocket` would not compile.
 */
type Handler<Event> = { handle(event: Event): void }["handle"] | null;

/** The WebSocket surface this client needs: the browser's, Bun's, Node's (22+, or 20 with `--experimental-websocket`) or the `ws` package. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown>;
  onmessage: Handler<{ data: unknown }>;
  onclose: Handler<{ code: number; reason: string }>;
  onerror: Handler<unknown>;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A subject's first connection to a channel (`join`) or its last one gone (`leave`); asked for with `presence: true`. */
export interface PresenceChange {
  channel: string;
  /** The token `sub` of the subject. */
  subject: string;
}

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
  /** The publisher's W3C trace context, when its publish carried one: continue the trace from it. */
  traceparent?: string;
  tracestate?: string;
}

/**
 * Events may have been missed on `channel`: `history_gone` when the gateway
 * can no longer replay from `since` (restarted, or it kept less), `behind`
 * when its keep-alive showed a newer event than the last received (a replay is
 * asked for at once). Reload whatever state you build from the channel.
 */
export interface Gap {
  channel: string;
  since: string;
  reason: "history_gone" | "behind";
}

/**
 * Why a subscription ended: the caller, the gateway refused the channel
 * (`forbidden`, also after a token refresh; `bad_channel`; past the
 * connection's `too_many_subscriptions`), or the subscriber closed.
 */
export type UnsubscribeReason = "client" | "forbidden" | "bad_channel" | "too_many_subscriptions" | "closed";

export interface GatewayErrorInfo {
  code: string;
  message: string;
  channel?: string;
}

export interface SubscriptionEvents {
  /** Being (re)subscribed: on subscribe, after a reconnect, or while a replay waits (`try_again`). */
  subscribing: { channel: string };
  subscribed: { channel: string; lastEventId: string | null };
  unsubscribed: { channel: string; reason: UnsubscribeReason };
  event: ChannelEvent;
  gap: Gap;
  error: GatewayErrorInfo;
  /** Only for a subscription made with `presence: true`. */
  join: PresenceChange;
  leave: PresenceChange;
}

export interface SubscriberEvents {
  /** Authenticated; subscriptions are being (re)sent. */
  connected: { connection: string };
  subscribed: { channel: string; lastEventId: string | null };
  /** A subscription ended; `reason` is absent for the gateway's answer to an `unsubscribe`. */
  unsubscribed: { channel: string; reason?: UnsubscribeReason };
  event: ChannelEvent;
  gap: Gap;
  /** A subject joined or left a channel subscribed with `presence: true`. */
  join: PresenceChange;
  leave: PresenceChange;
  /** An error frame from the gateway (`forbidden`, `bad_channel`, `unavailable`, …), or `token` when the token callback failed. */
  error: GatewayErrorInfo;
  /** The gateway took a new token in band: the socket and its subscriptions stayed. */
  refreshed: { expiresAt: number | undefined };
  /** The socket closed; `reconnectInMs` is undefined when the subscriber will not reconnect. */
  disconnected: { code: number; reason: string; reconnectInMs: number | undefined };
}

export interface SubscriberOptions {
  /** The gateway's base URL (`https://…`, turned into `wss://…/v1/ws`), or the full `ws(s)://…/v1/ws` URL. */
  url: string;
  /**
   * Called before every connection, and with `{ refresh: true }` for a new
   * token: before the current one expires (sent in band, the socket stays)
   * and after the gateway closed with 4001.
   */
  token: TokenSource;
  /** Channels to subscribe to from the start. */
  channels?: string[];
  /** Reconnect backoff. Defaults: 500 ms doubling up to 30 s, jittered. */
  reconnect?: Partial<BackoffOptions>;
  /** A client ping this often checks that the connection is alive; 0 turns it off. Default 20 s. */
  heartbeatMs?: number;
  /**
   * A connection not `connected` this long after it was started (a gateway
   * that took the TCP connection and never answered the upgrade or the auth)
   * is given up and tried again with the backoff, heartbeat or not; 0 turns it off. Default 15 s.
   */
  connectTimeoutMs?: number;
  /** Consecutive refused tokens (close 4001 before `connected`) after which the subscriber stops. Default 5. */
  maxAuthFailures?: number;
  /**
   * A publish unanswered this long rejects with `timeout`: the gateway drops
   * frames past its per-socket message rate without naming them. Default 30 s.
   */
  publishTimeoutMs?: number;
  WebSocket?: WebSocketConstructor;
  /** For `history()`. Default `globalThis.fetch`. */
  fetch?: FetchLike;
}

export type SubscriberState = "connecting" | "open" | "waiting" | "closed";

export type SubscriptionState = "subscribing" | "subscribed" | "unsubscribed";

/** One page of `GET /v1/channels/{channel}/events`. */
export interface HistoryPage {
  channel: string;
  /** Oldest first. */
  events: ChannelEvent[];
  /** The channel's current position. */
  lastEventId: string | null;
  /** Pass as `since` for the next page; null once caught up. */
  next: string | null;
}

/** `GET /v1/channels/{channel}/presence`: who watches the channel. */
export interface ChannelPresence {
  channel: string;
  /** `cluster`: every instance's members (the gateway has Redis); `instance`: the answering instance's only. */
  scope: "cluster" | "instance";
  /** Subjects watching, listed or not (at most 1,000 are listed). */
  total: number;
  members: Array<{ subject: string; connections: number }>;
}

/** A refused HTTP request: `status` and the gateway's error `code` (`history_gone` is 410). */
export class GatewayRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "GatewayRequestError";
  }
}

/** What `Subscriber.publish` sends beside the channel and the data. */
export interface PublishOptions {
  /** To every connection of the tenant; the channel is then optional (subscribers see `$broadcast` without one). */
  broadcast?: boolean;
  /**
   * The W3C trace context of the publish: the gateway carries a valid one
   * into the Kafka record's headers and the subscribers' event frames (an
   * invalid one is ignored, with its `tracestate`).
   */
  traceparent?: string;
  tracestate?: string;
}

/**
 * A publish the gateway refused (`forbidden`, `bad_channel`, `payload_too_large`,
 * `rate_limited`, `unavailable`; `retryAfterMs` when worth trying again), or one left
 * unanswered: `disconnected` when there was no open connection or it closed
 * before the answer, `timeout` when no answer came in `publishTimeoutMs`
 * (either way it may still have been delivered).
 */
export class GatewayPublishError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "GatewayPublishError";
  }
}

/** Close codes of the gateway's protocol. */
const CLOSE = { tryAgainLater: 1013, unauthorized: 4001 } as const;
const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000;
/** Connect, upgrade and auth: the gateway answers auth within its 5 s deadline, so this leaves a slow network ten more. */
const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
/** A connection that lasted this long resets the backoff. */
const STABLE_AFTER_MS = 5000;
/** The longest wait the gateway may ask for (`reconnect` frame, `retryAfterMs`). */
const MAX_SERVER_DELAY_MS = 60_000;
/** A token is replaced in band this long before it expires (or at half its remaining life, if shorter). */
const REFRESH_AHEAD_MS = 30_000;
/** A refresh that could not be made (callback failed, nothing newer, refused) is tried again after this… */
const REFRESH_RETRY_MS = 5000;
/** …or sooner, at this share of the token's remaining life, but not more often than this. */
const REFRESH_RETRY_SHARE = 0.5;
const MIN_REFRESH_RETRY_MS = 250;

function toWebSocketUrl(url: string): string {
  if (/^wss?:/i.test(url)) return url;
  const base = url.replace(/\/+$/, "").replace(/^http/i, "ws");
  return `${base}/v1/ws`;
}

function toHttpBase(url: string): string {
  return url
    .replace(/^ws/i, "http")
    .replace(/\/+$/, "")
    .replace(/\/v1\/ws$/, "");
}

function serverDelay(value: unknown): number | undefined {
  return typeof value === "number" && value >= 0 ? Math.min(value, MAX_SERVER_DELAY_MS) : undefined;
}

/** `value` if it is a string (a frame's or an answer's optional field), else undefined. */
function stringOf(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function toChannelEvent(frame: Record<string, unknown>): ChannelEvent {
  const event: ChannelEvent = { channel: String(frame.channel), id: String(frame.id), data: frame.data };
  for (const field of ["recordType", "recordId", "traceparent", "tracestate"] as const) {
    const value = stringOf(frame[field]);
    if (value !== undefined) event[field] = value;
  }
  if (frame.broadcast === true) event.broadcast = true;
  return event;
}

/**
 * One channel of a `Subscriber` (as centrifuge-js has them): its state, its
 * position, its own events. Created by `subscriber.subscribe(channel)`; it
 * lives until `unsubscribe()`, a refusal by the gateway, or `close()`.
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  #current: SubscriptionState = "subscribing";
  #waiters: Array<{ resolve: (subscription: Subscription) => void; reject: (error: Error) => void }> = [];
  /** @internal The `since` of the next subscribe: the last event received, or the position the gateway reported. */
  position: string | undefined;
  /** @internal The `lastEventId` of the `subscribed` frame answering the latest subscribe, once it came. */
  given: string | undefined;
  /** @internal Whether its subscribe asks for join and leave events (sent again on every resubscribe). */
  presenceEvents = false;

  readonly #owner: Subscriber;

  constructor(
    readonly channel: string,
    owner: Subscriber,
  ) {
    super();
    this.#owner = owner;
  }

  get state(): SubscriptionState {
    return this.#current;
  }

  /** The id of the last event received (where a resume starts); store it to resume across page loads. */
  get lastEventId(): string | undefined {
    return this.position;
  }

  /** Resolves once subscribed (at once if it is); rejects once the subscription has ended. */
  ready(): Promise<Subscription> {
    if (this.#current === "subscribed") return Promise.resolve(this);
    if (this.#current === "unsubscribed")
      return Promise.reject(new Error(`not subscribed to ${this.channel}`));
    const ready = new Promise<Subscription>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    // Ignoring the promise is fine: a refusal is also an `error` event, never an unhandled rejection.
    ready.catch(() => {});
    return ready;
  }

  unsubscribe(): void {
    this.#owner.unsubscribe(this.channel);
  }

  /** A page of the channel's history; see `Subscriber.history`. */
  history(options: { since?: string; limit?: number } = {}): Promise<HistoryPage> {
    return this.#owner.history(this.channel, options);
  }

  /** Who watches the channel; see `Subscriber.presence`. */
  presence(): Promise<ChannelPresence> {
    return this.#owner.presence(this.channel);
  }

  /** @internal Moves to `state` and tells this subscription's listeners (for the Subscriber only). */
  transition<State extends SubscriptionState>(state: State, payload: SubscriptionEvents[State]): void {
    if (this.#current === "unsubscribed") return;
    if (state === "subscribing" && this.#current === "subscribing") return;
    this.#current = state;
    if (state !== "subscribing") {
      const waiters = this.#waiters;
      this.#waiters = [];
      const reason = (payload as SubscriptionEvents["unsubscribed"]).reason;
      for (const waiter of waiters) {
        if (state === "subscribed") waiter.resolve(this);
        else waiter.reject(new Error(`subscription to ${this.channel} ended: ${reason}`));
      }
    }
    this.emit(state, payload);
    if (state === "unsubscribed") this.removeAllListeners();
  }

  /** @internal Tells this subscription's listeners (for the Subscriber only). */
  notify<K extends "event" | "gap" | "error" | "join" | "leave">(
    type: K,
    payload: SubscriptionEvents[K],
  ): void {
    this.emit(type, payload);
  }
}

/**
 * A WebSocket subscription to gateway channels that survives disconnects:
 * first-message auth, token refresh in band before expiry, automatic
 * reconnect with jittered backoff (or the delay the gateway asks for), and
 * resume from each channel's position, with duplicates from an overlapping
 * replay dropped.
 */
export class Subscriber extends Emitter<SubscriberEvents> {
  readonly #WebSocketImpl: WebSocketConstructor;
  readonly #wsUrl: string;
  readonly #httpBase: string;
  readonly #backoff: BackoffOptions;
  /** The channels the caller wants, kept across reconnects. */
  readonly #subscriptions = new Map<string, Subscription>();
  /** Subscribes the gateway asked to try again later (`try_again`), one timer per channel at most. */
  readonly #retrySubscribe = new Map<string, ReturnType<typeof setTimeout>>();
  #socket: WebSocketLike | undefined;
  #currentState: SubscriberState = "connecting";
  #attempt = 0;
  #authFailures = 0;
  #refreshToken = false;
  #connectedAt = 0;
  /**
   * The delay of the gateway's last `reconnect` frame, or the `retryAfterMs` of
   * its last connection-level error (`unavailable`, `rate_limited`), on this connection.
   */
  #serverDelayMs: number | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Gives the connection up unless it is `connected` in time. */
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  #awaitingPong = false;
  /** The token the gateway holds for this connection, and when it expires (epoch ms, when known). */
  #token: string | undefined;
  #tokenExpiresAt: number | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** An in-band `auth` sent and not yet answered. */
  #pendingToken: string | undefined;
  #refreshing = false;
  /** False once this connection's gateway refused in-band refresh (an older version): it waits for 4001. */
  #inBandRefresh = true;
  /**
   * Publishes sent on the current socket and not answered yet, by `ref`: the
   * gateway answers each (it refuses past 32 waiting) or, past its message
   * rate, drops it unnamed, which `publishTimeoutMs` settles; a close rejects
   * the rest.
   */
  /** Settles one publish: resolves it, or rejects it with the error; either way it is forgotten. */
  readonly #publishes = new Map<string, (error?: GatewayPublishError) => void>();
  #publishRef = 0;

  readonly #options: SubscriberOptions;

  constructor(options: SubscriberOptions) {
    super();
    this.#options = options;
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) {
      throw new Error("no WebSocket: pass options.WebSocket");
    }
    this.#WebSocketImpl = WebSocketImpl;
    this.#wsUrl = toWebSocketUrl(options.url);
    this.#httpBase = toHttpBase(options.url);
    this.#backoff = { initialDelayMs: 500, maxDelayMs: 30_000, ...options.reconnect };
    for (const channel of options.channels ?? [])
      this.#subscriptions.set(channel, new Subscription(channel, this));
    void this.#connect();
  }

  get state(): SubscriberState {
    return this.#currentState;
  }

  /** The position a resume of `channel` starts from: the last event received, or the gateway's position at subscribe. */
  lastEventId(channel: string): string | undefined {
    return this.#subscriptions.get(channel)?.position;
  }

  /** The subscription to `channel`, while there is one. */
  subscription(channel: string): Subscription | undefined {
    return this.#subscriptions.get(channel);
  }

  /**
   * Subscribes now if connected, and again after every reconnect; `since`
   * resumes after that event id. Resolves with the subscription once the
   * gateway confirmed it; rejects if the channel is refused or the subscriber
   * closes first (the refusal is also an `error` event, so ignoring the
   * promise is safe). `presence: true` also delivers `join` and `leave`
   * events of the channel (off by default; a later subscribe of the channel changes it).
   * Throws a `TypeError` for a `since` that is not an event id (or a
   * `lastEventId`): the gateway refuses it without naming the channel.
   */
  subscribe(channel: string, options: { since?: string; presence?: boolean } = {}): Promise<Subscription> {
    if (options.since !== undefined && !isPosition(options.since))
      throw new TypeError(`since must be an event id or a lastEventId, not ${JSON.stringify(options.since)}`);
    let subscription = this.#subscriptions.get(channel);
    const fresh = subscription === undefined;
    if (!subscription) {
      subscription = new Subscription(channel, this);
      this.#subscriptions.set(channel, subscription);
    }
    if (options.since !== undefined) subscription.position = options.since;
    const presenceChanged =
      options.presence !== undefined && options.presence !== subscription.presenceEvents;
    if (options.presence !== undefined) subscription.presenceEvents = options.presence;
    const ready = subscription.ready();
    if (this.#isClosed()) {
      this.#end(subscription, "closed");
      return ready;
    }
    if (fresh || options.since !== undefined || presenceChanged) {
      subscription.transition("subscribing", { channel });
      if (this.#currentState === "open") this.#sendSubscribe(subscription);
    }
    return ready;
  }

  unsubscribe(channel: string): void {
    const subscription = this.#subscriptions.get(channel);
    if (!subscription) return;
    this.#end(subscription, "client");
    if (this.#currentState === "open") this.#send({ type: "unsubscribe", channel });
  }

  /**
   * A page of `channel`'s history after `since` (the oldest kept when
   * absent), `limit` events at most (gateway default 100, at most 1000):
   * follow `next` until it is null to catch up. Rejects with a
   * `GatewayRequestError` (`history_gone`, 410, when `since` is older than what is kept).
   */
  async history(channel: string, options: { since?: string; limit?: number } = {}): Promise<HistoryPage> {
    const url = new URL(`${this.#httpBase}/v1/channels/${encodeURIComponent(channel)}/events`);
    if (options.since !== undefined) url.searchParams.set("since", options.since);
    if (options.limit !== undefined) url.searchParams.set("limit", String(options.limit));
    const body = await this.#getJson(url);
    const events = Array.isArray(body.events) ? (body.events as Array<Record<string, unknown>>) : [];
    return {
      channel,
      events: events.map((event) => toChannelEvent({ channel, ...event })),
      lastEventId: stringOf(body.lastEventId) ?? null,
      next: stringOf(body.next) ?? null,
    };
  }

  /**
   * Who watches `channel` (`GET /v1/channels/{channel}/presence`): subjects
   * and their connection counts, across instances (`scope: "cluster"`) when
   * the gateway has Redis, else the answering instance's (`"instance"`).
   * Rejects with a `GatewayRequestError`.
   */
  async presence(channel: string): Promise<ChannelPresence> {
    const body = await this.#getJson(
      new URL(`${this.#httpBase}/v1/channels/${encodeURIComponent(channel)}/presence`),
    );
    const members = Array.isArray(body.members) ? (body.members as Array<Record<string, unknown>>) : [];
    return {
      channel,
      scope: body.scope === "cluster" ? "cluster" : "instance",
      total: typeof body.total === "number" ? body.total : members.length,
      members: members.map((member) => ({
        subject: String(member.subject),
        connections: Number(member.connections),
      })),
    };
  }

  /** A GET with the subscriber's token (one refreshed token after a 401); a refusal rejects with `GatewayRequestError`. */
  async #getJson(url: URL): Promise<Record<string, unknown>> {
    const fetch = this.#options.fetch ?? ((target, init) => globalThis.fetch(target, init));
    let token = this.#token ?? (await resolveToken(this.#options.token));
    for (let refreshed = false; ; refreshed = true) {
      const response = await fetch(url.toString(), { headers: { authorization: `Bearer ${token}` } });
      const text = await response.text();
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        // Not JSON (a proxy's error page): the status says what happened.
      }
      if (response.status === 401 && !refreshed && typeof this.#options.token === "function") {
        token = await resolveToken(this.#options.token, true);
        continue;
      }
      if (!response.ok) {
        const code = stringOf(body.error) ?? `http_${response.status}`;
        throw new GatewayRequestError(
          response.status,
          code,
          String(body.message ?? `HTTP ${response.status}`),
        );
      }
      return body;
    }
  }

  /**
   * Publishes `data` to `channel` over the open socket (token scope
   * `publish`), as `POST /v1/publish` does; resolves once Kafka acknowledged
   * it. Rejects with a `GatewayPublishError`: the gateway's refusal, or
   * `disconnected` when the subscriber is not `open` or the socket closed
   * before the answer (the publish may then have been delivered: it is not
   * sent again). Throws a `TypeError` without a channel unless `broadcast`:
   * the gateway refuses that without naming the publish.
   */
  publish(channel: string | undefined, data: unknown, options: PublishOptions = {}): Promise<void> {
    if (channel === undefined && !options.broadcast)
      throw new TypeError("publish needs a channel, or broadcast: true");
    const socket = this.#socket;
    if (this.#currentState !== "open" || socket?.readyState !== 1)
      return Promise.reject(new GatewayPublishError("disconnected", "publish needs an open connection"));
    const ref = String(++this.#publishRef);
    // Fields left undefined are not sent.
    const frame = {
      type: "publish",
      data,
      ref,
      channel,
      broadcast: options.broadcast || undefined,
      traceparent: options.traceparent,
      tracestate: options.tracestate,
    };
    return new Promise<void>((resolve, reject) => {
      const settle = (error?: GatewayPublishError) => {
        clearTimeout(timer);
        this.#publishes.delete(ref);
        error ? reject(error) : resolve();
      };
      const timer = setTimeout(
        () => settle(new GatewayPublishError("timeout", "no answer in time")),
        this.#options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS,
      );
      this.#publishes.set(ref, settle);
      socket.send(JSON.stringify(frame));
    });
  }

  /** Closes for good: no reconnect; every subscription ends. */
  close(): void {
    if (this.#currentState === "closed") return;
    this.#currentState = "closed";
    clearTimeout(this.#retryTimer);
    this.#stopConnectionTimers();
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) {
      socket.onclose = null;
      socket.close(1000, "client closed");
    }
    this.#abandonPublishes("the subscriber closed before the gateway answered");
    for (const subscription of [...this.#subscriptions.values()]) this.#end(subscription, "closed");
    this.emit("disconnected", { code: 1000, reason: "client closed", reconnectInMs: undefined });
  }

  async #connect(): Promise<void> {
    this.#currentState = "connecting";
    this.#serverDelayMs = undefined;
    let token: string;
    try {
      token = await resolveToken(this.#options.token, this.#refreshToken);
    } catch (error) {
      if (this.#isClosed()) return;
      this.emit("error", { code: "token", message: messageOf(error) });
      this.#scheduleReconnect(backoffDelay(this.#attempt++, this.#backoff), 1006, "token callback failed");
      return;
    }
    if (this.#isClosed()) return;
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocketImpl(this.#wsUrl);
    } catch (error) {
      this.#scheduleReconnect(backoffDelay(this.#attempt++, this.#backoff), 1006, String(error));
      return;
    }
    this.#socket = socket;
    // Without a heartbeat too: no platform gives up a connection whose upgrade is never answered.
    const connectTimeout = this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    if (connectTimeout > 0)
      this.#connectTimer = setTimeout(() => this.#drop(socket, "no answer to connect"), connectTimeout);
    // From the start: a peer that takes the connection and never answers (a frozen gateway) is replaced too.
    this.#startHeartbeat(socket);
    this.#token = token;
    this.#tokenExpiresAt = tokenExpiresAt(token);
    this.#inBandRefresh = true;
    // The token goes in the first message, not the URL, so it stays out of access logs.
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token }));
    socket.onmessage = (event) => this.#onFrame(socket, String(event.data));
    socket.onclose = (event) => this.#onClose(socket, event.code, event.reason);
    // A close event follows, and carries what matters; but Node 20's WebSocket (undici 6) refused
    // leaves readyState at 0 and never closes: without this the subscriber would wait for good.
    socket.onerror = () => socket.readyState || this.#onClose(socket, 1006, "");
  }

  /** State read after an await: close() may have run meanwhile. */
  #isClosed(): boolean {
    return this.#currentState === "closed";
  }

  #onFrame(socket: WebSocketLike, text: string): void {
    if (socket !== this.#socket) return;
    this.#awaitingPong = false;
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    switch (frame.type) {
      case "connected":
        clearTimeout(this.#connectTimer);
        this.#currentState = "open";
        this.#connectedAt = Date.now();
        this.#authFailures = 0;
        this.#refreshToken = false;
        this.#scheduleRefresh(socket);
        this.emit("connected", { connection: String(frame.connection) });
        for (const subscription of this.#subscriptions.values()) this.#sendSubscribe(subscription);
        return;
      case "event":
        this.#onEvent(frame);
        return;
      case "join":
      case "leave": {
        const subscription = this.#subscriptions.get(String(frame.channel));
        if (!subscription || typeof frame.subject !== "string") return;
        const change: PresenceChange = { channel: subscription.channel, subject: frame.subject };
        this.#tell(subscription, frame.type, change);
        return;
      }
      case "published": {
        this.#publishes.get(String(frame.ref))?.();
        return;
      }
      case "subscribed": {
        const channel = String(frame.channel);
        const subscription = this.#subscriptions.get(channel);
        if (!subscription) return;
        const lastEventId = stringOf(frame.lastEventId) ?? null;
        // Without a position, "now" is the position (also for a channel with no events yet):
        // a later resume starts here rather than missing what was published meanwhile.
        if (lastEventId !== null && subscription.position === undefined) subscription.position = lastEventId;
        subscription.given = lastEventId ?? undefined;
        subscription.transition("subscribed", { channel, lastEventId });
        this.emit("subscribed", { channel, lastEventId });
        return;
      }
      case "unsubscribed": {
        const channel = String(frame.channel);
        const subscription = this.#subscriptions.get(channel);
        if (frame.reason === "forbidden" && subscription) {
          // The refreshed token no longer allows this channel.
          this.#end(subscription, "forbidden");
          return;
        }
        this.emit("unsubscribed", { channel });
        return;
      }
      case "error":
        this.#onErrorFrame(socket, frame);
        return;
      case "refreshed":
        this.#onRefreshed(socket, frame);
        return;
      case "token_expiring":
        void this.#refreshInBand(socket);
        return;
      case "reconnect":
        this.#serverDelayMs = serverDelay(frame.afterMs) ?? this.#serverDelayMs;
        return;
      case "ping":
        this.#checkForGaps(frame.lastEventIds);
        return;
    }
  }

  #onEvent(frame: Record<string, unknown>): void {
    const event = toChannelEvent(frame);
    if (event.broadcast) {
      this.emit("event", event);
      return;
    }
    const subscription = this.#subscriptions.get(event.channel);
    if (!subscription) return;
    const last = subscription.position;
    // A replay can overlap events already received live: each is delivered once.
    if (last !== undefined && !isAfter(event.id, last)) return;
    subscription.position = event.id;
    this.#tell(subscription, "event", event);
  }

  #onErrorFrame(socket: WebSocketLike, frame: Record<string, unknown>): void {
    const code = String(frame.code);
    const message = String(frame.message ?? code);
    if (frame.ref !== undefined) {
      // The answer to a publish: its promise rejects (not an `error` event). One that timed out already
      // is ignored: it says nothing of the connection.
      const retryAfterMs = typeof frame.retryAfterMs === "number" ? frame.retryAfterMs : undefined;
      this.#publishes.get(String(frame.ref))?.(new GatewayPublishError(code, message, retryAfterMs));
      return;
    }
    const channel = stringOf(frame.channel);
    const subscription = channel === undefined ? undefined : this.#subscriptions.get(channel);
    if (channel !== undefined && subscription) {
      if (code === "history_gone") {
        const gap: Gap = { channel, since: subscription.position ?? "", reason: "history_gone" };
        // The position its `subscribed` frame gave; a gateway that sent `history_gone` first (before
        // 2026-12) has not answered yet, and its `subscribed` frame that follows sets it.
        subscription.position = subscription.given;
        this.#tell(subscription, "gap", gap);
        return;
      }
      if (code === "try_again") {
        // The replay is over the gateway's bounds for now: not a gap, the same subscribe later.
        this.#retrySubscribeLater(
          subscription,
          serverDelay(frame.retryAfterMs) ?? this.#backoff.initialDelayMs,
        );
        return;
      }
      if (code === "forbidden" || code === "bad_channel" || code === "too_many_subscriptions") {
        // Refused for good: not asked again after a reconnect.
        this.#tell(subscription, "error", { code, message, channel });
        this.#end(subscription, code);
        return;
      }
    }
    if (channel === undefined && this.#refreshing) {
      if (this.#onRefreshRefused(socket, code, frame)) return;
    } else if (channel === undefined) {
      // An unreachable identity provider (`unavailable`), a connection cap (`rate_limited`): the close (1013) that follows waits as long as asked.
      this.#serverDelayMs = serverDelay(frame.retryAfterMs) ?? this.#serverDelayMs;
    }
    const error: GatewayErrorInfo = { code, message };
    if (channel !== undefined) error.channel = channel;
    this.emit("error", error);
  }

  /** The gateway's keep-alive names each channel's newest event: one newer than ours means we missed some. */
  #checkForGaps(lastEventIds: unknown): void {
    // Anything but an object lists no subscribed channel.
    for (const [channel, newest] of Object.entries(lastEventIds ?? {})) {
      const subscription = this.#subscriptions.get(channel);
      const ours = subscription?.position;
      if (typeof newest !== "string" || ours === undefined || !subscription) continue;
      if (isAfter(newest, ours, { sameEpochOnly: true })) {
        const gap: Gap = { channel, since: ours, reason: "behind" };
        this.#tell(subscription, "gap", gap);
        this.#sendSubscribe(subscription);
      }
    }
  }

  /** Schedules the in-band refresh ahead of expiry (the gateway's `token_expiring` may come first). */
  #scheduleRefresh(socket: WebSocketLike, inMs?: number): void {
    clearTimeout(this.#refreshTimer);
    if (typeof this.#options.token === "string") return;
    let delay = inMs;
    if (delay === undefined) {
      if (this.#tokenExpiresAt === undefined) return;
      const left = this.#tokenExpiresAt - Date.now();
      delay = Math.max(0, left - Math.min(REFRESH_AHEAD_MS, left / 2));
    }
    this.#refreshTimer = setTimeout(() => void this.#refreshInBand(socket), delay);
  }

  /** Sends a fresh token on the open socket: it and its subscriptions stay. */
  async #refreshInBand(socket: WebSocketLike): Promise<void> {
    const source = this.#options.token;
    if (typeof source === "string" || this.#refreshing || !this.#inBandRefresh || socket !== this.#socket)
      return;
    this.#refreshing = true;
    clearTimeout(this.#refreshTimer);
    let token: string;
    try {
      token = await resolveToken(source, true);
    } catch (error) {
      this.#refreshing = false;
      if (socket !== this.#socket) return;
      this.emit("error", { code: "token", message: messageOf(error) });
      this.#scheduleRefresh(socket, this.#refreshRetryMs());
      return;
    }
    if (socket !== this.#socket || this.#isClosed()) {
      this.#refreshing = false;
      return;
    }
    const expiresAt = tokenExpiresAt(token);
    if (expiresAt !== undefined && this.#tokenExpiresAt !== undefined && expiresAt <= this.#tokenExpiresAt) {
      // Nothing newer yet (the gateway would refuse it): ask again shortly; at expiry a reconnect refreshes anyway.
      this.#refreshing = false;
      this.#scheduleRefresh(socket, this.#refreshRetryMs());
      return;
    }
    this.#pendingToken = token;
    this.#send({ type: "auth", token });
  }

  /** When to try a refresh again that could not be made: before the current token expires. */
  #refreshRetryMs(): number {
    const left = this.#tokenExpiresAt === undefined ? Infinity : this.#tokenExpiresAt - Date.now();
    return Math.max(MIN_REFRESH_RETRY_MS, Math.min(REFRESH_RETRY_MS, left * REFRESH_RETRY_SHARE));
  }

  #onRefreshed(socket: WebSocketLike, frame: Record<string, unknown>): void {
    if (this.#pendingToken === undefined) return;
    this.#token = this.#pendingToken;
    this.#pendingToken = undefined;
    this.#refreshing = false;
    this.#tokenExpiresAt =
      typeof frame.expiresAt === "number" ? frame.expiresAt : tokenExpiresAt(this.#token);
    this.#scheduleRefresh(socket);
    this.emit("refreshed", { expiresAt: this.#tokenExpiresAt });
  }

  /**
   * The gateway's answer to an in-band `auth` that it did not take. Returns
   * true when handled here: an older gateway that cannot refresh in band
   * (`bad_frame`) is left to close at expiry, and the reconnect refreshes.
   */
  #onRefreshRefused(socket: WebSocketLike, code: string, frame: Record<string, unknown>): boolean {
    this.#refreshing = false;
    this.#pendingToken = undefined;
    if (code === "unavailable") {
      // The identity provider is unreachable: the socket stays; try again when asked.
      this.#scheduleRefresh(socket, serverDelay(frame.retryAfterMs) ?? this.#refreshRetryMs());
      return false;
    }
    if (code === "bad_frame") {
      this.#inBandRefresh = false;
      return true;
    }
    // `forbidden` (another tenant or subject, or no later expiry): reported, and asked again shortly
    // (the callback may have a newer token by then); at expiry a reconnect refreshes anyway.
    // `unauthorized` is followed by close 4001, which refreshes too.
    if (code === "forbidden") this.#scheduleRefresh(socket, this.#refreshRetryMs());
    return false;
  }

  #onClose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.#socket) return;
    this.#socket = undefined;
    this.#stopConnectionTimers();
    this.#abandonPublishes(`the connection closed (${code}) before the gateway answered`);
    if (this.#currentState === "closed") return;
    const wasOpen = this.#connectedAt > 0;
    if (wasOpen && Date.now() - this.#connectedAt >= STABLE_AFTER_MS) this.#attempt = 0;
    this.#connectedAt = 0;
    for (const subscription of this.#subscriptions.values()) {
      subscription.transition("subscribing", { channel: subscription.channel });
    }

    if (code === CLOSE.unauthorized) {
      // A token that expired on an open connection is no refusal: only those before `connected` count.
      if (!wasOpen) this.#authFailures++;
      const canRefresh = typeof this.#options.token === "function";
      if (!canRefresh || (!wasOpen && this.#authFailures >= (this.#options.maxAuthFailures ?? 5))) {
        this.#currentState = "closed";
        this.emit("error", {
          code: "unauthorized",
          message: canRefresh
            ? "the gateway refused every refreshed token"
            : "the gateway refused the token (no token callback)",
        });
        for (const subscription of [...this.#subscriptions.values()]) this.#end(subscription, "closed");
        this.emit("disconnected", { code, reason, reconnectInMs: undefined });
        return;
      }
      this.#refreshToken = true;
    }
    let delay: number;
    if (this.#serverDelayMs !== undefined) {
      // As long as the gateway asked (a drain, an unreachable identity provider), spread by a little jitter.
      delay = this.#serverDelayMs + (code === CLOSE.tryAgainLater ? backoffDelay(0, this.#backoff) : 0);
    } else if (code === CLOSE.tryAgainLater) {
      // Too slow or too many connections: start further up the backoff.
      delay = backoffDelay(this.#attempt + 2, this.#backoff);
      this.#attempt++;
    } else if (code === CLOSE.unauthorized && (wasOpen || this.#authFailures === 1))
      delay = backoffDelay(0, this.#backoff);
    else delay = backoffDelay(this.#attempt++, this.#backoff);
    this.#scheduleReconnect(delay, code, reason);
  }

  #scheduleReconnect(delay: number, code: number, reason: string): void {
    this.#currentState = "waiting";
    this.emit("disconnected", { code, reason, reconnectInMs: delay });
    if (this.#currentState !== "waiting") return;
    this.#retryTimer = setTimeout(() => void this.#connect(), delay);
  }

  /** Rejects the publishes of a socket that is gone: their answers will never come. */
  #abandonPublishes(message: string): void {
    for (const settle of [...this.#publishes.values()])
      settle(new GatewayPublishError("disconnected", message));
  }

  /** Ends a subscription for good and forgets it. */
  #end(subscription: Subscription, reason: UnsubscribeReason): void {
    const channel = subscription.channel;
    if (this.#subscriptions.get(channel) === subscription) this.#subscriptions.delete(channel);
    clearTimeout(this.#retrySubscribe.get(channel));
    this.#retrySubscribe.delete(channel);
    subscription.transition("unsubscribed", { channel, reason });
    if (reason !== "client") this.emit("unsubscribed", { channel, reason });
  }

  #retrySubscribeLater(subscription: Subscription, delay: number): void {
    const channel = subscription.channel;
    clearTimeout(this.#retrySubscribe.get(channel));
    this.#retrySubscribe.set(
      channel,
      setTimeout(() => {
        this.#retrySubscribe.delete(channel);
        if (this.#subscriptions.get(channel) === subscription) this.#sendSubscribe(subscription);
      }, delay),
    );
  }

  /** Tells the subscription's listeners, then the subscriber's. */
  #tell<K extends "event" | "gap" | "error" | "join" | "leave">(
    subscription: Subscription,
    type: K,
    payload: SubscriptionEvents[K] & SubscriberEvents[K],
  ): void {
    subscription.notify(type, payload);
    this.emit(type, payload);
  }

  #sendSubscribe(subscription: Subscription): void {
    subscription.given = undefined;
    // Fields left undefined are not sent.
    this.#send({
      type: "subscribe",
      channel: subscription.channel,
      since: subscription.position,
      presence: subscription.presenceEvents || undefined,
    });
  }

  #send(frame: Record<string, unknown>): void {
    if (this.#socket?.readyState === 1) this.#socket.send(JSON.stringify(frame));
  }

  /**
   * Browsers do not expose protocol pings, so a dead connection (a laptop
   * waking up, a NAT that forgot us) is found by an app-level ping: no frame
   * at all for a whole interval after one means the connection is gone.
   */
  #startHeartbeat(socket: WebSocketLike): void {
    const interval = this.#options.heartbeatMs ?? 20_000;
    if (interval <= 0) return;
    this.#heartbeatTimer = setInterval(() => {
      if (this.#awaitingPong) {
        this.#drop(socket, "no answer to ping");
        return;
      }
      this.#awaitingPong = true;
      this.#send({ type: "ping" });
    }, interval);
  }

  /** Gives up a connection that does not answer: closed as a dropped one is (1006), then the backoff. */
  #drop(socket: WebSocketLike, reason: string): void {
    socket.onclose = null;
    socket.close();
    this.#onClose(socket, 1006, reason);
  }

  /** Timers that belong to one connection: connect timeout, heartbeat, token refresh, delayed subscribes. */
  #stopConnectionTimers(): void {
    clearTimeout(this.#connectTimer);
    clearInterval(this.#heartbeatTimer);
    this.#awaitingPong = false;
    clearTimeout(this.#refreshTimer);
    this.#refreshing = false;
    this.#pendingToken = undefined;
    for (const timer of this.#retrySubscribe.values()) clearTimeout(timer);
    this.#retrySubscribe.clear();
  }
}
