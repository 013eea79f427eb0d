import { describe, expect, test } from "bun:test";
import type { Principal } from "../../../src/domain/principal.ts";
import { ChannelHistory } from "../../../src/features/realtime/history.ts";
import { type ConnectionState, WsHub, type WsHubOptions } from "../../../src/features/realtime/hub.ts";
import { Resume } from "../../../src/features/realtime/resume.ts";
import { errorReply } from "../../../src/http/reply.ts";
import { LocalFanoutBus } from "../../../src/infra/local/fanout-bus.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import type { Authenticator } from "../../../src/ports/auth.ts";
import type { HttpRequest, SendResult, WsPeer } from "../../../src/ports/transport.ts";

const REPLAY_LIMITS = {
  maxConcurrent: 2,
  maxConcurrentPerTenant: 1,
  maxBytes: 1 << 20,
  timeoutMs: 1000,
  scanMaxOffsets: 1 << 20,
  latestCacheBytes: 1 << 20,
};

/** A peer as an engine would hand it over; `close` reports back to the hub like the engine's close event. */
class FakePeer implements WsPeer<ConnectionState> {
  readonly frames: Array<Record<string, unknown>> = [];
  closedWith: number | undefined;
  constructor(
    readonly state: ConnectionState,
    private readonly hub: WsHub,
  ) {}
  send(text: string): SendResult {
    this.frames.push(JSON.parse(text));
    return "sent";
  }
  subscribe(): void {}
  unsubscribe(): void {}
  bufferedAmount(): number {
    return 0;
  }
  close(code: number): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = code;
    this.hub.close(this, code);
  }
  get connected(): boolean {
    return this.frames.some((frame) => frame.type === "connected");
  }
}

function request(token?: string, headers: Record<string, string> = {}): HttpRequest {
  return {
    method: "GET",
    path: "/v1/ws",
    query: new URLSearchParams(token ? { token } : {}),
    header: (name) => headers[name],
    headerNames: () => Object.keys(headers),
    remoteAddress: "127.0.0.1",
    body: async () => new Uint8Array(0),
  };
}

/** Every verification waits for `release()`, so the test decides which ones finish in the same tick. */
function gatedAuthenticator() {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const authenticator: Authenticator = {
    verify: async (token) => {
      await gate;
      const [tenant] = token.split(":");
      const principal: Principal = {
        subject: token,
        tenant: tenant as string,
        scopes: new Set(["subscribe"]),
        channels: undefined,
        expiresAt: Date.now() + 60_000,
      };
      return principal;
    },
  };
  return { authenticator, release };
}

function hub(
  options: Partial<WsHubOptions>,
  authenticator: Authenticator,
  admitConnection: (ip: string) => Promise<void> = async () => {},
  metrics = createMetrics("test", "0"),
): WsHub {
  const history = new ChannelHistory({
    eventsPerChannel: 10,
    bytesPerChannel: 10_000,
    channels: 10,
    maxBytes: 1 << 20,
    tenantMaxBytes: 1 << 20,
  });
  return new WsHub(
    {
      runtime: "test",
      pingIntervalMs: 60_000,
      authTimeoutMs: 60_000,
      backpressureBytes: 1 << 20,
      queuedMaxBytes: 1 << 28,
      maxConnections: 100,
      maxUnauthenticated: 100,
      maxConnectionsPerTenant: 100,
      maxSubscriptions: 10,
      maxChannels: 1000,
      maxTenantChannels: 1000,
      maxMessagesPerSec: 100,
      trustProxyHops: 0,
      tokenExpiryWarningMs: 60_000,
      ...options,
    },
    {
      authenticator,
      history,
      resume: new Resume(history, new LocalFanoutBus(), REPLAY_LIMITS),
      metrics,
      publish: async () => undefined,
      log: createLogger("silent", {}),
      admitConnection,
    },
  );
}

