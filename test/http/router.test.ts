import { expect, test } from "bun:test";
import pino from "pino";
import { GatewayError } from "../../src/domain/errors.ts";
import { CorsPolicy } from "../../src/http/cors.ts";
import { replyHeaders } from "../../src/http/header-block.ts";
import { Router } from "../../src/http/router.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type { Route } from "../../src/ports/route.ts";
import type { HttpRequest, WsHandlers } from "../../src/ports/transport.ts";
import { fakeRequest } from "../support/http.ts";

const request = fakeRequest;
/** An upgrade as a WebSocket client asks for it (the version spoken, 13). */
const wsUpgrade = (headers: Record<string, string> = {}) =>
  request("GET", "/v1/ws", { "sec-websocket-version": "13", ...headers });

/** A router over `routes` whose log lines are kept for assertions. */
function routerFor(routes: Route[], cors?: CorsPolicy) {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const metrics = createMetrics("test", "0");
  return { router: new Router(routes, metrics, log, cors), lines, metrics };
}

async function counted(metrics: ReturnType<typeof createMetrics>): Promise<string> {
  return metrics.registry.metrics();
}

const channelRoute: Route = {
  method: "GET",
  path: "/v1/channels/{channel}/events",
  handler: (_request, params) => ({ status: 200, body: params.channel ?? "" }),
};

test("path parameters are percent-decoded", async () => {
  const { router } = routerFor([channelRoute]);
  const reply = await router.handle(request("GET", "/v1/channels/a%3Ab/events"));
  expect(reply.status).toBe(200);
  expect(reply.body).toBe("a:b");
});

test("a bad percent-encoding in a path is a 400, not a 500 with a stack in the log", async () => {
  const { router, lines } = routerFor([channelRoute]);
  const reply = await router.handle(request("GET", "/v1/channels/%E0%A4%A/events"));
  expect(reply.status).toBe(400);
  expect(JSON.parse(String(reply.body)).error).toBe("bad_request");
  expect(lines.filter((line) => (line.level as number) >= 50)).toEqual([]);
});

test("every /v1 answer says Cache-Control: no-store, /v1 itself included; the operations routes do not", async () => {
  const { router } = routerFor([channelRoute]);
  const cacheControl = async (path: string) =>
    replyHeaders(await router.handle(request("GET", path)))?.["cache-control"];
  expect(await cacheControl("/v1/channels/a/events")).toBe("no-store");
  expect(await cacheControl("/v1/nope")).toBe("no-store");
  expect(await cacheControl("/v1")).toBe("no-store");
  expect(await cacheControl("/v10")).toBeUndefined();
  expect(await cacheControl("/health")).toBeUndefined();
});

test("a client that goes away mid-body is a 499 logged at debug, never a 500", async () => {
  const { router, lines, metrics } = routerFor([
    {
      method: "POST",
      path: "/v1/events",
      handler: () => {
        throw new GatewayError("client_closed_request", "client closed the connection");
      },
    },
  ]);
  const reply = await router.handle(request("POST", "/v1/events"));
  expect(reply.status).toBe(499);
  expect(lines.filter((line) => (line.level as number) >= 40)).toEqual([]);
  expect(lines.some((line) => line.level === 20 && line.code === "client_closed_request")).toBe(true);
  const text = await counted(metrics);
  expect(text).toContain('gateway_http_requests_total{route="/v1/events",method="POST",status="499"} 1');
  expect(text).not.toContain('status="500"');
});

const publishRoute: Route = {
  method: "POST",
  path: "/v1/publish",
  handler: () => ({ status: 202, body: "" }),
};

