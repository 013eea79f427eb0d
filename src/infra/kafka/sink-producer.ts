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
import { createProduceRequest, type ProduceRecord, type ProduceRequestOptions } from "./produce-request.ts";

/** One `produceV<N>` export of the client: the API it negotiates and its response parser. */
interface ClientProduceApi {
  api: { key: number; version: number };
  parseResponse: Parameters<typeof createAPI>[3];
}

/**
 * Our Produce request builder behind the client's own response parser, for
 * each version it speaks: 7 to 11 in @platformatic/kafka 1.x, 3 to 11 in 2.x
 * (3 to 8 share one request layout), so both majors work unchanged.
 */
export const PRODUCE_APIS = new Map(
  Object.entries(kafka)
    .filter(([name]) => /^produceV\d+$/.test(name))
    .map(([, module]) => {
      const { api, parseResponse } = module as unknown as ClientProduceApi;
      return [
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
      ];
    }),
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
export class SinkProducer extends Producer<string, SinkMessage, string, string> {
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
export const sinkMessageSerializers: Serializers<string, SinkMessage, string, string> = {
  key: stringSerializer,
  value: ((message: SinkMessage) => message) as unknown as SerializerWithHeaders<SinkMessage, string, string>,
  headerKey: stringSerializer,
  headerValue: stringSerializer,
};

/** The client's hash of a key, shared by the producers' partitioning and the writer's choice of producer. */
export const partitionHash = new PartitionHash();

/** The message rides as the value, key and headers included; its key chose the partition. */
export function toProduce(message: SinkMessage): MessageToProduce<string, SinkMessage, string, string> {
  return { topic: message.topic, value: message, partition: partitionHash.of(message.key) };
}
