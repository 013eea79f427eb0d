import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type DeliveryFailure,
  EventClient,
  type FetchLike,
  Subscriber,
  type SubscriberEvents,
  type WebSocketConstructor,
} from "../../clients/typescript/src/index.js";
import { JwksServer, type SigningKey, signingKey } from "../support/jwks.ts";
import { createTopic, services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import {
  freePort,
  publishEvent,
  RUNTIMES,
  type RunningGateway,
  startGateway,
  waitForLog,
} from "./harness.ts";

const CLIENT_ENTRY = new URL("../../clients/typescript/src/index.ts", import.meta.url).pathname;
/** The embedded sink and bus, even when the test command exported the real services' addresses. */
const EMBEDDED = { KAFKA_BROKERS: "", REDIS_URL: "" };

interface LoggedRequest {
  at: number;
  status: number;
  retryAfter: string | null;
  encoding: string | undefined;
  body: Buffer;
}

/** A fetch that records what the client sent and what it got back. */
function loggingFetch(): { fetch: FetchLike; requests: LoggedRequest[] } {
  const requests: LoggedRequest[] = [];
  const fetch: FetchLike = async (url, init) => {
    const at = Date.now();
    const response = await globalThis.fetch(url, init);
    const body = init.body as string | Uint8Array;
    requests.push({
      at,
      status: response.status,
      retryAfter: response.headers.get("retry-after"),
      encoding: (init.headers as Record<string, string>)["content-encoding"],
      body: Buffer.from(body),
    });
    return response;
  };
  return { fetch, requests };
}

/** Ingested records the embedded sink wrote, read back from its NDJSON log. */
function loggedRecords(dir: string): Array<Record<string, unknown>> {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".ndjson"))
    .sort()
    .flatMap((name) => readFileSync(join(dir, name), "utf8").split("\n"))
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as { topic: string; value: Record<string, unknown> })
    .filter((line) => line.topic === "events")
    .map((line) => line.value);
}

type Seen<K extends keyof SubscriberEvents = keyof SubscriberEvents> = {
  type: K;
  payload: SubscriberEvents[K];
  at: number;
};

/** Keeps every event a Subscriber emits, for assertions in order of arrival. */
class Recorder {
  readonly seen: Seen[] = [];
  private wake: (() => void) | undefined;

  constructor(subscriber: Subscriber) {
    const types = ["connected", "subscribed", "event", "gap", "error", "refreshed", "disconnected"] as const;
    for (const type of types) {
      subscriber.on(type, (payload) => {
        this.seen.push({ type, payload, at: Date.now() } as Seen);
        this.wake?.();
      });
    }
  }

