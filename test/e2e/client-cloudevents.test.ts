import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloudEvent } from "cloudevents";
import { CloudEventClient, type FetchLike } from "../../clients/typescript/src/index.js";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

describe.each(RUNTIMES)("the official client's CloudEventClient against the gateway on %s", (runtime) => {
  let gateway: RunningGateway;
  let folder: string;
  let topic: string;
  const tenant = `ce-client-${runtime}-${Date.now().toString(36)}`;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "ce-client-"));
    const table = join(folder, "tenants.json");
    await writeFile(table, JSON.stringify({ [tenant]: { dedupWindowSec: 600 } }));
    topic = await createTopic(`ce-client-${runtime}`, 1);
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      REDIS_URL: services().redisUrl,
      TENANT_QUOTAS: table,
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    await rm(folder, { recursive: true, force: true });
  });

  test("batched CloudEvents land as records with ce_* headers; answers lost in transit are retried and written once", async () => {
    // Every first attempt reaches the gateway but its answer is lost: the client sends the same batch again.
    const answers: Array<{ status: number; body: Record<string, unknown>; replayed: string | null }> = [];
    let attempt = 0;
    const losingFetch: FetchLike = async (url, init) => {
      const response = await fetch(url, init);
      const body = (await response.json()) as Record<string, unknown>;
      answers.push({ status: response.status, body, replayed: response.headers.get("idempotency-replayed") });
      if (attempt++ % 2 === 0) throw new TypeError("network error: the answer was lost");
      return Response.json(body, { status: response.status, headers: response.headers });
    };
    const events = new CloudEventClient({
      url: gateway.url,
      token: await token(tenant, ["ingest"]),
      fetch: losingFetch,
      maxBatchRecords: 3,
      retry: { initialDelayMs: 10 },
    });
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      const id = events.enqueue({
        type: "click",
        source: "/shop/web",
        subject: `cart-${n}`,
        time: "2026-12-04T10:00:00.000Z",
        data: { element: `e${n}` },
      });
      ids.push(id as string);
    }
    ids.push(
      events.enqueue(
        new CloudEvent({
          type: "click",
          source: "/sdk",
          id: "sdk-event",
          partitionkey: "pk",
          data: { element: "sdk" },
        }),
      ) as string,
    );
    await events.flush();
    expect(events.stats).toMatchObject({ accepted: 6, rejected: 0, dropped: 0, retries: 2 });
    // Two batches (3 + 3), each sent twice with its Idempotency-Key: the second copy got the first
    // answer again, replayed, and wrote nothing (per-record deduplication had nothing left to catch).
    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 202, 202]);
    expect(answers.map((answer) => answer.replayed)).toEqual([null, "true", null, "true"]);
    expect(answers.map((answer) => (answer.body.duplicates as unknown[] | undefined)?.length ?? 0)).toEqual([
      0, 0, 0, 0,
    ]);
    await events.close();

    const messages = await readTopic(topic, 6);
    expect(messages.length).toBe(6);
    const byId = new Map(messages.map((message) => [JSON.parse(message.value).id as string, message]));
    expect([...byId.keys()].sort()).toEqual([...ids].sort());
    const first = byId.get(ids[0] as string);
    expect(JSON.parse(first?.value ?? "{}")).toMatchObject({
      type: "click",
      ts: "2026-12-04T10:00:00.000Z",
      data: { element: "e0" },
      tenant,
    });
    expect(Object.fromEntries(first?.headers ?? [])).toMatchObject({
      ce_specversion: "1.0",
      ce_id: ids[0],
      ce_type: "click",
      ce_source: "/shop/web",
      ce_subject: "cart-0",
      ce_time: "2026-12-04T10:00:00.000Z",
    });
    const sdk = byId.get("sdk-event");
    expect(sdk?.key).toBe("pk");
    expect(Object.fromEntries(sdk?.headers ?? [])).toMatchObject({ ce_source: "/sdk", ce_id: "sdk-event" });
  }, 30_000);
});
