import { afterEach, describe, expect, test } from "bun:test";
import {
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
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.({});
    });
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

  test("a subscribe without since takes the gateway's lastEventId as its position", async () => {
    start({ channels: ["orders"] });
    const first = await connect(0);
    first.frame({ type: "subscribed", channel: "orders", lastEventId: event("orders", 7).id });
    first.serverClose(1006);
    const second = await connect(1);
    expect(second.sent[1]).toMatchObject({ since: event("orders", 7).id });
  });

  test("history_gone is a gap event; the position restarts from the new history", async () => {
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

  test("a connection that stops answering pings is replaced", async () => {
    start({ heartbeatMs: 50 });
    const first = await connect(0);
    await until(() => first.sent.some((frame) => frame.type === "ping"));
    await socket(1);
  });
});
