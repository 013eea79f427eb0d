import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { gzipSync } from "node:zlib";
import { CloudEvent, HTTP } from "cloudevents";
import { responseProblems } from "../support/api-documents.ts";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

async function post(
  gateway: RunningGateway,
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
) {
  const response = await fetch(`${gateway.url}${path}`, { method: "POST", body, headers });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** The status line of a request sent over a raw socket, as the runtime's engine wrote it. */
function rawStatusLine(
  gateway: RunningGateway,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body = "",
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(gateway.port, "127.0.0.1");
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      const end = received.indexOf("\r\n");
      if (end < 0) return;
      socket.destroy();
      resolve(received.slice(0, end));
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`closed after ${JSON.stringify(received)}`)));
    const fields = Object.entries({ ...headers, "content-length": String(Buffer.byteLength(body)) })
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join("");
    socket.write(`${method} ${path} HTTP/1.1\r\nHost: x\r\n${fields}\r\n${body}`);
  });
}

describe.each(RUNTIMES)("the status line's reason phrase on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    // A broker nobody listens on: a request waiting for its acknowledgement holds its Idempotency-Key (409).
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "127.0.0.1:1",
      REDIS_URL: "",
      INGEST_ACK_TIMEOUT_MS: "3000",
      MAX_BODY_BYTES: "1024",
      RATE_LIMIT_EVENTS_PER_SEC: "5",
      CORS_ORIGINS: "*",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("is the same on both runtimes for every status: Bun.serve's phrases (409 Conflict, 413 Payload Too Large, 422 Unprocessable Entity)", async () => {
    const ingest = {
      authorization: `Bearer ${await token(`status-${runtime}`, ["ingest"])}`,
      "content-type": "application/json",
    };
    const click = JSON.stringify({ type: "click", data: { element: "x" } });
    const held = { ...ingest, "idempotency-key": `held-${runtime}` };
    const first = post(gateway, "/v1/events", click, held);
    await waitUntil(async () => {
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      return /^gateway_queue_records [1-9]/m.test(metrics);
    }, "the held request's record in the queue");
    const lines = {
      200: await rawStatusLine(gateway, "GET", "/health/live"),
      202: await rawStatusLine(gateway, "POST", "/v1/events?ack=none", ingest, click),
      204: await rawStatusLine(gateway, "OPTIONS", "/v1/events", {
        origin: "https://app.example",
        "access-control-request-method": "POST",
      }),
      400: await rawStatusLine(gateway, "POST", "/v1/events", ingest, "{"),
      401: await rawStatusLine(gateway, "POST", "/v1/events", {}, click),
      403: await rawStatusLine(
        gateway,
        "POST",
        "/v1/events",
        { authorization: `Bearer ${await token("acme", ["subscribe"])}` },
        click,
      ),
      404: await rawStatusLine(gateway, "GET", "/v1/nowhere"),
      405: await rawStatusLine(gateway, "DELETE", "/health/live"),
      409: await rawStatusLine(gateway, "POST", "/v1/events", held, click),
      413: await rawStatusLine(gateway, "POST", "/v1/events", ingest, `[${"1,".repeat(600)}1]`),
      415: await rawStatusLine(
        gateway,
        "POST",
        "/v1/events",
        { ...ingest, "content-type": "text/plain" },
        click,
      ),
      422: await rawStatusLine(
        gateway,
        "POST",
        "/v1/events",
        ingest,
        JSON.stringify({ type: "no_such_type", data: {} }),
      ),
      426: await rawStatusLine(gateway, "GET", "/v1/ws"),
      429: await rawStatusLine(
        gateway,
        "POST",
        "/v1/events",
        ingest,
        JSON.stringify(Array.from({ length: 6 }, () => JSON.parse(click))),
      ),
      503: await rawStatusLine(gateway, "GET", "/health"),
    };
    expect(lines).toEqual({
      200: "HTTP/1.1 200 OK",
      202: "HTTP/1.1 202 Accepted",
      204: "HTTP/1.1 204 No Content",
      400: "HTTP/1.1 400 Bad Request",
      401: "HTTP/1.1 401 Unauthorized",
      403: "HTTP/1.1 403 Forbidden",
      404: "HTTP/1.1 404 Not Found",
      405: "HTTP/1.1 405 Method Not Allowed",
      409: "HTTP/1.1 409 Conflict",
      413: "HTTP/1.1 413 Payload Too Large",
      415: "HTTP/1.1 415 Unsupported Media Type",
      422: "HTTP/1.1 422 Unprocessable Entity",
      426: "HTTP/1.1 426 Upgrade Required",
      429: "HTTP/1.1 429 Too Many Requests",
      503: "HTTP/1.1 503 Service Unavailable",
    });
    expect((await first).status).toBe(503);
  });

  test("two Idempotency-Key fields, which the engine joins into `k1, k2`, are a 400, not one key", async () => {
    const ingest = {
      authorization: `Bearer ${await token(`keys-${runtime}`, ["ingest"])}`,
      "content-type": "application/json",
      // Two fields: the names differ only in case.
      "idempotency-key": "k1",
      "Idempotency-Key": "k2",
    };
    const click = JSON.stringify({ type: "click", data: { element: "x" } });
    expect(await rawStatusLine(gateway, "POST", "/v1/events", ingest, click)).toBe(
      "HTTP/1.1 400 Bad Request",
    );
  });
});

