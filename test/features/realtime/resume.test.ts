import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { GatewayError } from "../../../src/domain/errors.ts";
import { formatEventId } from "../../../src/domain/event-id.ts";
import type { Principal } from "../../../src/domain/principal.ts";
import { deltaRoute, pageLimit } from "../../../src/features/realtime/delta-route.ts";
import { Fanout } from "../../../src/features/realtime/fanout.ts";
import { type ConnectionState, WsHub } from "../../../src/features/realtime/hub.ts";
import { isPending, Resume, type ResumeOutcome } from "../../../src/features/realtime/resume.ts";
import { LocalFanoutBus } from "../../../src/infra/local/fanout-bus.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import type { HttpRequest, SendResult, WsPeer } from "../../../src/ports/transport.ts";
import {
  FakeLog,
  id,
  LIMITS,
  message,
  resumeWorld,
  threeEventHistory,
  watchedHistory,
} from "../../support/fanout-log.ts";

const principal: Principal = {
  subject: "s",
  tenant: "acme",
  scopes: new Set(["subscribe"]),
  channels: undefined,
  expiresAt: Date.now() + 600_000,
};

class FakePeer implements WsPeer<ConnectionState> {
  readonly frames: Array<Record<string, unknown>> = [];
  readonly topics = new Set<string>();
  constructor(readonly state: ConnectionState) {}
  send(text: string): SendResult {
    this.frames.push(JSON.parse(text));
    return "sent";
  }
  subscribe(topic: string): void {
    this.topics.add(topic);
  }
  unsubscribe(topic: string): void {
    this.topics.delete(topic);
  }
  bufferedAmount(): number {
    return 0;
  }
  close(): void {}
}

async function connectedPeer(world: ReturnType<typeof resumeWorld>) {
  const hub = new WsHub(
    {
      runtime: "test",
      pingIntervalMs: 60_000,
      authTimeoutMs: 60_000,
      backpressureBytes: 1 << 20,
      queuedMaxBytes: 1 << 28,
      maxConnections: 10,
      maxUnauthenticated: 10,
      maxConnectionsPerTenant: 10,
      maxSubscriptions: 10,
      maxChannels: 1000,
      maxTenantChannels: 1000,
      maxMessagesPerSec: 1000,
      trustProxyHops: 0,
      tokenExpiryWarningMs: 60_000,
    },
    {
      authenticator: { verify: async () => principal },
      history: world.history,
      resume: world.resume,
      metrics: world.metrics,
      publish: async () => undefined,
      log: createLogger("silent", {}),
      admitConnection: async () => {},
    },
  );
  // The engine: a frame published to a topic reaches the peers subscribed to it.
  const peers: FakePeer[] = [];
  hub.attach((topic, frame) => {
    for (const peer of peers) if (peer.topics.has(topic)) peer.send(frame);
  });
  world.fanout.attach(hub);
  const decision = await hub.upgrade({
    method: "GET",
    path: "/v1/ws",
    query: new URLSearchParams({ token: "t" }),
    header: () => undefined,
    headerNames: () => [],
    remoteAddress: "127.0.0.1",
    body: async () => new Uint8Array(0),
  });
  if (!decision.accept) throw new Error("refused");
  const peer = new FakePeer(decision.state);
  peers.push(peer);
  hub.open(peer);
  await settle();
  return { hub, peer };
}

/** Admission that admits at once, as when the client IP's request is paid from the local share. */
const admitted = { admission: { read: () => undefined } };

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));
const eventIds = (peer: FakePeer) => peer.frames.filter((f) => f.type === "event").map((f) => f.id);

