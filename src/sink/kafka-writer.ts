import { Admin, Producer, stringSerializers } from "@platformatic/kafka";
import type { Config } from "../config/config.ts";
import type { KafkaConnectionOptions } from "../kafka/client-options.ts";
import type { SinkMessage, SinkWriter } from "./types.ts";

type StringProducer = Producer<string, string, string, string>;

/**
 * Writes batches to Kafka with one shared idempotent producer (acks=all is
 * forced by idempotence). `write` resolves when the broker acknowledged the
 * whole batch.
 */
export class KafkaWriter implements SinkWriter {
  readonly kind = "kafka";
  private producer: StringProducer;

  constructor(
    private readonly connection: KafkaConnectionOptions,
    private readonly kafka: Config["kafka"],
  ) {
    this.producer = this.newProducer();
  }

  private newProducer(): StringProducer {
    return new Producer({
      ...this.connection,
      idempotent: true,
      acks: -1,
      compression: this.kafka.compression,
      autocreateTopics: true,
      serializers: stringSerializers,
    });
  }

  /**
   * After a failed or timed-out write the old producer may still hold that
   * batch and its idempotence sequence (seen as OUT_OF_ORDER_SEQUENCE_NUMBER
   * after a broker restart). A fresh producer id starts clean; the retry may
   * duplicate a batch the old one did deliver (at-least-once, never lost).
   */
  reset(): void {
    const stale = this.producer;
    this.producer = this.newProducer();
    stale.close(true, () => {});
  }

  /** A metadata round trip: proves a broker answers, for /health without traffic. */
  async probe(): Promise<void> {
    await this.producer.metadata({ topics: [], forceUpdate: true });
  }

  async write(batch: SinkMessage[]): Promise<void> {
    await this.producer.send({ messages: batch });
  }

  async close(): Promise<void> {
    await this.producer.close();
  }

  /** Creates the topics when missing (a no-op when they exist or the broker auto-creates them). */
  async ensureTopics(topics: string[], partitions: number): Promise<void> {
    const admin = new Admin({ ...this.connection });
    try {
      const existing = new Set(await admin.listTopics());
      const missing = topics.filter((topic) => !existing.has(topic));
      if (missing.length > 0) {
        await admin.createTopics({ topics: missing, partitions, replicas: -1 });
      }
    } finally {
      await admin.close();
    }
  }
}
