import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from "jose";
import { frameProblems, realResponse, responseProblems } from "../support/api-documents.ts";
import { tempDirs } from "../support/temp-dir.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket } from "./harness.ts";

/** Log folders of this file's gateways, removed after its tests. */
const tempDir = tempDirs();

/**
 * The gateway against a real identity provider's JWKS endpoint that the test
 * takes down and brings back: an outage is 503 / close 1013 (never 401 /
 * 4001), and sockets refresh their token in band instead of being closed at
 * its expiry.
 */

const KID = "e2e-es256";
const { privateKey, publicKey } = await generateKeyPair("ES256");
const PUBLIC_JWK: JWK = { ...(await exportJWK(publicKey)), kid: KID, alg: "ES256", use: "sig" };

function signed(scope: string, expiresInSec = 3600): Promise<string> {
  return signedBy(privateKey, KID, scope, expiresInSec);
}

/** A token no other call returns (its jti), so the gateway's cache of verified tokens cannot answer for it. */
function signedBy(key: CryptoKey, kid: string, scope: string, expiresInSec = 3600): Promise<string> {
  return new SignJWT({ tenant: "acme", scope })
    .setProtectedHeader({ alg: "ES256", kid })
    .setSubject("e2e")
    .setJti(crypto.randomUUID())
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSec)
    .sign(key);
}

/** Another ES256 key of the identity provider, under its own kid. */
async function anotherKey(kid: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const pair = await generateKeyPair("ES256");
  return {
    privateKey: pair.privateKey,
    jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: "ES256", use: "sig" },
  };
}

/** A JWKS endpoint on a fixed loopback port, which `down()` stops listening and `up()` starts again. */
class JwksServer {
  private server: ReturnType<typeof Bun.serve> | undefined;
  fetches = 0;
  /** What the endpoint answers, as JSON. */
  document: unknown = { keys: [PUBLIC_JWK] };
  constructor(readonly port: number) {}

  static async start(): Promise<JwksServer> {
    const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const port = probe.port as number;
    probe.stop(true);
    return new JwksServer(port);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/.well-known/jwks.json`;
  }

  up(): void {
    if (this.server) return;
    this.server = Bun.serve({
      port: this.port,
      hostname: "127.0.0.1",
      fetch: () => {
        this.fetches++;
        return Response.json(this.document);
      },
    });
  }

  down(): void {
    this.server?.stop(true);
    this.server = undefined;
  }
}

async function ingest(gateway: RunningGateway, token: string): Promise<Response> {
  return fetch(`${gateway.url}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ type: "page_view", data: { url: "https://example.com/" } }),
  });
}

