import type { Logger } from "../../log/logger.ts";
import { OccasionalLine } from "../../log/occasional-line.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import { CLOSE, type Connection } from "./connection.ts";
import { overBudget, type QueuedBytes } from "./queued-budget.ts";

export interface SweepOptions {
  pingIntervalMs: number;
  /** Queued bytes past which a connection is a slow consumer. */
  backpressureBytes: number;
  /**
   * Bytes queued towards every connection together: past this, or past half
   * of it for one tenant, the connections holding the most are closed as slow
   * consumers (the tenant holding the most pays first), so no tenant's
   * clients that read nothing can fill the instance's memory, one socket
   * below `backpressureBytes` at a time.
   */
  queuedMaxBytes: number;
}

/**
 * How often connections are checked for backpressure while frames are being
 * sent. The engines drop every frame, the close frame too, once a socket
 * holds more than their limit (twice `backpressureBytes`): the 1013 must be
 * queued before a stalled socket gets there, so the check runs often while
 * there is traffic (growing by `backpressureBytes` in this long takes
 * 10 MiB/s for one socket at the default 1 MiB) and not at all without.
 */
const BACKPRESSURE_CHECK_MS = 100;

/**
 * The app-level pings of one interval go out in slices this far apart, over
 * its first half: one pass over every socket (each ping lists the socket's
 * channels) held the event loop 1.2-1.7 s at 10,000 sockets of 100 channels.
 */
const PING_SLICE_MS = 100;

/** One interval's pings: the sockets not pinged yet, how many go per slice, and the slices' timer. */
interface PingRound {
  readonly connections: Iterator<Connection>;
  readonly perSlice: number;
  timer: ReturnType<typeof setInterval> | undefined;
}

/** A slow-consumer close is logged at most this often, with the count of closes it stands for. */
const SLOW_CONSUMER_LOG_INTERVAL_MS = 10_000;
/** A slow consumer's line names at most this many of its channels. */
const LOGGED_CHANNELS = 5;

/**
 * The periodic work over every connection of the hub: while frames are sent,
 * every BACKPRESSURE_CHECK_MS, closes slow consumers (1013), and the largest
 * queues of a tenant past its share of `queuedMaxBytes`; each second,
 * warns connections whose token expires soon (`token_expiring`) and closes
 * those whose token expired (4001); every `pingIntervalMs`, sends the
 * app-level ping, in slices over the first half of the interval. Owns its timers: no connection has a timer of its own for
 * its token.
 */
export class Sweeps {
  private readonly timers: Array<ReturnType<typeof setInterval>> = [];
  /** Set when frames were handed to the engine since the last backpressure check. */
  private sending = false;
  private readonly slowConsumerLine = new OccasionalLine(SLOW_CONSUMER_LOG_INTERVAL_MS);
  private pingRound: PingRound | undefined;

  constructor(
    private readonly options: SweepOptions,
    private readonly connections: ReadonlySet<Connection>,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timers.push(
      setInterval(() => this.sweep(Date.now()), 1000),
      setInterval(() => this.checkBackpressure(), BACKPRESSURE_CHECK_MS),
      setInterval(() => this.startPingRound(), this.options.pingIntervalMs),
    );
    for (const timer of this.timers) timer.unref?.();
  }

  stop(): void {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    this.endPingRound();
  }

  /** Frames were handed to the engine: the next backpressure check looks. */
  noteSending(): void {
    this.sending = true;
  }

  private checkBackpressure(): void {
    if (!this.sending) return;
    this.sending = false;
    const queues: Array<QueuedBytes<Connection>> = [];
    for (const connection of this.connections) {
      const bytes = connection.bufferedAmount();
      if (bytes === 0 || this.closeIfSlow(connection, bytes) || connection.isClosing) continue;
      queues.push({ client: connection, bytes, tenant: connection.principal?.tenant ?? "" });
    }
    for (const { client, bytes } of overBudget(queues, this.options.queuedMaxBytes))
      this.closeSlow(client, bytes, "its tenant's clients hold more queued bytes than their share");
  }

  private sweep(now: number): void {
    for (const connection of this.connections) {
      if (!connection.isClosing && !this.closeIfSlow(connection, connection.bufferedAmount()))
        connection.checkExpiry(now);
    }
  }

  private closeIfSlow(connection: Connection, queuedBytes: number): boolean {
    if (connection.isClosing || queuedBytes <= this.options.backpressureBytes) return false;
    this.closeSlow(connection, queuedBytes, "it reads slower than its channels deliver");
    return true;
  }

  private closeSlow(connection: Connection, queuedBytes: number, why: string): void {
    this.metrics.wsSlowConsumerDisconnects.inc();
    // Which tenant and channels: the operator's first question (is it one client, one channel?).
    const closed = this.slowConsumerLine.due();
    if (closed !== undefined)
      this.log.warn(
        {
          tenant: connection.principal?.tenant,
          channels: [...connection.channels].slice(0, LOGGED_CHANNELS),
          subscriptions: connection.channels.size,
          queuedBytes,
          closed,
        },
        `slow WebSocket consumer closed (1013): ${why}`,
      );
    connection.close(CLOSE.tryAgainLater, "slow consumer");
  }

  /** Pings every socket over the first half of the interval, a slice each PING_SLICE_MS, the first at once. */
  private startPingRound(): void {
    this.endPingRound();
    const slices = Math.max(1, Math.floor(this.options.pingIntervalMs / 2 / PING_SLICE_MS));
    const round: PingRound = {
      connections: this.connections[Symbol.iterator](),
      perSlice: Math.max(1, Math.ceil(this.connections.size / slices)),
      timer: undefined,
    };
    if (this.pingSlice(round)) return;
    this.pingRound = round;
    round.timer = setInterval(() => {
      if (this.pingSlice(round)) this.endPingRound();
    }, PING_SLICE_MS);
    round.timer.unref?.();
  }

  /** Pings the round's next sockets; true once none is left (one closed meanwhile is skipped, one opened is pinged). */
  private pingSlice(round: PingRound): boolean {
    for (let n = 0; n < round.perSlice; n++) {
      const next = round.connections.next();
      if (next.done) return true;
      next.value.ping();
    }
    return false;
  }

  private endPingRound(): void {
    clearInterval(this.pingRound?.timer);
    this.pingRound = undefined;
  }
}
