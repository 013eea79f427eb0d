import { afterEach, describe, expect, test } from "bun:test";
import { createServer, type Socket } from "node:net";
import pino from "pino";
import { loadConfig } from "../../src/config/config.ts";
import { createS3ObjectClient, type S3ObjectClient } from "../../src/infra/aws/s3.ts";
import { TenantQuotas } from "../../src/infra/ratelimit/tenant-quotas.ts";
import { createSchemaRegistry } from "../../src/infra/validation/registry.ts";
import { TestBucket, waitFor } from "../support/s3.ts";

/**
 * The schema and quota sources against the real S3 API server of
 * scripts/services (moto, which checks request signatures), through the client
 * the gateway builds from its config: S3_ENDPOINT and the credentials come
 * from the environment that `scripts/services env` set.
 */
const REFRESH_MS = 100;
const SCHEMA = "https://json-schema.org/draft/2020-12/schema";
const objectSchema = (required: string[]) => ({ $schema: SCHEMA, type: "object", required });

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function gatewayS3Client(): S3ObjectClient {
  return createS3ObjectClient(loadConfig({ ...process.env, DEV_MODE: "true" }).s3);
}

async function testBucket(): Promise<TestBucket> {
  const bucket = await TestBucket.create();
  cleanups.push(() => bucket.destroy());
  return bucket;
}

async function schemaRegistry(source: string) {
  const calls = { loaded: [] as number[], failures: 0 };
  const schemas = createSchemaRegistry({
    source,
    refreshMs: REFRESH_MS,
    log: pino({ level: "silent" }),
    s3Client: gatewayS3Client(),
    onLoaded: (count) => calls.loaded.push(count),
    onRefreshFailure: () => calls.failures++,
  });
  cleanups.push(() => schemas.stop());
  await schemas.start();
  return { schemas, calls };
}

async function tenantQuotas(source: string) {
  const calls = { failures: 0 };
  const quotas = new TenantQuotas({
    source,
    refreshMs: REFRESH_MS,
    log: pino({ level: "silent" }),
    s3Client: gatewayS3Client(),
    onRefreshFailure: () => calls.failures++,
  });
  cleanups.push(() => quotas.stop());
  await quotas.start();
  return { quotas, calls };
}

/** Waits for `count` more GETs of `key` after `seen` and returns their statuses. */
async function nextStatuses(bucket: TestBucket, key: string, seen: number, count: number): Promise<number[]> {
  let statuses: number[] = [];
  await waitFor(async () => {
    statuses = (await bucket.getStatuses(key)).slice(seen);
    return statuses.length >= count;
  }, `${count} GETs of ${key}`);
  return statuses;
}

