import { expect, test } from "bun:test";
import { connect } from "node:net";
import type { HttpReply, HttpRequest } from "../../src/ports/transport.ts";
import { listen, splitUrl } from "../../src/transport/bun/adapter.ts";

/** The Bun adapter serving `http` on a free loopback port, WebSocket upgrades refused. */
function serve(http: (request: HttpRequest) => Promise<HttpReply>, httpIdleTimeoutSec?: number) {
  return listen<undefined>(
    {
      http,
      wsPath: "/ws",
      ws: {
        upgrade: async () => ({ accept: false, reply: { status: 400, body: "" } }),
        open() {},
        message() {},
        drain() {},
        close() {},
      },
    },
    {
      host: "127.0.0.1",
      port: 0,
      reusePort: false,
      maxBodyBytes: 1024,
      ws: { maxPayloadBytes: 1024, maxBackpressureBytes: 1024, idleTimeoutSec: 10 },
      httpIdleTimeoutSec,
    },
  );
}

test("path and query come out of any URL Bun hands us, with or without a host", () => {
  expect(splitUrl("http://gw:8080/v1/events?ack=none")).toEqual({ path: "/v1/events", search: "ack=none" });
  expect(splitUrl("http://gw/health")).toEqual({ path: "/health", search: "" });
  expect(splitUrl("http:///health")).toEqual({ path: "/health", search: "" });
  expect(splitUrl("/health?x=1")).toEqual({ path: "/health", search: "x=1" });
  expect(splitUrl("http://gw")).toEqual({ path: "/", search: "" });
});

test("a request without a query string gets an empty query that refuses changes (shared by such requests)", async () => {
  const seen: Array<{ ack: string | null; text: string; refused: boolean }> = [];
  const server = await serve(async (request) => {
    let refused = false;
    try {
      request.query.append("ack", "none");
    } catch {
      refused = true;
    }
    seen.push({ ack: request.query.get("ack"), text: request.query.toString(), refused });
    return { status: 204, body: "" };
  });
  try {
    await fetch(`http://127.0.0.1:${server.port}/v1/events`);
    await fetch(`http://127.0.0.1:${server.port}/v1/events`);
    await fetch(`http://127.0.0.1:${server.port}/v1/events?x=1`);
  } finally {
    server.stopListening();
  }
  expect(seen).toEqual([
    { ack: null, text: "", refused: true },
    { ack: null, text: "", refused: true },
    { ack: "none", text: "x=1&ack=none", refused: false },
  ]);
});

/** Sends one raw request; resolves with what came back once the answer ends (`until`), then how long the idle connection stayed open. */
function answerThenIdle(port: number, path: string, until: string, idleWaitMs: number) {
  return new Promise<{ answered: boolean; idleClosedAfterMs: number | undefined }>((resolve) => {
    let received = "";
    let answeredAt: number | undefined;
    const finish = (closedAt: number | undefined) => {
      clearTimeout(giveUp);
      resolve({
        answered: answeredAt !== undefined,
        idleClosedAfterMs:
          answeredAt !== undefined && closedAt !== undefined ? closedAt - answeredAt : undefined,
      });
    };
    const giveUp = setTimeout(() => {
      socket.end();
      finish(undefined);
    }, 5_000 + idleWaitMs);
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: gw\r\n\r\n`);
    });
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString();
      if (answeredAt === undefined && received.endsWith(until)) answeredAt = Date.now();
    });
    socket.on("close", () => finish(Date.now()));
    socket.on("error", () => {});
  });
}

test("a request without a body answered after the idle timeout gets its answer, and a server-ended stream's connection idles out", async () => {
  // The idle timeout shortened from 10 s: the answer comes after it, the idle connection closes at it.
  const server = await serve(async (request) => {
    if (request.path === "/stream")
      return {
        status: 200,
        body: "first\n",
        stream: { open: (stream) => setTimeout(() => stream.end(), 100), closed() {} },
      };
    await Bun.sleep(3_000);
    return { status: 200, body: "late" };
  }, 2);
  try {
    const [slow, stream] = await Promise.all([
      // Before: Bun's 10 s idle timer dropped the connection while the handler waited.
      answerThenIdle(server.port, "/slow", "late", 0),
      // Before: the stream's timeout of 0 stayed on the connection, which then never idled out.
      answerThenIdle(server.port, "/stream", "0\r\n\r\n", 1_000),
    ]);
    expect(slow.answered).toBe(true);
    expect(stream.answered).toBe(true);
    expect(stream.idleClosedAfterMs).toBeDefined();
    expect(stream.idleClosedAfterMs).toBeLessThan(4_000);
  } finally {
    server.stopListening();
  }
}, 15_000);
