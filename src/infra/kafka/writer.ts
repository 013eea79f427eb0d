import { Admin, ConfigResourceTypes, GenericError, TimeoutError, UserError } from "@platformatic/kafka";
import type { Config } from "../../config/config.ts";
import {
  type SinkMessage,
  SinkNoAnswerError,
  SinkUnavailableError,
  type SinkWriter,
  UndeliverableError,
  type UndeliverableReason,
} from "../../ports/sink.ts";
import type { KafkaConnectionOptions } from "./client-options.ts";
import { partitionHash, SinkProducer, sinkMessageSerializers, toPartitions } from "./sink-producer.ts";

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
 * codes as `apiId`, behind its own retries (MultipleErrors) and, for a
 * connection the broker refused (SASL), as the `cause` of a NetworkError.
 */
export function classifyFailure(error: unknown): UndeliverableError | SinkUnavailableError | undefined {
  if (!(error instanceof Error) || !GenericError.isGenericError(error)) return undefined;
  for (const [code, reason] of Object.entries(RECORD_REFUSALS)) {
    if (findIn(error, "apiId", code)) return new UndeliverableError(reason, code, { cause: error });
  }
  for (const code of TOPIC_REFUSALS) {
    if (findIn(error, "apiId", code)) return new SinkUnavailableError(code, { cause: error });
  }
  for (const [clientCode, code] of Object.entries(CLIENT_REFUSALS)) {
    if (findIn(error, "code", clientCode)) return new SinkUnavailableError(code, { cause: error });
  }
  const userError = findIn(error, "code", UserError.code);
  if (userError && UNKNOWN_TOPIC_MESSAGE.test(userError.message))
    return new SinkUnavailableError("UNKNOWN_TOPIC_OR_PARTITION", { cause: error });
  return undefined;
}

/**
 * A failure the broker never answered: the client's TimeoutError (a
 * connection not made within its connect timeout, however it is wrapped by
 * the client's retries) as a SinkNoAnswerError, so the delivery queue dates
 * the outage from the send; undefined for anything else.
 */
export function noAnswerOf(error: unknown): SinkNoAnswerError | undefined {
  const timeout = findError(error, (inner) => inner instanceof TimeoutError);
  return timeout
    ? new SinkNoAnswerError(`Kafka did not answer: ${timeout.message}`, { cause: error })
    : undefined;
}

/** The client's errors nest a few levels (retries, connection, response); a cycle or a deeper chain stops here. */
const MAX_ERROR_DEPTH = 8;

/**
 * `error`, or an error it wraps, whose `property` is `value`: GenericError's
 * `findBy` walks only `errors`, and the client reports a refused SASL
 * handshake as a NetworkError "Connection … failed" whose `cause` is the
 * AuthenticationError (itself caused by the broker's SASL_AUTHENTICATION_FAILED).
 */
function findIn(error: unknown, property: string, value: string): Error | undefined {
  return findError(error, (inner) => (inner as unknown as Record<string, unknown>)[property] === value);
}

/** `error`, or an error it wraps (in `errors` or `cause`), that `matches`. */
function findError(error: unknown, matches: (error: Error) => boolean, depth = 0): Error | undefined {
  if (!(error instanceof Error) || depth > MAX_ERROR_DEPTH) return undefined;
  if (matches(error)) return error;
  const inner = (error as { errors?: unknown }).errors;
  if (Array.isArray(inner)) {
    for (const wrapped of inner) {
      const found = findError(wrapped, matches, depth + 1);
      if (found) return found;
    }
  }
  return findError(error.cause, matches, depth + 1);
}

/** What `messageLimits` learned: each topic's limit, or why it could not be read. */
export interface MessageLimits {
  limits: Map<string, number>;
  unreadable: Map<string, unknown>;
}

/** One of a topic's producers and its last write, which the next one waits for. */
interface TopicProducer {
  producer: SinkProducer;
  lastWrite: Promise<void>;
}

