import { expect, test } from "bun:test";
import { GatewayError } from "../../../src/domain/errors.ts";
import type { Principal } from "../../../src/domain/principal.ts";
import { ingestRoute } from "../../../src/features/ingest/route.ts";
import { MemoryRecordIdStore } from "../../../src/infra/idempotency/memory-record-ids.ts";
import type { RecordIdStore } from "../../../src/ports/record-ids.ts";
import { RecordsRefused, type RefusedRecord, type SinkMessage } from "../../../src/ports/sink.ts";
import type { HttpRequest } from "../../../src/ports/transport.ts";
import { ingestDependencies, ingestOptions } from "../../support/ingest-options.ts";

const principal = (tenant: string): Principal => ({
  subject: "s",
  tenant,
  scopes: new Set(["ingest"]),
  channels: undefined,
  expiresAt: Date.now() + 60_000,
});

function request(tenant: string, body: string): HttpRequest {
  return {
    method: "POST",
    path: "/v1/events",
    query: new URLSearchParams(),
    header: (name) =>
      name === "content-type" ? "application/x-ndjson" : name === "x-tenant" ? tenant : undefined,
    headerNames: () => ["content-type", "x-tenant"],
    remoteAddress: "127.0.0.1",
    body: async () => new TextEncoder().encode(body),
  };
}

/** An NDJSON request of `bytes`; not made in an async function, whose whole scope its closure would keep on Bun. */
function requestWithBody(bytes: Uint8Array): HttpRequest {
  return { ...request("acme", ""), body: () => Promise.resolve(bytes) };
}

/** The ingest route with a queue that keeps what it is given, or fails while `failing`. */
/** The route for tenant acme, whose records are written once `written` settles (past its 20 ms deadline). */
function lateRoute(written: Promise<void>) {
  return ingestRoute(
    ingestOptions({ ackTimeoutMs: 20 }),
    ingestDependencies({
      authenticate: async () => principal("acme"),
      queue: { maxRecordBytes: 1_000_000, fits: () => true, enqueue: () => written },
      dedup: { windowMs: () => undefined, store: new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 10 }) },
    }),
  );
}

function setup(store: RecordIdStore, dedupTenants: string[]) {
  const written: SinkMessage[] = [];
  const queue = {
    failing: false,
    /** Ids Kafka refuses as too large: the others of the request are written, then the refusal names these. */
    tooLarge: new Set<string>(),
    /** Ids dropped unwritten when Kafka refused the topic while the request's others were written. */
    unwritten: new Set<string>(),
    maxRecordBytes: 1_000_000,
    fits: () => true,
    enqueue: async (messages: SinkMessage[]) => {
      if (queue.failing) throw new GatewayError("unavailable", "Kafka is down");
      const refused: RefusedRecord[] = [];
      messages.forEach((message, position) => {
        const { id } = JSON.parse(message.value);
        if (queue.tooLarge.has(id))
          refused.push({
            position,
            error: new GatewayError("record_too_large", "Kafka refused a record as too large"),
          });
        else if (queue.unwritten.has(id))
          refused.push({
            position,
            error: new GatewayError("unavailable", "Kafka refuses writes to this topic", {
              "retry-after": "3",
            }),
          });
        else written.push(message);
      });
      if (refused.length > 0) throw new RecordsRefused(refused);
    },
  };
  const route = ingestRoute(
    ingestOptions(),
    ingestDependencies({
      authenticate: async (req) => principal(req.header("x-tenant") as string),
      queue,
      dedup: { windowMs: (tenant) => (dedupTenants.includes(tenant) ? 60_000 : undefined), store },
    }),
  );
  const post = async (tenant: string, ...ids: Array<string | undefined>) => {
    const body = ids.map((id) => JSON.stringify({ type: "click", id, data: {} })).join("\n");
    const reply = await route.handler(request(tenant, body), {});
    return { status: reply.status, body: JSON.parse(reply.body as string) };
  };
  const ids = () => written.map((message) => JSON.parse(message.value).id as string);
  return { route, post, queue, ids };
}

test("a tenant without deduplication: the store is never called, every copy is written, the answer is unchanged", async () => {
  const untouchable: RecordIdStore = {
    claim: () => Promise.reject(new Error("called")),
    confirm: () => Promise.reject(new Error("called")),
    release: () => Promise.reject(new Error("called")),
    forget: () => Promise.reject(new Error("called")),
    close: async () => {},
  };
  const { post, ids } = setup(untouchable, ["other"]);
  expect(await post("acme", "a", "a")).toEqual({
    status: 202,
    body: { accepted: 2, rejected: 0, errors: [] },
  });
  expect(ids()).toEqual(["a", "a"]);
});

