import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import puppeteer, { type Browser } from "puppeteer-core";
import { PartitionHash } from "../../src/infra/kafka/partition-hash.ts";
import { createTopic, services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway, waitForLog } from "./harness.ts";

/** The embedded sink and bus, even when the test command exported the real services' addresses. */
const EMBEDDED = { KAFKA_BROKERS: "", REDIS_URL: "" };

interface SseMessage {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
}

/** Reads an event stream as it arrives: each message (or comment line) as it completes. */
class SseReader {
  readonly messages: SseMessage[] = [];
  ended = false;
  private buffer = "";
  private waiters: Array<() => void> = [];
  private readonly reader: {
    read(): Promise<{ done: boolean; value?: Uint8Array }>;
    cancel(): Promise<void>;
  };

  constructor(response: Response) {
    this.reader = (response.body as ReadableStream<Uint8Array>).getReader() as unknown as typeof this.reader;
    void this.pump();
  }

  /** Goes away, as a client closing its EventSource. */
  close(): Promise<void> {
    return this.reader.cancel();
  }

  private async pump(): Promise<void> {
    const reader = this.reader;
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.buffer += decoder.decode(value, { stream: true });
        let end = this.buffer.indexOf("\n\n");
        while (end >= 0) {
          this.messages.push(parseMessage(this.buffer.slice(0, end)));
          this.buffer = this.buffer.slice(end + 2);
          end = this.buffer.indexOf("\n\n");
        }
        this.wake();
      }
    } catch {
      // The connection went away: the same as an end for the tests.
    }
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Waits until `done(messages)` holds, or fails after `timeoutMs`. */
  async until(done: (messages: SseMessage[]) => boolean, timeoutMs = 10_000): Promise<SseMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.messages)) {
      if (this.ended) throw new Error(`stream ended: ${JSON.stringify(this.messages)}`);
      if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.messages;
  }

  events(): SseMessage[] {
    return this.messages.filter((message) => message.event === "event");
  }
}

function parseMessage(block: string): SseMessage {
  const message: SseMessage = {};
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) message.comment = line.slice(1).trim();
    const colon = line.indexOf(": ");
    if (colon < 0) continue;
    const field = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (field === "id") message.id = value;
    else if (field === "event") message.event = value;
    else if (field === "data")
      message.data = message.data === undefined ? value : `${message.data}\n${value}`;
  }
  return message;
}

async function openStream(
  gateway: RunningGateway,
  query: string,
  headers: Record<string, string> = {},
): Promise<SseReader> {
  const response = await fetch(`${gateway.url}/v1/sse?${query}`, { headers });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
  return new SseReader(response);
}

