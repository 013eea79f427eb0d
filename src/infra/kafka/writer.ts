import {
  Admin,
  type API,
  type Callback,
  createAPI,
  GenericError,
  kGetApi,
  type MessageToProduce,
  Producer,
  produceV7,
  produceV8,
  produceV9,
  produceV10,
  produceV11,
  type SerializerWithHeaders,
  stringSerializer,
  UnsupportedApiError,
} from "@platformatic/kafka";
import type { Config } from "../../config/config.ts";
import {
  type SinkMessage,
  type SinkWriter,
  UndeliverableError,
  type UndeliverableReason,
} from "../../ports/sink.ts";
import type { KafkaConnectionOptions } from "./client-options.ts";
import { PartitionHash } from "./partition-hash.ts";
import { createProduceRequest, type ProduceRecord, type ProduceRequestOptions } from "./produce-request.ts";

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

/** Our Produce request builder behind the client's own response parser, for each version it speaks. */
const PRODUCE_APIS = new Map(
  [produceV7, produceV8, produceV9, produceV10, produceV11].map(({ api, parseResponse }) => [
    api.version,
    createAPI(
      api.key,
      api.version,
      (acks: number, timeout: number, records: ProduceRecord[], options: ProduceRequestOptions) =>
        createProduceRequest(api.version, acks, timeout, records, options),
      parseResponse,
      api.version >= 9,
      api.version >= 9,
    ),
  ]),
);

/**
 * The client's string serializers turned key, value and every header into a
 * Buffer of its own, which its encoder then copied about five times (see
 * loadtest/profiles/kafka.md). This producer keeps the client's metadata,
 * idempotence, sequences and retries, but is handed the partition (the
 * client's own hash of the key, see PartitionHash), passes the SinkMessage
 * through as the value and encodes the Produce request itself, writing each
 * record once.
 */
class SinkProducer extends Producer<string, SinkMessage, string, string> {
  override [kGetApi]<RequestArguments extends Array<unknown>, ResponseType>(
    name: string,
    callback: Callback<API<RequestArguments, ResponseType>>,
  ): void {
    if (name !== "Produce") {
      super[kGetApi](name, callback);
      return;
    }
    super[kGetApi]<RequestArguments, ResponseType>(name, (error, negotiated) => {
      const ours = negotiated && PRODUCE_APIS.get(negotiated.version);
      if (error || !ours) {
        callback(
          error ?? new UnsupportedApiError(`No Produce request builder for version ${negotiated?.version}`),
        );
        return;
      }
      callback(null, ours as unknown as API<RequestArguments, ResponseType>);
    });
  }
}

/** The value reaches the Produce request builder untouched (see SinkProducer). */
const passSinkMessage = ((message: SinkMessage) => message) as unknown as SerializerWithHeaders<
  SinkMessage,
  string,
  string
>;

const partitionHash = new PartitionHash();

/** The message rides as the value, key and headers included; its key chose the partition. */
function toProduce(message: SinkMessage): MessageToProduce<string, SinkMessage, string, string> {
  return { topic: message.topic, value: message, partition: partitionHash.of(message.key) };
}

/**
 * Writes batches to Kafka with one shared idempotent producer (acks=all is
 * forced by idempotence). `write` resolves when the broker acknowledged the
 * whole batch.
 */
export class KafkaWriter implements SinkWriter {
  readonly kind = "kafka";
  private producer: SinkProducer;

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
      serializers: {
        key: stringSerializer,
        value: passSinkMessage,
        headerKey: stringSerializer,
        headerValue: stringSerializer,
      },
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

  /** Rejects with an UndeliverableError when the broker refused the batch for good. */
  async write(batch: SinkMessage[]): Promise<void> {
    try {
      await this.producer.send({ messages: batch.map(toProduce) });
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
