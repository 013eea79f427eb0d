import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { GatewayError } from "../../src/domain/errors.ts";
import { Idempotency, idempotencyKeyOf, idempotencyScope } from "../../src/http/idempotency.ts";
import { AdmittedFields } from "../../src/http/rate-limit-fields.ts";
import { json } from "../../src/http/reply.ts";
import { MemoryIdempotencyStore } from "../../src/infra/idempotency/memory-store.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type { HttpReply, HttpRequest } from "../../src/ports/transport.ts";

function request(headers: Record<string, string> = {}, path = "/v1/events"): HttpRequest {
  return {
    method: "POST",
    path,
    query: new URLSearchParams(),
    header: (name) => ({ "content-type": "application/json", ...headers })[name],
    headerNames: () => ["content-type", ...Object.keys(headers)],
    remoteAddress: "127.0.0.1",
    body: () => Promise.resolve(new Uint8Array()),
  };
}

function setup() {
  const store = new MemoryIdempotencyStore({
    windowMs: 60_000,
    pendingMs: 5000,
    maxKeys: 100,
    maxBytes: 1 << 20,
  });
  const idempotency = new Idempotency(store, createMetrics("test", "0"));
  let runs = 0;
  const handler =
    (
      reply: HttpReply | (() => never) = {
        status: 202,
        headers: { "content-type": "application/json" },
        body: '{"accepted":1}',
      },
    ) =>
    async () => {
      runs++;
      if (typeof reply === "function") return reply();
      return reply;
    };
  return { idempotency, store, handler, runs: () => runs };
}

const body = (text: string) => new TextEncoder().encode(text);
/** The key an Idempotency-Key field names, as the routes read it. */
const keyOf = (field: string) => idempotencyKeyOf(request({ "idempotency-key": field })) as string;

