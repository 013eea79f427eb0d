import { afterEach, describe, expect, test } from "bun:test";
import {
  GatewayPublishError,
  GatewayRequestError,
  Subscriber,
  type SubscriberEvents,
  type SubscriberOptions,
  type WebSocketLike,
} from "../src/index.js";

/** A scripted stand-in for a WebSocket: the test plays the gateway. */
class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  readonly sent: Array<Record<string, unknown>> = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly openedAt = Date.now();

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
    queueMicrotask(() => this.open());
  }

  /** What the connection does once the microtask after its creation runs: opens, unless a test says otherwise. */
  protected open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }

  close(code = 1000, reason = ""): void {
    this.serverClose(code, reason);
  }

  frame(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  serverClose(code: number, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

async function until<T>(probe: () => T | undefined, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
}

const socket = (index: number) => until(() => FakeSocket.all[index]);

let subscriber: Subscriber | undefined;
afterEach(() => {
  subscriber?.close();
  FakeSocket.all = [];
});

function start(options: Partial<SubscriberOptions> = {}) {
  const seen: Array<{ type: keyof SubscriberEvents; payload: unknown }> = [];
  subscriber = new Subscriber({
    url: "https://gateway.test/",
    token: "t",
    WebSocket: FakeSocket,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    ...options,
  });
  for (const type of ["connected", "subscribed", "event", "gap", "error", "disconnected"] as const) {
    subscriber.on(type, (payload) => seen.push({ type, payload }));
  }
  return { subscriber, seen, of: (type: keyof SubscriberEvents) => seen.filter((e) => e.type === type) };
}

async function connect(index: number, connection = `c${index}`) {
  const server = await socket(index);
  await until(() => server.sent.length > 0);
  server.frame({ type: "connected", connection });
  return server;
}

const event = (channel: string, offset: number, epoch = "e1") => ({
  type: "event",
  channel,
  id: `${epoch}-0-${String(offset).padStart(16, "0")}`,
  data: { n: offset },
});

describe("Subscriber", () => {
  test("authenticates with a first message, then subscribes; the URL is the gateway's /v1/ws", async () => {
    start({ channels: ["orders"] });
    const server = await connect(0);
    expect(server.url).toBe("wss://gateway.test/v1/ws");
    expect(server.sent).toEqual([
      { type: "auth", token: "t" },
      { type: "subscribe", channel: "orders" },
    ]);
  });

  test("resumes each channel from its last event after a reconnect, and drops replayed duplicates", async () => {
    const { of } = start({ channels: ["orders"] });
    const first = await connect(0);
    first.frame({ type: "subscribed", channel: "orders", lastEventId: null });
    first.frame(event("orders", 1));
    first.frame(event("orders", 2));
    first.serverClose(1006);
    const second = await connect(1);
    expect(second.sent[1]).toEqual({ type: "subscribe", channel: "orders", since: event("orders", 2).id });
    second.frame({ type: "subscribed", channel: "orders", lastEventId: event("orders", 3).id });
    for (const offset of [2, 3, 3, 4]) second.frame(event("orders", offset));
    expect(of("event").map((e) => (e.payload as { data: { n: number } }).data.n)).toEqual([1, 2, 3, 4]);
  });

  test("an event carries the publisher's trace context when the gateway sent it", async () => {
    const { of } = start({ channels: ["orders"] });
    const server = await connect(0);
    server.frame({ type: "subscribed", channel: "orders", lastEventId: null });
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    server.frame({ ...event("orders", 1), traceparent, tracestate: "rojo=1" });
    server.frame(event("orders", 2));
    expect(of("event").map((e) => e.payload)).toEqual([
      { channel: "orders", id: event("orders", 1).id, data: { n: 1 }, traceparent, tracestate: "rojo=1" },
      { channel: "orders", id: event("orders", 2).id, data: { n: 2 } },
    ]);
  });

  test("presence: true asks for join and leave (again after a reconnect) and delivers them; the position before a first event is kept", async () => {
    const { subscriber } = start();
    const changes: unknown[] = [];
    subscriber.on("join", (change) => changes.push({ kind: "join", ...change }));
    const subscribed = subscriber.subscribe("room", { presence: true });
    const first = await connect(0);
    await until(() => first.sent.length > 1);
    expect(first.sent[1]).toEqual({ type: "subscribe", channel: "room", presence: true });
    first.frame({ type: "subscribed", channel: "room", lastEventId: "e1-0--1" });
    const subscription = await subscribed;
    subscription.on("leave", (change) => changes.push({ kind: "leave", ...change }));
    first.frame({ type: "join", channel: "room", subject: "ann" });
    first.frame({ type: "leave", channel: "room", subject: "ann" });
    first.frame({ type: "join", channel: "elsewhere", subject: "bob" });
    expect(changes).toEqual([
      { kind: "join", channel: "room", subject: "ann" },
      { kind: "leave", channel: "room", subject: "ann" },
    ]);
    first.frame(event("room", 0));
    expect(subscription.lastEventId).toBe(event("room", 0).id);
    first.serverClose(1006);
    const second = await connect(1);
    await until(() => second.sent.length > 1);
    expect(second.sent[1]).toEqual({
      type: "subscribe",
      channel: "room",
      since: event("room", 0).id,
      presence: true,
    });
  });

  test("a subscribe without since takes the gateway's lastEventId as its position", async () => {
    start({ channels: ["orders"] });
    const first = await connect(0);
    first.frame({ type: "subscribed", channel: "orders", lastEventId: event("orders", 7).id });
    first.serverClose(1006);
    const second = await connect(1);
    expect(second.sent[1]).toMatchObject({ since: event("orders", 7).id });
  });

  test("a since that is no event id throws and sends nothing: the gateway's bad_frame names no channel, so it would never settle", async () => {
    const { subscriber } = start({ channels: ["orders"] });
    const server = await connect(0);
    server.frame({ type: "subscribed", channel: "orders", lastEventId: event("orders", 2).id });
    for (const since of ["not-an-id", "", "undefined", "k1-0-12abc"])
      expect(() => subscriber.subscribe("orders", { since })).toThrow(TypeError);
    expect(() => subscriber.subscribe("room", { since: "null" })).toThrow(TypeError);
    // The subscription it already had is untouched; the gateway's positions are taken.
    expect(subscriber.subscription("orders")?.state).toBe("subscribed");
    expect(subscriber.subscription("room")).toBeUndefined();
    expect(server.sent.slice(1)).toEqual([{ type: "subscribe", channel: "orders" }]);
    subscriber.subscribe("room", { since: "k1-3--1" });
    subscriber.subscribe("orders", { since: event("orders", 1).id });
    expect(server.sent.slice(2).map((frame) => frame.since)).toEqual(["k1-3--1", event("orders", 1).id]);
  });

  test("history_gone after subscribed (the gateway's order) is a gap from the since sent; the position is the subscribed frame's", async () => {
    const { of, subscriber } = start();
    subscriber.subscribe("orders", { since: event("orders", 5).id });
    const server = await connect(0);
    server.frame({ type: "subscribed", channel: "orders", lastEventId: event("orders", 7).id });
    server.frame({ type: "error", code: "history_gone", channel: "orders", message: "gone" });
    expect(of("gap").map((e) => e.payload)).toEqual([
      { channel: "orders", since: event("orders", 5).id, reason: "history_gone" },
    ]);
    expect(subscriber.lastEventId("orders")).toBe(event("orders", 7).id);
    expect(of("error")).toEqual([]);
  });

  test("history_gone before subscribed (gateways before 2026-12) is a gap event; the position restarts from the new history", async () => {
    const { of, subscriber } = start();
    subscriber.subscribe("orders", { since: event("orders", 5).id });
    const server = await connect(0);
    server.frame({ type: "error", code: "history_gone", channel: "orders", message: "gone" });
    server.frame({ type: "subscribed", channel: "orders", lastEventId: null });
    server.frame(event("orders", 0, "e2"));
    expect(of("gap").map((e) => e.payload)).toEqual([
      { channel: "orders", since: event("orders", 5).id, reason: "history_gone" },
    ]);
    expect(of("event").length).toBe(1);
    expect(subscriber.lastEventId("orders")).toBe(event("orders", 0, "e2").id);
    expect(of("error")).toEqual([]);
  });

  test("a ping showing a newer event than ours is a gap: a replay is asked for", async () => {
    const { of } = start({ channels: ["orders"] });
    const server = await connect(0);
    server.frame(event("orders", 1));
    server.frame({ type: "ping", lastEventIds: { orders: event("orders", 1).id } });
    expect(of("gap")).toEqual([]);
    server.frame({ type: "ping", lastEventIds: { orders: event("orders", 3).id } });
    expect(of("gap").map((e) => e.payload)).toEqual([
      { channel: "orders", since: event("orders", 1).id, reason: "behind" },
    ]);
    expect(server.sent.at(-1)).toEqual({
      type: "subscribe",
      channel: "orders",
      since: event("orders", 1).id,
    });
  });

  test("the reconnect frame's afterMs is obeyed", async () => {
    const { of } = start();
    const first = await connect(0);
    first.frame({ type: "reconnect", afterMs: 300 });
    const closedAt = Date.now();
    first.serverClose(1001, "server draining");
    expect(of("disconnected").map((e) => e.payload)).toEqual([
      { code: 1001, reason: "server draining", reconnectInMs: 300 },
    ]);
    const second = await socket(1);
    expect(second.openedAt - closedAt).toBeGreaterThanOrEqual(295);
  });

  test("1013 backs off further than a plain drop", async () => {
    const { of } = start({ reconnect: { initialDelayMs: 100, maxDelayMs: 10_000 } });
    const first = await connect(0);
    first.serverClose(1013, "slow consumer");
    const [disconnected] = of("disconnected");
    const delay = (disconnected?.payload as { reconnectInMs: number } | undefined)?.reconnectInMs;
    // Backoff step 4 × 100 ms, equal jitter: 200–400 ms (a plain first drop waits 50–100 ms).
    expect(delay).toBeGreaterThanOrEqual(200);
    expect(delay).toBeLessThanOrEqual(400);
  });

  test("4001 calls the token callback with refresh, then reconnects", async () => {
    const requests: boolean[] = [];
    start({
      token: ({ refresh }) => {
        requests.push(refresh);
        return refresh ? "fresh" : "stale";
      },
    });
    const first = await connect(0);
    first.frame({ type: "error", code: "unauthorized", message: "token expired" });
    first.serverClose(4001, "token expired");
    const second = await connect(1);
    expect(second.sent[0]).toEqual({ type: "auth", token: "fresh" });
    expect(requests).toEqual([false, true]);
  });

  test("maxAuthFailures refusals in a row stop it: the callback is asked that many times, no more", async () => {
    let calls = 0;
    const { of, subscriber } = start({
      token: () => {
        calls++;
        return "refused";
      },
      maxAuthFailures: 3,
      reconnect: { initialDelayMs: 1, maxDelayMs: 2 },
    });
    for (let index = 0; index < 3; index++) {
      // Refused before `connected`, as a bad token is.
      const server = await socket(index);
      await until(() => server.sent.length > 0);
      server.serverClose(4001, "bad token signature");
    }
    await Bun.sleep(50);
    expect(subscriber.state).toBe("closed");
    expect(calls).toBe(3);
    expect(FakeSocket.all.length).toBe(3);
    expect(of("disconnected").map((e) => (e.payload as { reconnectInMs?: number }).reconnectInMs)).toEqual([
      expect.any(Number),
      expect.any(Number),
      undefined,
    ]);
  });

  test("a token that expires on an open connection (4001 after connected) is no refusal: maxAuthFailures: 1 refreshes and reconnects", async () => {
    const requests: boolean[] = [];
    const { subscriber } = start({
      token: ({ refresh }) => {
        requests.push(refresh);
        return refresh ? "fresh" : "stale";
      },
      maxAuthFailures: 1,
    });
    for (let index = 0; index < 3; index++) (await connect(index)).serverClose(4001, "token expired");
    const last = await connect(3);
    expect(last.sent[0]).toEqual({ type: "auth", token: "fresh" });
    expect(subscriber.state).toBe("open");
    expect(requests).toEqual([false, true, true, true]);
  });

  test("4001 with a fixed token stops for good", async () => {
    const { of, subscriber } = start();
    const first = await connect(0);
    first.serverClose(4001, "token expired");
    expect(subscriber.state).toBe("closed");
    expect(of("error").map((e) => (e.payload as { code: string }).code)).toEqual(["unauthorized"]);
    expect(of("disconnected").map((e) => e.payload)).toEqual([
      { code: 4001, reason: "token expired", reconnectInMs: undefined },
    ]);
    await Bun.sleep(100);
    expect(FakeSocket.all.length).toBe(1);
  });

  test("forbidden channels are not asked for again; unsubscribe forgets the position", async () => {
    const { subscriber } = start({ channels: ["payroll", "orders"] });
    const first = await connect(0);
    first.frame({ type: "error", code: "forbidden", channel: "payroll", message: "no" });
    first.frame(event("orders", 1));
    subscriber.unsubscribe("orders");
    expect(first.sent.at(-1)).toEqual({ type: "unsubscribe", channel: "orders" });
    subscriber.subscribe("news");
    first.serverClose(1006);
    const second = await connect(1);
    expect(second.sent.slice(1)).toEqual([{ type: "subscribe", channel: "news" }]);
  });

  test("a connection that fails with an error and no close (Node 20's WebSocket, refused) is tried again", async () => {
    // Node 20's undici WebSocket, when the connection is refused: error, readyState stays 0, no close ever.
    class RefusedOnce extends FakeSocket {
      protected override open(): void {
        if (FakeSocket.all[0] === this) this.onerror?.({});
        else super.open();
      }
    }
    const { of } = start({ WebSocket: RefusedOnce, channels: ["orders"] });
    const second = await connect(1);
    expect(second.sent).toEqual([
      { type: "auth", token: "t" },
      { type: "subscribe", channel: "orders" },
    ]);
    expect(of("disconnected").map((e) => (e.payload as { code: number }).code)).toEqual([1006]);
  });

  test("a connection that never opens (a frozen gateway took it) is replaced after the heartbeat", async () => {
    class NeverOpens extends FakeSocket {
      protected override open(): void {
        if (FakeSocket.all[0] !== this) super.open();
      }
    }
    const { of } = start({ WebSocket: NeverOpens, heartbeatMs: 50 });
    await connect(1);
    expect(of("disconnected").map((e) => (e.payload as { code: number }).code)).toEqual([1006]);
  });

  test("without a heartbeat, a connection never answered (a gateway that took TCP and not the upgrade) times out and is tried again with the backoff", async () => {
    class NeverOpens extends FakeSocket {
      protected override open(): void {
        if (FakeSocket.all.length > 2) super.open();
      }
    }
    const { of } = start({
      WebSocket: NeverOpens,
      heartbeatMs: 0,
      connectTimeoutMs: 100,
      reconnect: { initialDelayMs: 100, maxDelayMs: 10_000 },
    });
    // Opened (the upgrade answered) but never `connected` times out too.
    const second = await socket(1);
    second.readyState = 1;
    second.onopen?.({});
    const third = await connect(2);
    expect(third.openedAt - second.openedAt).toBeGreaterThanOrEqual(100 + 100);
    const disconnected = of("disconnected").map(
      (e) => e.payload as { code: number; reason: string; reconnectInMs: number },
    );
    expect(disconnected.map(({ code, reason }) => [code, reason])).toEqual([
      [1006, "no answer to connect"],
      [1006, "no answer to connect"],
    ]);
    // The backoff grows: 50–100 ms, then 100–200 ms.
    expect(disconnected[1]?.reconnectInMs).toBeGreaterThanOrEqual(100);
    await Bun.sleep(150);
    expect(FakeSocket.all.length).toBe(3);
  });

  test("connectTimeoutMs: 0 turns the connect timeout off, as heartbeatMs: 0 does the heartbeat", async () => {
    const { subscriber, of } = start({ connectTimeoutMs: 0 });
    const server = await socket(0);
    await Bun.sleep(20);
    server.frame({ type: "connected", connection: "c0" });
    expect(subscriber.state).toBe("open");
    expect(of("disconnected")).toEqual([]);
  });

  test("with Bun's own WebSocket against a server that takes TCP and never answers the upgrade: tried again after connectTimeoutMs", async () => {
    let accepted = 0;
    const silent = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { open: () => void accepted++, data: () => {} },
    });
    const seen: number[] = [];
    const real = new Subscriber({
      url: `ws://127.0.0.1:${silent.port}/v1/ws`,
      token: "t",
      heartbeatMs: 0,
      connectTimeoutMs: 150,
      reconnect: { initialDelayMs: 20, maxDelayMs: 40 },
    });
    real.on("disconnected", ({ code }) => seen.push(code));
    try {
      await until(() => accepted >= 3, 3000);
      expect(seen.slice(0, 2)).toEqual([1006, 1006]);
    } finally {
      real.close();
      silent.stop(true);
    }
  });

  test("a connection that stops answering pings is replaced", async () => {
    start({ heartbeatMs: 50 });
    const first = await connect(0);
    await until(() => first.sent.some((frame) => frame.type === "ping"));
    await socket(1);
  });
});

