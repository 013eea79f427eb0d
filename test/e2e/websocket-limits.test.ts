import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket } from "./harness.ts";

/** Sends a WebSocket upgrade by hand and returns the response head (status line and headers). */
async function rawUpgrade(gateway: RunningGateway, query = ""): Promise<string> {
  const socket = net.connect(gateway.port, "127.0.0.1");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    socket.write(
      `GET /v1/ws${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    return await new Promise<string>((resolve, reject) => {
      let head = "";
      socket.on("data", (chunk: Buffer) => {
        head += chunk.toString("latin1");
        const end = head.indexOf("\r\n\r\n");
        if (end >= 0) resolve(head.slice(0, end).toLowerCase());
      });
      socket.once("close", () => reject(new Error(`closed before a response: ${head}`)));
    });
  } finally {
    socket.destroy();
  }
}

/** "connected" once the socket is authenticated, else the close code it got. */
async function outcome(socket: TestSocket): Promise<"connected" | number> {
  return Promise.race([
    socket.closed.then((close) => close.code),
    socket
      .next((frame) => frame.type === "connected", 10_000)
      .then(
        () => "connected" as const,
        () => -1,
      ),
  ]);
}

async function idleSocket(gateway: RunningGateway): Promise<TestSocket> {
  const socket = new TestSocket(gateway.wsUrl);
  await socket.opened();
  return socket;
}

async function authenticated(gateway: RunningGateway, tenant: string): Promise<TestSocket> {
  const socket = new TestSocket(`${gateway.wsUrl}?token=${await token(tenant, ["subscribe"])}`);
  expect(await outcome(socket)).toBe("connected");
  return socket;
}

describe.each(RUNTIMES)("WebSocket connection caps on %s", (runtime) => {
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "ws-limits-"));
  });
  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  const start = (env: Record<string, string>) =>
    startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: folder,
      WS_CONNECTS_PER_SEC_PER_IP: "100000",
      WS_AUTH_TIMEOUT_MS: "20000",
      ...env,
    });

  test("sockets that never authenticate do not take the slots of authenticated ones", async () => {
    const gateway = await start({ WS_MAX_CONNECTIONS: "5" });
    const sockets: TestSocket[] = [];
    try {
      for (let i = 0; i < 5; i++) sockets.push(await idleSocket(gateway));
      for (let i = 0; i < 5; i++) sockets.push(await authenticated(gateway, "acme"));
      // All five authenticated slots are taken: the next upgrade is refused.
      expect(await rawUpgrade(gateway, `?token=${await token("acme", ["subscribe"])}`)).toMatch(
        /^http\/1\.1 503[\s\S]*retry-after: \d+/,
      );
      // Upgrades are requests of /v1/ws by status: the refusal reaches the 5xx ratio alert.
      const scraped = await (await fetch(`${gateway.url}/metrics`)).text();
      const upgrades = (status: number) =>
        scraped
          .split("\n")
          .find((line) =>
            line.startsWith(`gateway_http_requests_total{route="/v1/ws",method="GET",status="${status}"} `),
          );
      expect([upgrades(101), upgrades(503)]).toEqual([
        'gateway_http_requests_total{route="/v1/ws",method="GET",status="101"} 10',
        'gateway_http_requests_total{route="/v1/ws",method="GET",status="503"} 1',
      ]);
    } finally {
      for (const socket of sockets) socket.close();
      await gateway.stop("SIGKILL");
    }
  }, 30_000);

  test("WS_MAX_UNAUTHENTICATED bounds pending sockets with a 503 and Retry-After", async () => {
    const gateway = await start({ WS_MAX_CONNECTIONS: "5", WS_MAX_UNAUTHENTICATED: "3" });
    const sockets: TestSocket[] = [];
    try {
      for (let i = 0; i < 3; i++) sockets.push(await idleSocket(gateway));
      expect(await rawUpgrade(gateway)).toMatch(/^http\/1\.1 503[\s\S]*retry-after: \d+/);
      // A pending socket that closes frees its slot.
      const leaving = sockets.shift() as TestSocket;
      leaving.close();
      await leaving.closed;
      // Freed once the gateway has handled the close: a new socket then connects.
      let replacement: TestSocket | undefined;
      await waitUntil(async () => {
        const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
        if ((await outcome(socket)) === "connected") replacement = socket;
        else socket.close();
        return replacement !== undefined;
      }, "a new socket in the freed slot");
      sockets.push(replacement as TestSocket);
    } finally {
      for (const socket of sockets) socket.close();
      await gateway.stop("SIGKILL");
    }
  }, 30_000);

  test("10 sockets authenticating at once with room for 2: exactly 2 connect, the rest close 1013", async () => {
    const gateway = await start({ WS_MAX_CONNECTIONS: "2" });
    try {
      const bearer = await token("acme", ["subscribe"]);
      // All ten open first, then authenticate together: every one races for the two slots
      // (with tokens in the URL a late upgrade could be refused before opening, a 1006).
      const sockets = await Promise.all(Array.from({ length: 10 }, () => idleSocket(gateway)));
      for (const socket of sockets) socket.send({ type: "auth", token: bearer });
      const outcomes = await Promise.all(sockets.map(outcome));
      expect(outcomes.filter((result) => result === "connected").length).toBe(2);
      expect(outcomes.filter((result) => result !== "connected")).toEqual(Array(8).fill(1013));
      for (const socket of sockets) socket.close();
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 30_000);

  test("per-tenant cap 2, 10 sockets of the tenant authenticating at once: exactly 2 connect", async () => {
    const gateway = await start({ WS_MAX_CONNECTIONS_PER_TENANT: "2" });
    try {
      const bearer = await token("acme", ["subscribe"]);
      const sockets = Array.from({ length: 10 }, () => new TestSocket(`${gateway.wsUrl}?token=${bearer}`));
      const outcomes = await Promise.all(sockets.map(outcome));
      expect(outcomes.filter((result) => result === "connected").length).toBe(2);
      expect(outcomes.filter((result) => result !== "connected")).toEqual(Array(8).fill(1013));
      const refused = sockets.find((socket) => socket.frames.some((frame) => frame.type === "error"));
      expect(refused?.frames.find((frame) => frame.type === "error")).toMatchObject({ code: "rate_limited" });
      // Another tenant is not affected.
      (await authenticated(gateway, "globex")).close();
      for (const socket of sockets) socket.close();
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 30_000);
});
