import type { EventPosition } from "../domain/event-id.ts";
import type { EventRecord } from "../domain/record.ts";

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
  /** The publisher's W3C trace context, carried in the fan-out record's headers and in subscribers' `event` frames. */
  traceparent?: string;
  tracestate?: string;
}

/** The publisher's W3C trace context, as a fan-out message carries it. */
export interface FanoutTrace {
  traceparent: string;
  tracestate?: string;
}

/**
 * Where a record's `dataJson` already lies as UTF-8 (its Kafka value holds
 * it): `valueBytes` from `dataStart` to `dataEnd`; `dataStart` is -1 when not known.
 */
export interface RecordDataBytes {
  readonly valueBytes: Buffer;
  readonly dataStart: number;
  readonly dataEnd: number;
}

export interface DeliveredMessage extends FanoutMessage {
  position: EventPosition;
}

export interface FanoutListener {
  /**
   * Asked with a message's headers before its value is decoded: false skips
   * it (no connection here wants the channel). `channel` is unset for a broadcast.
   */
  wants?(tenant: string, channel: string | undefined): boolean;
  /**
   * Asked before `wants`, with the record's channel topic hashed from its
   * header bytes (`topicHash`): false when no wanted channel has that hash,
   * so the record is skipped with no string made; true may be a collision.
   */
  mayWant?(topicHash: number): boolean;
  deliver(message: DeliveredMessage): void;
  /** Where this instance starts reading a partition; nothing older can be replayed here. */
  origin(epoch: string, partition: number, offset: bigint): void;
}

/** Where the live reader stands on one partition: the next offset it will deliver. */
export interface LivePosition {
  epoch: string;
  partition: number;
  next: bigint;
  /** The partition's first offset the log held, as the live reader's last fetch saw it (unknown before one). */
  logStart?: bigint;
}

/** A read of one channel's messages from the log, for a resume older than the in-memory history. */
export interface LogRead {
  tenant: string;
  channel: string;
  /** The fan-out topic's epoch the read belongs to: the topic made again since (another epoch) is `gone`. */
  epoch: string;
  partition: number;
  /** First offset to read. */
  from: bigint;
  /** Offset to stop before: where the live reader stood when the read began. */
  until: bigint;
  /** Stop before the message that would exceed this many. */
  maxMessages: number;
  /** Stop before the message whose payload would take the total past this many bytes. */
  maxBytes: number;
  /** Epoch ms at which the read stops and answers with what it read so far. */
  deadline: number;
  /** A `from` the log no longer holds starts at the partition's first offset instead of answering `gone`. */
  fromEarliest?: boolean;
  /**
   * Read on to `until` keeping the newest `maxMessages` (and the newest that
   * fit in `maxBytes`, the newest one always), letting older ones go
   * (`dropped`), instead of stopping before the first that does not fit: a
   * window of the log scanned for its newest messages in one read.
   */
  keepNewest?: boolean;
}

/**
 * `gone`: the log no longer holds `from`, or is of another epoch than the read's. Otherwise the channel's messages in
 * order, and `next`, the first offset not read: `until` once the read is complete.
 * `from`: where the read started (the partition's first offset when `fromEarliest` moved it there).
 * `dropped`: with `keepNewest`, older messages of the channel were read and let go.
 */
export type LogReadResult =
  | { gone: true }
  | {
      gone: false;
      messages: DeliveredMessage[];
      next: bigint;
      from?: bigint;
      dropped?: boolean;
      /** The partition's first offset the log held when the read began. */
      logStart?: bigint;
    };

/**
 * Carries fan-out messages to every gateway instance. Over Kafka every
 * instance reads every partition of the fan-out topic (no shared group);
 * without Kafka an in-process bus stands in.
 */
export interface FanoutBus {
  start(listener: FanoutListener): Promise<void>;
  /**
   * Resolves once the messages are durably accepted for delivery. Where they
   * wait in the producer queue, each counts in its own tenant's share of it
   * (a publish's are one tenant's; messages of several tenants are charged
   * each to its tenant, never all to the first), so a refusal for a share
   * rejects with the queue's `overloaded`.
   */
  publish(messages: FanoutMessage[]): Promise<void>;
  /**
   * Ingested records: each with a channel is published as `publish` would
   * its message (tenant, channel, `dataJson`, the record's type and id, `ts`,
   * the publisher's trace context), with no message object per record in
   * between; records without a channel are skipped. The records are one
   * request's, hence one tenant's, and their copies count in its share as
   * `publish`'s do (each in its own tenant's, were they several). `dataBytes[i]`, when given, says where record i's
   * `dataJson` lies as bytes, to be copied as they are.
   */
  publishRecords(
    records: readonly EventRecord[],
    ts: number,
    trace: FanoutTrace | undefined,
    dataBytes?: readonly RecordDataBytes[],
  ): Promise<void>;
  close(): Promise<void>;
  /** The live reader's position on the partition of `key`; undefined until it reads. */
  head(key: string): LivePosition | undefined;
  /** Reads one channel's messages back from the log's retention; absent when nothing outlives memory. */
  readLog?(request: LogRead): Promise<LogReadResult>;
  /**
   * The offset after the newest message of `partition` (its high watermark):
   * no event id has an offset at or past it. Absent when nothing outlives memory.
   */
  logEnd?(partition: number): Promise<bigint>;
}

/**
 * With WORKERS > 1 on the embedded default: the supervisor between the
 * workers' in-process buses, so a publish taken by one worker reaches the
 * subscribers of every worker, as Kafka does between instances.
 */
export interface FanoutRelay {
  /**
   * Hands messages to every worker, this one included. Resolves once they came
   * back through the supervisor, so whatever is published after, on any
   * worker, is delivered after them; undefined when the supervisor is gone.
   */
  send(messages: FanoutMessage[]): Promise<void> | undefined;
  /** Messages from any worker, in the order every worker receives them. */
  onMessages(listener: (messages: FanoutMessage[]) => void): void;
}

/** Messages of one tenant's channel share a key, hence a partition, hence ordered offsets. */
export function fanoutKey(message: FanoutMessage): string {
  return message.broadcast ? `${message.tenant}/$broadcast` : `${message.tenant}/${message.channel}`;
}

/** The messages `publishRecords` stands for: one per record with a channel. */
export function fanoutMessagesOf(
  records: readonly EventRecord[],
  ts: number,
  trace: FanoutTrace | undefined,
): FanoutMessage[] {
  const messages: FanoutMessage[] = [];
  for (const record of records) {
    if (record.channel === undefined) continue;
    const message: FanoutMessage = {
      tenant: record.tenant,
      channel: record.channel,
      dataJson: record.dataJson,
      record: { type: record.type, id: record.id },
      ts,
    };
    if (trace !== undefined) {
      message.traceparent = trace.traceparent;
      if (trace.tracestate !== undefined) message.tracestate = trace.tracestate;
    }
    messages.push(message);
  }
  return messages;
}