/** An unsigned JWT-shaped token expiring at `expSec` (the client reads `exp`, the gateway verifies). */
const jwt = (name: string, expSec: number) =>
  `h.${btoa(JSON.stringify({ sub: name, exp: expSec }))
    .replace(/=+$/, "")
    .replace(/\+/g, "-")
    .replace(/\//g, "_")}.s`;
const nowSec = () => Math.floor(Date.now() / 1000);

describe("Subscriber subscriptions", () => {
  test("subscribe() resolves once subscribed; a subscription has states, a position and its own events", async () => {
    const { subscriber } = start();
    const pending = subscriber.subscribe("orders");
    const orders = subscriber.subscription("orders");
    expect(orders?.state).toBe("subscribing");
    const states: string[] = [];
    const received: number[] = [];
    for (const type of ["subscribing", "subscribed", "unsubscribed"] as const)
      orders?.on(type, () => states.push(type));
    orders?.on("event", (event) => received.push((event.data as { n: number }).n));
    const first = await connect(0);
    first.frame({ type: "subscribed", channel: "orders", lastEventId: event("orders", 4).id });
    expect(await pending).toBe(orders as NonNullable<typeof orders>);
    expect(orders?.state).toBe("subscribed");
    expect(orders?.lastEventId).toBe(event("orders", 4).id);
    first.frame(event("orders", 5));
    first.frame(event("other", 6));
    first.serverClose(1006);
    expect(orders?.state).toBe("subscribing");
    const second = await connect(1);
    second.frame({ type: "subscribed", channel: "orders", lastEventId: event("orders", 5).id });
    await orders?.ready();
    orders?.unsubscribe();
    expect(orders?.state).toBe("unsubscribed");
    expect(states).toEqual(["subscribed", "subscribing", "subscribed", "unsubscribed"]);
    expect(received).toEqual([5]);
    expect(subscriber.subscription("orders")).toBeUndefined();
  });

  test("subscribe() rejects when the gateway refuses the channel; the refusal is also an error event", async () => {
    const { subscriber, of } = start();
    const refused = subscriber.subscribe("payroll");
    const server = await connect(0);
    server.frame({ type: "error", code: "forbidden", channel: "payroll", message: "not yours" });
    await expect(refused).rejects.toThrow("forbidden");
    expect(of("error").map((e) => e.payload)).toEqual([
      { code: "forbidden", message: "not yours", channel: "payroll" },
    ]);
    const tooMany = subscriber.subscribe("one-too-many");
    server.frame({
      type: "error",
      code: "too_many_subscriptions",
      channel: "one-too-many",
      message: "64 at most",
    });
    await expect(tooMany).rejects.toThrow("too_many_subscriptions");
    expect(subscriber.subscription("one-too-many")).toBeUndefined();
    // Ignored promises never surface as unhandled rejections.
    void subscriber.subscribe("secret");
    server.frame({ type: "error", code: "forbidden", channel: "secret", message: "no" });
    subscriber.close();
    await Bun.sleep(10);
  });

  test("an empty channel keeps the position the gateway reported, so a resume misses nothing", async () => {
    const { subscriber } = start();
    const empty = subscriber.subscribe("empty");
    const first = await connect(0);
    first.frame({ type: "subscribed", channel: "empty", lastEventId: event("empty", 0).id });
    expect((await empty).lastEventId).toBe(event("empty", 0).id);
    first.serverClose(1006);
    const second = await connect(1);
    expect(second.sent.slice(1)).toEqual([
      { type: "subscribe", channel: "empty", since: event("empty", 0).id },
    ]);
  });

  test("try_again (a replay over the gateway's bounds) resubscribes after retryAfterMs: no gap, no error", async () => {
    const { subscriber, of } = start();
    void subscriber.subscribe("orders", { since: event("orders", 1).id });
    const server = await connect(0);
    const refusedAt = Date.now();
    server.frame({ type: "error", code: "try_again", channel: "orders", retryAfterMs: 150, message: "busy" });
    await until(() => server.sent.filter((frame) => frame.type === "subscribe").length === 2);
    expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(145);
    expect(server.sent.at(-1)).toEqual({
      type: "subscribe",
      channel: "orders",
      since: event("orders", 1).id,
    });
    expect([...of("gap"), ...of("error")]).toEqual([]);
    expect(subscriber.subscription("orders")?.state).toBe("subscribing");
  });
});