describe("Idempotency-Key", () => {
  test("a 503 whose records are still being written keeps the key: a repeat gets 409 until they land, then the 202; freed if they fail", async () => {
    const { idempotency, handler, runs } = setup();
    const late = (eventual: Promise<HttpReply>) => () => {
      const error = new GatewayError("unavailable", "Kafka did not acknowledge in time", {
        "retry-after": "5",
      });
      error.eventualAnswer = eventual;
      throw error;
    };
    const written = Promise.withResolvers<HttpReply>();
    await expect(
      idempotency.run(request(), "k1", "acme", body("{}"), handler(late(written.promise))),
    ).rejects.toMatchObject({
      code: "unavailable",
    });
    await expect(idempotency.run(request(), "k1", "acme", body("{}"), handler())).rejects.toMatchObject({
      code: "idempotency_in_flight",
    });
    written.resolve({ status: 202, headers: { "content-type": "application/json" }, body: '{"accepted":1}' });
    await Bun.sleep(1);
    const replayed = await idempotency.run(request(), "k1", "acme", body("{}"), handler());
    expect(replayed.headers?.["idempotency-replayed"]).toBe("true");
    expect(replayed.body).toBe('{"accepted":1}');
    expect(runs()).toBe(1);

    const failed = Promise.withResolvers<HttpReply>();
    await expect(
      idempotency.run(request(), "k2", "acme", body("{}"), handler(late(failed.promise))),
    ).rejects.toMatchObject({
      code: "unavailable",
    });
    failed.reject(new Error("undeliverable"));
    await Bun.sleep(1);
    await idempotency.run(request(), "k2", "acme", body("{}"), handler());
    expect(runs()).toBe(3);
  });

  test("keys are the caller's: another subject, or a token limited to other channels, runs its own request", async () => {
    const { idempotency, handler, runs } = setup();
    const alice = {
      tenant: "acme",
      subject: "alice",
      scopes: new Set(["publish"]),
      channels: undefined,
      expiresAt: 0,
    };
    const carol = { ...alice, subject: "carol" };
    const aliceLimited = { ...alice, channels: ["orders.*"] };
    // `channels: []` allows no channel: it must not share the keys of a token with no claim.
    const aliceNoChannels = { ...alice, channels: [] };
    for (const caller of [alice, carol, aliceLimited, aliceNoChannels, alice]) {
      await idempotency.run(request(), "k1", idempotencyScope(caller), body("{}"), handler());
    }
    // The last one, alice again with the same token's claims, is the only replay.
    expect(runs()).toBe(4);
    expect(new Set([alice, carol, aliceLimited, aliceNoChannels].map(idempotencyScope)).size).toBe(4);
  });

  test("a repeat with the same key and body gets the first answer, marked replayed, and runs nothing", async () => {
    const { idempotency, handler, runs } = setup();
    const first = await idempotency.run(request(), "k1", "acme", body("{}"), handler());
    expect(first.headers?.["idempotency-replayed"]).toBeUndefined();
    // The bare key and its sf-string name one key.
    const again = await idempotency.run(request(), keyOf('"k1"'), "acme", body("{}"), handler());
    expect(runs()).toBe(1);
    expect(again).toEqual({
      status: 202,
      headers: { "content-type": "application/json", "idempotency-replayed": "true" },
      body: '{"accepted":1}',
    });
  });

  test("a replay carries the first answer's shared headers too (its content type and RateLimit fields)", async () => {
    const { idempotency, handler } = setup();
    const admitted = new AdmittedFields("tenant", 1).headers(100, 99, 1);
    const reply = json(202, { accepted: 1 }, admitted.own, admitted.shared);
    await idempotency.run(request(), "k1", "acme", body("{}"), handler(reply));
    const again = await idempotency.run(request(), "k1", "acme", body("{}"), handler(reply));
    expect(again.headers).toEqual({
      "ratelimit-remaining": "99",
      ratelimit: '"tenant";r=99;t=1',
      "content-type": "application/json",
      "ratelimit-limit": "100",
      "ratelimit-reset": "1",
      "ratelimit-policy": '"tenant";q=100;w=1',
      "idempotency-replayed": "true",
    });
  });

  test("another body is a 422, a repeat in flight a 409; keys are per tenant and per route", async () => {
    const { idempotency, handler, runs } = setup();
    await idempotency.run(request(), "k", "acme", body("{}"), handler());
    await expect(idempotency.run(request(), "k", "acme", body("{ }"), handler())).rejects.toMatchObject({
      code: "idempotency_key_reused",
      status: 422,
    });
    await idempotency.run(request(), "k", "other", body("{}"), handler());
    await idempotency.run(request({}, "/v1/publish"), "k", "acme", body("{}"), handler());
    expect(runs()).toBe(3);

    let finish: (reply: HttpReply) => void = () => {};
    const slow = idempotency.run(
      request(),
      "slow",
      "acme",
      body("{}"),
      () => new Promise((resolve) => (finish = resolve)),
    );
    await expect(idempotency.run(request(), "slow", "acme", body("{}"), handler())).rejects.toMatchObject({
      code: "idempotency_in_flight",
      status: 409,
    });
    finish({ status: 202, body: "{}" });
    await slow;
    expect((await idempotency.run(request(), "slow", "acme", body("{}"), handler())).status).toBe(202);
    expect(runs()).toBe(3);
  });

  test("a 4xx is an answer kept; after a 5xx or a 429 the key is free for a retry", async () => {
    const { idempotency, handler, runs } = setup();
    const refuse = (code: "all_rejected" | "unavailable" | "rate_limited") => () => {
      throw new GatewayError(code, code);
    };
    await expect(
      idempotency.run(request(), "a", "t", body("x"), handler(refuse("all_rejected"))),
    ).rejects.toThrow();
    const replayed = await idempotency.run(request(), "a", "t", body("x"), handler());
    expect(replayed.status).toBe(422);
    expect(replayed.headers?.["idempotency-replayed"]).toBe("true");
    for (const code of ["unavailable", "rate_limited"] as const) {
      await expect(idempotency.run(request(), code, "t", body("x"), handler(refuse(code)))).rejects.toThrow();
      expect((await idempotency.run(request(), code, "t", body("x"), handler())).status).toBe(202);
    }
    expect(runs()).toBe(5);
  });

  test("the content type and query are part of the body's fingerprint; a malformed key is a 400", async () => {
    const { idempotency, handler } = setup();
    await idempotency.run(request(), "k", "t", body("{}"), handler());
    await expect(
      idempotency.run(request({ "content-type": "application/x-ndjson" }), "k", "t", body("{}"), handler()),
    ).rejects.toMatchObject({ code: "idempotency_key_reused" });
    // A binary-mode CloudEvent's ce-* headers are its attributes, extensions included.
    const event = { "ce-specversion": "1.0", "ce-id": "e1", "ce-source": "/s", "ce-type": "click" };
    await idempotency.run(request({ ...event, "ce-region": "eu" }), "ce", "t", body("{}"), handler());
    await expect(
      idempotency.run(request({ ...event, "ce-region": "us" }), "ce", "t", body("{}"), handler()),
    ).rejects.toMatchObject({ code: "idempotency_key_reused" });
    for (const bad of ["", "a".repeat(256), "é", 'a"b'])
      expect(() => keyOf(bad)).toThrow(expect.objectContaining({ code: "bad_request" }));
  });

  test("the content type is compared as a media type: case, whitespace, parameter order, quoting and charset=utf-8 make no other request", async () => {
    const { idempotency, handler, runs } = setup();
    await idempotency.run(request(), "json", "t", body("{}"), handler());
    for (const same of [
      "application/json; charset=utf-8",
      "Application/JSON;charset=UTF-8",
      ' application/json ;  charset="utf-8"',
    ]) {
      const reply = await idempotency.run(
        request({ "content-type": same }),
        "json",
        "t",
        body("{}"),
        handler(),
      );
      expect([same, reply.headers?.["idempotency-replayed"]]).toEqual([same, "true"]);
    }
    await idempotency.run(
      request({ "content-type": 'application/cloudevents+json; a=1; b="x y"' }),
      "params",
      "t",
      body("{}"),
      handler(),
    );
    const reordered = await idempotency.run(
      request({ "content-type": 'application/CloudEvents+json;B="x y";A=1' }),
      "params",
      "t",
      body("{}"),
      handler(),
    );
    expect(reordered.headers?.["idempotency-replayed"]).toBe("true");
    // The body comes decoded (the route undid its coding): the Content-Encoding it was sent with is no part of it.
    await idempotency.run(request({ "content-encoding": "gzip" }), "gzip", "t", body("{}"), handler());
    const plain = await idempotency.run(request(), "gzip", "t", body("{}"), handler());
    expect(plain.headers?.["idempotency-replayed"]).toBe("true");
    expect(runs()).toBe(3);
    // A parameter's value still counts (a binary-mode CloudEvent carries it as datacontenttype).
    await expect(
      idempotency.run(
        request({ "content-type": 'application/cloudevents+json; a=2; b="x y"' }),
        "params",
        "t",
        body("{}"),
        handler(),
      ),
    ).rejects.toMatchObject({ code: "idempotency_key_reused" });
  });

  test("an uncompressed request's fingerprint is the one earlier releases stored: their answers in Redis are still replayed after a deploy", async () => {
    const { idempotency, store, handler, runs } = setup();
    const stored = createHash("sha256")
      .update("POST /v1/events?\napplication/json\n\n{}")
      .digest("base64url");
    await store.claim("t\n/v1/events\nk", stored);
    await store.complete("t\n/v1/events\nk", stored, { status: 202, headers: {}, body: '{"accepted":1}' });
    const reply = await idempotency.run(request(), "k", "t", body("{}"), handler());
    expect([reply.status, reply.headers?.["idempotency-replayed"], runs()]).toEqual([202, "true", 0]);
  });

  test("the key is an sf-string: its escapes are undone, and a quote left open or a bad escape is a 400", async () => {
    const { idempotency, handler, runs } = setup();
    // A structured-field serializer escapes `"` and `\`: such a key is valid, and names the key it escapes.
    expect(keyOf('"a\\"b"')).toBe('a"b');
    await idempotency.run(request(), keyOf('"a\\"b"'), "t", body("{}"), handler());
    expect(
      (await idempotency.run(request(), keyOf('"a\\"b"'), "t", body("{}"), handler())).headers,
    ).toMatchObject({
      "idempotency-replayed": "true",
    });
    await idempotency.run(request(), keyOf("c\\d"), "t", body("{}"), handler());
    expect(
      (await idempotency.run(request(), keyOf('"c\\\\d"'), "t", body("{}"), handler())).headers,
    ).toMatchObject({
      "idempotency-replayed": "true",
    });
    expect(runs()).toBe(2);
    expect(idempotencyKeyOf(request())).toBeUndefined();
    // One quote is not an sf-string, and would otherwise name the same key as `k` or `"k"`.
    for (const bad of ['"k', 'k"', '"a\\x"', '"a\\"', '""', `"${"a".repeat(256)}"`])
      expect(() => keyOf(bad)).toThrow(expect.objectContaining({ code: "bad_request" }));
  });

  test("two Idempotency-Key fields, which the engines join with a comma, are a 400, not one key; a quoted key may hold a comma", () => {
    for (const joined of ["k1, k2", "k1,k2", '"k1", "k2"', 'k1, "k2"', "k1,"])
      expect(() => keyOf(joined)).toThrow(expect.objectContaining({ code: "bad_request" }));
    expect(keyOf('"k1, k2"')).toBe("k1, k2");
    expect(keyOf("k1 k2")).toBe("k1 k2");
  });
});