/**
 * Writes batches to Kafka with `KAFKA_PRODUCERS` idempotent producers per
 * topic (acks=all is forced by idempotence). `write` resolves when the broker
 * acknowledged the whole batch. Each producer has its own producer id and
 * sequences and owns a share of the topic's partitions (`writerOf`), so each
 * partition has one writer with one batch in flight, while the topic has
 * several. Producers per topic keep topics apart: resetting one after a
 * failure never disturbs a write to another. The topics come from config
 * (ingest, fan-out, dead letters), so there are at most 3 × KAFKA_PRODUCERS.
 */
export class KafkaWriter implements SinkWriter {
  readonly kind = "kafka";
  readonly writersPerTopic: number;
  /** Per topic, its producers by index; a slot is filled at the first write through it. */
  private readonly producers = new Map<string, Array<TopicProducer | undefined>>();
  /** Partitions per topic, from the last metadata seen (at most one entry per topic written). */
  private readonly partitionCounts = new Map<string, number>();
  /** Answers the idle probe; never writes, so it has no sequence to lose. */
  private probeProducer: SinkProducer;

  constructor(
    private readonly connection: KafkaConnectionOptions,
    private readonly kafka: Config["kafka"],
  ) {
    this.writersPerTopic = kafka.producers;
    this.probeProducer = this.newProducer();
  }

  /**
   * The producer owning `message`'s partition: partition (the client's hash
   * of the key modulo the topic's partitions) modulo the producers, so every
   * record of a partition goes through one producer and keeps its order.
   * Until the topic's partition count is known (Kafka unreachable since the
   * start) the hash alone picks it, which is the same owner whenever the
   * producers divide the partition count (the default: 6 partitions).
   */
  writerOf(message: SinkMessage): number {
    if (this.writersPerTopic === 1) return 0;
    const hash = partitionHash.of(message.key);
    const partitions = this.partitionCounts.get(message.topic);
    return (partitions === undefined ? hash : hash % partitions) % this.writersPerTopic;
  }

  /** KAFKA_FANOUT_COMPRESSION for the fan-out topic, KAFKA_COMPRESSION for the others. */
  private compressionOf(topic: string): Config["kafka"]["compression"] {
    return topic === this.kafka.fanoutTopic ? this.kafka.fanoutCompression : this.kafka.compression;
  }

  private newProducer(compression: Config["kafka"]["compression"] = this.kafka.compression): SinkProducer {
    return new SinkProducer({
      ...this.connection,
      idempotent: true,
      acks: -1,
      retries: PRODUCER_RETRIES,
      compression,
      autocreateTopics: true,
      serializers: sinkMessageSerializers,
    });
  }

  private topicProducer(topic: string, writer: number): TopicProducer {
    let producers = this.producers.get(topic);
    if (!producers) {
      producers = new Array<TopicProducer | undefined>(this.writersPerTopic);
      this.producers.set(topic, producers);
    }
    let entry = producers[writer];
    if (!entry) {
      entry = { producer: this.newProducer(this.compressionOf(topic)), lastWrite: Promise.resolve() };
      producers[writer] = entry;
    }
    return entry;
  }

  /**
   * After a failed or timed-out write the old producer may still hold that
   * batch and its idempotence sequence (seen as OUT_OF_ORDER_SEQUENCE_NUMBER
   * after a broker restart). A fresh producer id starts clean; the retry may
   * duplicate a batch the old one did deliver (at-least-once, never lost).
   */
  reset(topic: string, writer = 0): void {
    const producers = this.producers.get(topic);
    const stale = producers?.[writer];
    if (!producers || !stale) return;
    producers[writer] = undefined;
    stale.producer.close(true, () => {});
  }

  /**
   * A metadata round trip: proves a broker answers, for /health without
   * traffic. A refusal (credentials the brokers reject) is an answer too: the
   * writes report it for their topics, and every instance sees the same.
   */
  async probe(): Promise<void> {
    try {
      await this.probeProducer.metadata({ topics: [], forceUpdate: true });
    } catch (error) {
      const stale = this.probeProducer;
      this.probeProducer = this.newProducer();
      stale.close(true, () => {});
      if (!(classifyFailure(error) instanceof SinkUnavailableError)) throw noAnswerOf(error) ?? error;
    }
  }

