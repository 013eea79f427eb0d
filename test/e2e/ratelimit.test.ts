import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { services } from "../support/kafka.ts";
import { servicesCommand } from "../support/services.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

const BUDGET = 200;

/** Waits until the gateway says Redis is in charge (gateway_rate_limiter_degraded 0). */
async function waitForSharedLimits(gateway: RunningGateway): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    if (text.includes("gateway_rate_limiter_degraded 0")) return;
    await Bun.sleep(100);
  }
  throw new Error("the gateway never reported Redis ready");
}

async function postBatch(gateway: RunningGateway, tenant: string, size: number) {
  const records = Array.from({ length: size }, () => ({ type: "click", data: { element: "x" } }));
  const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token(tenant, ["ingest"])}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(records),
  });
  await response.arrayBuffer();
  return response;
}

/** Fires `requests` batches of 10 at the two gateways at once and sums what was admitted. */
async function burst(gateways: RunningGateway[], tenant: string, requests: number) {
  const responses = await Promise.all(
    Array.from({ length: requests }, (_, i) =>
      postBatch(gateways[i % gateways.length] as RunningGateway, tenant, 10),
    ),
  );
  const statuses = responses.map((response) => response.status);
  return { admitted: statuses.filter((status) => status === 202).length * 10, statuses, responses };
}

describe.each(RUNTIMES)("rate limits shared through Redis on %s", (runtime) => {
  let gateways: RunningGateway[];
  let folder: string;
  const vip = `vip${Date.now()}`;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "ratelimit-"));
    await writeFile(join(folder, "quotas.json"), JSON.stringify({ [vip]: { eventsPerSec: 50 } }));
    const env = {
      TENANT_QUOTAS: join(folder, "quotas.json"),
      REDIS_URL: services().redisUrl,
      JWT_SECRET: TEST_SECRET,
      RATE_LIMIT_EVENTS_PER_SEC: String(BUDGET),
      RATE_LIMIT_EXPECTED_INSTANCES: "2",
    };
    gateways = await Promise.all([
      startGateway(runtime, { ...env, LOCAL_LOG_DIR: join(folder, "a") }),
      startGateway(runtime, { ...env, LOCAL_LOG_DIR: join(folder, "b") }),
    ]);
    await Promise.all(gateways.map(waitForSharedLimits));
  });
  afterAll(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop("SIGKILL")));
    await rm(folder, { recursive: true, force: true });
  });

  test("two instances together admit the tenant's budget in a window; another tenant is unaffected", async () => {
    const tenant = `t${Date.now()}`;
    const { admitted, statuses } = await burst(gateways, tenant, 40);
    expect(admitted).toBeGreaterThanOrEqual(BUDGET * 0.95);
    expect(admitted).toBeLessThanOrEqual(BUDGET * 1.05);
    expect(statuses.filter((status) => status !== 202 && status !== 429)).toEqual([]);
    expect((await postBatch(gateways[0] as RunningGateway, `other${Date.now()}`, 10)).status).toBe(202);
  });

  test("a tenant listed in the quota table gets its own budget", async () => {
    const { admitted } = await burst(gateways, vip, 20);
    expect(admitted).toBe(50);
    const refused = await postBatch(gateways[0] as RunningGateway, vip, 10);
    expect(refused.headers.get("ratelimit-limit")).toBe("50");
  });

  test("429 carries Retry-After and RateLimit-*, successes carry RateLimit-*, and a retry after Retry-After succeeds", async () => {
    const tenant = `h${Date.now()}`;
    const ok = await postBatch(gateways[0] as RunningGateway, tenant, 10);
    expect(ok.status).toBe(202);
    expect(ok.headers.get("ratelimit-limit")).toBe(String(BUDGET));
    expect(ok.headers.get("ratelimit-remaining")).toBe(String(BUDGET - 10));
    const refused = await postBatch(gateways[1] as RunningGateway, tenant, BUDGET);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("ratelimit-limit")).toBe(String(BUDGET));
    expect(refused.headers.get("ratelimit-remaining")).toBe("0");
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get("ratelimit-reset"))).toBeGreaterThanOrEqual(1);
    await Bun.sleep(retryAfter * 1000);
    expect((await postBatch(gateways[1] as RunningGateway, tenant, 10)).status).toBe(202);
  });

  test("Redis down: no 5xx and per-process limits; Redis back: shared limits again", async () => {
    let redisStopped = false;
    try {
      await servicesCommand("stop-redis");
      redisStopped = true;
      await Bun.sleep(300);
      const degraded = await burst(gateways, `d${Date.now()}`, 40);
      expect(degraded.statuses.filter((status) => status >= 500)).toEqual([]);
      // Each instance allows budget ÷ expected instances on its own.
      expect(degraded.admitted).toBeGreaterThanOrEqual(BUDGET * 0.95);
      expect(degraded.admitted).toBeLessThanOrEqual(BUDGET * 1.05);
      const metrics = await (await fetch(`${(gateways[0] as RunningGateway).url}/metrics`)).text();
      expect(metrics).toContain("gateway_rate_limiter_degraded 1");
      // A batch within the budget but over this instance's share never fits while Redis is down: the
      // answer says to split it (the share as RateLimit-Limit), not to retry it after Retry-After.
      const overShare = await fetch(`${(gateways[0] as RunningGateway).url}/v1/events?ack=none`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token(`o${Date.now()}`, ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(Array(BUDGET / 2 + 1).fill({ type: "click", data: { element: "x" } })),
      });
      expect(overShare.status).toBe(429);
      expect(((await overShare.json()) as { error: string }).error).toBe("batch_over_budget");
      expect(overShare.headers.get("ratelimit-limit")).toBe(String(BUDGET / 2));

      await servicesCommand("start-redis");
      redisStopped = false;
      await waitForSharedLimits(gateways[0] as RunningGateway);
      await Bun.sleep(1000);
      const shared = await burst(
        [gateways[0] as RunningGateway, gateways[0] as RunningGateway],
        `s${Date.now()}`,
        40,
      );
      // One instance alone now gets the whole shared budget, not its per-process share.
      expect(shared.admitted).toBeGreaterThanOrEqual(BUDGET * 0.95);
      expect(shared.admitted).toBeLessThanOrEqual(BUDGET * 1.05);
    } finally {
      if (redisStopped) await servicesCommand("start-redis");
    }
  }, 60_000);
});

