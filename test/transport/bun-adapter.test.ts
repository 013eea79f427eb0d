import { expect, test } from "bun:test";
import { splitUrl } from "../../src/transport/bun/adapter.ts";

test("path and query come out of any URL Bun hands us, with or without a host", () => {
  expect(splitUrl("http://gw:8080/v1/events?ack=none")).toEqual({ path: "/v1/events", search: "ack=none" });
  expect(splitUrl("http://gw/health")).toEqual({ path: "/health", search: "" });
  expect(splitUrl("http:///health")).toEqual({ path: "/health", search: "" });
  expect(splitUrl("/health?x=1")).toEqual({ path: "/health", search: "x=1" });
  expect(splitUrl("http://gw")).toEqual({ path: "/", search: "" });
});

test("a request without a query string gets an empty query that refuses changes (shared by such requests)", async () => {
  const { listen } = await import("../../src/transport/bun/adapter.ts");
  const seen: Array<{ ack: string | null; text: string; refused: boolean }> = [];
  const server = await listen(
    {
      http: async (request) => {
        let refused = false;
        try {
          request.query.append("ack", "none");
        } catch {
          refused = true;
        }
        seen.push({ ack: request.query.get("ack"), text: request.query.toString(), refused });
        return { status: 204, body: "" };
      },
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
    },
  );
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
