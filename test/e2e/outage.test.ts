import { describe, expect, test } from "bun:test";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { servicesCommand } from "../support/services.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, startGateway } from "./harness.ts";

async function waitForHealth(url: string, status: number, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if ((await fetch(`${url}/health`)).status === status) return Date.now() - started;
    await Bun.sleep(100);
  }
  throw new Error(`/health did not answer ${status} within ${timeoutMs} ms`);
}

describe.each(RUNTIMES)("Kafka outage on %s", (runtime) => {
  test("requests get 503 or wait, /health turns 503, and every 202 is in Kafka after the broker returns", async () => {
    const topic = await createTopic(`outage-${runtime}`);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      KAFKA_UNHEALTHY_AFTER_MS: "1500",
      INGEST_ACK_TIMEOUT_MS: "4000",
    });
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
    };
    const accepted: string[] = [];
    const statuses = new Map<number, number>();
    let sending = true;
    let sequence = 0;
    let networkErrors = 0;
    const sender = (async () => {
      const inFlight = new Set<Promise<void>>();
      while (sending) {
        const id = `outage-${runtime}-${sequence++}`;
        const request = fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers,
          body: JSON.stringify({ type: "click", id, data: { element: "b" } }),
        })
          .then(async (response) => {
            await response.arrayBuffer();
            statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
            if (response.status === 202) accepted.push(id);
          })
          // A keep-alive connection the server closed as idle just as the client reused it: no answer, not accepted.
          .catch(() => void networkErrors++)
          .finally(() => inFlight.delete(request));
        inFlight.add(request);
        await Bun.sleep(20);
      }
      await Promise.all(inFlight);
    })();

    let brokerStopped = false;
    try {
      await Bun.sleep(1000);
      await servicesCommand("stop-kafka");
      brokerStopped = true;
      await waitForHealth(gateway.url, 503, 15_000);
      const body = (await (await fetch(`${gateway.url}/health`)).json()) as { reasons: string[] };
      expect(body.reasons).toContain("kafka_unreachable");
      await Bun.sleep(1000);
      await servicesCommand("start-kafka");
      brokerStopped = false;
      await waitForHealth(gateway.url, 200, 30_000);
      await Bun.sleep(1500);
    } finally {
      sending = false;
      await sender;
      // Other suites share the broker: never leave it down.
      if (brokerStopped) await servicesCommand("start-kafka");
    }

    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);
    expect(statuses.get(202) ?? 0).toBeGreaterThan(50);
    expect(networkErrors).toBeLessThan(sequence / 50);
    expect([...statuses.keys()].every((status) => status === 202 || status === 503)).toBe(true);
    const messages = await readTopic(topic, accepted.length, 30_000);
    const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
    expect(accepted.filter((id) => !inKafka.has(id))).toEqual([]);
    await gateway.stop("SIGKILL");
  }, 90_000);
});

describe.each(RUNTIMES)("Kafka down at start on %s", (runtime) => {
  test("the gateway still starts, /health turns 503 and ingest answers 503 with Retry-After", async () => {
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "127.0.0.1:1",
      KAFKA_UNHEALTHY_AFTER_MS: "500",
      INGEST_ACK_TIMEOUT_MS: "2000",
      JWT_SECRET: TEST_SECRET,
    });
    try {
      await waitForHealth(gateway.url, 503, 10_000);
      const response = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ type: "click", data: { element: "x" } }),
      });
      expect(response.status).toBe(503);
      expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 30_000);
});
