import { Admin, GenericError, UserError } from "@platformatic/kafka";
import type { Config } from "../../config/config.ts";
import {
  type SinkMessage,
  SinkUnavailableError,
  type SinkWriter,
  UndeliverableError,
  type UndeliverableReason,
} from "../../ports/sink.ts";
import type { KafkaConnectionOptions } from "./client-options.ts";
import { SinkProducer, sinkMessageSerializers, toProduce } from "./sink-producer.ts";

/** Broker answers about the records themselves: no retry of the same records can change them, a split can. */
const RECORD_REFUSALS: Record<string, UndeliverableReason> = {
  MESSAGE_TOO_LARGE: "too_large",
  RECORD_LIST_TOO_LARGE: "too_large",
  INVALID_RECORD: "invalid_record",
  CORRUPT_MESSAGE: "invalid_record",
  INVALID_TIMESTAMP: "invalid_record",
};

/**
 * Broker answers about the topic or the whole cluster (authorization,
 * authentication, a topic that does not exist, a setting the topic or broker
 * refuses): every record of the topic would get the same answer until an
 * operator acts. Every other broker code (leaders moving, replicas missing,
 * timeouts, throttling, storage errors, unknown server errors) is transient:
 * the delivery queue retries it.
 */
const TOPIC_REFUSALS = new Set([
  "TOPIC_AUTHORIZATION_FAILED",
  "CLUSTER_AUTHORIZATION_FAILED",
  "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
  "SASL_AUTHENTICATION_FAILED",
  "UNSUPPORTED_SASL_MECHANISM",
  "ILLEGAL_SASL_STATE",
  "SECURITY_DISABLED",
  "UNACCEPTABLE_CREDENTIAL",
  "UNKNOWN_TOPIC_OR_PARTITION",
  "UNKNOWN_TOPIC_ID",
  "INVALID_TOPIC_EXCEPTION",
  "INVALID_REQUIRED_ACKS",
  "UNSUPPORTED_FOR_MESSAGE_FORMAT",
  "UNSUPPORTED_COMPRESSION_TYPE",
  "UNSUPPORTED_VERSION",
  "POLICY_VIOLATION",
]);

/** The client's own errors that no retry changes: they need a fix of configuration or broker. */
const CLIENT_REFUSALS: Record<string, string> = {
  PLT_KFK_AUTHENTICATION: "SASL_AUTHENTICATION_FAILED",
  PLT_KFK_UNSUPPORTED_API: "UNSUPPORTED_VERSION",
  PLT_KFK_UNSUPPORTED_COMPRESSION: "UNSUPPORTED_COMPRESSION_TYPE",
};

/**
 * The client turns a Metadata answer of UNKNOWN_TOPIC_OR_PARTITION (a topic
 * that does not exist on a cluster that does not create it) into a UserError
 * with this message and no broker code.
 */
const UNKNOWN_TOPIC_MESSAGE = /^Unknown topic /;

/**
 * The idempotent producer turns `retries` <= 1 into "forever", which hid a
 * refusal the client counts as retriable (CORRUPT_MESSAGE) behind the write
 * timeout. A few quick retries keep the sequence for a transient error; then
 * the delivery queue takes over.
 */
const PRODUCER_RETRIES = 3;

/**
 * What a failed write means for the delivery queue: an UndeliverableError
 * (split down to the record at fault), a SinkUnavailableError (hold the
 * topic), or undefined (transient: retry). @platformatic/kafka nests broker
 * codes as `apiId`, behind its own retries (MultipleErrors).
 */