describe("Subscriber token refresh in band", () => {
  test("token_expiring: a fresh token goes on the same socket; subscriptions stay", async () => {
    const requests: boolean[] = [];
    const fresh = jwt("fresh", nowSec() + 7200);
    const { subscriber, seen } = start({
      channels: ["orders"],
      token: ({ refresh }) => {
        requests.push(refresh);
        return refresh ? fresh : jwt("first", nowSec() + 3600);
      },
    });
    const refreshed: unknown[] = [];
    subscriber.on("refreshed", (payload) => refreshed.push(payload));
    const server = await connect(0);
    server.frame({ type: "subscribed", channel: "orders", lastEventId: null });
    server.frame({ type: "token_expiring", expiresAt: Date.now() + 60_000 });
    await until(() => server.sent.filter((frame) => frame.type === "auth").length === 2);
    expect(server.sent.at(-1)).toEqual({ type: "auth", token: fresh });
    const expiresAt = Date.now() + 3_600_000;
    server.frame({ type: "refreshed", expiresAt });
    expect(refreshed).toEqual([{ expiresAt }]);
    expect(requests).toEqual([false, true]);
    expect(FakeSocket.all.length).toBe(1);
    expect(subscriber.subscription("orders")?.state).toBe("subscribed");
    expect(seen.filter((entry) => entry.type === "disconnected" || entry.type === "error")).toEqual([]);
  });

  test("without a warning, the token is still replaced before its exp", async () => {
    start({ token: ({ refresh }) => jwt(refresh ? "fresh" : "short", nowSec() + (refresh ? 3600 : 2)) });
    const server = await connect(0);
    await until(() => server.sent.filter((frame) => frame.type === "auth").length === 2, 3000);
    expect(FakeSocket.all.length).toBe(1);
    expect((server.sent.at(-1) as { token: string }).token).toBe(jwt("fresh", nowSec() + 3600));
  });

  test("a channel the new token no longer allows is unsubscribed (forbidden) and not asked for again", async () => {
    const { subscriber, of } = start({ channels: ["orders", "payroll"], token: () => "t" });
    const payroll = subscriber.subscription("payroll");
    const ended: unknown[] = [];
    payroll?.on("unsubscribed", (payload) => ended.push(payload));
    const first = await connect(0);
    first.frame({ type: "subscribed", channel: "payroll", lastEventId: null });
    first.frame({ type: "unsubscribed", channel: "payroll", reason: "forbidden" });
    expect(ended).toEqual([{ channel: "payroll", reason: "forbidden" }]);
    expect(of("unsubscribed" as keyof SubscriberEvents).length).toBe(0);
    first.serverClose(1006);
    const second = await connect(1);
    expect(second.sent.slice(1)).toEqual([{ type: "subscribe", channel: "orders" }]);
  });

  test("an unreachable identity provider during a refresh: the socket stays, the refresh is tried again when asked", async () => {
    const { of } = start({
      token: ({ refresh }) => jwt(refresh ? "fresh" : "first", nowSec() + (refresh ? 3600 : 600)),
    });
    const server = await connect(0);
    server.frame({ type: "token_expiring", expiresAt: Date.now() + 60_000 });
    await until(() => server.sent.filter((frame) => frame.type === "auth").length === 2);
    const refusedAt = Date.now();
    server.frame({
      type: "error",
      code: "unavailable",
      retryAfterMs: 150,
      message: "identity provider unreachable",
    });
    await until(() => server.sent.filter((frame) => frame.type === "auth").length === 3);
    expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(145);
    expect(FakeSocket.all.length).toBe(1);
    expect(of("error").map((e) => (e.payload as { code: string }).code)).toEqual(["unavailable"]);
  });

  test("a refresh the gateway refuses (forbidden) is reported and tried again before the token expires", async () => {
    let calls = 0;
    const { of } = start({
      token: () => {
        calls++;
        return jwt(`t${calls}`, nowSec() + (calls === 1 ? 2 : 3600 + calls));
      },
    });
    const server = await connect(0);
    server.frame({ type: "token_expiring", expiresAt: Date.now() + 2000 });
    await until(() => server.sent.filter((frame) => frame.type === "auth").length === 2);
    server.frame({ type: "error", code: "forbidden", message: "the new token must expire later" });
    await until(() => server.sent.filter((frame) => frame.type === "auth").length === 3, 1500);
    server.frame({ type: "refreshed", expiresAt: Date.now() + 3_600_000 });
    expect(of("error").map((e) => (e.payload as { code: string }).code)).toEqual(["forbidden"]);
    expect(FakeSocket.all.length).toBe(1);
  });

  test("a gateway without in-band refresh (bad_frame) is left to close at expiry; the reconnect refreshes", async () => {
    const { of } = start({
      token: ({ refresh }) => jwt(refresh ? "fresh" : "first", nowSec() + (refresh ? 3600 : 600)),
    });
    const first = await connect(0);
    first.frame({ type: "token_expiring", expiresAt: Date.now() + 60_000 });
    await until(() => first.sent.filter((frame) => frame.type === "auth").length === 2);
    first.frame({ type: "error", code: "bad_frame", message: "already authenticated" });
    expect(of("error")).toEqual([]);
    first.frame({ type: "token_expiring", expiresAt: Date.now() + 60_000 });
    await Bun.sleep(20);
    expect(first.sent.filter((frame) => frame.type === "auth").length).toBe(2);
    first.serverClose(4001, "token expired");
    const second = await connect(1);
    expect(second.sent[0]).toEqual({ type: "auth", token: jwt("fresh", nowSec() + 3600) });
  });
});

