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

/** A Produce API as the client calls it: a connection, the request's arguments, a callback. */
type ProduceApi = ((
  connection: unknown,
  acks: number,
  timeout: number,
  messages: PartitionRecords[],
  options: ProduceRequestOptions,
  callback: Callback<unknown>,
) => void) &
  Pick<API<unknown[], unknown>, "key" | "version" | "async">;

/**
 * Our Produce request builder behind the client's own response parser, for
 * each version it speaks: 7 to 11 in @platformatic/kafka 1.x, 3 to 11 in 2.x
 * (3 to 8 share one request layout), so both majors work unchanged.
 *
 * The client advances a partition's idempotence sequence by the messages it
 * sent there once they are acknowledged; each of its messages here carries
 * a partition's records (PartitionRecords), so the rest of their count is
 * added at the same moment. A failed request adds nothing (the client's
 * retries encode it again with the same sequence, and after a failed send the
 * writer replaces the producer).
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
      );
      const counted: ProduceApi = Object.assign(
        (
          connection: unknown,
          acks: number,
          timeout: number,
          messages: PartitionRecords[],
          options: ProduceRequestOptions,
          callback: Callback<unknown>,
        ) => {
          produce(
            connection as never,
            acks,
            timeout,
            messages,
            options,
            (error: Error | null, response: unknown) => {
              if (!error && options.sequences) countRecords(messages, options.sequences);
              callback(error, response);
            },
          );
        },
        { key: produce.key, version: produce.version, async: produce.async },
      );
      return [api.version, counted];
    }),
);

/** Adds each message's records beyond the one the client counts to its partition's sequence. */
function countRecords(
  messages: readonly PartitionRecords[],
  sequences: NonNullable<ProduceRequestOptions["sequences"]>,
): void {
  for (const message of messages)
    sequences.postIncrement(sequenceKey(message.topic, message.partition), message.value.length - 1, 0);
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
