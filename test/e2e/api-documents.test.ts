import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import {
  CLOSE_CODES,
  documentedStatuses,
  errorBodyProblems,
  frameProblems,
  parameterProblems,
  type RealResponse,
  responseProblems,
} from "../support/api-documents.ts";
import { tempDirs } from "../support/temp-dir.ts";
import { token } from "../support/tokens.ts";
import { freePort, RUNTIMES, type RunningGateway, rawUpgrade, startGateway, TestSocket } from "./harness.ts";

/** Log folders of this file's gateways, removed after its tests. */
const tempDir = tempDirs();

/**
 * Real traffic checked against the API documents: every response below is
 * validated against openapi.yaml (status, required headers, JSON body) and
 * every frame against asyncapi.yaml, on both runtimes. The last test of each
 * runtime checks that every documented status was seen, except the few this
 * test cannot provoke (listed with why).
 */

const ORIGIN = "https://app.example.com";
const EMBEDDED = { KAFKA_BROKERS: "", REDIS_URL: "" };
const JSON_TYPE = { "content-type": "application/json" };

/** Documented statuses this test does not provoke, and why. */
const NOT_PROVOKED: Record<string, string> = {
  "GET /v1/ws 503": "the instance's connection caps: test/e2e/websocket-limits.test.ts",
  "GET /v1/sse 503":
    "draining or the instance's connection cap: test/features/realtime/sse.test.ts, test/e2e/sse.test.ts",
  "HEAD /v1/sse 503": "draining or the instance's connection cap: test/features/realtime/sse.test.ts",
  "POST /v1/events 409":
    "needs a request in flight with the same Idempotency-Key: test/http/idempotency.test.ts; any 409 the racing retries of test/e2e/standards.test.ts meet is checked against this document",
  "POST /v1/publish 409":
    "needs a request in flight with the same Idempotency-Key: test/http/idempotency.test.ts",
  "POST /v1/publish 422": "record_refused needs a broker that refuses a record as invalid",
  "GET /v1/channels/{channel}/events 503":
    "needs a JWKS endpoint that fails (test/e2e/jwks.test.ts) or a Kafka read past a replay bound (test/e2e/resume.test.ts)",
  "HEAD /v1/channels/{channel}/events 503": "as GET",
  "GET /v1/channels/{channel}/presence 503": "needs a JWKS endpoint that fails: test/e2e/jwks.test.ts",
  "HEAD /v1/channels/{channel}/presence 503": "as GET",
};

/** The per-IP request budget of the gateway whose Kafka is down. */
const REQUESTS_PER_IP = 3;

