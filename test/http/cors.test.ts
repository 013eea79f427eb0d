import { expect, test } from "bun:test";
import { CorsPolicy, isPreflight } from "../../src/http/cors.ts";

const EXPOSED =
  "RateLimit-Policy, RateLimit, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, Idempotency-Replayed, Deprecation, Sunset, Link, WWW-Authenticate";

test("a listed origin is echoed with Vary and the exposed headers; others get only Vary", () => {
  const policy = new CorsPolicy(["https://app.example.com"]);
  expect(policy.allows("https://app.example.com")).toBe(true);
  expect(policy.responseHeaders("https://app.example.com")).toEqual({
    "access-control-allow-origin": "https://app.example.com",
    vary: "Origin",
    "access-control-expose-headers": EXPOSED,
  });
  for (const origin of ["https://evil.example.net", "https://app.example.com:8443", "null", undefined]) {
    expect(policy.allows(origin)).toBe(false);
    expect(policy.responseHeaders(origin)).toEqual({ vary: "Origin" });
  }
});

test("* allows any origin with a literal *, and needs no Vary", () => {
  const policy = new CorsPolicy("*");
  expect(policy.allows("https://anything.example")).toBe(true);
  expect(policy.responseHeaders("https://anything.example")).toEqual({
    "access-control-allow-origin": "*",
    "access-control-expose-headers": EXPOSED,
  });
});

test("a preflight answer lists the route's methods, the request headers a client needs, and a max age", () => {
  expect(new CorsPolicy("*").preflight(["GET", "HEAD"])).toEqual({
    status: 204,
    headers: {
      "access-control-allow-methods": "GET, HEAD",
      "access-control-allow-headers":
        "authorization, content-type, content-encoding, idempotency-key, traceparent, tracestate, last-event-id, ce-specversion, ce-id, ce-source, ce-type, ce-time, ce-subject, ce-dataschema, ce-datacontenttype, ce-partitionkey",
      "access-control-max-age": "600",
    },
    body: "",
  });
});

test("a preflight allows the CloudEvents extension headers it asks for (ce- and an attribute name), at most 32, and nothing else it asks for", () => {
  const allowed = (requested: string) =>
    String(
      new CorsPolicy("*").preflight(["POST"], requested).headers?.["access-control-allow-headers"],
    ).split(", ");
  const asked = allowed(
    "Authorization, CE-ComExampleExtension1, ce-datacontenttype, x-secret, ce-bad_name, ce-, ce-comexamplelongextensionname",
  );
  expect(
    asked.filter(
      (name) =>
        name.startsWith("ce-") &&
        !name.match(/^ce-(specversion|id|source|type|time|subject|dataschema|partitionkey)$/),
    ),
  ).toEqual(["ce-datacontenttype", "ce-comexampleextension1", "ce-comexamplelongextensionname"]);
  expect(asked).not.toContain("x-secret");
  const many = Array.from({ length: 40 }, (_, index) => `ce-ext${index}`).join(", ");
  expect(allowed(many).filter((name) => name.startsWith("ce-ext"))).toHaveLength(32);
});

test("only OPTIONS naming a requested method is a preflight", () => {
  expect(isPreflight("OPTIONS", "POST")).toBe(true);
  expect(isPreflight("OPTIONS", undefined)).toBe(false);
  expect(isPreflight("POST", "POST")).toBe(false);
});

test("an upgrade is refused only for a browser origin not allowed; no Origin is a non-browser client", () => {
  const policy = new CorsPolicy(["https://app.example.com"]);
  expect(policy.refusesUpgrade("https://evil.example.net")).toBe(true);
  expect(policy.refusesUpgrade("https://app.example.com")).toBe(false);
  expect(policy.refusesUpgrade(undefined)).toBe(false);
  expect(new CorsPolicy("*").refusesUpgrade("https://evil.example.net")).toBe(false);
});
