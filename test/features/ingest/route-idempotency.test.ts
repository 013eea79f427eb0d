import { expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import type { Principal } from "../../../src/domain/principal.ts";
import { decodeBody } from "../../../src/features/ingest/body.ts";
import { ingestRoute } from "../../../src/features/ingest/route.ts";
import { Idempotency } from "../../../src/http/idempotency.ts";
import { RequestBodies } from "../../../src/http/request-bodies.ts";
import { MemoryIdempotencyStore } from "../../../src/infra/idempotency/memory-store.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import type { SinkMessage } from "../../../src/ports/sink.ts";
import type { HttpRequest } from "../../../src/ports/transport.ts";
import { ingestDependencies, ingestOptions } from "../../support/ingest-options.ts";

const principal: Principal = {
  subject: "s",
  tenant: "acme",
  scopes: new Set(["ingest"]),
  channels: undefined,
  expiresAt: Date.now() + 60_000,
};

function request(headers: Record<string, string>, body: Uint8Array): HttpRequest {
  return {
    method: "POST",
    path: "/v1/events",
    query: new URLSearchParams(),
    header: (name) => headers[name],
    headerNames: () => Object.keys(headers),
    remoteAddress: "127.0.0.1",
    body: async () => body,
  };
}

/** The ingest route with a real Idempotency over the memory store, and a queue that keeps what it is given. */
function setup() {
  const written: SinkMessage[] = [];
  const metrics = createMetrics("test", "0");
  const store = new MemoryIdempotencyStore({
    windowMs: 60_000,
    pendingMs: 5000,
    maxKeys: 100,
    maxBytes: 1 << 20,
  });
  const route = ingestRoute(
    ingestOptions(),
    ingestDependencies({
      authenticate: async () => principal,
      idempotency: new Idempotency(store, metrics),
      queue: {
        maxRecordBytes: 1_000_000,
        fits: () => true,
        enqueue: async (messages: SinkMessage[]) => {
          written.push(...messages);
        },
      },
      metrics,
      bodies: new RequestBodies(64 * 1024 * 1024, 1_000_000),
    }),
  );
  return { route, written };
}

test("Idempotency-Key: the same body sent plain and gzip-compressed at other levels is one request, in every body mode; another body still is a 422", async () => {
  const ndjson = `${JSON.stringify({ type: "click", id: "a", data: {} })}\n${JSON.stringify({ type: "click", data: { n: 1 } })}`;
  const modes: Array<[string, Record<string, string>, string]> = [
    ["application/json", {}, JSON.stringify([{ type: "click", data: { element: "buy" } }])],
    ["application/x-ndjson", {}, ndjson],
    [
      "application/cloudevents+json",
      {},
      JSON.stringify({ specversion: "1.0", id: "e1", source: "/s", type: "click", data: {} }),
    ],
    [
      "application/json",
      { "ce-specversion": "1.0", "ce-id": "e2", "ce-source": "/s", "ce-type": "click" },
      "{}",
    ],
  ];
  for (const [contentType, extra, text] of modes) {
    const { route, written } = setup();
    const plain = new TextEncoder().encode(text);
    const post = async (key: string, body: Uint8Array, encoding?: string) => {
      const headers: Record<string, string> = {
        "content-type": contentType,
        "idempotency-key": key,
        ...extra,
      };
      if (encoding !== undefined) headers["content-encoding"] = encoding;
      const reply = await route.handler(request(headers, body), {});
      return { status: reply.status, replayed: reply.headers?.["idempotency-replayed"], body: reply.body };
    };
    const first = await post("k", gzipSync(plain, { level: 1 }), "gzip");
    expect([contentType, first.status, first.replayed]).toEqual([contentType, 202, undefined]);
    for (const [body, encoding] of [
      [plain, undefined],
      [plain, "identity"],
      [gzipSync(plain, { level: 9 }), "gzip"],
      [gzipSync(plain, { level: 6 }), "x-gzip"],
    ] as const) {
      const again = await post("k", body, encoding);
      expect([contentType, encoding, again.status, again.replayed, again.body]).toEqual([
        contentType,
        encoding,
        202,
        "true",
        first.body,
      ]);
    }
    // Written once, as the body decodes.
    expect(written.length).toBe(
      (await decodeBody(plain, contentType, undefined, { maxBytes: 1e6, maxRecords: 1e3 })).length,
    );
    const other = await post("k", gzipSync(new TextEncoder().encode(`${text} `), { level: 1 }), "gzip").catch(
      (error) => error,
    );
    expect([contentType, other.code]).toEqual([contentType, "idempotency_key_reused"]);
  }
});

test("a malformed Idempotency-Key is a 400 from the headers alone: the body is never read (nor uploaded)", async () => {
  const { route } = setup();
  for (const key of ["a".repeat(256), '"open', "é"]) {
    let read = false;
    const refused = route.handler(
      {
        ...request({ "content-type": "application/json", "idempotency-key": key }, new Uint8Array()),
        body: async () => {
          read = true;
          return new TextEncoder().encode("{}");
        },
      },
      {},
    );
    await expect(refused).rejects.toMatchObject({ code: "bad_request" });
    expect([key, read]).toEqual([key, false]);
  }
});

test("records acknowledged past the deadline with an Idempotency-Key: the key's wait for their eventual answer holds no reference to the request's body", async () => {
  const written = Promise.withResolvers<void>();
  const metrics = createMetrics("test", "0");
  const store = new MemoryIdempotencyStore({
    windowMs: 60_000,
    pendingMs: 60_000,
    maxKeys: 100,
    maxBytes: 1 << 20,
  });
  const route = ingestRoute(
    ingestOptions({ ackTimeoutMs: 20 }),
    ingestDependencies({
      authenticate: async () => principal,
      idempotency: new Idempotency(store, metrics),
      queue: { maxRecordBytes: 1_000_000, fits: () => true, enqueue: () => written.promise },
      metrics,
      bodies: new RequestBodies(64 * 1024 * 1024, 1_000_000),
    }),
  );
  // Each body in a function of its own, so that nothing of this test's frame keeps it, nor the 503.
  const send = async (key: number) => {
    const bytes = new TextEncoder().encode(
      Array.from(
        { length: 50 },
        (_, n) => `{"type":"click","data":{"n":${n},"pad":"${"x".repeat(1000)}"}}`,
      ).join("\n"),
    );
    const body = new WeakRef(bytes.buffer);
    const headers = { "content-type": "application/x-ndjson", "idempotency-key": `key-${key}` };
    const late = await Promise.resolve(route.handler(request(headers, bytes), {})).catch(
      (error: unknown) => error as { status?: number; eventualAnswer?: unknown },
    );
    if (late === null || typeof late !== "object" || !("eventualAnswer" in late))
      throw new Error("expected the 503");
    return body;
  };
  const bodies = [];
  for (let key = 0; key < 20; key++) bodies.push(await send(key));
  for (let round = 0; round < 5; round++) {
    Bun.gc(true);
    await Bun.sleep(1);
  }
  // The collector scans the stack conservatively: a stale pointer may keep a body or two.
  expect(bodies.filter((body) => body.deref() === undefined).length).toBeGreaterThanOrEqual(15);
  written.resolve();
});
