import { describe, expect, test } from "bun:test";
import { TEST_SECRET } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { freePort, RUNTIMES, runUntilExit, startGateway } from "./harness.ts";

describe.each(RUNTIMES)("log lines on %s", (runtime) => {
  test("a URL's password never reaches the log, whoever logs the URL", async () => {
    // A schema document without a type: the load fails, and the fatal line quotes the URL.
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({}) });
    try {
      const { code, stdout } = await runUntilExit(runtime, {
        DEV_MODE: "true",
        PORT: "0",
        SCHEMAS: `http://reader:s3cret-key@127.0.0.1:${server.port}/schemas.json`,
      });
      expect(code).toBe(1);
      expect(stdout).toContain(`reader:***@127.0.0.1:${server.port}`);
      expect(stdout).not.toContain("s3cret-key");
    } finally {
      server.stop(true);
    }
  });

  test("the start logs the settings in effect once, defaults filled in, secrets only as set; each worker does not repeat it", async () => {
    const gateway = await startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      WORKERS: "2",
      PORT: String(await freePort()),
      KAFKA_BROKERS: "127.0.0.1:9",
      KAFKA_SASL_MECHANISM: "plain",
      KAFKA_SASL_USERNAME: "gateway",
      KAFKA_SASL_PASSWORD: "sasl-pa55word",
      REDIS_URL: "redis://:redis-t0ken@127.0.0.1:9",
      DRAIN_TIMEOUT_MS: "12345",
    });
    try {
      await waitUntil(
        () => gateway.logs.filter((entry) => entry.msg === "listening").length === 2,
        "both workers listening",
      );
      const lines = gateway.logs.filter((entry) => entry.msg === "settings in effect");
      expect(lines).toHaveLength(1);
      const settings = lines[0]?.settings as {
        workers: number;
        drainTimeoutMs: number;
        drainDelayMs: number;
        kafka: { brokers: string[]; topic: string; saslPassword: string };
        auth: { jwtSecret: string };
        redisUrl: string;
      };
      expect(settings.workers).toBe(2);
      expect(settings.drainTimeoutMs).toBe(12345);
      expect(settings.kafka).toEqual(
        expect.objectContaining({ brokers: ["127.0.0.1:9"], topic: "events", saslPassword: "***" }),
      );
      expect(settings.auth.jwtSecret).toBe("***");
      expect(settings.redisUrl).toBe("redis://:***@127.0.0.1:9");
      const everything = JSON.stringify(gateway.logs);
      for (const secret of [TEST_SECRET, "sasl-pa55word", "redis-t0ken"])
        expect(everything).not.toContain(secret);
    } finally {
      await gateway.stop("SIGKILL");
    }
  });
});