/**
 * The shared budget seen from outside: gateways on both runtimes spend one
 * tenant's budget from one Redis, each from slices it leases, under twice the
 * budget's demand; a third gateway joins halfway. Windows are one second and
 * each opens on the first lease after the last closed, so 10 s of traffic
 * spans at most 10 of them (plus what was in flight at the end).
 */
describe("one tenant's budget over 10 s, leased by several gateways", () => {
  const LIMIT = 2000;
  const BATCH = 10;
  const RUN_MS = 10_000;
  /** Each client sends a batch this often: 4 clients × 10 batches of 10 / 100 ms = twice LIMIT. */
  const PACE_MS = 10;
  let gateways: RunningGateway[];
  let folder: string;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "ratelimit-shared-"));
    const env = { REDIS_URL: services().redisUrl, RATE_LIMIT_EVENTS_PER_SEC: String(LIMIT) };
    gateways = await Promise.all(
      (["node", "bun", "bun"] as const).map((runtime, i) =>
        startGateway(runtime, { ...env, LOCAL_LOG_DIR: join(folder, String(i)) }),
      ),
    );
    await Promise.all(gateways.map(waitForSharedLimits));
  });
  afterAll(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop("SIGKILL")));
    await rm(folder, { recursive: true, force: true });
  });

  test("two gateways admit the budget within 10%, and a third joining does not raise it", async () => {
    const tenant = `shared${Date.now()}`;
    const authorization = `Bearer ${await token(tenant, ["ingest"])}`;
    const body = JSON.stringify(
      Array.from({ length: BATCH }, () => ({ type: "click", data: { element: "x" } })),
    );
    const start = performance.now();
    const half = start + RUN_MS / 2;
    const accepted = { first: 0, second: 0 };
    const otherStatuses: number[] = [];
    /** One client: a batch every PACE_MS to `gateway` from `from` until the end of the run. */
    const client = async (gateway: RunningGateway, from: number) => {
      await Bun.sleep(from - performance.now());
      for (let next = performance.now(); next < start + RUN_MS; next += PACE_MS) {
        await Bun.sleep(Math.max(0, next - performance.now()));
        const sentAt = performance.now();
        const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
          method: "POST",
          headers: { authorization, "content-type": "application/json" },
          body,
        });
        await response.arrayBuffer();
        if (response.status === 202) accepted[sentAt < half ? "first" : "second"] += BATCH;
        else if (response.status !== 429) otherStatuses.push(response.status);
      }
    };
    const [node, bun, third] = gateways as [RunningGateway, RunningGateway, RunningGateway];
    await Promise.all([
      client(node, start),
      client(node, start),
      client(bun, start),
      client(bun, start),
      client(third, half),
      client(third, half),
    ]);
    expect(otherStatuses).toEqual([]);
    const total = accepted.first + accepted.second;
    const budget = (LIMIT * RUN_MS) / 1000;
    expect(total).toBeGreaterThanOrEqual(budget * 0.9);
    expect(total).toBeLessThanOrEqual(budget * 1.1);
    // The half with three gateways gets no more than the half with two.
    expect(accepted.second).toBeLessThanOrEqual(budget * 0.55);
    expect(accepted.first).toBeGreaterThanOrEqual(budget * 0.45);
  }, 40_000);
});

