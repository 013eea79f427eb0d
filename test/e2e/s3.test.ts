import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { s3Service, TestBucket, waitFor } from "../support/s3.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { RUNTIMES, type RunningGateway, runUntilExit, startGateway } from "./harness.ts";

/**
 * SCHEMAS and TENANT_QUOTAS read from the real S3 API server of
 * scripts/services (moto, which checks request signatures). The gateway gets
 * S3_ENDPOINT and the AWS credentials from its environment, as set by
 * `scripts/services env`; nothing S3-specific is passed to it here.
 */
const SCHEMA = "https://json-schema.org/draft/2020-12/schema";
const objectSchema = (required: string[]) => ({ $schema: SCHEMA, type: "object", required });
const TENANT = "s3-tenant";

async function post(gateway: RunningGateway, records: object[]) {
  const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token(TENANT, ["ingest"])}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(records),
  });
  await response.arrayBuffer();
  return response;
}

const signup = { type: "signup", data: { email: "a@example.com" } };

async function metric(gateway: RunningGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
}

describe.each(RUNTIMES)("schemas and tenant quotas from S3 on %s", (runtime) => {
  let bucket: TestBucket;
  let folder: string;
  let gateway: RunningGateway;

  beforeAll(async () => {
    s3Service();
    bucket = await TestBucket.create();
    folder = await mkdtemp(join(tmpdir(), "s3-e2e-"));
    await bucket.put("schemas.json", { click: objectSchema(["element"]) });
    await bucket.put("quotas.json", { [TENANT]: { eventsPerSec: 5 } });
    gateway = await startGateway(runtime, {
      SCHEMAS: bucket.url("schemas.json"),
      SCHEMAS_REFRESH_MS: "1000",
      TENANT_QUOTAS: bucket.url("quotas.json"),
      TENANT_QUOTAS_REFRESH_MS: "1000",
      REDIS_URL: "", // the per-process limiter: budgets are this gateway's alone
      LOCAL_LOG_DIR: folder,
    });
  });
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
    await bucket?.destroy();
    await rm(folder, { recursive: true, force: true });
  });

  test("objects replaced while the gateway runs are picked up: a new event type, a new budget", async () => {
    expect((await post(gateway, [signup])).status).toBe(422);
    expect(
      (await post(gateway, [{ type: "click", data: { element: "a" } }])).headers.get("ratelimit-limit"),
    ).toBe("5");

    await bucket.put("schemas.json", { click: objectSchema(["element"]), signup: objectSchema(["email"]) });
    await bucket.put("quotas.json", { [TENANT]: { eventsPerSec: 1000 } });
    await waitFor(async () => (await post(gateway, [signup])).status === 202, "signup accepted");
    await waitFor(
      async () => (await post(gateway, [signup])).headers.get("ratelimit-limit") === "1000",
      "the new budget",
    );
  });

  test("unchanged objects are answered 304: not downloaded again", async () => {
    const before = {
      schemas: (await bucket.getStatuses("schemas.json")).length,
      quotas: (await bucket.getStatuses("quotas.json")).length,
    };
    const since = async () => ({
      schemas: (await bucket.getStatuses("schemas.json")).slice(before.schemas),
      quotas: (await bucket.getStatuses("quotas.json")).slice(before.quotas),
    });
    await waitUntil(async () => {
      const { schemas, quotas } = await since();
      return schemas.length >= 2 && quotas.length >= 2;
    }, "two refreshes of each");
    const { schemas, quotas } = await since();
    expect(schemas.length).toBeGreaterThanOrEqual(2);
    expect(quotas.length).toBeGreaterThanOrEqual(2);
    expect(new Set([...schemas, ...quotas])).toEqual(new Set([304]));
    expect(gateway.logs.filter((line) => line.msg === "schemas loaded")).toHaveLength(2);
  });

  test("a deleted or broken object keeps the last good copy, and the failed refreshes are counted", async () => {
    expect(await metric(gateway, "gateway_schema_refresh_failures_total")).toBe(0);
    expect(await metric(gateway, "gateway_tenant_quota_refresh_failures_total")).toBe(0);
    await bucket.delete("schemas.json");
    await bucket.put("quotas.json", "{broken");
    await waitFor(
      async () =>
        (await metric(gateway, "gateway_schema_refresh_failures_total")) >= 1 &&
        (await metric(gateway, "gateway_tenant_quota_refresh_failures_total")) >= 1,
      "both refresh failure counters",
    );
    const accepted = await post(gateway, [signup]);
    expect(accepted.status).toBe(202);
    expect(accepted.headers.get("ratelimit-limit")).toBe("1000");
  });

  test("the AWS SDK's warnings (Node 20: its Node version support notice) are warn lines, never errors or plain text", async () => {
    const lines = gateway.logs.filter((line) => JSON.stringify(line).includes("NodeVersionSupportWarning"));
    const major = Number(/^v(\d+)/.exec(Bun.spawnSync(["node", "--version"]).stdout.toString())?.[1]);
    if (runtime === "node" && major < 22) expect(lines.length).toBe(1);
    for (const line of lines) {
      expect(line).toMatchObject({ level: "warn", via: "process warning", warning: "Warning" });
      expect(line.msg).toStartWith("NodeVersionSupportWarning: The AWS SDK for JavaScript (v3)");
    }
    expect(gateway.logs.filter((line) => line.level === "error" || "raw" in line)).toEqual([]);
  });

  test("S3 credentials come from the environment: other credentials, or none, and the gateway does not start", async () => {
    const source = {
      SCHEMAS: bucket.url("credentials.json"),
      JWT_SECRET: TEST_SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
      LOCAL_LOG_DIR: folder,
    };
    await bucket.put("credentials.json", { click: objectSchema([]) });

    const wrongSecret = await runUntilExit(runtime, { ...source, AWS_SECRET_ACCESS_KEY: "not-the-secret" });
    expect(wrongSecret.code).toBe(1);
    expect(wrongSecret.stdout + wrongSecret.stderr).toContain("SignatureDoesNotMatch");

    const noCredentials = await runUntilExit(runtime, {
      ...source,
      AWS_ACCESS_KEY_ID: "",
      AWS_SECRET_ACCESS_KEY: "",
      // The rest of the default chain finds nothing either, without asking any metadata service.
      AWS_SHARED_CREDENTIALS_FILE: join(folder, "none"),
      AWS_CONFIG_FILE: join(folder, "none"),
      AWS_EC2_METADATA_DISABLED: "true",
    });
    expect(noCredentials.code).toBe(1);
    expect(noCredentials.stdout + noCredentials.stderr).toContain("Could not load credentials");
  });
});
