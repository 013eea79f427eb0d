import { afterEach, describe, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { SignJWT } from "jose";
import { DEV_JWT_SECRET } from "../../src/config/config.ts";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";
import { killGroup, spawnGroup } from "../support/processes.ts";
import { tempDirs } from "../support/temp-dir.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import {
  connectSubscriber,
  publishEvent,
  RUNTIMES,
  type RunningGateway,
  runUntilExit,
  startGateway,
  TestSocket,
} from "./harness.ts";

/** Log folders of this file's gateways, removed after its tests. */
const tempDir = tempDirs();

const ROOT = new URL("../..", import.meta.url).pathname;

async function postEvent(gateway: RunningGateway, token: string): Promise<number> {
  const response = await fetch(`${gateway.url}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ type: "page_view", data: { url: "https://example.com/" } }),
  });
  return response.status;
}

const devToken = () => signDevToken({ secret: DEV_JWT_SECRET, tenant: "acme", scopes: ["ingest"] });
const tempLogDir = () => tempDir("edge-gateway-auth-");

describe.each(RUNTIMES)("auth fails closed on %s", (runtime) => {
  let gateway: RunningGateway | undefined;
  afterEach(async () => {
    await gateway?.stop("SIGKILL");
    gateway = undefined;
  });

  test("without JWT_SECRET or JWKS_URL the gateway refuses to start, naming JWT_SECRET", async () => {
    const { code, stderr } = await runUntilExit(runtime, { JWT_SECRET: "", JWKS_URL: "", PORT: "0" });
    expect(code).toBe(1);
    expect(stderr).toContain("JWT_SECRET");
  });

  test("a JWT_SECRET under 32 bytes is refused", async () => {
    const { code, stderr } = await runUntilExit(runtime, { JWT_SECRET: "x".repeat(31), PORT: "0" });
    expect(code).toBe(1);
    expect(stderr).toContain("JWT_SECRET: must be at least 32 bytes");
  });

  test("the public dev secret as JWT_SECRET is refused without DEV_MODE: anyone could sign tokens", async () => {
    const { code, stderr } = await runUntilExit(runtime, { JWT_SECRET: DEV_JWT_SECRET, PORT: "0" });
    expect(code).toBe(1);
    expect(stderr).toContain("JWT_SECRET: is the public dev secret");
  });

  test("with a real secret, a token signed with the public dev secret is refused", async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, LOCAL_LOG_DIR: tempLogDir() });
    expect(await postEvent(gateway, await devToken())).toBe(401);
  });

  test("DEV_MODE=true runs on the dev secret and says so", async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: "", DEV_MODE: "true", LOCAL_LOG_DIR: tempLogDir() });
    expect(await postEvent(gateway, await devToken())).toBe(202);
    expect(gateway.logs.some((entry) => String(entry.msg).startsWith("DEV_MODE"))).toBe(true);
  });
});

describe.each(RUNTIMES)("a token just past its exp, inside the clock-skew tolerance, on %s", (runtime) => {
  let gateway: RunningGateway | undefined;
  afterEach(async () => {
    await gateway?.stop("SIGKILL");
    gateway = undefined;
  });

  test("opens no WebSocket (an error frame and 4001, never connected) and no event stream (401)", async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, LOCAL_LOG_DIR: tempLogDir() });
    const expired = await token("acme", ["subscribe"], { ttlSec: -1 });
    const expiredError = { type: "error", code: "unauthorized", message: "token expired" };
    const atUpgrade = new TestSocket(`${gateway.wsUrl}?token=${expired}`);
    expect((await atUpgrade.closed).code).toBe(4001);
    expect(atUpgrade.frames).toEqual([expiredError]);
    const inFrame = new TestSocket(gateway.wsUrl);
    await inFrame.opened();
    inFrame.send({ type: "auth", token: expired });
    expect((await inFrame.closed).code).toBe(4001);
    expect(inFrame.frames).toEqual([expiredError]);
    const stream = await fetch(`${gateway.url}/v1/sse?channel=orders&token=${expired}`);
    expect(stream.status).toBe(401);
    expect(await stream.json()).toEqual({ error: "unauthorized", message: "token expired" });
  });
});

describe.each(RUNTIMES)("the claims a token is held to on %s", (runtime) => {
  let gateway: RunningGateway | undefined;
  afterEach(async () => {
    await gateway?.stop("SIGKILL");
    gateway = undefined;
  });

  test("iss and aud when JWT_ISSUER and JWT_AUDIENCE are set, nbf and iat not past JWT_CLOCK_SKEW_SEC in the future, HS256 only: else 401 naming why; scopes separated by spaces only", async () => {
    gateway = await startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      JWT_ISSUER: "https://idp.example",
      JWT_AUDIENCE: "edge-gateway",
      // An issuer whose clock runs a minute ahead: its fresh tokens pass; two minutes ahead is past the skew.
      JWT_CLOCK_SKEW_SEC: "90",
      LOCAL_LOG_DIR: tempLogDir(),
    });
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      sub: "e2e",
      tenant: "acme",
      scope: "ingest",
      iss: "https://idp.example",
      aud: "edge-gateway",
    };
    const signed = (extra: Record<string, unknown>, alg = "HS256") =>
      new SignJWT({ ...claims, exp: now + 3600, ...extra })
        .setProtectedHeader({ alg })
        .sign(new TextEncoder().encode(TEST_SECRET));
    const unsigned = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(
      JSON.stringify({ ...claims, exp: now + 3600 }),
    ).toString("base64url")}.`;
    const answers: Array<[string, number, string]> = [];
    for (const [name, candidate] of [
      ["good", await signed({})],
      ["another audience among them", await signed({ aud: ["other", "edge-gateway"] })],
      ["iat inside the skew", await signed({ iat: now + 2 })],
      ["no iss", await signed({ iss: undefined })],
      ["another iss", await signed({ iss: "https://other.example" })],
      ["another aud", await signed({ aud: "other" })],
      ["nbf in a minute", await signed({ nbf: now + 60 })],
      ["iat in a minute", await signed({ iat: now + 60 })],
      ["nbf in two minutes", await signed({ nbf: now + 120 })],
      ["iat in two minutes", await signed({ iat: now + 120 })],
      ["alg none", unsigned],
      ["HS512", await signed({}, "HS512")],
      // RFC 6749 §3.3: only SP separates; an issuer reads each of these as one scope, not as `ingest`.
      ["scope x<tab>ingest", await signed({ scope: "x\tingest" })],
      ["scope x<no-break space>ingest", await signed({ scope: "x\u00a0ingest" })],
    ] as const) {
      const response = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${candidate}`, "content-type": "application/json" },
        body: JSON.stringify({ type: "page_view", data: { url: "https://example.com/" } }),
      });
      const body = (await response.json()) as { message?: string };
      answers.push([name, response.status, body.message ?? ""]);
    }
    expect(answers).toEqual([
      ["good", 202, ""],
      ["another audience among them", 202, ""],
      ["iat inside the skew", 202, ""],
      ["no iss", 401, "token issuer not accepted"],
      ["another iss", 401, "token issuer not accepted"],
      ["another aud", 401, "token audience not accepted"],
      ["nbf in a minute", 202, ""],
      ["iat in a minute", 202, ""],
      ["nbf in two minutes", 401, "token not valid yet or has malformed claims"],
      ["iat in two minutes", 401, "token issued in the future"],
      ["alg none", 401, "unsupported token algorithm"],
      ["HS512", 401, "unsupported token algorithm"],
      ["scope x<tab>ingest", 403, "token lacks scope ingest"],
      ["scope x<no-break space>ingest", 403, "token lacks scope ingest"],
    ]);
  });
});

describe.each(RUNTIMES)("an auth frame on an authenticated socket on %s", (runtime) => {
  let gateway: RunningGateway | undefined;
  afterEach(async () => {
    await gateway?.stop("SIGKILL");
    gateway = undefined;
  });

  test("a token of another subject or tenant is refused (forbidden) and does not take the socket over: it stays on its tenant's channel", async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, LOCAL_LOG_DIR: tempLogDir() });
    const socket = await connectSubscriber(gateway, "acme", { sub: "alice", ttlSec: 600 });
    socket.send({ type: "subscribe", channel: "orders" });
    await socket.next((frame) => frame.type === "subscribed");
    for (const takeover of [
      await token("acme", ["subscribe"], { sub: "mallory", ttlSec: 3600 }),
      await token("beta", ["subscribe"], { sub: "alice", ttlSec: 3600 }),
    ]) {
      socket.send({ type: "auth", token: takeover });
      expect(await socket.next((frame) => frame.type === "error" || frame.type === "refreshed")).toEqual({
        type: "error",
        code: "forbidden",
        message: "a refreshed token must have the same tenant and subject",
      });
    }
    await publishEvent(gateway, "orders", { tenant: "beta" }, "beta");
    await publishEvent(gateway, "orders", { tenant: "acme" }, "acme");
    expect(await socket.next((frame) => frame.type === "event")).toMatchObject({
      channel: "orders",
      data: { tenant: "acme" },
    });
    expect(socket.socket.readyState).toBe(WebSocket.OPEN);
    socket.close();
  });
});

describe.each(RUNTIMES)("the RFC 6750 challenge of a 401 and a 403 on %s", (runtime) => {
  let gateway: RunningGateway | undefined;
  afterEach(async () => {
    await gateway?.stop("SIGKILL");
    gateway = undefined;
  });

  async function challenge(path: string, init: RequestInit = {}): Promise<[number, string | null]> {
    const response = await fetch(`${(gateway as RunningGateway).url}${path}`, init);
    await response.body?.cancel();
    return [response.status, response.headers.get("www-authenticate")];
  }

  test("no token: bare Bearer; a bad one: invalid_token; a missing scope or channel: insufficient_scope", async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, LOCAL_LOG_DIR: tempLogDir() });
    const post = (authorization?: string, body: unknown = { type: "page_view", data: {} }) => ({
      method: "POST",
      headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
      body: JSON.stringify(body),
    });
    expect(await challenge("/v1/events", post())).toEqual([401, "Bearer"]);
    expect(await challenge("/v1/events", post("Basic dXNlcjpwYXNz"))).toEqual([401, "Bearer"]);
    expect(await challenge("/v1/events", post("Bearer a b"))).toEqual([
      401,
      'Bearer error="invalid_request", error_description="malformed Authorization header"',
    ]);
    expect(await challenge("/v1/events", post(`Bearer ${await devToken()}`))).toEqual([
      401,
      'Bearer error="invalid_token", error_description="bad token signature"',
    ]);
    const expired = await token("acme", ["subscribe"], { ttlSec: -1 });
    expect(await challenge(`/v1/sse?channel=orders&token=${expired}`)).toEqual([
      401,
      'Bearer error="invalid_token", error_description="token expired"',
    ]);
    const subscriber = await token("acme", ["subscribe"], { channels: ["orders"] });
    expect(await challenge("/v1/events", post(`Bearer ${subscriber}`))).toEqual([
      403,
      'Bearer error="insufficient_scope", error_description="token lacks scope ingest", scope="ingest"',
    ]);
    expect(
      await challenge("/v1/channels/billing/events", { headers: { authorization: `Bearer ${subscriber}` } }),
    ).toEqual([
      403,
      'Bearer error="insufficient_scope", error_description="channel not allowed for this token"',
    ]);
  });
});

test.each(["bun run start", "npm start"])(
  "the README's start command (%s) asks for dev mode, so a first run works without a secret",
  async (line) => {
    // Its own process group: the package manager runs the gateway as a child, which a kill of the manager alone orphans.
    const child = spawnGroup(line.split(" "), {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? tmpdir(),
        HOST: "127.0.0.1",
        PORT: "0",
        LOCAL_LOG_DIR: tempLogDir(),
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const decoder = new TextDecoder();
      let output = "";
      const deadline = Date.now() + 20_000;
      for await (const chunk of child.stdout) {
        output += decoder.decode(chunk, { stream: true });
        if (output.includes('"msg":"listening"') || Date.now() > deadline) break;
      }
      expect(output).toContain('"msg":"listening"');
    } finally {
      await killGroup(child);
    }
  },
);