describe("Subscriber when the identity provider is down", () => {
  test("unavailable + 1013 waits retryAfterMs and never stops, however often it repeats", async () => {
    const { subscriber, of } = start({ token: () => "t", maxAuthFailures: 2 });
    for (let index = 0; index < 4; index++) {
      const server = await socket(index);
      await until(() => server.sent.length > 0);
      server.frame({
        type: "error",
        code: "unavailable",
        retryAfterMs: 100,
        message: "identity provider unreachable",
      });
      server.serverClose(1013, "try again later");
    }
    const delays = of("disconnected").map((e) => (e.payload as { reconnectInMs: number }).reconnectInMs);
    expect(delays.length).toBe(4);
    // retryAfterMs plus a little jitter (the first backoff step, 10–20 ms here): not the growing backoff.
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(100);
      expect(delay).toBeLessThanOrEqual(120);
    }
    await connect(4);
    expect(subscriber.state).toBe("open");
  });
});

describe("Subscriber at a connection cap", () => {
  test("rate_limited with retryAfterMs, then 1013: the reconnect waits at least retryAfterMs", async () => {
    const { of } = start({ reconnect: { initialDelayMs: 20, maxDelayMs: 10_000 } });
    for (let index = 0; index < 2; index++) {
      const server = await socket(index);
      await until(() => server.sent.length > 0);
      server.frame({
        type: "error",
        code: "rate_limited",
        retryAfterMs: 300,
        message: "too many connections for this tenant",
      });
      server.serverClose(1013, "rate_limited");
      const next = await socket(index + 1);
      expect(next.openedAt - server.openedAt).toBeGreaterThanOrEqual(295);
    }
    const delays = of("disconnected").map((e) => (e.payload as { reconnectInMs: number }).reconnectInMs);
    for (const delay of delays) expect(delay).toBeGreaterThanOrEqual(300);
    await connect(2);
  });
});