describe("schemas from S3", () => {
  test("an unchanged object is answered 304 and not downloaded again; a replaced one is picked up", async () => {
    const bucket = await testBucket();
    await bucket.put("schemas.json", { click: objectSchema(["element"]) });
    const { schemas, calls } = await schemaRegistry(bucket.url("schemas.json"));
    expect(schemas.types()).toEqual(["click"]);
    expect(schemas.validate("signup", {})).toEqual({ ok: false, reason: 'unknown type "signup"' });

    // The first GET downloads; every refresh after it carries the ETag and gets a 304 with no body.
    expect(await nextStatuses(bucket, "schemas.json", 0, 4)).toEqual([200, 304, 304, 304]);
    expect(calls).toEqual({ loaded: [1], failures: 0 });

    await bucket.put("schemas.json", { click: objectSchema(["element"]), signup: objectSchema(["email"]) });
    await waitFor(() => calls.loaded.length === 2, "the replaced object");
    expect(schemas.validate("signup", { email: "a@example.com" })).toEqual({ ok: true });
    const seen = (await bucket.getStatuses("schemas.json")).length;
    expect(await nextStatuses(bucket, "schemas.json", seen, 2)).toEqual([304, 304]);
    expect(calls).toEqual({ loaded: [1, 2], failures: 0 });
  });

  test("a deleted or broken object keeps the last good set, and each failed refresh is counted", async () => {
    const bucket = await testBucket();
    await bucket.put("schemas.json", { click: objectSchema([]) });
    const { schemas, calls } = await schemaRegistry(bucket.url("schemas.json"));

    await bucket.delete("schemas.json");
    await waitFor(() => calls.failures >= 2, "failed refreshes of the deleted object");
    expect((await bucket.getStatuses("schemas.json")).at(-1)).toBe(404);
    expect(schemas.validate("click", {})).toEqual({ ok: true });

    await bucket.put("schemas.json", "{not json");
    const failures = calls.failures;
    await waitFor(() => calls.failures >= failures + 2, "failed refreshes of the broken object");
    expect((await bucket.getStatuses("schemas.json")).at(-1)).toBe(200);
    await bucket.put("schemas.json", { click: { type: "object", required: 7 } }); // valid JSON, not a schema
    await waitFor(() => calls.failures >= failures + 4, "failed refreshes of the invalid schema");
    expect(schemas.types()).toEqual(["click"]);
    expect(schemas.validate("click", {})).toEqual({ ok: true });
    expect(calls.loaded).toEqual([1]);

    await bucket.put("schemas.json", { click: objectSchema(["element"]) });
    await waitFor(() => calls.loaded.length === 2, "a good object again");
    expect(schemas.validate("click", {}).ok).toBe(false);
  });

  test("an object that does not compile is downloaded once while it stays: each refresh is a 304, still failing", async () => {
    const bucket = await testBucket();
    await bucket.put("schemas.json", { click: objectSchema([]) });
    const { schemas, calls } = await schemaRegistry(bucket.url("schemas.json"));
    await bucket.put("schemas.json", { click: { $ref: "#/$defs/missing" } });
    const seen = (await bucket.getStatuses("schemas.json")).length;
    await waitFor(() => calls.failures >= 4, "failed refreshes of the object that does not compile");
    const statuses = await nextStatuses(bucket, "schemas.json", seen, 4);
    // The first read after the replacement downloads it; the refreshes after it ask with its ETag.
    expect(statuses.indexOf(200)).toBe(statuses.lastIndexOf(200));
    expect(statuses.slice(statuses.indexOf(200) + 1).every((status) => status === 304)).toBe(true);
    expect(schemas.validate("click", {})).toEqual({ ok: true });
    expect(calls.loaded).toEqual([1]);
  });

  test("start() rejects when the object is missing", async () => {
    const bucket = await testBucket();
    await expect(schemaRegistry(bucket.url("missing.json"))).rejects.toThrow(/key does not exist/i);
  });
});

describe("tenant quotas from S3", () => {
  test("a replaced object changes a tenant's budget; an unchanged one is answered 304", async () => {
    const bucket = await testBucket();
    await bucket.put("quotas.json", { acme: { eventsPerSec: 10 } });
    const { quotas, calls } = await tenantQuotas(bucket.url("quotas.json"));
    expect(quotas.eventsPerSec("acme")).toBe(10);
    expect(await nextStatuses(bucket, "quotas.json", 0, 3)).toEqual([200, 304, 304]);

    await bucket.put("quotas.json", { acme: { eventsPerSec: 20 }, globex: { eventsPerSec: 5 } });
    await waitFor(() => quotas.eventsPerSec("acme") === 20, "the new budget");
    expect(quotas.eventsPerSec("globex")).toBe(5);
    const seen = (await bucket.getStatuses("quotas.json")).length;
    expect(await nextStatuses(bucket, "quotas.json", seen, 2)).toEqual([304, 304]);
    expect(calls.failures).toBe(0);
  });

  test("a deleted or broken object keeps the last good table, and each failed refresh is counted", async () => {
    const bucket = await testBucket();
    await bucket.put("quotas.json", { acme: { eventsPerSec: 10 } });
    const { quotas, calls } = await tenantQuotas(bucket.url("quotas.json"));

    await bucket.delete("quotas.json");
    await waitFor(() => calls.failures >= 2, "failed refreshes of the deleted object");
    expect(quotas.eventsPerSec("acme")).toBe(10);

    await bucket.put("quotas.json", { acme: { eventsPerSec: -1 } });
    const failures = calls.failures;
    await waitFor(() => calls.failures >= failures + 2, "failed refreshes of the broken object");
    expect(quotas.eventsPerSec("acme")).toBe(10);

    await bucket.put("quotas.json", { acme: { eventsPerSec: 30 } });
    await waitFor(() => quotas.eventsPerSec("acme") === 30, "a good object again");
  });
});

