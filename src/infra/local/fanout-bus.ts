import type { EventRecord } from "../../domain/record.ts";
import {
  type FanoutBus,
  type FanoutListener,
  type FanoutMessage,
  type FanoutRelay,
  type FanoutTrace,
  fanoutMessagesOf,
  type LivePosition,
} from "../../ports/fanout-bus.ts";

/**
 * The embedded default: delivers in process, on the next tick, with one
 * partition and offsets counted from 0. The epoch is this process's start,
 * so ids from before a restart are recognised as another history.
 *
 * A worker (WORKERS > 1) publishes through the supervisor's relay instead,
 * which hands every message to every worker in one order, its own included:
 * a subscriber gets what was published on any worker. Each worker numbers
 * what it receives in its own epoch, as each keeps its own history.
 */
export class LocalFanoutBus implements FanoutBus {
  private listener: FanoutListener | undefined;
  private nextOffset = 0n;
  /** Offset of the next message handed to the listener. */
  private nextDelivered = 0n;
  private readonly epoch = `l${Date.now().toString(36)}`;

  constructor(private readonly relay?: FanoutRelay) {
    relay?.onMessages((messages) => this.deliver(messages));
  }

  async start(listener: FanoutListener): Promise<void> {
    this.listener = listener;
    listener.origin(this.epoch, 0, 0n);
  }

  async publish(messages: FanoutMessage[]): Promise<void> {
    const relayed = this.relay?.send(messages);
    if (relayed) return relayed;
    // Without the supervisor (it died; this worker drains) the subscribers here still get it.
    queueMicrotask(() => this.deliver(messages));
  }

  private deliver(messages: FanoutMessage[]): void {
    for (const message of messages) {
      const position = { epoch: this.epoch, partition: 0, offset: this.nextOffset++ };
      this.nextDelivered = position.offset + 1n;
      this.listener?.deliver({ ...message, position });
    }
  }

  publishRecords(records: readonly EventRecord[], ts: number, trace: FanoutTrace | undefined): Promise<void> {
    return this.publish(fanoutMessagesOf(records, ts, trace));
  }

  head(_key: string): LivePosition | undefined {
    return this.listener ? { epoch: this.epoch, partition: 0, next: this.nextDelivered } : undefined;
  }

  async close(): Promise<void> {
    this.listener = undefined;
  }
}
