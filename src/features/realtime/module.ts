import { channelTopic } from "../../domain/channel.ts";
import type { Principal } from "../../domain/principal.ts";
import type { ReaderChecks } from "../../http/caller.ts";
import { startWithRetry } from "../../lib/retry.ts";
import { msUntil, sleep } from "../../lib/time.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { AdmittedHeaders } from "../../ports/admission.ts";
import type { Authenticator } from "../../ports/auth.ts";
import type { FanoutBus } from "../../ports/fanout-bus.ts";
import type { HealthReasons } from "../../ports/health.ts";
import type { Module } from "../../ports/module.ts";
import type { PresenceStore } from "../../ports/presence.ts";
import type { Publish } from "../../ports/publish.ts";
import type { HttpRequest, WsHandlers } from "../../ports/transport.ts";
import type { Connection } from "./connection.ts";
import { deltaRoute } from "./delta-route.ts";
import { Fanout } from "./fanout.ts";
import { ChannelHistory, type HistoryLimits } from "./history.ts";
import { WsHub, type WsHubOptions } from "./hub.ts";
import { Interest } from "./interest.ts";
import { Presence } from "./presence.ts";
import { type ReplayLimits, Resume } from "./resume.ts";
import { SseStreams } from "./sse.ts";

/**
 * The instance is not ready until the fan-out bus's first start has settled:
 * over Kafka a socket subscribed before the reader has its offsets gets no
 * position, and an event published meanwhile is never delivered to it.
 */
export const FANOUT_STARTING_REASON = "fanout_starting";

/** How often watched channels' members are compared for join and leave events (as often as the store writes). */
const PRESENCE_CHECK_MS = 1000;
/** How often channels idle past `HISTORY_KEEP_IDLE_MS` are freed. */
const INTEREST_SWEEP_MS = 10_000;

export interface RealtimeOptions {
  ws: WsHubOptions;
  sse: { heartbeatMs: number };
  /** `keepIdleMs`: how long a channel's history is kept after its last local watcher left (Kafka bus). */
  history: HistoryLimits & { keepIdleMs: number };
  replay: ReplayLimits;
}

export interface RealtimeDependencies {
  authenticator: Authenticator;
  authenticate(request: HttpRequest): Principal | Promise<Principal>;
  bus: FanoutBus;
  metrics: Metrics;
  log: Logger;
  /** Per-IP connect rate limit; rejects with a 429 GatewayError when exceeded. */
  admitConnection(ip: string): Promise<void>;
  /** Per-IP request budget (event streams are requests), with its RateLimit fields; rejects with a 429 GatewayError. */
  admitRead(request: HttpRequest): AdmittedHeaders | Promise<AdmittedHeaders>;
  /** Shares presence across instances (Redis); unset: presence is this instance's. */
  presenceStore: PresenceStore | undefined;
  /** WebSocket `publish` frames go through it (as `POST /v1/publish`). */
  publish: Publish;
  health: HealthReasons;
}

export interface RealtimeModule extends Module {
  readonly ws: WsHandlers<Connection>;
  /** Resolves when the fan-out bus's first start has settled, either way (never rejects). */
  readonly fanoutStartSettled: Promise<void>;
}

/**
 * WebSocket fan-out: reads every message from the bus into the channels'
 * history, the engine's pub/sub and the event streams, serves the sockets
 * (`/v1/ws`), the event streams (`/v1/sse`) and the delta route, and on drain
 * sends every client `reconnect` before closing it.
 */
