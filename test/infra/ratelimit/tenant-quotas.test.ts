import { afterEach, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { parseQuotas, TenantQuotas } from "../../../src/infra/ratelimit/tenant-quotas.ts";
import { waitUntil } from "../../support/wait.ts";

let folder = "";
afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

test("the quota document is validated entry by entry", () => {
  expect(parseQuotas('{"acme":{"eventsPerSec":500}}').get("acme")).toEqual({ eventsPerSec: 500 });
  expect(parseQuotas('{"acme":{"dedupWindowSec":60}}').get("acme")).toEqual({ dedupWindowMs: 60_000 });
  expect(() => parseQuotas('{"acme":{}}')).toThrow("needs eventsPerSec or dedupWindowSec");
  expect(() => parseQuotas('{"acme":{"dedupWindowSec":0}}')).toThrow("dedupWindowSec must be");
  expect(() => parseQuotas('{"acme":{"dedupWindowSec":1.5}}')).toThrow("dedupWindowSec must be");
  expect(() => parseQuotas("[]")).toThrow();
  expect(() => parseQuotas('{"acme":{"eventsPerSec":0}}')).toThrow("positive integer");
  expect(() => parseQuotas('{"a/b":{"eventsPerSec":5}}')).toThrow("not a tenant name");
});

test("a changed file is picked up, and a broken one keeps the last good table", async () => {
  folder = await mkdtemp(join(tmpdir(), "quotas-"));
  const file = join(folder, "quotas.json");
  await writeFile(file, '{"acme":{"eventsPerSec":10}}');
  let failures = 0;
  const quotas = new TenantQuotas({
    source: file,
    refreshMs: 50,
    log: pino({ level: "silent" }),
    onRefreshFailure: () => failures++,
  });
  await quotas.start();
  expect(quotas.eventsPerSec("acme")).toBe(10);
  expect(quotas.eventsPerSec("other")).toBeUndefined();
  // Waited for, not slept on: each refresh reads the file, which a loaded machine can hold up past a
  // fixed 200 ms; and the broken file is known to have been read before the table is looked at.
  await writeFile(file, '{"acme":{"eventsPerSec":20}}');
  await waitUntil(() => quotas.eventsPerSec("acme") === 20, "the changed table");
  const failed = failures;
  await writeFile(file, "{broken");
  await waitUntil(() => failures > failed, "a failed refresh");
  expect(quotas.eventsPerSec("acme")).toBe(20);
  quotas.stop();
});