async function openPeer(target: WsHub, token?: string): Promise<FakePeer | number> {
  const decision = await target.upgrade(request(token));
  if (!decision.accept) return decision.reply.status;
  const peer = new FakePeer(decision.state, target);
  target.open(peer);
  return peer;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

describe("WsHub connection caps", () => {
  test("per tenant: 10 verifications finishing in the same tick connect exactly the cap", async () => {
    const { authenticator, release } = gatedAuthenticator();
    const metrics = createMetrics("test", "0");
    const target = hub({ maxConnectionsPerTenant: 2 }, authenticator, undefined, metrics);
    const peers = (await Promise.all(
      Array.from({ length: 10 }, () => openPeer(target, "acme:x")),
    )) as FakePeer[];
    release();
    await settle();
    expect(peers.filter((peer) => peer.connected).length).toBe(2);
    const refused = peers.filter((peer) => !peer.connected);
    expect(refused.map((peer) => peer.closedWith)).toEqual(Array(8).fill(1013));
    // The frame says when to retry, as the Retry-After of an event stream refused by the same cap.
    expect(refused[0]?.frames[0]).toEqual({
      type: "error",
      code: "rate_limited",
      message: "too many connections for this tenant",
      retryAfterMs: 5000,
    });
    expect(await metrics.registry.getSingleMetricAsString("gateway_rate_limited_total")).toContain(
      'gateway_rate_limited_total{scope="tenant_connections"} 8',
    );
    // A slot freed by a close is usable again.
    peers.find((peer) => peer.connected)?.close(1000);
    const again = (await openPeer(target, "acme:y")) as FakePeer;
    await settle();
    expect(again.connected).toBe(true);
  });

  test("per instance: authenticated sockets count against WS_MAX_CONNECTIONS, checked when they authenticate", async () => {
    const { authenticator, release } = gatedAuthenticator();
    const target = hub({ maxConnections: 2, maxUnauthenticated: 20 }, authenticator);
    const peers = (await Promise.all(
      Array.from({ length: 10 }, (_, i) => openPeer(target, `t${i}:x`)),
    )) as FakePeer[];
    release();
    await settle();
    expect(peers.filter((peer) => peer.connected).length).toBe(2);
    expect(peers.filter((peer) => !peer.connected).map((peer) => peer.closedWith)).toEqual(
      Array(8).fill(1013),
    );
    expect(peers.find((peer) => !peer.connected)?.frames[0]).toMatchObject({
      code: "unavailable",
      retryAfterMs: 5000,
    });
    // Full: the upgrade itself is refused.
    expect(await openPeer(target, "t9:x")).toBe(503);
  });

  test("an event stream refused by a full instance gets the upgrade's answer: 503 with Retry-After", () => {
    const target = hub({ maxConnections: 1 }, gatedAuthenticator().authenticator);
    expect(target.claimSlots("acme")).toBeUndefined();
    const full = target.claimSlots("other");
    expect(full && errorReply(full)).toMatchObject({ status: 503, headers: { "retry-after": "5" } });
  });

  test("an event stream refused by the tenant's cap: 429 with Retry-After and RateLimit fields, as every 429 of a limited route", () => {
    const target = hub({ maxConnectionsPerTenant: 1 }, gatedAuthenticator().authenticator);
    expect(target.claimSlots("acme")).toBeUndefined();
    const full = target.claimSlots("acme");
    expect(full && errorReply(full)).toMatchObject({
      status: 429,
      headers: {
        "retry-after": "5",
        "ratelimit-limit": "1",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "5",
        "ratelimit-policy": '"tenant-connections";q=1',
        ratelimit: '"tenant-connections";r=0;t=5',
      },
    });
  });

  test("pending sockets have their own cap and never take an authenticated slot", async () => {
    const { authenticator, release } = gatedAuthenticator();
    release();
    const target = hub({ maxConnections: 2, maxUnauthenticated: 3 }, authenticator);
    const idle = await Promise.all([openPeer(target), openPeer(target), openPeer(target)]);
    expect(idle.every((peer) => peer instanceof FakePeer)).toBe(true);
    const refused = await target.upgrade(request());
    expect(refused.accept === false && refused.reply).toMatchObject({
      status: 503,
      headers: { "retry-after": expect.any(String) },
    });
    (idle[0] as FakePeer).close(1000);
    const first = (await openPeer(target, "acme:x")) as FakePeer;
    await settle();
    const second = (await openPeer(target, "acme:y")) as FakePeer;
    await settle();
    expect(first.connected && second.connected).toBe(true);
  });
});

describe("WsHub distinct channels", () => {
  // Found in a containment audit: 100 distinct channels on each of 4,000 sockets of one tenant took
  // 2-3 GB and stalled every tenant for seconds; each distinct channel holds state of its own.
  test("WS_MAX_TENANT_CHANNELS and WS_MAX_CHANNELS bound the distinct channels subscribed to: one more is try_again, a channel held already is not, and a channel let go gives its place back", async () => {
    const { authenticator, release } = gatedAuthenticator();
    release();
    const target = hub({ maxChannels: 3, maxTenantChannels: 2 }, authenticator);
    const [first, second, other] = (await Promise.all(
      ["acme:1", "acme:2", "beta:1"].map((token) => openPeer(target, token)),
    )) as FakePeer[];
    await settle();
    const subscribe = (peer: FakePeer | undefined, channel: string) => {
      target.message(peer as FakePeer, JSON.stringify({ type: "subscribe", channel }));
      return peer?.frames.at(-1);
    };
    const refused = (channel: string, message: string) => ({
      type: "error",
      code: "try_again",
      channel,
      retryAfterMs: 5000,
      message,
    });
    const tenantFull =
      "this tenant's sockets subscribe to as many channels as an instance holds for one tenant (2)";
    expect(subscribe(first, "x")).toMatchObject({ type: "subscribed", channel: "x" });
    expect(subscribe(first, "y")).toMatchObject({ type: "subscribed", channel: "y" });
    // Held by another socket of the tenant already: no new place.
    expect(subscribe(second, "x")).toMatchObject({ type: "subscribed", channel: "x" });
    expect(subscribe(second, "z")).toEqual(refused("z", tenantFull));
    // Another tenant's channel of the same name is another channel: the instance's third.
    expect(subscribe(other, "x")).toMatchObject({ type: "subscribed", channel: "x" });
    expect(subscribe(other, "w")).toEqual(
      refused("w", "this instance's sockets subscribe to as many channels as it holds (3)"),
    );
    target.message(first as FakePeer, JSON.stringify({ type: "unsubscribe", channel: "y" }));
    expect(subscribe(second, "z")).toMatchObject({ type: "subscribed", channel: "z" });
    // A socket closing gives back the channels only it held (z), not those others hold too (x).
    second?.close(1000);
    expect(subscribe(other, "w")).toMatchObject({ type: "subscribed", channel: "w" });
    expect(subscribe(first, "v")).toEqual(
      refused("v", "this instance's sockets subscribe to as many channels as it holds (3)"),
    );
  });
});

describe("WsHub frames sent while the token is verified", () => {
  test("are held up to 16 KiB and served once it is", async () => {
    const { authenticator, release } = gatedAuthenticator();
    const target = hub({}, authenticator);
    const peer = (await openPeer(target, "acme:x")) as FakePeer;
    const frame = (i: number) =>
      JSON.stringify({ type: "subscribe", channel: `c${i}`, pad: "x".repeat(2000) });
    expect(frame(0).length).toBe(2044);
    for (let i = 0; i < 10; i++) target.message(peer, frame(i));
    release();
    await settle();
    expect(peer.frames.filter((f) => f.type === "subscribed").map((f) => f.channel)).toEqual(
      Array.from({ length: 8 }, (_, i) => `c${i}`),
    );
  });
});

describe("WsHub connect rate limit", () => {
  const behindBalancer = { "x-forwarded-for": "203.0.113.9, 10.0.0.2" };

  async function admittedIp(trustProxyHops: number): Promise<string | undefined> {
    const { authenticator, release } = gatedAuthenticator();
    release();
    let admitted: string | undefined;
    const target = hub({ trustProxyHops }, authenticator, async (ip) => {
      admitted = ip;
    });
    const decision = await target.upgrade(request("acme:x", behindBalancer));
    if (!decision.accept) throw new Error("refused");
    target.open(new FakePeer(decision.state, target));
    await settle();
    return admitted;
  }

  test("counts the client's address behind TRUST_PROXY hops, not the balancer's (issue 23)", async () => {
    expect(await admittedIp(1)).toBe("10.0.0.2");
    expect(await admittedIp(2)).toBe("203.0.113.9");
    expect(await admittedIp(0)).toBe("127.0.0.1");
  });
});
