import { broadcastTopic, tenantOfTopic } from "../../domain/channel.ts";
import { GatewayError } from "../../domain/errors.ts";
import { requireScope, requireUnexpired } from "../../domain/principal.ts";
import { bearerToken } from "../../http/bearer.ts";
import { clientIp } from "../../http/client-ip.ts";
import { connectionCapFields } from "../../http/rate-limit-fields.ts";
import { errorReply } from "../../http/reply.ts";
import { sleep } from "../../lib/time.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { Authenticator } from "../../ports/auth.ts";
import type { Publish } from "../../ports/publish.ts";
import type { HttpRequest, UpgradeDecision, WsHandlers } from "../../ports/transport.ts";
import { CLOSE, Connection, type ConnectionHost, type LiveTap, type Peer } from "./connection.ts";
import type { FanoutTarget } from "./fanout.ts";
import type { ChannelHistory } from "./history.ts";
import type { Interest } from "./interest.ts";
import { type Presence, type PresenceListener, presenceTopic } from "./presence.ts";
import type { Resume } from "./resume.ts";
import { Sweeps } from "./sweeps.ts";

/** What the transport carries for each socket: its connection. */
export type ConnectionState = Connection;

export interface WsHubOptions {
  runtime: string;
  pingIntervalMs: number;
  authTimeoutMs: number;
  backpressureBytes: number;
  /** Bytes queued towards all its sockets together (see `SweepOptions`). */
  queuedMaxBytes: number;
  /** Authenticated sockets per instance. */
  maxConnections: number;
  /** Sockets still authenticating (open, no principal yet), counted apart from `maxConnections`. */
  maxUnauthenticated: number;
  maxConnectionsPerTenant: number;
  maxSubscriptions: number;
  /** Distinct channels this instance's sockets subscribe to, in all (WS_MAX_CHANNELS). */
  maxChannels: number;
  /** Distinct channels one tenant's sockets subscribe to on this instance (WS_MAX_TENANT_CHANNELS). */
  maxTenantChannels: number;
  maxMessagesPerSec: number;
  /** X-Forwarded-For hops to trust for the client IP the connect rate limit counts (`TRUST_PROXY`). */
  trustProxyHops: number;
  tokenExpiryWarningMs: number;
}

export interface WsHubDependencies {
  authenticator: Authenticator;
  history: ChannelHistory;
  resume: Resume;
  metrics: Metrics;
  log: Logger;
  /** Who watches each channel; unset in tests that do not look. */
  presence?: Presence;
  /** The channels this instance reads messages for; unset: every channel. */
  interest?: Interest;
  /** Per-IP connect rate limit; throws a 429 GatewayError when exceeded. */
  admitConnection(ip: string): Promise<void>;
  /** `publish` frames go through it. */
  publish: Publish;
}

/**
 * The registry of every WebSocket of this instance: which connections are
 * open, how many are authenticated (per instance and per tenant), and how many
 * local subscribers each engine topic has. Each connection runs its own state
 * machine (`Connection`); the periodic sweeps live in `Sweeps`. Every count
 * here is freed by the close event of the connection that took it.
 */
export class WsHub implements WsHandlers<Connection>, FanoutTarget, PresenceListener {
  private readonly connections = new Set<Connection>();
  /** Connections with a principal; the others (`connections.size - authenticated`) are still authenticating. */
  private authenticated = 0;
  private readonly tenantConnections = new Map<string, number>();
  private readonly topicSubscribers = new Map<string, number>();
  /**
   * Distinct channel topics with a subscriber here, per tenant and in all: each holds its own state
   * (the engine's topic, the reader's interest, history, presence), which per socket caps do not bound.
   */
  private readonly tenantChannels = new Map<string, number>();
  private channelCount = 0;
  /** Per engine topic, the sockets holding live events back while their replay is read from the log. */
  private readonly taps = new Map<string, Set<LiveTap>>();
  private publishToEngine: ((topic: string, frame: string) => void) | undefined;
  private readonly sweeps: Sweeps;
  /** What each connection may ask of the hub. */
  private readonly host: ConnectionHost;