describe.each(RUNTIMES)("an identity provider's JWKS endpoint on %s", (runtime) => {
  let jwks: JwksServer;
  let gateway: RunningGateway;
  const sockets: TestSocket[] = [];
  const serverFrames: unknown[] = [];
  /** Every frame each socket received, in order, whatever `next` consumed. */
  const received = new Map<TestSocket, Array<Record<string, unknown>>>();

  function socket(token: string): TestSocket {
    const opened = new TestSocket(`${gateway.wsUrl}?token=${token}`);
    const frames: Array<Record<string, unknown>> = [];
    received.set(opened, frames);
    const onmessage = opened.socket.onmessage;
    opened.socket.onmessage = (event) => {
      const frame = JSON.parse(String(event.data));
      serverFrames.push(frame);
      frames.push(frame);
      onmessage?.call(opened.socket, event);
    };
    sockets.push(opened);
    return opened;
  }

  /** The position of the first frame `opened` ever received of this type, once there is one. */
  async function indexOf(opened: TestSocket, type: string, timeoutMs = 10_000): Promise<number> {
    const frames = received.get(opened) ?? [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = frames.findIndex((frame) => frame.type === type);
      if (index >= 0) return index;
      if (Date.now() > deadline)
        throw new Error(`no ${type} frame within ${timeoutMs} ms: ${JSON.stringify(frames)}`);
      await Bun.sleep(20);
    }
  }

  beforeAll(async () => {
    jwks = await JwksServer.start();
    gateway = await startGateway(runtime, {
      // The identity provider's keys only: no shared secret an HS256 token could be checked against.
      JWT_SECRET: "",
      JWKS_URL: jwks.url,
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: tempDir("edge-gateway-jwks-"),
      WS_TOKEN_EXPIRY_WARNING_MS: "2000",
    });
  });

  afterAll(async () => {
    for (const opened of sockets) opened.close();
    await gateway?.stop("SIGKILL");
    jwks?.down();
  });

  test("while it is down, tokens get 503 with Retry-After and sockets 1013, never 401/4001; once back, 202", async () => {
    const token = await signed("ingest subscribe");
    const refused = await realResponse(await ingest(gateway, token));
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body).error).toBe("unavailable");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(responseProblems("POST", "/v1/events", refused)).toEqual([]);

    // Every authenticated route, each answer as openapi.yaml documents it.
    const authorization = { authorization: `Bearer ${token}` };
    for (const [method, path, template] of [
      ["GET", "/v1/channels/orders/events", "/v1/channels/{channel}/events"],
      ["HEAD", "/v1/channels/orders/events", "/v1/channels/{channel}/events"],
      ["GET", "/v1/channels/orders/presence", "/v1/channels/{channel}/presence"],
      ["HEAD", "/v1/channels/orders/presence", "/v1/channels/{channel}/presence"],
      ["GET", "/v1/sse?channel=orders", "/v1/sse"],
      ["HEAD", "/v1/sse?channel=orders", "/v1/sse"],
    ] as const) {
      const answer = await realResponse(
        await fetch(`${gateway.url}${path}`, { method, headers: authorization }),
      );
      expect(`${method} ${path} ${answer.status}`).toBe(`${method} ${path} 503`);
      expect(answer.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
      expect(responseProblems(method, template, answer)).toEqual([]);
    }

    const early = socket(token);
    expect(await early.next((frame) => frame.type === "error")).toMatchObject({
      code: "unavailable",
      retryAfterMs: expect.any(Number),
    });
    expect((await early.closed).code).toBe(1013);

    jwks.up();
    const deadline = Date.now() + 10_000;
    let status = 503;
    while (status !== 202 && Date.now() < deadline) {
      status = (await ingest(gateway, token)).status;
      // Never a 401 on the way: the client keeps its token and retries.
      expect([202, 503]).toContain(status);
      if (status !== 202) await Bun.sleep(100);
    }
    expect(status).toBe(202);
    expect(jwks.fetches).toBe(1);

    // Keys already fetched carry on through the next outage.
    jwks.down();
    expect((await ingest(gateway, await signed("ingest"))).status).toBe(202);
    jwks.up();
  });

  test("algorithm confusion: an HS256 token keyed with the set's public key (its JWK or PEM) is refused 401, the endpoint not asked", async () => {
    const fetchesBefore = jwks.fetches;
    const claims = { sub: "e2e", tenant: "acme", scope: "ingest", exp: Math.floor(Date.now() / 1000) + 3600 };
    for (const publicKeyAsSecret of [JSON.stringify(PUBLIC_JWK), await exportSPKI(publicKey)]) {
      const confused = await new SignJWT(claims)
        .setProtectedHeader({ alg: "HS256", kid: KID })
        .sign(new TextEncoder().encode(publicKeyAsSecret));
      const answer = await ingest(gateway, confused);
      expect([answer.status, await answer.json()]).toEqual([
        401,
        { error: "unauthorized", message: "unsupported token algorithm" },
      ]);
    }
    expect(jwks.fetches).toBe(fetchesBefore);
  });

  test("a socket that refreshes in band keeps its subscription across the token's expiry; one that does not gets token_expiring, then 4001", async () => {
    const shortLived = await signed("subscribe", 3);
    const [refreshing, lapsing] = [socket(shortLived), socket(shortLived)];
    for (const opened of [refreshing, lapsing]) {
      await opened.next((frame) => frame.type === "connected");
      opened.send({ type: "subscribe", channel: "orders" });
      await opened.next((frame) => frame.type === "subscribed");
    }

    // token_expiring may come before or after subscribed: the token is that close to its exp.
    const frames = received.get(refreshing) ?? [];
    const warning = frames[await indexOf(refreshing, "token_expiring")] as Record<string, unknown>;
    const fresh = await signed("subscribe");
    refreshing.send({ type: "auth", token: fresh });
    const refreshed = await refreshing.next((frame) => frame.type === "refreshed");
    expect(refreshed.expiresAt as number).toBeGreaterThan(warning.expiresAt as number);

    // The other socket: warned first, closed at the old exp.
    expect((await lapsing.closed).code).toBe(4001);
    const lapsed = received.get(lapsing) ?? [];
    const warned = await indexOf(lapsing, "token_expiring", 0);
    expect(lapsed[warned]).toEqual(warning);
    expect(lapsed.slice(warned + 1).filter((frame) => frame.type === "error")).toEqual([
      { type: "error", code: "unauthorized", message: "token expired" },
    ]);

    // Past the first token's exp, the refreshed socket is open and still receives its channel.
    expect(Date.now()).toBeGreaterThan(warning.expiresAt as number);
    const published = await fetch(`${gateway.url}/v1/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${await signed("publish")}`, "content-type": "application/json" },
      body: JSON.stringify({ channel: "orders", data: { after: "refresh" } }),
    });
    expect(published.status).toBe(202);
    expect(await refreshing.next((frame) => frame.type === "event")).toMatchObject({
      channel: "orders",
      data: { after: "refresh" },
    });
    expect(refreshing.socket.readyState).toBe(WebSocket.OPEN);
    expect(serverFrames.flatMap((frame) => frameProblems("server", frame))).toEqual([]);
  });

  test("a refresh answering a broken key set keeps the last good one: valid tokens get 202, never 401; a kid published only broken gets 503 / close 1013", async () => {
    const unknownKey = await anotherKey("e2e-unknown");
    const rotated = await anotherKey("e2e-rotated");
    const brokenOnly = await anotherKey("e2e-broken");
    jwks.up();
    expect((await ingest(gateway, await signed("ingest"))).status).toBe(202);
    try {
      for (const [name, document] of [
        ["no keys", { keys: [] }],
        ["a key of no known kind", { keys: [{}] }],
        ["the known kid with bad material", { keys: [{ ...PUBLIC_JWK, x: "AAAA" }] }],
      ] as const) {
        jwks.document = document;
        // Past the least interval between fetches, so an unknown kid fetches the broken document at once.
        await Bun.sleep(1100);
        const needingFetch = await ingest(
          gateway,
          await signedBy(unknownKey.privateKey, unknownKey.jwk.kid as string, "ingest"),
        );
        expect([name, needingFetch.status]).toEqual([name, 503]);
        expect(needingFetch.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
        expect([name, (await ingest(gateway, await signed("ingest"))).status]).toEqual([name, 202]);
      }

      // Some keys good, some broken: the set is taken, the known kid keeps its last good copy.
      jwks.document = { keys: [{ ...PUBLIC_JWK, x: "AAAA" }, rotated.jwk, { ...brokenOnly.jwk, y: "AAAA" }] };
      await Bun.sleep(1100);
      expect(
        (await ingest(gateway, await signedBy(rotated.privateKey, "e2e-rotated", "ingest"))).status,
      ).toBe(202);
      expect((await ingest(gateway, await signed("ingest"))).status).toBe(202);
      const naming = await signedBy(brokenOnly.privateKey, "e2e-broken", "ingest subscribe");
      const refused = await realResponse(await ingest(gateway, naming));
      expect([refused.status, JSON.parse(refused.body)]).toEqual([
        503,
        { error: "unavailable", message: "token signing keys unavailable" },
      ]);
      expect(refused.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
      expect(responseProblems("POST", "/v1/events", refused)).toEqual([]);
      const early = socket(naming);
      expect(await early.next((frame) => frame.type === "error")).toMatchObject({ code: "unavailable" });
      expect((await early.closed).code).toBe(1013);
      // A kid the set does not publish at all is still the token's fault.
      await Bun.sleep(1100);
      const unknown = await ingest(gateway, await signedBy(unknownKey.privateKey, "e2e-unknown", "ingest"));
      expect([unknown.status, await unknown.json()]).toEqual([
        401,
        { error: "unauthorized", message: "unknown token signing key" },
      ]);
    } finally {
      jwks.document = { keys: [PUBLIC_JWK] };
    }
  });

  test("a key replaced under the same kid: the first token it signed makes a fetch and is accepted, never 401", async () => {
    const replacing = await anotherKey(KID);
    jwks.up();
    expect((await ingest(gateway, await signed("ingest"))).status).toBe(202);
    jwks.document = { keys: [replacing.jwk] };
    try {
      const fetchesBefore = jwks.fetches;
      const response = await ingest(gateway, await signedBy(replacing.privateKey, KID, "ingest"));
      expect(response.status).toBe(202);
      expect(jwks.fetches).toBe(fetchesBefore + 1);
    } finally {
      jwks.document = { keys: [PUBLIC_JWK] };
    }
  });
});
