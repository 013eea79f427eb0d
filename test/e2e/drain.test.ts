import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { Redis } from "ioredis";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { servicesCommand } from "../support/services.ts";
import { tempDirs } from "../support/temp-dir.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { RUNTIMES, startGateway } from "./harness.ts";

// Long enough for the broker to restart on a loaded machine (it has taken 11 s, and 15-26 s while
// the second e2e group and its own broker share the two cores).
const DRAIN_TIMEOUT_MS = 30_000;
/**
 * The drain budget of the uptime test, whose broker is frozen (pause-kafka), not restarted: thawed
 * a second after the signal, it answers at once, so the flush needs no room for a broker's start.
 */
const FROZEN_DRAIN_TIMEOUT_MS = 6000;
const temporaryFolder = tempDirs();

describe.each(RUNTIMES)("drain on %s", (runtime) => {
  test("after an uptime longer than DRAIN_TIMEOUT_MS, records queued while Kafka is down are all flushed", async () => {
    const topic = await createTopic(`drain-${runtime}`);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      DRAIN_DELAY_MS: "200",
      DRAIN_TIMEOUT_MS: String(FROZEN_DRAIN_TIMEOUT_MS),
    });
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
    };
    // The budget of the drain must start at the signal, not at startup: a budget counted from the
    // start would be spent before the signal, and the flush would give up at once (exit 1, records lost).
    await Bun.sleep(FROZEN_DRAIN_TIMEOUT_MS + 1000);
    const ids: string[] = [];
    let brokerStopped = false;
    let code: number;
    try {
      // Down without a restart to wait for: frozen, the broker answers nothing until it is thawed.
      await servicesCommand("pause-kafka");
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
      // Still draining a second into it: the budget was not spent before the signal.
      expect(gateway.process.exitCode).toBeNull();
      await servicesCommand("resume-kafka");
      brokerStopped = false;
      code = await exited;
    } finally {
      // Other tests use the broker: never leave it down.
      if (brokerStopped) await servicesCommand("resume-kafka");
    }
    const messages = await readTopic(topic, ids.length, 20_000);
    const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
    expect(ids.filter((id) => !inKafka.has(id)).length).toBe(0);
    expect(code).toBe(0);
    const flush = gateway.logs.find((entry) => entry.step === "flush the queue");
    console.log(`${runtime}: ${ids.length} records flushed in ${flush?.ms} ms of the drain`);
  }, 60_000);

  test("SIGQUIT drains like SIGTERM: records queued while Kafka is down are flushed, exit 0", async () => {
    const topic = await createTopic(`drain-sigquit-${runtime}`);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      DRAIN_DELAY_MS: "200",
      DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    });
    const ids = Array.from({ length: 50 }, (_, index) => `drain-sigquit-${runtime}-${index}`);
    let brokerStopped = false;
    let code: number;
    try {
      await servicesCommand("stop-kafka");
      brokerStopped = true;
      const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(ids.map((id) => ({ type: "click", id, data: { element: "b" } }))),
      });
      expect(response.status).toBe(202);
      // Still queued at the signal (the broker is really down): the drain is what flushes them.
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).toMatch(/^gateway_queue_records(\{[^}]*\})? [1-9]\d*$/m);
      // Before: SIGQUIT's default action ended the process at once (exit by signal), the 50 records with it.
      const exited = gateway.stop("SIGQUIT");
      await waitUntil(() => gateway.logs.some((entry) => entry.msg === "drain started"), "the drain");
      await servicesCommand("start-kafka");
      brokerStopped = false;
      code = await exited;
    } finally {
      if (brokerStopped) await servicesCommand("start-kafka");
      await gateway.stop("SIGKILL");
    }
    expect(code).toBe(0);
    expect(gateway.logs.find((entry) => entry.msg === "drain started")?.signal).toBe("SIGQUIT");
    const messages = await readTopic(topic, ids.length, 20_000);
    const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
    expect(ids.filter((id) => !inKafka.has(id))).toEqual([]);
  }, 120_000);

  test("a request still uploading when the listener closes is finished: 202, its record in Kafka, exit 0; one that stalls is cut with 503 draining halfway to the deadline", async () => {
    const topic = await createTopic(`drain-in-flight-${runtime}`);
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      JWT_SECRET: TEST_SECRET,
      DRAIN_DELAY_MS: "200",
      DRAIN_TIMEOUT_MS: "6000",
    });
    try {
      const id = `drain-in-flight-${runtime}`;
      const body = JSON.stringify({ type: "click", id, data: { element: "b" } });
      const half = Math.floor(body.length / 2);
      let received = "";
      const socket = connect(gateway.port, "127.0.0.1");
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => {
        received += chunk;
      });
      socket.on("error", () => {});
      await new Promise((resolve) => socket.once("connect", resolve));
      // Another upload that stops halfway: it would hold the drain's wait for in-flight requests to the deadline.
      let stalledAnswer = "";
      let stalledAnsweredAt = 0;
      const stalled = connect(gateway.port, "127.0.0.1");
      stalled.on("data", (chunk) => {
        stalledAnswer += chunk.toString();
        stalledAnsweredAt ||= Date.now();
      });
      stalled.on("error", () => {});
      await new Promise((resolve) => stalled.once("connect", resolve));
      stalled.write(
        `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await token("acme", ["ingest"])}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, half)}`,
      );
      socket.write(
        `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await token("acme", ["ingest"])}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, half)}`,
      );
      // In flight (the scrape is the other one) before the signal.
      await waitUntil(
        async () =>
          /^gateway_http_requests_in_flight 3$/m.test(await (await fetch(`${gateway.url}/metrics`)).text()),
        "the upload in flight",
      );
      const signalledAt = Date.now();
      const exited = gateway.stop("SIGTERM");
      await waitUntil(
        () => gateway.logs.some((entry) => entry.step === "stop listening"),
        "the listener closed",
      );
      // The drain is now waiting for this request alone; it must still be waiting a moment later.
      await Bun.sleep(500);
      socket.write(body.slice(half));
      await waitUntil(() => /\r\n\r\n/.test(received), "the answer to the upload");
      expect(received).toStartWith("HTTP/1.1 202 ");
      expect(received.toLowerCase()).toContain("connection: close");
      socket.destroy();
      expect(await exited).toBe(0);
      expect(stalledAnswer).toStartWith("HTTP/1.1 503 ");
      expect(stalledAnswer).toContain('"error":"draining"');
      // Cut halfway to the 6 s deadline (3 s), not at it: under 5 s from the signal, on a loaded machine.
      expect(stalledAnsweredAt - signalledAt).toBeLessThan(5000);
      stalled.destroy();
      const steps = gateway.logs
        .filter((entry) => entry.msg === "drain step done")
        .map((entry) => entry.step);
      expect(steps.indexOf("finish in-flight requests")).toBeGreaterThanOrEqual(0);
      expect(steps.indexOf("finish in-flight requests")).toBeLessThan(steps.indexOf("flush the queue"));
      const messages = await readTopic(topic, 1, 20_000);
      expect(messages.map((message) => (JSON.parse(message.value) as { id: string }).id)).toEqual([id]);
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 60_000);

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
      // Frozen, not stopped: the broker answers nothing, and needs no restart afterwards.
      await servicesCommand("pause-kafka");
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
      await servicesCommand("resume-kafka");
    }
    expect(code).toBe(1);
    const report = gateway.logs.find(
      (entry) => entry.msg === "drain deadline passed with records undelivered",
    );
    expect(report?.lost).toBe(30);
    expect(report?.lostBytes).toBeGreaterThan(0);
  }, 60_000);

  test("a second SIGTERM during the drain logs how many accepted records it leaves undelivered, then exits 1", async () => {
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: await createTopic(`drain-second-${runtime}`),
      JWT_SECRET: TEST_SECRET,
      DRAIN_DELAY_MS: "100",
      DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    });
    let code: number;
    try {
      // Frozen, not stopped: the broker answers nothing, and needs no restart afterwards.
      await servicesCommand("pause-kafka");
      const headers = {
        authorization: `Bearer ${await token("acme", ["ingest"])}`,
        "content-type": "application/json",
      };
      for (const count of [20, 17]) {
        const records = Array.from({ length: count }, (_, index) => ({
          type: "click",
          data: { element: `e${index}` },
        }));
        const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
          method: "POST",
          headers,
          body: JSON.stringify(records),
        });
        expect(response.status).toBe(202);
      }
      const exited = gateway.stop("SIGTERM");
      await waitUntil(
        () =>
          gateway.logs.some((entry) => entry.msg === "drain step done" && entry.step === "stop listening"),
        "the drain under way",
      );
      gateway.process.kill("SIGTERM");
      code = await exited;
    } finally {
      await servicesCommand("resume-kafka");
      await gateway.stop("SIGKILL");
    }
    expect(code).toBe(1);
    // Before: a warning "second signal: exiting now" that said nothing of the 37 records lost with it.
    const report = gateway.logs.find(
      (entry) => entry.msg === "second signal: exiting with records undelivered",
    );
    expect(report).toMatchObject({ level: "error", signal: "SIGTERM", lost: 37 });
    expect(report?.lostBytes).toBeGreaterThan(0);
  }, 60_000);
  test("a gateway killed mid-request: its Idempotency-Key and record id claims lapse within the lease and the retry on another is answered", async () => {
    const topic = await createTopic(`drain-killed-claim-${runtime}`);
    // Per-record deduplication on: the records' ids are claimed too.
    const tenant = `killed-claim-${runtime}`;
    const table = join(temporaryFolder("killed-claim-"), "tenants.json");
    writeFileSync(table, JSON.stringify({ [tenant]: { dedupWindowSec: 600 } }));
    const env = {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      REDIS_URL: services().redisUrl,
      JWT_SECRET: TEST_SECRET,
      TENANT_QUOTAS: table,
      IDEMPOTENCY_LEASE_MS: "1000",
    };
    const [killed, other] = await Promise.all([startGateway(runtime, env), startGateway(runtime, env)]);
    const key = `killed-${runtime}-${Date.now()}`;
    const records = Array.from({ length: 20 }, (_, index) => ({
      type: "click",
      id: `${key}-${index}`,
      data: { element: "b" },
    }));
    const post = async (url: string) =>
      fetch(`${url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token(tenant, ["ingest"])}`,
          "content-type": "application/json",
          "idempotency-key": key,
        },
        body: JSON.stringify(records),
      });
    const redis = new Redis(services().redisUrl);
    let brokerPaused = false;
    try {
      // Frozen: the first request holds its claim, waiting for Kafka, when its gateway is killed.
      await servicesCommand("pause-kafka");
      brokerPaused = true;
      const inFlight = post(killed.url).catch(() => undefined);
      await waitUntil(
        async () => (await redis.keys(`idem:*${key}`)).length === 1,
        "the claim of the first request",
      );
      await killed.stop("SIGKILL");
      const killedAt = performance.now();
      // Killed before it answered: the claim was held by a request that never finished.
      expect(await inFlight).toBeUndefined();
      await servicesCommand("resume-kafka");
      brokerPaused = false;
      // Before: 409 (idempotency_in_flight, then duplicate_in_flight) for IDEMPOTENCY_PENDING_SEC (60 s) after the claimant died.
      let answer = await post(other.url);
      while (answer.status === 409 && performance.now() - killedAt < 4000) {
        await Bun.sleep(100);
        answer = await post(other.url);
      }
      expect(answer.status).toBe(202);
      // Run here, not the first request's answer replayed: the claim lapsed rather than completed.
      expect(answer.headers.get("idempotency-replayed")).toBeNull();
      const replay = await post(other.url);
      expect(replay.headers.get("idempotency-replayed")).toBe("true");
      // Records the killed one had sent may land too (at least once): each id is there.
      const inKafka = new Set(
        (await readTopic(topic, records.length, 20_000)).map(
          (message) => (JSON.parse(message.value) as { id: string }).id,
        ),
      );
      expect(records.filter((record) => !inKafka.has(record.id))).toEqual([]);
    } finally {
      if (brokerPaused) await servicesCommand("resume-kafka");
      redis.disconnect();
      await killed.stop("SIGKILL");
      await other.stop("SIGKILL");
    }
  }, 60_000);
});
