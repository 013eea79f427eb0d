import { randomUUID } from "node:crypto";
import { Consumer, type MessagesStream, stringDeserializers } from "@platformatic/kafka";
import type { KafkaConnectionOptions } from "../kafka/client-options.ts";
import type { Logger } from "../log/logger.ts";
import type { DeliveryQueue } from "../sink/delivery-queue.ts";
import { type FanoutBus, type FanoutListener, type FanoutMessage, fanoutKey } from "./bus.ts";

/**
 * Fan-out over a Kafka topic. Publishing goes through the shared delivery
 * queue (batched, retried, bounded). Every instance reads every partition from
 * the offsets that were latest when it started: it uses a consumer group of its
 * own (unique id, no commits) so instances never share partitions.
 */
export class KafkaFanoutBus implements FanoutBus {
  private consumer: Consumer<string, string, string, string> | undefined;
  private stream: MessagesStream<string, string, string, string> | undefined;

  constructor(
    private readonly connection: KafkaConnectionOptions,
    private readonly topic: string,
    private readonly queue: DeliveryQueue,
    private readonly log: Logger,
  ) {}

  async start(listener: FanoutListener): Promise<void> {
    const consumer = new Consumer({
      ...this.connection,
      groupId: `edge-gateway-fanout-${randomUUID()}`,
      deserializers: stringDeserializers,
      autocommit: false,
      maxWaitTime: 500,
    });
    this.consumer = consumer;
    const metadata = await consumer.metadata({ topics: [this.topic], forceUpdate: true });
    const topicId = metadata.topics.get(this.topic)?.id ?? "0";
    // The topic id changes when the topic is recreated: that is when old event ids stop meaning anything.
    const epoch = `k${topicId.replaceAll("-", "").slice(0, 12)}`;
    const latest = (await consumer.listOffsets({ topics: [this.topic] })).get(this.topic) ?? [];
    latest.forEach((offset, partition) => {
      listener.origin(epoch, partition, offset);
    });
    this.stream = await consumer.consume({
      topics: [this.topic],
      mode: "manual",
      offsets: latest.map((offset, partition) => ({ topic: this.topic, partition, offset })),
      autocommit: false,
      maxWaitTime: 500,
    });
    this.stream.on("data", (message) => {
      let parsed: FanoutMessage;
      try {
        parsed = JSON.parse(message.value) as FanoutMessage;
      } catch {
        this.log.warn({ partition: message.partition }, "fan-out message is not JSON; skipped");
        return;
      }
      listener.deliver({
        ...parsed,
        position: { epoch, partition: message.partition, offset: message.offset },
      });
    });
    this.stream.on("error", (error) => this.log.error({ err: error }, "fan-out consumer error"));
  }

  publish(messages: FanoutMessage[]): Promise<void> {
    return this.queue.enqueue(
      messages.map((message) => ({
        topic: this.topic,
        key: fanoutKey(message),
        value: JSON.stringify(message),
        headers: { tenant: message.tenant, "content-type": "application/json" },
      })),
    );
  }

  async close(): Promise<void> {
    await this.stream?.close();
    await this.consumer?.close(true);
  }
}
