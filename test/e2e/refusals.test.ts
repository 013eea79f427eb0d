import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { Admin, ConfigResourceTypes, IncrementalAlterConfigOperationTypes } from "@platformatic/kafka";
import { createTopic, readTopic, readWithKcat, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, startGateway, waitForLog } from "./harness.ts";

const TOPIC_LIMIT = 100_000;

/** A topic whose own max.message.bytes is `limit` (the broker's default when undefined). */
async function createLimitedTopic(prefix: string, limit?: number): Promise<string> {
  const topic = `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const admin = new Admin({ clientId: "test-admin", bootstrapBrokers: services().brokers.split(",") });
  try {
    await admin.createTopics({
      topics: [topic],
      partitions: 1,
      replicas: 1,
      configs: limit === undefined ? [] : [{ name: "max.message.bytes", value: String(limit) }],
    });
  } finally {
    await admin.close();
  }
  return topic;
}

/** What an operator does while the gateway runs: lowers the topic's max.message.bytes. */
async function lowerTopicLimit(topic: string, limit: number): Promise<void> {
  const admin = new Admin({ clientId: "test-admin", bootstrapBrokers: services().brokers.split(",") });
  try {
    await admin.incrementalAlterConfigs({
      resources: [
        {
          resourceType: ConfigResourceTypes.TOPIC,
          resourceName: topic,
          configs: [
            {
              name: "max.message.bytes",
              configOperation: IncrementalAlterConfigOperationTypes.SET,
              value: String(limit),
            },
          ],
        },
      ],
    });
  } finally {
    await admin.close();
  }
}

const incompressible = (bytes: number) => randomBytes(Math.ceil((bytes * 3) / 4)).toString("base64");

describe.each(RUNTIMES)("records the broker refuses for good on %s", (runtime) => {
  test("a limit lowered while running: a refused batch is split and delivered; a record at fault is named in its batch's 202 (a request of it alone gets 413) and dead-lettered; a client resending only what the answer names duplicates nothing (kcat); the new limit is learnt", async () => {
    const topic = await createLimitedTopic(`refusals-${runtime}`);
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
    const post = async (records: Array<{ id: string; blobBytes: number }>, query = "") => {
      const response = await fetch(`${gateway.url}/v1/events${query}`, {
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
      // Read at start, the topic's limit was the broker's: the gateway learns of the new one from refusals.
      await lowerTopicLimit(topic, TOPIC_LIMIT);
      // 30 × 20 KB in one batch: six times what the topic takes; one record of it more than the topic takes.
      const many = Array.from({ length: 30 }, (_, index) => ({ id: `small-${index}`, blobBytes: 20_000 }));
      many.splice(12, 0, { id: "huge", blobBytes: 150_000 });
      const [batched, tooLarge] = await Promise.all([
        post(many),
        post([{ id: "huge-alone", blobBytes: 150_000 }]),
      ]);
      // The other 30 were written: the answer names the refused one, so a retry resends it alone. The
      // lone record's refusal has the limit read again, which may be learnt before the batch is taken:
      // then its record is refused before it is accepted, with the same code.
      expect(batched).toEqual({
        status: 202,
        body: {
          accepted: 30,
          rejected: 1,
          errors: [
            {
              index: 12,
              reason: expect.stringMatching(
                /^(Kafka refused a record as too large|record too large for Kafka: at most \d+ bytes)$/,
              ),
              code: "record_too_large",
            },
          ],
        },
      });
      expect(tooLarge.status).toBe(413);
      expect(tooLarge.body.error).toBe("record_too_large");
      expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
      // A client following the answer: the records it names, shrunk; nothing else again.
      const errors = batched.body.errors as Array<{ index: number }>;
      const resent = await post(
        errors.map(({ index }) => ({ id: many[index]?.id as string, blobBytes: 100 })),
      );
      expect(resent.status).toBe(202);
      const after = await post([{ id: "after", blobBytes: 100 }]);
      expect(after.status).toBe(202);
      // The refusal has the limit read again: a record over it is now rejected before it is accepted,
      // not answered 202 (?ack=none) and then dropped.
      await waitForLog(
        gateway,
        "a topic takes smaller records than KAFKA_MAX_MESSAGE_BYTES: its max.message.bytes applies",
        5000,
      );
      const unacknowledged = await post([{ id: "huge-again", blobBytes: 150_000 }], "?ack=none");
      expect(unacknowledged.status).toBe(422);

      // The ledger, as kcat reads the topic: every record once, the refused one as resent.
      const ids = [...many.map((record) => record.id), "after"];
      await readTopic(topic, ids.length, 15_000);
      const ledger = (await readWithKcat(topic)).map(
        (record) => (JSON.parse(record.payload) as { id: string }).id,
      );
      expect(ledger.toSorted()).toEqual(ids.toSorted());

      // Two letters; the second may find the limit learnt already, and carry only the record's size.
      const letters = await readTopic(dlq, 2, 15_000);
      const deadLetters = letters.map(
        (letter) =>
          JSON.parse(letter.value) as { tenant: string; reason: string; record: { id: string } | null },
      );
      expect(deadLetters).toHaveLength(2);
      expect(deadLetters.some(({ record }) => record?.id === "huge" || record?.id === "huge-alone")).toBe(
        true,
      );
      for (const deadLetter of deadLetters) {
        expect(deadLetter.tenant).toBe("acme");
        expect(deadLetter.reason).toContain("MESSAGE_TOO_LARGE");
      }

      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).toContain('gateway_events_undeliverable_total{reason="too_large"} 2');
      expect(gateway.logs.some((entry) => entry.msg === "record refused by the sink: dead-lettered")).toBe(
        true,
      );
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 60_000);

  test("a topic that takes less than KAFKA_MAX_MESSAGE_BYTES at start: its limit applies, a record over it is rejected before it is accepted", async () => {
    const topic = await createLimitedTopic(`small-at-start-${runtime}`, TOPIC_LIMIT);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      KAFKA_COMPRESSION: "none",
      MAX_BODY_BYTES: String(4 * 1024 * 1024),
    });
    try {
      expect(gateway.logs.find((entry) => entry.topic === topic && entry.topicMaxMessageBytes)).toMatchObject(
        {
          level: "warn",
          topicMaxMessageBytes: TOPIC_LIMIT,
          KAFKA_MAX_MESSAGE_BYTES: 1024 * 1024,
        },
      );
      const post = async (id: string, blobBytes: number) => {
        const response = await fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${await token("acme", ["ingest"])}`,
            "content-type": "application/json",
          },
          body: JSON.stringify({
            type: "click",
            id,
            data: { element: "b", blob: incompressible(blobBytes) },
          }),
        });
        return {
          status: response.status,
          body: (await response.json()) as { errors?: Array<{ reason: string }> },
        };
      };
      // Refused by the gateway's own check against the topic's limit (the record rejected, as one that can never
      // fit KAFKA_MAX_MESSAGE_BYTES is), not accepted and then refused by Kafka with a 413.
      const huge = await post("huge", 150_000);
      expect([
        huge.status,
        huge.body.errors?.[0]?.reason.startsWith("record too large for Kafka: at most"),
      ]).toEqual([422, true]);
      // Batches are cut to the topic's limit: 30 × 20 KB land without a refusal.
      const ids = Array.from({ length: 30 }, (_, index) => `fits-${index}`);
      const answers = await Promise.all(ids.map((id) => post(id, 20_000)));
      expect(answers.map((answer) => answer.status)).toEqual(ids.map(() => 202));
      const messages = await readTopic(topic, ids.length, 15_000);
      expect(new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id))).toEqual(
        new Set(ids),
      );
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).not.toContain('gateway_events_undeliverable_total{reason="too_large"} 1');
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 60_000);
});
