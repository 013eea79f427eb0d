import { describe, expect, test } from "bun:test";
import * as kafka from "@platformatic/kafka";
import { PRODUCE_APIS, toProduce } from "../../../src/infra/kafka/sink-producer.ts";

/** The Produce versions this client can negotiate: each is a `produceV<N>` export. */
const clientProduceVersions = Object.entries(kafka)
  .filter(([name]) => /^produceV\d+$/.test(name))
  .map(([, module]) => (module as { api: { version: number } }).api.version)
  .sort((a, b) => a - b);

describe("SinkProducer", () => {
  test("every Produce version the client can negotiate has our request builder (an upgrade adding one fails here)", () => {
    expect([...PRODUCE_APIS.keys()].sort((a, b) => a - b)).toEqual(clientProduceVersions);
    for (const [version, api] of PRODUCE_APIS) {
      expect(api.key).toBe(0);
      expect(api.version).toBe(version);
    }
  });

  test("a message goes to the partition the client's default partitioner picks for its key", () => {
    const message = { topic: "events", key: "device-42", value: "{}", headers: {} };
    const produced = toProduce(message);
    expect(produced.value).toBe(message);
    expect(produced.partition).toBe(kafka.defaultPartitioner(produced, Buffer.from("device-42")));
  });
});