describe.each(RUNTIMES)("the API documents against real traffic on %s", (runtime) => {
  let gateway: RunningGateway;
  /** A second gateway whose Kafka is unreachable, for the 503s. */
  let kafkaDown: RunningGateway;
  /** `METHOD template status[ code]` of every response checked. */
  const seen = new Set<string>();
  const sockets: TestSocket[] = [];
  const serverFrames: unknown[] = [];

  beforeAll(async () => {
    [gateway, kafkaDown] = await Promise.all([
      startGateway(runtime, {
        ...EMBEDDED,
        LOCAL_LOG_DIR: tempDir("api-documents-"),
        CORS_ORIGINS: ORIGIN,
        RATE_LIMIT_EVENTS_PER_SEC: "50",
        MAX_RECORDS_PER_REQUEST: "100",
        MAX_BODY_BYTES: "65536",
        WS_AUTH_TIMEOUT_MS: "1000",
        WS_PING_INTERVAL_MS: "500",
        WS_MAX_SUBSCRIPTIONS: "3",
        WS_MAX_MESSAGES_PER_SEC: "20",
        WS_MAX_CONNECTIONS_PER_TENANT: "2",
        WS_MAX_PAYLOAD_BYTES: "4096",
      }),
      freePort().then((closedPort) =>
        startGateway(runtime, {
          KAFKA_BROKERS: `127.0.0.1:${closedPort}`,
          REDIS_URL: "",
          KAFKA_UNHEALTHY_AFTER_MS: "0",
          INGEST_ACK_TIMEOUT_MS: "500",
          // A small per-IP request budget, each client IP from X-Forwarded-For: the read routes' 429.
          TRUST_PROXY: "1",
          RATE_LIMIT_REQUESTS_PER_SEC: String(REQUESTS_PER_IP),
        }),
      ),
    ]);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.close();
    await Promise.all([gateway.stop("SIGKILL"), kafkaDown.stop("SIGKILL")]);
  });

  /**
   * Requests from `ip` (without a token) to the gateway whose Kafka is down,
   * one past its per-IP budget; the last answer: its 429, before the token.
   */
  async function overIpBudget(method: string, template: string, path: string, ip: string) {
    let last = await call(method, template, path, { headers: { "x-forwarded-for": ip }, on: kafkaDown });
    for (let i = 0; i < REQUESTS_PER_IP; i++)
      last = await call(method, template, path, { headers: { "x-forwarded-for": ip }, on: kafkaDown });
    return last;
  }

  /** One request, its response checked against openapi.yaml; `template` names the documented path. */
  async function call(
    method: string,
    template: string,
    path: string,
    init: { headers?: Record<string, string>; body?: string | Uint8Array; on?: RunningGateway } = {},
  ): Promise<RealResponse & { json: () => Record<string, unknown> }> {
    const response = await fetch(`${(init.on ?? gateway).url}${path}`, {
      method,
      headers: init.headers,
      body: init.body,
    });
    const real = { status: response.status, headers: response.headers, body: await response.text() };
    expect(responseProblems(method, template, real)).toEqual([]);
    const code = real.body.startsWith("{") ? (JSON.parse(real.body) as { error?: string }).error : undefined;
    seen.add(`${method} ${template} ${real.status}`);
    if (code) seen.add(`${method} ${template} ${real.status} ${code}`);
    return { ...real, json: () => JSON.parse(real.body) as Record<string, unknown> };
  }

  /** A socket whose every frame is kept for the check against asyncapi.yaml. */
  function open(query = "", headers?: Record<string, string>): TestSocket {
    const socket = new TestSocket(`${gateway.wsUrl}${query}`, headers ? { headers } : undefined);
    socket.socket.addEventListener("message", (event) => serverFrames.push(JSON.parse(String(event.data))));
    sockets.push(socket);
    return socket;
  }

  function send(socket: TestSocket, frame: Record<string, unknown>): void {
    expect(frameProblems("client", frame)).toEqual([]);
    socket.send(frame);
  }

  async function authenticated(tenant: string, scopes = ["subscribe"], extra = {}): Promise<TestSocket> {
    const socket = open();
    await socket.opened();
    send(socket, { type: "auth", token: await token(tenant, scopes, extra) });
    await socket.next((frame) => frame.type === "connected");
    return socket;
  }

  async function bearer(tenant: string, scopes: string[]): Promise<Record<string, string>> {
    return { authorization: `Bearer ${await token(tenant, scopes)}` };
  }

  test("POST /v1/events: every kind of body, and each refusal", async () => {
    const auth = await bearer("docs-ingest", ["ingest", "publish"]);
    const post = (body: string | Uint8Array, headers: Record<string, string> = JSON_TYPE, query = "") =>
      call("POST", "/v1/events", `/v1/events${query}`, { headers: { ...auth, ...headers }, body });
    const record = { type: "page_view", data: { url: "https://example.com/" } };

    expect((await post(JSON.stringify(record))).status).toBe(202);
    expect((await post(JSON.stringify([record, { ...record, id: "r-2" }]))).json()).toMatchObject({
      accepted: 2,
    });
    const ndjson = `${JSON.stringify(record)}\nnot json\n`;
    expect((await post(ndjson, { "content-type": "application/x-ndjson" })).json()).toMatchObject({
      rejected: 1,
    });
    const gzipped = gzipSync(JSON.stringify(record));
    expect((await post(gzipped, { ...JSON_TYPE, "content-encoding": "gzip" })).status).toBe(202);
    expect((await post(JSON.stringify(record), JSON_TYPE, "?ack=none")).status).toBe(202);

    expect((await post("{not json")).status).toBe(400);
    expect((await post("[]")).status).toBe(400);
    expect((await post("not gzip", { ...JSON_TYPE, "content-encoding": "gzip" })).status).toBe(400);
    expect((await post(JSON.stringify({ type: "no_such_type", data: {} }))).status).toBe(422);
    expect((await post(JSON.stringify(Array(101).fill(record)))).status).toBe(413);
    expect((await post(JSON.stringify({ ...record, data: { url: "x".repeat(70_000) } }))).status).toBe(413);
    expect((await post("hello", { "content-type": "text/plain" })).status).toBe(415);
    const utf16 = { "content-type": "application/json; charset=utf-16" };
    expect((await post(JSON.stringify(record), utf16)).status).toBe(415);
    const brotli = await post(JSON.stringify(record), { ...JSON_TYPE, "content-encoding": "br" });
    expect(brotli.status).toBe(415);
    expect(brotli.headers.get("accept-encoding")).toBe("gzip");

    // What the route accepts, the document allows: another `ack`, an uncompressed body said so, gzip's alias.
    for (const [query, headers, sent] of [
      [{ ack: "all" }, JSON_TYPE, JSON.stringify(record)],
      [{}, { ...JSON_TYPE, "content-encoding": "identity" }, JSON.stringify(record)],
      [{}, { ...JSON_TYPE, "content-encoding": "x-gzip" }, gzipped],
    ] as const) {
      expect((await post(sent, headers, `?${new URLSearchParams(query)}`)).status).toBe(202);
      expect(parameterProblems("POST", "/v1/events", { query, headers })).toEqual([]);
    }

    const body = JSON.stringify(record);
    expect((await call("POST", "/v1/events", "/v1/events", { headers: JSON_TYPE, body })).status).toBe(401);
    const malformed = { ...JSON_TYPE, authorization: "Basic abc" };
    expect((await call("POST", "/v1/events", "/v1/events", { headers: malformed, body })).status).toBe(401);
    const noScope = { ...JSON_TYPE, ...(await bearer("docs-ingest", ["subscribe"])) };
    expect((await call("POST", "/v1/events", "/v1/events", { headers: noScope, body })).status).toBe(403);
    const limited = { ...JSON_TYPE, ...(await bearer("docs-limited", ["ingest"])) };
    const batch = JSON.stringify(Array(60).fill(record));
    const refused = await call("POST", "/v1/events", "/v1/events", { headers: limited, body: batch });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(refused.headers.get("ratelimit-limit")).toBe("50");

    const down = await call("POST", "/v1/events", "/v1/events", {
      headers: { ...auth, ...JSON_TYPE },
      body,
      on: kafkaDown,
    });
    expect(down.status).toBe(503);

    const keyed = { ...JSON_TYPE, "idempotency-key": `"docs-${runtime}"` };
    expect((await post(body, keyed)).status).toBe(202);
    const replayed = await post(body, keyed);
    expect(replayed.headers.get("idempotency-replayed")).toBe("true");
    expect((await post(JSON.stringify([record]), keyed)).json().error).toBe("idempotency_key_reused");
  });

  test("POST /v1/publish: a channel, a broadcast, and each refusal", async () => {
    const auth = { ...JSON_TYPE, ...(await bearer("docs-publish", ["publish"])) };
    const publish = (body: string, headers: Record<string, string> = auth, on?: RunningGateway) =>
      call("POST", "/v1/publish", "/v1/publish", { headers, body, ...(on ? { on } : {}) });
    expect((await publish(JSON.stringify({ channel: "orders", data: { id: 1 } }))).json()).toEqual({
      published: 1,
    });
    expect((await publish(JSON.stringify({ broadcast: true, data: "hello" }))).status).toBe(202);
    expect((await publish(JSON.stringify({ channel: "$reserved", data: 1 }))).status).toBe(400);
    expect((await publish("{nope")).status).toBe(400);
    expect((await publish(JSON.stringify({ channel: "orders", data: "x".repeat(70_000) }))).status).toBe(413);
    expect((await publish("x", { ...auth, "content-type": "text/plain" })).status).toBe(415);
    const latin1 = { ...auth, "content-type": "application/json; charset=iso-8859-1" };
    expect((await publish(JSON.stringify({ channel: "orders", data: 1 }), latin1)).status).toBe(415);
    // The route reads the body as sent: a compressed one is refused, not read as JSON.
    const message = JSON.stringify({ channel: "orders", data: 1 });
    for (const coding of ["gzip", "br"]) {
      const refused = await publish(message, { ...auth, "content-encoding": coding });
      expect(refused.json().error).toBe("unsupported_media_type");
      expect(refused.headers.get("accept-encoding")).toBe("identity");
    }
    expect((await publish(message, { ...auth, "content-encoding": "identity" })).status).toBe(202);
    expect((await publish("{}", JSON_TYPE)).status).toBe(401);
    expect(
      (await publish("{}", { ...JSON_TYPE, ...(await bearer("docs-publish", ["ingest"])) })).status,
    ).toBe(403);
    expect((await publish(JSON.stringify({ channel: "orders", data: 1 }), auth, kafkaDown)).status).toBe(503);
    const keyed = { ...auth, "idempotency-key": `docs-publish-${runtime}` };
    expect((await publish(JSON.stringify({ channel: "orders", data: 1 }), keyed)).status).toBe(202);
    expect((await publish(JSON.stringify({ channel: "orders", data: 2 }), keyed)).status).toBe(422);
    // A publish costs one event of the tenant's budget (50 a second here): the 51st in a window is refused.
    const limited = { ...JSON_TYPE, ...(await bearer("docs-publish-limited", ["publish"])) };
    let refused = await publish(JSON.stringify({ channel: "orders", data: 1 }), limited);
    for (let attempt = 0; attempt < 200 && refused.status !== 429; attempt++)
      refused = await publish(JSON.stringify({ channel: "orders", data: 1 }), limited);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
  });

  test("GET and HEAD /v1/channels/{channel}/events: the delta, and each refusal", async () => {
    const publisher = { ...JSON_TYPE, ...(await bearer("docs-delta", ["publish"])) };
    // The second with trace context, which its delta event carries as the WebSocket event frame does.
    const traced = {
      traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      tracestate: "rojo=00f067aa0ba902b7",
    };
    for (const n of [1, 2])
      await call("POST", "/v1/publish", "/v1/publish", {
        headers: n === 2 ? { ...publisher, ...traced } : publisher,
        body: JSON.stringify({ channel: "orders", data: { n } }),
      });
    const auth = await bearer("docs-delta", ["subscribe"]);
    const template = "/v1/channels/{channel}/events";
    for (const method of ["GET", "HEAD"]) {
      const get = (path: string, headers = auth) => call(method, template, path, { headers });
      const all = await get("/v1/channels/orders/events");
      expect(all.status).toBe(200);
      if (method === "GET") {
        const events = all.json().events as Array<{ id: string }>;
        expect(events.length).toBe(2);
        expect(events[1]).toMatchObject(traced);
        const after = await get(`/v1/channels/orders/events?since=${events[0]?.id}`);
        expect(after.json().events).toHaveLength(1);
      }
      // Another epoch's id cannot be served (410); one that is not an event id is a client bug (400).
      expect((await get("/v1/channels/orders/events?since=otherepoch-0-0000000000000001")).status).toBe(410);
      expect((await get("/v1/channels/orders/events?since=not-an-id")).status).toBe(400);
      expect((await get("/v1/channels/%24x/events")).status).toBe(400);
      expect((await get("/v1/channels//events")).status).toBe(404);
      expect((await get("/v1/channels/orders/events", {})).status).toBe(401);
      expect((await get("/v1/channels/orders/events", await bearer("docs-delta", ["ingest"]))).status).toBe(
        403,
      );
      const limited = await overIpBudget(
        method,
        template,
        "/v1/channels/orders/events",
        `203.0.113.${method.length}`,
      );
      expect(limited.status).toBe(429);
      expect(limited.headers.get("ratelimit-policy")).toBe(`"ip";q=${REQUESTS_PER_IP};w=1`);
    }
  });

  test("GET and HEAD /v1/sse: a stream, and each refusal", async () => {
    const auth = await bearer("docs-sse", ["subscribe"]);
    /** Opens a stream and checks its head and first chunk (it stays open: it is then closed). */
    const stream = async (tenant: string) => {
      const response = await fetch(`${gateway.url}/v1/sse?channel=orders`, {
        headers: await bearer(tenant, ["subscribe"]),
      });
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      expect(
        responseProblems("GET", "/v1/sse", {
          status: response.status,
          headers: response.headers,
          body: first,
        }),
      ).toEqual([]);
      expect(response.status).toBe(200);
      seen.add("GET /v1/sse 200");
      return reader;
    };
    await (await stream("docs-sse")).cancel();
    // The tenant's connection cap (2 here) counts event streams with WebSockets.
    const held = [await stream("docs-sse-cap"), await stream("docs-sse-cap")];
    for (const method of ["GET", "HEAD"]) {
      const get = (path: string, headers = auth) => call(method, "/v1/sse", path, { headers });
      if (method === "HEAD") expect((await get("/v1/sse?channel=orders")).status).toBe(200);
      expect((await get("/v1/sse?channel=%24x")).status).toBe(400);
      expect((await get("/v1/sse")).status).toBe(400);
      expect((await get("/v1/sse?channel=orders", {})).status).toBe(401);
      expect((await get("/v1/sse?channel=orders", await bearer("docs-sse", ["ingest"]))).status).toBe(403);
      expect((await get("/v1/sse?channel=orders", await bearer("docs-sse-cap", ["subscribe"]))).status).toBe(
        429,
      );
    }
    for (const reader of held) await reader.cancel();
  });

  test("GET and HEAD /v1/channels/{channel}/presence: the members, and each refusal", async () => {
    const socket = await authenticated("docs-presence", ["subscribe"]);
    send(socket, { type: "subscribe", channel: "lobby" });
    await socket.next((frame) => frame.type === "subscribed");
    const auth = await bearer("docs-presence", ["subscribe"]);
    const template = "/v1/channels/{channel}/presence";
    for (const method of ["GET", "HEAD"]) {
      const get = (path: string, headers = auth) => call(method, template, path, { headers });
      const answer = await get("/v1/channels/lobby/presence");
      expect(answer.status).toBe(200);
      if (method === "GET") expect(answer.json()).toMatchObject({ scope: "instance", total: 1 });
      expect((await get("/v1/channels/%24x/presence")).status).toBe(400);
      expect((await get("/v1/channels//presence")).status).toBe(404);
      expect((await get("/v1/channels/lobby/presence", {})).status).toBe(401);
      expect(
        (await get("/v1/channels/lobby/presence", await bearer("docs-presence", ["ingest"]))).status,
      ).toBe(403);
      const limited = await overIpBudget(
        method,
        template,
        "/v1/channels/lobby/presence",
        `203.0.113.1${method.length}`,
      );
      expect(limited.status).toBe(429);
      expect(limited.headers.get("ratelimit-policy")).toBe(`"ip";q=${REQUESTS_PER_IP};w=1`);
    }
    socket.close();
  });

  test("operations routes: GET and HEAD", async () => {
    for (const method of ["GET", "HEAD"]) {
      for (const path of ["/health", "/health/live", "/metrics"])
        expect((await call(method, path, path)).status).toBe(200);
      const unready = await call(method, "/health", "/health", { on: kafkaDown });
      expect(unready.status).toBe(503);
      if (method === "GET") expect(unready.json().reasons).toEqual(["kafka_unreachable"]);
    }
  });

  test("OPTIONS on every path: a preflight from an allowed origin, from another, and a plain OPTIONS", async () => {
    const paths: Array<[string, string, string]> = [
      ["/v1/events", "/v1/events", "POST"],
      ["/v1/publish", "/v1/publish", "POST"],
      ["/v1/channels/{channel}/events", "/v1/channels/orders/events", "GET"],
      ["/v1/channels/{channel}/presence", "/v1/channels/orders/presence", "GET"],
      ["/v1/sse", "/v1/sse", "GET"],
      ["/health", "/health", "GET"],
      ["/health/live", "/health/live", "GET"],
      ["/metrics", "/metrics", "GET"],
    ];
    for (const [template, path, method] of paths) {
      const preflight = (origin: string) => ({ origin, "access-control-request-method": method });
      expect((await call("OPTIONS", template, path, { headers: preflight(ORIGIN) })).status).toBe(204);
      const foreign = preflight("https://elsewhere.example");
      expect((await call("OPTIONS", template, path, { headers: foreign })).status).toBe(403);
      expect((await call("OPTIONS", template, path, { headers: { origin: ORIGIN } })).status).toBe(405);
    }
  });

  test("WebSocket: the whole conversation of a subscriber, each frame as documented", async () => {
    const socket = await authenticated("docs-ws", ["subscribe"]);
    send(socket, { type: "subscribe", channel: "orders" });
    // No event in the channel yet: its position is the newest offset read on its partition.
    expect(await socket.next((frame) => frame.type === "subscribed")).toMatchObject({
      lastEventId: expect.any(String),
    });

    const publisher = { ...JSON_TYPE, ...(await bearer("docs-ws", ["publish", "ingest"])) };
    const publish = (body: unknown) =>
      call("POST", "/v1/publish", "/v1/publish", { headers: publisher, body: JSON.stringify(body) });
    await publish({ channel: "orders", data: { n: 1 } });
    const first = await socket.next((frame) => frame.type === "event");
    await call("POST", "/v1/events", "/v1/events", {
      headers: publisher,
      body: JSON.stringify({ type: "click", id: "click-1", channel: "orders", data: { element: "b" } }),
    });
    expect(await socket.next((frame) => frame.type === "event")).toMatchObject({
      recordType: "click",
      recordId: "click-1",
    });
    await publish({ broadcast: true, data: { notice: "hi" } });
    expect(await socket.next((frame) => frame.type === "event")).toMatchObject({
      channel: "$broadcast",
      broadcast: true,
    });
    // A publish frame from another socket, with its trace context: acknowledged, and the event carries it.
    const publishing = await authenticated("docs-ws", ["subscribe", "publish"]);
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    send(publishing, { type: "publish", channel: "orders", data: { n: 2 }, ref: "p1", traceparent });
    expect(await publishing.next((frame) => frame.type === "published")).toEqual({
      type: "published",
      ref: "p1",
    });
    expect(await socket.next((frame) => frame.type === "event")).toMatchObject({
      data: { n: 2 },
      traceparent,
    });

    send(socket, { type: "ping" });
    await socket.next((frame) => frame.type === "pong");
    expect(await socket.next((frame) => frame.type === "ping")).toMatchObject({
      lastEventIds: { orders: expect.any(String) },
    });

    send(socket, { type: "unsubscribe", channel: "orders" });
    await socket.next((frame) => frame.type === "unsubscribed");
    send(socket, { type: "subscribe", channel: "orders", since: first.id });
    await socket.next((frame) => frame.type === "subscribed");
    expect(await socket.next((frame) => frame.type === "event")).toMatchObject({ recordId: "click-1" });
    send(socket, { type: "subscribe", channel: "audit", since: "nope-0-0000000000000001" });
    await socket.next((frame) => frame.type === "subscribed");
    expect(await socket.next((frame) => frame.type === "error")).toMatchObject({ code: "history_gone" });

    // Outside the documented channel names on purpose: the gateway must answer it as documented.
    socket.send({ type: "subscribe", channel: "bad/channel" });
    expect(await socket.next((frame) => frame.type === "error")).toMatchObject({ code: "bad_channel" });
    send(socket, { type: "subscribe", channel: "third" });
    await socket.next((frame) => frame.type === "subscribed");
    send(socket, { type: "subscribe", channel: "fourth" });
    expect(await socket.next((frame) => frame.type === "error")).toMatchObject({
      code: "too_many_subscriptions",
    });
    socket.send("not json");
    expect(await socket.next((frame) => frame.type === "error")).toMatchObject({ code: "bad_frame" });
    // A refresh with another tenant's token is refused, and the socket keeps its own.
    send(socket, { type: "auth", token: await token("docs-someone-else", ["subscribe"]) });
    expect(await socket.next((frame) => frame.type === "error")).toMatchObject({ code: "forbidden" });
    for (let i = 0; i < 25; i++) socket.send({ type: "ping" });
    expect(await socket.next((frame) => frame.type === "error")).toMatchObject({ code: "rate_limited" });
  });

  test("WebSocket: tokens at the upgrade, channel limits, and the refusals that close the socket", async () => {
    const viaHeader = open("", { authorization: `Bearer ${await token("docs-upgrade", ["subscribe"])}` });
    await viaHeader.next((frame) => frame.type === "connected");
    const viaQuery = open(`?token=${await token("docs-query", ["subscribe"])}`);
    await viaQuery.next((frame) => frame.type === "connected");

    const limited = await authenticated("docs-claim", ["subscribe"], { channels: ["orders*"] });
    send(limited, { type: "subscribe", channel: "secret" });
    expect(await limited.next((frame) => frame.type === "error")).toMatchObject({ code: "forbidden" });

    const closes: Array<[TestSocket, string, number]> = [];
    const badToken = open();
    await badToken.opened();
    send(badToken, { type: "auth", token: "not.a.token" });
    closes.push([badToken, "unauthorized", 4001]);
    // A token at the upgrade is verified once the socket is open: a bad one gets a frame and 4001, not an HTTP 401.
    const badUpgradeToken = open("", { authorization: "Bearer not.a.token" });
    closes.push([badUpgradeToken, "unauthorized", 4001]);
    const tooEarly = open();
    await tooEarly.opened();
    send(tooEarly, { type: "subscribe", channel: "orders" });
    closes.push([tooEarly, "unauthorized", 4001]);
    const silent = open();
    closes.push([silent, "unauthorized", 4001]);
    const noScope = open();
    await noScope.opened();
    send(noScope, { type: "auth", token: await token("docs-scope", ["ingest"]) });
    closes.push([noScope, "forbidden", 4001]);
    await authenticated("docs-crowd");
    await authenticated("docs-crowd");
    const third = open();
    await third.opened();
    send(third, { type: "auth", token: await token("docs-crowd", ["subscribe"]) });
    closes.push([third, "rate_limited", 1013]);
    for (const [socket, code, closeCode] of closes) {
      expect(await socket.next((frame) => frame.type === "error")).toMatchObject({ code });
      expect((await socket.closed).code).toBe(closeCode);
    }

    const oversize = await authenticated("docs-oversize");
    oversize.send({ type: "subscribe", channel: "x".repeat(5000) });
    const closed = (await oversize.closed).code;
    // Bun closes with 1009; uWebSockets.js drops the connection (1006), as x-close-codes says.
    expect(closed).toBe(runtime === "bun" ? 1009 : 1006);
    expect(CLOSE_CODES["1009"]).toContain("1006");
  });

  test("WebSocket upgrades answer as GET /v1/ws documents: 101, refusals with the error body (the version's 426 has none), 426 without an upgrade; a HEAD never upgrades", async () => {
    const upgrade = async (headers: Record<string, string>) => {
      const real = await rawUpgrade(gateway.port, headers);
      expect(responseProblems("GET", "/v1/ws", real)).toEqual([]);
      expect(
        real.status === 101 || real.status === 426 ? [] : errorBodyProblems(real.status, real.body),
      ).toEqual([]);
      seen.add(`GET /v1/ws ${real.status}`);
      return real.status;
    };
    expect(await upgrade({})).toBe(101);
    expect(await upgrade({ Origin: "https://elsewhere.example" })).toBe(403);
    expect(await upgrade({ Authorization: "Basic abc" })).toBe(401);
    expect(await upgrade({ "Sec-WebSocket-Version": "8" })).toBe(426);
    expect(await upgrade({ "Sec-WebSocket-Key": "too-short" })).toBe(400);
    const plain = await call("GET", "/v1/ws", "/v1/ws");
    expect([plain.status, plain.json().error, plain.headers.get("upgrade")]).toEqual([
      426,
      "upgrade_required",
      "websocket",
    ]);
    // Only a GET upgrades (RFC 6455 §4.1): Bun had answered a HEAD's upgrade with a bare 400 of its own.
    const headUpgrade = await rawUpgrade(gateway.port, {}, "HEAD");
    expect(responseProblems("HEAD", "/v1/ws", headUpgrade)).toEqual([]);
    expect([headUpgrade.status, headUpgrade.headers.get("content-type")]).toEqual([400, "application/json"]);
    seen.add("HEAD /v1/ws 400");
    const headPlain = await call("HEAD", "/v1/ws", "/v1/ws");
    expect([headPlain.status, headPlain.headers.get("upgrade")]).toEqual([426, "websocket"]);
  });

  test("every documented status was seen, but the few listed with why", () => {
    const missing = documentedStatuses()
      .filter((status) => !seen.has(status) && !(status in NOT_PROVOKED))
      .sort();
    expect(missing).toEqual([]);
  });

  test("a drain asks every socket to reconnect and closes it with 1001; every frame was as documented", async () => {
    const socket = await authenticated("docs-drain");
    const exited = gateway.stop("SIGTERM");
    expect(await socket.next((frame) => frame.type === "reconnect", 10_000)).toHaveProperty("afterMs");
    expect((await socket.closed).code).toBe(1001);
    expect(await exited).toBe(0);

    expect(serverFrames.flatMap((frame) => frameProblems("server", frame))).toEqual([]);
    const types = new Set(serverFrames.map((frame) => (frame as { type: string }).type));
    expect([...types].sort()).toEqual(
      [
        "connected",
        "error",
        "event",
        "ping",
        "pong",
        "published",
        "reconnect",
        "subscribed",
        "unsubscribed",
      ].sort(),
    );
  });
});
