import { describe, expect, test } from "bun:test";
import { partitionCount, readTopic, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, startGateway } from "./harness.ts";

describe.each(RUNTIMES)("topics missing at start on %s", (runtime) => {
  test("the gateway creates its topics with KAFKA_TOPIC_PARTITIONS, and what it acknowledges is read back", async () => {
    const suffix = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const topic = `created-events-${runtime}-${suffix}`;
    const fanout = `created-fanout-${runtime}-${suffix}`;
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_FANOUT_TOPIC: fanout,
      KAFKA_TOPIC_PARTITIONS: "4",
      JWT_SECRET: TEST_SECRET,
    });
    try {
      const ids = Array.from({ length: 8 }, (_, index) => `created-${runtime}-${index}`);
      const response = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(ids.map((id) => ({ type: "click", id, data: { element: "b" } }))),
      });
      expect(response.status).toBe(202);
      // Created by the gateway at start, not by the broker on first produce (its default is 1 partition).
      expect(await partitionCount(topic)).toBe(4);
      expect(await partitionCount(fanout)).toBe(4);
      const read = await readTopic(topic, ids.length);
      expect(read.map((message) => (JSON.parse(message.value) as { id: string }).id).sort()).toEqual(
        ids.sort(),
      );
    } finally {
      await gateway.stop("SIGKILL");
    }
  });
});