describe("resume from the log over WebSocket", () => {
  test("events older than the history are read from the log, then live ones join with no gap and no duplicate", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 10; n++) world.publish(n, n % 2 === 0 ? "x" : "other");
    const { hub, peer } = await connectedPeer(world);
    world.log.gated = true;
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(0) }));
    expect(world.log.reads).toMatchObject([{ from: 1n, until: 10n, tenant: "acme", channel: "x" }]);
    // Published while the log is read: held back, then sent after the replay.
    world.publish(10);
    world.publish(11, "other");
    world.publish(12);
    expect(eventIds(peer)).toEqual([]);
    world.log.release();
    await settle();
    world.publish(13);
    expect(peer.frames.filter((f) => f.type !== "event").map((f) => f.type)).toEqual([
      "connected",
      "subscribed",
    ]);
    expect(eventIds(peer)).toEqual([id(2), id(4), id(6), id(8), id(10), id(12), id(13)]);
  });

  test("a since the log no longer holds is subscribed, then history_gone (the SPEC's order), and the channel is still subscribed", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 10; n++) world.publish(n);
    world.log.earliest = 5n;
    const { hub, peer } = await connectedPeer(world);
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(2) }));
    await settle();
    expect(peer.frames.slice(1)).toMatchObject([
      { type: "subscribed", channel: "x", lastEventId: id(9) },
      { type: "error", code: "history_gone", channel: "x", message: "since is older than the kept history" },
    ]);
  });

  test("past the replay byte bound: the events so far, then try_again; resuming from the last one misses nothing", async () => {
    const world = resumeWorld({ ...LIMITS, maxBytes: 20 });
    for (let n = 0; n < 10; n++) world.publish(n);
    const { hub, peer } = await connectedPeer(world);
    let since = id(0);
    const received: unknown[] = [];
    for (let round = 0; round < 10; round++) {
      peer.frames.length = 0;
      hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since }));
      await settle();
      received.push(...eventIds(peer));
      const last = peer.frames.at(-1) as Record<string, unknown>;
      if (last.type !== "error") break;
      expect(last).toMatchObject({ code: "try_again", channel: "x", retryAfterMs: 0 });
      since = received.at(-1) as string;
    }
    // 7..9 are in memory (3 per channel); 1..6 came from the log, two by two.
    expect(received).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map(id));
  });

  test("past the concurrent replays of a tenant: try_again with a delay, never a silent gap", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 10; n++) world.publish(n, n % 2 === 0 ? "x" : "y");
    const { hub, peer } = await connectedPeer(world);
    world.log.gated = true;
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(0) }));
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "y", since: id(1) }));
    expect(peer.frames.at(-1)).toMatchObject({
      type: "error",
      code: "try_again",
      channel: "y",
      retryAfterMs: 1000,
    });
    world.log.release();
    await settle();
    expect(eventIds(peer)).toEqual([id(2), id(4), id(6), id(8)]);
  });

  test("clients resuming a channel from the same event at once share one read of the log (no try_again)", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 6; n++) world.publish(n, "x");
    const first = await connectedPeer(world);
    const second = await connectedPeer(world);
    world.log.gated = true;
    first.hub.message(first.peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(0) }));
    second.hub.message(second.peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(0) }));
    expect(world.log.reads).toHaveLength(1);
    world.log.release();
    await settle();
    for (const { peer } of [first, second]) {
      expect(peer.frames.some((frame) => frame.type === "error")).toBe(false);
      expect(eventIds(peer)).toEqual([id(1), id(2), id(3), id(4), id(5)]);
    }
  });

  test("a read of the log that fails or times out is try_again, and the channel is not subscribed", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 10; n++) world.publish(n);
    world.log.readLog = async () => {
      throw new Error("log read timed out");
    };
    const { hub, peer } = await connectedPeer(world);
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(0) }));
    await settle();
    expect(peer.frames.slice(1)).toMatchObject([
      { type: "error", code: "try_again", channel: "x", retryAfterMs: 1000 },
    ]);
    world.publish(10);
    expect(eventIds(peer)).toEqual([]);
  });

  test("live events held back past the replay byte bound end the replay with try_again", async () => {
    const world = resumeWorld({ ...LIMITS, maxBytes: 200 });
    for (let n = 0; n < 10; n++) world.publish(n);
    const { hub, peer } = await connectedPeer(world);
    world.log.gated = true;
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(0) }));
    for (let n = 10; n < 20; n++) world.publish(n);
    expect(peer.frames.at(-1)).toMatchObject({ type: "error", code: "try_again", channel: "x" });
    world.log.release();
    await settle();
    world.publish(20);
    expect(eventIds(peer)).toEqual([]);
  });

  test("an empty channel's subscribed carries the partition's position, and resuming from it misses nothing", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 10; n++) world.publish(n, "busy");
    const { hub, peer } = await connectedPeer(world);
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "quiet" }));
    const subscribed = peer.frames.at(-1) as Record<string, unknown>;
    expect(subscribed).toMatchObject({ type: "subscribed", channel: "quiet", lastEventId: id(9) });
    hub.message(peer, JSON.stringify({ type: "unsubscribe", channel: "quiet" }));
    world.publish(10, "quiet");
    for (let n = 11; n < 20; n++) world.publish(n, "busy");
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "quiet", since: subscribed.lastEventId }));
    await settle();
    expect(eventIds(peer)).toEqual([id(10)]);
  });
});

