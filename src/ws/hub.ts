import { randomUUID } from "node:crypto";
import type { Authenticator } from "../auth/authenticator.ts";
import { bearerToken } from "../auth/bearer.ts";
import { channelAllowed, type Principal, requireScope } from "../auth/principal.ts";
import { GatewayError, isGatewayError } from "../errors/errors.ts";
import { broadcastTopic, channelTopic, type FanoutTarget } from "../fanout/fanout.ts";
import type { ChannelHistory } from "../fanout/history.ts";
import { errorReply } from "../http/reply.ts";
import { CHANNEL_PATTERN } from "../ingest/record.ts";
import { sleep } from "../lifecycle/time.ts";
import type { Logger } from "../log/logger.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { HttpRequest, UpgradeDecision, WsHandlers, WsPeer } from "../transport/types.ts";
import { type ClientFrame, parseClientFrame } from "./protocol.ts";

export interface ConnectionState {
  id: string;
  ip: string;
  /** Token from the Authorization header or ?token=, verified right after open. */
  upgradeToken: string | undefined;
  /** Frames that arrived while the token was being verified; replayed once it is (bounded). */
  framesDuringAuth: string[] | undefined;
  principal: Principal | undefined;
  channels: Set<string>;
  authTimer: ReturnType<typeof setTimeout> | undefined;
  /** Inbound frames in the current one-second window, for the per-connection message rate. */
  windowStart: number;
  windowMessages: number;
}

export interface WsHubOptions {
  runtime: string;
  pingIntervalMs: number;
  authTimeoutMs: number;
  backpressureBytes: number;
  /** Authenticated sockets per instance. */
  maxConnections: number;
  /** Sockets still authenticating (open, no principal yet), counted apart from `maxConnections`. */
  maxUnauthenticated: number;
  maxConnectionsPerTenant: number;
  maxSubscriptions: number;
  maxMessagesPerSec: number;
}

export interface WsHubDependencies {
  authenticator: Authenticator;
  history: ChannelHistory;
  metrics: Metrics;
  log: Logger;
  /** Per-IP connect rate limit; throws a 429 GatewayError when exceeded. */
  admitConnection(ip: string): Promise<void>;
}

type Peer = WsPeer<ConnectionState>;

/** Frames held while a token is verified: a few subscribes, never a pending socket's worth of payloads. */
const MAX_FRAMES_DURING_AUTH = 16;
const MAX_BYTES_DURING_AUTH = 16 * 1024;

/** Close codes of the protocol. */
export const CLOSE = { unauthorized: 4001, goingAway: 1001, tryAgainLater: 1013, policy: 1008 } as const;

/**
 * Owns every WebSocket of this instance: authentication, subscriptions with
 * tenant isolation, resume from history, keep-alive pings, slow-consumer and
 * token-expiry sweeps, and the paced disconnect on drain. Every map here is
 * freed by the close event of the connection that filled it.
 */
export class WsHub implements WsHandlers<ConnectionState>, FanoutTarget {
  private readonly peers = new Set<Peer>();
  /** Peers with a principal; the others (`peers.size - authenticated`) are still authenticating. */
  private authenticated = 0;
  private readonly tenantConnections = new Map<string, number>();
  private readonly topicSubscribers = new Map<string, number>();
  private publishToEngine: ((topic: string, frame: string) => void) | undefined;
  private readonly timers: Array<ReturnType<typeof setInterval>> = [];

  constructor(
    private readonly options: WsHubOptions,
    private readonly deps: WsHubDependencies,
  ) {}

  /** Starts the sweeps once the server listens. */
  attach(publishToEngine: (topic: string, frame: string) => void): void {
    this.publishToEngine = publishToEngine;
    this.timers.push(
      setInterval(() => this.sweep(), 1000),
      setInterval(() => this.ping(), this.options.pingIntervalMs),
    );
    for (const timer of this.timers) timer.unref?.();
  }

  stop(): void {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
  }

  publish(topic: string, frame: string): number {
    const receivers = this.topicSubscribers.get(topic) ?? 0;
    if (receivers > 0) this.publishToEngine?.(topic, frame);
    return receivers;
  }

