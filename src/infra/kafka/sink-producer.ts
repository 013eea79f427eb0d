import * as kafka from "@platformatic/kafka";
import {
  type API,
  type Callback,
  createAPI,
  kGetApi,
  type MessageToProduce,
  Producer,
  type Serializers,
  type SerializerWithHeaders,
  stringSerializer,
  UnsupportedApiError,
} from "@platformatic/kafka";
import type { SinkMessage } from "../../ports/sink.ts";
import { PartitionHash } from "./partition-hash.ts";
import {
  createProduceRequest,
  type PartitionRecords,
  type ProduceRequestOptions,
  sequenceKey,
} from "./produce-request.ts";

/** One `produceV<N>` export of the client: the API it negotiates and its response parser. */
interface ClientProduceApi {
  api: { key: number; version: number };
  parseResponse: Parameters<typeof createAPI>[3];
}

/** A Produce call as the client makes it: a connection, the request's arguments, a callback. */
type ProduceCall = (
  connection: unknown,
  acks: number,
  timeout: number,
  messages: PartitionRecords[],
  options: ProduceRequestOptions,
  callback: Callback<unknown>,
) => void;

/** A Produce API: the call, and what the client reads of the API beside it. */
type ProduceApi = ProduceCall & Pick<API<unknown[], unknown>, "key" | "version" | "async">;

/**
 * Our Produce request builder behind the client's own response parser, for
 * each version it speaks: 7 to 11 in @platformatic/kafka 1.x, 3 to 11 in 2.x
 * (3 to 8 share one request layout), so both majors work unchanged. A
 * SinkProducer calls it with its own RecordSequences (see `produceWith`).
 */
export const PRODUCE_APIS = new Map(
  Object.entries(kafka)
    .filter(([name]) => /^produceV\d+$/.test(name))
    .map(([, module]) => {
      const { api, parseResponse } = module as unknown as ClientProduceApi;
      const produce = createAPI(
        api.key,
        api.version,
        (acks: number, timeout: number, messages: PartitionRecords[], options: ProduceRequestOptions) =>
          createProduceRequest(api.version, acks, timeout, messages, options),
        parseResponse,
        api.version >= 9,
        api.version >= 9,
      ) as unknown as ProduceApi;
      return [api.version, produce];
    }),
);

/** Kafka's sequences are non-negative int32s that wrap to 0 (DefaultRecordBatch.incrementSequence). */
const SEQUENCE_WRAP = 2 ** 31;

/**
 * A producer's idempotence sequences, counted in records. Each client
 * message here carries a partition's records (PartitionRecords), and the
 * client counts messages: 1.x advances its sequences by one per message when
 * acknowledged, 2.x when it sends them, and hands the request builder a copy
 * (so adding the rest of the records to it, as this builder once did, was
 * lost there, and every second write to a partition was refused as
 * OUT_OF_ORDER_SEQUENCE_NUMBER; the client then took a new producer id and
 * sent the whole request again, duplicating the partitions the broker had
 * taken). So the batches are numbered here instead: a partition's next
 * sequence is advanced by its records once the broker acknowledged them; a
 * failed request advances nothing (the client's retries of it carry the same
 * sequences, which the broker deduplicates). A new producer id or epoch (the
 * client's recovery) starts every partition over at 0. One entry per
 * partition the producer wrote, owned by the producer.
 */
export class RecordSequences {
  private producerId: bigint | undefined;
  private producerEpoch: number | undefined;
  private readonly next = new Map<string, number>();

  /** These sequences for `producerId` at `producerEpoch`: forgotten when the id or epoch changed. */
  of(producerId: bigint | undefined, producerEpoch: number | undefined): this {
    if (producerId !== this.producerId || producerEpoch !== this.producerEpoch) {
      this.producerId = producerId;
      this.producerEpoch = producerEpoch;
      this.next.clear();
    }
    return this;
  }

  /** The first sequence of the next batch for `key` (topic:partition), as the request builder reads it. */
  getWithDefault(key: string, fallback: number): number {
    return this.next.get(key) ?? fallback;
  }

  /** Counts the records of an acknowledged request. */
  acknowledged(messages: readonly PartitionRecords[]): void {
    for (const message of messages) {
      const key = sequenceKey(message.topic, message.partition);
      this.next.set(key, ((this.next.get(key) ?? 0) + message.value.length) % SEQUENCE_WRAP);
    }
  }
}

