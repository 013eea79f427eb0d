import { broadcastTopic, channelTopic } from "../../domain/channel.ts";
import { formatEventId } from "../../domain/event-id.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { DeliveredMessage, FanoutListener } from "../../ports/fanout-bus.ts";
import type { ChannelHistory, HistoryEvent } from "./history.ts";
import type { Interest } from "./interest.ts";

/** Every `event` frame starts so; the delta route drops the `type` member by cutting it off. */
export const EVENT_FRAME_PREFIX = '{"type":"event",';

/**
 * The `event` frame, its `data` spliced in as sent (a parse and re-serialisation
 * would alter numbers), with the publisher's trace context when it sent one.
 */
function eventFrame(channel: string, id: string, message: DeliveredMessage): string {
  let frame = `${EVENT_FRAME_PREFIX}"channel":${JSON.stringify(channel)},"id":"${id}","data":${message.dataJson}`;
  if (message.broadcast) frame += ',"broadcast":true';
  if (message.record) {
    frame += `,"recordType":${JSON.stringify(message.record.type)},"recordId":${JSON.stringify(message.record.id)}`;
  }
  if (message.traceparent !== undefined) {
    frame += `,"traceparent":${JSON.stringify(message.traceparent)}`;
    if (message.tracestate !== undefined) frame += `,"tracestate":${JSON.stringify(message.tracestate)}`;
  }
  return `${frame}}`;
}

/** A channel message as kept in history and replayed: its id, position and `event` frame. */
export function historyEvent(message: DeliveredMessage): HistoryEvent {
  const id = formatEventId(message.position);
  return { id, position: message.position, frame: eventFrame(message.channel as string, id, message) };
}

export interface FanoutTarget {
  /** Publishes one event frame (`offset` in its partition) to every local subscriber of `topic` and counts it; returns how many got it. */
  publish(topic: string, frame: string, id: string, offset: bigint): number;
}

/**
 * Turns each message from the bus into one `event` frame, serialised once,
 * keeps it in the channel's history for resume, and hands it to the engine's
 * native pub/sub for every local subscriber.
 */
export class Fanout implements FanoutListener {
  private readonly targets: FanoutTarget[] = [];

  constructor(
    readonly history: ChannelHistory,
    private readonly metrics: Metrics,
    /** Which channels are wanted here; unset: every channel (the in-process bus, whose history is memory only). */
    private readonly interest?: Interest,
  ) {}

  /** Broadcasts always; a channel's message only when a local connection wants it (or kept every channel). */
  wants(tenant: string, channel: string | undefined): boolean {
    return channel === undefined || !this.interest || this.interest.wants(channelTopic(tenant, channel));
  }

  /** False when no wanted channel's topic has this hash (`Interest.mayWant`). */
  mayWant(hash: number): boolean {
    return !this.interest || this.interest.mayWant(hash);
  }

  /** Added once the server listens (WebSockets, event streams); messages before that only go to history. */
  attach(target: FanoutTarget): void {
    this.targets.push(target);
  }

  origin(epoch: string, partition: number, offset: bigint): void {
    this.history.setOrigin(epoch, partition, offset);
  }

  deliver(message: DeliveredMessage): void {
    if (!message.broadcast && !this.wants(message.tenant, message.channel)) return;
    const id = formatEventId(message.position);
    const channel = message.broadcast ? (message.channel ?? "$broadcast") : (message.channel as string);
    const frame = eventFrame(channel, id, message);
    let topic: string;
    if (message.broadcast) topic = broadcastTopic(message.tenant);
    else {
      topic = channelTopic(message.tenant, channel);
      this.history.append(topic, { id, position: message.position, frame });
    }
    let receivers = 0;
    for (const target of this.targets) receivers += target.publish(topic, frame, id, message.position.offset);
    if (receivers > 0) this.metrics.fanoutLatency.observe(Math.max(0, Date.now() - message.ts) / 1000);
  }
}