  /**
   * Decides at once, without I/O: uWebSockets.js (Node) lost sockets whose
   * upgrade completed after real asynchronous work, so token checks and the
   * connect rate limit run right after `open` instead. Both caps are checked
   * again where they are counted (`open`, `establish`): upgrades accepted
   * together may overshoot here.
   */
  async upgrade(request: HttpRequest): Promise<UpgradeDecision<ConnectionState>> {
    try {
      const full = this.fullness();
      if (full) throw full;
      const token = request.header("authorization")
        ? bearerToken(request.header("authorization"))
        : (request.query.get("token") ?? undefined);
      return { accept: true, state: this.newState(request.remoteAddress, token) };
    } catch (error) {
      return { accept: false, reply: errorReply(error) };
    }
  }

  open(peer: Peer): void {
    const full = this.fullness();
    if (full) {
      // Not tracked: its close event finds nothing to free.
      this.refuse(peer, full);
      return;
    }
    this.peers.add(peer);
    this.deps.metrics.wsConnections.inc({ runtime: this.options.runtime });
    peer.state.authTimer = setTimeout(() => {
      this.sendFrame(peer, {
        type: "error",
        code: "unauthorized",
        message: "authenticate within the deadline",
      });
      peer.close(CLOSE.unauthorized, "authentication timeout");
    }, this.options.authTimeoutMs);
    this.deps.admitConnection(peer.state.ip).then(
      () => {
        const token = peer.state.upgradeToken;
        peer.state.upgradeToken = undefined;
        if (token !== undefined && this.peers.has(peer)) this.authenticate(peer, token);
      },
      (error) => {
        if (!this.peers.has(peer)) return;
        this.sendFrame(peer, { type: "error", code: "rate_limited", message: (error as Error).message });
        peer.close(CLOSE.tryAgainLater, "too many connections");
      },
    );
  }

  message(peer: Peer, text: string): void {
    const waiting = peer.state.framesDuringAuth;
    if (waiting) {
      const held = waiting.reduce((bytes, frame) => bytes + frame.length, text.length);
      if (waiting.length < MAX_FRAMES_DURING_AUTH && held <= MAX_BYTES_DURING_AUTH) waiting.push(text);
      return;
    }
    if (!this.withinMessageRate(peer)) return;
    const frame = parseClientFrame(text);
    if ("error" in frame) {
      this.sendFrame(peer, { type: "error", code: "bad_frame", message: frame.error });
      return;
    }
    if (!peer.state.principal) {
      this.handleAuth(peer, frame);
      return;
    }
    switch (frame.type) {
      case "auth":
        this.sendFrame(peer, { type: "error", code: "bad_frame", message: "already authenticated" });
        return;
      case "subscribe":
        this.subscribe(peer, peer.state.principal, frame.channel, frame.since);
        return;
      case "unsubscribe":
        this.unsubscribe(peer, frame.channel);
        this.sendFrame(peer, { type: "unsubscribed", channel: frame.channel });
        return;
      case "ping":
        this.sendFrame(peer, { type: "pong" });
        return;
    }
  }

  drain(_peer: Peer): void {}

  close(peer: Peer, _code: number): void {
    if (!this.peers.delete(peer)) return;
    const state = peer.state;
    if (state.authTimer) clearTimeout(state.authTimer);
    for (const channel of [...state.channels]) this.unsubscribe(peer, channel);
    const tenant = state.principal?.tenant;
    if (tenant !== undefined) {
      this.authenticated--;
      const left = (this.tenantConnections.get(tenant) ?? 1) - 1;
      if (left > 0) this.tenantConnections.set(tenant, left);
      else this.tenantConnections.delete(tenant);
      this.countTopic(broadcastTopic(tenant), -1);
    }
    this.deps.metrics.wsConnections.dec({ runtime: this.options.runtime });
  }

  /**
   * Tells every client to reconnect and closes it with 1001, in batches spread
   * over `withinMs` with a jittered `afterMs`, so clients do not all return at once.
   */
  async disconnectAll(withinMs: number): Promise<void> {
    const peers = [...this.peers];
    const batches = Math.max(1, Math.min(20, Math.ceil(peers.length / 50)));
    const batchSize = Math.ceil(peers.length / batches);
    const pause = batches > 1 ? Math.floor(withinMs / batches) : 0;
    for (let start = 0; start < peers.length; start += batchSize) {
      for (const peer of peers.slice(start, start + batchSize)) {
        this.sendFrame(peer, { type: "reconnect", afterMs: 250 + Math.floor(Math.random() * 4750) });
        peer.close(CLOSE.goingAway, "server draining");
      }
      if (pause > 0 && start + batchSize < peers.length) await sleep(pause);
    }
  }

