import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { Admin } from "@platformatic/kafka";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, startGateway } from "./harness.ts";

const TOPIC_LIMIT = 100_000;

/** A topic whose own max.message.bytes is far below what the gateway is told: the broker refuses big batches. */
async function createSmallTopic(prefix: string): Promise<string> {
  const topic = `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const admin = new Admin({ clientId: "test-admin", bootstrapBrokers: services().brokers.split(",") });
  try {
    await admin.createTopics({
      topics: [topic],
      partitions: 1,
      replicas: 1,
      configs: [{ name: "max.message.bytes", value: String(TOPIC_LIMIT) }],
    });
  } finally {
    await admin.close();
  }
  return topic;
}

const incompressible = (bytes: number) => randomBytes(Math.ceil((bytes * 3) / 4)).toString("base64");

describe.each(RUNTIMES)("records the broker refuses for good on %s", (runtime) => {
  test("a refused batch is split and delivered; the record at fault is a 413 and dead-lettered; ingest goes on", async () => {
    const topic = await createSmallTopic(`refusals-${runtime}`);
    const dlq = await createTopic(`refusals-dlq-${runtime}`, 1);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_DLQ_TOPIC: dlq,
      JWT_SECRET: TEST_SECRET,
      KAFKA_COMPRESSION: "none",
      MAX_BODY_BYTES: String(4 * 1024 * 1024),
      KAFKA_UNHEALTHY_AFTER_MS: "3000",
      INGEST_ACK_TIMEOUT_MS: "10000",
    });
    const post = async (records: Array<{ id: string; blobBytes: number }>) => {
      const response = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(
          records.map(({ id, blobBytes }) => ({
            type: "click",
            id,
            data: { element: "b", blob: incompressible(blobBytes) },
          })),
        ),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    try {
      // 30 × 20 KB in one batch: six times what the topic takes.
      const many = Array.from({ length: 30 }, (_, index) => ({ id: `small-${index}`, blobBytes: 20_000 }));
      const [batched, tooLarge] = await Promise.all([post(many), post([{ id: "huge", blobBytes: 150_000 }])]);
      expect(batched.status).toBe(202);
      expect(tooLarge.status).toBe(413);
      expect(tooLarge.body.error).toBe("record_too_large");
      expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
      const after = await post([{ id: "after", blobBytes: 100 }]);
      expect(after.status).toBe(202);

      const ids = [...many.map((record) => record.id), "after"];
      const messages = await readTopic(topic, ids.length, 15_000);
      const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
      expect(ids.filter((id) => !inKafka.has(id))).toEqual([]);
      expect(inKafka.has("huge")).toBe(false);

      const [letter] = await readTopic(dlq, 1, 15_000);
      const deadLetter = JSON.parse(letter?.value ?? "{}") as {
        tenant: string;
        reason: string;
        record: { id: string };
      };
      expect(deadLetter.tenant).toBe("acme");
      expect(deadLetter.reason).toContain("MESSAGE_TOO_LARGE");
      expect(deadLetter.record.id).toBe("huge");

      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).toContain('gateway_events_undeliverable_total{reason="too_large"} 1');
      expect(gateway.logs.some((entry) => entry.msg === "record refused by the sink: dead-lettered")).toBe(
        true,
      );
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 60_000);
});
