import { afterEach, describe, expect, test } from "bun:test";
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

  async function ingest(target: RunningGateway): Promise<number> {
    const response = await fetch(`${target.url}/v1/events`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await token(`redis-url-${runtime}`, ["ingest"])}`,
        "content-type": "application/json",
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
