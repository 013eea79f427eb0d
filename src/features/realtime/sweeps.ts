import type { Metrics } from "../../metrics/metrics.ts";
import { CLOSE, type Connection } from "./connection.ts";

export interface SweepOptions {
  pingIntervalMs: number;
  /** Queued bytes past which a connection is a slow consumer. */
  backpressureBytes: number;
}

/**
 * The periodic work over every connection of the hub: each second, closes
 * slow consumers (1013), warns connections whose token expires soon
 * (`token_expiring`) and closes those whose token expired (4001); every
 * `pingIntervalMs`, sends the app-level ping. Owns its two timers: no
 * connection has a timer of its own for its token.
 */
export class Sweeps {
  private readonly timers: Array<ReturnType<typeof setInterval>> = [];

  constructor(
    private readonly options: SweepOptions,
    private readonly connections: Iterable<Connection>,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    this.timers.push(
      setInterval(() => this.sweep(Date.now()), 1000),
      setInterval(() => this.ping(), this.options.pingIntervalMs),
    );
    for (const timer of this.timers) timer.unref?.();
  }

  stop(): void {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
  }

  private sweep(now: number): void {
    for (const connection of this.connections) {
      if (connection.bufferedAmount() > this.options.backpressureBytes) {
        this.metrics.wsSlowConsumerDisconnects.inc();
        connection.close(CLOSE.tryAgainLater, "slow consumer");
      } else connection.checkExpiry(now);
    }
  }

  private ping(): void {
    for (const connection of this.connections) connection.ping();
  }
}
