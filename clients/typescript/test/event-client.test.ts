import { heapStats } from "bun:jsc";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileQueue } from "../src/file-queue.js";
import {
  browserQueue,
  type DeliveryFailure,
  EventClient,
  type EventClientOptions,
  type FetchLike,
  type IdbFactoryLike,
  indexedDbQueue,
  KEEPALIVE_BODY_LIMIT,
  localStorageQueue,
  type QueueStorage,
} from "../src/index.js";
import { memoryStorage } from "./support/memory-storage.js";

interface Sent {
  at: number;
  headers: Record<string, string>;
  body: string;
  keepalive: boolean;
}

/** A fetch that records each request and answers from a script (the last answer repeats). */
function scriptedFetch(answers: Array<() => Response | Promise<Response>>) {
  const sent: Sent[] = [];
  let call = 0;
  const fetch = async (_url: string, init: RequestInit) => {
    const headers = init.headers as Record<string, string>;
    let body = init.body as string | Uint8Array;
    if (headers["content-encoding"] === "gzip") body = Bun.gunzipSync(body as Uint8Array<ArrayBuffer>);
    sent.push({
      at: Date.now(),
      headers,
      body: typeof body === "string" ? body : new TextDecoder().decode(body),
      keepalive: init.keepalive === true,
    });
    const answer = answers[Math.min(call++, answers.length - 1)] as () => Response | Promise<Response>;
    return answer();
  };
  return { fetch, sent };
}

const accepted = () => Response.json({ accepted: 1, rejected: 0, errors: [] }, { status: 202 });
const idsOf = (request: Sent) => request.body.split("\n").map((line) => JSON.parse(line).id as string);

function client(options: Partial<EventClientOptions> & Pick<EventClientOptions, "fetch">) {
  return new EventClient({ url: "http://gateway.test/", token: "t", gzip: false, ...options });
}

const click = (n: number) => ({ type: "click", data: { element: `e${n}` } });

describe("EventClient batching", () => {
  test("a full batch by count goes at once; the rest waits for the timer", async () => {
    const { fetch, sent } = scriptedFetch([accepted]);
    const events = client({ fetch, maxBatchRecords: 3, flushIntervalMs: 150 });
    const start = Date.now();
    for (let i = 0; i < 7; i++) events.enqueue(click(i));
    await Bun.sleep(50);
    expect(sent.map((request) => request.body.split("\n").length)).toEqual([3, 3]);
    await Bun.sleep(200);
    expect(sent.length).toBe(3);
    expect((sent[2] as Sent).at - start).toBeGreaterThanOrEqual(140);
    expect(sent.flatMap(idsOf).length).toBe(7);
    expect(new Set(sent.flatMap(idsOf)).size).toBe(7);
    await events.close();
  });

  test("batches by bytes hold at most maxBatchBytes of NDJSON", async () => {
    const { fetch, sent } = scriptedFetch([accepted]);
    const events = client({ fetch, maxBatchBytes: 300 });
    for (let i = 0; i < 20; i++) events.enqueue(click(i));
    await events.flush();
    expect(sent.length).toBeGreaterThan(4);
    for (const request of sent)
      expect(new TextEncoder().encode(request.body).byteLength).toBeLessThanOrEqual(300);
    expect(sent.flatMap(idsOf).length).toBe(20);
    await events.close();
  });

  test("each record gets a UUIDv7 id unless it has one; the URL gets /v1/events once", async () => {
    // Asserted after the flush: an expect() inside the fake fetch would throw into the client, which retries.
    const requests: Array<{ url: string; authorization: string | undefined }> = [];
    const events = new EventClient({
      url: "http://gateway.test//",
      token: async () => "from-callback",
      fetch: async (target, init) => {
        requests.push({ url: target, authorization: (init.headers as Record<string, string>).authorization });
        return accepted();
      },
    });
    const generated = events.enqueue(click(1)) as string;
    expect(generated).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(events.enqueue({ ...click(2), id: "mine" })).toBe("mine");
    await events.flush();
    expect(requests).toEqual([
      { url: "http://gateway.test/v1/events", authorization: "Bearer from-callback" },
    ]);
    expect(events.stats).toMatchObject({ accepted: 2, retries: 0 });
    await events.close();
  });

  test("a full buffer drops the newest records and counts them", async () => {
    const { fetch } = scriptedFetch([() => new Promise<Response>(() => {})]);
    const events = client({ fetch, maxBatchRecords: 2, maxBufferRecords: 4 });
    const results = Array.from({ length: 9 }, (_, i) => events.enqueue(click(i)));
    // Two went into the (hanging) request, four wait in the buffer, three had no room.
    expect(results.filter((id) => id === undefined).length).toBe(3);
    expect(results.slice(-3)).toEqual([undefined, undefined, undefined]);
    expect(events.stats).toMatchObject({ buffered: 4, dropped: 3 });
    await events.close({ timeoutMs: 50 });
    expect(events.stats.dropped).toBe(9);
  });

  test("a record larger than a batch is refused at once", () => {
    const events = client({ fetch: scriptedFetch([accepted]).fetch, maxBatchBytes: 100 });
    expect(() => events.enqueue({ type: "click", data: { element: "x".repeat(200) } })).toThrow(RangeError);
    expect(() => events.enqueue({ type: "click" } as never)).toThrow(TypeError);
  });

  test("gzip where CompressionStream exists, above gzipMinBytes", async () => {
    const { fetch, sent } = scriptedFetch([accepted]);
    const events = new EventClient({ url: "http://gateway.test", token: "t", fetch, gzipMinBytes: 200 });
    events.enqueue(click(0));
    await events.flush();
    for (let i = 0; i < 20; i++) events.enqueue(click(i));
    await events.flush();
    expect(sent.map((request) => request.headers["content-encoding"])).toEqual([undefined, "gzip"]);
    expect(idsOf(sent[1] as Sent).length).toBe(20);
    await events.close();
  });
});

