import { Admin, GenericError } from "@platformatic/kafka";
import type { Config } from "../../config/config.ts";
import {
  type SinkMessage,
  type SinkWriter,
  UndeliverableError,
  type UndeliverableReason,
} from "../../ports/sink.ts";
import type { KafkaConnectionOptions } from "./client-options.ts";
import { SinkProducer, sinkMessageSerializers, toProduce } from "./sink-producer.ts";

/** Broker answers that no retry of the same records can change. */
const REFUSALS: Record<string, UndeliverableReason> = {
  MESSAGE_TOO_LARGE: "too_large",
  RECORD_LIST_TOO_LARGE: "too_large",
  INVALID_RECORD: "invalid_record",
  CORRUPT_MESSAGE: "invalid_record",
  TOPIC_AUTHORIZATION_FAILED: "not_authorized",
  CLUSTER_AUTHORIZATION_FAILED: "not_authorized",
};

/**
 * The idempotent producer turns `retries` <= 1 into "forever", which hid a
 * refusal the client counts as retriable (CORRUPT_MESSAGE) behind the write
 * timeout. A few quick retries keep the sequence for a transient error; then
 * the delivery queue takes over.
 */
const PRODUCER_RETRIES = 3;

/** The refusal inside a @platformatic/kafka error (it nests broker codes as `apiId`), if it is one. */
export function refusalOf(error: unknown): UndeliverableError | undefined {
  if (!(error instanceof Error) || !GenericError.isGenericError(error)) return undefined;
  const kafkaError = error as GenericError;
  for (const [code, reason] of Object.entries(REFUSALS)) {
    if (kafkaError.findBy("apiId", code)) return new UndeliverableError(reason, code, { cause: error });
  }
  return undefined;
}

/**
 * Writes batches to Kafka with one shared idempotent producer (acks=all is
 * forced by idempotence). `write` resolves when the broker acknowledged the
 * whole batch.
 */
export class KafkaWriter implements SinkWriter {
  readonly kind = "kafka";
  private producer: SinkProducer;
  /** The last write handed to `producer`, which the next one waits for. */
  private lastWrite: Promise<void> = Promise.resolve();

  constructor(
    private readonly connection: KafkaConnectionOptions,
    private readonly kafka: Config["kafka"],
  ) {
    this.producer = this.newProducer();
  }

  private newProducer(): SinkProducer {
    return new SinkProducer({
      ...this.connection,
      idempotent: true,
      acks: -1,
      retries: PRODUCER_RETRIES,
      compression: this.kafka.compression,
      autocreateTopics: true,
      serializers: sinkMessageSerializers,
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
    this.lastWrite = Promise.resolve();
    stale.close(true, () => {});
  }

  /** A metadata round trip: proves a broker answers, for /health without traffic. */
  async probe(): Promise<void> {
    await this.producer.metadata({ topics: [], forceUpdate: true });
  }

  /**
   * Rejects with an UndeliverableError when the broker refused the batch for
   * good. Writes go one at a time: the idempotent producer numbers a batch
   * when it sends it and counts it only when acknowledged, so two batches sent
   * together carried the same sequence, and the broker acknowledged the
   * second as a duplicate of the first without storing it.
   */
  write(batch: SinkMessage[]): Promise<void> {
    const producer = this.producer;
    const written = this.lastWrite.then(() => this.send(producer, batch));
    this.lastWrite = written.catch(() => {});
    return written;
  }

  private async send(producer: SinkProducer, batch: SinkMessage[]): Promise<void> {
    try {
      await producer.send({ messages: batch.map(toProduce) });
    } catch (error) {
      throw refusalOf(error) ?? error;
    }
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
