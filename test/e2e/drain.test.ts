import { describe, expect, test } from "bun:test";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { servicesCommand } from "../support/services.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, startGateway } from "./harness.ts";

// Long enough for the broker to restart on a loaded machine (it has taken 11 s, and 15-26 s while
// the second e2e group and its own broker share the two cores).
const DRAIN_TIMEOUT_MS = 30_000;

describe.each(RUNTIMES)("drain on %s", (runtime) => {
  test("after an uptime longer than DRAIN_TIMEOUT_MS, records queued while Kafka is down are all flushed", async () => {
    const topic = await createTopic(`drain-${runtime}`);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      DRAIN_DELAY_MS: "200",
      DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    });
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
    };
    // The budget of the drain must start at the signal, not at startup.
    await Bun.sleep(DRAIN_TIMEOUT_MS + 1000);
    const ids: string[] = [];
    let brokerStopped = false;
    let code: number;
    try {
      await servicesCommand("stop-kafka");
      brokerStopped = true;
      for (let request = 0; request < 10; request++) {
        const records = Array.from({ length: 50 }, (_, index) => ({
          type: "click",
          id: `drain-${runtime}-${request}-${index}`,
          data: { element: "b" },
        }));
        const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
          method: "POST",
          headers,
          body: JSON.stringify(records),
        });
        expect(response.status).toBe(202);
        ids.push(...records.map((record) => record.id));
      }
      const exited = gateway.stop("SIGTERM");
      await Bun.sleep(1000);
      await servicesCommand("start-kafka");
      brokerStopped = false;
      code = await exited;
    } finally {
      // Other tests use the broker: never leave it down.
      if (brokerStopped) await servicesCommand("start-kafka");
    }
    const messages = await readTopic(topic, ids.length, 20_000);
    const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
    expect(ids.filter((id) => !inKafka.has(id)).length).toBe(0);
    expect(code).toBe(0);
    const flush = gateway.logs.find((entry) => entry.step === "flush the queue");
    console.log(`${runtime}: ${ids.length} records flushed in ${flush?.ms} ms of the drain`);
  }, 120_000);

  test("records still undelivered at the drain deadline are counted in the log and the exit code is 1", async () => {
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: await createTopic(`drain-lost-${runtime}`),
      JWT_SECRET: TEST_SECRET,
      DRAIN_DELAY_MS: "100",
      DRAIN_TIMEOUT_MS: "2000",
    });
    let code: number;
    try {
      await servicesCommand("stop-kafka");
      const records = Array.from({ length: 30 }, (_, index) => ({
        type: "click",
        data: { element: `e${index}` },
      }));
      const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(records),
      });
      expect(response.status).toBe(202);
      code = await gateway.stop("SIGTERM");
    } finally {
      await servicesCommand("start-kafka");
    }
    expect(code).toBe(1);
    const report = gateway.logs.find(
      (entry) => entry.msg === "drain deadline passed with records undelivered",
    );
    expect(report?.records).toBe(30);
    // The broker's restart (in finally) is part of this test's time: generous, as for the test above.
  }, 90_000);
});