async function publish(gateway: RunningGateway, tenant: string, channel: string, dataJson: string) {
  const response = await fetch(`${gateway.url}/v1/publish`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token(tenant, ["publish"])}`,
      "content-type": "application/json",
    },
    body: `{"channel":${JSON.stringify(channel)},"data":${dataJson}}`,
  });
  expect(response.status).toBe(202);
}

/** A channel of `tenant` whose fan-out partition is not the one its broadcasts go to (keys as the fan-out bus makes them). */
function channelOffBroadcastPartition(tenant: string, partitions: number): string {
  const hash = new PartitionHash();
  const partition = (key: string) => hash.of(key) % partitions;
  for (let n = 0; ; n++) {
    const channel = `news-${n}`;
    if (partition(`${tenant}/${channel}`) !== partition(`${tenant}/$broadcast`)) return channel;
  }
}

for (const runtime of RUNTIMES) {
  describe(`Server-Sent Events with Kafka on ${runtime}`, () => {
    test("a broadcast has no id: after one, the Last-Event-ID EventSource sends back resumes the stream's channel", async () => {
      const gateway = await startGateway(runtime, {
        KAFKA_BROKERS: services().brokers,
        KAFKA_TOPIC: await createTopic(`sse-broadcast-events-${runtime}`),
        KAFKA_FANOUT_TOPIC: await createTopic(`sse-broadcast-fanout-${runtime}`, 3),
        REDIS_URL: "",
      });
      try {
        const channel = channelOffBroadcastPartition("acme", 3);
        const subscriber = await token("acme", ["subscribe"]);
        const stream = await openStream(gateway, `channel=${channel}&token=${subscriber}`);
        await publish(gateway, "acme", channel, '{"n":1}');
        const broadcast = await fetch(`${gateway.url}/v1/publish`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${await token("acme", ["publish"])}`,
            "content-type": "application/json",
          },
          body: '{"broadcast":true,"data":{"to":"everyone"}}',
        });
        expect(broadcast.status).toBe(202);
        const [event, broadcastEvent] = (
          await stream.until((messages) => messages.filter((m) => m.event === "event").length === 2)
        ).filter((m) => m.event === "event");
        expect(event?.id).toBe(JSON.parse(event?.data as string).id);
        expect(JSON.parse(broadcastEvent?.data as string)).toMatchObject({ broadcast: true });
        expect(broadcastEvent?.id).toBeUndefined();
        await stream.close();
        // What EventSource sends when it reconnects: the last `id:` it got.
        const lastEventId = stream.messages.findLast((m) => m.id !== undefined)?.id as string;
        await publish(gateway, "acme", channel, '{"n":2}');
        const resumed = await openStream(gateway, `channel=${channel}&token=${subscriber}`, {
          "last-event-id": lastEventId,
        });
        const messages = await resumed.until((all) =>
          all.some((m) => m.event === "event" || m.event === "problem"),
        );
        expect(messages.filter((m) => m.event === "problem")).toEqual([]);
        expect(JSON.parse(resumed.events()[0]?.data as string).data).toEqual({ n: 2 });
        await resumed.close();
      } finally {
        await gateway.stop();
      }
    });
    test("a one-channel stream opens with the partition's position: dropped before any event, it resumes from the topic", async () => {
      const env = {
        KAFKA_BROKERS: services().brokers,
        KAFKA_TOPIC: await createTopic(`sse-position-events-${runtime}`),
        KAFKA_FANOUT_TOPIC: await createTopic(`sse-position-fanout-${runtime}`, 3),
        REDIS_URL: "",
      };
      const gateway = await startGateway(runtime, env);
      const other = await startGateway(runtime, env);
      try {
        await waitForLog(gateway, "fan-out consumer reading");
        await waitForLog(other, "fan-out consumer reading");
        const subscriber = await token("acme", ["subscribe"]);
        const stream = await openStream(gateway, `channel=quiet&token=${subscriber}`);
        await stream.until((messages) => messages.some((m) => m.id !== undefined));
        const position = stream.messages.find((m) => m.id !== undefined)?.id as string;
        await stream.close();
        for (const n of [1, 2]) await publish(gateway, "acme", "quiet", `{"n":${n}}`);
        // Another instance, which never kept the channel: the two are read back from the fan-out topic.
        const resumed = await openStream(other, `channel=quiet&token=${subscriber}`, {
          "last-event-id": position,
        });
        const messages = await resumed.until((all) =>
          all.some((m) => m.event === "problem" || all.filter((x) => x.event === "event").length === 2),
        );
        expect(messages.filter((m) => m.event === "problem")).toEqual([]);
        expect(resumed.events().map((m) => JSON.parse(m.data as string).data.n)).toEqual([1, 2]);
        await resumed.close();
      } finally {
        await Promise.all([gateway.stop(), other.stop()]);
      }
    });
  });
}

