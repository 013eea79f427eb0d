import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, startGateway } from "./harness.ts";

/** Random base64: nothing for a compressor to find. */
const incompressible = (bytes: number) => randomBytes(Math.ceil((bytes * 3) / 4)).toString("base64");

describe.each(RUNTIMES)("batches that fit the broker on %s", (runtime) => {
  test("near-limit incompressible records, uncompressed, are all delivered and ingest keeps working", async () => {
    const topic = await createTopic(`batch-limit-${runtime}`);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      KAFKA_COMPRESSION: "none",
      MAX_BODY_BYTES: String(8 * 1024 * 1024),
      KAFKA_UNHEALTHY_AFTER_MS: "3000",
      INGEST_ACK_TIMEOUT_MS: "10000",
    });
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
    };
    const ids: string[] = [];
    const statuses: number[] = [];
    const post = async (records: Array<{ id: string; blobBytes: number }>) => {
      const response = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers,
        body: JSON.stringify(
          records.map(({ id, blobBytes }) => ({
            type: "click",
            id,
            data: { element: "b", blob: incompressible(blobBytes) },
          })),
        ),
      });
      await response.arrayBuffer();
      statuses.push(response.status);
      if (response.status === 202) ids.push(...records.map((record) => record.id));
    };
    try {
      // Every record lands in one partition (same tenant, no key): together they are far past 1 MiB.
      const requests: Array<Promise<void>> = [];
      for (let request = 0; request < 4; request++) {
        requests.push(
          post(
            Array.from({ length: 5 }, (_, index) => ({ id: `mid-${request}-${index}`, blobBytes: 200_000 })),
          ),
        );
      }
      // Records just under the 1 MiB default limit: each must go out in a batch of its own.
      for (let request = 0; request < 3; request++) {
        requests.push(post([{ id: `big-${request}`, blobBytes: 1_040_000 }]));
      }
      await Promise.all(requests);
      expect(statuses).toEqual(Array(7).fill(202));
      expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
      await post([{ id: "after", blobBytes: 100 }]);
      expect(statuses.at(-1)).toBe(202);

      const messages = await readTopic(topic, ids.length, 20_000);
      const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
      expect(ids.filter((id) => !inKafka.has(id))).toEqual([]);
      expect(ids.length).toBe(24);
      expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 60_000);
});