describe.each(RUNTIMES)("one truth for validation and forwarding on %s", (runtime) => {
  let gateway: RunningGateway;
  let topic: string;
  let fanoutTopic: string;
  let auth: Record<string, string>;

  beforeAll(async () => {
    topic = await createTopic(`standards-${runtime}`, 1);
    fanoutTopic = await createTopic(`standards-fanout-${runtime}`, 1);
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_FANOUT_TOPIC: fanoutTopic,
    });
    auth = {
      authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
      "content-type": "application/json",
    };
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("duplicate keys and numbers past a schema's limits as sent are refused per record, with a code", async () => {
    const order = (amount: string, qty = "1") =>
      `{"order_id":"o-1","amount":${amount},"currency":"EUR","items":[{"sku":"A","qty":${qty}}]}`;
    const accepted = order("9007199254740993.25");
    const body = `[
      {"type":"order_created","id":"dup","data":{"order_id":"o-1","amount":-5,"amount":1,"currency":"EUR","items":[{"sku":"A","qty":1}]}},
      {"type":"order_created","id":"tiny","data":${order("-1e-400")}},
      {"type":"order_created","id":"qty","data":${order("1", "0.99999999999999999999")}},
      {"type":"order_created","id":"ok","data":${accepted}}
    ]`;
    const response = await post(gateway, "/v1/events", body, auth);
    expect(response.status).toBe(202);
    expect(JSON.parse(response.text)).toEqual({
      accepted: 1,
      rejected: 3,
      errors: [
        { index: 0, reason: 'duplicate key "amount"', code: "duplicate_key" },
        { index: 1, reason: "data/amount must be >= 0", code: "schema_invalid" },
        { index: 2, reason: "data/items/0/qty must be >= 1", code: "schema_invalid" },
      ],
    });
    const messages = await readTopic(topic, 1);
    expect(messages.map((message) => JSON.parse(message.value).id)).toEqual(["ok"]);
    expect(messages[0]?.value).toContain(`"data":${accepted}`);

    const publish = await post(gateway, "/v1/publish", '{"channel":"c","data":{"a":1,"a":2}}', auth);
    expect(publish.status).toBe(400);
    expect(JSON.parse(publish.text).message).toBe('duplicate key "a"');
  });

  test("a valid traceparent (a later version as version 00) and tracestate reach the Kafka record's headers, on ingest and on publish; a tracestate naming a key twice does not", async () => {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const trace = { traceparent, tracestate: "rojo=00f067aa0ba902b7" };
    const record = JSON.stringify({ type: "click", id: "traced", data: { element: "t" } });
    expect((await post(gateway, "/v1/events", record, { ...auth, ...trace })).status).toBe(202);
    const untraced = JSON.stringify({ type: "click", id: "bad-trace", data: { element: "t" } });
    const invalid = { traceparent: "00-zz-00f067aa0ba902b7-01", tracestate: "rojo=1" };
    expect((await post(gateway, "/v1/events", untraced, { ...auth, ...invalid })).status).toBe(202);
    // A later version is passed on as version 00 (W3C Trace Context): its unknown fields, however long, stay out.
    const later = JSON.stringify({ type: "click", id: "later-version", data: { element: "t" } });
    const laterTrace = {
      traceparent: `01-${traceparent.slice(3)}-${"x".repeat(4000)}`,
      tracestate: "rojo=1",
    };
    expect((await post(gateway, "/v1/events", later, { ...auth, ...laterTrace })).status).toBe(202);
    // A tracestate naming a key twice is invalid (W3C Trace Context): not passed on; the traceparent is.
    const duplicated = JSON.stringify({ type: "click", id: "duplicate-state", data: { element: "t" } });
    const duplicateTrace = { traceparent, tracestate: "rojo=1,congo=2,rojo=3" };
    expect((await post(gateway, "/v1/events", duplicated, { ...auth, ...duplicateTrace })).status).toBe(202);
    const published = JSON.stringify({ channel: "traced", data: { n: 1 } });
    expect((await post(gateway, "/v1/publish", published, { ...auth, ...trace })).status).toBe(202);

    const messages = await readTopic(topic, 5);
    const headersOf = (id: string) =>
      Object.fromEntries(messages.find((message) => JSON.parse(message.value).id === id)?.headers ?? []);
    expect(headersOf("traced")).toMatchObject(trace);
    expect(headersOf("bad-trace").traceparent).toBeUndefined();
    expect(headersOf("bad-trace").tracestate).toBeUndefined();
    expect(headersOf("later-version")).toMatchObject({ traceparent, tracestate: "rojo=1" });
    expect(headersOf("duplicate-state").traceparent).toBe(traceparent);
    expect(headersOf("duplicate-state").tracestate).toBeUndefined();
    const [fanned] = await readTopic(fanoutTopic, 1);
    expect(Object.fromEntries(fanned?.headers ?? [])).toMatchObject({ ...trace, channel: "traced" });
  });
});