  constructor(
    private readonly options: WsHubOptions,
    private readonly deps: WsHubDependencies,
  ) {
    this.sweeps = new Sweeps(options, this.connections, deps.metrics, deps.log);
    this.host = {
      limits: options,
      history: deps.history,
      resume: deps.resume,
      metrics: deps.metrics,
      admit: (ip) => deps.admitConnection(ip),
      verify: async (token) => {
        const principal = await deps.authenticator.verify(token);
        requireUnexpired(principal, Date.now());
        requireScope(principal, "subscribe");
        return principal;
      },
      claimSlots: (tenant) => this.claimSlots(tenant),
      countTopic: (topic, delta) => this.countTopic(topic, delta),
      channelRoom: (topic) => this.channelRoom(topic),
      presence: (channelKey, subject, delta) => deps.presence?.change(channelKey, subject, delta),
      watchPresence: (channelKey, delta) => deps.presence?.watch(channelKey, delta) ?? true,
      tap: (topic, listener) => this.tap(topic, listener),
      publish: deps.publish,
    };
  }

  /** Starts the sweeps once the server listens. */
  attach(publishToEngine: (topic: string, frame: string) => void): void {
    this.publishToEngine = publishToEngine;
    this.sweeps.start();
  }

  stop(): void {
    this.sweeps.stop();
  }

  publish(topic: string, frame: string, _id: string, offset: bigint): number {
    if (this.taps.size > 0) {
      const taps = this.taps.get(topic);
      if (taps) for (const tap of taps) tap(frame, offset);
    }
    const receivers = this.topicSubscribers.get(topic) ?? 0;
    if (receivers === 0 || !this.publishToEngine) return 0;
    this.publishToEngine(topic, frame);
    this.sweeps.noteSending();
    this.deps.metrics.wsMessagesSent.inc(receivers);
    this.deps.metrics.wsBytesSent.inc(receivers * frame.length);
    return receivers;
  }

  /** A join or leave frame, to the sockets that asked for the channel's (subscribed to its presence topic). */
  presenceEvent(channelKey: string, _kind: "join" | "leave", frame: string): void {
    this.publishToEngine?.(presenceTopic(channelKey), frame);
  }

  /**
   * Decides at once, without I/O: uWebSockets.js (Node) lost sockets whose
   * upgrade completed after real asynchronous work, so token checks and the
   * connect rate limit run right after `open` instead. Both caps are checked
   * again where they are counted (`open`, `claimSlots`): upgrades accepted
   * together may overshoot here.
   */
  async upgrade(request: HttpRequest): Promise<UpgradeDecision<Connection>> {
    try {
      const full = this.fullness();
      if (full) throw full;
      const token = request.header("authorization")
        ? bearerToken(request.header("authorization"))
        : (request.query.get("token") ?? undefined);
      const ip = clientIp(request, this.options.trustProxyHops);
      return { accept: true, state: new Connection(ip, token, this.host) };
    } catch (error) {
      return { accept: false, reply: errorReply(error) };
    }
  }

  open(peer: Peer): void {
    const connection = peer.state;
    connection.attach(peer);
    const full = this.fullness();
    if (full) {
      // Not registered: its close event finds nothing to free.
      connection.refuse(full);
      return;
    }
    this.connections.add(connection);
    this.deps.metrics.wsConnections.inc({ runtime: this.options.runtime });
    connection.start();
  }

  message(peer: Peer, text: string | undefined): void {
    peer.state.receive(text);
  }

  drain(_peer: Peer): void {}

  close(peer: Peer, _code: number): void {
    const connection = peer.state;
    if (!this.connections.delete(connection)) return;
    connection.closed();
    const tenant = connection.principal?.tenant;
    if (tenant !== undefined) {
      this.releaseSlot(tenant);
      this.countTopic(broadcastTopic(tenant), -1);
    }
    this.deps.metrics.wsConnections.dec({ runtime: this.options.runtime });
  }

  /**
   * Tells every client to reconnect and closes it with 1001, in batches spread
   * over `withinMs` with a jittered `afterMs`, so clients do not all return at once.
   */
  async disconnectAll(withinMs: number): Promise<void> {
    const connections = [...this.connections];
    const batches = Math.max(1, Math.min(20, Math.ceil(connections.length / 50)));
    const batchSize = Math.ceil(connections.length / batches);
    const pause = batches > 1 ? Math.floor(withinMs / batches) : 0;
    for (let start = 0; start < connections.length; start += batchSize) {
      for (const connection of connections.slice(start, start + batchSize)) {
        connection.send({ type: "reconnect", afterMs: 250 + Math.floor(Math.random() * 4750) });
        connection.close(CLOSE.goingAway, "server draining");
      }
      if (pause > 0 && start + batchSize < connections.length) await sleep(pause);
    }
  }

