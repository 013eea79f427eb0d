import { randomUUID } from "node:crypto";
import { Consumer, type MessagesStream, stringDeserializers } from "@platformatic/kafka";
import { CHANNEL_PATTERN } from "../../domain/channel.ts";
import { isJsonValue } from "../../lib/json-scan.ts";
import type { Logger } from "../../log/logger.ts";
import {
  type FanoutBus,
  type FanoutListener,
  type FanoutMessage,
  fanoutKey,
} from "../../ports/fanout-bus.ts";
import type { RecordQueue, SinkMessage } from "../../ports/sink.ts";
import type { KafkaConnectionOptions } from "./client-options.ts";

type FanoutConsumer = Consumer<string, string, string, string>;
type FanoutStream = MessagesStream<string, string, string, string>;

const RESTART_DELAY_MS = 2000;

/**
 * Fan-out over a Kafka topic. Publishing goes through the shared delivery
 * queue (batched, retried, bounded). Every instance reads every partition from
 * the offsets that were latest when it started: it uses a consumer group of its
 * own (unique id, no commits) so instances never share partitions. When the
 * stream fails (broker restart) it is rebuilt from the next unread offsets, so
 * no message is skipped.
 */
export class KafkaFanoutBus implements FanoutBus {
  private consumer: FanoutConsumer | undefined;
  private stream: FanoutStream | undefined;
  private listener: FanoutListener | undefined;
  private epoch = "";
  /** Next offset to read, per partition. */
  private readonly nextOffsets = new Map<number, bigint>();
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(
    private readonly connection: KafkaConnectionOptions,
    private readonly topic: string,
    private readonly queue: RecordQueue,
    private readonly log: Logger,
  ) {}

  async start(listener: FanoutListener): Promise<void> {
    this.listener = listener;
    const consumer = this.newConsumer();
    try {
      const metadata = await consumer.metadata({ topics: [this.topic], forceUpdate: true });
      const topicId = metadata.topics.get(this.topic)?.id ?? "0";
      // The topic id changes when the topic is recreated: that is when old event ids stop meaning anything.
      this.epoch = `k${topicId.replaceAll("-", "").slice(0, 12)}`;
      const latest = (await consumer.listOffsets({ topics: [this.topic] })).get(this.topic) ?? [];
      latest.forEach((offset, partition) => {
        this.nextOffsets.set(partition, offset);
        listener.origin(this.epoch, partition, offset);
      });
      await this.consume(consumer);
      this.log.info(
        { topic: this.topic, partitions: this.nextOffsets.size, epoch: this.epoch },
        "fan-out consumer reading",
      );
    } catch (error) {
      await forceClose(consumer);
      throw error;
    }
  }

  publish(messages: FanoutMessage[]): Promise<void> {
    return this.queue.enqueue(
      messages.map((message) => toFanoutRecord(this.topic, message)),
      "acknowledged",
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.stop();
  }

  private newConsumer(): FanoutConsumer {
    return new Consumer({
      ...this.connection,
      groupId: `edge-gateway-fanout-${randomUUID()}`,
      deserializers: stringDeserializers,
      autocommit: false,
      maxWaitTime: 500,
    });
  }

  private async consume(consumer: FanoutConsumer): Promise<void> {
    this.consumer = consumer;
    const stream = await consumer.consume({
      topics: [this.topic],
      mode: "manual",
      offsets: [...this.nextOffsets].map(([partition, offset]) => ({ topic: this.topic, partition, offset })),
      autocommit: false,
      maxWaitTime: 500,
    });
    this.stream = stream;
    stream.on("data", (message) => {
      this.nextOffsets.set(message.partition, message.offset + 1n);
      const parsed = fromFanoutRecord(message.headers, message.value);
      if (!parsed) {
        this.log.warn(
          { partition: message.partition, offset: String(message.offset) },
          "fan-out record is malformed; skipped",
        );
        return;
      }
      const position = { epoch: this.epoch, partition: message.partition, offset: message.offset };
      this.listener?.deliver({ ...parsed, position });
    });
    stream.on("error", (error) => {
      this.log.warn({ err: error }, "fan-out consumer failed; rebuilding it");
      this.scheduleRestart();
    });
  }

  private scheduleRestart(): void {
    if (this.closed || this.restartTimer) return;
    this.restartTimer = setTimeout(async () => {
      this.restartTimer = undefined;
      await this.stop();
      if (this.closed) return;
      this.consume(this.newConsumer()).then(
        () => this.log.info("fan-out consumer rebuilt"),
        (error) => {
          this.log.warn({ err: error }, "fan-out consumer rebuild failed; retrying");
          this.scheduleRestart();
        },
      );
    }, RESTART_DELAY_MS);
    this.restartTimer.unref?.();
  }

  private async stop(): Promise<void> {
    const { stream, consumer } = this;
    this.stream = undefined;
    this.consumer = undefined;
    await stream?.close().catch(() => {});
    if (consumer) await forceClose(consumer);
  }
}

/**
 * A fan-out record: the payload as the value, byte for byte as it was
 * published, and everything else in headers, so no instance parses and
 * re-serialises the payload (which would alter big numbers).
 */
export function toFanoutRecord(topic: string, message: FanoutMessage): SinkMessage {
  const headers: Record<string, string> = {
    tenant: message.tenant,
    ts: String(message.ts),
    "content-type": "application/json",
  };
  if (message.channel !== undefined) headers.channel = message.channel;
  if (message.broadcast) headers.broadcast = "true";
  if (message.record) {
    headers["record-type"] = message.record.type;
    headers["record-id"] = message.record.id;
  }
  return { topic, key: fanoutKey(message), value: message.dataJson, headers };
}

/** The message back from a fan-out record; undefined when it was not written by a gateway. */
export function fromFanoutRecord(headers: Map<string, string>, value: string): FanoutMessage | undefined {
  const tenant = headers.get("tenant");
  const channel = headers.get("channel");
  const broadcast = headers.get("broadcast") === "true";
  if (!tenant || (channel === undefined ? !broadcast : !CHANNEL_PATTERN.test(channel))) return undefined;
  if (!isJsonValue(Buffer.from(value))) return undefined;
  const message: FanoutMessage = { tenant, dataJson: value, ts: Number(headers.get("ts")) || Date.now() };
  if (channel !== undefined) message.channel = channel;
  if (broadcast) message.broadcast = true;
  const type = headers.get("record-type");
  const id = headers.get("record-id");
  if (type !== undefined && id !== undefined) message.record = { type, id };
  return message;
}

/** Closes without waiting for in-flight fetches; errors on the way out are irrelevant. */
function forceClose(consumer: FanoutConsumer): Promise<void> {
  return new Promise((resolve) => consumer.close(true, () => resolve()));
}
