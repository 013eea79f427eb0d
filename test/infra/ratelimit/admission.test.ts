import { expect, test } from "bun:test";
import pino from "pino";
import type { GatewayError } from "../../../src/domain/errors.ts";
import { createAdmission } from "../../../src/infra/ratelimit/admission.ts";
import { RateLimits } from "../../../src/infra/ratelimit/limiter.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import type { RateLimitFields } from "../../../src/ports/admission.ts";
import type { HttpRequest } from "../../../src/ports/transport.ts";

/** Admission on the per-process limiter (no REDIS_URL), with a per-IP budget of `requestsPerSec`. */
function admission(requestsPerSec: number) {
  const limits = new RateLimits(
    {
      redisUrl: undefined,
      eventsPerSec: 100,
      requestsPerSec,
      connectsPerSec: 100,
      expectedInstances: 1,
      redisTimeoutMs: 250,
    },
    createMetrics("test", "0"),
    pino({ level: "silent" }),
  );
  return { limits, admission: createAdmission(limits, undefined, { enabled: true, trustProxyHops: 0 }) };
}

const from = (remoteAddress: string) =>
  ({ remoteAddress, header: () => undefined }) as unknown as HttpRequest;

/** Every field of an admitted request's answer, as a reply writes them. */
const fieldsOf = (admitted: RateLimitFields | undefined) => ({
  ...admitted?.shared.fields,
  ...admitted?.own,
});

test("a read route's request is answered with the ip policy's fields, legacy and structured (SPEC: 2xx of limited routes carry them)", async () => {
  const { limits, admission: admit } = admission(3);
  const ip = `198.51.100.${Date.now() % 250}`;
  expect(fieldsOf(await admit.read(from(ip)))).toEqual({
    "ratelimit-limit": "3",
    "ratelimit-remaining": "2",
    "ratelimit-reset": "1",
    "ratelimit-policy": '"ip";q=3;w=1',
    ratelimit: '"ip";r=2;t=1',
  });
  await admit.read(from(ip));
  await admit.read(from(ip));
  const refused = (await Promise.resolve(admit.read(from(ip))).catch((error) => error)) as GatewayError;
  expect(refused.code).toBe("rate_limited");
  expect(refused.headers["ratelimit-policy"]).toBe('"ip";q=3;w=1');
  expect(refused.headers["retry-after"]).toBe("1");
  await limits.close();
});

test("reads and writes spend the same per-IP budget", async () => {
  const { limits, admission: admit } = admission(2);
  const ip = `203.0.113.${Date.now() % 250}`;
  await admit.request(from(ip));
  expect(fieldsOf(await admit.read(from(ip)))["ratelimit-remaining"]).toBe("0");
  await expect(Promise.resolve(admit.request(from(ip)))).rejects.toMatchObject({ code: "rate_limited" });
  await limits.close();
});

test("with limits off a read has no fields to answer with", () => {
  const { admission: off } = {
    admission: createAdmission({} as RateLimits, undefined, { enabled: false, trustProxyHops: 0 }),
  };
  expect(off.read(from("192.0.2.1"))).toBeUndefined();
});