test("a duplicate-only request writes nothing; a failed write frees its ids for the retry", async () => {
  const { post, queue, ids } = setup(new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 }), ["acme"]);
  expect((await post("acme", "a", undefined)).body).toEqual({ accepted: 2, rejected: 0, errors: [] });
  expect(await post("acme", "a")).toEqual({
    status: 202,
    body: { accepted: 1, rejected: 0, errors: [], duplicates: [{ index: 0, id: "a" }] },
  });
  queue.failing = true;
  await expect(post("acme", "b", "c")).rejects.toThrow("Kafka is down");
  queue.failing = false;
  expect((await post("acme", "b", "c")).body).toEqual({ accepted: 2, rejected: 0, errors: [] });
  expect(ids().filter((id) => id.length === 1)).toEqual(["a", "b", "c"]);
  expect(ids().length).toBe(4);
});

test("Kafka refuses one record as too large and writes the others: a 202 naming it at its index in the request, beside the records rejected up front and the duplicates", async () => {
  const { route, post, queue, ids } = setup(new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 }), [
    "acme",
  ]);
  queue.tooLarge.add("big");
  const lines = [
    "not json",
    ...["a", "a", "big", "c"].map((id) => JSON.stringify({ type: "click", id, data: {} })),
  ];
  const reply = await route.handler(request("acme", lines.join("\n")), {});
  expect([reply.status, JSON.parse(reply.body as string)]).toEqual([
    202,
    {
      accepted: 3,
      rejected: 2,
      errors: [
        { index: 0, reason: expect.any(String), code: "malformed_json" },
        { index: 3, reason: "Kafka refused a record as too large", code: "record_too_large" },
      ],
      duplicates: [{ index: 2, id: "a" }],
    },
  ]);
  expect(ids()).toEqual(["a", "c"]);
  // The client shrinks it and resends it under its id: written (its claim was freed), the others still duplicates.
  queue.tooLarge.clear();
  expect(await post("acme", "big", "a", "c")).toEqual({
    status: 202,
    body: {
      accepted: 3,
      rejected: 0,
      errors: [],
      duplicates: [
        { index: 1, id: "a" },
        { index: 2, id: "c" },
      ],
    },
  });
  expect(ids()).toEqual(["a", "c", "big"]);
  queue.tooLarge.add("big");
  // Every record refused: nothing was written, the request is refused as a whole (413), as before.
  await expect(post("other", "big")).rejects.toMatchObject({ code: "record_too_large", status: 413 });
});

test("Kafka refuses the topic after writing part of a request: a 202 with Retry-After naming the unwritten ones (record_unavailable); resent under the same ids, they are written once", async () => {
  const { route, post, queue, ids } = setup(new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 }), [
    "acme",
  ]);
  queue.unwritten.add("b");
  queue.unwritten.add("d");
  const body = ["a", "b", "c", "d"].map((id) => JSON.stringify({ type: "click", id, data: {} })).join("\n");
  const reply = await route.handler(request("acme", body), {});
  expect([reply.status, reply.headers?.["retry-after"], JSON.parse(reply.body as string)]).toEqual([
    202,
    "3",
    {
      accepted: 2,
      rejected: 2,
      errors: [
        { index: 1, reason: "Kafka refuses writes to this topic", code: "record_unavailable" },
        { index: 3, reason: "Kafka refuses writes to this topic", code: "record_unavailable" },
      ],
    },
  ]);
  queue.unwritten.clear();
  // A client that follows the answer resends b and d (a client resending all four is not harmed either).
  expect((await post("acme", "b", "d")).body).toEqual({ accepted: 2, rejected: 0, errors: [] });
  expect((await post("acme", "a", "b", "c", "d")).body.duplicates.length).toBe(4);
  expect(ids().sort()).toEqual(["a", "b", "c", "d"]);
  // None written: the whole request gets the 503, as before.
  queue.unwritten.add("e");
  await expect(post("acme", "e")).rejects.toMatchObject({ code: "unavailable", status: 503 });
});

test("records acknowledged past the deadline: the 503 carries the 202 they get once written, for Idempotency-Key to keep", async () => {
  const written = Promise.withResolvers<void>();
  const route = lateRoute(written.promise);
  const late = await Promise.resolve(route.handler(request("acme", '{"type":"click","data":{}}'), {})).catch(
    (error: unknown) => error as GatewayError,
  );
  if (!(late instanceof GatewayError)) throw new Error("expected the 503");
  expect(late.code).toBe("unavailable");
  written.resolve();
  const answer = (await late.eventualAnswer) as { status: number; body: string };
  expect(answer.status).toBe(202);
  expect(JSON.parse(answer.body)).toEqual({ accepted: 1, rejected: 0, errors: [] });
});

