import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

/** Both engines close a connection that has not delivered a whole request within 10 s; allow for timer granularity. */
const BOUND_MS = 15_000;

/**
 * Opens a connection, sends `head` at once and then `rest` one byte every
 * 200 ms. Resolves with how long the gateway kept the connection open and
 * whether it answered anything.
 */
function trickle(port: number, head: string, rest: string): Promise<{ openMs: number; answered: boolean }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(port, "127.0.0.1");
    let answered = false;
    let sent = 0;
    socket.on("data", () => {
      answered = true;
    });
    socket.on("error", () => {});
    socket.write(head);
    const timer = setInterval(() => {
      if (sent < rest.length && !socket.destroyed) socket.write(rest.charAt(sent++));
    }, 200);
    const giveUp = setTimeout(() => socket.destroy(), BOUND_MS + 5000);
    socket.on("close", () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      resolve({ openMs: Date.now() - started, answered });
    });
  });
}

/** WS_IDLE_TIMEOUT_SEC in these tests: the least the setting takes. */
const IDLE_SEC = 8;

/**
 * Opens a WebSocket (token in the query) on a raw socket that then sends
 * nothing, not even the pongs the engine's pings ask for. Resolves with how
 * long after its last byte the gateway cut it, and whether the upgrade got 101.
 */
function silentWebSocket(port: number, bearer: string): Promise<{ openMs: number; upgraded: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      if (received.length < 64) received += chunk;
    });
    socket.on("error", () => {});
    socket.write(
      `GET /v1/ws?token=${bearer} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    const lastByte = Date.now();
    const giveUp = setTimeout(() => socket.destroy(), 3 * IDLE_SEC * 1000);
    socket.on("close", () => {
      clearTimeout(giveUp);
      resolve({ openMs: Date.now() - lastByte, upgraded: received.startsWith("HTTP/1.1 101") });
    });
  });
}

describe.each(RUNTIMES)("slow clients on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, WS_IDLE_TIMEOUT_SEC: String(IDLE_SEC) });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test(
    "headers or a body trickled byte by byte are cut off in bounded time while other requests keep being answered; a WebSocket that sends nothing is cut after WS_IDLE_TIMEOUT_SEC, not before",
    async () => {
      // Alongside the trickles, whose bound is longer: this costs the test no time of its own.
      const silent = silentWebSocket(gateway.port, await token("acme", ["subscribe"]));
      const ingestHead =
        `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await token("acme", ["ingest"])}\r\n` +
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
      const slowHeaders = Array.from({ length: 10 }, () =>
        trickle(gateway.port, "", `GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ${"a".repeat(500)}\r\n\r\n`),
      );
      const slowBodies = Array.from({ length: 10 }, () =>
        trickle(gateway.port, ingestHead, "[".repeat(1000)),
      );
      const probing = (async () => {
        for (let probe = 0; probe < 20; probe++) {
          expect((await fetch(`${gateway.url}/health/live`)).status).toBe(200);
          await Bun.sleep(250);
        }
      })();
      const results = await Promise.all([...slowHeaders, ...slowBodies]);
      await probing;
      for (const result of results) {
        expect(result.answered).toBe(false);
        expect(result.openMs).toBeLessThan(BOUND_MS);
      }
      // A body cut off by the engine is the client's fault: a 499, never a 5xx or an error in the log.
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      const serverErrors = metrics
        .split("\n")
        .filter((line) => line.startsWith("gateway_http_requests_total{") && line.includes('status="5'));
      expect(serverErrors).toEqual([]);
      expect(gateway.logs.filter((line) => line.level === "error")).toEqual([]);
      // Never before the setting (uWebSockets.js's 4 s timer ticks cut it up to 4 s early, once); on
      // Bun within a quarter more, on Node within 4 s more (docs/configuration.md).
      const cut = await silent;
      expect(cut.upgraded).toBe(true);
      expect(cut.openMs).toBeGreaterThanOrEqual(IDLE_SEC * 1000);
      expect(cut.openMs).toBeLessThanOrEqual(IDLE_SEC * 1000 + 4500);
    },
    BOUND_MS + 10_000,
  );
});