test("preflights are answered only with CORS configured, and only for an allowed origin", async () => {
  const preflight = (origin: string) =>
    request("OPTIONS", "/v1/publish", { origin, "access-control-request-method": "POST" });
  const withoutCors = routerFor([publishRoute]).router;
  expect((await withoutCors.handle(preflight("https://app.example.com"))).status).toBe(405);
  const { router } = routerFor([publishRoute], new CorsPolicy(["https://app.example.com"]));
  const allowed = await router.handle(preflight("https://app.example.com"));
  expect(allowed.status).toBe(204);
  expect(replyHeaders(allowed)?.["access-control-allow-origin"]).toBe("https://app.example.com");
  expect(replyHeaders(allowed)?.["access-control-allow-methods"]).toBe("POST");
  const refused = await router.handle(preflight("https://evil.example.net"));
  expect(refused.status).toBe(403);
  expect(replyHeaders(refused)?.["access-control-allow-origin"]).toBeUndefined();
});

test("Allow lists OPTIONS where preflights are answered (CORS on), and only there", async () => {
  const put = request("PUT", "/v1/publish", { origin: "https://app.example.com" });
  const withoutCors = await routerFor([publishRoute]).router.handle(put);
  expect(replyHeaders(withoutCors)?.allow).toBe("POST");
  const { router } = routerFor([publishRoute], new CorsPolicy(["https://app.example.com"]));
  const refused = await router.handle(put);
  expect(refused.status).toBe(405);
  expect(replyHeaders(refused)?.allow).toBe("POST, OPTIONS");
  // A plain OPTIONS (no Access-Control-Request-Method) is still a 405, saying what OPTIONS is for;
  // its Allow leaves OPTIONS out, as listing the refused method would contradict the refusal.
  const plain = await router.handle(request("OPTIONS", "/v1/publish", { origin: "https://app.example.com" }));
  expect(plain.status).toBe(405);
  expect(replyHeaders(plain)?.allow).toBe("POST");
  expect(String(plain.body)).toContain("CORS preflight");
});

test("guarded upgrades: a foreign browser origin is a 403 before the hub is asked; refusals carry the policy headers", async () => {
  const asked: string[] = [];
  const handlers: WsHandlers<string> = {
    upgrade: async (upgradeRequest) => {
      asked.push(upgradeRequest.header("origin") ?? "none");
      return upgradeRequest.header("authorization")
        ? { accept: true, state: "ok" }
        : { accept: false, reply: { status: 503, body: "" } };
    },
    open: () => {},
    message: () => {},
    drain: () => {},
    close: () => {},
  };
  const { router } = routerFor([], new CorsPolicy(["https://app.example.com"]));
  const guarded = router.guardUpgrades(handlers);
  const foreign = await guarded.upgrade(wsUpgrade({ origin: "https://evil.example.net" }));
  expect(foreign.accept).toBe(false);
  if (!foreign.accept) expect(foreign.reply.status).toBe(403);
  expect(asked).toEqual([]);
  const allowed = await guarded.upgrade(
    wsUpgrade({ origin: "https://app.example.com", authorization: "Bearer t" }),
  );
  expect(allowed).toEqual({ accept: true, state: "ok" });
  const noOrigin = await guarded.upgrade(wsUpgrade());
  expect(noOrigin.accept).toBe(false);
  if (!noOrigin.accept) {
    expect(noOrigin.reply.status).toBe(503);
    expect(replyHeaders(noOrigin.reply)?.["x-content-type-options"]).toBe("nosniff");
    expect(replyHeaders(noOrigin.reply)?.["cache-control"]).toBe("no-store");
  }
  expect(asked).toEqual(["https://app.example.com", "none"]);
});