test("records acknowledged past the deadline: the eventual 202 waiting for Kafka holds no reference to the request's body or its records", async () => {
  const written = Promise.withResolvers<void>();
  const route = lateRoute(written.promise);
  // Each body in a function of its own, so that nothing of this test's frame keeps it; nor the 503
  // itself, dropped once written (what a retry's Idempotency-Key gets is its eventual answer).
  const send = async () => {
    const bytes = new TextEncoder().encode(
      Array.from(
        { length: 50 },
        (_, n) => `{"type":"click","data":{"n":${n},"pad":"${"x".repeat(1000)}"}}`,
      ).join("\n"),
    );
    const body = new WeakRef(bytes.buffer);
    const late = await Promise.resolve(route.handler(requestWithBody(bytes), {})).catch(
      (error: unknown) => error as GatewayError,
    );
    if (!(late instanceof GatewayError)) throw new Error("expected the 503");
    return { body, eventualAnswer: late.eventualAnswer };
  };
  const sent = [];
  for (let request = 0; request < 20; request++) sent.push(await send());
  for (let round = 0; round < 5; round++) {
    Bun.gc(true);
    await Bun.sleep(1);
  }
  // The collector scans the stack conservatively: a stale pointer may keep a body or two.
  expect(sent.filter(({ body }) => body.deref() === undefined).length).toBeGreaterThanOrEqual(15);
  written.resolve();
  const answer = (await sent[0]?.eventualAnswer) as { status: number; body: string };
  expect(JSON.parse(answer.body)).toEqual({ accepted: 50, rejected: 0, errors: [] });
});

test("a CloudEvent is a duplicate only of one with the same source and id: another source's event with that id is written", async () => {
  const { route, ids } = setup(new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 }), ["acme"]);
  // CloudEvents 1.0: `id` is unique within its `source`; sources often count from 1 on their own.
  const event = (source: string) => ({ specversion: "1.0", type: "click", source, id: "1", data: {} });
  const batch = (...sources: string[]): HttpRequest => ({
    ...request("acme", JSON.stringify(sources.map(event))),
    header: (name) =>
      name === "content-type"
        ? "application/cloudevents-batch+json"
        : name === "x-tenant"
          ? "acme"
          : undefined,
  });
  const post = async (...sources: string[]) => {
    const reply = await route.handler(batch(...sources), {});
    return JSON.parse(reply.body as string);
  };
  expect(await post("/sensor/a", "/sensor/b", "/sensor/a")).toEqual({
    accepted: 3,
    rejected: 0,
    errors: [],
    duplicates: [{ index: 2, id: "1" }],
  });
  expect(await post("/sensor/b", "/sensor/c")).toEqual({
    accepted: 2,
    rejected: 0,
    errors: [],
    duplicates: [{ index: 0, id: "1" }],
  });
  // A plain record is no CloudEvent of any source: its id "1" is its own.
  const plain = await route.handler(
    request("acme", JSON.stringify({ type: "click", id: "1", data: {} })),
    {},
  );
  expect(JSON.parse(plain.body as string)).toEqual({ accepted: 1, rejected: 0, errors: [] });
  expect(ids()).toEqual(["1", "1", "1", "1"]);
});

test("a request of duplicates only settles its claim at once: nothing is left held for it", async () => {
  const store = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 });
  const { post } = setup(store, ["acme"]);
  await post("acme", "a", "b");
  const held = store.size.requests;
  for (let retry = 0; retry < 5; retry++)
    expect((await post("acme", "a", "b")).body.duplicates.length).toBe(2);
  expect(store.size.requests).toBe(held);
});

test("refused records whose ids the store could not free: the request's claims are released, so their resend under the same ids is written, never a duplicate unwritten", async () => {
  const memory = new MemoryRecordIdStore({ pendingMs: 60_000, maxIds: 100 });
  // Redis failing for the one call that frees the refused ids (it answers false).
  const store: RecordIdStore = {
    claim: (...args) => memory.claim(...args),
    confirm: (...args) => memory.confirm(...args),
    release: (...args) => memory.release(...args),
    forget: async () => false,
    close: () => memory.close(),
  };
  const { post, queue, ids } = setup(store, ["acme"]);
  queue.tooLarge.add("big");
  expect((await post("acme", "a", "big")).body.errors).toEqual([
    { index: 1, reason: "Kafka refused a record as too large", code: "record_too_large" },
  ]);
  queue.tooLarge.clear();
  expect((await post("acme", "big")).body).toEqual({ accepted: 1, rejected: 0, errors: [] });
  expect(ids()).toEqual(["a", "big"]);
});