/**
 * The per-IP request budget on the read routes, as on the writes and /v1/sse:
 * one gateway alone (no Redis), each test from its own client IP (TRUST_PROXY
 * takes it from X-Forwarded-For), so each starts with a whole window.
 */
describe.each(RUNTIMES)("the per-IP request budget on the read routes on %s", (runtime) => {
  const REQUESTS = 2;
  let gateway: RunningGateway;
  let folder: string;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "ratelimit-reads-"));
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: folder,
      TRUST_PROXY: "1",
      RATE_LIMIT_REQUESTS_PER_SEC: String(REQUESTS),
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    await rm(folder, { recursive: true, force: true });
  });

  for (const [name, path] of [
    ["history", "/v1/channels/orders/events"],
    ["presence", "/v1/channels/orders/presence"],
  ] as const) {
    test(`GET ${name}: past the budget a 429 with Retry-After and the ip policy's RateLimit-*, before the token`, async () => {
      const headers = {
        authorization: `Bearer ${await token(`reads${Date.now()}`, ["subscribe"])}`,
        "x-forwarded-for": `198.51.100.${name === "history" ? 1 : 2}`,
      };
      const responses: Response[] = [];
      // Within one window (these take milliseconds): the budget, then one over it, then one without a token.
      for (let i = 0; i <= REQUESTS; i++) responses.push(await fetch(`${gateway.url}${path}`, { headers }));
      responses.push(
        await fetch(`${gateway.url}${path}`, { headers: { "x-forwarded-for": headers["x-forwarded-for"] } }),
      );
      const statuses = responses.map((response) => response.status);
      expect(statuses).toEqual([200, 200, 429, 429]);
      // SPEC: a limited route's 2xx carries the fields too, here the ip policy's (the route spends no other).
      const first = responses[0] as Response;
      expect(first.headers.get("ratelimit-policy")).toBe(`"ip";q=${REQUESTS};w=1`);
      expect(first.headers.get("ratelimit")).toBe(`"ip";r=${REQUESTS - 1};t=1`);
      expect(first.headers.get("ratelimit-limit")).toBe(String(REQUESTS));
      expect(first.headers.get("ratelimit-remaining")).toBe(String(REQUESTS - 1));
      const refused = responses[2] as Response;
      expect(((await refused.json()) as { error: string }).error).toBe("rate_limited");
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(refused.headers.get("ratelimit-limit")).toBe(String(REQUESTS));
      expect(refused.headers.get("ratelimit-remaining")).toBe("0");
      expect(refused.headers.get("ratelimit-policy")).toBe(`"ip";q=${REQUESTS};w=1`);
      expect(refused.headers.get("ratelimit")).toStartWith('"ip";r=0;t=');
      // Another client IP has its own budget.
      const other = await fetch(`${gateway.url}${path}`, {
        headers: { ...headers, "x-forwarded-for": "198.51.100.200" },
      });
      expect(other.status).toBe(200);
    });
  }

  test("GET /v1/sse: the stream's head carries the ip policy's fields", async () => {
    const abort = new AbortController();
    const response = await fetch(`${gateway.url}/v1/sse?channel=orders`, {
      headers: {
        authorization: `Bearer ${await token(`reads${Date.now()}`, ["subscribe"])}`,
        "x-forwarded-for": "198.51.100.3",
      },
      signal: abort.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(response.headers.get("ratelimit-policy")).toBe(`"ip";q=${REQUESTS};w=1`);
    expect(response.headers.get("ratelimit")).toBe(`"ip";r=${REQUESTS - 1};t=1`);
    abort.abort();
  });
});