test("WebSocket upgrades are counted as requests of their path: 101 when accepted, else the refusal's status", async () => {
  const { router, metrics } = routerFor([], new CorsPolicy(["https://app.example.com"]));
  const upgrades = router.guardUpgrades({
    upgrade: async (upgradeRequest: HttpRequest) =>
      upgradeRequest.header("authorization")
        ? { accept: true, state: "ok" }
        : { accept: false, reply: { status: 503, body: "" } },
  } as unknown as WsHandlers<string>);
  await upgrades.upgrade(wsUpgrade({ authorization: "Bearer t" }));
  await upgrades.upgrade(wsUpgrade({ authorization: "Bearer t" }));
  await upgrades.upgrade(wsUpgrade());
  await upgrades.upgrade(wsUpgrade({ origin: "https://evil.example.net" }));
  // Another version is refused before anything else is asked (RFC 6455 §4.4).
  const otherVersion = await upgrades.upgrade(
    wsUpgrade({ "sec-websocket-version": "8", authorization: "Bearer t" }),
  );
  expect(otherVersion.accept).toBe(false);
  if (!otherVersion.accept) expect(replyHeaders(otherVersion.reply)?.["sec-websocket-version"]).toBe("13");
  const text = await counted(metrics);
  expect(text).toContain('gateway_http_requests_total{route="/v1/ws",method="GET",status="101"} 2');
  expect(text).toContain('gateway_http_requests_total{route="/v1/ws",method="GET",status="503"} 1');
  expect(text).toContain('gateway_http_requests_total{route="/v1/ws",method="GET",status="403"} 1');
  expect(text).toContain('gateway_http_requests_total{route="/v1/ws",method="GET",status="426"} 1');
  expect(text).toContain(
    'gateway_http_request_duration_seconds_count{route="/v1/ws",method="GET",status="101"} 2',
  );
});

test("once the drain has begun every reply closes its connection, errors and refused upgrades too", async () => {
  const { router } = routerFor([channelRoute]);
  const upgrades = router.guardUpgrades({
    upgrade: async () => ({ accept: false, reply: { status: 401, body: "" } }),
  } as unknown as WsHandlers<unknown>);
  expect((await router.handle(request("GET", "/v1/channels/a/events"))).closeConnection).toBeFalsy();
  router.closeConnectionsAfterReplies();
  expect((await router.handle(request("GET", "/v1/channels/a/events"))).closeConnection).toBe(true);
  expect((await router.handle(request("GET", "/nowhere"))).closeConnection).toBe(true);
  const refused = await upgrades.upgrade(wsUpgrade());
  expect(refused.accept ? undefined : refused.reply.closeConnection).toBe(true);
});

test("a request carrying the close connection option gets an answer that says Connection: close (RFC 9112 §9.6)", async () => {
  const { router } = routerFor([channelRoute]);
  const closes = async (connection: string | undefined) =>
    (await router.handle(request("GET", "/nowhere", connection === undefined ? {} : { connection })))
      .closeConnection === true;
  expect(await closes("close")).toBe(true);
  expect(await closes("Keep-Alive, Close")).toBe(true);
  expect(await closes("te,close")).toBe(true);
  expect(await closes(undefined)).toBe(false);
  expect(await closes("keep-alive")).toBe(false);
  expect(await closes("closed")).toBe(false);
});

test("what reaches the router on the WebSocket path is not an upgrade: 426 naming websocket, 400 for a malformed one, 405 for other methods", async () => {
  const metrics = createMetrics("test", "0");
  const router = new Router([], metrics, pino({ level: "silent" }), undefined, "/v1/ws");
  const plain = await router.handle(request("GET", "/v1/ws"));
  expect([plain.status, JSON.parse(String(plain.body)).error, plain.headers?.upgrade]).toEqual([
    426,
    "upgrade_required",
    "websocket",
  ]);
  expect((await router.handle(request("HEAD", "/v1/ws"))).status).toBe(426);
  const malformed = await router.handle(request("GET", "/v1/ws", { upgrade: "WebSocket" }));
  expect(JSON.parse(String(malformed.body)).error).toBe("bad_request");
  const headUpgrade = await router.handle(request("HEAD", "/v1/ws", { upgrade: "websocket" }));
  expect([headUpgrade.status, JSON.parse(String(headUpgrade.body)).message]).toEqual([
    400,
    "not a valid WebSocket handshake: it must be a GET (RFC 6455 §4.1)",
  ]);
  const posted = await router.handle(request("POST", "/v1/ws"));
  expect([posted.status, posted.headers?.allow]).toEqual([405, "GET, HEAD"]);
  // Other paths are unaffected.
  expect((await router.handle(request("GET", "/v1/wss"))).status).toBe(404);
});