export function classifyFailure(error: unknown): UndeliverableError | SinkUnavailableError | undefined {
  if (!(error instanceof Error) || !GenericError.isGenericError(error)) return undefined;
  const kafkaError = error as GenericError;
  for (const [code, reason] of Object.entries(RECORD_REFUSALS)) {
    if (kafkaError.findBy("apiId", code)) return new UndeliverableError(reason, code, { cause: error });
  }
  for (const code of TOPIC_REFUSALS) {
    if (kafkaError.findBy("apiId", code)) return new SinkUnavailableError(code, { cause: error });
  }
  for (const [clientCode, code] of Object.entries(CLIENT_REFUSALS)) {
    if (kafkaError.findBy("code", clientCode)) return new SinkUnavailableError(code, { cause: error });
  }
  const userError = kafkaError.findBy("code", UserError.code);
  if (userError && UNKNOWN_TOPIC_MESSAGE.test(userError.message))
    return new SinkUnavailableError("UNKNOWN_TOPIC_OR_PARTITION", { cause: error });
  return undefined;
}

/** One topic's producer and its last write, which the next one waits for. */
interface TopicProducer {
  producer: SinkProducer;
  lastWrite: Promise<void>;
}

/**
 * Writes batches to Kafka with an idempotent producer per topic (acks=all is
 * forced by idempotence). `write` resolves when the broker acknowledged the
 * whole batch. A producer per topic keeps topics apart: resetting one after a
 * failure never disturbs a write to another. The topics come from config
 * (ingest, fan-out, dead letters), so there are at most three.
 */
export class KafkaWriter implements SinkWriter {
  readonly kind = "kafka";
  private readonly producers = new Map<string, TopicProducer>();
  /** Answers the idle probe; never writes, so it has no sequence to lose. */
  private probeProducer: SinkProducer;

  constructor(
    private readonly connection: KafkaConnectionOptions,
    private readonly kafka: Config["kafka"],
  ) {
    this.probeProducer = this.newProducer();
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

  private topicProducer(topic: string): TopicProducer {
    let entry = this.producers.get(topic);
    if (!entry) {
      entry = { producer: this.newProducer(), lastWrite: Promise.resolve() };
      this.producers.set(topic, entry);
    }
    return entry;
  }

  /**
   * After a failed or timed-out write the old producer may still hold that
   * batch and its idempotence sequence (seen as OUT_OF_ORDER_SEQUENCE_NUMBER
   * after a broker restart). A fresh producer id starts clean; the retry may
   * duplicate a batch the old one did deliver (at-least-once, never lost).
   */
  reset(topic: string): void {
    const stale = this.producers.get(topic);
    if (!stale) return;
    this.producers.delete(topic);
    stale.producer.close(true, () => {});
  }

  /** A metadata round trip: proves a broker answers, for /health without traffic. */
  async probe(): Promise<void> {
    try {
      await this.probeProducer.metadata({ topics: [], forceUpdate: true });
    } catch (error) {
      const stale = this.probeProducer;
      this.probeProducer = this.newProducer();
      stale.close(true, () => {});
      throw error;
    }
  }

  /**
   * Rejects with an UndeliverableError or a SinkUnavailableError when the
   * broker refused the batch (see `classifyFailure`). A batch holds records
   * of one topic. Writes to a topic go one at a time: the idempotent producer
   * numbers a batch when it sends it and counts it only when acknowledged, so
   * two batches sent together carried the same sequence, and the broker
   * acknowledged the second as a duplicate of the first without storing it.
   */
  write(batch: SinkMessage[]): Promise<void> {
    const topic = this.topicProducer((batch[0] as SinkMessage).topic);
    const producer = topic.producer;
    const written = topic.lastWrite.then(() => this.send(producer, batch));
    topic.lastWrite = written.catch(() => {});
    return written;
  }

  private async send(producer: SinkProducer, batch: SinkMessage[]): Promise<void> {
    try {
      await producer.send({ messages: batch.map(toProduce) });
    } catch (error) {
      throw classifyFailure(error) ?? error;
    }
  }

  async close(): Promise<void> {
    const producers = [this.probeProducer, ...[...this.producers.values()].map((entry) => entry.producer)];
    this.producers.clear();
    await Promise.all(producers.map((producer) => producer.close()));
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
