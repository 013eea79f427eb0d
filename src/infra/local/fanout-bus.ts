import type { EventRecord } from "../../domain/record.ts";
import {
  type DeliveredMessage,
  type FanoutBus,
  type FanoutListener,
  type FanoutMessage,
  type FanoutTrace,
  fanoutMessagesOf,
  type LivePosition,
} from "../../ports/fanout-bus.ts";

/**
 * The embedded default: delivers in process, on the next tick, with one
 * partition and offsets counted from 0. The epoch is this process's start,
 * so ids from before a restart are recognised as another history.
 */
export class LocalFanoutBus implements FanoutBus {
  private listener: FanoutListener | undefined;
  private nextOffset = 0n;
  /** Offset of the next message handed to the listener. */
  private nextDelivered = 0n;
  private readonly epoch = `l${Date.now().toString(36)}`;

  async start(listener: FanoutListener): Promise<void> {
    this.listener = listener;
    listener.origin(this.epoch, 0, 0n);
  }

  async publish(messages: FanoutMessage[]): Promise<void> {
    const delivered: DeliveredMessage[] = messages.map((message) => ({
      ...message,
      position: { epoch: this.epoch, partition: 0, offset: this.nextOffset++ },
    }));
    queueMicrotask(() => {
      for (const message of delivered) {
        this.nextDelivered = message.position.offset + 1n;
        this.listener?.deliver(message);
      }
    });
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