describe("EventClient retries", () => {
  test("429 and 503 wait for Retry-After and resend the same bytes", async () => {
    const { fetch, sent } = scriptedFetch([
      () => new Response("{}", { status: 429, headers: { "retry-after": "1" } }),
      () => new Response("{}", { status: 503, headers: { "retry-after": "1" } }),
      accepted,
    ]);
    const events = client({ fetch, retry: { initialDelayMs: 10 } });
    for (let i = 0; i < 3; i++) events.enqueue(click(i));
    await events.flush();
    expect(sent.length).toBe(3);
    expect((sent[1] as Sent).at - (sent[0] as Sent).at).toBeGreaterThanOrEqual(1000);
    expect((sent[2] as Sent).at - (sent[1] as Sent).at).toBeGreaterThanOrEqual(1000);
    expect(new Set(sent.map((request) => request.body)).size).toBe(1);
    expect(events.stats).toMatchObject({ retries: 2, accepted: 3, dropped: 0 });
    await events.close();
  });

  test("every attempt of a batch carries the batch's one Idempotency-Key (an sf-string); the next batch has its own", async () => {
    const { fetch, sent } = scriptedFetch([
      () => new Response("{}", { status: 503, headers: { "retry-after": "1" } }),
      accepted,
    ]);
    const events = client({ fetch, maxBatchRecords: 2, retry: { initialDelayMs: 10 } });
    for (let i = 0; i < 2; i++) events.enqueue(click(i));
    await events.flush();
    events.enqueue(click(2));
    await events.flush();
    const keys = sent.map((request) => request.headers["idempotency-key"]);
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$/);
    expect(keys[1]).toBe(keys[0] as string);
    expect(keys[2]).not.toBe(keys[0] as string);
    await events.close();
  });

  test("a 422 idempotency_key_reused (a stored batch whose bytes changed) is sent again under a new key, not refused", async () => {
    const { fetch, sent } = scriptedFetch([
      () => Response.json({ error: "idempotency_key_reused", message: "reused" }, { status: 422 }),
      accepted,
    ]);
    const events = client({ fetch, retry: { initialDelayMs: 10 } });
    events.enqueue(click(1));
    await events.flush();
    expect(sent.length).toBe(2);
    expect(sent[1]?.body).toBe(sent[0]?.body as string);
    expect(sent[1]?.headers["idempotency-key"]).not.toBe(sent[0]?.headers["idempotency-key"] as string);
    expect(events.stats).toMatchObject({ accepted: 1, rejected: 0 });
  });

  test("409 (a record with the same id, or the same Idempotency-Key, being written) is waited out and resent", async () => {
    const inFlight = { error: "duplicate_in_flight", message: "being written" };
    const { fetch, sent } = scriptedFetch([
      () => Response.json(inFlight, { status: 409, headers: { "retry-after": "1" } }),
      () =>
        Response.json(
          { accepted: 2, rejected: 0, errors: [], duplicates: [{ index: 0, id: "a" }] },
          { status: 202 },
        ),
    ]);
    const failures: DeliveryFailure[] = [];
    const events = client({
      fetch,
      retry: { initialDelayMs: 10 },
      onError: (failure) => failures.push(failure),
    });
    events.enqueue({ ...click(0), id: "a" });
    events.enqueue(click(1));
    await events.flush();
    expect(sent.length).toBe(2);
    expect((sent[1] as Sent).at - (sent[0] as Sent).at).toBeGreaterThanOrEqual(1000);
    expect((sent[1] as Sent).body).toBe((sent[0] as Sent).body);
    // A duplicate is acknowledged: the gateway already holds that record.
    expect(events.stats).toMatchObject({ retries: 1, accepted: 2, rejected: 0, dropped: 0 });
    expect(failures).toEqual([]);
    await events.close();
  });

  test("a 409 spends no attempt: a batch the gateway is still writing past maxAttempts answers is not given up on", async () => {
    // The first answer came at the ack deadline; the gateway keeps the key pending until the records land.
    const late = { error: "unavailable", message: "Kafka did not acknowledge in time" };
    const inFlight = { error: "idempotency_in_flight", message: "still being handled" };
    const { fetch, sent } = scriptedFetch([
      () => Response.json(late, { status: 503 }),
      ...Array.from({ length: 5 }, () => () => Response.json(inFlight, { status: 409 })),
      () => Response.json({ accepted: 1, rejected: 0, errors: [] }, { status: 202 }),
    ]);
    const failures: DeliveryFailure[] = [];
    const events = client({
      fetch,
      retry: { initialDelayMs: 5, maxAttempts: 3 },
      onError: (failure) => failures.push(failure),
    });
    events.enqueue(click(0));
    await events.flush();
    expect(sent.length).toBe(7);
    expect(new Set(sent.map((request) => request.headers["idempotency-key"])).size).toBe(1);
    expect(failures).toEqual([]);
    expect(events.stats).toMatchObject({ accepted: 1, dropped: 0, retries: 6 });
    await events.close();
  });

  test("network errors back off and, once attempts run out, the batch is dropped and reported", async () => {
    const failures: DeliveryFailure[] = [];
    const { fetch, sent } = scriptedFetch([
      () => {
        throw new TypeError("connection refused");
      },
    ]);
    const events = client({
      fetch,
      retry: { initialDelayMs: 20, maxAttempts: 4 },
      onError: (failure) => failures.push(failure),
    });
    const id = events.enqueue(click(0));
    await events.flush();
    expect(sent.length).toBe(4);
    const gaps = sent.slice(1).map((request, i) => request.at - (sent[i] as Sent).at);
    // Jittered doubling: 10–20, 20–40, 40–80 ms.
    expect(gaps[0]).toBeGreaterThanOrEqual(9);
    expect(gaps[2]).toBeGreaterThanOrEqual(39);
    expect(failures).toEqual([
      expect.objectContaining({ kind: "dropped", records: [{ id: id as string }] }) as DeliveryFailure,
    ]);
    expect(events.stats).toMatchObject({ dropped: 1, retries: 3 });
    await events.close();
  });

  test("an attempt with no answer within requestTimeoutMs is abandoned and sent again with the same key", async () => {
    // The first answer never comes (a frozen peer: the fetch ignores its signal too); the second does.
    const { fetch, sent } = scriptedFetch([() => new Promise<Response>(() => {}), accepted]);
    const events = client({ fetch, requestTimeoutMs: 100, retry: { initialDelayMs: 10 } });
    for (let i = 0; i < 2; i++) events.enqueue(click(i));
    await events.flush();
    expect(sent.length).toBe(2);
    expect((sent[1] as Sent).at - (sent[0] as Sent).at).toBeGreaterThanOrEqual(99);
    expect((sent[1] as Sent).headers["idempotency-key"]).toBe((sent[0] as Sent).headers["idempotency-key"]);
    expect((sent[1] as Sent).body).toBe((sent[0] as Sent).body);
    expect(events.stats).toMatchObject({ accepted: 2, retries: 1, dropped: 0 });
    await events.close();
  });

  test("an answer whose body stalls past requestTimeoutMs is abandoned too", async () => {
    const stalled = () =>
      new Response(new ReadableStream({ start: () => {} }), { status: 503, headers: { "retry-after": "0" } });
    const { fetch, sent } = scriptedFetch([stalled, accepted]);
    const events = client({ fetch, requestTimeoutMs: 100, retry: { initialDelayMs: 10 } });
    events.enqueue(click(0));
    await events.flush();
    expect(sent.length).toBe(2);
    expect(events.stats).toMatchObject({ accepted: 1, retries: 1 });
    await events.close();
  });

  test("a 413 on a batch splits it: every record goes again, in order, in batches the gateway takes", async () => {
    const failures: DeliveryFailure[] = [];
    // A gateway whose MAX_RECORDS_PER_REQUEST (or MAX_BODY_BYTES) is below this client's batch limits.
    const sent: string[][] = [];
    const keys: string[] = [];
    const fetch = async (_url: string, init: RequestInit) => {
      const ids = (init.body as string).split("\n").map((line) => JSON.parse(line).id as string);
      sent.push(ids);
      keys.push((init.headers as Record<string, string>)["idempotency-key"] as string);
      if (ids.length > 2) return Response.json({ error: "payload_too_large" }, { status: 413 });
      return Response.json({ accepted: ids.length, rejected: 0, errors: [] }, { status: 202 });
    };
    const events = client({ fetch, maxBatchRecords: 8, onError: (failure) => failures.push(failure) });
    const ids = Array.from({ length: 8 }, (_, i) => events.enqueue(click(i)) as string);
    await events.flush();
    expect(sent.map((request) => request.length)).toEqual([8, 4, 2, 2, 2, 2]);
    expect(sent.slice(2).flat()).toEqual(ids);
    expect(new Set(keys).size).toBe(keys.length);
    // Learned: the next batches stay under what the gateway takes.
    for (let i = 0; i < 4; i++) events.enqueue(click(i));
    await events.flush();
    expect(sent.slice(6).map((request) => request.length)).toEqual([2, 2]);
    expect(failures).toEqual([]);
    expect(events.stats).toMatchObject({ accepted: 12, rejected: 0, dropped: 0 });
    await events.close();
  });

  test("a 429 batch_over_budget splits the batch at once, as a 413 does; a plain 429 waits for Retry-After and sends it whole", async () => {
    const failures: DeliveryFailure[] = [];
    // A tenant whose whole budget is 3 events per second: a batch of more never fits, however long one waits.
    const sent: number[] = [];
    let plainRefusals = 1;
    const fetch = async (_url: string, init: RequestInit) => {
      const records = (init.body as string).split("\n").length;
      sent.push(records);
      const headers = { "retry-after": "1", "ratelimit-limit": "3" };
      if (records > 3)
        return Response.json(
          { error: "batch_over_budget", message: `a batch of ${records} exceeds the whole budget of 3` },
          { status: 429, headers },
        );
      if (plainRefusals-- > 0) return Response.json({ error: "rate_limited" }, { status: 429, headers });
      return Response.json({ accepted: records, rejected: 0, errors: [] }, { status: 202 });
    };
    const events = client({
      fetch,
      maxBatchRecords: 8,
      retry: { initialDelayMs: 1, maxRetryAfterMs: 10 },
      onError: (failure) => failures.push(failure),
    });
    for (let i = 0; i < 8; i++) events.enqueue(click(i));
    await events.flush();
    // 8 and 4 split without a wait; the first 2 meets a plain 429 and goes again whole.
    expect(sent).toEqual([8, 4, 2, 2, 2, 2, 2]);
    expect(failures).toEqual([]);
    expect(events.stats).toMatchObject({ accepted: 8, rejected: 0, dropped: 0, retries: 1 });
    await events.close();
  });

  test("a 413 on one record is a refusal; a record over the learned size still goes, alone", async () => {
    const failures: DeliveryFailure[] = [];
    const sent: number[] = [];
    const fetch = async (_url: string, init: RequestInit) => {
      const bytes = new TextEncoder().encode(init.body as string).byteLength;
      const lines = (init.body as string).split("\n").length;
      sent.push(lines);
      if (bytes > 400)
        return Response.json({ error: "payload_too_large", message: "too big" }, { status: 413 });
      return Response.json({ accepted: lines, rejected: 0, errors: [] }, { status: 202 });
    };
    const events = client({ fetch, onError: (failure) => failures.push(failure) });
    const big = events.enqueue({ type: "note", data: { text: "x".repeat(500) } }) as string;
    events.enqueue({ type: "note", data: { text: "y".repeat(300) } });
    await events.flush();
    // [big, medium] refused whole, split: big alone (refused), medium alone (taken, though over half of the first).
    expect(sent).toEqual([2, 1, 1]);
    expect(failures).toEqual([{ kind: "rejected", status: 413, message: "too big", records: [{ id: big }] }]);
    expect(events.stats).toMatchObject({ accepted: 1, rejected: 1 });
    await events.close();
  });

  test("other 4xx are never retried; per-record reasons reach onError", async () => {
    const failures: DeliveryFailure[] = [];
    const { fetch, sent } = scriptedFetch([
      () =>
        Response.json(
          { accepted: 1, rejected: 1, errors: [{ index: 1, reason: "unknown type" }] },
          { status: 202 },
        ),
      () => Response.json({ error: "unauthorized", message: "bad token" }, { status: 401 }),
    ]);
    const events = client({ fetch, onError: (failure) => failures.push(failure) });
    events.enqueue(click(0));
    const refused = events.enqueue({ type: "nope", data: {} }) as string;
    await events.flush();
    const unauthorized = events.enqueue(click(2)) as string;
    await events.flush();
    expect(sent.length).toBe(2);
    expect(failures).toEqual([
      {
        kind: "rejected",
        status: 202,
        message: "some records were rejected",
        records: [{ id: refused, reason: "unknown type" }],
      },
      { kind: "rejected", status: 401, message: "bad token", records: [{ id: unauthorized }] },
    ]);
    expect(events.stats).toMatchObject({ accepted: 1, rejected: 2, retries: 0 });
    await events.close();
  });

  test("records a 202 names as not written yet (record_unavailable) go again alone after its Retry-After, under a new key; the others are done", async () => {
    const failures: DeliveryFailure[] = [];
    const { fetch, sent } = scriptedFetch([
      () =>
        Response.json(
          {
            accepted: 1,
            rejected: 1,
            errors: [{ index: 1, reason: "Kafka refuses writes to this topic", code: "record_unavailable" }],
          },
          { status: 202, headers: { "retry-after": "1" } },
        ),
      accepted,
    ]);
    const events = client({ fetch, onError: (failure) => failures.push(failure) });
    const written = events.enqueue(click(0)) as string;
    const unwritten = events.enqueue(click(1)) as string;
    await events.flush();
    expect(sent.map(idsOf)).toEqual([[written, unwritten], [unwritten]]);
    expect((sent[1] as Sent).at - (sent[0] as Sent).at).toBeGreaterThanOrEqual(900);
    expect(sent[1]?.headers["idempotency-key"]).not.toBe(sent[0]?.headers["idempotency-key"]);
    expect(failures).toEqual([]);
    expect(events.stats).toMatchObject({ accepted: 2, rejected: 0, retries: 1 });
    await events.close();
  });

  test("a record a 202 names as not written again and again is given up on after maxAttempts, though the records sent with it are written (it went again forever)", async () => {
    const failures: DeliveryFailure[] = [];
    // A gateway whose topic for "bad" records stays refused: every batch holding one is answered 202
    // naming it record_unavailable, and the others are written.
    const sent: string[][] = [];
    const fetch = async (_url: string, init: RequestInit) => {
      const lines = String(init.body)
        .split("\n")
        .map((line) => JSON.parse(line));
      sent.push(lines.map((line) => line.data.element));
      const errors = lines.flatMap((line, index) =>
        line.data.element === "bad" ? [{ index, reason: "topic refused", code: "record_unavailable" }] : [],
      );
      return Response.json(
        { accepted: lines.length - errors.length, errors },
        { status: 202, headers: { "retry-after": "0" } },
      );
    };
    const events = client({ fetch, retry: { maxAttempts: 3 }, onError: (failure) => failures.push(failure) });
    const bad = events.enqueue({ type: "click", data: { element: "bad" } }) as string;
    events.enqueue(click(0));
    const timer = setInterval(() => events.enqueue(click(1)), 5);
    try {
      const settled = await Promise.race([
        events.flush().then(() => true),
        Bun.sleep(2_000).then(() => false),
      ]);
      expect(settled).toBe(true);
    } finally {
      clearInterval(timer);
    }
    expect(sent.filter((elements) => elements.includes("bad")).length).toBe(3);
    expect(failures).toEqual([
      {
        kind: "dropped",
        status: 202,
        message: expect.stringContaining("gave up after 3 attempts"),
        records: [{ id: bad }],
      },
    ]);
    await events.close();
  });

  test("a 202 whose record_unavailable records are all given up on now waits no Retry-After and counts no retry", async () => {
    const failures: DeliveryFailure[] = [];
    const fetch = async () =>
      Response.json(
        { accepted: 1, errors: [{ index: 1, reason: "topic refused", code: "record_unavailable" }] },
        { status: 202, headers: { "retry-after": "30" } },
      );
    const events = client({ fetch, retry: { maxAttempts: 1 }, onError: (failure) => failures.push(failure) });
    events.enqueue(click(0));
    const bad = events.enqueue(click(1)) as string;
    const settled = await Promise.race([events.flush().then(() => true), Bun.sleep(1_000).then(() => false)]);
    expect(settled).toBe(true);
    expect(events.stats).toMatchObject({ accepted: 1, dropped: 1, retries: 0 });
    expect(failures.map(({ kind, records }) => ({ kind, records }))).toEqual([
      { kind: "dropped", records: [{ id: bad }] },
    ]);
    await events.close({ timeoutMs: 10 });
  });

  test("a 401 gets one fresh token from the callback and the same bytes again", async () => {
    const refreshes: boolean[] = [];
    const { fetch, sent } = scriptedFetch([
      () => Response.json({ error: "unauthorized", message: "token expired" }, { status: 401 }),
      accepted,
    ]);
    const events = client({
      fetch,
      token: ({ refresh }) => {
        refreshes.push(refresh);
        return refresh ? "fresh" : "stale";
      },
    });
    for (let i = 0; i < 3; i++) events.enqueue(click(i));
    await events.flush();
    expect(sent.map((request) => request.headers.authorization)).toEqual(["Bearer stale", "Bearer fresh"]);
    expect((sent[1] as Sent).body).toBe((sent[0] as Sent).body);
    expect(refreshes.at(-1)).toBe(true);
    expect(events.stats).toMatchObject({ accepted: 3, rejected: 0, dropped: 0 });
    await events.close();
  });

  test("a second 401 in a row is a refusal: reported, never retried again", async () => {
    const failures: DeliveryFailure[] = [];
    const { fetch, sent } = scriptedFetch([
      () => Response.json({ error: "unauthorized", message: "bad token" }, { status: 401 }),
    ]);
    const events = client({
      fetch,
      token: ({ refresh }) => (refresh ? "revoked-too" : "revoked"),
      onError: (failure) => failures.push(failure),
    });
    const id = events.enqueue(click(0)) as string;
    await events.flush();
    expect(sent.length).toBe(2);
    expect(failures).toEqual([{ kind: "rejected", status: 401, message: "bad token", records: [{ id }] }]);
    await events.close();
  });

  test("a callback that hands back the token just refused has none newer yet: the batch waits and asks again", async () => {
    // A token file its sidecar rotates a little late: read again, it still holds the expired token.
    const failures: DeliveryFailure[] = [];
    const sent: string[] = [];
    let file = "expired";
    const fetch: FetchLike = async (_url, init) => {
      const authorization = (init.headers as Record<string, string>).authorization as string;
      sent.push(authorization);
      if (authorization !== "Bearer rotated")
        return Response.json({ error: "unauthorized" }, { status: 401 });
      return accepted();
    };
    const events = client({
      fetch,
      token: () => file,
      retry: { initialDelayMs: 20, maxDelayMs: 20 },
      onError: (failure) => failures.push(failure),
    });
    events.enqueue(click(0));
    await until(() => events.stats.retries >= 2);
    file = "rotated";
    await events.flush();
    expect(failures).toEqual([]);
    expect(events.stats).toMatchObject({ accepted: 1, rejected: 0, dropped: 0 });
    // The refused token is never sent again: the callback is asked for a fresh one until it rotated.
    expect(sent).toEqual(["Bearer expired", "Bearer rotated"]);
    await events.close();
  });

  test("a 401 after other answers gets a fresh token again: only a second 401 in a row is a refusal", async () => {
    // Short-lived tokens and an outage: the token refreshed after the first 401 expires while the
    // batch waits out 503s, and a callback that caches hands it back until asked for a fresh one.
    const failures: DeliveryFailure[] = [];
    const expired = () => Response.json({ error: "unauthorized", message: "token expired" }, { status: 401 });
    const unavailable = () => new Response("{}", { status: 503, headers: { "retry-after": "0" } });
    const { fetch, sent } = scriptedFetch([expired, unavailable, unavailable, expired, accepted]);
    let issued = 0;
    let cached = "token-0";
    const events = client({
      fetch,
      token: ({ refresh }) => {
        if (refresh) cached = `token-${++issued}`;
        return cached;
      },
      retry: { initialDelayMs: 1 },
      onError: (failure) => failures.push(failure),
    });
    events.enqueue(click(0));
    await events.flush();
    expect(sent.map((request) => request.headers.authorization)).toEqual([
      "Bearer token-0",
      "Bearer token-1",
      "Bearer token-1",
      "Bearer token-1",
      "Bearer token-2",
    ]);
    expect(new Set(sent.map((request) => request.headers["idempotency-key"])).size).toBe(1);
    expect(failures).toEqual([]);
    expect(events.stats).toMatchObject({ accepted: 1, rejected: 0, dropped: 0 });
    await events.close();
  });

  // Found in the auth audit: with the identity provider out of reach the gateway answers 503 with
  // Retry-After 1 each time, and waiting just that, the ten attempts were spent and the batch dropped in 11 s.
  test("Retry-After is the least a retry waits: answered 0 at each 503, the waits still grow as the backoff's", async () => {
    const at: number[] = [];
    const unavailable = () => {
      at.push(performance.now());
      return new Response("{}", { status: 503, headers: { "retry-after": "0" } });
    };
    const { fetch } = scriptedFetch([
      unavailable,
      unavailable,
      unavailable,
      unavailable,
      unavailable,
      () => {
        at.push(performance.now());
        return accepted();
      },
    ]);
    const events = client({ fetch, retry: { initialDelayMs: 20, maxDelayMs: 1000 } });
    events.enqueue(click(0));
    await events.flush();
    const waits = at.slice(1).map((time, index) => time - (at[index] as number));
    expect(waits).toHaveLength(5);
    // The backoff's k-th wait is at least half of 20 · 2^k ms: 10, 20, 40, 80, 160.
    for (const [k, wait] of waits.entries()) expect(wait).toBeGreaterThanOrEqual(10 * 2 ** k - 2);
    expect(events.stats).toMatchObject({ accepted: 1, dropped: 0 });
    await events.close();
  });

  // Found in the auth audit: a token callback failing counted as a failed attempt (the batch dropped
  // after ten, nothing sent), and one never answering held the batch and close() forever.
  test("a token callback that fails spends no attempt: once it answers, the batch goes", async () => {
    const { fetch, sent } = scriptedFetch([accepted]);
    let asked = 0;
    const events = client({
      fetch,
      token: () => {
        if (++asked <= 12) throw new Error("identity provider down");
        return "fresh";
      },
      retry: { initialDelayMs: 1, maxDelayMs: 4 },
    });
    events.enqueue(click(0));
    await events.flush();
    expect(asked).toBe(13);
    expect(sent.map((request) => request.headers.authorization)).toEqual(["Bearer fresh"]);
    expect(events.stats).toMatchObject({ accepted: 1, dropped: 0 });
    await events.close();
  });

  test("a token callback that never answers is given up on at the request timeout, and close() still ends in time", async () => {
    const { fetch, sent } = scriptedFetch([accepted]);
    const events = client({ fetch, token: () => new Promise<string>(() => {}), requestTimeoutMs: 50 });
    events.enqueue(click(0));
    await Bun.sleep(200);
    const started = Date.now();
    await events.close({ timeoutMs: 100 });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(sent).toEqual([]);
    expect(events.stats).toMatchObject({ accepted: 0, dropped: 1 });
  });

  test("close() gives up after its timeout and counts what was left", async () => {
    const { fetch } = scriptedFetch([
      () => new Response("{}", { status: 503, headers: { "retry-after": "60" } }),
    ]);
    const events = client({ fetch });
    for (let i = 0; i < 5; i++) events.enqueue(click(i));
    const started = Date.now();
    await events.close({ timeoutMs: 100 });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(events.stats).toMatchObject({ dropped: 5, buffered: 0 });
    expect(() => events.enqueue(click(9))).toThrow("closed");
  });

  test("flush() called again and again while the gateway is unreachable holds one waiter, not one per call", async () => {
    const events = client({
      fetch: () => Promise.reject(new Error("unreachable")),
      retry: { initialDelayMs: 60_000 },
    });
    events.enqueue(click(1));
    await Bun.sleep(20);
    const first = events.flush();
    Bun.gc(true);
    const before = heapStats().objectTypeCounts.Promise ?? 0;
    for (let i = 0; i < 10_000; i++) void events.flush();
    Bun.gc(true);
    // Each call's promise was let go by its caller: only a waiter list could keep 10,000 of them alive.
    expect((heapStats().objectTypeCounts.Promise ?? 0) - before).toBeLessThan(100);
    expect(events.flush()).toBe(first);
    await events.close({ timeoutMs: 10 });
  });
});