  /**
   * Takes an authenticated slot of the instance and of `tenant` in one
   * synchronous step, or says which cap is full. Event streams (SSE) take
   * theirs here too: the caps count both kinds of connection.
   */
  claimSlots(tenant: string): GatewayError | undefined {
    const tenantOpen = this.tenantConnections.get(tenant) ?? 0;
    if (tenantOpen >= this.options.maxConnectionsPerTenant) {
      // Counted beside the other limits: the operator sees a tenant at its cap without reading logs.
      this.deps.metrics.rateLimited.inc({ scope: "tenant_connections" });
      // An event stream's 429 carries the RateLimit fields as every 429 of a limited route does.
      return new GatewayError(
        "rate_limited",
        "too many connections for this tenant",
        connectionCapFields(this.options.maxConnectionsPerTenant, CAP_RETRY_AFTER_SEC),
      );
    }
    if (this.authenticated >= this.options.maxConnections) return instanceFull();
    this.authenticated++;
    this.tenantConnections.set(tenant, tenantOpen + 1);
    return undefined;
  }

  /** Gives back a slot `claimSlots` took. */
  releaseSlot(tenant: string): void {
    this.authenticated--;
    const left = (this.tenantConnections.get(tenant) ?? 1) - 1;
    if (left > 0) this.tenantConnections.set(tenant, left);
    else this.tenantConnections.delete(tenant);
  }

  /** Hands `listener` every frame published to `topic` until the returned function is called. */
  private tap(topic: string, listener: LiveTap): () => void {
    let taps = this.taps.get(topic);
    if (!taps) {
      taps = new Set();
      this.taps.set(topic, taps);
    }
    taps.add(listener);
    // A socket holding live events back during a replay wants them read.
    this.deps.interest?.change(topic, 1);
    return () => {
      const current = this.taps.get(topic);
      if (!current?.delete(listener)) return;
      if (current.size === 0) this.taps.delete(topic);
      this.deps.interest?.change(topic, -1);
    };
  }

  private countTopic(topic: string, delta: number): void {
    // Broadcast topics (`b/…`) are always read, and are no channel.
    const channel = topic.startsWith("t/");
    if (channel) this.deps.interest?.change(topic, delta > 0 ? 1 : -1);
    const before = this.topicSubscribers.get(topic) ?? 0;
    const count = before + delta;
    if (count > 0) this.topicSubscribers.set(topic, count);
    else this.topicSubscribers.delete(topic);
    if (!channel) return;
    if (before === 0 && count > 0) this.countChannel(tenantOfTopic(topic), 1);
    else if (before > 0 && count <= 0) this.countChannel(tenantOfTopic(topic), -1);
  }

  private countChannel(tenant: string, delta: 1 | -1): void {
    this.channelCount += delta;
    const count = (this.tenantChannels.get(tenant) ?? 0) + delta;
    if (count > 0) this.tenantChannels.set(tenant, count);
    else this.tenantChannels.delete(tenant);
  }

  /** Why a channel no socket here subscribes to yet cannot be one more, if it cannot. */
  private channelRoom(topic: string): string | undefined {
    if (this.topicSubscribers.has(topic)) return undefined;
    if (this.channelCount >= this.options.maxChannels)
      return `this instance's sockets subscribe to as many channels as it holds (${this.options.maxChannels})`;
    if ((this.tenantChannels.get(tenantOfTopic(topic)) ?? 0) >= this.options.maxTenantChannels)
      return `this tenant's sockets subscribe to as many channels as an instance holds for one tenant (${this.options.maxTenantChannels})`;
    return undefined;
  }

  /** Why no new socket fits right now, if none does: the authenticated slots or the pending ones are full. */
  private fullness(): GatewayError | undefined {
    if (this.authenticated >= this.options.maxConnections) return instanceFull();
    if (this.connections.size - this.authenticated >= this.options.maxUnauthenticated) {
      return new GatewayError("unavailable", "too many connections are authenticating; retry shortly", {
        "retry-after": String(Math.ceil(this.options.authTimeoutMs / 1000)),
      });
    }
    return undefined;
  }
}

/** Retry-After of a refusal by a connection cap (instance or tenant): a slot comes back when a connection closes. */
const CAP_RETRY_AFTER_SEC = 5;

/**
 * No authenticated slot left: the same answer (with `Retry-After`) for an
 * upgrade refused at once, a socket refused when it authenticates and an event
 * stream refused when it opens.
 */
function instanceFull(): GatewayError {
  return new GatewayError("unavailable", "this instance has no room for more connections", {
    "retry-after": String(CAP_RETRY_AFTER_SEC),
  });
}