  private newState(ip: string, upgradeToken: string | undefined): ConnectionState {
    return {
      id: randomUUID(),
      ip,
      upgradeToken,
      framesDuringAuth: upgradeToken === undefined ? undefined : [],
      principal: undefined,
      channels: new Set(),
      authTimer: undefined,
      windowStart: Date.now(),
      windowMessages: 0,
    };
  }

  private async authorize(token: string): Promise<Principal> {
    const principal = await this.deps.authenticator.verify(token);
    requireScope(principal, "subscribe");
    return principal;
  }

  /** Why no new socket fits right now, if none does: the authenticated slots or the pending ones are full. */
  private fullness(): GatewayError | undefined {
    if (this.authenticated >= this.options.maxConnections) {
      return new GatewayError("unavailable", "this instance has no room for more connections", {
        "retry-after": "5",
      });
    }
    if (this.peers.size - this.authenticated >= this.options.maxUnauthenticated) {
      return new GatewayError("unavailable", "too many connections are authenticating; retry shortly", {
        "retry-after": String(Math.ceil(this.options.authTimeoutMs / 1000)),
      });
    }
    return undefined;
  }

  /** A socket that authenticated (or opened) past a cap: an error frame and 1013, "try again later". */
  private refuse(peer: Peer, error: GatewayError): void {
    this.sendFrame(peer, { type: "error", code: error.code, message: error.message });
    peer.close(CLOSE.tryAgainLater, error.code);
  }

  private handleAuth(peer: Peer, frame: ClientFrame): void {
    if (frame.type !== "auth") {
      this.sendFrame(peer, { type: "error", code: "unauthorized", message: "authenticate first" });
      peer.close(CLOSE.unauthorized, "unauthorized");
      return;
    }
    this.authenticate(peer, frame.token);
  }

  /** Verifies a token (from the upgrade or an auth frame); success sends `connected`, failure closes 4001. */
  private authenticate(peer: Peer, token: string): void {
    // Frames that arrive while the token is checked wait for the outcome instead of being refused.
    peer.state.framesDuringAuth ??= [];
    this.authorize(token).then(
      (principal) => {
        if (this.peers.has(peer)) this.establish(peer, principal);
      },
      (error) => {
        if (!this.peers.has(peer)) return;
        const code = isGatewayError(error) ? error.code : "unauthorized";
        this.sendFrame(peer, { type: "error", code, message: (error as Error).message });
        peer.close(CLOSE.unauthorized, "unauthorized");
      },
    );
  }

  /**
   * Checks both caps and takes the slots in one synchronous step, so
   * verifications that finish in the same tick cannot all pass a check made
   * before they count.
   */
  private establish(peer: Peer, principal: Principal): void {
    const state = peer.state;
    const tenantOpen = this.tenantConnections.get(principal.tenant) ?? 0;
    if (tenantOpen >= this.options.maxConnectionsPerTenant) {
      this.refuse(
        peer,
        new GatewayError("rate_limited", "too many connections for this tenant", { "retry-after": "5" }),
      );
      return;
    }
    if (this.authenticated >= this.options.maxConnections) {
      this.refuse(peer, new GatewayError("unavailable", "this instance has no room for more connections"));
      return;
    }
    state.principal = principal;
    this.authenticated++;
    this.tenantConnections.set(principal.tenant, tenantOpen + 1);
    if (state.authTimer) clearTimeout(state.authTimer);
    state.authTimer = undefined;
    peer.subscribe(broadcastTopic(principal.tenant));
    this.countTopic(broadcastTopic(principal.tenant), 1);
    this.sendFrame(peer, { type: "connected", connection: state.id });
    const waiting = state.framesDuringAuth ?? [];
    state.framesDuringAuth = undefined;
    for (const text of waiting) this.message(peer, text);
  }