describe("S3 failures", () => {
  test("name the object, as a URL's failures name the URL: a missing key, a missing bucket, a store not there", async () => {
    const bucket = await testBucket();
    const reasonFor = (client: S3ObjectClient, location: { bucket: string; key: string }) =>
      client.getObject(location, undefined, 1024).then(
        () => "read",
        (error: Error) => error.message,
      );
    expect(await reasonFor(gatewayS3Client(), { bucket: bucket.name, key: "missing.json" })).toBe(
      `GET s3://${bucket.name}/missing.json: NoSuchKey: The specified key does not exist.`,
    );
    expect(
      await reasonFor(gatewayS3Client(), { bucket: `${bucket.name}-gone`, key: "quotas.json" }),
    ).toStartWith(`GET s3://${bucket.name}-gone/quotas.json: NoSuchBucket: `);
    const nowhere = createS3ObjectClient({
      endpoint: "http://127.0.0.1:1",
      forcePathStyle: true,
      region: "us-east-1",
    });
    expect(await reasonFor(nowhere, { bucket: "b", key: "k.json" })).toMatch(
      /^GET s3:\/\/b\/k\.json: .*ECONNREFUSED/,
    );
  });

  test("an object larger than the limit is refused, naming it; one at the limit is read", async () => {
    const bucket = await testBucket();
    await bucket.put("at-limit.json", `${" ".repeat(1022)}{}`);
    await bucket.put("over-limit.json", `${" ".repeat(1023)}{}`);
    const client = gatewayS3Client();
    const read = await client.getObject({ bucket: bucket.name, key: "at-limit.json" }, undefined, 1024);
    expect(read !== "not-modified" && read.text.length).toBe(1024);
    await expect(
      client.getObject({ bucket: bucket.name, key: "over-limit.json" }, undefined, 1024),
    ).rejects.toThrow(
      `GET s3://${bucket.name}/over-limit.json: larger than 1024 bytes, the limit of a remote document`,
    );
    // The client and its connections still serve the next read.
    expect(await client.getObject({ bucket: bucket.name, key: "at-limit.json" }, undefined, 1024)).not.toBe(
      "not-modified",
    );
  });

  test("a failed start says which object", async () => {
    const bucket = await testBucket();
    await expect(tenantQuotas(bucket.url("missing.json"))).rejects.toThrow(
      `GET ${bucket.url("missing.json")}: NoSuchKey`,
    );
  });
});

describe("an S3 endpoint that stops answering", () => {
  /** A TCP server that accepts and then stays silent, or sends headers and never the body: no S3 server can be made to. */
  async function silentServer(answer: string) {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.once("data", () => socket.write(answer));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy();
      server.close();
    });
    return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }

  test("an object streamed without end is read up to the limit, and the connection dropped there", async () => {
    let sent = 0;
    let closed = false;
    const server = createServer((socket) => {
      socket.once("data", () => {
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: "e1"\r\n\r\n');
        const chunk = `4000\r\n${" ".repeat(0x4000)}\r\n`;
        const more = () => {
          while (!socket.destroyed && socket.write(chunk)) sent += 0x4000;
          if (!socket.destroyed) socket.once("drain", more);
        };
        more();
      });
      socket.on("error", () => {}); // the reset that drops the read
      socket.on("close", () => {
        closed = true;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => server.close());
    const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const client = createS3ObjectClient({ endpoint, forcePathStyle: true, region: "us-east-1" }, 5000);
    await expect(
      client.getObject({ bucket: "bucket", key: "schemas.json" }, undefined, 1024 * 1024),
    ).rejects.toThrow("GET s3://bucket/schemas.json: larger than 1048576 bytes");
    await waitFor(() => closed, "the connection closed");
    expect(sent).toBeLessThan(1024 * 1024 + 8 * 1024 * 1024);
  });

  for (const [what, answer] of [
    ["no answer", ""],
    ["headers but no body", 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nETag: "e1"\r\n\r\n{'],
  ]) {
    test(`a read that gets ${what} fails after the timeout, so refreshes go on`, async () => {
      const endpoint = await silentServer(answer as string);
      const client = createS3ObjectClient({ endpoint, forcePathStyle: true, region: "us-east-1" }, 300);
      const started = Date.now();
      await expect(
        client.getObject({ bucket: "bucket", key: "schemas.json" }, undefined, 1024),
      ).rejects.toThrow("no answer within 300 ms");
      // The rejection's message is the timeout at work; the bound only rules out a hang, generously.
      expect(Date.now() - started).toBeLessThan(10_000);
    });
  }
});