describe("MemoryIdempotencyStore", () => {
  test("bounded by keys and bytes, oldest out first; a pending claim expires", async () => {
    const store = new MemoryIdempotencyStore({ windowMs: 60_000, pendingMs: 20, maxKeys: 3, maxBytes: 2000 });
    const reply = (size: number) => ({ status: 202, headers: {}, body: "x".repeat(size) });
    for (const id of ["a", "b", "c", "d"]) {
      await store.claim(id, "f");
      await store.complete(id, "f", reply(10));
    }
    expect(store.size().keys).toBe(3);
    expect((await store.claim("a", "f")).state).toBe("claimed");
    await store.complete("big", "f", reply(1500));
    expect(store.size().bytes).toBeLessThanOrEqual(2000);
    expect((await store.claim("b", "f")).state).toBe("claimed");

    expect((await store.claim("p", "f")).state).toBe("claimed");
    expect((await store.claim("p", "f")).state).toBe("pending");
    await Bun.sleep(30);
    expect((await store.claim("p", "f")).state).toBe("claimed");
  });

  test("a tenant past the bounds pushes out its own oldest keys, never another tenant's", async () => {
    const store = new MemoryIdempotencyStore({
      windowMs: 60_000,
      pendingMs: 5000,
      maxKeys: 10,
      maxBytes: 5000,
    });
    const reply = (size: number) => ({ status: 202, headers: {}, body: "x".repeat(size) });
    const quiet = "quiet\nsub\n\n/v1/events\norder-1";
    await store.claim(quiet, "f");
    await store.complete(quiet, "f", reply(10));
    for (let n = 0; n < 30; n++) {
      const id = `noisy\nsub\n\n/v1/events\nkey-${n}`;
      await store.claim(id, "f");
      await store.complete(id, "f", reply(n % 2 === 0 ? 10 : 1000));
    }
    expect((await store.claim(quiet, "f")).state).toBe("done");
    expect((await store.claim("noisy\nsub\n\n/v1/events\nkey-0", "f")).state).toBe("claimed");
    expect(store.size().keys).toBeLessThanOrEqual(10);
    expect(store.size().bytes).toBeLessThanOrEqual(5000);
  });
});