describe("a since this instance's live reader has not reached yet (an id from an instance further on)", () => {
  test("the answer waits for the reader: the events the client holds are not sent again, nor a position older than its own", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 3; n++) world.publish(n);
    const { hub, peer } = await connectedPeer(world);
    // Another instance delivered 3..5 to the client; this one's reader still stands at 3.
    for (let n = 3; n < 6; n++) world.writeAhead(n);
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(5) }));
    await settle();
    expect(peer.frames.slice(1)).toEqual([]);
    world.catchUp();
    world.publish(6);
    await Bun.sleep(40);
    world.publish(7);
    expect(peer.frames.slice(1).filter((frame) => frame.type !== "event")).toEqual([
      { type: "subscribed", channel: "x", lastEventId: id(6) },
    ]);
    expect(eventIds(peer)).toEqual([id(6), id(7)]);
    expect(world.log.reads).toEqual([]);
  });

  test("a reader that does not get there within the replay timeout: try_again, and the channel is not subscribed", async () => {
    const world = resumeWorld({ ...LIMITS, timeoutMs: 30 });
    world.publish(0);
    const { hub, peer } = await connectedPeer(world);
    world.writeAhead(1);
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(1) }));
    await Bun.sleep(80);
    expect(peer.frames.slice(1)).toMatchObject([
      { type: "error", code: "try_again", channel: "x", retryAfterMs: 1000 },
    ]);
    world.catchUp();
    world.publish(2);
    expect(eventIds(peer)).toEqual([]);
  });
});

describe("a since past the end of the log (no event has that id)", () => {
  // Found from outside: such a since held a replay slot for REPLAY_TIMEOUT_MS, then answered
  // try_again, and again at every retry: a client with a bad id looped for ever.
  test("is history_gone at once, after subscribed, and takes no replay slot", async () => {
    const world = resumeWorld({ ...LIMITS, timeoutMs: 5000 });
    world.publish(0);
    const { hub, peer } = await connectedPeer(world);
    hub.message(peer, JSON.stringify({ type: "subscribe", channel: "x", since: id(99) }));
    // Long before the 5 s replay timeout.
    await Bun.sleep(40);
    expect(peer.frames.slice(1)).toMatchObject([
      { type: "subscribed", channel: "x", lastEventId: id(0) },
      { type: "error", code: "history_gone", channel: "x" },
    ]);
    expect(world.resume.inProgress).toBe(0);
    world.publish(1);
    expect(eventIds(peer)).toEqual([id(1)]);
  });
});

describe("a since past the end of the in-process bus (the embedded default)", () => {
  // Found from outside: memory answered "no events after it" and the client's place was kept past every
  // event to come, so a subscriber, an event stream or a poller of the delta route stayed blind.
  test("is gone at once, as Kafka's high watermark makes it; the last id given is served", async () => {
    const history = threeEventHistory();
    const bus = new LocalFanoutBus();
    await bus.start(new Fanout(history, createMetrics("test", "0")));
    const resume = new Resume(history, bus, LIMITS);
    for (let n = 0; n < 3; n++)
      await bus.publish([{ tenant: "acme", channel: "x", dataJson: `${n}`, ts: 0 }]);
    await Bun.sleep(0);
    const head = bus.head("acme/x");
    if (!head) throw new Error("the bus has not started");
    const at = (offset: bigint) => formatEventId({ epoch: head.epoch, partition: 0, offset });
    expect(resume.after("acme", "x", at(head.next - 1n), 100)).toEqual({
      kind: "events",
      events: [],
      complete: true,
      next: null,
    });
    for (const offset of [head.next, head.next + 50n])
      expect(resume.after("acme", "x", at(offset), 100)).toEqual({
        kind: "gone",
        message: "since is not a position of this channel's log (past the end of the fan-out topic)",
      });
  });
});