describe.each(RUNTIMES)(
  "CloudEvents from the official SDK (cloudevents) in the three HTTP modes on %s",
  (runtime) => {
    let gateway: RunningGateway;
    let topic: string;
    let auth: Record<string, string>;

    beforeAll(async () => {
      topic = await createTopic(`cloudevents-${runtime}`, 1);
      gateway = await startGateway(runtime, { KAFKA_BROKERS: services().brokers, KAFKA_TOPIC: topic });
      auth = { authorization: `Bearer ${await token("acme", ["ingest"])}` };
    });
    afterAll(async () => {
      await gateway.stop("SIGKILL");
    });

    test("structured, batched and binary modes land as records with ce_* headers (datacontenttype too), data byte for byte", async () => {
      const event = (id: string, data: object) =>
        new CloudEvent({
          type: "click",
          source: "/shop/web",
          id,
          time: "2026-12-04T10:00:00.000Z",
          subject: `cart-${id}`,
          partitionkey: `key-${id}`,
          // An extension: a ce-region header in binary mode (HTTP binding 3.1.3).
          region: "eu",
          // The Content-Type in binary mode (HTTP binding 3.1.1).
          datacontenttype: "application/vnd.shop+json",
          data,
        });
      const send = async (message: { headers: Record<string, unknown>; body: unknown }) =>
        post(gateway, "/v1/events", message.body as string, {
          ...auth,
          ...(message.headers as Record<string, string>),
        });
      const structured = await send(HTTP.structured(event("ce-structured", { element: "a", n: 1 })));
      expect(structured.status).toBe(202);
      const binary = await send(HTTP.binary(event("ce-binary", { element: "b", n: 2 })));
      expect(binary.status).toBe(202);
      const batch = [event("ce-batch-1", { element: "c" }), event("ce-batch-2", { element: "d" })];
      const batched = await send({
        headers: { "content-type": "application/cloudevents-batch+json" },
        body: JSON.stringify(batch.map((one) => one.toJSON())),
      });
      expect(JSON.parse(batched.text)).toEqual({ accepted: 2, rejected: 0, errors: [] });
      // A byte-faithful data member, spelled as no serializer would.
      const exact = '{"element":"e","big":9007199254740993,"f":1.50}';
      const raw = await post(
        gateway,
        "/v1/events",
        `{"specversion":"1.0","type":"click","source":"/raw","id":"ce-raw","data":${exact}}`,
        { ...auth, "content-type": "application/cloudevents+json" },
      );
      expect(raw.status).toBe(202);
      const invalid = await post(
        gateway,
        "/v1/events",
        JSON.stringify({
          specversion: "0.3",
          type: "click",
          source: "/x",
          id: "old",
          data: { element: "x" },
        }),
        { ...auth, "content-type": "application/cloudevents+json" },
      );
      expect(invalid.status).toBe(422);
      expect(JSON.parse(invalid.text).errors[0]).toMatchObject({ code: "invalid_record" });
      // HTTP binding 3.1.3.2: a double-quoted header value is unquoted, then percent-decoded once;
      // bytes that are not UTF-8 (an overlong space) MUST be rejected.
      const binaryHeaders = {
        ...auth,
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": "click",
      };
      const quoted = await post(gateway, "/v1/events", '{"element":"q"}', {
        ...binaryHeaders,
        "ce-id": "ce-quoted",
        "ce-source": '"/old \\"sender\\""',
        "ce-subject": "caf%C3%A9",
      });
      expect(quoted.status).toBe(202);
      const overlong = await post(gateway, "/v1/events", '{"element":"o"}', {
        ...binaryHeaders,
        "ce-id": "ce-overlong",
        "ce-source": "%C0%A0",
      });
      expect(overlong.status).toBe(422);
      expect(JSON.parse(overlong.text).errors[0]).toMatchObject({ code: "invalid_record" });
      // A CloudEvents String excludes control characters and lone surrogates (spec 1.0.2, Type System).
      const excluded = await post(
        gateway,
        "/v1/events",
        '[{"specversion":"1.0","type":"click","source":"/x","id":"ce-nul","subject":"a\\u0000b","data":{}},' +
          '{"specversion":"1.0","type":"click","source":"/x","id":"ce-lone","subject":"\\udead","data":{}}]',
        { ...auth, "content-type": "application/cloudevents-batch+json" },
      );
      expect(excluded.status).toBe(422);
      expect(JSON.parse(excluded.text).errors.map((error: { code: string }) => error.code)).toEqual([
        "invalid_record",
        "invalid_record",
      ]);

      // No attribute is dropped after a 202: a name past 20 characters (only discouraged) is carried, a
      // value too long for a header, or of no CloudEvents type, refuses its event alone.
      const longName = "comexamplelongextensionname";
      const attributes = await post(
        gateway,
        "/v1/events",
        JSON.stringify([
          {
            specversion: "1.0",
            type: "click",
            source: "/x",
            id: "ce-long-name",
            [longName]: "v",
            data: { element: "n" },
          },
          {
            specversion: "1.0",
            type: "click",
            source: "/x",
            id: "ce-ratio",
            ratio: 1.5,
            data: { element: "r" },
          },
        ]),
        { ...auth, "content-type": "application/cloudevents-batch+json" },
      );
      expect(JSON.parse(attributes.text)).toMatchObject({ accepted: 1, rejected: 1, errors: [{ index: 1 }] });
      const tooLong = await post(gateway, "/v1/events", '{"element":"l"}', {
        ...binaryHeaders,
        "ce-id": "ce-too-long",
        "ce-source": "/x",
        "ce-region": "x".repeat(4097),
      });
      expect(tooLong.status).toBe(422);

      const messages = await readTopic(topic, 7);
      const byId = new Map(messages.map((message) => [JSON.parse(message.value).id as string, message]));
      expect([...byId.keys()].sort()).toEqual([
        "ce-batch-1",
        "ce-batch-2",
        "ce-binary",
        "ce-long-name",
        "ce-quoted",
        "ce-raw",
        "ce-structured",
      ]);
      expect(Object.fromEntries(byId.get("ce-long-name")?.headers ?? [])).toMatchObject({
        [`ce_${longName}`]: "v",
      });
      expect(Object.fromEntries(byId.get("ce-quoted")?.headers ?? [])).toMatchObject({
        ce_source: '/old "sender"',
        ce_subject: "café",
      });
      for (const id of ["ce-structured", "ce-binary", "ce-batch-1"]) {
        const message = byId.get(id);
        const value = JSON.parse(message?.value ?? "{}");
        expect(value).toMatchObject({ type: "click", ts: "2026-12-04T10:00:00.000Z", key: `key-${id}` });
        expect(message?.key).toBe(`key-${id}`);
        const headers = Object.fromEntries(message?.headers ?? []);
        expect(headers).toMatchObject({
          ce_specversion: "1.0",
          ce_id: id,
          ce_type: "click",
          ce_source: "/shop/web",
          ce_subject: `cart-${id}`,
          ce_time: "2026-12-04T10:00:00.000Z",
          ce_region: "eu",
          ce_datacontenttype: "application/vnd.shop+json",
          tenant: "acme",
          type: "click",
          // The value is the gateway's JSON record around data, whatever data's own media type.
          "content-type": "application/json",
        });
      }
      expect(JSON.parse(byId.get("ce-binary")?.value ?? "{}").data).toEqual({ element: "b", n: 2 });
      expect(byId.get("ce-raw")?.value).toContain(`"data":${exact}`);
    });

    test("a null attribute is unset (JSON format 2.2): the spec's own examples are accepted, beside a refused event", async () => {
      // As in json-format.md §3.2: "subject": null, an "unsetextension": null; other SDKs also write "time": null.
      const event = (id: string) => ({
        specversion: "1.0",
        type: "click",
        source: "/mycontext",
        subject: null,
        id,
        time: null,
        datacontenttype: null,
        partitionkey: null,
        unsetextension: null,
        data: { element: "n" },
      });
      const structured = await post(gateway, "/v1/events", JSON.stringify(event("ce-null")), {
        ...auth,
        "content-type": "application/cloudevents+json",
      });
      expect(structured.status).toBe(202);
      const batched = await post(
        gateway,
        "/v1/events",
        JSON.stringify([event("ce-null-batch"), { ...event("ce-null-data"), data: null }]),
        { ...auth, "content-type": "application/cloudevents-batch+json" },
      );
      expect(batched.status).toBe(202);
      expect(JSON.parse(batched.text)).toEqual({
        accepted: 1,
        rejected: 1,
        errors: [{ index: 1, reason: '"data" must be a JSON object', code: "invalid_record" }],
      });

      const messages = await readTopic(topic, 8);
      const written = messages.filter((message) => JSON.parse(message.value).id.startsWith("ce-null"));
      expect(written.map((message) => JSON.parse(message.value).id).sort()).toEqual([
        "ce-null",
        "ce-null-batch",
      ]);
      for (const message of written) {
        expect(message.key).toBe("acme");
        expect(JSON.parse(message.value).ts).toBeUndefined();
        const headers = Object.fromEntries(message.headers ?? []);
        expect(
          Object.keys(headers)
            .filter((name) => name.startsWith("ce_"))
            .sort(),
        ).toEqual(["ce_id", "ce_source", "ce_specversion", "ce_type"]);
      }
    });
  },
);