describe("Subscriber publish", () => {
  const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

  test("a publish frame with a ref and the trace context; resolved by `published`, rejected by an error with the same ref", async () => {
    const { subscriber, of } = start();
    const server = await connect(0);
    const sent = subscriber.publish("orders", { n: 1 }, { traceparent, tracestate: "rojo=1" });
    const refused = subscriber.publish(undefined, { notice: "x" }, { broadcast: true });
    expect(server.sent.slice(1)).toEqual([
      { type: "publish", channel: "orders", data: { n: 1 }, ref: "1", traceparent, tracestate: "rojo=1" },
      { type: "publish", broadcast: true, data: { notice: "x" }, ref: "2" },
    ]);
    server.frame({ type: "error", code: "rate_limited", message: "slow down", retryAfterMs: 3000, ref: "2" });
    server.frame({ type: "published", ref: "1" });
    await sent;
    const error = await refused.catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(GatewayPublishError);
    expect(error).toMatchObject({ code: "rate_limited", message: "slow down", retryAfterMs: 3000 });
    // The refusal is the promise's, not an `error` event of the subscriber.
    expect(of("error")).toEqual([]);
  });

  test("without a channel and without broadcast it throws and sends nothing (the gateway's bad_frame names no ref)", async () => {
    const { subscriber } = start();
    const server = await connect(0);
    expect(() => subscriber.publish(undefined, { n: 1 })).toThrow(TypeError);
    expect(server.sent.filter((frame) => frame.type === "publish")).toEqual([]);
  });

  test("a publish the gateway never answers (dropped past its message rate) rejects with timeout", async () => {
    const { subscriber } = start({ publishTimeoutMs: 50 });
    const server = await connect(0);
    const dropped = subscriber.publish("orders", 1).catch((failure: unknown) => failure);
    const answered = subscriber.publish("orders", 2);
    server.frame({ type: "error", code: "rate_limited", message: "too many frames" });
    server.frame({ type: "published", ref: "2" });
    await answered;
    expect(await dropped).toMatchObject({ code: "timeout" });
  });

  test("an error answering a publish that already timed out is ignored: no error event, no reconnect floor", async () => {
    const { subscriber, of } = start({
      publishTimeoutMs: 30,
      reconnect: { initialDelayMs: 20, maxDelayMs: 40 },
    });
    const first = await connect(0);
    expect(await subscriber.publish("orders", 1).catch((failure: unknown) => failure)).toMatchObject({
      code: "timeout",
    });
    first.frame({
      type: "error",
      code: "rate_limited",
      message: "slow down",
      retryAfterMs: 30_000,
      ref: "1",
    });
    first.frame({
      type: "error",
      code: "unavailable",
      message: "publish failed",
      retryAfterMs: 1000,
      ref: "1",
    });
    expect(of("error")).toEqual([]);
    first.serverClose(1006);
    const delays = of("disconnected").map((e) => (e.payload as { reconnectInMs: number }).reconnectInMs);
    expect(delays.length).toBe(1);
    expect(delays[0]).toBeLessThanOrEqual(40);
    await connect(1);
  });

  test("without an open connection, or when it closes before the answer: disconnected, never sent again", async () => {
    const { subscriber } = start({ channels: ["orders"] });
    const early = await subscriber.publish("orders", 1).catch((failure: unknown) => failure);
    expect(early).toMatchObject({ code: "disconnected" });
    const first = await connect(0);
    const pending = subscriber.publish("orders", 2).catch((failure: unknown) => failure);
    first.serverClose(1006);
    expect(await pending).toMatchObject({ code: "disconnected" });
    const second = await connect(1);
    expect(second.sent.filter((frame) => frame.type === "publish")).toEqual([]);
    const last = subscriber.publish("orders", 3).catch((failure: unknown) => failure);
    subscriber.close();
    expect(await last).toMatchObject({ code: "disconnected" });
  });
});