describe("EventClient in a page", () => {
  type Listener = () => void;
  type PageHideListener = (event: { persisted: boolean }) => void;
  const page = globalThis as unknown as Record<string, unknown>;
  const listeners = new Map<string, Listener>();
  const document = {
    visibilityState: "visible",
    addEventListener: (type: string, listener: Listener) => listeners.set(`document:${type}`, listener),
    removeEventListener: (type: string) => listeners.delete(`document:${type}`),
  };

  function installPage() {
    page.document = document;
    page.addEventListener = (type: string, listener: Listener) => listeners.set(type, listener);
    page.removeEventListener = (type: string) => listeners.delete(type);
  }
  const realNavigator = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  function setOnline(onLine: boolean) {
    Object.defineProperty(globalThis, "navigator", { value: { onLine }, configurable: true, writable: true });
  }
  afterEach(() => {
    delete page.document;
    delete page.addEventListener;
    delete page.removeEventListener;
    listeners.clear();
    if (realNavigator) Object.defineProperty(globalThis, "navigator", realNavigator);
  });

  test("on pagehide, what is buffered goes out with keepalive, within the 64 KiB budget", async () => {
    installPage();
    const { fetch, sent } = scriptedFetch([() => new Promise<Response>(() => {})]);
    const events = client({ fetch, flushIntervalMs: 60_000, maxBatchBytes: 20_000 });
    const big = "x".repeat(5_000);
    for (let i = 0; i < 30; i++) events.enqueue({ type: "click", data: { element: big } });
    // Kept in the back/forward cache: the page may come back.
    (listeners.get("pagehide") as PageHideListener)({ persisted: true });
    const keepalive = sent.filter((request) => request.keepalive);
    expect(keepalive.length).toBeGreaterThan(1);
    const bytes = keepalive.map((request) => new TextEncoder().encode(request.body).byteLength);
    expect(Math.max(...bytes)).toBeLessThanOrEqual(20_000);
    expect(bytes.reduce((sum, size) => sum + size, 0)).toBeLessThanOrEqual(KEEPALIVE_BODY_LIMIT);
    // What did not fit stays buffered for when the page comes back; the budget stays respected.
    expect(events.stats.buffered).toBeGreaterThan(0);
    expect(events.stats.dropped).toBe(0);
    await Bun.sleep(10);
    const inFlight = sent.filter((request) => request.keepalive);
    const total = inFlight.reduce(
      (sum, request) => sum + new TextEncoder().encode(request.body).byteLength,
      0,
    );
    expect(total).toBeLessThanOrEqual(KEEPALIVE_BODY_LIMIT);
    await events.close({ timeoutMs: 20 });
    expect(listeners.size).toBe(0);
  });

  test("visibilitychange to hidden sends too; a failed keepalive batch is requeued in order", async () => {
    installPage();
    const { fetch, sent } = scriptedFetch([() => Promise.reject(new TypeError("offline")), accepted]);
    const events = client({ fetch, flushIntervalMs: 60_000 });
    const ids = [0, 1, 2].map((i) => events.enqueue(click(i)));
    document.visibilityState = "hidden";
    (listeners.get("document:visibilitychange") as Listener)();
    document.visibilityState = "visible";
    await Bun.sleep(10);
    expect(events.stats.buffered).toBe(3);
    await events.flush();
    expect(idsOf(sent[1] as Sent)).toEqual(ids as string[]);
    await events.close();
  });

  test("a callback token is resolved ahead of page hide, so the hide sends the buffer with it", async () => {
    installPage();
    const { fetch, sent } = scriptedFetch([accepted]);
    const events = client({ fetch, token: async () => "ahead", flushIntervalMs: 60_000 });
    const ids = [0, 1, 2].map((i) => events.enqueue(click(i)));
    await Bun.sleep(5);
    expect(sent.length).toBe(0);
    (listeners.get("pagehide") as PageHideListener)({ persisted: false });
    expect(sent.map((request) => [request.keepalive, request.headers.authorization])).toEqual([
      [true, "Bearer ahead"],
    ]);
    expect(idsOf(sent[0] as Sent)).toEqual(ids as string[]);
    await events.close();
  });

  test("with storage, a page closing on a token that expired while it sat idle sends nothing with it: the records stay stored and the next start sends them", async () => {
    installPage();
    const backing = memoryStorage();
    const claims = btoa(JSON.stringify({ exp: Math.floor(Date.now() / 1000) - 60 })).replace(/=+$/, "");
    const expired = `eyJhbGciOiJIUzI1NiJ9.${claims}.signature`;
    // A gateway that answered once: a keepalive request would most likely arrive, to be refused.
    const before = scriptedFetch([accepted, () => new Promise<Response>(() => {})]);
    const storage = localStorageQueue("events", backing);
    const events = client({
      fetch: before.fetch,
      token: async () => expired,
      storage,
      flushIntervalMs: 60_000,
    });
    events.enqueue(click(0));
    await events.flush();
    const ids = [1, 2, 3].map((i) => events.enqueue(click(i)));
    await storage.flush();
    (listeners.get("pagehide") as PageHideListener)({ persisted: false });
    expect(before.sent.length).toBe(1);
    // The page lives on for the storage writes its hide made, then is gone: nothing more runs in it
    // (its client is closed only after the next start).
    await storage.flush();
    const next = scriptedFetch([accepted]);
    const restarted = client({ fetch: next.fetch, storage: localStorageQueue("events", backing) });
    await restarted.flush();
    expect(next.sent.flatMap(idsOf)).toEqual(ids as string[]);
    await restarted.close();
    await events.close({ timeoutMs: 20 });
  });

  test("records a closing page cannot send (no token at hand) are counted as dropped and reported", async () => {
    installPage();
    const failures: DeliveryFailure[] = [];
    const { fetch, sent } = scriptedFetch([accepted]);
    const events = client({
      fetch,
      token: () => new Promise<string>(() => {}),
      flushIntervalMs: 60_000,
      onError: (failure) => failures.push(failure),
    });
    const ids = [0, 1, 2].map((i) => events.enqueue(click(i)));
    (listeners.get("pagehide") as PageHideListener)({ persisted: false });
    expect(sent.length).toBe(0);
    expect(events.stats).toMatchObject({ buffered: 0, dropped: 3 });
    expect(failures.map((failure) => [failure.kind, failure.records.map((record) => record.id)])).toEqual([
      ["dropped", ids as string[]],
    ]);
    await events.close({ timeoutMs: 20 });
  });

  test("while the page is offline nothing is sent and no attempt is burnt; `online` resumes", async () => {
    installPage();
    setOnline(false);
    const { fetch, sent } = scriptedFetch([accepted]);
    const events = client({ fetch, retry: { maxAttempts: 1 }, flushIntervalMs: 10 });
    const id = events.enqueue(click(0));
    await Bun.sleep(100);
    expect(sent.length).toBe(0);
    setOnline(true);
    (listeners.get("online") as Listener)();
    await events.flush();
    expect(sent.flatMap(idsOf)).toEqual([id as string]);
    expect(events.stats).toMatchObject({ accepted: 1, dropped: 0 });
    await events.close();
  });

  test("a page coming back online ends a backoff wait at once", async () => {
    installPage();
    const { fetch, sent } = scriptedFetch([() => Promise.reject(new TypeError("network down")), accepted]);
    const events = client({ fetch, retry: { initialDelayMs: 60_000 }, flushIntervalMs: 10 });
    events.enqueue(click(0));
    await until(() => sent.length === 1);
    (listeners.get("online") as Listener)();
    await until(() => sent.length === 2);
    await events.flush();
    expect(events.stats).toMatchObject({ accepted: 1, retries: 1 });
    await events.close();
  });

  test("a network error while offline is not counted against maxAttempts", async () => {
    installPage();
    const { fetch, sent } = scriptedFetch([
      () => {
        setOnline(false);
        return Promise.reject(new TypeError("network down"));
      },
      accepted,
    ]);
    const events = client({ fetch, retry: { maxAttempts: 1 }, flushIntervalMs: 10 });
    events.enqueue(click(0));
    await until(() => sent.length === 1);
    await Bun.sleep(50);
    expect(events.stats.dropped).toBe(0);
    setOnline(true);
    (listeners.get("online") as Listener)();
    await events.flush();
    expect(events.stats).toMatchObject({ accepted: 1, dropped: 0 });
    await events.close();
  });
});