describe("one position for several channels (an event stream's opening id)", () => {
  test("channels of one partition share its live position; resuming from it gets each one's later events", () => {
    const world = resumeWorld();
    for (let n = 0; n < 5; n++) world.publish(n, "busy");
    expect(world.resume.sharedPosition("acme", ["a", "b"])).toBe(id(4));
    world.publish(5, "a");
    world.publish(6, "b");
    const after = (channel: string) => world.resume.after("acme", channel, id(4), 100);
    expect(after("a")).toMatchObject({ kind: "events", events: [{ id: id(5) }] });
    expect(after("b")).toMatchObject({ kind: "events", events: [{ id: id(6) }] });
  });

  test("none when the channels span partitions, or before the partition's position is known", () => {
    const world = resumeWorld();
    const partitionOf = (key: string) => (key.endsWith("/b") ? 1 : 0);
    const log = {
      head: (key: string) => ({ epoch: "e1", partition: partitionOf(key), next: 3n }),
    };
    const spread = new Resume(world.history, log, LIMITS);
    expect(spread.sharedPosition("acme", ["a"])).toBe(id(2));
    expect(spread.sharedPosition("acme", ["a", "b"])).toBeNull();
    const unknown = new Resume(world.history, { head: () => undefined }, LIMITS);
    expect(unknown.sharedPosition("acme", ["a"])).toBeNull();
  });
});

describe("history paging (GET /v1/channels/{c}/events)", () => {
  async function get(world: ReturnType<typeof resumeWorld>, query: Record<string, string>) {
    const route = deltaRoute({ ...admitted, authenticate: async () => principal, resume: world.resume });
    const request: HttpRequest = {
      method: "GET",
      path: "/v1/channels/x/events",
      query: new URLSearchParams(query),
      header: () => undefined,
      headerNames: () => [],
      remoteAddress: "127.0.0.1",
      body: async () => new Uint8Array(0),
    };
    const reply = await route.handler(request, { channel: "x" });
    return JSON.parse(String(reply.body)) as {
      events: Array<{ id: string }>;
      next: string | null;
      lastEventId: string;
    };
  }

  test("pages through memory and the log with next, until next is null", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 30; n++) world.publish(n, n % 3 === 0 ? "x" : "other");
    const seen: string[] = [];
    let since = id(0);
    let pages = 0;
    for (;;) {
      const page = await get(world, { since, limit: "3" });
      pages++;
      expect(page.lastEventId).toBe(id(27));
      seen.push(...page.events.map((event) => event.id));
      if (page.next === null) break;
      since = page.next;
    }
    expect(seen).toEqual([3, 6, 9, 12, 15, 18, 21, 24, 27].map(id));
    expect(pages).toBeLessThanOrEqual(4);
  });

  test("limit defaults to 100 and is at most 1000 (a larger one asks for 1000); anything but a positive integer is a 400", async () => {
    const world = resumeWorld();
    const route = deltaRoute({ ...admitted, authenticate: async () => principal, resume: world.resume });
    for (const limit of ["0", "000", "-1", "abc", "1.5", "", "1e3", " 5"]) {
      const request: HttpRequest = {
        method: "GET",
        path: "/v1/channels/x/events",
        query: new URLSearchParams({ limit }),
        header: () => undefined,
        headerNames: () => [],
        remoteAddress: "127.0.0.1",
        body: async () => new Uint8Array(0),
      };
      await expect(route.handler(request, { channel: "x" })).rejects.toMatchObject({ code: "bad_request" });
    }
    expect((await get(world, { limit: "5000" })).next).toBeNull();
    expect(
      ["1", "0001", "00005", "999", "1000", "01000", "1001", "5000", "99999999999999999999"].map(pageLimit),
    ).toEqual([1, 1, 5, 999, 1000, 1000, 1000, 1000, 1000]);
    expect(pageLimit(null)).toBe(100);
  });

  test("a client over its IP request budget gets the 429 before its token is looked at", async () => {
    const world = resumeWorld();
    const refusal = new GatewayError("rate_limited", "rate limit exceeded", { "retry-after": "1" });
    let verified = 0;
    const route = deltaRoute({
      admission: { read: () => Promise.reject(refusal) },
      authenticate: async () => {
        verified++;
        return principal;
      },
      resume: world.resume,
    });
    const request: HttpRequest = {
      method: "GET",
      path: "/v1/channels/x/events",
      query: new URLSearchParams(),
      header: () => undefined,
      headerNames: () => [],
      remoteAddress: "127.0.0.1",
      body: async () => new Uint8Array(0),
    };
    await expect(route.handler(request, { channel: "x" })).rejects.toBe(refusal);
    expect(verified).toBe(0);
  });

  test("a since that is not an event id is a 400 bad_request; a well-formed one of another epoch or partition stays 410, saying so", async () => {
    const world = resumeWorld();
    for (let n = 0; n < 5; n++) world.publish(n, "x");
    for (const since of ["bogus", "null", `${id(1)}x`]) {
      await expect(get(world, { since })).rejects.toMatchObject({ code: "bad_request", status: 400 });
    }
    // An empty since is no since (EventSource's lastEventId before any event), as on GET /v1/sse.
    expect(await get(world, { since: "" })).toEqual(await get(world, {}));
    for (const since of ["otherepoch-0-0000000000000001", id(1).replace("-0-", "-7-")]) {
      await expect(get(world, { since })).rejects.toMatchObject({
        code: "history_gone",
        status: 410,
        message:
          "since is not a position of this channel's log (another epoch or partition of the fan-out topic)",
      });
    }
    expect((await get(world, { since: id(1) })).events.map((event) => event.id)).toEqual([2, 3, 4].map(id));
  });

  test("over the replay bounds the route answers 503 try_again with Retry-After", async () => {
    const world = resumeWorld({ ...LIMITS, maxConcurrent: 0 });
    for (let n = 0; n < 10; n++) world.publish(n);
    await expect(get(world, { since: id(0) })).rejects.toMatchObject({
      code: "try_again",
      status: 503,
      headers: { "retry-after": "1" },
    });
  });
});