for (const runtime of RUNTIMES) {
  describe(`Server-Sent Events on ${runtime}`, () => {
    let gateway: RunningGateway;
    beforeAll(async () => {
      gateway = await startGateway(runtime, { ...EMBEDDED, SSE_HEARTBEAT_MS: "300" });
    });
    afterAll(async () => {
      await gateway.stop();
    });

    test("events arrive as id + event + the WebSocket frame, byte for byte, with heartbeats between", async () => {
      const subscriber = await token("acme", ["subscribe"]);
      const stream = await openStream(gateway, `channel=prices&token=${subscriber}`);
      await publish(gateway, "acme", "prices", '{"big": 12345678901234567890, "text":"a\\nb"}');
      await publish(gateway, "other", "prices", '{"tenant":"other"}');
      await publish(gateway, "acme", "prices", '{\n  "n": 2\n}');
      const [first, second] = (
        await stream.until(
          (messages) =>
            messages.filter((m) => m.event === "event").length >= 2 &&
            messages.some((m) => m.comment === "ping"),
        )
      ).filter((m) => m.event === "event");
      expect(first?.data).toBe(
        `{"type":"event","channel":"prices","id":"${first?.id}","data":{"big": 12345678901234567890, "text":"a\\nb"}}`,
      );
      // A payload with line breaks spans several data lines and joins back to the same JSON.
      expect(JSON.parse(second?.data as string).data).toEqual({ n: 2 });
      expect(second?.data).toContain('"data":{\n  "n": 2\n}');
      expect((second?.id as string) > (first?.id as string)).toBe(true);
      expect(stream.events()).toHaveLength(2);
      await stream.close();
    });

    test("resume from Last-Event-ID (header) or since (query): only the events after it, then live", async () => {
      const subscriber = await token("acme", ["subscribe"]);
      const first = await openStream(gateway, "channel=orders", { authorization: `Bearer ${subscriber}` });
      for (const n of [1, 2, 3]) await publish(gateway, "acme", "orders", `{"n":${n}}`);
      const seen = await first.until((messages) => messages.filter((m) => m.event === "event").length === 3);
      const ids = seen.filter((m) => m.event === "event").map((m) => m.id as string);
      await first.close();

      const byHeader = await openStream(gateway, "channel=orders", {
        authorization: `Bearer ${subscriber}`,
        "last-event-id": ids[0] as string,
      });
      const byQuery = await openStream(gateway, `channel=orders&since=${ids[1]}&token=${subscriber}`);
      await byHeader.until((messages) => messages.filter((m) => m.event === "event").length === 2);
      await byQuery.until((messages) => messages.filter((m) => m.event === "event").length === 1);
      await publish(gateway, "acme", "orders", '{"n":4}');
      const resumed = await byHeader.until((m) => m.filter((x) => x.event === "event").length === 3);
      expect(
        resumed.filter((m) => m.event === "event").map((m) => JSON.parse(m.data as string).data.n),
      ).toEqual([2, 3, 4]);
      const fromQuery = await byQuery.until((m) => m.filter((x) => x.event === "event").length === 2);
      expect(
        fromQuery.filter((m) => m.event === "event").map((m) => JSON.parse(m.data as string).data.n),
      ).toEqual([3, 4]);
      await byHeader.close();
      await byQuery.close();
    });

    test("an empty since is no since, on a stream and on the history route alike (EventSource's lastEventId before any event)", async () => {
      const subscriber = await token("acme", ["subscribe"]);
      for (const n of [1, 2]) await publish(gateway, "acme", "empty-since", `{"n":${n}}`);
      const history = async (query: string) => {
        const response = await fetch(`${gateway.url}/v1/channels/empty-since/events${query}`, {
          headers: { authorization: `Bearer ${subscriber}` },
        });
        return {
          status: response.status,
          body: (await response.json()) as { events: Array<{ data: { n: number } }> },
        };
      };
      const withoutSince = await history("");
      expect(withoutSince.status).toBe(200);
      expect(withoutSince.body.events.map((event) => event.data.n)).toEqual([1, 2]);
      expect(await history("?since=")).toEqual(withoutSince);
      expect(await history("?since=&limit=1")).toEqual(await history("?limit=1"));

      // Live only, as without since: the two kept events are not replayed.
      const stream = await openStream(gateway, `channel=empty-since&since=&token=${subscriber}`);
      await stream.until((messages) => messages.some((m) => m.id !== undefined));
      await publish(gateway, "acme", "empty-since", '{"n":3}');
      await stream.until((messages) => messages.some((m) => m.event === "event"));
      expect(stream.events().map((m) => JSON.parse(m.data as string).data.n)).toEqual([3]);
      await stream.close();
    });

    test("a stream opens with its position as an id alone: dropped before any event, Last-Event-ID gets what came meanwhile", async () => {
      const subscriber = await token("acme", ["subscribe"]);
      // Two channels: with the embedded bus they share one partition, so one position resumes both.
      const quiet = await openStream(gateway, `channel=quiet-a&channel=quiet-b&token=${subscriber}`);
      await quiet.until((messages) => messages.some((m) => m.id !== undefined));
      const position = quiet.messages.find((m) => m.id !== undefined);
      // No event fires for it (no data): EventSource only keeps it as the id to send back.
      expect(position).toEqual({ id: expect.stringMatching(/^l[0-9a-z]+-0-(-1|\d{16})$/) });
      await quiet.close();
      await publish(gateway, "acme", "quiet-a", '{"n":1}');
      await publish(gateway, "acme", "quiet-b", '{"n":2}');
      const resumed = await openStream(gateway, `channel=quiet-a&channel=quiet-b&token=${subscriber}`, {
        "last-event-id": position?.id as string,
      });
      const events = (await resumed.until((m) => m.filter((x) => x.event === "event").length === 2)).filter(
        (m) => m.event === "event",
      );
      expect(events.map((m) => JSON.parse(m.data as string).data.n)).toEqual([1, 2]);
      // A resumed stream gets no position of its own: the id it resumed from, or its replay's last, stands.
      expect(resumed.messages.filter((m) => m.id !== undefined && m.event === undefined)).toEqual([]);
      await resumed.close();
    });

    test("history pages: limit 100 by default, at most 1000 (a larger one is read as 1000), anything but a positive integer a 400; next walks every event once, in order", async () => {
      // As many as a channel keeps by default (HISTORY_EVENTS_PER_CHANNEL).
      const records = Array.from({ length: 1000 }, (_, n) => ({
        type: "click",
        channel: "paged",
        data: { element: String(n) },
      }));
      const ingested = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(records),
      });
      expect(ingested.status).toBe(202);
      const authorization = `Bearer ${await token("acme", ["subscribe"])}`;
      const page = async (query: string) => {
        const response = await fetch(`${gateway.url}/v1/channels/paged/events?${query}`, {
          headers: { authorization },
        });
        return { status: response.status, body: (await response.json()) as Record<string, unknown> };
      };
      type Page = { events: Array<{ id: string; data: { element: string } }>; next: string | null };
      // The copies reach the channel on the next turns of the event loop.
      const deadline = Date.now() + 10_000;
      while (((await page("limit=1000")).body as unknown as Page).events?.length !== 1000) {
        if (Date.now() > deadline) break;
        await Bun.sleep(50);
      }
      for (const limit of ["0", "abc", "-1", "1.5", "1e2", ""]) {
        const refused = await page(`limit=${limit}`);
        expect({ limit, ...refused }).toMatchObject({ limit, status: 400, body: { error: "bad_request" } });
      }
      const first = (await page("")).body as unknown as Page;
      expect(first.events).toHaveLength(100);
      expect(first.next).toBe(first.events[99]?.id as string);
      expect(((await page("limit=1000")).body as unknown as Page).events).toHaveLength(1000);
      for (const limit of ["1001", "5000", "99999999999999999999"]) {
        const clamped = await page(`limit=${limit}`);
        expect(clamped.status).toBe(200);
        expect((clamped.body as unknown as Page).events).toHaveLength(1000);
      }
      const seen: string[] = [];
      let since: string | null = null;
      let pages = 0;
      do {
        const { status, body } = await page(`limit=333${since === null ? "" : `&since=${since}`}`);
        expect(status).toBe(200);
        seen.push(...(body as unknown as Page).events.map((event) => event.data.element));
        since = (body as unknown as Page).next;
        pages++;
      } while (since !== null && pages < 10);
      expect(pages).toBe(4);
      expect(seen).toEqual(records.map((record) => record.data.element));
    });

    test("a stream's lifetime is no request latency: /v1/sse is timed to its head, and is not a request in flight", async () => {
      const stream = await openStream(gateway, `channel=timed&token=${await token("acme", ["subscribe"])}`);
      await Bun.sleep(1500);
      const scrape = async () => (await fetch(`${gateway.url}/metrics`)).text();
      // Open: only the scrape itself is in flight.
      expect(await scrape()).toContain("\ngateway_http_requests_in_flight 1\n");
      await stream.close();
      await Bun.sleep(200);
      const page = await scrape();
      const sample = (name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(page)?.[1] ?? Number.NaN);
      const series = 'route="/v1/sse",method="GET",status="200"';
      const count = sample(`gateway_http_request_duration_seconds_count\\{${series}\\}`);
      expect(count).toBeGreaterThan(0);
      // Every stream of this gateway (some open for seconds) is counted under a second.
      expect(sample(`gateway_http_request_duration_seconds_bucket\\{le="1",${series}\\}`)).toBe(count);
    });

    test("a since from another history is said with an error event, and the stream goes on live", async () => {
      const subscriber = await token("acme", ["subscribe"]);
      const stream = await openStream(
        gateway,
        `channel=gone&since=lzzzz-0-0000000000000001&token=${subscriber}`,
      );
      const [error] = await stream.until((messages) => messages.some((m) => m.event === "problem"));
      expect(JSON.parse(stream.messages.find((m) => m.event === "problem")?.data as string)).toMatchObject({
        code: "history_gone",
        channel: "gone",
      });
      expect(error).toBeDefined();
      await publish(gateway, "acme", "gone", '{"live":true}');
      await stream.until((messages) => messages.some((m) => m.event === "event"));
      await stream.close();
    });

    test("the same checks as WebSockets: token, scope, channel names and patterns", async () => {
      const ask = (query: string) => fetch(`${gateway.url}/v1/sse?${query}`);
      expect((await ask("channel=a")).status).toBe(401);
      expect((await ask(`channel=a&token=${await token("acme", ["ingest"])}`)).status).toBe(403);
      expect((await ask(`channel=$bad&token=${await token("acme", ["subscribe"])}`)).status).toBe(400);
      expect((await ask(`token=${await token("acme", ["subscribe"])}`)).status).toBe(400);
      const limited = await token("acme", ["subscribe"], { channels: ["public.*"] });
      expect((await ask(`channel=private&token=${limited}`)).status).toBe(403);
      const allowed = await ask(`channel=public.news&token=${limited}`);
      expect(allowed.status).toBe(200);
      await allowed.body?.cancel();
    });

    test("HEAD: GET's status and headers (chunked, no Content-Length), no body, and the connection stays usable", async () => {
      const subscriber = await token("acme", ["subscribe"]);
      const socket = connect(gateway.port, "127.0.0.1");
      let received = "";
      socket.on("data", (chunk) => {
        received += chunk.toString();
      });
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      socket.write(`HEAD /v1/sse?channel=t&token=${subscriber} HTTP/1.1\r\nhost: x\r\n\r\n`);
      const deadline = Date.now() + 5000;
      // Not pipelined: the HEAD answer waits for the token check (see http-api.md, pipelining).
      while (!received.includes("\r\n\r\n") && Date.now() < deadline) await Bun.sleep(50);
      socket.write("GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n");
      while (!received.includes('{"status":"ok"}') && Date.now() < deadline) await Bun.sleep(50);
      socket.destroy();
      const head = received.slice(0, received.indexOf("\r\n\r\n")).toLowerCase();
      expect(head).toStartWith("http/1.1 200 ");
      expect(head).toContain("content-type: text/event-stream");
      expect(head).toContain("transfer-encoding: chunked");
      expect(head).not.toContain("content-length");
      // No body: the next answer follows the HEAD answer's headers at once.
      expect(received.slice(head.length + 4)).toStartWith("HTTP/1.1 200 ");
    });

    test("a stream the server ends (token expired) leaves the HTTP/1.1 connection ready for the next request", async () => {
      const shortLived = await token("acme", ["subscribe"], { ttlSec: 1 });
      const socket = connect(gateway.port, "127.0.0.1");
      let received = "";
      socket.on("data", (chunk) => {
        received += chunk.toString();
      });
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      socket.write(`GET /v1/sse?channel=t&token=${shortLived} HTTP/1.1\r\nhost: x\r\n\r\n`);
      const deadline = Date.now() + 10_000;
      // Chunked encoding: the stream is over once the terminating empty chunk came.
      while (!received.includes("\r\n0\r\n\r\n") && Date.now() < deadline) await Bun.sleep(50);
      expect(received).toContain("event: problem");
      expect(received).toContain('"code":"unauthorized"');
      const streamPart = received.length;
      socket.write("GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n");
      while (!received.slice(streamPart).includes("200 OK") && Date.now() < deadline) await Bun.sleep(50);
      expect(received.slice(streamPart)).toContain("HTTP/1.1 200 OK");
      socket.destroy();
    });

    test("a reader that stops reading is cut off past the backpressure limit; others keep receiving", async () => {
      const slowGateway = await startGateway(runtime, { ...EMBEDDED, WS_BACKPRESSURE_BYTES: "65536" });
      try {
        const subscriber = await token("acme", ["subscribe"]);
        const socket = connect(slowGateway.port, "127.0.0.1");
        await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
        socket.write(`GET /v1/sse?channel=bulk&token=${subscriber} HTTP/1.1\r\nhost: x\r\n\r\n`);
        socket.pause();
        let closed = false;
        socket.on("close", () => {
          closed = true;
        });
        const healthy = await openStream(slowGateway, `channel=bulk&token=${subscriber}`);
        // Below any publish size limit; 16 at a time fill the socket's and the engine's buffers quickly.
        const payload = `{"blob":"${"x".repeat(60 * 1024)}"}`;
        const cutOff = async () =>
          (await (await fetch(`${slowGateway.url}/metrics`)).text()).includes(
            "gateway_sse_slow_consumer_disconnects_total 1",
          );
        let published = 0;
        while (!(await cutOff()) && published < 2000) {
          await Promise.all(Array.from({ length: 16 }, () => publish(slowGateway, "acme", "bulk", payload)));
          published += 16;
          // The healthy reader keeps up: it has every event so far.
          await healthy.until((m) => m.filter((x) => x.event === "event").length === published, 20_000);
        }
        expect(await cutOff()).toBe(true);
        socket.resume();
        const deadline = Date.now() + 10_000;
        while (!closed && Date.now() < deadline) await Bun.sleep(50);
        expect(closed).toBe(true);
        await publish(slowGateway, "acme", "bulk", '{"after":true}');
        await healthy.until((m) => m.filter((x) => x.event === "event").length === published + 1);
        await healthy.close();
        socket.destroy();
      } finally {
        await slowGateway.stop();
      }
    });

    test("the drain sends event: reconnect and ends every stream", async () => {
      const draining = await startGateway(runtime, EMBEDDED);
      const stream = await openStream(draining, `channel=x&token=${await token("acme", ["subscribe"])}`);
      await stream.until((messages) => messages.length >= 1);
      const exited = draining.stop("SIGTERM");
      const messages = await stream.until((m) => m.some((x) => x.event === "reconnect"));
      const reconnect = messages.find((m) => m.event === "reconnect");
      expect(JSON.parse(reconnect?.data as string).afterMs).toBeGreaterThan(0);
      const deadline = Date.now() + 10_000;
      while (!stream.ended && Date.now() < deadline) await Bun.sleep(20);
      expect(stream.ended).toBe(true);
      expect(await exited).toBe(0);
    });
  });
}

