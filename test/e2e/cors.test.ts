import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, rawUpgrade, runUntilExit, startGateway } from "./harness.ts";

const ALLOWED = "https://app.example.com";
const OTHER = "https://evil.example.net";
const EXPOSED =
  "RateLimit-Policy, RateLimit, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, Idempotency-Replayed, Deprecation, Sunset, Link, WWW-Authenticate";

/** The status of a WebSocket upgrade sent over a raw socket. */
const upgradeStatus = async (port: number, headers: Record<string, string>) =>
  (await rawUpgrade(port, headers)).status;

describe.each(RUNTIMES)("CORS with a list of origins on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      CORS_ORIGINS: `${ALLOWED}, https://other-app.example.com`,
      RATE_LIMIT_EVENTS_PER_SEC: "1",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("a preflight from an allowed origin is a 204 naming the origin, the route's methods and the headers", async () => {
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "OPTIONS",
      headers: {
        origin: ALLOWED,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(response.headers.get("vary")).toBe("Origin");
    expect(response.headers.get("access-control-allow-methods")).toBe("POST");
    expect(response.headers.get("access-control-allow-headers")).toBe(
      "authorization, content-type, content-encoding, idempotency-key, traceparent, tracestate, last-event-id, ce-specversion, ce-id, ce-source, ce-type, ce-time, ce-subject, ce-dataschema, ce-datacontenttype, ce-partitionkey",
    );
    expect(response.headers.get("access-control-max-age")).toBe("600");
    // RFC 9110 §8.6: a 204 carries no Content-Length (uWebSockets.js's end() wrote `Content-Length: 0`).
    expect(response.headers.get("content-length")).toBeNull();
    expect(await response.text()).toBe("");
  });

  test("a preflight on a GET route lists GET and HEAD", async () => {
    const response = await fetch(`${gateway.url}/v1/channels/news/events`, {
      method: "OPTIONS",
      headers: { origin: ALLOWED, "access-control-request-method": "GET" },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-methods")).toBe("GET, HEAD");
    // Its other methods' 405 lists OPTIONS, answered there.
    const put = await fetch(`${gateway.url}/v1/channels/news/events`, {
      method: "PUT",
      headers: { origin: ALLOWED },
    });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
  });

  test("a preflight for an SSE resume with Last-Event-ID allows that header", async () => {
    const response = await fetch(`${gateway.url}/v1/sse?channel=news`, {
      method: "OPTIONS",
      headers: {
        origin: ALLOWED,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization, last-event-id",
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    const allowed = response.headers.get("access-control-allow-headers")?.split(", ");
    expect(allowed).toContain("authorization");
    expect(allowed).toContain("last-event-id");
  });

  test("a preflight for a binary-mode CloudEvent allows its datacontenttype and extension headers", async () => {
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "OPTIONS",
      headers: {
        origin: ALLOWED,
        "access-control-request-method": "POST",
        "access-control-request-headers":
          "authorization, content-type, ce-specversion, ce-id, ce-source, ce-type, ce-datacontenttype, ce-comexampleextension1",
      },
    });
    expect(response.status).toBe(204);
    const allowed = response.headers.get("access-control-allow-headers")?.split(", ");
    expect(allowed).toContain("ce-datacontenttype");
    expect(allowed).toContain("ce-comexampleextension1");
  });

  test("a preflight from another origin is a 403 without CORS headers", async () => {
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "OPTIONS",
      headers: { origin: OTHER, "access-control-request-method": "POST" },
    });
    expect(response.status).toBe(403);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(response.headers.get("access-control-allow-methods")).toBeNull();
  });

  test("actual responses to an allowed origin, errors included, carry the origin and the exposed headers", async () => {
    const ingest = {
      method: "POST",
      headers: {
        origin: ALLOWED,
        // A tenant of its own: with REDIS_URL set, budgets are shared with the other runtime's gateway.
        authorization: `Bearer ${await token(`cors-${runtime}`, ["ingest"])}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ type: "page_view", data: { url: "https://example.com/" } }),
    };
    const accepted = await fetch(`${gateway.url}/v1/events`, ingest);
    // The budget is one event a second: a second one soon after is refused (retried should a window end between).
    let limited = await fetch(`${gateway.url}/v1/events`, ingest);
    for (let attempt = 0; attempt < 3 && limited.status !== 429; attempt++)
      limited = await fetch(`${gateway.url}/v1/events`, ingest);
    const unauthorized = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers: { origin: ALLOWED },
      body: "[]",
    });
    const health = await fetch(`${gateway.url}/health`, { headers: { origin: ALLOWED } });
    expect([accepted.status, limited.status, unauthorized.status, health.status]).toEqual([
      202, 429, 401, 200,
    ]);
    for (const response of [accepted, limited, unauthorized, health]) {
      expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
      expect(response.headers.get("vary")).toBe("Origin");
      expect(response.headers.get("access-control-expose-headers")).toBe(EXPOSED);
    }
  });

  test("responses to another origin carry no CORS headers", async () => {
    const response = await fetch(`${gateway.url}/health`, { headers: { origin: OTHER } });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(response.headers.get("access-control-expose-headers")).toBeNull();
  });

  test("a WebSocket upgrade from another origin is refused with 403; an allowed or absent Origin opens", async () => {
    expect(await upgradeStatus(gateway.port, { Origin: OTHER })).toBe(403);
    expect(await upgradeStatus(gateway.port, { Origin: ALLOWED })).toBe(101);
    expect(await upgradeStatus(gateway.port, {})).toBe(101);
  });
});

describe.each(RUNTIMES)("CORS with * on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, CORS_ORIGINS: "*" });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("any origin gets Access-Control-Allow-Origin: *, preflights included, and may upgrade", async () => {
    const preflight = await fetch(`${gateway.url}/v1/publish`, {
      method: "OPTIONS",
      headers: { origin: OTHER, "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
    const response = await fetch(`${gateway.url}/v1/publish`, { method: "POST", headers: { origin: OTHER } });
    expect(response.status).toBe(401);
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(response.headers.get("access-control-expose-headers")).toBe(EXPOSED);
    expect(await upgradeStatus(gateway.port, { Origin: OTHER })).toBe(101);
  });
});

describe.each(RUNTIMES)("without CORS_ORIGINS on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("no CORS headers at all, and any Origin may upgrade", async () => {
    const preflight = await fetch(`${gateway.url}/v1/events`, {
      method: "OPTIONS",
      headers: { origin: ALLOWED, "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(405);
    const response = await fetch(`${gateway.url}/health`, { headers: { origin: ALLOWED } });
    for (const headers of [preflight.headers, response.headers]) {
      expect([...headers.keys()].filter((name) => name.startsWith("access-control-"))).toEqual([]);
      expect(headers.get("vary")).toBeNull();
    }
    expect(await upgradeStatus(gateway.port, { Origin: OTHER })).toBe(101);
  });
});

describe.each(RUNTIMES)("a wildcard in CORS_ORIGINS on %s", (runtime) => {
  test("an origin holding * (which no browser sends) does not start: exit 1 naming the variable", async () => {
    const { code, stdout, stderr } = await runUntilExit(runtime, {
      JWT_SECRET: TEST_SECRET,
      PORT: "0",
      CORS_ORIGINS: `${ALLOWED}, https://*.example.com`,
    });
    expect(code).toBe(1);
    expect(stdout + stderr).toContain("CORS_ORIGINS");
    expect(stdout + stderr).toContain("https://*.example.com");
  });
});