  /** The first unconsumed `type` event matching `predicate`, consumed. */
  async next<K extends keyof SubscriberEvents>(
    type: K,
    predicate: (payload: SubscriberEvents[K]) => boolean = () => true,
    timeoutMs = 8000,
  ): Promise<Seen<K>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.seen.findIndex(
        (entry) => entry.type === type && predicate(entry.payload as SubscriberEvents[K]),
      );
      if (index >= 0) return this.seen.splice(index, 1)[0] as Seen<K>;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no ${String(type)} within ${timeoutMs} ms; saw ${JSON.stringify(this.seen)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

const click = (element: string, channel?: string) => ({ type: "click", channel, data: { element } });

describe.each(RUNTIMES)("TypeScript client against the gateway on %s", (runtime) => {
  let gateway: RunningGateway;
  let folder: string;
  const logDir = () => join(folder, "log");

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "client-e2e-"));
    writeFileSync(join(folder, "quotas.json"), JSON.stringify({ acme: { eventsPerSec: 100_000 } }));
    gateway = await startGateway(runtime, {
      ...EMBEDDED,
      LOCAL_LOG_DIR: logDir(),
      TENANT_QUOTAS: join(folder, "quotas.json"),
      RATE_LIMIT_EVENTS_PER_SEC: "10",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    rmSync(folder, { recursive: true, force: true });
  });

  test("batches by count, then by time, gzipped; every record lands in the log with its client id", async () => {
    const { fetch, requests } = loggingFetch();
    const events = new EventClient({
      url: gateway.url,
      token: () => token("acme", ["ingest"]),
      maxBatchRecords: 10,
      flushIntervalMs: 400,
      gzipMinBytes: 0,
      fetch,
    });
    const enqueuedAt = Date.now();
    const ids = Array.from({ length: 25 }, (_, i) => events.enqueue(click(`batch-${i}`)) as string);
    // Waited for with a deadline, not a fixed sleep: a loaded machine may answer slowly.
    while (requests.length < 3 && Date.now() - enqueuedAt < 10_000) await Bun.sleep(20);
    expect(requests.map((request) => request.status)).toEqual([202, 202, 202]);
    // Two full batches by count, then the rest once the oldest waited flushIntervalMs.
    const sizes = requests.map(
      (request) => new TextDecoder().decode(Bun.gunzipSync(new Uint8Array(request.body))).split("\n").length,
    );
    expect(sizes).toEqual([10, 10, 5]);
    expect((requests[2] as LoggedRequest).at - enqueuedAt).toBeGreaterThanOrEqual(390);
    expect(requests.every((request) => request.encoding === "gzip")).toBe(true);
    const logged = loggedRecords(logDir()).filter((record) => ids.includes(record.id as string));
    expect(logged.map((record) => record.id)).toEqual(ids);
    expect(logged.map((record) => (record.data as { element: string }).element)).toEqual(
      ids.map((_, i) => `batch-${i}`),
    );
    expect(events.stats).toMatchObject({ accepted: 25, rejected: 0, dropped: 0, retries: 0 });
    await events.close();
  });

  test("a 429 is retried after its Retry-After with the same bytes, so the same ids", async () => {
    const { fetch, requests } = loggingFetch();
    const tenant = `limited-${Date.now()}`;
    const events = new EventClient({
      url: gateway.url,
      token: await token(tenant, ["ingest"]),
      maxBatchRecords: 8,
      retry: { initialDelayMs: 50 },
      fetch,
    });
    const ids = Array.from({ length: 16 }, (_, i) => events.enqueue(click(`limited-${i}`)) as string);
    await events.flush();
    expect(requests.map((request) => request.status)).toEqual([202, 429, 202]);
    const [, limited, retried] = requests as [LoggedRequest, LoggedRequest, LoggedRequest];
    expect(limited.retryAfter).toBe("1");
    expect(retried.at - limited.at).toBeGreaterThanOrEqual(1000);
    expect(retried.body.equals(limited.body)).toBe(true);
    const logged = loggedRecords(logDir()).filter((record) => record.tenant === tenant);
    expect(logged.map((record) => record.id).sort()).toEqual([...ids].sort());
    expect(events.stats).toMatchObject({ accepted: 16, retries: 1, dropped: 0 });
    await events.close();
  });

  test("a 422 or a 401 is reported and never retried", async () => {
    const { fetch, requests } = loggingFetch();
    const failures: DeliveryFailure[] = [];
    const refused = new EventClient({
      url: gateway.url,
      token: await token("acme", ["ingest"]),
      fetch,
      onError: (failure) => failures.push(failure),
    });
    const unknown = refused.enqueue({ type: "no_such_type", data: {} }) as string;
    await refused.flush();
    const unauthorized = new EventClient({
      url: gateway.url,
      token: "not-a-token",
      fetch,
      onError: (failure) => failures.push(failure),
    });
    const stranger = unauthorized.enqueue(click("x")) as string;
    await unauthorized.flush();
    expect(requests.map((request) => request.status)).toEqual([422, 401]);
    expect(failures.map((failure) => [failure.kind, failure.status, failure.records[0]?.id])).toEqual([
      ["rejected", 422, unknown],
      ["rejected", 401, stranger],
    ]);
    await Promise.all([refused.close(), unauthorized.close()]);
  });

  test("a subscriber receives ingested and published events live", async () => {
    const subscriber = new Subscriber({ url: gateway.url, token: () => token("acme", ["subscribe"]) });
    const recorder = new Recorder(subscriber);
    subscriber.subscribe("orders");
    await recorder.next("subscribed", (frame) => frame.channel === "orders");
    const events = new EventClient({ url: gateway.url, token: await token("acme", ["ingest", "publish"]) });
    const id = events.enqueue(click("live", "orders"));
    await events.flush();
    await publishEvent(gateway, "orders", { status: "shipped" });
    const ingested = (await recorder.next("event")).payload;
    expect(ingested).toMatchObject({ channel: "orders", recordType: "click", recordId: id });
    expect(ingested.data).toEqual({ element: "live" });
    const published = (await recorder.next("event")).payload;
    expect(published.data).toEqual({ status: "shipped" });
    expect(published.id > ingested.id).toBe(true);
    expect(subscriber.lastEventId("orders")).toBe(published.id);
    subscriber.close();
    await events.close();
  });

  test("publish() over the socket: subscribers get the event with its trace context; without scope publish it is refused", async () => {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const channel = `socket-publish-${runtime}`;
    const watcher = new Subscriber({ url: gateway.url, token: () => token("acme", ["subscribe"]) });
    const watched = new Recorder(watcher);
    await watcher.subscribe(channel);
    const publisher = new Subscriber({
      url: gateway.url,
      token: () => token("acme", ["subscribe", "publish"]),
    });
    await new Recorder(publisher).next("connected");
    await publisher.publish(channel, { status: "shipped" }, { traceparent, tracestate: "rojo=1" });
    const received = (await watched.next("event")).payload;
    expect(received).toMatchObject({ channel, traceparent, tracestate: "rojo=1" });
    expect(received.data).toEqual({ status: "shipped" });
    // The watcher's token lacks scope publish: refused, and its socket stays open.
    const refused = await watcher.publish(channel, 1).catch((error: unknown) => error);
    expect(refused).toMatchObject({ name: "GatewayPublishError", code: "forbidden" });
    expect(watcher.state).toBe("open");
    const notAllowed = await publisher.publish("Not A Channel!", 1).catch((error: unknown) => error);
    expect(notAllowed).toMatchObject({ code: "bad_channel" });
    watcher.close();
    publisher.close();
  });

  test("presence(channel): the subjects watching it on this instance (no Redis), with their connection counts", async () => {
    const channel = `presence-${runtime}`;
    const watchers = ["ann", "ann", "bob"].map(
      (sub) => new Subscriber({ url: gateway.url, token: () => token("acme", ["subscribe"], { sub }) }),
    );
    await Promise.all(watchers.map((watcher) => watcher.subscribe(channel)));
    // Presence is written in the background: read until all three are counted.
    const deadline = Date.now() + 5000;
    let seen = await (watchers[0] as Subscriber).presence(channel);
    while (seen.total < 2 && Date.now() < deadline) {
      await Bun.sleep(50);
      seen = await (watchers[0] as Subscriber).presence(channel);
    }
    expect(seen.scope).toBe("instance");
    expect(seen.total).toBe(2);
    expect([...seen.members].sort((a, b) => a.subject.localeCompare(b.subject))).toEqual([
      { subject: "ann", connections: 2 },
      { subject: "bob", connections: 1 },
    ]);
    for (const watcher of watchers) watcher.close();
  });

  test("a token that expires is refreshed through the callback and the subscriber carries on", async () => {
    const refreshes: boolean[] = [];
    const subscriber = new Subscriber({
      url: gateway.url,
      token: ({ refresh }) => {
        refreshes.push(refresh);
        return token("acme", ["subscribe"], { ttlSec: refresh ? 600 : 2 });
      },
      channels: ["expiring"],
    });
    const recorder = new Recorder(subscriber);
    await recorder.next("subscribed");
    // Refreshed in band, or (a gateway without it) reconnected after 4001 and subscribed again.
    const carriedOn = () =>
      recorder.seen.some((entry) => entry.type === "refreshed") ||
      (recorder.seen.some((entry) => entry.type === "disconnected") &&
        recorder.seen.some((entry) => entry.type === "subscribed"));
    const deadline = Date.now() + 8000;
    while (!carriedOn() && Date.now() < deadline) await Bun.sleep(20);
    expect(carriedOn()).toBe(true);
    expect(refreshes[0]).toBe(false);
    expect(refreshes).toContain(true);
    await publishEvent(gateway, "expiring", { after: "refresh" });
    expect((await recorder.next("event")).payload.data).toEqual({ after: "refresh" });
    subscriber.close();
  });

  test("a 401 (the token expired between enqueue and send) gets one refreshed token: the batch is accepted", async () => {
    const { fetch, requests } = loggingFetch();
    const refreshes: boolean[] = [];
    const events = new EventClient({
      url: gateway.url,
      token: ({ refresh }) => {
        refreshes.push(refresh);
        return token("acme", ["ingest"], { ttlSec: refresh ? 600 : -60 });
      },
      fetch,
    });
    const ids = [0, 1, 2].map((n) => events.enqueue(click(`expired-${n}`)) as string);
    await events.flush();
    expect(requests.map((request) => request.status)).toEqual([401, 202]);
    expect((requests[1] as LoggedRequest).body.equals((requests[0] as LoggedRequest).body)).toBe(true);
    expect(refreshes).toEqual([false, true]);
    const logged = loggedRecords(logDir()).filter((record) => ids.includes(record.id as string));
    expect(logged.map((record) => record.id)).toEqual(ids);
    expect(events.stats).toMatchObject({ accepted: 3, rejected: 0, dropped: 0 });
    await events.close();
  });

  test("history({ since }) reads what a channel missed over HTTP", async () => {
    const subscriber = new Subscriber({ url: gateway.url, token: () => token("acme", ["subscribe"]) });
    const recorder = new Recorder(subscriber);
    await subscriber.subscribe("history");
    for (const n of [1, 2, 3]) await publishEvent(gateway, "history", { n });
    const first = (await recorder.next("event")).payload;
    const page = await subscriber.history("history", { since: first.id });
    expect(page.events.map((event) => event.data)).toEqual([{ n: 2 }, { n: 3 }]);
    expect(page.events.every((event) => event.channel === "history")).toBe(true);
    expect(page.lastEventId).toBe(page.events[1]?.id as string);
    expect(page.next).toBeNull();
    // Page by page: `next` is the `since` of the next page, null once caught up.
    const one = await subscriber.history("history", { since: first.id, limit: 1 });
    expect(one.events.map((event) => event.data)).toEqual([{ n: 2 }]);
    expect(one.next).toBe(one.events[0]?.id as string);
    const rest = await subscriber.history("history", { since: one.next as string, limit: 10 });
    expect(rest.events.map((event) => event.data)).toEqual([{ n: 3 }]);
    expect(rest.next).toBeNull();
    subscriber.close();
  });

  test("a channel with no events yet resumes from the position the gateway reported: nothing published meanwhile is missed", async () => {
    await publishEvent(gateway, "warm-up", { n: 0 });
    const channel = `empty-${runtime}`;
    // Connections go where `target` says; undefined sends them to a closed port (the subscriber is "away").
    let target: string | undefined = gateway.wsUrl;
    const opened: WebSocket[] = [];
    const Routed = class extends WebSocket {
      constructor(_url: string) {
        super(target ?? "ws://127.0.0.1:9/v1/ws");
        opened.push(this);
      }
    } as unknown as WebSocketConstructor;
    const subscriber = new Subscriber({
      url: gateway.url,
      token: () => token("acme", ["subscribe"]),
      reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
      WebSocket: Routed,
    });
    const recorder = new Recorder(subscriber);
    const empty = await subscriber.subscribe(channel);
    expect(empty.lastEventId).toEqual(expect.any(String));
    target = undefined;
    opened[0]?.close();
    await recorder.next("disconnected");
    for (const n of [1, 2]) await publishEvent(gateway, channel, { n });
    target = gateway.wsUrl;
    const replayed = [(await recorder.next("event")).payload, (await recorder.next("event")).payload];
    expect(replayed.map((event) => event.data)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(recorder.seen.filter((entry) => entry.type === "gap")).toEqual([]);
    subscriber.close();
  });

  test("the Node producer example: records it could not send wait in its queue file and go, once, on its next start", async () => {
    const build = await Bun.build({
      entrypoints: [new URL("../../examples/node-producer/producer.ts", import.meta.url).pathname],
      target: "node",
      format: "esm",
    });
    const script = join(folder, "producer.mjs");
    writeFileSync(script, await (build.outputs[0] as Blob).text());
    const tenant = `producer-${runtime}-${Date.now()}`;
    const run = async (env: Record<string, string>) => {
      const child = Bun.spawn(["node", script], {
        env: {
          ...process.env,
          TOKEN: await token(tenant, ["ingest"]),
          QUEUE_FILE: join(folder, "producer-queue.jsonl"),
          ...env,
        },
        stdout: "pipe",
        stderr: "pipe",
      });
      const timer = setTimeout(() => child.kill(), 20_000);
      const [code, output] = await Promise.all([child.exited, new Response(child.stdout).text()]);
      clearTimeout(timer);
      expect(code).toBe(0);
      return JSON.parse(output) as { ids: string[]; stats: { accepted: number; dropped: number } };
    };
    // The gateway unreachable: nothing is accepted, nothing is dropped, the queue file keeps it all.
    const offline = await run({ GATEWAY_URL: "http://127.0.0.1:9", COUNT: "5", CLOSE_TIMEOUT_MS: "300" });
    expect(offline.stats).toMatchObject({ accepted: 0, dropped: 0 });
    const online = await run({ GATEWAY_URL: gateway.url, COUNT: "2" });
    expect(online.stats).toMatchObject({ accepted: 7, dropped: 0 });
    const logged = loggedRecords(logDir()).filter((record) => record.tenant === tenant);
    expect(logged.map((record) => record.id)).toEqual([...offline.ids, ...online.ids]);
    expect(logged.every((record) => record.type === "sensor_reading")).toBe(true);
  });

  test("the bundle runs on Node: ingest and subscribe from a node process", async () => {
    const bundle = await Bun.build({ entrypoints: [CLIENT_ENTRY], target: "browser", format: "esm" });
    const file = join(folder, "client.mjs");
    writeFileSync(file, await (bundle.outputs[0] as Blob).text());
    const script = `
      import { EventClient, Subscriber } from ${JSON.stringify(file)};
      const [url, ingestToken, subscribeToken] = process.argv.slice(1);
      const subscriber = new Subscriber({ url, token: subscribeToken, channels: ["from-node"] });
      const received = [];
      await new Promise((resolve) => subscriber.on("subscribed", resolve));
      const done = new Promise((resolve) => subscriber.on("event", (event) => {
        received.push(event.recordId);
        if (received.length === 3) resolve();
      }));
      const events = new EventClient({ url, token: ingestToken, gzipMinBytes: 0 });
      const ids = [0, 1, 2].map((n) => events.enqueue({ type: "click", channel: "from-node", data: { element: "n" + n } }));
      await events.close();
      await done;
      subscriber.close();
      console.log(JSON.stringify({ ids, received, stats: events.stats }));
    `;
    const child = Bun.spawn(
      [
        "node",
        "--experimental-websocket",
        "--input-type=module",
        "-e",
        script,
        gateway.url,
        await token("acme", ["ingest", "publish"]),
        await token("acme", ["subscribe"]),
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const timer = setTimeout(() => child.kill(), 15_000);
    const [code, output, errors] = await Promise.all([
      child.exited,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    clearTimeout(timer);
    expect({
      code,
      errors: errors.replace(/.*ExperimentalWarning.*\n(.*--trace-warnings.*\n)?/g, ""),
    }).toEqual({
      code: 0,
      errors: "",
    });
    const result = JSON.parse(output) as { ids: string[]; received: string[]; stats: { accepted: number } };
    expect(result.received).toEqual(result.ids);
    expect(result.stats.accepted).toBe(3);
  });
});

describe.each(RUNTIMES)("TypeScript client across a drain and a restart on %s", (runtime) => {
  let folder: string;
  const running: RunningGateway[] = [];
  beforeAll(() => {
    folder = mkdtempSync(join(tmpdir(), "client-restart-"));
  });
  afterAll(async () => {
    await Promise.all(running.map((gateway) => gateway.stop("SIGKILL")));
    rmSync(folder, { recursive: true, force: true });
  });

  async function subscribedTo(gateway: RunningGateway, WebSocket?: WebSocketConstructor) {
    const subscriber = new Subscriber({
      url: gateway.url,
      token: () => token("acme", ["subscribe"]),
      channels: ["orders"],
      ...(WebSocket ? { WebSocket } : {}),
    });
    const recorder = new Recorder(subscriber);
    await recorder.next("connected");
    await recorder.next("subscribed");
    return { subscriber, recorder };
  }

  test("SIGTERM drain: the reconnect frame's afterMs is obeyed before the next attempt", async () => {
    const gateway = await startGateway(runtime, { ...EMBEDDED, LOCAL_LOG_DIR: join(folder, "drain") });
    running.push(gateway);
    const attempts: number[] = [];
    const Recording = class extends WebSocket {
      constructor(url: string) {
        super(url);
        attempts.push(Date.now());
      }
    } as unknown as WebSocketConstructor;
    const { subscriber, recorder } = await subscribedTo(gateway, Recording);
    await gateway.stop("SIGTERM");
    const disconnected = await recorder.next("disconnected");
    expect(disconnected.payload.code).toBe(1001);
    const afterMs = disconnected.payload.reconnectInMs as number;
    expect(afterMs).toBeGreaterThanOrEqual(250);
    expect(afterMs).toBeLessThanOrEqual(5000);
    while (attempts.length < 2) await Bun.sleep(20);
    expect((attempts[1] as number) - disconnected.at).toBeGreaterThanOrEqual(afterMs - 5);
    subscriber.close();
  });

  test("after a restart on the same port the new history is a gap (history_gone) and live events flow again", async () => {
    // A port of its own, not PORT=0, as in production (see freePort).
    const env = { ...EMBEDDED, LOCAL_LOG_DIR: join(folder, "restart"), PORT: String(await freePort()) };
    const first = await startGateway(runtime, env);
    running.push(first);
    const { subscriber, recorder } = await subscribedTo(first);
    await publishEvent(first, "orders", { n: 1 });
    const before = (await recorder.next("event")).payload;
    await first.stop("SIGTERM");
    await recorder.next("disconnected");

    const second = await startGateway(runtime, env);
    running.push(second);
    await recorder.next("connected", () => true, 10_000);
    // The embedded bus starts a new epoch: the old position cannot be replayed, and the client says so.
    const gap = (await recorder.next("gap")).payload;
    expect(gap).toEqual({ channel: "orders", since: before.id, reason: "history_gone" });
    await recorder.next("subscribed");
    await publishEvent(second, "orders", { n: 2 });
    const after = (await recorder.next("event")).payload;
    expect(after.data).toEqual({ n: 2 });
    expect(after.id.split("-")[0]).not.toBe(before.id.split("-")[0]);
    expect(subscriber.lastEventId("orders")).toBe(after.id);
    expect(recorder.seen.filter((entry) => entry.type === "error")).toEqual([]);
    subscriber.close();
  });
});

describe.each(RUNTIMES)("TypeScript client resuming across a restart with Kafka on %s", (runtime) => {
  const running: RunningGateway[] = [];
  afterAll(async () => {
    await Promise.all(running.map((gateway) => gateway.stop("SIGKILL")));
  });

  test("events published while the subscriber was away are replayed from the new process, once, in order", async () => {
    const env = {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: await createTopic(`client-events-${runtime}`),
      KAFKA_FANOUT_TOPIC: await createTopic(`client-fanout-${runtime}`),
    };
    const first = await startGateway(runtime, env);
    running.push(first);
    await waitForLog(first, "fan-out consumer reading");
    // Connections go where `target` says; undefined sends them to a closed port (the subscriber is "away").
    let target: string | undefined = first.wsUrl;
    const Routed = class extends WebSocket {
      constructor(_url: string) {
        super(target ?? "ws://127.0.0.1:9/v1/ws");
      }
    } as unknown as WebSocketConstructor;
    const subscriber = new Subscriber({
      url: first.url,
      token: () => token("acme", ["subscribe"]),
      channels: ["orders"],
      reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
      WebSocket: Routed,
    });
    const recorder = new Recorder(subscriber);
    await recorder.next("connected");
    await recorder.next("subscribed");
    await publishEvent(first, "orders", { n: 1 });
    const seen = (await recorder.next("event")).payload;

    target = undefined;
    await first.stop("SIGTERM");
    await recorder.next("disconnected");
    const second = await startGateway(runtime, env);
    running.push(second);
    await waitForLog(second, "fan-out consumer reading");
    for (const n of [2, 3, 4]) await publishEvent(second, "orders", { n });
    // Wait until the new process holds them in its history (it reads the fan-out topic from its start).
    const deadline = Date.now() + 10_000;
    for (;;) {
      const delta = await fetch(`${second.url}/v1/channels/orders/events?since=${seen.id}`, {
        headers: { authorization: `Bearer ${await token("acme", ["subscribe"])}` },
      });
      expect(delta.status).toBe(200);
      if (((await delta.json()) as { events: unknown[] }).events.length === 3) break;
      if (Date.now() > deadline) throw new Error("the new process never held the missed events");
      await Bun.sleep(100);
    }

    target = second.wsUrl;
    await recorder.next("connected", () => true, 10_000);
    const replayed = [];
    for (let i = 0; i < 3; i++) replayed.push((await recorder.next("event")).payload);
    expect(replayed.map((event) => event.data)).toEqual([{ n: 2 }, { n: 3 }, { n: 4 }]);
    expect(replayed[0]?.id.split("-")[0]).toBe(seen.id.split("-")[0]);
    await publishEvent(second, "orders", { n: 5 });
    expect((await recorder.next("event")).payload.data).toEqual({ n: 5 });
    expect(recorder.seen.filter((entry) => entry.type === "gap" || entry.type === "event")).toEqual([]);
    subscriber.close();
  });
});

describe.each(RUNTIMES)("TypeScript client through an identity provider outage on %s", (runtime) => {
  let jwks: JwksServer;
  let key: SigningKey;
  let gateway: RunningGateway;
  let folder: string;

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "client-idp-"));
    key = await signingKey(`client-e2e-${runtime}`);
    jwks = await JwksServer.start([key.jwk]);
    jwks.down();
    gateway = await startGateway(runtime, {
      ...EMBEDDED,
      JWKS_URL: jwks.url,
      LOCAL_LOG_DIR: join(folder, "log"),
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    jwks.down();
    rmSync(folder, { recursive: true, force: true });
  });

  test("while the JWKS is down, EventClient keeps its records and Subscriber keeps trying (1013, never 4001); both carry on once it is back", async () => {
    const events = new EventClient({
      url: gateway.url,
      token: () => key.sign({ tenant: "acme", scope: "ingest" }),
      retry: { initialDelayMs: 100 },
    });
    const ids = [0, 1, 2].map((n) => events.enqueue(click(`idp-${n}`)) as string);
    const subscriber = new Subscriber({
      url: gateway.url,
      token: () => key.sign({ tenant: "acme", scope: "subscribe" }),
      channels: ["idp"],
      maxAuthFailures: 1,
      reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
    });
    const recorder = new Recorder(subscriber);
    // More outages in a row than maxAuthFailures: none of them is a refused token.
    for (let i = 0; i < 2; i++) {
      expect((await recorder.next("error")).payload.code).toBe("unavailable");
      const closed = (await recorder.next("disconnected")).payload;
      expect(closed.code).toBe(1013);
      expect(closed.reconnectInMs).toBeGreaterThanOrEqual(1000);
    }
    const deadline = Date.now() + 5000;
    while (events.stats.retries === 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(events.stats).toMatchObject({ retries: expect.any(Number), accepted: 0, rejected: 0, dropped: 0 });
    expect(events.stats.retries).toBeGreaterThan(0);

    jwks.up([key.jwk]);
    await recorder.next("subscribed", () => true, 10_000);
    await events.flush();
    expect(events.stats).toMatchObject({ accepted: 3, rejected: 0, dropped: 0 });
    expect(loggedRecords(join(folder, "log")).map((record) => record.id)).toEqual(ids);
    const response = await fetch(`${gateway.url}/v1/publish`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await key.sign({ tenant: "acme", scope: "publish" })}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ channel: "idp", data: { back: true } }),
    });
    expect(response.status).toBe(202);
    expect((await recorder.next("event")).payload.data).toEqual({ back: true });
    expect(subscriber.state).toBe("open");
    // Never a refused token on the way (only outages, if one more came before the keys were back).
    const refusals = recorder.seen.filter((entry) => {
      const code = (entry.payload as { code?: string | number }).code;
      return (
        (entry.type === "error" && code !== "unavailable") || (entry.type === "disconnected" && code === 4001)
      );
    });
    expect(refusals).toEqual([]);
    subscriber.close();
    await events.close();
  });
});