export function createRealtimeModule(options: RealtimeOptions, deps: RealtimeDependencies): RealtimeModule {
  const evictions = {
    channel: deps.metrics.historyEvictions.child({ cause: "channel" }),
    channels: deps.metrics.historyEvictions.child({ cause: "channels" }),
    tenant_budget: deps.metrics.historyEvictions.child({ cause: "tenant_budget" }),
    instance_budget: deps.metrics.historyEvictions.child({ cause: "instance_budget" }),
  };
  // Over Kafka the log holds every channel: memory keeps only the channels wanted here.
  const selective = deps.bus.readLog !== undefined;
  const history = new ChannelHistory(
    options.history,
    (cause, events) => {
      evictions[cause].inc(events);
    },
    selective ? "watched" : "every",
  );
  const interest = selective
    ? new Interest(
        { keepIdleMs: options.history.keepIdleMs, maxRecent: options.history.channels },
        (topic) => {
          const head = deps.bus.head(topic.slice(2));
          if (head) history.watch(topic, head.partition, head.next);
        },
        (topic) => history.forget(topic),
      )
    : undefined;
  const interestSweep = setInterval(() => interest?.sweep(), INTEREST_SWEEP_MS);
  interestSweep.unref?.();

  const resume = new Resume(history, deps.bus, options.replay, (read, offsets) =>
    deps.metrics.replayOffsetsRead.inc({ read }, offsets),
  );
  const fanout = new Fanout(history, deps.metrics, interest);
  const presence = new Presence(deps.presenceStore, deps.log, (kind, count) =>
    deps.metrics.presenceEvents.inc({ kind }, count),
  );
  const presenceCheck = setInterval(() => void presence.check(), PRESENCE_CHECK_MS);
  presenceCheck.unref?.();
  // Sampled, not set per event: the gauges stay off the fan-out path.
  const historyGauge = setInterval(() => {
    deps.metrics.historyBytes.set(history.bytes);
    deps.metrics.historyChannels.set(history.channelCount);
    deps.metrics.fanoutWantedChannels.set(interest ? interest.size : history.channelCount);
    deps.metrics.replaysInProgress.set(resume.inProgress);
    deps.metrics.presenceChannels.set(presence.channelCount);
    deps.metrics.presenceWatchedChannels.set(presence.watchedCount);
  }, 1000);
  historyGauge.unref?.();
  const hub = new WsHub(options.ws, {
    authenticator: deps.authenticator,
    history,
    resume,
    metrics: deps.metrics,
    log: deps.log,
    admitConnection: deps.admitConnection,
    publish: deps.publish,
    presence,
    interest,
  });
  const streams = new SseStreams(
    {
      heartbeatMs: options.sse.heartbeatMs,
      backpressureBytes: options.ws.backpressureBytes,
      maxChannels: options.ws.maxSubscriptions,
      queuedMaxBytes: options.ws.queuedMaxBytes,
    },
    {
      resume,
      metrics: deps.metrics,
      admitRead: deps.admitRead,
      verify: (token) => deps.authenticator.verify(token),
      claimSlot: (tenant) => hub.claimSlots(tenant),
      releaseSlot: (tenant) => hub.releaseSlot(tenant),
      presence: (channelKey, subject, delta) => {
        interest?.change(channelKey, delta);
        presence.change(channelKey, subject, delta);
      },
      watchPresence: (channelKey, delta) => presence.watch(channelKey, delta),
    },
  );
  // The read routes check what the write routes do: the client IP's request budget, then the token.
  const callers: ReaderChecks = {
    admission: { read: deps.admitRead },
    authenticate: deps.authenticate,
  };
  // The bus may be down at start (Kafka unreachable): keep trying in the background. Ready once the
  // first attempt settles either way: a reader that cannot start must not keep ingest out of service too.
  deps.health.set(FANOUT_STARTING_REASON, true);
  let settled: () => void = () => {};
  const fanoutStartSettled = new Promise<void>((resolve) => {
    settled = resolve;
  });
  const subscription = startWithRetry(
    "fan-out bus",
    () =>
      deps.bus.start(fanout).finally(() => {
        deps.health.set(FANOUT_STARTING_REASON, false);
        settled();
      }),
    deps.log,
  );
  return {
    name: "realtime",
    fanoutStartSettled,
    routes: [
      deltaRoute({
        ...callers,
        resume,
        interested: (tenant, channel) => interest?.touch(channelTopic(tenant, channel)),
      }),
      streams.route(),
      presence.route(callers),
    ],
    ws: hub,
    attach: (server) => {
      hub.attach((topic, frame) => server.publish(topic, frame));
      fanout.attach(hub);
      fanout.attach(streams);
      presence.listen(hub);
      presence.listen(streams);
      streams.start();
    },
    drain: {
      disconnect: async (deadline) => {
        streams.disconnectAll();
        await hub.disconnectAll(Math.min(2000, msUntil(deadline) / 4));
        // Exiting with unread bytes on a socket makes the kernel reset it, and the client then loses the close frame.
        await sleep(Math.min(500, msUntil(deadline) / 8));
      },
    },
    close: () => {
      clearInterval(historyGauge);
      clearInterval(presenceCheck);
      clearInterval(interestSweep);
      hub.stop();
      streams.stop();
      subscription.stop();
      return deps.presenceStore?.close();
    },
  };
}
