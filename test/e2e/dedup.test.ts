import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { responseProblems } from "../support/api-documents.ts";
import { assertExactlyOnce, createTopic, readTopic, services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

async function post(gateway: RunningGateway, body: string, authorization: string) {
  const response = await fetch(`${gateway.url}/v1/events`, {
    method: "POST",
    body,
    headers: { authorization, "content-type": "application/x-ndjson" },
  });
  const text = await response.text();
  const problems = responseProblems("POST", "/v1/events", {
    status: response.status,
    headers: response.headers,
    body: text,
  });
  expect(problems).toEqual([]);
  return { status: response.status, body: JSON.parse(text) };
}

/** Sends until the answer is not a 409 (another request writing the same ids: a client waits and asks again). */
async function send(gateway: RunningGateway, body: string, authorization: string) {
  for (;;) {
    const answer = await post(gateway, body, authorization);
    if (answer.status !== 409) return answer;
    expect(answer.body.error).toBe("duplicate_in_flight");
    await Bun.sleep(50);
  }
}

const ndjson = (ids: Array<string | undefined>) =>
  ids.map((id) => JSON.stringify({ type: "click", id, data: { element: "buy" } })).join("\n");

describe.each(RUNTIMES)("per-record deduplication by id, two instances sharing Redis, on %s", (runtime) => {
  let gateways: [RunningGateway, RunningGateway];
  let folder: string;
  let topic: string;
  const run = `${runtime}-${Date.now().toString(36)}`;
  const dedupTenant = `dedup-${run}`;
  const plainTenant = `plain-${run}`;
  let dedupAuth: string;
  let plainAuth: string;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "dedup-"));
    const table = join(folder, "tenants.json");
    await writeFile(table, JSON.stringify({ [dedupTenant]: { dedupWindowSec: 3600 } }));
    topic = await createTopic(`dedup-${runtime}`, 3);
    const env = {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      REDIS_URL: services().redisUrl,
      TENANT_QUOTAS: table,
    };
    gateways = (await Promise.all([startGateway(runtime, env), startGateway(runtime, env)])) as [
      RunningGateway,
      RunningGateway,
    ];
    dedupAuth = `Bearer ${await token(dedupTenant, ["ingest"])}`;
    plainAuth = `Bearer ${await token(plainTenant, ["ingest"])}`;
  });
  afterAll(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop("SIGKILL")));
    await rm(folder, { recursive: true, force: true });
  });

  test("retries on either instance, racing or not, are acknowledged as duplicates and written once; other tenants unchanged", async () => {
    const [a, b] = gateways;
    const BATCHES = 20;
    const SIZE = 100;
    const batch = (n: number) => ndjson(Array.from({ length: SIZE }, (_, k) => `${run}-${n}-${k}`));
    // Every batch twice, one copy to each instance: half the pairs race, half follow each other.
    const answers = await Promise.all(
      Array.from({ length: BATCHES }, async (_, n) => {
        if (n % 2 === 0) return Promise.all([send(a, batch(n), dedupAuth), send(b, batch(n), dedupAuth)]);
        const first = await send(a, batch(n), dedupAuth);
        return [first, await send(b, batch(n), dedupAuth)];
      }),
    );
    for (const pair of answers) {
      expect(pair.map((answer) => answer.status)).toEqual([202, 202]);
      for (const answer of pair) expect(answer.body.accepted).toBe(SIZE);
      // Exactly one copy wrote the batch; the other was told every record was a duplicate.
      const told = pair.map((answer) => answer.body.duplicates?.length ?? 0).sort((x, y) => x - y);
      expect(told).toEqual([0, SIZE]);
    }

    // A mixed request: written ids, a repeat within the request, a new id, and a record without id.
    const mixed = await send(b, ndjson([`${run}-0-1`, `${run}-new`, `${run}-new`, undefined]), dedupAuth);
    expect(mixed.status).toBe(202);
    expect(mixed.body).toEqual({
      accepted: 4,
      rejected: 0,
      errors: [],
      duplicates: [
        { index: 0, id: `${run}-0-1` },
        { index: 2, id: `${run}-new` },
      ],
    });

    // A tenant that did not ask: the same request twice is written twice, and the answer is the usual one.
    for (let attempt = 0; attempt < 2; attempt++) {
      const plain = await send(a, ndjson([`${run}-plain`]), plainAuth);
      expect(plain.body).toEqual({ accepted: 1, rejected: 0, errors: [] });
    }

    const expected = BATCHES * SIZE + 2 + 2;
    const messages = await readTopic(topic, expected);
    const deduplicated = messages
      .map((message) => JSON.parse(message.value))
      .filter((value) => value.tenant === dedupTenant);
    const written = deduplicated.map((value) => value.id as string).filter((id) => id.startsWith(run));
    const wanted = [
      ...Array.from({ length: BATCHES * SIZE }, (_, i) => `${run}-${Math.floor(i / SIZE)}-${i % SIZE}`),
      `${run}-new`,
    ];
    expect(assertExactlyOnce(written, wanted)).toEqual({ missing: [], duplicates: [], unexpected: [] });
    expect(deduplicated.length).toBe(wanted.length + 1);
    const plain = messages.filter((message) => JSON.parse(message.value).tenant === plainTenant);
    expect(plain.length).toBe(2);
    expect(messages.length).toBe(expected);
  }, 60_000);
});