/**
 * `produce` numbering its batches with `sequences` instead of the client's
 * (when the client asked for idempotence, i.e. passed sequences at all).
 */
function produceWith(produce: ProduceApi, sequences: RecordSequences): ProduceApi {
  const call: ProduceCall = (connection, acks, timeout, messages, options, callback) => {
    if (options.sequences === undefined) {
      produce(connection, acks, timeout, messages, options, callback);
      return;
    }
    const ours = sequences.of(options.producerId, options.producerEpoch);
    produce(connection, acks, timeout, messages, { ...options, sequences: ours }, (error, response) => {
      if (!error) ours.acknowledged(messages);
      callback(error, response);
    });
  };
  return Object.assign(call, { key: produce.key, version: produce.version, async: produce.async });
}

/**
 * The client's string serializers turned key, value and every header into a
 * Buffer of its own, which its encoder then copied about five times (see
 * loadtest/profiles/kafka.md). This producer keeps the client's metadata,
 * idempotence, sequences and retries, but is handed the partition (the
 * client's own hash of the key, see PartitionHash) and one message per
 * partition whose value is that partition's SinkMessages (see `toPartitions`),
 * and encodes the Produce request itself, writing each record once.
 */
export class SinkProducer extends Producer<string, readonly SinkMessage[], string, string> {
  private readonly sequences = new RecordSequences();
  /** Our Produce API per version the client negotiated (a handful at most), numbering with `sequences`. */
  private readonly produceApis = new Map<number, ProduceApi>();

  override [kGetApi]<RequestArguments extends Array<unknown>, ResponseType>(
    name: string,
    callback: Callback<API<RequestArguments, ResponseType>>,
  ): void {
    if (name !== "Produce") {
      super[kGetApi](name, callback);
      return;
    }
    super[kGetApi]<RequestArguments, ResponseType>(name, (error, negotiated) => {
      const produce = negotiated && PRODUCE_APIS.get(negotiated.version);
      if (error || !produce) {
        callback(
          error ?? new UnsupportedApiError(`No Produce request builder for version ${negotiated?.version}`),
        );
        return;
      }
      let ours = this.produceApis.get(negotiated.version);
      if (ours === undefined) {
        ours = produceWith(produce, this.sequences);
        this.produceApis.set(negotiated.version, ours);
      }
      callback(null, ours as unknown as API<RequestArguments, ResponseType>);
    });
  }
}

/** The value reaches the Produce request builder untouched; no key or headers are given to serialize. */
export const sinkMessageSerializers: Serializers<string, readonly SinkMessage[], string, string> = {
  key: stringSerializer,
  value: ((messages: readonly SinkMessage[]) => messages) as unknown as SerializerWithHeaders<
    readonly SinkMessage[],
    string,
    string
  >,
  headerKey: stringSerializer,
  headerValue: stringSerializer,
};

/** The client's hash of a key, shared by the producers' partitioning and the writer's choice of producer. */
export const partitionHash = new PartitionHash();

/**
 * `batch` (records of `topic`) as the client's messages: one per partition,
 * the partition picked by the client's hash of each record's key, modulo
 * `partitions`, records in the order given. While the count is unknown (no
 * metadata seen yet), a message per run of records with the same hash: the
 * client takes each modulo the count, and the request builder joins the
 * messages that land on one partition in their order, so the partition keeps
 * the records' order.
 */
export function toPartitions(
  topic: string,
  batch: readonly SinkMessage[],
  partitions: number | undefined,
): MessageToProduce<string, readonly SinkMessage[], string, string>[] {
  const messages: MessageToProduce<string, readonly SinkMessage[], string, string>[] = [];
  if (partitions === undefined) {
    let run: SinkMessage[] = [];
    let runHash = -1;
    for (const message of batch) {
      const hash = partitionHash.of(message.key);
      if (hash !== runHash) {
        run = [];
        runHash = hash;
        messages.push({ topic, partition: hash, value: run });
      }
      run.push(message);
    }
    return messages;
  }
  const groups = new Map<number, SinkMessage[]>();
  for (const message of batch) {
    const partition = partitionHash.of(message.key) % partitions;
    const group = groups.get(partition);
    if (group) group.push(message);
    else groups.set(partition, [message]);
  }
  for (const [partition, value] of groups) messages.push({ topic, partition, value });
  return messages;
}