async function until(probe: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
}

/** One IndexedDB database in memory (the calls indexedDbQueue makes), kept across "restarts". */
function memoryIndexedDb() {
  const rows = new Map<string, Record<string, unknown>>();
  const later = (callback: () => void) => setTimeout(callback, 0);
  const db = {
    createObjectStore: () => ({}),
    transaction() {
      const transaction: Record<string, unknown> = {
        objectStore: () => ({
          put: (row: Record<string, unknown>) => void rows.set(row.id as string, structuredClone(row)),
          delete: (id: string) => void rows.delete(id),
          getAll() {
            const request: Record<string, unknown> = {};
            later(() => {
              request.result = [...rows.values()].map((row) => structuredClone(row));
              (request.onsuccess as () => void)();
            });
            return request;
          },
        }),
      };
      later(() => (transaction.oncomplete as (() => void) | null)?.());
      return transaction;
    },
  };
  const factory = {
    open() {
      const request: Record<string, unknown> = { result: db };
      later(() => (request.onsuccess as () => void)());
      return request;
    },
  } as unknown as IdbFactoryLike;
  return { rows, factory };
}

describe("EventClient with storage: unsent records survive a restart", () => {
  const unreachable = () => Promise.reject(new TypeError("connection refused"));

  async function acrossRestart(storage: () => QueueStorage) {
    const before = scriptedFetch([unreachable]);
    const first = client({ fetch: before.fetch, storage: storage(), retry: { initialDelayMs: 5_000 } });
    const ids = [0, 1, 2].map((i) => first.enqueue(click(i)) as string);
    await first.close({ timeoutMs: 50 });
    // Given up on at close, but kept: not dropped.
    expect(first.stats.dropped).toBe(0);
    const { fetch, sent } = scriptedFetch([accepted]);
    const second = client({ fetch, storage: storage() });
    const more = second.enqueue(click(3)) as string;
    await second.flush();
    expect(sent.flatMap(idsOf)).toEqual([...ids, more]);
    // The batch the first run sent (its answer never came) goes again whole, with the same bytes and key,
    // so a gateway that wrote it answers again and writes nothing; the new record goes in a batch of its own.
    expect(sent[0]?.body).toBe(before.sent[0]?.body as string);
    expect(sent[0]?.headers["idempotency-key"]).toBe(before.sent[0]?.headers["idempotency-key"] as string);
    expect(sent.map(idsOf)).toEqual([ids, [more]]);
    expect(
      sent.flatMap((request) => request.body.split("\n").map((line) => JSON.parse(line).data.element)),
    ).toEqual(["e0", "e1", "e2", "e3"]);
    await second.close();
    // Sent once: a third start finds nothing left.
    const third = scriptedFetch([accepted]);
    const again = client({ fetch: third.fetch, storage: storage() });
    await again.flush();
    expect(third.sent.length).toBe(0);
    await again.close();
  }

  test("localStorage", async () => {
    const backing = memoryStorage();
    await acrossRestart(() => localStorageQueue("events", backing));
    expect(backing.items.size).toBe(0);
  });

  test("IndexedDB; a record written again with its batch's key keeps its place", async () => {
    const database = memoryIndexedDb();
    await acrossRestart(() => indexedDbQueue("events", database.factory));
    expect(database.rows.size).toBe(0);
    // A full batch goes (and is stored again with its key) while a later record waits: order kept.
    const first = client({
      fetch: scriptedFetch([unreachable]).fetch,
      storage: indexedDbQueue("events", database.factory),
      maxBatchRecords: 2,
      retry: { initialDelayMs: 5_000 },
    });
    const ids = [0, 1, 2].map((i) => first.enqueue(click(i)) as string);
    await Bun.sleep(20);
    await first.close({ timeoutMs: 50 });
    const { fetch, sent } = scriptedFetch([accepted]);
    const second = client({ fetch, storage: indexedDbQueue("events", database.factory) });
    await second.flush();
    expect(sent.map(idsOf)).toEqual([ids.slice(0, 2), ids.slice(2)]);
    await second.close();
  });

  test("a file (Node and Bun); a journal line cut short by a crash is ignored", async () => {
    const folder = mkdtempSync(join(tmpdir(), "file-queue-"));
    const path = join(folder, "queue", "events.jsonl");
    try {
      await acrossRestart(() => fileQueue(path));
      expect(readFileSync(path, "utf8")).toBe("");
      writeFileSync(
        path,
        `${JSON.stringify(["+", "kept", JSON.stringify({ id: "kept", type: "click", data: {} })])}\n["+", "cut`,
      );
      const { fetch, sent } = scriptedFetch([accepted]);
      const events = client({ fetch, storage: fileQueue(path) });
      await events.flush();
      expect(sent.flatMap(idsOf)).toEqual(["kept"]);
      await events.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("storage that fails to load (a queue file unreadable, IndexedDB failing to open) is reported once as kind storage; records still go from memory", async () => {
    const folder = mkdtempSync(join(tmpdir(), "file-queue-"));
    // A folder where the file should be: its read fails (EISDIR), as an unreadable file's does (EACCES).
    const path = join(folder, "events.jsonl");
    mkdirSync(path);
    const page = globalThis as { indexedDB?: unknown };
    page.indexedDB = {
      open() {
        const request = { error: new Error("UnknownError: IndexedDB failed") } as Record<string, unknown>;
        setTimeout(() => (request.onerror as () => void)(), 0);
        return request;
      },
    };
    try {
      // A file where the queue's folder should be: the lock beside the queue cannot be written either.
      writeFileSync(join(folder, "file"), "");
      const underFile = join(folder, "file", "events.jsonl");
      for (const storage of [
        () => fileQueue(path),
        () => fileQueue(underFile),
        () => browserQueue("events"),
      ]) {
        const failures: DeliveryFailure[] = [];
        const { fetch, sent } = scriptedFetch([accepted]);
        const events = client({ fetch, storage: storage(), onError: (failure) => failures.push(failure) });
        const id = events.enqueue(click(1));
        await events.flush();
        expect(sent.flatMap(idsOf)).toEqual([id as string]);
        expect(failures).toEqual([
          { kind: "storage", status: undefined, message: expect.any(String), records: [] },
        ]);
        await events.close();
      }
    } finally {
      delete page.indexedDB;
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("a custom storage is asked to load before the first add, as in 0.2.0: a record enqueued right after the client is made reaches add() after load(); a load that throws at once is reported", async () => {
    const calls: string[] = [];
    const storage: QueueStorage = {
      load: async () => {
        calls.push("load");
        return [];
      },
      add: (records) => calls.push(`add ${records.length}`),
      remove: () => {},
      flush: async () => {},
    };
    const { fetch } = scriptedFetch([accepted]);
    const events = client({ fetch, storage });
    events.enqueue(click(1));
    expect(calls).toEqual(["load", "add 1"]);
    await events.close();

    const failures: DeliveryFailure[] = [];
    const throwing: QueueStorage = {
      ...storage,
      load: () => {
        throw new Error("no connection");
      },
    };
    const second = scriptedFetch([accepted]);
    const other = client({
      fetch: second.fetch,
      storage: throwing,
      onError: (failure) => failures.push(failure),
    });
    const id = other.enqueue(click(2));
    await other.flush();
    expect(second.sent.flatMap(idsOf)).toEqual([id as string]);
    expect(failures).toEqual([{ kind: "storage", status: undefined, message: "no connection", records: [] }]);
    await other.close();
  });

  test("a file another live process holds is refused at once; one a killed process held is taken over", async () => {
    const folder = mkdtempSync(join(tmpdir(), "file-queue-"));
    const path = join(folder, "events.jsonl");
    const module = new URL("../src/file-queue.ts", import.meta.url).pathname;
    const holder = Bun.spawn(
      [
        process.execPath,
        "-e",
        `(await import(${JSON.stringify(module)})).fileQueue(${JSON.stringify(path)}); console.log("held"); setInterval(() => {}, 1000);`,
      ],
      { stdout: "pipe", stderr: "inherit" },
    );
    try {
      const reader = holder.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("held");
      expect(() => fileQueue(path)).toThrow(`in use by process ${holder.pid}`);
      holder.kill("SIGKILL");
      await holder.exited;
      const { fetch, sent } = scriptedFetch([accepted]);
      const events = client({ fetch, storage: fileQueue(path) });
      const id = events.enqueue(click(0));
      await events.close();
      expect(sent.flatMap(idsOf)).toEqual([id as string]);
    } finally {
      holder.kill("SIGKILL");
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("a file write that failed (its folder gone, a full disk) is made good by the next one: the file holds every unsent record", async () => {
    const folder = mkdtempSync(join(tmpdir(), "file-queue-"));
    const path = join(folder, "queue", "events.jsonl");
    const storage = fileQueue(path);
    const events = client({
      fetch: scriptedFetch([() => Promise.reject(new TypeError("connection refused"))]).fetch,
      storage,
      retry: { initialDelayMs: 60_000 },
    });
    try {
      const ids = [events.enqueue(click(0))];
      await storage.flush();
      rmSync(join(folder, "queue"), { recursive: true });
      ids.push(events.enqueue(click(1)));
      await storage.flush();
      mkdirSync(join(folder, "queue"));
      ids.push(events.enqueue(click(2)));
      await storage.flush();
      const stored = readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line)[1]);
      expect(stored).toEqual(ids);
    } finally {
      await events.close({ timeoutMs: 10 });
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("records the gateway refused or accepted leave storage; so do dropped ones", async () => {
    const backing = memoryStorage();
    const storage = localStorageQueue("events", backing);
    const { fetch } = scriptedFetch([
      () =>
        Response.json(
          { accepted: 1, rejected: 1, errors: [{ index: 1, reason: "unknown type" }] },
          { status: 202 },
        ),
    ]);
    const events = client({ fetch, storage });
    events.enqueue(click(0));
    events.enqueue({ type: "nope", data: {} });
    await events.flush();
    await storage.flush();
    expect(await storage.load()).toEqual([]);
    await events.close();
  });
});
