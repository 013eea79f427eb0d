import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { ingestClick, RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

const EMBEDDED = { KAFKA_BROKERS: "", REDIS_URL: "" };
const DEADLINE_MS = 10_000;

function metricsPortOf(gateway: RunningGateway): number {
  const port = gateway.logs.find((entry) => entry.msg === "listening")?.metricsPort;
  if (typeof port !== "number") throw new Error("the listening log line names no metricsPort");
  return port;
}

/** Polls until `check` holds or the deadline passes; returns its last answer. */
async function until<T>(read: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + DEADLINE_MS;
  let value = await read();
  while (!check(value) && Date.now() < deadline) {
    await Bun.sleep(100);
    value = await read();
  }
  return value;
}

describe.each(RUNTIMES)("METRICS_PORT on %s", (runtime) => {
  let gateway: RunningGateway;
  let metricsUrl: string;

  beforeAll(async () => {
    gateway = await startGateway(runtime, { ...EMBEDDED, METRICS_PORT: "0" });
    metricsUrl = `http://127.0.0.1:${metricsPortOf(gateway)}`;
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("/metrics is served on its own port, and no longer on the public one", async () => {
    expect(metricsPortOf(gateway)).not.toBe(gateway.port);
    const scrape = await fetch(`${metricsUrl}/metrics`);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get("content-type")).toContain("text/plain");
    expect(await scrape.text()).toContain(`gateway_info{runtime="${runtime === "bun" ? "bun" : "node-uws"}"`);
    expect((await fetch(`${gateway.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
  });

  test("the metrics port serves nothing else: no API, no health, no WebSocket", async () => {
    const ingest = await fetch(`${metricsUrl}/v1/events`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await token("acme", ["ingest"])}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ type: "click", data: { element: "x" } }),
    });
    expect(ingest.status).toBe(404);
    expect((await fetch(`${metricsUrl}/health`)).status).toBe(404);
    const upgrade = await fetch(`${metricsUrl}/v1/ws`, {
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    expect(upgrade.status).toBe(404);
  });

  test("requests on the public port are counted on the metrics port", async () => {
    await fetch(`${gateway.url}/health/live`);
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    expect(text).toContain('gateway_http_requests_total{route="/health/live",method="GET",status="200"}');
  });
});

describe.each(RUNTIMES)("METRICS_PORT through the drain on %s", (runtime) => {
  test("SIGTERM: the metrics port keeps answering, with the drain's start time, while /health is 503", async () => {
    const gateway = await startGateway(runtime, { ...EMBEDDED, METRICS_PORT: "0", DRAIN_DELAY_MS: "1500" });
    const metricsUrl = `http://127.0.0.1:${metricsPortOf(gateway)}`;
    try {
      const before = await (await fetch(`${metricsUrl}/metrics`)).text();
      expect(before).toMatch(/^gateway_drain_started_timestamp_seconds 0$/m);
      const signalledAt = Date.now() / 1000;
      gateway.process.kill("SIGTERM");
      const health = await until(
        async () => (await fetch(`${gateway.url}/health`)).status,
        (status) => status === 503,
      );
      expect(health).toBe(503);
      const during = await (await fetch(`${metricsUrl}/metrics`)).text();
      expect(during).toMatch(/^gateway_draining 1$/m);
      const started = Number(/^gateway_drain_started_timestamp_seconds (\S+)$/m.exec(during)?.[1]);
      expect(started).toBeGreaterThanOrEqual(Math.floor(signalledAt));
      expect(started).toBeLessThanOrEqual(Date.now() / 1000);
      expect(await gateway.process.exited).toBe(0);
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 30_000);
});

describe.each(RUNTIMES)("KAFKA_AFFECTS_HEALTH=false on %s", (runtime) => {
  test("Kafka down: /health stays 200 while ingest answers 503 and gateway_kafka_up is 0", async () => {
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "127.0.0.1:1",
      KAFKA_UNHEALTHY_AFTER_MS: "300",
      KAFKA_AFFECTS_HEALTH: "false",
      INGEST_ACK_TIMEOUT_MS: "2000",
      JWT_SECRET: TEST_SECRET,
    });
    try {
      // The metric says so from the first failed contact; /health waits for KAFKA_UNHEALTHY_AFTER_MS.
      const scrape = await until(
        async () => (await fetch(`${gateway.url}/metrics`)).text(),
        (text) => /^gateway_kafka_up 0$/m.test(text),
      );
      expect(scrape).toMatch(/^gateway_kafka_up 0$/m);
      const health = await until(
        async () => {
          const response = await fetch(`${gateway.url}/health`);
          return {
            status: response.status,
            body: (await response.json()) as { status: string; degraded?: string[] },
          };
        },
        ({ body }) => JSON.stringify(body.degraded) === '["kafka_unreachable"]',
      );
      expect(health.status).toBe(200);
      // In service, and saying why it is degraded.
      expect(health.body).toEqual({ status: "ok", degraded: ["kafka_unreachable"] });
      const response = await ingestClick(gateway);
      expect(response.status).toBe(503);
      expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 30_000);
});
