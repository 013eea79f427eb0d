import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopic, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import {
  connectSubscriber,
  publishEvent,
  RUNTIMES,
  type RunningGateway,
  startGateway,
  TestSocket,
  waitForLog,
} from "./harness.ts";

type Frame = Record<string, unknown>;

async function subscribe(socket: TestSocket, channel: string, since?: string): Promise<Frame> {
  socket.send({ type: "subscribe", channel, ...(since ? { since } : {}) });
  return socket.next((frame) => frame.type === "subscribed" || frame.type === "error");
}

/** gateway_events_produced_total of `gateway`. */
async function produced(gateway: RunningGateway): Promise<number> {
  const page = await (await fetch(`${gateway.url}/metrics`)).text();
  return Number(/^gateway_events_produced_total (\S+)$/m.exec(page)?.[1]);
}

async function ingest(gateway: RunningGateway, tenant: string, channel: string, from: number, count: number) {
  const records = Array.from({ length: count }, (_, i) => ({
    type: "click",
    channel,
    data: { element: `e${from + i}` },
  }));
  const response = await fetch(`${gateway.url}/v1/events`, {
    method: "POST",
    headers: {
      // The `ingest` scope alone: a record's channel is part of ingest (SPEC, POST /v1/events).
      authorization: `Bearer ${await token(tenant, ["ingest"])}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(records),
  });
  expect(response.status).toBe(202);
}

/** Publishes a broadcast to `tenant` through `gateway`. */
async function broadcast(
  gateway: RunningGateway,
  tenant: string,
  data: Record<string, unknown>,
): Promise<void> {
  const response = await fetch(`${gateway.url}/v1/publish`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token(tenant, ["publish"])}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ broadcast: true, data }),
  });
  expect(response.status).toBe(202);
}

async function collect(socket: TestSocket, count: number, timeoutMs = 10_000): Promise<Frame[]> {
  const events: Frame[] = [];
  while (events.length < count) events.push(await socket.next((frame) => frame.type === "event", timeoutMs));
  return events;
}

describe.each(RUNTIMES)("fan-out across two instances on %s", (runtime) => {
  let first: RunningGateway;
  let second: RunningGateway;

  beforeAll(async () => {
    const env = {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: await createTopic(`fanout-events-${runtime}`),
      KAFKA_FANOUT_TOPIC: await createTopic(`fanout-${runtime}`),
      JWT_SECRET: TEST_SECRET,
      WS_PING_INTERVAL_MS: "500",
    };
    [first, second] = await Promise.all([startGateway(runtime, env), startGateway(runtime, env)]);
    // Each instance reads the fan-out topic from the offsets that were latest when its consumer started.
    await Promise.all([first, second].map((gateway) => waitForLog(gateway, "fan-out consumer reading")));
  });
  afterAll(async () => {
    await Promise.all([first.stop("SIGKILL"), second.stop("SIGKILL")]);
  });

  test("events ingested on one instance reach a subscriber on the other, in order, once", async () => {
    const subscriber = await connectSubscriber(second, "acme");
    expect((await subscribe(subscriber, "orders")).type).toBe("subscribed");
    const producedBefore = await produced(first);
    await ingest(first, "acme", "orders", 0, 20);
    // Each record went to the ingest topic and, as a fan-out copy, to the fan-out topic: produced counts the first only.
    expect((await produced(first)) - producedBefore).toBe(20);
    const events = await collect(subscriber, 20);
    expect(events.map((event) => (event.data as { element: string }).element)).toEqual(
      Array.from({ length: 20 }, (_, i) => `e${i}`),
    );
    const ids = events.map((event) => event.id as string);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(20);
    expect(events.every((event) => event.channel === "orders" && event.recordType === "click")).toBe(true);
    // Nothing more: a marker sent after them arrives next, with no duplicate before it.
    await ingest(first, "acme", "orders", 20, 1);
    expect(
      (await collect(subscriber, 1)).map((event) => (event.data as { element: string }).element),
    ).toEqual(["e20"]);
    subscriber.close();
  });

  test("a client taking turns between the instances (a load balancer) has its events delivered in the order its 202s came", async () => {
    const subscriber = await connectSubscriber(first, "acme");
    expect((await subscribe(subscriber, "turns")).type).toBe("subscribed");
    // Each request waits for the previous one's answer: ingest and publish, alternating instances.
    const count = 120;
    for (let i = 0; i < count; i++) {
      const gateway = i % 2 === 0 ? first : second;
      if (i % 4 < 2) await ingest(gateway, "acme", "turns", i, 1);
      else await publishEvent(gateway, "turns", { element: `e${i}` });
    }
    const events = await collect(subscriber, count);
    expect(events.map((event) => (event.data as { element: string }).element)).toEqual(
      Array.from({ length: count }, (_, i) => `e${i}`),
    );
    subscriber.close();
  });

  test("a broadcast published on one instance reaches every connection of the tenant on the other, and no other tenant's", async () => {
    const subscribers = await Promise.all(Array.from({ length: 3 }, () => connectSubscriber(second, "acme")));
    const outsider = await connectSubscriber(second, "globex");
    await broadcast(first, "acme", { notice: "maintenance" });
    for (const subscriber of subscribers) {
      const event = await subscriber.next((frame) => frame.type === "event");
      expect(event.broadcast).toBe(true);
      expect(event.data).toEqual({ notice: "maintenance" });
    }
    // A leak would have reached the outsider in the same dispatch, before its own tenant's broadcast.
    await broadcast(first, "globex", { notice: "for globex" });
    expect((await outsider.next((frame) => frame.type === "event")).data).toEqual({ notice: "for globex" });
    for (const socket of [...subscribers, outsider]) socket.close();
  });

  test("resume: 100 events missed while away arrive after reconnecting with since, and the HTTP delta matches", async () => {
    const before = await connectSubscriber(second, "acme");
    await subscribe(before, "resume");
    await ingest(first, "acme", "resume", 0, 1);
    const [seen] = await collect(before, 1);
    const since = (seen as Frame).id as string;
    before.close();
    await before.closed;

    await ingest(first, "acme", "resume", 1, 100);
    const delta = () =>
      fetch(`${second.url}/v1/channels/resume/events?since=${since}`, {
        headers: { authorization: `Bearer ${subscribeToken}` },
      });
    const subscribeToken = await token("acme", ["subscribe"]);
    // In the other instance's history once its HTTP delta has all of them.
    await waitUntil(
      async () => ((await (await delta()).json()) as { events?: unknown[] }).events?.length === 100,
      "the 100 events in the other instance's history",
    );
    const after = await connectSubscriber(second, "acme");
    const subscribed = await subscribe(after, "resume", since);
    expect(subscribed.type).toBe("subscribed");
    const replayed = await collect(after, 100);
    expect(replayed.map((event) => (event.data as { element: string }).element)).toEqual(
      Array.from({ length: 100 }, (_, i) => `e${i + 1}`),
    );
    expect(new Set(replayed.map((event) => event.id)).size).toBe(100);

    const answer = await delta();
    expect(answer.status).toBe(200);
    const body = (await answer.json()) as { events: Frame[] };
    expect(body.events.map((event) => event.id)).toEqual(replayed.map((event) => event.id));
    after.close();
  });

  test("without since, an instance that never watched the channel answers its latest events from the fan-out topic, oldest first", async () => {
    await ingest(first, "acme", "unwatched", 0, 3);
    // Another tenant's same-named channel, on the same partition key space, must not appear.
    await ingest(first, "globex", "unwatched", 10, 2);
    const bearer = await token("acme", ["subscribe"]);
    const latest = async (gateway: RunningGateway, query = "") =>
      (await (
        await fetch(`${gateway.url}/v1/channels/unwatched/events${query}`, {
          headers: { authorization: `Bearer ${bearer}` },
        })
      ).json()) as { events: Frame[]; next: string | null };
    await waitUntil(async () => (await latest(second)).events.length === 3, "the 3 events from the topic");
    for (const gateway of [first, second]) {
      const body = await latest(gateway);
      expect(body.events.map((event) => (event.data as { element: string }).element)).toEqual([
        "e0",
        "e1",
        "e2",
      ]);
      expect(body.next).toBeNull();
    }
    const paged = await latest(second, "?limit=2");
    expect(paged.events.map((event) => (event.data as { element: string }).element)).toEqual(["e0", "e1"]);
    const rest = await latest(second, `?since=${paged.next}`);
    expect(rest.events.map((event) => (event.data as { element: string }).element)).toEqual(["e2"]);
  });

  test("since older than the history: history_gone on the socket and 410 on HTTP", async () => {
    const socket = await connectSubscriber(second, "acme");
    await ingest(first, "acme", "old", 0, 1);
    const delta = () =>
      fetch(`${second.url}/v1/channels/old/events?since=k0-0-0000000000000000`, {
        headers: { authorization: `Bearer ${bearer}` },
      });
    const bearer = await token("acme", ["subscribe"]);
    // The channel's history starts with the event just sent: older positions are gone.
    await waitUntil(async () => (await delta()).status === 410, "a history for the channel");
    // The SPEC's order: subscribed (the channel's position), then history_gone for the missed events.
    expect(await subscribe(socket, "old", "k0-0-0000000000000000")).toMatchObject({
      type: "subscribed",
      channel: "old",
    });
    expect(await socket.next()).toMatchObject({ type: "error", code: "history_gone", channel: "old" });
    expect((await delta()).status).toBe(410);
    socket.close();
  });

  test("tenant isolation: same channel name in two tenants, crafted names, system channels", async () => {
    const acme = await connectSubscriber(second, "acme");
    const globex = await connectSubscriber(second, "globex");
    await subscribe(acme, "shared");
    await subscribe(globex, "shared");
    for (const crafted of ["$system", "acme/shared", "../shared", "", "a b"]) {
      expect(await subscribe(globex, crafted)).toMatchObject({ type: "error", code: "bad_channel" });
    }
    await ingest(first, "acme", "shared", 0, 5);
    expect((await collect(acme, 5)).map((event) => (event.data as { element: string }).element)).toEqual([
      "e0",
      "e1",
      "e2",
      "e3",
      "e4",
    ]);
    // A leak would have reached globex's socket in the same dispatch, before globex's own event.
    await ingest(first, "globex", "shared", 100, 1);
    expect((await collect(globex, 1)).map((event) => (event.data as { element: string }).element)).toEqual([
      "e100",
    ]);
    acme.close();
    globex.close();
  });

  test("a forbidden subscribe gets an error frame and the connection stays usable", async () => {
    const limited = await connectSubscriber(second, "acme", { channels: ["orders.*"] });
    expect(await subscribe(limited, "payroll")).toMatchObject({ type: "error", code: "forbidden" });
    expect(await subscribe(limited, "orders.eu")).toMatchObject({ type: "subscribed", channel: "orders.eu" });
    await ingest(first, "acme", "orders.eu", 0, 1);
    expect((await collect(limited, 1)).map((event) => (event.data as { element: string }).element)).toEqual([
      "e0",
    ]);
    limited.close();
  });

  test("a token limited to channel patterns cannot broadcast: 403 over HTTP, a forbidden error frame over the socket", async () => {
    const tenant = `limited-${runtime}`;
    const listener = await connectSubscriber(second, tenant);
    const limited = await token(tenant, ["subscribe", "publish"], { channels: ["orders*"] });
    const response = await fetch(`${first.url}/v1/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${limited}`, "content-type": "application/json" },
      body: JSON.stringify({ broadcast: true, data: { leak: "http" } }),
    });
    expect(response.status).toBe(403);
    expect(((await response.json()) as Frame).error).toBe("forbidden");
    const socket = new TestSocket(`${first.wsUrl}?token=${limited}`);
    await socket.opened();
    await socket.next((frame) => frame.type === "connected");
    socket.send({ type: "publish", broadcast: true, data: { leak: "ws" }, ref: "b" });
    expect(await socket.next((frame) => frame.ref === "b")).toMatchObject({
      type: "error",
      code: "forbidden",
    });
    // The socket stays open and may still publish to its own channels.
    socket.send({ type: "publish", channel: "orders", data: { ok: true }, ref: "c" });
    expect(await socket.next((frame) => frame.ref === "c")).toMatchObject({ type: "published" });
    // Neither refused broadcast reached the tenant: a broadcast from an unlimited token is the next event.
    await broadcast(first, tenant, { notice: "allowed" });
    expect((await collect(listener, 1))[0]).toMatchObject({ broadcast: true, data: { notice: "allowed" } });
    socket.close();
    listener.close();
  });

  test("app-level ping carries the last event id of each subscribed channel", async () => {
    const socket = await connectSubscriber(second, "acme");
    await subscribe(socket, "orders");
    const ping = await socket.next((frame) => frame.type === "ping", 3000);
    expect(typeof (ping.lastEventIds as Record<string, string>).orders).toBe("string");
    socket.close();
  });

  test("a channel with no event yet is in the ping at the position its subscribed frame gave, not null", async () => {
    // A client keeps the subscribed frame's lastEventId as its position; the ping must agree with it.
    const socket = await connectSubscriber(second, "acme");
    const channel = `quiet-${runtime}-${Date.now()}`;
    const subscribed = await subscribe(socket, channel);
    expect(typeof subscribed.lastEventId).toBe("string");
    const ping = await socket.next(
      (frame) => frame.type === "ping" && channel in (frame.lastEventIds as Record<string, unknown>),
      3000,
    );
    expect((ping.lastEventIds as Record<string, unknown>)[channel]).toBe(subscribed.lastEventId);
    // An event of the channel then moves it on.
    await ingest(first, "acme", channel, 0, 1);
    const event = await socket.next((frame) => frame.type === "event" && frame.channel === channel, 5000);
    const later = await socket.next(
      (frame) =>
        frame.type === "ping" && (frame.lastEventIds as Record<string, unknown>)[channel] === event.id,
      3000,
    );
    expect(later.type).toBe("ping");
    socket.close();
  });

  test("a quiet channel resumed after other channels moved its partition is in the ping at the since, not a false gap", async () => {
    const socket = await connectSubscriber(second, "acme");
    const channel = `quiet-resumed-${runtime}-${Date.now()}`;
    const first = String((await subscribe(socket, channel)).lastEventId);
    const partitionOf = (id: string) => id.split("-")[1];
    // Another channel on the same partition of the fan-out topic: its event moves the partition's head.
    let neighbour: string | undefined;
    for (let n = 0; n < 60 && neighbour === undefined; n++) {
      const candidate = `${channel}-n${n}`;
      const position = String((await subscribe(socket, candidate)).lastEventId);
      if (partitionOf(position) === partitionOf(first)) neighbour = candidate;
    }
    expect(neighbour).toBeDefined();
    await ingest(second, "acme", String(neighbour), 0, 1);
    await socket.next((frame) => frame.type === "event" && frame.channel === neighbour, 5000);
    socket.close();
    // A client back from a disconnect resumes the quiet channel from the position it held.
    const again = await connectSubscriber(second, "acme");
    const resumed = await subscribe(again, channel, first);
    expect(resumed.type).toBe("subscribed");
    expect(resumed.lastEventId).not.toBe(first);
    const ping = await again.next(
      (frame) => frame.type === "ping" && channel in (frame.lastEventIds as Record<string, unknown>),
      3000,
    );
    // Nothing of the channel came after its since: the ping shows no gap to close.
    expect((ping.lastEventIds as Record<string, unknown>)[channel]).toBe(first);
    again.close();
  });
});

describe.each(RUNTIMES)("WebSocket authentication on %s", (runtime) => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, WS_AUTH_TIMEOUT_MS: "400" });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("a first-message auth frame authenticates, and a subscribe sent right behind it is served", async () => {
    // Signed before the socket opens: the 400 ms auth deadline runs from the open, and signing (WebCrypto,
    // off the loop) is what a loaded machine delays most.
    const auth = await token("acme", ["subscribe"]);
    const socket = new TestSocket(gateway.wsUrl);
    await socket.opened();
    socket.send({ type: "auth", token: auth });
    socket.send({ type: "subscribe", channel: "right-behind" });
    expect((await socket.next()).type).toBe("connected");
    expect(await socket.next()).toMatchObject({ type: "subscribed", channel: "right-behind" });
    socket.close();
  });

  test("no auth within the deadline closes with 4001", async () => {
    const socket = new TestSocket(gateway.wsUrl);
    await socket.opened();
    expect((await socket.closed).code).toBe(4001);
  });

  test("a bad first-message token closes with 4001", async () => {
    const socket = new TestSocket(gateway.wsUrl);
    await socket.opened();
    socket.send({ type: "auth", token: "bad" });
    expect((await socket.closed).code).toBe(4001);
  });

  test("a bad token in the query closes with 4001 and an error frame", async () => {
    const socket = new TestSocket(`${gateway.wsUrl}?token=bad`);
    expect((await socket.closed).code).toBe(4001);
    expect(socket.frames[0]).toMatchObject({ type: "error", code: "unauthorized" });
  });

  test("frames sent before the query token is verified are handled after it", async () => {
    const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
    await socket.opened();
    socket.send({ type: "subscribe", channel: "early" });
    expect((await socket.next()).type).toBe("connected");
    expect(await socket.next()).toMatchObject({ type: "subscribed", channel: "early" });
    socket.close();
  });
});