describe("a channel's latest events without since, on an instance that did not keep them (scanned back in the log)", () => {
  /** With Kafka: memory keeps only watched channels, 3 events each; `log` holds `length` offsets, `channel` x at `at`. */
  function scanWorld(length: number, at: number[], limits = LIMITS) {
    const history = watchedHistory(3);
    const log = new FakeLog();
    const wanted = new Set(at);
    for (let offset = 0; offset < length; offset++) {
      // Between the channel's events: other channels, and another tenant's channel of the same name.
      log.log.push(
        message(
          offset,
          wanted.has(offset) ? "x" : "other",
          wanted.has(offset) || offset % 2 ? "acme" : "globex",
        ),
      );
      if (!wanted.has(offset) && offset % 2 === 0) (log.log.at(-1) as { channel: string }).channel = "x";
    }
    log.next = BigInt(length);
    history.setOrigin("e1", 0, 0n);
    const offsetsRead: Record<string, number> = {};
    const resume = new Resume(history, log, limits, (read, offsets) => {
      offsetsRead[read] = (offsetsRead[read] ?? 0) + offsets;
    });
    return { history, log, resume, offsetsRead };
  }

  /** An instance that never scanned the channel: what it answers is what a scan of the log gives. */
  function freshResume(log: FakeLog, limits = LIMITS): Resume {
    const history = watchedHistory(3);
    history.setOrigin("e1", 0, 0n);
    return new Resume(history, log, limits);
  }

  async function latest(resume: Resume, limit = 100): Promise<ResumeOutcome> {
    const outcome = resume.latest("acme", "x", limit);
    return isPending(outcome) ? await outcome.outcome : outcome;
  }

  test("reads back in growing windows from the live position until the kept number is found, oldest first", async () => {
    const world = scanWorld(5000, [10, 20, 30, 4990]);
    expect(await latest(world.resume)).toEqual({
      kind: "events",
      events: [20, 30, 4990].map((offset) => expect.objectContaining({ id: id(offset) })),
      complete: true,
      next: null,
    });
    // Windows of 1024, 2048, then 4096 offsets back from the end, reaching offset 0; the last one holds
    // more than the 2 still wanted: its one read keeps the newest.
    expect(world.log.reads.map((read) => [read.from, read.until, read.keepNewest])).toEqual([
      [3976n, 5000n, true],
      [1928n, 3976n, true],
      [0n, 1928n, true],
    ]);
  });

  test("a window holding many more of the channel's events than still wanted is read once, not once per wanted event", async () => {
    // The last 1024 offsets hold 2 of x's events; the window before them, 2000 of them (every offset but a few).
    const dense = Array.from({ length: 2000 }, (_, i) => 100 + i);
    const world = scanWorld(3200, [...dense, 3000, 3100]);
    expect(await latest(world.resume)).toMatchObject({
      kind: "events",
      events: [{ id: id(2099) }, { id: id(3000) }, { id: id(3100) }],
      complete: true,
    });
    expect(world.log.reads).toHaveLength(2);
  });

  test("reads back at most scanMaxOffsets offsets: a rare channel on a long partition costs that, not the timeout", async () => {
    const world = scanWorld(5000, [10, 4990], { ...LIMITS, scanMaxOffsets: 2000 });
    expect(await latest(world.resume)).toMatchObject({
      kind: "events",
      events: [{ id: id(4990) }],
      truncated: true,
    });
    expect(world.log.reads.map((read) => [read.from, read.until])).toEqual([
      [3976n, 5000n],
      [3000n, 3976n],
    ]);
  });

  test("the delta route marks an answer a bound cut short truncated, and only that one", async () => {
    const answer = async (resume: Resume) => {
      const route = deltaRoute({ ...admitted, authenticate: async () => principal, resume });
      const request: HttpRequest = {
        method: "GET",
        path: "/v1/channels/x/events",
        query: new URLSearchParams(),
        header: () => undefined,
        headerNames: () => [],
        remoteAddress: "127.0.0.1",
        body: async () => new Uint8Array(0),
      };
      return JSON.parse(String((await route.handler(request, { channel: "x" })).body));
    };
    const cut = await answer(scanWorld(5000, [10, 4990], { ...LIMITS, scanMaxOffsets: 2000 }).resume);
    expect(cut).toMatchObject({ events: [{ id: id(4990) }], next: null, truncated: true });
    const whole = await answer(scanWorld(5000, [10, 4990]).resume);
    expect(whole).toMatchObject({ events: [{ id: id(10) }, { id: id(4990) }], next: null });
    expect(whole).not.toHaveProperty("truncated");
  });

  test("stops at the partition's first offset the log still holds, with what it found", async () => {
    const world = scanWorld(3000, [5, 2500]);
    world.log.earliest = 100n;
    const outcome = await latest(world.resume);
    expect(outcome).toMatchObject({ kind: "events", events: [{ id: id(2500) }], complete: true, next: null });
    // Every event the log still holds was read: nothing older to say.
    expect(outcome).not.toHaveProperty("truncated");
    expect(world.log.reads.at(-1)).toMatchObject({ from: 0n, fromEarliest: true });
  });

  test("pages by limit with next; since=next gets the rest", async () => {
    const world = scanWorld(100, [10, 20, 30, 40]);
    const first = await latest(world.resume, 2);
    expect(first).toMatchObject({
      kind: "events",
      events: [{ id: id(20) }, { id: id(30) }],
      complete: false,
      next: id(30),
    });
    const rest = world.resume.after("acme", "x", id(30), 2);
    expect(isPending(rest) ? await rest.outcome : rest).toMatchObject({
      events: [{ id: id(40) }],
      complete: true,
    });
  });

  test("the byte bound and the deadline end the scan with the newest events found, not try_again", async () => {
    // Each payload is {"n":<offset>}: 10 bytes at 4 digits; 25 bytes keep the newest two.
    const bytes = scanWorld(5000, [1000, 2000, 4000, 4500], { ...LIMITS, maxBytes: 25 });
    // Both cut the scan short of the 3 events kept per channel: older ones may exist, and the answer says so.
    expect(await latest(bytes.resume)).toMatchObject({
      kind: "events",
      events: [{ id: id(4000) }, { id: id(4500) }],
      truncated: true,
    });
    const slow = scanWorld(5000, [1000, 4500], { ...LIMITS, timeoutMs: 300 });
    const read = slow.log.readLog.bind(slow.log);
    // The first read answers at once, the second only past the scan's deadline (a slow broker): the scan
    // ends there. (Reads of 40 ms each against 60 ms let a paused test process end it after the first.)
    slow.log.readLog = async (request) => {
      if (slow.log.reads.length > 0)
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, request.deadline - Date.now()) + 10));
      return read(request);
    };
    expect(await latest(slow.resume)).toMatchObject({
      kind: "events",
      events: [{ id: id(4500) }],
      complete: true,
      truncated: true,
    });
    expect(slow.log.reads).toHaveLength(2);
  });

  test("a watched channel whose memory holds its latest events is answered from memory, without reading the log", async () => {
    const world = scanWorld(10, [1, 2, 3, 4, 5]);
    world.history.watch("t/acme/x", 0, 0n);
    for (const offset of [1, 2, 3, 4]) {
      world.history.append("t/acme/x", {
        id: id(offset),
        position: { epoch: "e1", partition: 0, offset: BigInt(offset) },
        frame: "{}",
      });
    }
    expect(await latest(world.resume)).toMatchObject({
      events: [{ id: id(2) }, { id: id(3) }, { id: id(4) }],
    });
    expect(world.log.reads).toHaveLength(0);
  });

  test("requests for a channel's latest events while a scan runs join it, whatever their limit and the partition's progress", async () => {
    const world = scanWorld(100, [10, 20, 30]);
    world.log.gated = true;
    const first = world.resume.latest("acme", "x", 1);
    // Other channels' events moved the live reader on meanwhile (a busy partition).
    world.log.next = 105n;
    const second = world.resume.latest("acme", "x", 100);
    world.log.release();
    expect(isPending(first) && (await first.outcome)).toMatchObject({
      events: [{ id: id(10) }],
      complete: false,
      next: id(10),
    });
    expect(isPending(second) && (await second.outcome)).toMatchObject({
      events: [{ id: id(10) }, { id: id(20) }, { id: id(30) }],
      complete: true,
    });
    expect(world.log.reads).toHaveLength(1);
  });

  // Found from outside: with Kafka, every GET of a quiet channel's latest events on a busy partition
  // read the partition back again, up to REPLAY_SCAN_MAX_OFFSETS offsets (about 0.6 s of gateway CPU
  // each on 250,000 offsets), however little was written since the last one.
  test("a second request reads only the offsets written since the first, and answers as a fresh scan would", async () => {
    const world = scanWorld(5000, [10, 20]);
    await latest(world.resume);
    const scanned = world.log.reads.length;
    for (let offset = 5000; offset < 6000; offset++) world.log.log.push(message(offset, "other"));
    world.log.log.push(message(6000));
    world.log.next = 6001n;
    const second = await latest(world.resume);
    expect(world.log.reads.slice(scanned).map((read) => [read.from, read.until])).toEqual([[5000n, 6001n]]);
    expect(second).toEqual(await latest(freshResume(world.log)));
    expect(second).toMatchObject({ events: [{ id: id(10) }, { id: id(20) }, { id: id(6000) }] });
    // Nothing written since: the log is not read at all (each read opens a consumer of its own), and
    // events retention deleted meanwhile are left out, the live reader's last fetch telling where the log starts.
    const reads = world.log.reads.length;
    expect(await latest(world.resume)).toEqual(second);
    world.log.earliest = 11n;
    expect(await latest(world.resume)).toMatchObject({ events: [{ id: id(20) }, { id: id(6000) }] });
    expect(world.log.reads).toHaveLength(reads);
  });

  test("reads on rather than back when the last scan found fewer events than wanted, and back when more were written than a full answer spanned", async () => {
    // A short partition holding 2 of x's events: the scan read it all.
    const sparse = scanWorld(100, [10, 20]);
    await latest(sparse.resume);
    const scanned = sparse.log.reads.length;
    for (let offset = 100; offset < 5100; offset++) sparse.log.log.push(message(offset, "other"));
    sparse.log.next = 5100n;
    const readOn = await latest(sparse.resume);
    expect(sparse.log.reads.slice(scanned).map((read) => [read.from, read.until])).toEqual([[100n, 5100n]]);
    expect(readOn).toEqual(await latest(freshResume(sparse.log)));

    // 3 events (all that are wanted) in the last 50 offsets: 5000 offsets later a scan back is the cheaper.
    const dense = scanWorld(100, [60, 70, 80]);
    await latest(dense.resume);
    for (let offset = 100; offset < 5100; offset++)
      dense.log.log.push(message(offset, offset % 10 ? "other" : "x"));
    dense.log.next = 5100n;
    dense.log.reads = [];
    expect(await latest(dense.resume)).toEqual(await latest(freshResume(dense.log)));
    expect(dense.log.reads[0]).toMatchObject({ from: 4076n, until: 5100n });
  });

  // Found by review: nothing told an operator how much of the log scans and reads on cost.
  test("the offsets each kind of read covers are counted", async () => {
    const world = scanWorld(5000, [10, 20]);
    await latest(world.resume);
    expect(world.offsetsRead).toEqual({ scan: 5000 });
    for (let offset = 5000; offset < 5100; offset++) world.log.log.push(message(offset, "other"));
    world.log.next = 5100n;
    await latest(world.resume);
    expect(world.offsetsRead).toEqual({ scan: 5000, read_on: 100 });
    const outcome = world.resume.after("acme", "x", id(5), 10);
    if (isPending(outcome)) await outcome.outcome;
    expect(world.offsetsRead.since).toBe(5094);
  });

  test("what the cache answers is what a fresh scan answers, after any writes, retention and bounds", async () => {
    type Step =
      | { kind: "write"; others: number; mine: number; pad: number }
      | { kind: "retain"; upTo: number }
      | { kind: "get"; limit: number };
    const step = fc.oneof(
      fc.record({
        kind: fc.constant("write" as const),
        others: fc.nat(3000),
        mine: fc.nat(4),
        pad: fc.nat(30),
      }),
      fc.record({ kind: fc.constant("retain" as const), upTo: fc.nat(4000) }),
      fc.record({ kind: fc.constant("get" as const), limit: fc.integer({ min: 1, max: 4 }) }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { maxLength: 12 }),
        fc.integer({ min: 1024, max: 6000 }),
        fc.integer({ min: 9, max: 120 }),
        async (steps, scanMaxOffsets, maxBytes) => {
          const limits = { ...LIMITS, scanMaxOffsets, maxBytes };
          const world = scanWorld(0, [], limits);
          for (const { kind, ...args } of [...steps, { kind: "get", limit: 4 }] as Step[]) {
            if (kind === "write") {
              const { others, mine, pad } = args as { others: number; mine: number; pad: number };
              let offset = Number(world.log.next);
              // The channel's events spread among the others'.
              for (let i = 0; i < others + mine; i++, offset++) {
                const ours =
                  i % Math.max(1, Math.floor((others + mine) / Math.max(1, mine))) === 0 && mine > 0;
                const written = message(offset, ours ? "x" : "other");
                // Payloads of several sizes, so the byte bound cuts at various places.
                written.dataJson = `{"n":${offset},"p":"${"x".repeat((pad * offset) % 31)}"}`;
                world.log.log.push(written);
              }
              world.log.next = BigInt(offset);
            } else if (kind === "retain") {
              const upTo = BigInt((args as { upTo: number }).upTo);
              if (upTo > world.log.earliest && upTo <= world.log.next) world.log.earliest = upTo;
            } else {
              const { limit } = args as { limit: number };
              const cached = world.resume.latest("acme", "x", limit);
              const fresh = freshResume(world.log, limits).latest("acme", "x", limit);
              expect(isPending(cached) ? await cached.outcome : cached).toEqual(
                isPending(fresh) ? await fresh.outcome : fresh,
              );
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test("past the concurrent replays of the tenant: try_again, never an empty answer", async () => {
    const world = scanWorld(10, [1]);
    world.log.gated = true;
    const held = world.resume.latest("acme", "x", 100);
    expect(world.resume.latest("acme", "y", 100)).toMatchObject({ kind: "try_again" });
    world.log.release();
    expect(isPending(held) && (await held.outcome)).toMatchObject({ events: [{ id: id(1) }] });
  });
});
