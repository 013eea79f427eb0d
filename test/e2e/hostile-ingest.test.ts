import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { gzipSync } from "node:zlib";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { tempDirs } from "../support/temp-dir.ts";
import { token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket, waitForLog } from "./harness.ts";

/** Log folders of this file's gateways, removed after its tests. */
const tempDir = tempDirs();

/** A 19-digit nanosecond timestamp and 2^53 + 1: both come out of JSON.parse rounded. */
const BIG_DATA = '{"element":"big","nanos":1700000000123456789,"n":9007199254740993,"f":1.50}';

const deepData = (levels: number) => `{"element":"deep","x":${"[".repeat(levels)}${"]".repeat(levels)}}`;

async function post(
  gateway: RunningGateway,
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
) {
  const response = await fetch(`${gateway.url}${path}`, { method: "POST", body, headers });
  return { status: response.status, text: await response.text() };
}

/**
 * Sends each request whole (head and body in one write) on one keep-alive connection, waiting for
 * each answer, and returns the answers' heads; a connection the gateway closed ends the list.
 */
async function keepAliveExchange(port: number, requests: string[]): Promise<string[]> {
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let received = "";
  let wake = () => {};
  let open = true;
  socket.on("data", (chunk) => {
    received += chunk.toString("latin1");
    wake();
  });
  socket.on("close", () => {
    open = false;
    wake();
  });
  const heads: string[] = [];
  try {
    for (const request of requests) {
      socket.write(request);
      for (;;) {
        const headEnd = received.indexOf("\r\n\r\n");
        const length = Number(/content-length: (\d+)/i.exec(received.slice(0, headEnd))?.[1] ?? 0);
        if (headEnd >= 0 && received.length >= headEnd + 4 + length) {
          heads.push(received.slice(0, headEnd).toLowerCase());
          received = received.slice(headEnd + 4 + length);
          break;
        }
        if (!open) return heads;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
    // A connection closed after the last answer: give the close a moment to arrive.
    await Bun.sleep(50);
    if (!open) heads.push("closed");
    return heads;
  } finally {
    socket.destroy();
  }
}

/** How long /health/live takes to answer while `work` runs: the event loop's stall. */
/** Probes /health/live while `work` runs and returns every status it got (none may be an error). */
async function liveStatusesDuring(gateway: RunningGateway, work: Promise<unknown>): Promise<number[]> {
  const statuses: number[] = [];
  let done = false;
  const probing = (async () => {
    do {
      statuses.push(await fetch(`${gateway.url}/health/live`).then((response) => response.status));
      await Bun.sleep(5);
    } while (!done);
  })();
  await work;
  done = true;
  await probing;
  return statuses;
}

describe.each(RUNTIMES)("payload fidelity and hostile bodies on %s", (runtime) => {
  let gateway: RunningGateway;
  let topic: string;
  let deadLetters: string;
  let ingestAuth: Record<string, string>;
  let publisherAuth: Record<string, string>;

  beforeAll(async () => {
    topic = await createTopic(`fidelity-${runtime}`, 1);
    deadLetters = await createTopic(`fidelity-dlq-${runtime}`, 1);
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_FANOUT_TOPIC: await createTopic(`fidelity-fanout-${runtime}`, 1),
      KAFKA_MAX_MESSAGE_BYTES: "65536",
      KAFKA_DLQ_TOPIC: deadLetters,
      // Eight bodies of MAX_BODY_BYTES (1 MiB): a tenant may hold half while others hold nothing.
      REQUEST_BODIES_MAX_BYTES: String(8 * 1024 * 1024),
      // No Redis: a refusal is then answered without I/O, before uWS delivered the body that came with it.
      REDIS_URL: "",
    });
    await waitForLog(gateway, "fan-out consumer reading");
    ingestAuth = {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
    };
    publisherAuth = {
      authorization: `Bearer ${await token("acme", ["ingest", "publish", "subscribe"])}`,
      "content-type": "application/json",
    };
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("numbers in data reach Kafka, subscribers and the delta route exactly as sent", async () => {
    const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
    await socket.opened();
    await socket.next((frame) => frame.type === "connected");
    socket.send({ type: "subscribe", channel: "big" });
    await socket.next((frame) => frame.type === "subscribed");
    const raw: string[] = [];
    socket.socket.addEventListener("message", (event) => raw.push(String(event.data)));

    const record = `{"type":"click","id":"big-1","ts":1700000000123456789,"channel":"big","data":${BIG_DATA}}`;
    expect((await post(gateway, "/v1/events", `[${record}]`, publisherAuth)).status).toBe(202);
    const published = `{"channel":"big","data":${BIG_DATA}}`;
    expect((await post(gateway, "/v1/publish", published, publisherAuth)).status).toBe(202);

    const [message] = await readTopic(topic, 1);
    expect(message?.value).toContain(`"data":${BIG_DATA}`);
    expect(message?.value).toContain('"ts":1700000000123456789');

    await socket.next((frame) => frame.type === "event");
    await socket.next((frame) => frame.type === "event");
    const events = raw.filter((text) => text.includes('"type":"event"'));
    expect(events.length).toBe(2);
    for (const text of events) expect(text).toContain(`"data":${BIG_DATA}`);

    const delta = await fetch(`${gateway.url}/v1/channels/big/events`, { headers: publisherAuth });
    const deltaText = await delta.text();
    expect(delta.status).toBe(200);
    expect(deltaText.split(`"data":${BIG_DATA}`).length - 1).toBe(2);
    expect(JSON.parse(deltaText).events.length).toBe(2);
    socket.close();
  });

  test("a refused record's dead letter holds it as sent, numbers included", async () => {
    const data = '{"element":"e","x":"not a number","n":9007199254740993,"huge":1e400,"one":1.0, "z":-0}';
    const record = `{"type":"click","id":"refused-as-sent", "ts":1700000000123456789,"data":${data}}`;
    const response = await post(gateway, "/v1/events", `[${record}]`, ingestAuth);
    expect(response.status).toBe(422);
    let letter: string | undefined;
    await waitUntil(async () => {
      const letters = await readTopic(deadLetters, 1, 2000);
      letter = letters.find((message) => message.value.includes('"refused-as-sent"'))?.value;
      return letter !== undefined;
    }, "the dead letter");
    expect(letter).toContain(`"reason":"data/x must be number","rejectedAt":"`);
    expect(letter).toEndWith(`,"record":${record}}`);
    expect(JSON.parse(letter as string)).toMatchObject({ tenant: "acme", record: { id: "refused-as-sent" } });
  });

  test("a record with a channel needs the ingest scope only (publish too with INGEST_CHANNEL_SCOPE=publish); a token limited to channel patterns has only that record refused", async () => {
    const body = JSON.stringify([
      { type: "click", channel: "orders", data: { element: "a" } },
      { type: "click", data: { element: "b" } },
    ]);
    const response = await post(gateway, "/v1/events", body, ingestAuth);
    expect(response.status).toBe(202);
    expect(JSON.parse(response.text)).toEqual({ accepted: 2, rejected: 0, errors: [] });
    const limited = {
      authorization: `Bearer ${await token("acme", ["ingest"], { channels: ["news.*"] })}`,
      "content-type": "application/json",
    };
    const refused = await post(
      gateway,
      "/v1/events",
      body.replace('"b"}}]', '"b"},"channel":"news.eu"}]'),
      limited,
    );
    expect(JSON.parse(refused.text).errors).toEqual([
      { index: 0, reason: "channel orders is not allowed for this token", code: "forbidden_channel" },
    ]);
    // INGEST_CHANNEL_SCOPE=publish: the same ingest token's record with a channel is refused on its own.
    const strict = await startGateway(runtime, { KAFKA_BROKERS: "", INGEST_CHANNEL_SCOPE: "publish" });
    try {
      expect(JSON.parse((await post(strict, "/v1/events", body, ingestAuth)).text)).toEqual({
        accepted: 1,
        rejected: 1,
        errors: [
          { index: 0, reason: '"channel" needs a token with scope publish', code: "forbidden_channel" },
        ],
      });
    } finally {
      await strict.stop("SIGKILL");
    }
  });

  test("a record that can never fit a Kafka batch is refused on its own, before any 202", async () => {
    const big = { type: "click", data: { element: "x", padding: "x".repeat(70_000) } };
    const response = await post(
      gateway,
      "/v1/events",
      JSON.stringify([big, { type: "click", data: { element: "y" } }]),
      ingestAuth,
    );
    expect(response.status).toBe(202);
    const body = JSON.parse(response.text);
    expect(body.accepted).toBe(1);
    expect(body.errors[0].index).toBe(0);
    expect(body.errors[0].reason).toStartWith("record too large for Kafka");
  });

  test("deep nesting is a per-record 422 on ingest and a 400 on publish, never a 5xx, and /health/live answers meanwhile", async () => {
    const valid = '{"type":"click","data":{"element":"ok"}}';
    const mixed = `[{"type":"click","data":${deepData(10_000)}},${valid}]`;
    const mixedResponse = await post(gateway, "/v1/events", mixed, ingestAuth);
    expect(mixedResponse.status).toBe(202);
    expect(JSON.parse(mixedResponse.text).errors).toEqual([
      { index: 0, reason: "nesting deeper than 64 levels", code: "too_deep" },
    ]);

    const huge = `{"type":"click","data":${deepData(400_000)}}`;
    const requests = Promise.all(
      Array.from({ length: 4 }, () => post(gateway, "/v1/events", huge, ingestAuth)),
    );
    const live = await liveStatusesDuring(gateway, requests);
    for (const response of await requests) expect(response.status).toBe(422);
    expect(new Set(live)).toEqual(new Set([200]));

    const publish = await post(
      gateway,
      "/v1/publish",
      // Deep, yet within PUBLISH_MAX_BYTES: the nesting, not the size, is what is refused.
      `{"channel":"big","data":${deepData(10_000)}}`,
      publisherAuth,
    );
    expect(publish.status).toBe(400);
    expect(JSON.parse(publish.text).error).toBe("bad_request");
  });

  test("a publish whose broadcast is not a boolean is a 400, not published to its channel alone", async () => {
    const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
    await socket.opened();
    await socket.next((frame) => frame.type === "connected");
    socket.send({ type: "subscribe", channel: "typed" });
    await socket.next((frame) => frame.type === "subscribed");

    for (const body of [
      '{"broadcast":"true","channel":"typed","data":{"n":1}}',
      '{"broadcast":1,"data":{"n":1}}',
      '{"broadcast":null,"channel":"typed","data":{"n":1}}',
    ]) {
      const refused = await post(gateway, "/v1/publish", body, publisherAuth);
      expect(refused.status).toBe(400);
      expect(JSON.parse(refused.text)).toMatchObject({
        error: "bad_request",
        message: "broadcast must be true or false",
      });
    }
    const body = '{"broadcast":true,"channel":"typed","data":{"n":2}}';
    expect((await post(gateway, "/v1/publish", body, publisherAuth)).status).toBe(202);
    // The first event the socket gets is the real broadcast: none of the refused ones was published.
    expect(await socket.next((frame) => frame.type === "event")).toMatchObject({
      channel: "typed",
      broadcast: true,
      data: { n: 2 },
    });
    socket.close();
  });

  test("a body far past the limit gets the gateway's JSON 413 with its headers, not an engine's bare one", async () => {
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers: ingestAuth,
      body: "x".repeat(8 * 1024 * 1024),
    });
    expect(response.status).toBe(413);
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(((await response.json()) as { error: string }).error).toBe("payload_too_large");
  });

  test("a request answered before its body came (401 without a token) does not hold its upload: uWS closes the connection", async () => {
    const socket = connect(gateway.port, "127.0.0.1");
    socket.on("error", () => {});
    let text = "";
    socket.on("data", (chunk) => {
      text += chunk.toString();
    });
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write(
      `POST /v1/events HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: ${600 * 1024}\r\n\r\n${" ".repeat(300 * 1024)}`,
    );
    const outcome = await Promise.race([closed.then(() => "closed"), Bun.sleep(3000).then(() => "open")]);
    socket.destroy();
    expect(text).toStartWith("HTTP/1.1 401");
    // uWS receives a body whether or not it is read, into a buffer of its Content-Length: the connection
    // must go. Bun reads none that is not asked for (the socket waits), so it may keep the connection.
    if (runtime === "node") expect(outcome).toBe("closed");
  });

  test("an early answer to a small body sent whole (401, 415) keeps the keep-alive connection open", async () => {
    const head = (headers: string) => `POST /v1/events HTTP/1.1\r\nhost: gateway\r\n${headers}`;
    const json = '{"type":"click","data":{"element":"b"}}';
    const heads = await keepAliveExchange(gateway.port, [
      `${head("content-type: application/json\r\n")}content-length: ${json.length}\r\n\r\n${json}`,
      `${head("content-type: application/json\r\n")}content-length: 0\r\n\r\n`,
      `${head("content-type: application/json\r\n")}transfer-encoding: chunked\r\n\r\n${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n`,
      `${head(`authorization: ${ingestAuth.authorization}\r\ncontent-type: text/plain\r\n`)}content-length: 3\r\n\r\nabc`,
      "GET /health/live HTTP/1.1\r\nhost: gateway\r\n\r\n",
    ]);
    expect(heads.map((answer) => answer.slice(0, 12))).toEqual([
      "http/1.1 401",
      "http/1.1 401",
      "http/1.1 401",
      "http/1.1 415",
      "http/1.1 200",
    ]);
    for (const answer of heads) expect(answer).not.toContain("connection: close");
  });

  test("a tenant holding uploads open past its share of REQUEST_BODIES_MAX_BYTES gets 503 overloaded, and another tenant still gets in", async () => {
    const hog = await token("hog", ["ingest"]);
    // Announces MAX_BODY_BYTES and sends half: the gateway holds the body until the rest comes.
    const upload = () => {
      const socket = connect(gateway.port, "127.0.0.1");
      const answer = new Promise<string>((resolve) => {
        let text = "";
        socket.on("data", (chunk) => {
          text += chunk.toString();
          if (text.includes("\r\n\r\n")) resolve(text);
        });
        socket.on("close", () => resolve(text));
        socket.on("error", () => {});
      });
      socket.write(
        `POST /v1/events HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer ${hog}\r\ncontent-type: application/json\r\ncontent-length: ${1024 * 1024}\r\n\r\n${" ".repeat(512 * 1024)}`,
      );
      return { socket, answer };
    };
    // Four fill the tenant's half of the 8 MiB.
    const held = Array.from({ length: 4 }, upload);
    await waitUntil(async () => {
      const text = await (await fetch(`${gateway.url}/metrics`)).text();
      return /^gateway_request_bodies_bytes 4194304$/m.test(text);
    }, "the four uploads counted in gateway_request_bodies_bytes");
    const over = upload();
    try {
      const refused = await over.answer;
      expect(refused).toStartWith("HTTP/1.1 503");
      expect(refused.toLowerCase()).toContain("retry-after: 1");
      expect(refused).toContain('"error":"overloaded"');
      // The hog's uploads are still open: another tenant's request is read and written.
      const other = await post(gateway, "/v1/events", '{"type":"click","data":{"element":"b"}}', ingestAuth);
      expect(other.status).toBe(202);
    } finally {
      for (const { socket } of [...held, over]) socket.destroy();
    }
  });

  test("bytes that are not UTF-8 are refused (400, or the NDJSON line alone), and UTF-8 reaches Kafka as sent", async () => {
    const text = (title: string) =>
      `{"type":"page_view","id":"utf8-${title.length}","data":{"url":"https://e.com/","title":"${title}"}}`;
    const invalid = Buffer.concat([
      Buffer.from(text("").slice(0, -3)),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}}'),
    ]);
    const refused = await post(gateway, "/v1/events", invalid, ingestAuth);
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.text).error).toBe("malformed_json");
    const ndjson = Buffer.concat([invalid, Buffer.from(`\n${text("é ✓ 😀")}\n`)]);
    const partly = await post(gateway, "/v1/events", ndjson, {
      ...ingestAuth,
      "content-type": "application/x-ndjson",
    });
    expect(partly.status).toBe(202);
    expect(JSON.parse(partly.text)).toMatchObject({ accepted: 1, rejected: 1, errors: [{ index: 0 }] });
    const published = Buffer.concat([
      Buffer.from('{"channel":"big","data":{"t":"'),
      Buffer.from([0xc3]),
      Buffer.from('"}}'),
    ]);
    expect((await post(gateway, "/v1/publish", published, publisherAuth)).status).toBe(400);
    const [message] = await readTopic(topic, 2);
    expect(message).toBeDefined();
    const landed = await readTopic(topic, 2);
    expect(landed.map((record) => record.value).find((value) => value.includes('"id":"utf8-'))).toContain(
      '"title":"é ✓ 😀"',
    );
  });

  test("a 1 MiB body of bad NDJSON lines is a 400, and a gzip bomb a 413", async () => {
    const junk = "x\n".repeat(512 * 1024 - 8);
    const ndjson = { ...ingestAuth, "content-type": "application/x-ndjson" };
    const response = await post(gateway, "/v1/events", junk, ndjson);
    expect(response.status).toBe(400);
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    const bombed = await post(gateway, "/v1/events", bomb, { ...ingestAuth, "content-encoding": "gzip" });
    expect(bombed.status).toBe(413);
  });
});

