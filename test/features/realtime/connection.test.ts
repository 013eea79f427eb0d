import { describe, expect, test } from "bun:test";
import { broadcastTopic, channelTopic } from "../../../src/domain/channel.ts";
import { GatewayError } from "../../../src/domain/errors.ts";
import type { Principal } from "../../../src/domain/principal.ts";
import {
  CLOSE,
  Connection,
  type ConnectionHost,
  MAX_PUBLISHES_IN_FLIGHT,
} from "../../../src/features/realtime/connection.ts";
import { ChannelHistory } from "../../../src/features/realtime/history.ts";
import { Resume, type ResumeOutcome } from "../../../src/features/realtime/resume.ts";
import { LocalFanoutBus } from "../../../src/infra/local/fanout-bus.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import type { Publish, PublishRequest } from "../../../src/ports/publish.ts";
import type { SendResult, WsPeer } from "../../../src/ports/transport.ts";

/**
 * One connection's token life: the first token, in-band refresh, the expiry
 * warning and the close at exp, driven through `receive` and `checkExpiry`
 * with tokens that stand for principals or refusals.
 */

const NOW = Date.now();

function principal(overrides: Partial<Principal> = {}): Principal {
  return {
    subject: "alice",
    tenant: "acme",
    scopes: new Set(["subscribe"]),
    channels: undefined,
    expiresAt: NOW + 10 * 60_000,
    ...overrides,
  };
}

const keysUnavailable = () =>
  new GatewayError("unavailable", "token signing keys unavailable", { "retry-after": "2" });

class FakePeer implements WsPeer<Connection> {
  readonly frames: Array<Record<string, unknown>> = [];
  readonly topics = new Set<string>();
  closedWith: number | undefined;
  closedBecause: string | undefined;
  constructor(readonly state: Connection) {}
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
  close(code: number, reason: string): void {
    this.closedWith ??= code;
    this.closedBecause ??= reason;
  }
  /** Frames since the last call. */
  take(): Array<Record<string, unknown>> {
    return this.frames.splice(0);
  }
}

