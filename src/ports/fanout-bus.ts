import type { EventPosition } from "../domain/event-id.ts";

/** A message for the subscribers of one tenant: one channel, or every connection (`broadcast`). */
export interface FanoutMessage {
  tenant: string;
  channel?: string;
  broadcast?: boolean;
  /** The payload as JSON text, exactly as the publisher sent it. */
  dataJson: string;
  /** For ingested events: the record's type and id, so subscribers can tell events apart. */
  record?: { type: string; id: string };
  /** Epoch ms when the gateway accepted it; used for the fan-out latency metric. */
  ts: number;
}

export interface DeliveredMessage extends FanoutMessage {
  position: EventPosition;
}

export interface FanoutListener {
  deliver(message: DeliveredMessage): void;
  /** Where this instance starts reading a partition; nothing older can be replayed here. */
  origin(epoch: string, partition: number, offset: bigint): void;
}

/**
 * Carries fan-out messages to every gateway instance. Over Kafka every
 * instance reads every partition of the fan-out topic (no shared group);
 * without Kafka an in-process bus stands in.
 */
export interface FanoutBus {
  start(listener: FanoutListener): Promise<void>;
  /** Resolves once the messages are durably accepted for delivery. */
  publish(messages: FanoutMessage[]): Promise<void>;
  close(): Promise<void>;
}

/** Messages of one tenant's channel share a key, hence a partition, hence ordered offsets. */
export function fanoutKey(message: FanoutMessage): string {
  return message.broadcast ? `${message.tenant}/$broadcast` : `${message.tenant}/${message.channel}`;
}