describe.each(RUNTIMES)("RateLimit-Policy and RateLimit fields on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, {
      REDIS_URL: "",
      RATE_LIMIT_EVENTS_PER_SEC: "10",
      RATE_LIMIT_REQUESTS_PER_SEC: "1000",
      CORS_ORIGINS: "*",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("on a 202 and on a 429, beside the legacy headers, and exposed to scripts", async () => {
    const headers = {
      authorization: `Bearer ${await token(`rl-${runtime}-${Date.now()}`, ["ingest"])}`,
      "content-type": "application/json",
      origin: "https://app.example",
    };
    const batch = (size: number) =>
      JSON.stringify(Array.from({ length: size }, () => ({ type: "click", data: { element: "x" } })));
    const accepted = await post(gateway, "/v1/events", batch(8), headers);
    expect(accepted.status).toBe(202);
    expect(accepted.headers.get("ratelimit-policy")).toBe('"tenant";q=10;w=1');
    expect(accepted.headers.get("ratelimit")).toMatch(/^"tenant";r=2;t=1$/);
    expect(accepted.headers.get("ratelimit-limit")).toBe("10");
    expect(accepted.headers.get("ratelimit-remaining")).toBe("2");
    expect(accepted.headers.get("ratelimit-reset")).toBe("1");
    // The budget's shared fields join the reply's content type and the response policy.
    expect(accepted.headers.get("content-type")).toBe("application/json");
    expect(accepted.headers.get("x-content-type-options")).toBe("nosniff");
    expect(accepted.headers.get("cache-control")).toBe("no-store");
    expect(accepted.headers.get("access-control-expose-headers")).toContain("RateLimit-Policy, RateLimit,");

    // Two batches of 8 never fit one window of 10; a window may turn between the requests, not twice.
    let refused = await post(gateway, "/v1/events", batch(8), headers);
    if (refused.status === 202) refused = await post(gateway, "/v1/events", batch(8), headers);
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.text).error).toBe("rate_limited");
    expect(refused.headers.get("ratelimit-policy")).toBe('"tenant";q=10;w=1');
    expect(refused.headers.get("ratelimit")).toMatch(/^"tenant";r=0;t=1$/);
    expect(refused.headers.get("retry-after")).toBe("1");
  });

  test("a batch larger than the whole budget is a 429 with its own code, batch_over_budget, and spends nothing", async () => {
    const headers = {
      authorization: `Bearer ${await token(`over-${runtime}-${Date.now()}`, ["ingest"])}`,
      "content-type": "application/json",
    };
    const batch = (size: number) =>
      JSON.stringify(Array.from({ length: size }, () => ({ type: "click", data: { element: "x" } })));
    const over = await post(gateway, "/v1/events", batch(11), headers);
    expect(over.status).toBe(429);
    expect(JSON.parse(over.text)).toEqual({
      error: "batch_over_budget",
      message: "a batch of 11 exceeds the whole budget of 10 per second: split it",
    });
    // The SPEC's 429 still: Retry-After and the budget's fields, RateLimit-Limit saying what fits.
    expect(over.headers.get("retry-after")).toBe("1");
    expect(over.headers.get("ratelimit-limit")).toBe("10");
    expect(over.headers.get("ratelimit-policy")).toBe('"tenant";q=10;w=1');
    expect(responseProblems("POST", "/v1/events", { ...over, body: over.text })).toEqual([]);
    // Split, it fits: nothing of the budget was spent on the refusal.
    const halves = [await post(gateway, "/v1/events", batch(5), headers)];
    halves.push(await post(gateway, "/v1/events", batch(5), headers));
    expect(halves.map((half) => half.status)).toEqual([202, 202]);
  });
});