/** A connection whose host verifies tokens by name: `tokens[name]` is the principal, or the refusal. */
function connection(
  tokens: Record<string, Principal | GatewayError | "never">,
  {
    tokenExpiryWarningMs = 60_000,
    authTimeoutMs = 60_000,
    resume,
    publish = async () => undefined,
    tap = () => () => {},
    admit = async () => {},
    maxMessagesPerSec = 1000,
    watchPresence = () => true,
  }: {
    tokenExpiryWarningMs?: number;
    authTimeoutMs?: number;
    resume?: Resume;
    publish?: Publish;
    tap?: ConnectionHost["tap"];
    admit?: ConnectionHost["admit"];
    maxMessagesPerSec?: number;
    watchPresence?: ConnectionHost["watchPresence"];
  } = {},
) {
  const history = new ChannelHistory({
    eventsPerChannel: 10,
    bytesPerChannel: 10_000,
    channels: 10,
    maxBytes: 1 << 20,
    tenantMaxBytes: 1 << 20,
  });
  const host: ConnectionHost = {
    limits: { authTimeoutMs, maxSubscriptions: 10, maxMessagesPerSec, tokenExpiryWarningMs },
    history,
    resume:
      resume ??
      new Resume(history, new LocalFanoutBus(), {
        maxConcurrent: 1,
        maxConcurrentPerTenant: 1,
        maxBytes: 1 << 20,
        timeoutMs: 1000,
        scanMaxOffsets: 1 << 20,
        latestCacheBytes: 1 << 20,
      }),
    tap,
    metrics: createMetrics("test", "0"),
    admit,
    verify: async (token) => {
      const outcome = tokens[token];
      if (outcome === undefined) throw new GatewayError("unauthorized", "bad token signature");
      if (outcome === "never") return new Promise<never>(() => {});
      if (outcome instanceof GatewayError) throw outcome;
      if (!outcome.scopes.has("subscribe"))
        throw new GatewayError("forbidden", "token lacks scope subscribe");
      return outcome;
    },
    claimSlots: () => undefined,
    countTopic: () => {},
    channelRoom: () => undefined,
    presence: () => {},
    watchPresence,
    publish,
  };
  const subject = new Connection("127.0.0.1", undefined, host);
  const peer = new FakePeer(subject);
  subject.attach(peer);
  subject.start();
  return { connection: subject, peer, metrics: host.metrics };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

async function send(peer: FakePeer, frame: Record<string, unknown>) {
  peer.state.receive(JSON.stringify(frame));
  await settle();
  return peer.take();
}

async function authenticated(
  tokens: Record<string, Principal | GatewayError>,
  warningMs?: number,
  watchPresence?: ConnectionHost["watchPresence"],
) {
  const opened = connection(tokens, {
    tokenExpiryWarningMs: warningMs,
    ...(watchPresence ? { watchPresence } : {}),
  });
  const frames = await send(opened.peer, { type: "auth", token: "first" });
  expect(frames[0]).toMatchObject({ type: "connected" });
  return { ...opened, frames };
}

describe("the first token", () => {
  test("keys that cannot be fetched: an unavailable error with retryAfterMs, and close 1013, not 4001", async () => {
    const { peer } = connection({ first: keysUnavailable() });
    expect(await send(peer, { type: "auth", token: "first" })).toEqual([
      { type: "error", code: "unavailable", message: "token signing keys unavailable", retryAfterMs: 2000 },
    ]);
    expect(peer.closedWith).toBe(CLOSE.tryAgainLater);
  });

  test("a token still being verified at the auth deadline (a slow JWKS endpoint): unavailable and 1013", async () => {
    const { peer } = connection({ first: "never" }, { authTimeoutMs: 50 });
    peer.state.receive(JSON.stringify({ type: "auth", token: "first" }));
    const deadline = Date.now() + 5000;
    while (peer.closedWith === undefined && Date.now() < deadline) await settle();
    expect(peer.take()).toEqual([
      {
        type: "error",
        code: "unavailable",
        message: "token could not be verified in time",
        retryAfterMs: 1000,
      },
    ]);
    expect(peer.closedWith).toBe(CLOSE.tryAgainLater);

    const silent = connection({}, { authTimeoutMs: 50 });
    while (silent.peer.closedWith === undefined && Date.now() < deadline) await settle();
    expect(silent.peer.take()[0]).toMatchObject({ code: "unauthorized" });
    expect(silent.peer.closedWith).toBe(CLOSE.unauthorized);
  });

  test("a bad token, or one without scope subscribe, closes 4001 as before", async () => {
    const refusals: Array<Record<string, Principal>> = [
      {},
      { first: principal({ scopes: new Set(["ingest"]) }) },
    ];
    for (const tokens of refusals) {
      const { peer } = connection(tokens);
      const [frame] = await send(peer, { type: "auth", token: "first" });
      expect(frame?.type).toBe("error");
      expect(peer.closedWith).toBe(CLOSE.unauthorized);
    }
  });
});

test("WS_MAX_MESSAGES_PER_SEC: the window rolls over after a second even when the wall clock was stepped back", async () => {
  const { peer } = connection({ first: principal() }, { maxMessagesPerSec: 2 });
  expect((await send(peer, { type: "auth", token: "first" }))[0]).toMatchObject({ type: "connected" });
  expect(await send(peer, { type: "ping" })).toEqual([{ type: "pong" }]);
  expect(await send(peer, { type: "ping" })).toEqual([
    { type: "error", code: "rate_limited", message: "too many messages; slow down" },
  ]);
  // An NTP step back by an hour: the budget's window still ends a second after it opened.
  const wallClock = Date.now;
  Date.now = () => wallClock() - 3_600_000;
  try {
    await Bun.sleep(1050);
    expect(await send(peer, { type: "ping" })).toEqual([{ type: "pong" }]);
  } finally {
    Date.now = wallClock;
  }
});

test("a refused connect from the IP and a full tenant close alike: a rate_limited frame, then 1013 with the code as reason", async () => {
  const { peer } = connection(
    {},
    {
      admit: async () =>
        Promise.reject(new GatewayError("rate_limited", "rate limit exceeded", { "retry-after": "1" })),
    },
  );
  await settle();
  expect(peer.take()).toEqual([
    {
      type: "error",
      code: "rate_limited",
      message: "too many connection attempts from this address",
      retryAfterMs: 1000,
    },
  ]);
  expect([peer.closedWith, peer.closedBecause]).toEqual([CLOSE.tryAgainLater, "rate_limited"]);
});

describe("in-band refresh", () => {
  test("a later token of the same tenant and subject replaces the current one; subscriptions stay", async () => {
    const later = principal({ expiresAt: NOW + 60 * 60_000 });
    const { connection: subject, peer } = await authenticated({ first: principal(), later });
    await send(peer, { type: "subscribe", channel: "orders" });
    expect(await send(peer, { type: "auth", token: "later" })).toEqual([
      { type: "refreshed", expiresAt: later.expiresAt },
    ]);
    expect(subject.principal).toBe(later);
    expect(peer.closedWith).toBeUndefined();
    expect([...subject.channels]).toEqual(["orders"]);
    expect(peer.topics).toEqual(new Set([broadcastTopic("acme"), channelTopic("acme", "orders")]));
  });

  test("channels the new token no longer allows are dropped, before `refreshed`", async () => {
    const narrower = principal({ expiresAt: NOW + 60 * 60_000, channels: ["orders.*"] });
    const { connection: subject, peer } = await authenticated({ first: principal(), narrower });
    for (const channel of ["orders.eu", "billing", "orders.us", "audit"])
      await send(peer, { type: "subscribe", channel });
    expect(await send(peer, { type: "auth", token: "narrower" })).toEqual([
      { type: "unsubscribed", channel: "billing", reason: "forbidden" },
      { type: "unsubscribed", channel: "audit", reason: "forbidden" },
      { type: "refreshed", expiresAt: narrower.expiresAt },
    ]);
    expect([...subject.channels]).toEqual(["orders.eu", "orders.us"]);
    expect(peer.topics).toEqual(
      new Set(
        ["orders.eu", "orders.us"]
          .map((channel) => channelTopic("acme", channel))
          .concat(broadcastTopic("acme")),
      ),
    );
  });

  test("a channel whose replay is still read from the log is dropped too, and never answered after", async () => {
    let finishRead: (outcome: ResumeOutcome) => void = () => {};
    const outcome = new Promise<ResumeOutcome>((resolve) => {
      finishRead = resolve;
    });
    const readingTheLog = {
      limits: { maxBytes: 1 << 20 },
      after: () => ({ until: 0n, outcome }),
    } as unknown as Resume;
    const narrower = principal({ expiresAt: NOW + 60 * 60_000, channels: ["orders.*"] });
    const { peer } = connection({ first: principal(), narrower }, { resume: readingTheLog });
    expect((await send(peer, { type: "auth", token: "first" }))[0]).toMatchObject({ type: "connected" });
    expect(
      await send(peer, { type: "subscribe", channel: "billing", since: "1-0-0000000000000001" }),
    ).toEqual([]);
    expect(await send(peer, { type: "auth", token: "narrower" })).toEqual([
      { type: "unsubscribed", channel: "billing", reason: "forbidden" },
      { type: "refreshed", expiresAt: narrower.expiresAt },
    ]);
    finishRead({ kind: "events", events: [], complete: true, next: null });
    await settle();
    expect(peer.take()).toEqual([]);
  });

  test("a valid token of another tenant or subject, or not expiring later, is forbidden; the socket keeps its token", async () => {
    const first = principal();
    const tokens = {
      first,
      otherTenant: principal({ tenant: "globex", expiresAt: NOW + 60 * 60_000 }),
      otherSubject: principal({ subject: "mallory", expiresAt: NOW + 60 * 60_000 }),
      sameExp: principal(),
      earlier: principal({ expiresAt: NOW + 60_000 }),
      noScope: principal({ scopes: new Set(["ingest"]), expiresAt: NOW + 60 * 60_000 }),
    };
    const { connection: subject, peer } = await authenticated(tokens);
    for (const token of ["otherTenant", "otherSubject", "sameExp", "earlier", "noScope"]) {
      const frames = await send(peer, { type: "auth", token });
      expect(frames).toHaveLength(1);
      expect(frames[0]).toMatchObject({ type: "error", code: "forbidden" });
      expect(subject.principal).toBe(first);
      expect(peer.closedWith).toBeUndefined();
    }
  });

  test("a bad token closes 4001", async () => {
    const { peer } = await authenticated({ first: principal() });
    expect(await send(peer, { type: "auth", token: "forged" })).toEqual([
      { type: "error", code: "unauthorized", message: "bad token signature" },
    ]);
    expect(peer.closedWith).toBe(CLOSE.unauthorized);
  });

  test("keys that cannot be fetched: an unavailable error, and the socket stays on its token until that expires", async () => {
    const first = principal();
    const { connection: subject, peer } = await authenticated({ first, later: keysUnavailable() });
    expect(await send(peer, { type: "auth", token: "later" })).toEqual([
      { type: "error", code: "unavailable", message: "token signing keys unavailable", retryAfterMs: 2000 },
    ]);
    expect(peer.closedWith).toBeUndefined();
    expect(subject.principal).toBe(first);
    subject.checkExpiry(first.expiresAt);
    expect(peer.closedWith).toBe(CLOSE.unauthorized);
  });
});

describe("expiry", () => {
  test("token_expiring once per token within the warning window, then 4001 at exp unless refreshed", async () => {
    const first = principal({ expiresAt: NOW + 10 * 60_000 });
    const later = principal({ expiresAt: NOW + 20 * 60_000 });
    const { connection: subject, peer } = await authenticated({ first, later }, 60_000);
    subject.checkExpiry(first.expiresAt - 60_001);
    expect(peer.take()).toEqual([]);
    subject.checkExpiry(first.expiresAt - 60_000);
    subject.checkExpiry(first.expiresAt - 30_000);
    expect(peer.take()).toEqual([{ type: "token_expiring", expiresAt: first.expiresAt }]);

    expect(await send(peer, { type: "auth", token: "later" })).toEqual([
      { type: "refreshed", expiresAt: later.expiresAt },
    ]);
    subject.checkExpiry(first.expiresAt);
    expect(peer.closedWith).toBeUndefined();
    subject.checkExpiry(later.expiresAt - 1000);
    subject.checkExpiry(later.expiresAt - 500);
    expect(peer.take()).toEqual([{ type: "token_expiring", expiresAt: later.expiresAt }]);
    subject.checkExpiry(later.expiresAt);
    expect(peer.take()).toEqual([{ type: "error", code: "unauthorized", message: "token expired" }]);
    expect(peer.closedWith).toBe(CLOSE.unauthorized);
  });

  test("a token already within the window is warned right after `connected`; 0 turns the warning off", async () => {
    const soon = principal({ expiresAt: Date.now() + 30_000 });
    const { frames } = await authenticated({ first: soon }, 60_000);
    expect(frames).toEqual([
      { type: "connected", connection: expect.any(String) },
      { type: "token_expiring", expiresAt: soon.expiresAt },
    ]);
    const quiet = await authenticated({ first: soon }, 0);
    expect(quiet.frames).toHaveLength(1);
    quiet.connection.checkExpiry(soon.expiresAt - 1);
    expect(quiet.peer.take()).toEqual([]);
  });
});

describe("publish frames", () => {
  const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

  async function publisher(scopes: string[], publish: Publish) {
    const opened = connection({ first: principal({ scopes: new Set(scopes) }) }, { publish });
    expect((await send(opened.peer, { type: "auth", token: "first" }))[0]).toMatchObject({
      type: "connected",
    });
    return opened.peer;
  }

  test("each publish is counted and timed by its result", async () => {
    const opened = connection(
      { first: principal({ scopes: new Set(["subscribe", "publish"]) }) },
      {
        publish: async (_principal, request) => {
          if (request.channel === "refused") throw new GatewayError("rate_limited", "slow down");
          return undefined;
        },
      },
    );
    await send(opened.peer, { type: "auth", token: "first" });
    for (const channel of ["orders", "orders", "refused"])
      await send(opened.peer, { type: "publish", channel });
    const text = await opened.metrics.registry.metrics();
    // The series still at 0 (every result is exported from the start) left out.
    const lines = (prefix: string) =>
      text.split("\n").filter((line) => line.startsWith(prefix) && !line.endsWith(" 0"));
    expect(lines("gateway_ws_publishes_total{")).toEqual([
      'gateway_ws_publishes_total{result="published"} 2',
      'gateway_ws_publishes_total{result="rate_limited"} 1',
    ]);
    expect(lines("gateway_ws_publish_duration_seconds_count{")).toEqual([
      'gateway_ws_publish_duration_seconds_count{result="published"} 2',
      'gateway_ws_publish_duration_seconds_count{result="rate_limited"} 1',
    ]);
  });

  test("published once the bus acknowledged, with its ref; data byte for byte and the trace context passed on", async () => {
    const requests: PublishRequest[] = [];
    const peer = await publisher(["subscribe", "publish"], async (_principal, request) => {
      requests.push(request);
      return undefined;
    });
    peer.state.receive(
      `{"type":"publish","channel":"orders","data":{"n":12345678901234567890},"ref":"r1","traceparent":"${TRACEPARENT}","tracestate":"rojo=1"}`,
    );
    await settle();
    expect(peer.take()).toEqual([{ type: "published", ref: "r1" }]);
    expect(requests).toEqual([
      {
        channel: "orders",
        broadcast: false,
        dataJson: '{"n":12345678901234567890}',
        trace: { traceparent: TRACEPARENT, tracestate: "rojo=1" },
      },
    ]);
    // An invalid traceparent is ignored, with its tracestate, as on HTTP.
    expect(
      await send(peer, { type: "publish", broadcast: true, traceparent: "00-zz", tracestate: "a=1" }),
    ).toEqual([{ type: "published" }]);
    expect(requests[1]).toEqual({ channel: undefined, broadcast: true, dataJson: "null", trace: undefined });
  });

  test("a publish's data nests as deep as in a POST /v1/publish body (62 levels), deeper than other frames may", async () => {
    const requests: PublishRequest[] = [];
    const peer = await publisher(["subscribe", "publish"], async (_principal, request) => {
      requests.push(request);
      return undefined;
    });
    // The frame is an object around `data`, as the HTTP body is: 63 levels in all, within its 64.
    const dataJson = `${"[".repeat(62)}1${"]".repeat(62)}`;
    peer.state.receive(`{"type":"publish","channel":"maps","data":${dataJson},"ref":"geo"}`);
    await settle();
    expect(peer.take()).toEqual([{ type: "published", ref: "geo" }]);
    expect(requests).toEqual([{ channel: "maps", broadcast: false, dataJson, trace: undefined }]);
  });

  test("without scope publish: forbidden, and the bus is not asked", async () => {
    let asked = 0;
    const peer = await publisher(["subscribe"], async () => {
      asked++;
      return undefined;
    });
    expect(await send(peer, { type: "publish", channel: "orders", data: 1, ref: "r" })).toEqual([
      { type: "error", code: "forbidden", message: "publish needs a token with scope publish", ref: "r" },
    ]);
    expect(asked).toBe(0);
    expect(peer.closedWith).toBeUndefined();
  });

  test("a publish frame refused as a bad_frame echoes its ref, so the client's publish is answered", async () => {
    let asked = 0;
    const peer = await publisher(["subscribe", "publish"], async () => {
      asked++;
      return undefined;
    });
    let deep: unknown = 1;
    for (let level = 0; level < 20; level++) deep = { a: deep };
    const refused = [
      [{ type: "publish", data: deep, ref: "nochannel" }, "publish needs a channel"],
      [{ type: "publish", broadcast: "yes", data: {}, ref: "broadcast" }, "broadcast must be true or false"],
    ] as const;
    for (const [frame, message] of refused) {
      expect(await send(peer, frame)).toEqual([
        { type: "error", code: "bad_frame", message, ref: frame.ref },
      ]);
    }
    peer.state.receive('{"type":"publish","channel":"o","data":{"a":1,"a":2},"ref":"twice"}');
    await settle();
    expect(peer.take()).toEqual([
      { type: "error", code: "bad_frame", message: 'duplicate key "a"', ref: "twice" },
    ]);
    // No ref to echo: an invalid one, a frame of another type, or one too deep for any JSON body.
    let abyss: unknown = 1;
    for (let level = 0; level < 100; level++) abyss = { a: abyss };
    for (const frame of [
      { type: "publish", channel: "o", ref: "x".repeat(65) },
      { type: "subscribe", channel: deep, ref: "sub" },
      { type: "publish", channel: "o", data: abyss, ref: "abyss" },
    ]) {
      const [answer] = await send(peer, frame);
      expect(answer).toMatchObject({ type: "error", code: "bad_frame" });
      expect(answer).not.toHaveProperty("ref");
    }
    expect(asked).toBe(0);
  });

  test("refusals become error frames: bad channel, rate limited and no acknowledgement with retryAfterMs; too large for good, without", async () => {
    const refusals = [
      new GatewayError("bad_request", "bad name"),
      new GatewayError("rate_limited", "slow down", { "retry-after": "3" }),
      new GatewayError("unavailable", "Kafka did not acknowledge in time", { "retry-after": "5" }),
      new Error("broken"),
      new GatewayError("payload_too_large", "a publish's data is at most 256 bytes"),
      new GatewayError("record_too_large", "a record takes 10157 bytes in Kafka; at most 3971 fit"),
    ];
    const peer = await publisher(["subscribe", "publish"], async () => {
      throw refusals.shift();
    });
    const frames = [];
    for (let n = 0; n < 6; n++)
      frames.push(...(await send(peer, { type: "publish", channel: "o", ref: `${n}` })));
    expect(frames).toEqual([
      { type: "error", code: "bad_channel", message: "bad name", ref: "0" },
      { type: "error", code: "rate_limited", message: "slow down", retryAfterMs: 3000, ref: "1" },
      {
        type: "error",
        code: "unavailable",
        message: "Kafka did not acknowledge in time",
        retryAfterMs: 5000,
        ref: "2",
      },
      { type: "error", code: "unavailable", message: "publish failed", retryAfterMs: 1000, ref: "3" },
      {
        type: "error",
        code: "payload_too_large",
        message: "a publish's data is at most 256 bytes",
        ref: "4",
      },
      {
        type: "error",
        code: "payload_too_large",
        message: "a record takes 10157 bytes in Kafka; at most 3971 fit",
        ref: "5",
      },
    ]);
  });

  test(`at most ${MAX_PUBLISHES_IN_FLIGHT} publishes wait for Kafka per connection; the next is refused, not queued`, async () => {
    const waiting: Array<() => void> = [];
    const peer = await publisher(
      ["subscribe", "publish"],
      () => new Promise((resolve) => waiting.push(() => resolve(undefined))),
    );
    for (let n = 0; n <= MAX_PUBLISHES_IN_FLIGHT; n++)
      peer.state.receive(JSON.stringify({ type: "publish", channel: "orders", ref: `${n}` }));
    await settle();
    expect(waiting.length).toBe(MAX_PUBLISHES_IN_FLIGHT);
    expect(peer.take()).toEqual([
      expect.objectContaining({ type: "error", code: "rate_limited", ref: `${MAX_PUBLISHES_IN_FLIGHT}` }),
    ]);
    for (const release of waiting.splice(0)) release();
    await settle();
    expect(peer.take()).toHaveLength(MAX_PUBLISHES_IN_FLIGHT);
    // Room again once they were acknowledged.
    expect(await send(peer, { type: "publish", channel: "orders" })).toEqual([]);
    waiting.shift()?.();
    await settle();
    expect(peer.take()).toEqual([{ type: "published" }]);
  });

  test("malformed publish frames are bad_frame", async () => {
    const peer = await publisher(["subscribe", "publish"], async () => undefined);
    for (const frame of [
      '{"type":"publish","data":1}',
      '{"type":"publish","channel":"o","broadcast":"yes"}',
      `{"type":"publish","channel":"o","ref":"${"r".repeat(65)}"}`,
      '{"type":"publish","channel":"o","data":{"a":1,"a":2}}',
    ]) {
      peer.state.receive(frame);
      await settle();
      expect(peer.take()).toEqual([expect.objectContaining({ type: "error", code: "bad_frame" })]);
    }
  });
});

describe("Connection: join and leave events", () => {
  test("off by default; presence: true subscribes the socket to them, the latest subscribe decides, leaving stops them", async () => {
    const { peer } = await authenticated({ first: principal() });
    const presenceTopics = () => [...peer.topics].filter((topic) => topic.startsWith("p/"));
    await send(peer, { type: "subscribe", channel: "room" });
    expect(presenceTopics()).toEqual([]);
    await send(peer, { type: "subscribe", channel: "room", presence: true });
    expect(presenceTopics()).toEqual(["p/acme/room"]);
    await send(peer, { type: "subscribe", channel: "room" });
    expect(presenceTopics()).toEqual([]);
    await send(peer, { type: "subscribe", channel: "room", presence: true });
    await send(peer, { type: "unsubscribe", channel: "room" });
    expect(presenceTopics()).toEqual([]);
    const refused = await send(peer, { type: "subscribe", channel: "room", presence: "yes" });
    expect(refused[0]).toMatchObject({ type: "error", code: "bad_frame" });
  });

  test("refused by a full watch list: an unavailable error naming the channel, the subscription stands without them, and leaving gives back nothing it was not given", async () => {
    const calls: string[] = [];
    const watchPresence = (key: string, delta: 1 | -1) => {
      calls.push(`${key} ${delta}`);
      return key !== "t/acme/crowded";
    };
    const { peer } = await authenticated({ first: principal() }, undefined, watchPresence);
    const frames = await send(peer, { type: "subscribe", channel: "crowded", presence: true });
    expect(frames.map((frame) => frame.type)).toEqual(["subscribed", "error"]);
    expect(frames[1]).toMatchObject({ code: "unavailable", channel: "crowded" });
    expect([...peer.topics].filter((topic) => topic.startsWith("p/"))).toEqual([]);
    await send(peer, { type: "subscribe", channel: "room", presence: true });
    expect([...peer.topics].filter((topic) => topic.startsWith("p/"))).toEqual(["p/acme/room"]);
    await send(peer, { type: "unsubscribe", channel: "crowded" });
    await send(peer, { type: "unsubscribe", channel: "room" });
    expect(calls).toEqual(["t/acme/crowded 1", "t/acme/room 1", "t/acme/room -1"]);
  });
});

describe("a resume read from the log", () => {
  /** A Resume whose every `since` is read from the log, finished by the test; live frames offered through `live`. */
  function readingEveryResumeFromTheLog() {
    const reads: Array<(outcome: ResumeOutcome) => void> = [];
    const resume = {
      limits: { maxBytes: 1 << 20 },
      position: () => null,
      after: () => ({ until: 5n, outcome: new Promise<ResumeOutcome>((resolve) => reads.push(resolve)) }),
    } as unknown as Resume;
    const listeners = new Set<(frame: string, offset: bigint) => void>();
    const tap: ConnectionHost["tap"] = (_topic, listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    };
    const live = (frame: string, offset: bigint) => {
      for (const listener of listeners) listener(frame, offset);
    };
    return { resume, tap, live, finish: (outcome: ResumeOutcome) => reads.shift()?.(outcome) };
  }

  const eventFrame = (offset: number) => JSON.stringify({ type: "event", channel: "orders", offset });
  const keptEvent = (offset: number) => ({
    id: `e-0-${offset}`,
    position: { epoch: "e", partition: 0, offset: BigInt(offset) },
    frame: eventFrame(offset),
  });

  /** An authenticated connection whose every resume is read from `log`. */
  function connectionReadingTheLog() {
    const log = readingEveryResumeFromTheLog();
    const {
      connection: subject,
      peer,
      metrics,
    } = connection({ first: principal() }, { resume: log.resume, tap: log.tap });
    return { log, subject, peer, metrics };
  }

  test("each resume is counted once, by its result; reads of the log apart", async () => {
    const { log, peer, metrics } = connectionReadingTheLog();
    await send(peer, { type: "auth", token: "first" });
    await send(peer, { type: "subscribe", channel: "orders", since: "e-0-0000000000000001" });
    log.finish({ kind: "events", events: [keptEvent(2)], complete: true, next: null });
    await send(peer, { type: "subscribe", channel: "gone", since: "e-0-0000000000000001" });
    log.finish({ kind: "gone", message: "since is older than the kept history" });
    await settle();
    const text = await metrics.registry.metrics();
    // The series still at 0 (every result is exported from the start) left out.
    const lines = (prefix: string) =>
      text.split("\n").filter((line) => line.startsWith(prefix) && !line.endsWith(" 0"));
    // Summed over results: 2 resumes, half of them history_gone.
    expect(lines("gateway_ws_resumes_total{")).toEqual([
      'gateway_ws_resumes_total{result="served"} 1',
      'gateway_ws_resumes_total{result="history_gone"} 1',
    ]);
    expect(lines("gateway_ws_resume_log_reads_total ")).toEqual(["gateway_ws_resume_log_reads_total 2"]);
  });

  test("a subscribed channel resumed from the log gets no live frame straight from the engine until the replay is sent: older events first, each once", async () => {
    const { log, subject, peer } = connectionReadingTheLog();
    const topic = channelTopic("acme", "orders");
    await send(peer, { type: "auth", token: "first" });
    expect(await send(peer, { type: "subscribe", channel: "orders" })).toEqual([
      { type: "subscribed", channel: "orders", lastEventId: null },
    ]);
    expect(peer.topics.has(topic)).toBe(true);
    // The client saw a gap and asks again from its last event: the log is read.
    expect(await send(peer, { type: "subscribe", channel: "orders", since: "e-0-0000000000000001" })).toEqual(
      [],
    );
    expect(peer.topics.has(topic)).toBe(false);
    expect([...subject.channels]).toEqual(["orders"]);
    log.live(eventFrame(6), 6n);
    log.finish({ kind: "events", events: [keptEvent(2), keptEvent(3)], complete: true, next: null });
    await settle();
    expect(peer.take()).toEqual([
      { type: "subscribed", channel: "orders", lastEventId: null },
      { type: "event", channel: "orders", offset: 2 },
      { type: "event", channel: "orders", offset: 3 },
      { type: "event", channel: "orders", offset: 6 },
    ]);
    expect(peer.topics.has(topic)).toBe(true);
  });

  test("a channel asked again while its replay is read, or while subscribed and read again, takes no second place among WS_MAX_SUBSCRIPTIONS", async () => {
    const { log, peer } = connectionReadingTheLog();
    await send(peer, { type: "auth", token: "first" });
    for (let n = 0; n < 8; n++) await send(peer, { type: "subscribe", channel: `fill${n}` });
    peer.take();
    const answers = [
      // The ninth place: subscribed, then read again from the log (subscribed and replaying at once).
      ...(await send(peer, { type: "subscribe", channel: "audit" })),
      ...(await send(peer, { type: "subscribe", channel: "audit", since: "e-0-0000000000000001" })),
      // The tenth, asked twice while its replay is read (a client resending on reconnect).
      ...(await send(peer, { type: "subscribe", channel: "orders", since: "e-0-0000000000000001" })),
      ...(await send(peer, { type: "subscribe", channel: "orders", since: "e-0-0000000000000001" })),
    ];
    for (let n = 0; n < 3; n++) log.finish({ kind: "events", events: [], complete: true, next: null });
    await settle();
    answers.push(...peer.take());
    expect(answers.filter((frame) => frame.type === "error")).toEqual([]);
    expect(answers.filter((frame) => frame.type === "subscribed").map((frame) => frame.channel)).toEqual([
      "audit",
      "audit",
      "orders",
    ]);
    // Ten places taken: an eleventh channel is refused.
    expect(await send(peer, { type: "subscribe", channel: "more" })).toEqual([
      { type: "error", code: "too_many_subscriptions", channel: "more", message: "at most 10" },
    ]);
  });

  test("a try_again leaves the channel unsubscribed, even one subscribed before", async () => {
    const { log, subject, peer } = connectionReadingTheLog();
    await send(peer, { type: "auth", token: "first" });
    await send(peer, { type: "subscribe", channel: "orders" });
    await send(peer, { type: "subscribe", channel: "orders", since: "e-0-0000000000000001" });
    log.finish({ kind: "try_again", retryAfterMs: 100, message: "too many replays" });
    await settle();
    expect(peer.take()).toEqual([
      { type: "error", code: "try_again", channel: "orders", retryAfterMs: 100, message: "too many replays" },
    ]);
    expect([...subject.channels]).toEqual([]);
    expect(peer.topics.has(channelTopic("acme", "orders"))).toBe(false);
  });
});

describe("frames sent while the first token is verified", () => {
  test("are held and handled in order once it is; past the hold's bound the rest are ignored with one rate_limited frame after them", async () => {
    const { peer, metrics } = connection({ first: principal() });
    peer.state.receive(JSON.stringify({ type: "auth", token: "first" }));
    // A client that pipelines before `connected`, as one with a token in the URL does on open.
    for (let n = 0; n < 70; n++) peer.state.receive(JSON.stringify({ type: "ping" }));
    await settle();
    const frames = peer.take();
    expect(frames[0]).toMatchObject({ type: "connected" });
    expect(frames.slice(1, -1)).toEqual(Array.from({ length: 64 }, () => ({ type: "pong" })));
    expect(frames.at(-1)).toMatchObject({ type: "error", code: "rate_limited" });
    expect(
      (await metrics.registry.getSingleMetric("gateway_rate_limited_total")?.get())?.values,
    ).toContainEqual(expect.objectContaining({ labels: { scope: "ws_message" }, value: 1 }));
    // Said once: the socket goes on as any other.
    expect(await send(peer, { type: "ping" })).toEqual([{ type: "pong" }]);
  });

  test("within the bound nothing is refused", async () => {
    const { peer } = connection({ first: principal() });
    peer.state.receive(JSON.stringify({ type: "auth", token: "first" }));
    for (let n = 0; n < 20; n++) peer.state.receive(JSON.stringify({ type: "ping" }));
    await settle();
    const frames = peer.take();
    expect(frames).toHaveLength(21);
    expect(frames.filter((frame) => frame.type === "error")).toEqual([]);
  });
});