describe.each(RUNTIMES)("per-IP budget before the body on %s", (runtime) => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await startGateway(runtime, {
      RATE_LIMIT_REQUESTS_PER_SEC: "1",
      // A budget of this process alone: through Redis it would be shared with the other runtime's gateway.
      REDIS_URL: "",
      LOCAL_LOG_DIR: tempDir("edge-gateway-ip-"),
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("a client over its request budget gets 429 before its token or body is looked at", async () => {
    const headers = { "content-type": "application/json" };
    // Three requests within one second: whatever the window boundary, at least one is over a budget of 1.
    const responses = [];
    for (let attempt = 0; attempt < 3; attempt++)
      responses.push(await post(gateway, "/v1/events", "{", headers));
    expect(responses[0]?.status).toBe(401);
    const second = responses.find((response) => response.status === 429);
    expect(second).toBeDefined();
    if (!second) return;
    expect(JSON.parse(second.text).error).toBe("rate_limited");
  });

  test("a 429 to a small body sent whole keeps the keep-alive connection open: a limited client does not reconnect", async () => {
    const request =
      "POST /v1/events HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    const heads = await keepAliveExchange(gateway.port, [request, request, request]);
    expect(heads).toHaveLength(3);
    expect(heads.some((answer) => answer.startsWith("http/1.1 429"))).toBe(true);
    for (const answer of heads) expect(answer).not.toContain("connection: close");
  });
});
