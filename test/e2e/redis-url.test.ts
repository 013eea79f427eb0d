import { afterEach, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, runUntilExit, startGateway, waitForLog } from "./harness.ts";

/** The REDIS_URL forms users write, against the real Redis of scripts/services (embedded sink: no Kafka needed). */
describe.each(RUNTIMES)("REDIS_URL as users write it, on %s", (runtime) => {
  let gateway: RunningGateway | undefined;
  afterEach(async () => {
    await gateway?.stop("SIGKILL");
    gateway = undefined;
  });

  /** The services' Redis URL with `user:password@` in it. */
  function withCredentials(user: string, password: string): string {
    const url = new URL(services().redisUrl);
    url.username = user;
    url.password = password;
    return url.toString();
  }

  async function ingest(
    target: RunningGateway,
    tenant = `redis-url-${runtime}`,
    key?: string,
  ): Promise<number> {
    const response = await fetch(`${target.url}/v1/events`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await token(tenant, ["ingest"])}`,
        "content-type": "application/json",
        ...(key ? { "idempotency-key": key } : {}),
      },
      body: JSON.stringify({ type: "click", data: { element: "b" } }),
    });
    await response.arrayBuffer();
    return response.status;
  }

  test("a password Redis refuses: per-process limits, warned without the password", async () => {
    const password = `e2e-refused-${Date.now()}`;
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "",
      REDIS_URL: withCredentials("edge-gateway-e2e-nobody", password),
    });
    await waitForLog(gateway, "Redis unavailable: rate limits are per process");
    expect(await ingest(gateway)).toBe(202);
    const warning = gateway.logs.find(
      (entry) => entry.msg === "Redis unavailable: rate limits are per process",
    );
    // The reason is there for the operator (ioredis's error quotes the refused AUTH command)...
    expect(JSON.stringify(warning)).toContain("WRONGPASS");
    // ...but no line carries the password.
    expect(JSON.stringify(gateway.logs)).not.toContain(password);
  });

  test("a password Redis does not ask for: the client's warning is a JSON line, not text on stderr", async () => {
    // Run for 3 s (then killed): long enough to connect, and to be warned at each of its connections.
    const { stdout, stderr } = await runUntilExit(
      runtime,
      { JWT_SECRET: TEST_SECRET, KAFKA_BROKERS: "", REDIS_URL: withCredentials("", "unasked") },
      3000,
    );
    expect(stderr).toBe("");
    const lines = stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const warning = lines.find((line) => line.via === "console");
    expect(warning).toMatchObject({ level: "warn" });
    expect(String(warning?.msg)).toContain("does not require a password");
    expect(lines.some((line) => line.msg === "Redis ready: rate limits are shared across instances")).toBe(
      true,
    );
  });

  test("a database index Redis refuses: per-process limits, and no key lands in database 0", async () => {
    const tenant = `redis-db-${runtime}-${Date.now()}`;
    // The services' Redis has 16 databases.
    gateway = await startGateway(runtime, { KAFKA_BROKERS: "", REDIS_URL: `${services().redisUrl}/16` });
    await waitForLog(gateway, "Redis unavailable: rate limits are per process");
    const warning = gateway.logs.find(
      (entry) => entry.msg === "Redis unavailable: rate limits are per process",
    );
    expect(JSON.stringify(warning)).toContain("DB index is out of range");
    // Past a few reconnect attempts (each a refused SELECT), the gateway still says so and writes nowhere.
    await Bun.sleep(2500);
    expect(await ingest(gateway, tenant, "once")).toBe(202);
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toContain("gateway_rate_limiter_degraded 1");
    expect(
      gateway.logs.filter((entry) => entry.msg === "Redis ready: rate limits are shared across instances"),
    ).toEqual([]);
    const redis = new Redis(services().redisUrl);
    try {
      const keys = await redis.keys(`*${tenant}*`);
      if (keys.length > 0) await redis.del(...keys);
      expect(keys).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });

  test("a path that is no database index exits 1 naming REDIS_URL, rather than using database 0", async () => {
    const { code, stderr } = await runUntilExit(runtime, {
      JWT_SECRET: TEST_SECRET,
      KAFKA_BROKERS: "",
      REDIS_URL: `${withCredentials("app", "S3CRETPW")}/cache`,
    });
    expect(code).toBe(1);
    expect(stderr).toContain("REDIS_URL: expected redis[s]://host[:port][/db]");
    expect(stderr).not.toContain("S3CRETPW");
  });
});
