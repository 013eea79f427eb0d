import { expect, test } from "bun:test";
import pino from "pino";
import { GatewayError } from "../../src/domain/errors.ts";
import { deprecationHeaders } from "../../src/http/deprecation.ts";
import { replyHeaders } from "../../src/http/header-block.ts";
import { Router } from "../../src/http/router.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type { Route } from "../../src/ports/route.ts";
import { fakeRequest } from "../support/http.ts";

const SINCE = new Date("2026-03-01T00:00:00Z");
const SUNSET = new Date("2026-09-01T00:00:00Z");

const request = fakeRequest;

/** Routes made for this test only: a retired one with its successor, and one still current. */
const routes: Route[] = [
  {
    method: "GET",
    path: "/v1/things/{id}",
    handler: (_request, params) => {
      if (params.id === "missing") throw new GatewayError("not_found", "no such thing");
      return { status: 200, body: "old" };
    },
    deprecation: { since: SINCE, sunset: SUNSET, successor: "/v2/things" },
  },
  { method: "POST", path: "/v1/things/{id}", handler: () => ({ status: 202, body: "" }) },
  { method: "GET", path: "/v2/things", handler: () => ({ status: 200, body: "new" }) },
];

function router(): Router {
  return new Router(routes, createMetrics("test", "0"), pino({ level: "silent" }));
}

const EXPECTED = {
  deprecation: `@${SINCE.getTime() / 1000}`,
  sunset: "Tue, 01 Sep 2026 00:00:00 GMT",
  link: '</v2/things>; rel="successor-version"',
};

test("every response of a deprecated route says so: Deprecation, Sunset and a Link to its successor", async () => {
  const gateway = router();
  for (const [method, id, status] of [
    ["GET", "42", 200],
    ["HEAD", "42", 200],
    ["GET", "missing", 404],
  ] as const) {
    const reply = await gateway.handle(request(method, `/v1/things/${id}`));
    expect(reply.status).toBe(status);
    expect(replyHeaders(reply)).toMatchObject(EXPECTED);
  }
});

test("other routes, and other methods on the same path, carry no deprecation headers", async () => {
  const gateway = router();
  for (const [method, path] of [
    ["GET", "/v2/things"],
    ["POST", "/v1/things/42"],
  ] as const) {
    const reply = await gateway.handle(request(method, path));
    expect(reply.status).toBeLessThan(300);
    expect(replyHeaders(reply)?.deprecation).toBeUndefined();
    expect(replyHeaders(reply)?.sunset).toBeUndefined();
    expect(replyHeaders(reply)?.link).toBeUndefined();
  }
});

test("Deprecation is an RFC 9745 structured-field date and Sunset an RFC 8594 HTTP-date", () => {
  const headers = deprecationHeaders({
    since: new Date("2026-03-01T12:34:56.789Z"),
    sunset: new Date("2026-12-31T23:59:59Z"),
    successor: "https://api.example.com/v2/things",
  });
  expect(headers.deprecation).toBe(`@${Math.floor(Date.parse("2026-03-01T12:34:56Z") / 1000)}`);
  expect(headers.sunset).toBe("Thu, 31 Dec 2026 23:59:59 GMT");
  expect(headers.link).toBe('<https://api.example.com/v2/things>; rel="successor-version"');
});

test("a deprecation that could not be sent is refused when the route table is built", () => {
  const table = (deprecation: NonNullable<Route["deprecation"]>) => () =>
    new Router(
      [{ method: "GET", path: "/v1/x", handler: () => ({ status: 200, body: "" }), deprecation }],
      createMetrics("test", "0"),
      pino({ level: "silent" }),
    );
  expect(table({ since: SUNSET, sunset: SINCE, successor: "/v2/x" })).toThrow(/sunset/);
  expect(table({ since: new Date("nope"), sunset: SUNSET, successor: "/v2/x" })).toThrow(/date/);
  expect(table({ since: SINCE, sunset: SUNSET, successor: "" })).toThrow(/successor/);
  expect(table({ since: SINCE, sunset: SUNSET, successor: "/v2/x>; rel=evil" })).toThrow(/successor/);
});
