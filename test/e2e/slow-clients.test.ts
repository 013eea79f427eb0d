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

describe.each(RUNTIMES)("slow clients on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test(
    "headers or a body trickled byte by byte are cut off in bounded time while other requests keep being answered",
    async () => {
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
    },
    BOUND_MS + 10_000,
  );
});