describe("Subscriber presence", () => {
  test("presence(channel) reads who watches it with the token; a refusal is a GatewayRequestError", async () => {
    const urls: string[] = [];
    const answers = [
      () =>
        Response.json({
          channel: "orders",
          scope: "cluster",
          total: 2,
          members: [
            { subject: "ann", connections: 2 },
            { subject: "bob", connections: 1 },
          ],
        }),
      () => Response.json({ error: "forbidden", message: "not your channel" }, { status: 403 }),
    ];
    const { subscriber } = start({
      fetch: async (url) => {
        urls.push(url);
        return (answers.shift() as () => Response)();
      },
    });
    expect(await subscriber.presence("orders")).toEqual({
      channel: "orders",
      scope: "cluster",
      total: 2,
      members: [
        { subject: "ann", connections: 2 },
        { subject: "bob", connections: 1 },
      ],
    });
    const refused = await subscriber.presence("secret").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GatewayRequestError);
    expect(refused).toMatchObject({ status: 403, code: "forbidden" });
    expect(urls).toEqual([
      "https://gateway.test/v1/channels/orders/presence",
      "https://gateway.test/v1/channels/secret/presence",
    ]);
  });
});

describe("Subscriber history", () => {
  test("history({ since, limit }) reads a page with the token; a 401 gets one refreshed token; 410 is history_gone", async () => {
    const requests: Array<{ url: string; authorization: string }> = [];
    const answers = [
      () => Response.json({ error: "unauthorized", message: "expired" }, { status: 401 }),
      () =>
        Response.json({
          channel: "orders",
          events: [{ id: event("orders", 2).id, data: { n: 2 }, recordType: "click" }],
          lastEventId: event("orders", 9).id,
          next: event("orders", 2).id,
        }),
      () =>
        Response.json(
          { error: "history_gone", message: "since is older than the kept history" },
          { status: 410 },
        ),
    ];
    const { subscriber } = start({
      url: "wss://gateway.test/v1/ws",
      token: ({ refresh }) => (refresh ? "fresh" : "stale"),
      fetch: async (url, init) => {
        requests.push({
          url,
          authorization: (init.headers as Record<string, string>).authorization as string,
        });
        return (answers.shift() as () => Response)();
      },
    });
    const page = await subscriber.history("orders", { since: event("orders", 1).id, limit: 1 });
    expect(page).toEqual({
      channel: "orders",
      events: [{ channel: "orders", id: event("orders", 2).id, data: { n: 2 }, recordType: "click" }],
      lastEventId: event("orders", 9).id,
      next: event("orders", 2).id,
    });
    expect(requests.map((request) => request.authorization)).toEqual(["Bearer stale", "Bearer fresh"]);
    expect(requests[0]?.url).toBe(
      `https://gateway.test/v1/channels/orders/events?since=${event("orders", 1).id}&limit=1`,
    );
    const gone = await subscriber.history("orders", { since: "x" }).catch((error: unknown) => error);
    expect(gone).toBeInstanceOf(GatewayRequestError);
    expect(gone).toMatchObject({ status: 410, code: "history_gone" });
  });
});