describe("EventSource in headless Chromium", () => {
  let browser: Browser;
  let proxy: ReturnType<typeof Bun.serve>;
  /** The gateway the proxy relays to; while unset, requests wait for one (an instance restarting). */
  let upstream: RunningGateway | undefined;
  let upstreamReady: Array<() => void> = [];
  const setUpstream = (gateway: RunningGateway | undefined) => {
    upstream = gateway;
    if (gateway) for (const wake of upstreamReady.splice(0)) wake();
  };
  /** Streams the proxy is relaying, so the test can cut them as a load balancer would. */
  const relayed = new Set<AbortController>();

  beforeAll(async () => {
    // The page and the gateway behind one origin, as behind a load balancer that the test can make drop streams.
    proxy = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      async fetch(request) {
        const { pathname, search } = new URL(request.url);
        if (pathname !== "/v1/sse")
          return new Response("<!doctype html><title>sse</title>", {
            headers: { "content-type": "text/html" },
          });
        while (!upstream) await new Promise<void>((resolve) => upstreamReady.push(resolve));
        const abort = new AbortController();
        relayed.add(abort);
        const response = await fetch(`${upstream.url}${pathname}${search}`, {
          headers: request.headers,
          signal: abort.signal,
        });
        return new Response(response.body, { status: response.status, headers: response.headers });
      },
    });
    browser = await puppeteer.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
  });
  afterAll(async () => {
    await browser?.close();
    proxy?.stop(true);
    await upstream?.stop();
    upstreamReady = [];
  });

  /** A page with an EventSource on `channel`, and a way to wait on what it saw (`n` of each event, opens). */
  async function watchInPage(channel: string) {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${proxy.port}/`);
    const subscriber = await token("acme", ["subscribe"]);
    await page.evaluate((url: string) => {
      const state = globalThis as unknown as { seen: number[]; opens: number };
      state.seen = [];
      state.opens = 0;
      // The page's EventSource (this project's types have no DOM library).
      const { EventSource } = globalThis as unknown as {
        EventSource: new (
          url: string,
        ) => {
          onopen: () => void;
          addEventListener(type: string, listener: (event: { data: string }) => void): void;
        };
      };
      const source = new EventSource(url);
      source.onopen = () => {
        state.opens++;
      };
      source.addEventListener("event", (event) => {
        state.seen.push(JSON.parse(event.data).data.n);
      });
    }, `/v1/sse?channel=${channel}&token=${subscriber}`);
    const read = () =>
      page.evaluate(() => {
        const state = globalThis as unknown as { seen: number[]; opens: number };
        return { seen: [...state.seen], opens: state.opens };
      });
    const waitFor = async (done: (state: { seen: number[]; opens: number }) => boolean) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const state = await read();
        if (done(state)) return state;
        if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(state)}`);
        await Bun.sleep(50);
      }
    };
    return { page, waitFor };
  }

  for (const runtime of RUNTIMES) {
    const live = `live-${runtime}`;
    const restart = `restart-${runtime}`;
    const quiet = `quiet-${runtime}`;
    test(`EventSource reconnects with Last-Event-ID after a dropped stream and gets every event once, in order (${runtime})`, async () => {
      const gateway = await startGateway(runtime, EMBEDDED);
      setUpstream(gateway);
      const { page, waitFor } = await watchInPage(live);
      await waitFor((state) => state.opens === 1);
      for (const n of [1, 2, 3]) await publish(gateway, "acme", live, `{"n":${n}}`);
      await waitFor((state) => state.seen.length === 3);
      // The load balancer drops the stream; events published meanwhile must come with the reconnect.
      for (const abort of relayed) abort.abort();
      relayed.clear();
      for (const n of [4, 5]) await publish(gateway, "acme", live, `{"n":${n}}`);
      await waitFor((state) => state.opens === 2 && state.seen.length === 5);
      await publish(gateway, "acme", live, '{"n":6}');
      const final = await waitFor((state) => state.seen.length === 6);
      expect(final.seen).toEqual([1, 2, 3, 4, 5, 6]);
      await page.close();
      setUpstream(undefined);
      await gateway.stop();
    });

    test(`EventSource dropped before its first event reconnects from the position the stream opened with: nothing published meanwhile is missed (${runtime})`, async () => {
      const gateway = await startGateway(runtime, EMBEDDED);
      try {
        setUpstream(gateway);
        const { page, waitFor } = await watchInPage(quiet);
        await waitFor((state) => state.opens === 1);
        // The stream's first chunk (retry, position) reaches the page with its head or just after it.
        await Bun.sleep(300);
        // The load balancer drops the stream, and the reconnect waits while events are published.
        setUpstream(undefined);
        for (const abort of relayed) abort.abort();
        relayed.clear();
        for (const n of [1, 2]) await publish(gateway, "acme", quiet, `{"n":${n}}`);
        setUpstream(gateway);
        await waitFor((state) => state.opens === 2);
        await publish(gateway, "acme", quiet, '{"n":3}');
        const final = await waitFor((state) => state.seen.includes(3));
        expect(final.seen).toEqual([1, 2, 3]);
        await page.close();
      } finally {
        setUpstream(undefined);
        await gateway.stop();
      }
    });

    test(`after the only instance restarts, EventSource resumes from Kafka's retention: every event once, in order (${runtime})`, async () => {
      const env = {
        KAFKA_BROKERS: services().brokers,
        KAFKA_TOPIC: await createTopic(`sse-restart-events-${runtime}`),
        KAFKA_FANOUT_TOPIC: await createTopic(`sse-restart-fanout-${runtime}`),
        REDIS_URL: "",
      };
      const first = await startGateway(runtime, env);
      setUpstream(first);
      const { page, waitFor } = await watchInPage(restart);
      await waitFor((state) => state.opens === 1);
      for (const n of [1, 2, 3]) await publish(first, "acme", restart, `{"n":${n}}`);
      await waitFor((state) => state.seen.length === 3);
      // The instance goes away (drain: event reconnect, then the end); the page reconnects once one is back.
      setUpstream(undefined);
      expect(await first.stop("SIGTERM")).toBe(0);
      // Published while no instance serves the page, through one that stops again: only Kafka keeps them.
      const publisher = await startGateway(runtime, env);
      for (const n of [4, 5]) await publish(publisher, "acme", restart, `{"n":${n}}`);
      await publisher.stop();
      const second = await startGateway(runtime, env);
      setUpstream(second);
      // Reconnects until the new instance reads the log (a try_again in between is fine); never a gap.
      await waitFor((state) => state.seen.length >= 5);
      await publish(second, "acme", restart, '{"n":6}');
      const final = await waitFor((state) => state.seen.length === 6);
      expect(final.seen).toEqual([1, 2, 3, 4, 5, 6]);
      await page.close();
      setUpstream(undefined);
      await second.stop();
    });
  }
});