describe.each(RUNTIMES)("Idempotency-Key across two instances sharing Redis on %s", (runtime) => {
  let gateways: RunningGateway[];
  let topic: string;
  let auth: Record<string, string>;

  beforeAll(async () => {
    topic = await createTopic(`idempotency-${runtime}`, 3);
    const env = { KAFKA_BROKERS: services().brokers, KAFKA_TOPIC: topic, REDIS_URL: services().redisUrl };
    gateways = await Promise.all([startGateway(runtime, env), startGateway(runtime, env)]);
    auth = {
      authorization: `Bearer ${await token(`idem-${runtime}-${Date.now()}`, ["ingest", "publish"])}`,
      "content-type": "application/json",
    };
  });
  afterAll(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop("SIGKILL")));
  });

  test("ledger: every request retried once with its key, on the other instance, under load: each record once", async () => {
    const REQUESTS = 120;
    const PER_REQUEST = 10;
    const run = Date.now().toString(36);
    const send = async (index: number, attempt: number, key: string, body: string) => {
      const gateway = gateways[(index + attempt) % 2] as RunningGateway;
      for (;;) {
        const response = await post(gateway, "/v1/events", body, { ...auth, "idempotency-key": key });
        // 409 (when the first attempt still runs on the other instance): a client waits and asks again.
        if (response.status !== 409) return response;
        expect(responseProblems("POST", "/v1/events", { ...response, body: response.text })).toEqual([]);
        await Bun.sleep(20);
      }
    };
    const outcomes = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, index) => {
        const records = Array.from({ length: PER_REQUEST }, (_, n) => ({
          type: "click",
          id: `${run}-${index}-${n}`,
          data: { element: "buy" },
        }));
        const body = JSON.stringify(records);
        const key = `${run}-${index}`;
        // Half the retries race the first attempt, half follow it.
        const [first, retry] =
          index % 2 === 0
            ? await Promise.all([send(index, 0, key, body), send(index, 1, key, body)])
            : [await send(index, 0, key, body), await send(index, 1, key, body)];
        return { first, retry };
      }),
    );
    for (const { first, retry } of outcomes) {
      expect([first.status, retry.status]).toEqual([202, 202]);
      expect(retry.text).toBe(first.text);
      expect([
        first.headers.get("idempotency-replayed"),
        retry.headers.get("idempotency-replayed"),
      ]).toContain("true");
    }
    const expected = REQUESTS * PER_REQUEST;
    const ids = (await readTopic(topic, expected)).map((message) => JSON.parse(message.value).id as string);
    expect(ids.length).toBe(expected);
    expect(new Set(ids).size).toBe(expected);
  }, 60_000);

  test("same key, other body: 422; on /v1/publish too, and a replay says so", async () => {
    const key = `reuse-${Date.now()}`;
    const [a, b] = gateways as [RunningGateway, RunningGateway];
    const record = (element: string) => JSON.stringify({ type: "click", data: { element } });
    expect((await post(a, "/v1/events", record("a"), { ...auth, "idempotency-key": key })).status).toBe(202);
    const reused = await post(b, "/v1/events", record("b"), { ...auth, "idempotency-key": key });
    expect(reused.status).toBe(422);
    expect(JSON.parse(reused.text).error).toBe("idempotency_key_reused");
    // The same body gzip-compressed (a retry from another runtime) is the same request: replayed.
    const gzipped = await post(b, "/v1/events", gzipSync(record("a"), { level: 9 }), {
      ...auth,
      "content-encoding": "gzip",
      "idempotency-key": key,
    });
    expect([gzipped.status, gzipped.headers.get("idempotency-replayed")]).toEqual([202, "true"]);

    const publish = JSON.stringify({ channel: "orders", data: { n: 1 } });
    const first = await post(a, "/v1/publish", publish, { ...auth, "idempotency-key": key });
    const again = await post(b, "/v1/publish", publish, { ...auth, "idempotency-key": key });
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.headers.get("idempotency-replayed")).toBe("true");
  });

  test("a key is the tenant's: another tenant sending the same key and body on the other instance gets its own 202 and its own record", async () => {
    const key = `tenants-${Date.now()}`;
    const [a, b] = gateways as [RunningGateway, RunningGateway];
    const tenantOf = (authorization: string) =>
      JSON.parse(atob(authorization.split(".")[1] as string)).tenant as string;
    const otherTenant = `other-${runtime}-${Date.now()}`;
    const other = {
      authorization: `Bearer ${await token(otherTenant, ["ingest"])}`,
      "content-type": "application/json",
    };
    const record = JSON.stringify({ type: "click", id: key, data: { element: "x" } });
    const before = (await readTopic(topic, 0)).length;
    const first = await post(a, "/v1/events", record, { ...auth, "idempotency-key": key });
    const second = await post(b, "/v1/events", record, { ...other, "idempotency-key": key });
    expect([first.status, second.status]).toEqual([202, 202]);
    expect(second.headers.get("idempotency-replayed")).toBeNull();
    const tenants = (await readTopic(topic, before + 2))
      .map((message) => JSON.parse(message.value))
      .filter((value) => value.id === key)
      .map((value) => value.tenant as string);
    expect(tenants.sort()).toEqual([tenantOf(auth.authorization as string), otherTenant].sort());
  });

  test("a key is the caller's: a token of the tenant limited to other channels gets its own 403, not the first caller's replayed 202", async () => {
    const key = `scope-${Date.now()}`;
    const [a, b] = gateways as [RunningGateway, RunningGateway];
    const tenant = JSON.parse(atob((auth.authorization as string).split(".")[1] as string)).tenant as string;
    const limited = {
      authorization: `Bearer ${await token(tenant, ["ingest", "publish"], { channels: ["orders.*"] })}`,
      "content-type": "application/json",
    };
    const publish = JSON.stringify({ channel: "secret", data: { n: 1 } });
    expect((await post(a, "/v1/publish", publish, { ...auth, "idempotency-key": key })).status).toBe(202);
    const refused = await post(b, "/v1/publish", publish, { ...limited, "idempotency-key": key });
    expect(refused.status).toBe(403);
    expect(refused.headers.get("idempotency-replayed")).toBeNull();
    const record = JSON.stringify({ type: "click", channel: "secret", data: { element: "x" } });
    expect((await post(a, "/v1/events", record, { ...auth, "idempotency-key": key })).status).toBe(202);
    const rejected = await post(b, "/v1/events", record, { ...limited, "idempotency-key": key });
    expect(rejected.status).toBe(422);
    expect(JSON.parse(rejected.text).errors[0].code).toBe("forbidden_channel");
  });
});