  private subscribe(peer: Peer, principal: Principal, channel: string, since: string | undefined): void {
    if (!CHANNEL_PATTERN.test(channel)) {
      this.sendFrame(peer, { type: "error", code: "bad_channel", channel, message: "invalid channel name" });
      return;
    }
    if (!channelAllowed(principal, channel)) {
      this.sendFrame(peer, {
        type: "error",
        code: "forbidden",
        channel,
        message: "channel not allowed for this token",
      });
      return;
    }
    const state = peer.state;
    if (!state.channels.has(channel) && state.channels.size >= this.options.maxSubscriptions) {
      this.sendFrame(peer, {
        type: "error",
        code: "too_many_subscriptions",
        channel,
        message: `at most ${this.options.maxSubscriptions}`,
      });
      return;
    }
    const topic = channelTopic(principal.tenant, channel);
    const replay = since === undefined ? undefined : this.deps.history.after(topic, since);
    if (replay && !replay.ok) {
      this.deps.metrics.wsResumes.inc({ result: "history_gone" });
      this.sendFrame(peer, {
        type: "error",
        code: "history_gone",
        channel,
        message: "since is older than the kept history",
      });
    }
    if (!state.channels.has(channel)) {
      state.channels.add(channel);
      peer.subscribe(topic);
      this.countTopic(topic, 1);
      this.deps.metrics.wsSubscriptions.inc();
    }
    this.sendFrame(peer, {
      type: "subscribed",
      channel,
      lastEventId: this.deps.history.lastId(topic) ?? null,
    });
    // Same tick as the engine subscription: no live event can slip between replay and live delivery.
    if (replay?.ok) {
      this.deps.metrics.wsResumes.inc({ result: "served" });
      for (const event of replay.events) this.sendText(peer, event.frame);
    }
  }

  private unsubscribe(peer: Peer, channel: string): void {
    const state = peer.state;
    if (!state.principal || !state.channels.delete(channel)) return;
    const topic = channelTopic(state.principal.tenant, channel);
    peer.unsubscribe(topic);
    this.countTopic(topic, -1);
    this.deps.metrics.wsSubscriptions.dec();
  }

  private countTopic(topic: string, delta: number): void {
    const count = (this.topicSubscribers.get(topic) ?? 0) + delta;
    if (count > 0) this.topicSubscribers.set(topic, count);
    else this.topicSubscribers.delete(topic);
  }

  private withinMessageRate(peer: Peer): boolean {
    const state = peer.state;
    const now = Date.now();
    if (now - state.windowStart >= 1000) {
      state.windowStart = now;
      state.windowMessages = 0;
    }
    state.windowMessages++;
    if (state.windowMessages <= this.options.maxMessagesPerSec) return true;
    this.deps.metrics.rateLimited.inc({ scope: "ws_message" });
    if (state.windowMessages === this.options.maxMessagesPerSec + 1) {
      this.sendFrame(peer, { type: "error", code: "rate_limited", message: "too many messages; slow down" });
    }
    return false;
  }

  /** Closes slow consumers (1013) and connections whose token expired (4001). */
  private sweep(): void {
    const now = Date.now();
    for (const peer of this.peers) {
      if (peer.bufferedAmount() > this.options.backpressureBytes) {
        this.deps.metrics.wsSlowConsumerDisconnects.inc();
        peer.close(CLOSE.tryAgainLater, "slow consumer");
      } else if (peer.state.principal && peer.state.principal.expiresAt <= now) {
        this.sendFrame(peer, { type: "error", code: "unauthorized", message: "token expired" });
        peer.close(CLOSE.unauthorized, "token expired");
      }
    }
  }

  private ping(): void {
    for (const peer of this.peers) {
      const principal = peer.state.principal;
      if (!principal) continue;
      const lastEventIds: Record<string, string | null> = {};
      for (const channel of peer.state.channels) {
        lastEventIds[channel] = this.deps.history.lastId(channelTopic(principal.tenant, channel)) ?? null;
      }
      this.sendFrame(peer, { type: "ping", lastEventIds });
    }
  }

  private sendFrame(peer: Peer, frame: Record<string, unknown>): void {
    this.sendText(peer, JSON.stringify(frame));
  }

  private sendText(peer: Peer, text: string): void {
    if (peer.send(text) === "dropped") this.deps.metrics.wsMessagesDropped.inc();
    else {
      this.deps.metrics.wsMessagesSent.inc();
      this.deps.metrics.wsBytesSent.inc(text.length);
    }
  }
}
