import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { assertExactlyOnce, createTopic, readTopic, readWithKcat, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

const page = (i: number, extra: Record<string, unknown> = {}) => ({
  type: "page_view",
  id: `evt-${i}`,
  data: { url: `https://example.com/${i}` },
  ...extra,
});

async function post(
  gateway: RunningGateway,
  body: string | Uint8Array,
  headers: Record<string, string>,
  query = "",
) {
  const response = await fetch(`${gateway.url}/v1/events${query}`, { method: "POST", body, headers });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

describe.each(RUNTIMES)("ingest into real Kafka on %s", (runtime) => {
  let gateway: RunningGateway;
  let topic: string;
  let deadLetters: string;
  let auth: Record<string, string>;

  beforeAll(async () => {
    topic = await createTopic(`ingest-${runtime}`);
    deadLetters = await createTopic(`dlq-${runtime}`);
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_DLQ_TOPIC: deadLetters,
      JWT_SECRET: TEST_SECRET,
    });
    auth = { authorization: `Bearer ${await token("acme", ["ingest"])}`, "content-type": "application/json" };
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("10,000 events in mixed batch sizes are all in Kafka once, with key, headers and tenant", async () => {
    const sizes = [1, 10, 100, 500, 1000];
    const expected: string[] = [];
    let next = 0;
    const requests: Array<Promise<number>> = [];
    let round = 0;
    while (next < 10_000) {
      const size = Math.min(sizes[round % sizes.length] as number, 10_000 - next);
      const records = Array.from({ length: size }, (_, k) =>
        page(next + k, (next + k) % 7 === 0 ? { key: `device-${(next + k) % 5}` } : {}),
      );
      for (const record of records) expected.push(record.id);
      next += size;
      let body: string | Uint8Array = JSON.stringify(size === 1 ? records[0] : records);
      const headers = { ...auth };
      if (round % 3 === 1) {
        body = records.map((record) => JSON.stringify(record)).join("\n");
        headers["content-type"] = "application/x-ndjson";
      } else if (round % 3 === 2) {
        body = gzipSync(body as string);
        headers["content-encoding"] = "gzip";
      }
      requests.push(post(gateway, body, headers).then((result) => result.status));
      round++;
      if (requests.length >= 8) expect(await Promise.all(requests.splice(0))).toEqual(Array(8).fill(202));
    }
    for (const status of await Promise.all(requests)) expect(status).toBe(202);

    const messages = await readTopic(topic, expected.length);
    const values = messages.map((message) => JSON.parse(message.value) as Record<string, unknown>);
    const invariants = assertExactlyOnce(
      values.map((value) => value.id as string),
      expected,
    );
    expect(invariants).toEqual({ missing: [], duplicates: [], unexpected: [] });
    for (const [index, message] of messages.entries()) {
      const value = values[index] as Record<string, unknown>;
      expect(value.tenant).toBe("acme");
      expect(typeof value.receivedAt).toBe("string");
      expect(message.key).toBe((value.key as string | undefined) ?? "acme");
      expect(message.headers.get("tenant")).toBe("acme");
      expect(message.headers.get("type")).toBe("page_view");
      expect(message.headers.get("content-type")).toBe("application/json");
    }
  }, 120_000);

  test("a record without id gets a UUIDv7", async () => {
    const result = await post(gateway, JSON.stringify({ type: "click", data: { element: "buy" } }), auth);
    expect(result.status).toBe(202);
    const messages = await readTopic(topic, 10_001, 8000);
    const click = messages
      .map((message) => JSON.parse(message.value))
      .find((value) => value.type === "click");
    expect(click?.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  }, 30_000);

  test("202 partial, and 422 when every record is rejected, with index and reason", async () => {
    const partial = await post(
      gateway,
      JSON.stringify([page(1), { type: "page_view", data: { url: 5 } }, { type: "nope", data: {} }]),
      auth,
    );
    expect(partial.status).toBe(202);
    expect(partial.body.accepted).toBe(1);
    expect(partial.body.rejected).toBe(2);
    expect(partial.body.errors).toEqual([
      { index: 1, reason: "data/url must be string", code: "schema_invalid" },
      { index: 2, reason: 'unknown type "nope"', code: "unknown_type" },
    ]);
    const none = await post(gateway, JSON.stringify([{ type: "nope", data: {} }, { data: {} }]), auth);
    expect(none.status).toBe(422);
    expect(none.body.accepted).toBe(0);
    expect((none.body.errors as unknown[]).length).toBe(2);

    const letters = (await readTopic(deadLetters, 4, 10_000)).map((message) => JSON.parse(message.value));
    expect(letters.length).toBe(4);
    expect(letters.every((letter) => letter.tenant === "acme" && typeof letter.rejectedAt === "string")).toBe(
      true,
    );
    expect(letters.map((letter) => letter.reason)).toContain("data/url must be string");
    expect(letters.find((letter) => letter.reason === 'unknown type "nope"')?.record).toEqual({
      type: "nope",
      data: {},
    });
  });

  test("400 malformed JSON, 415 wrong type, 413 too large", async () => {
    expect((await post(gateway, "{not json", auth)).status).toBe(400);
    expect(
      (await post(gateway, "a=b", { ...auth, "content-type": "application/x-www-form-urlencoded" })).status,
    ).toBe(415);
    const huge = JSON.stringify([
      { type: "page_view", data: { url: "https://e.x/", pad: "x".repeat(1_100_000) } },
    ]);
    const tooLarge = await fetch(`${gateway.url}/v1/events`, { method: "POST", body: huge, headers: auth });
    expect(tooLarge.status).toBe(413);
  });

  test("401 without or with a bad token, 403 without the ingest scope", async () => {
    const body = JSON.stringify(page(1));
    expect((await post(gateway, body, { "content-type": "application/json" })).status).toBe(401);
    expect((await post(gateway, body, { ...auth, authorization: "Bearer nope.nope.nope" })).status).toBe(401);
    const expired = await token("acme", ["ingest"], { ttlSec: -60 });
    expect((await post(gateway, body, { ...auth, authorization: `Bearer ${expired}` })).status).toBe(401);
    const subscribeOnly = await token("acme", ["subscribe"]);
    const forbidden = await post(gateway, body, { ...auth, authorization: `Bearer ${subscribeOnly}` });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error).toBe("forbidden");
  });

  test("?ack=none answers 202 once queued", async () => {
    const result = await post(gateway, JSON.stringify(page(424242)), auth, "?ack=none");
    expect(result.status).toBe(202);
  });

  test("a key with a lone surrogate is refused (no UTF-8 spells it); a surrogate pair is the Kafka key as sent", async () => {
    const body = `${JSON.stringify(page(515151, { key: "\ud83d\ude00" }))}\n${JSON.stringify(page(515152, { key: "\ud800" }))}`;
    const result = await post(gateway, body, { ...auth, "content-type": "application/x-ndjson" });
    expect(result.status).toBe(202);
    expect(result.body).toMatchObject({
      accepted: 1,
      rejected: 1,
      errors: [{ index: 1, code: "invalid_record" }],
    });
    const records = await readWithKcat(topic);
    const keyed = records.filter((record) => record.payload.includes('"evt-51515'));
    expect(keyed.map((record) => [JSON.parse(record.payload).id, record.key])).toEqual([
      ["evt-515151", "\u{1f600}"],
    ]);
  });
});

describe.each(RUNTIMES)("schema registry refresh on %s", (runtime) => {
  test("a schema added on disk is used without restart, in the draft its $schema names", async () => {
    const folder = await mkdtemp(join(tmpdir(), "schemas-"));
    await writeFile(join(folder, "alpha.json"), JSON.stringify({ type: "object", required: ["a"] }));
    const gateway = await startGateway(runtime, {
      SCHEMAS: folder,
      SCHEMAS_REFRESH_MS: "1000",
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: join(folder, "log"),
    });
    try {
      const headers = {
        authorization: `Bearer ${await token("acme", ["ingest"])}`,
        "content-type": "application/json",
      };
      const body = JSON.stringify({ type: "beta", data: { b: 1 } });
      expect((await post(gateway, body, headers)).status).toBe(422);
      // draft-06: its meta-schema is loaded from ajv's files, in the Node bundle too.
      const draft06 = { $schema: "http://json-schema.org/draft-06/schema#", type: "object", required: ["b"] };
      await writeFile(join(folder, "beta.json"), JSON.stringify(draft06));
      // Picked up by the next refresh (SCHEMAS_REFRESH_MS): waited for, not slept through.
      await waitUntil(
        async () => (await post(gateway, body, headers)).status === 202,
        "the new schema in use",
      );
    } finally {
      await gateway.stop("SIGKILL");
      await rm(folder, { recursive: true, force: true });
    }
  });
});