describe.each(RUNTIMES)("Idempotency-Key while the first request is still in flight on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    // A broker nobody listens on: the first request waits for an acknowledgement that never comes.
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "127.0.0.1:1",
      REDIS_URL: "",
      INGEST_ACK_TIMEOUT_MS: "2000",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("a repeat gets 409 with Retry-After, also after the first's 503 while its record is still being written", async () => {
    const headers = {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
      "idempotency-key": `in-flight-${runtime}`,
    };
    const body = JSON.stringify({ type: "click", id: "in-flight", data: { element: "x" } });
    const first = post(gateway, "/v1/events", body, headers);
    // Its record queued: the key is claimed by then.
    await waitUntil(async () => {
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      return /^gateway_queue_records [1-9]/m.test(metrics);
    }, "the first request's record in the queue");
    const repeat = await post(gateway, "/v1/events", body, headers);
    expect(repeat.status).toBe(409);
    expect(JSON.parse(repeat.text).error).toBe("idempotency_in_flight");
    expect(repeat.headers.get("retry-after")).toBe("1");
    expect(responseProblems("POST", "/v1/events", { ...repeat, body: repeat.text })).toEqual([]);

    expect((await first).status).toBe(503);
    const afterTimeout = await post(gateway, "/v1/events", body, headers);
    expect(afterTimeout.status).toBe(409);
    expect(afterTimeout.headers.get("idempotency-replayed")).toBeNull();
  });
});