  /**
   * Rejects with an UndeliverableError or a SinkUnavailableError when the
   * broker refused the batch (see `classifyFailure`). A batch holds records
   * of one topic, all owned by `writer`. Writes through one producer go one at
   * a time: the idempotent producer numbers a batch when it sends it and
   * counts it only when acknowledged, so two batches sent together carried the
   * same sequence, and the broker acknowledged the second as a duplicate of
   * the first without storing it.
   */
  write(batch: SinkMessage[], writer = 0): Promise<void> {
    const topic = (batch[0] as SinkMessage).topic;
    const entry = this.topicProducer(topic, writer);
    const producer = entry.producer;
    const written = entry.lastWrite.then(() => this.send(producer, topic, batch));
    entry.lastWrite = written.catch(() => {});
    return written;
  }

  private async send(producer: SinkProducer, topic: string, batch: SinkMessage[]): Promise<void> {
    try {
      await producer.send({ messages: toPartitions(topic, batch, this.partitionCounts.get(topic)) });
    } catch (error) {
      throw classifyFailure(error) ?? noAnswerOf(error) ?? error;
    } finally {
      this.notePartitions(topic, producer.currentMetadata?.topics.get(topic)?.partitionsCount);
    }
  }

  private notePartitions(topic: string, partitions: number | undefined): void {
    if (partitions !== undefined && partitions > 0) this.partitionCounts.set(topic, partitions);
  }

  async close(): Promise<void> {
    const producers = [this.probeProducer];
    for (const entries of this.producers.values())
      for (const entry of entries) if (entry) producers.push(entry.producer);
    this.producers.clear();
    await Promise.all(producers.map((producer) => producer.close()));
  }

  /**
   * Creates the topics when missing (a no-op when they exist or the broker
   * auto-creates them) and learns their partition counts, so records are
   * routed to their partition's producer from the first one on.
   */
  async ensureTopics(topics: string[], partitions: number): Promise<void> {
    const admin = new Admin({ ...this.connection });
    try {
      const existing = new Set(await admin.listTopics());
      const missing = topics.filter((topic) => !existing.has(topic));
      if (missing.length > 0) {
        await admin.createTopics({ topics: missing, partitions, replicas: -1 });
      }
      const metadata = await admin.metadata({ topics });
      for (const topic of topics) this.notePartitions(topic, metadata.topics.get(topic)?.partitionsCount);
    } finally {
      await admin.close();
    }
  }
  /**
   * Each topic's `max.message.bytes` (its own, else the broker's
   * `message.max.bytes`), as Kafka reports it. Topics are described one by
   * one: one Kafka does not describe (missing, not authorized) is left out
   * with its error, and the others' limits still apply.
   */
  async messageLimits(topics: string[]): Promise<MessageLimits> {
    const admin = new Admin({ ...this.connection });
    const limits = new Map<string, number>();
    const unreadable = new Map<string, unknown>();
    try {
      await Promise.all(
        topics.map(async (topic) => {
          try {
            const [described] = await admin.describeConfigs({
              resources: [
                {
                  resourceType: ConfigResourceTypes.TOPIC,
                  resourceName: topic,
                  configurationKeys: ["max.message.bytes"],
                },
              ],
            });
            const setting = described?.configs.find((config) => config.name === "max.message.bytes");
            const value = Number(setting?.value);
            if (Number.isSafeInteger(value) && value > 0) limits.set(topic, value);
            else unreadable.set(topic, new Error(`max.message.bytes is ${setting?.value}`));
          } catch (error) {
            unreadable.set(topic, error);
          }
        }),
      );
      return { limits, unreadable };
    } finally {
      await admin.close();
    }
  }
}
