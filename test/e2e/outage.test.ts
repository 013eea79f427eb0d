import { describe, expect, test } from "bun:test";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { servicesCommand } from "../support/services.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

async function waitForHealth(url: string, status: number, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if ((await fetch(`${url}/health`)).status === status) return Date.now() - started;
    await Bun.sleep(100);
  }
  throw new Error(`/health did not answer ${status} within ${timeoutMs} ms`);
}

/** Resolves once `condition` holds; fails naming `what` after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** Reads the topic and returns the acknowledged ids that are not in it. */
async function missingFromKafka(topic: string, acknowledged: string[]): Promise<string[]> {
  const messages = await readTopic(topic, acknowledged.length, 30_000);
  const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
  return acknowledged.filter((id) => !inKafka.has(id));
}

async function postOne(gateway: RunningGateway, id: string): Promise<Response> {
  return fetch(`${gateway.url}/v1/events`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ type: "click", id, data: { element: "x" } }),
  });
}

describe.each(RUNTIMES)("Kafka outage on %s", (runtime) => {
  test("requests get 503 or wait, /health turns 503, every 202 is in Kafka, and requests sent after the broker returned get 202s", async () => {
    const topic = await createTopic(`outage-${runtime}`);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      KAFKA_UNHEALTHY_AFTER_MS: "1500",
      INGEST_ACK_TIMEOUT_MS: "4000",
    });
    // Kafka answered at start: ready as soon as it listens, before any traffic.
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
    };
    const accepted: string[] = [];
    // Acknowledged requests sent once the broker was back and /health said so.
    const acceptedAfter: string[] = [];
    let recovered = false;
    const statuses = new Map<number, number>();
    let sending = true;
    let sequence = 0;
    let networkErrors = 0;
    const sender = (async () => {
      const inFlight = new Set<Promise<void>>();
      while (sending) {
        const id = `outage-${runtime}-${sequence++}`;
        const sentAfter = recovered;
        const request = fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers,
          body: JSON.stringify({ type: "click", id, data: { element: "b" } }),
        })
          .then(async (response) => {
            await response.arrayBuffer();
            statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
            if (response.status === 202) accepted.push(id);
            if (response.status === 202 && sentAfter) acceptedAfter.push(id);
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
      await until(() => accepted.length >= 20, 20_000, "20 requests acknowledged before the outage");
      await servicesCommand("stop-kafka");
      brokerStopped = true;
      await waitForHealth(gateway.url, 503, 15_000);
      const body = (await (await fetch(`${gateway.url}/health`)).json()) as { reasons: string[] };
      expect(body.reasons).toContain("kafka_unreachable");
      await until(() => (statuses.get(503) ?? 0) > 0, 20_000, "a 503 during the outage");
      await servicesCommand("start-kafka");
      brokerStopped = false;
      await waitForHealth(gateway.url, 200, 30_000);
      recovered = true;
      await until(() => acceptedAfter.length >= 50, 30_000, "50 requests sent after the outage acknowledged");
    } finally {
      sending = false;
      await sender;
      // Other suites share the broker: never leave it down.
      if (brokerStopped) await servicesCommand("start-kafka");
    }

    expect(networkErrors).toBeLessThan(sequence / 50);
    expect([...statuses.keys()].every((status) => status === 202 || status === 503)).toBe(true);
    expect(acceptedAfter.length).toBeGreaterThanOrEqual(50);
    expect(await missingFromKafka(topic, accepted)).toEqual([]);
    await gateway.stop("SIGKILL");
  }, 90_000);
});

describe.each(RUNTIMES)("acknowledgement by default on %s", (runtime) => {
  test("with Kafka unreachable (inside the grace), a POST is answered only by Kafka's acknowledgement: 503 at the ack deadline, never a 202; ?ack=none is 202 at once", async () => {
    const gateway = await startGateway(runtime, {
      // Nothing listens there: no write is ever acknowledged.
      KAFKA_BROKERS: "127.0.0.1:1",
      // The outage is not old enough for the queue to refuse up front: only the acknowledgement can answer.
      KAFKA_UNHEALTHY_AFTER_MS: "60000",
      INGEST_ACK_TIMEOUT_MS: "1500",
      JWT_SECRET: TEST_SECRET,
    });
    try {
      const started = Date.now();
      const waited = await postOne(gateway, `unacknowledged-${runtime}`);
      expect(waited.status).toBe(503);
      expect(Number(waited.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
      const sentAt = Date.now();
      const queued = await fetch(`${gateway.url}/v1/events?ack=none`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ type: "click", id: `queued-${runtime}`, data: { element: "x" } }),
      });
      expect(queued.status).toBe(202);
      // Not held until the ack deadline: answered once queued.
      expect(Date.now() - sentAt).toBeLessThan(1400);
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 30_000);
});

// Both runtimes in one outage: a broker restart costs seconds.
test("Kafka down at start, on node and bun: the gateway still starts, answers 503 with Retry-After, and picks Kafka up when it comes: 202s, read back from Kafka", async () => {
  const topics = await Promise.all(RUNTIMES.map((runtime) => createTopic(`late-broker-${runtime}`)));
  let brokerStopped = false;
  const gateways: RunningGateway[] = [];
  try {
    await servicesCommand("stop-kafka");
    brokerStopped = true;
    for (const [index, runtime] of RUNTIMES.entries())
      gateways.push(
        await startGateway(runtime, {
          KAFKA_BROKERS: services().brokers,
          KAFKA_TOPIC: topics[index] as string,
          KAFKA_UNHEALTHY_AFTER_MS: "500",
          INGEST_ACK_TIMEOUT_MS: "2000",
          JWT_SECRET: TEST_SECRET,
        }),
      );
    for (const gateway of gateways) {
      await waitForHealth(gateway.url, 503, 10_000);
      const refused = await postOne(gateway, `late-${gateway.runtime}-refused`);
      expect(refused.status).toBe(503);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    }

    await servicesCommand("start-kafka");
    brokerStopped = false;
    for (const [index, gateway] of gateways.entries()) {
      await waitForHealth(gateway.url, 200, 60_000);
      // /health turns 200 once the broker answers metadata; on a loaded machine its partitions can
      // still be loading for a moment, so a first write may time out (503): retry it, bounded.
      const warmUp = Date.now();
      while ((await postOne(gateway, `late-${gateway.runtime}-first`)).status !== 202) {
        expect(Date.now() - warmUp).toBeLessThan(30_000);
        await Bun.sleep(250);
      }
      const acknowledged = Array.from({ length: 5 }, (_, n) => `late-${gateway.runtime}-${n}`);
      for (const id of acknowledged) expect((await postOne(gateway, id)).status).toBe(202);
      expect(await missingFromKafka(topics[index] as string, acknowledged)).toEqual([]);
    }
  } finally {
    // Other tests of this group use the broker: never leave it down.
    if (brokerStopped) await servicesCommand("start-kafka");
    await Promise.all(gateways.map((gateway) => gateway.stop("SIGKILL")));
  }
}, 120_000);
