import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

/**
 * What one tenant can do to another on the same instance through the
 * instance's shared, bounded memory: a tenant filling a bound pushes out its
 * own entries, never another tenant's.
 */
describe.each(RUNTIMES)("one tenant cannot push out another's state on %s", (runtime) => {
  let gateway: RunningGateway;
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "containment-"));
    const tenants = join(folder, "tenants.json");
    await writeFile(
      tenants,
      JSON.stringify({ quiet: { dedupWindowSec: 3600 }, noisy: { dedupWindowSec: 3600 } }),
    );
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: join(folder, "log"),
      TENANT_QUOTAS: tenants,
      IDEMPOTENCY_MAX_KEYS: "50",
      DEDUP_MAX_IDS: "1000",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    await rm(folder, { recursive: true, force: true });
  });

  const ingest = async (tenant: string, key: string) =>
    fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await token(tenant, ["ingest"])}`,
        "content-type": "application/json",
        "idempotency-key": key,
      },
      body: JSON.stringify({ type: "click", data: { element: "buy" } }),
    });

  test("Idempotency-Key: a tenant sending more keys than the instance keeps does not make another's retry run again", async () => {
    expect((await ingest("quiet", "order-1")).status).toBe(202);
    for (let n = 0; n < 120; n++) expect((await ingest("noisy", `key-${n}`)).status).toBe(202);
    const retry = await ingest("quiet", "order-1");
    expect(retry.status).toBe(202);
    expect(retry.headers.get("idempotency-replayed")).toBe("true");
    // The noisy tenant paid with its own oldest keys: its first one runs again.
    const noisyFirst = await ingest("noisy", "key-0");
    expect(noisyFirst.status).toBe(202);
    expect(noisyFirst.headers.get("idempotency-replayed")).toBeNull();
  }, 30_000);

  const records = async (tenant: string, ids: string[]) => {
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await token(tenant, ["ingest"])}`,
        "content-type": "application/json",
      },
      body: JSON.stringify(ids.map((id) => ({ type: "click", id, data: { element: "buy" } }))),
    });
    expect(response.status).toBe(202);
    return (await response.json()) as { accepted: number; duplicates?: Array<{ index: number; id: string }> };
  };

  test("per-record deduplication: a tenant writing more ids than the instance keeps does not make another's retry written twice", async () => {
    expect((await records("quiet", ["order-1"])).duplicates).toBeUndefined();
    for (let batch = 0; batch < 3; batch++)
      await records(
        "noisy",
        Array.from({ length: 500 }, (_, n) => `${batch}-${n}`),
      );
    expect((await records("quiet", ["order-1"])).duplicates).toEqual([{ index: 0, id: "order-1" }]);
    // The noisy tenant paid with its own oldest ids.
    expect((await records("noisy", ["0-0"])).duplicates).toBeUndefined();
  }, 30_000);
});

describe.each(RUNTIMES)("connection caps shared by WebSockets and event streams on %s", (runtime) => {
  let gateway: RunningGateway;
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "containment-caps-"));
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: folder,
      WS_MAX_CONNECTIONS: "2",
      WS_MAX_CONNECTIONS_PER_TENANT: "1",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    await rm(folder, { recursive: true, force: true });
  });

  const stream = async (tenant: string, signal: AbortSignal) =>
    fetch(`${gateway.url}/v1/sse?channel=news&token=${await token(tenant, ["subscribe"])}`, { signal });

  test("an event stream refused by a full instance is a 503 with Retry-After, as a WebSocket upgrade is", async () => {
    const open = new AbortController();
    try {
      for (const tenant of ["a", "b"]) expect((await stream(tenant, open.signal)).status).toBe(200);
      const refused = await stream("c", open.signal);
      expect(refused.status).toBe(503);
      expect(refused.headers.get("retry-after")).toBe("5");
      expect(((await refused.json()) as { error: string }).error).toBe("unavailable");
    } finally {
      open.abort();
    }
  });

  test("a tenant at WS_MAX_CONNECTIONS_PER_TENANT: its socket and its stream are refused and counted; another tenant connects", async () => {
    // The streams of the test before hold the instance's slots until their close is seen.
    await waitUntil(
      async () => (await (await fetch(`${gateway.url}/metrics`)).text()).includes("gateway_sse_streams 0"),
      "the earlier streams closed",
    );
    const open = new AbortController();
    try {
      expect((await stream("capped", open.signal)).status).toBe(200);
      const refusedStream = await stream("capped", open.signal);
      expect(refusedStream.status).toBe(429);
      expect(refusedStream.headers.get("retry-after")).toBe("5");
      // As every 429 of a limited route (SPEC.md): the cap's policy, none of it left.
      expect(refusedStream.headers.get("ratelimit-policy")).toBe('"tenant-connections";q=1');
      expect(refusedStream.headers.get("ratelimit")).toBe('"tenant-connections";r=0;t=5');
      const socket = new WebSocket(`${gateway.wsUrl}?token=${await token("capped", ["subscribe"])}`);
      const frames: Array<Record<string, unknown>> = [];
      socket.onmessage = (message) => frames.push(JSON.parse(String(message.data)));
      const code = await new Promise<number>((resolve) => {
        socket.onclose = (event) => resolve(event.code);
      });
      expect(code).toBe(1013);
      expect(frames[0]).toMatchObject({ type: "error", code: "rate_limited", retryAfterMs: 5000 });
      expect((await stream("other", open.signal)).status).toBe(200);
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).toContain('gateway_rate_limited_total{scope="tenant_connections"} 2');
    } finally {
      open.abort();
    }
  });
});

/**
 * The producer queue during a Kafka outage: it fills with whoever sends, and
 * before tenants had shares one tenant filling it got every other tenant 503.
 */
describe.each(RUNTIMES)(
  "a tenant filling the producer queue does not lock the others out on %s",
  (runtime) => {
    test("past half full, the tenant over its share gets 503 and the other tenant's batches still get 202", async () => {
      const gateway = await startGateway(runtime, {
        // Nothing answers there: records wait in the queue, and a young outage does not refuse them up front.
        KAFKA_BROKERS: "127.0.0.1:1",
        KAFKA_UNHEALTHY_AFTER_MS: "60000",
        KAFKA_QUEUE_MAX_RECORDS: "1000",
        MAX_RECORDS_PER_REQUEST: "100",
        RATE_LIMIT_ENABLED: "false",
        REDIS_URL: "",
      });
      const post = async (tenant: string, records: number) =>
        (
          await fetch(`${gateway.url}/v1/events?ack=none`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${await token(tenant, ["ingest"])}`,
              "content-type": "application/json",
            },
            body: JSON.stringify(
              Array.from({ length: records }, (_, n) => ({ type: "click", data: { element: `e${n}` } })),
            ),
          })
        ).status;
      try {
        expect(await post("quiet", 1)).toBe(202);
        const noisy: number[] = [];
        while (noisy.at(-1) !== 503 && noisy.length < 20) noisy.push(await post("noisy", 100));
        // Half the queue's 1,000 records for each of the two tenants sending: 5 batches, then 503.
        expect(noisy).toEqual([202, 202, 202, 202, 202, 503]);
        // 801 records would already have filled the queue's 900 for the topic without shares.
        expect([await post("quiet", 100), await post("quiet", 100), await post("quiet", 100)]).toEqual([
          202, 202, 202,
        ]);
        expect(await post("noisy", 100)).toBe(503);
      } finally {
        await gateway.stop("SIGKILL");
      }
    }, 60_000);

    test("publishes count in their tenant's share: a tenant filling the queue through /v1/publish gets 503 and the other tenant's batches still get 202", async () => {
      const gateway = await startGateway(runtime, {
        // Nothing answers there (the Kafka fan-out bus too): publishes wait in the queue for their acknowledgement.
        KAFKA_BROKERS: "127.0.0.1:1",
        KAFKA_UNHEALTHY_AFTER_MS: "60000",
        KAFKA_QUEUE_MAX_RECORDS: "100",
        MAX_RECORDS_PER_REQUEST: "20",
        // A publish not acknowledged in this time is answered 503 unavailable; its record stays queued.
        INGEST_ACK_TIMEOUT_MS: "100",
        RATE_LIMIT_ENABLED: "false",
        REDIS_URL: "",
      });
      const ingest = async (tenant: string, records: number) =>
        (
          await fetch(`${gateway.url}/v1/events?ack=none`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${await token(tenant, ["ingest"])}`,
              "content-type": "application/json",
            },
            body: JSON.stringify(
              Array.from({ length: records }, (_, n) => ({ type: "click", data: { element: `e${n}` } })),
            ),
          })
        ).status;
      const noisyToken = await token("noisy", ["ingest", "publish"]);
      /** A publish's status, error code and Retry-After: `503 unavailable 5` once its record is queued unacknowledged. */
      const publish = async (n: number) => {
        const response = await fetch(`${gateway.url}/v1/publish`, {
          method: "POST",
          headers: { authorization: `Bearer ${noisyToken}`, "content-type": "application/json" },
          body: JSON.stringify({ channel: "news", data: { n } }),
        });
        const body = (await response.json()) as { error?: string };
        return `${response.status} ${body.error} ${response.headers.get("retry-after")}`;
      };
      try {
        expect(await ingest("quiet", 1)).toBe(202);
        const answers: string[] = [];
        // Rounds of 10 at once, until the queue refuses them (a round takes the 100 ms ack timeout).
        while (!answers.includes("503 overloaded 1") && answers.length < 150)
          answers.push(
            ...(await Promise.all(Array.from({ length: 10 }, (_, n) => publish(answers.length + n)))),
          );
        // Half the queue's 100 records for each of the two tenants sending: 50 publishes queued, then 503.
        expect(answers.filter((answer) => answer === "503 unavailable 5").length).toBe(50);
        expect(answers.slice(50)).toEqual(Array.from({ length: 10 }, () => "503 overloaded 1"));
        // Without shares the 90 publishes the fan-out topic's lane holds would leave the quiet tenant 9 records.
        expect([await ingest("quiet", 20), await ingest("quiet", 20)]).toEqual([202, 202]);
        expect(await publish(-1)).toBe("503 overloaded 1");
        expect(await ingest("noisy", 1)).toBe(503);
      } finally {
        await gateway.stop("SIGKILL");
      }
    }, 60_000);
  },
);
