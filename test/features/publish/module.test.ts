import { describe, expect, test } from "bun:test";
import { GatewayError } from "../../../src/domain/errors.ts";
import type { Principal } from "../../../src/domain/principal.ts";
import { createPublisher, createPublishModule } from "../../../src/features/publish/module.ts";
import { RequestBodies } from "../../../src/http/request-bodies.ts";
import type { FanoutBus, FanoutMessage } from "../../../src/ports/fanout-bus.ts";
import type { HttpRequest } from "../../../src/ports/transport.ts";

function principal(channels: string[] | undefined): Principal {
  return {
    subject: "alice",
    tenant: "acme",
    scopes: new Set(["publish"]),
    channels,
    expiresAt: Date.now() + 60_000,
  };
}

/** A publisher on a bus that records what it was given, and whether the tenant's budget was asked. */
function publisher() {
  const published: FanoutMessage[] = [];
  let charged = 0;
  const bus = {
    publish: async (messages: FanoutMessage[]) => {
      published.push(...messages);
    },
  } as unknown as FanoutBus;
  const publish = createPublisher({
    bus,
    ackTimeoutMs: 1000,
    maxBytes: 256,
    admission: {
      request: () => undefined,
      events: () => {
        charged++;
        return undefined;
      },
    },
  });
  return { publish, published, charged: () => charged };
}

const broadcast = (channel?: string) => ({ channel, broadcast: true, dataJson: "{}", trace: undefined });

describe("createPublisher: broadcasts", () => {
  test("a token without a channels claim broadcasts to the tenant", async () => {
    const { publish, published } = publisher();
    await publish(principal(undefined), broadcast());
    expect(published).toMatchObject([{ tenant: "acme", broadcast: true }]);
  });

  test("a token whose claim holds `*` may use every channel, so it may broadcast", async () => {
    const { publish, published } = publisher();
    await publish(principal(["orders", "*"]), broadcast());
    expect(published.length).toBe(1);
  });

  test.each([
    ["without a channel", undefined],
    ["on a channel the token may use", "orders.eu"],
  ])(
    "a token limited to channel patterns may not broadcast (%s): forbidden, nothing published or charged",
    async (_, channel) => {
      const { publish, published, charged } = publisher();
      const refused = await publish(principal(["orders*"]), broadcast(channel)).catch(
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(GatewayError);
      expect((refused as GatewayError).code).toBe("forbidden");
      expect((refused as GatewayError).status).toBe(403);
      expect((refused as GatewayError).headers["www-authenticate"]).toBe(
        'Bearer error="insufficient_scope", error_description="a token limited by a channels claim cannot broadcast"',
      );
      expect(published).toEqual([]);
      expect(charged()).toBe(0);
    },
  );

  test("the same token still publishes to a channel it may use", async () => {
    const { publish, published } = publisher();
    await publish(principal(["orders*"]), {
      channel: "orders",
      broadcast: false,
      dataJson: "{}",
      trace: undefined,
    });
    expect(published).toMatchObject([{ tenant: "acme", channel: "orders" }]);
  });
});

describe("createPublisher: size", () => {
  test("data over maxBytes (a WebSocket frame's; an HTTP body is held to it whole) is refused payload_too_large, counted in UTF-8 bytes, and not published", async () => {
    const { publish, published, charged } = publisher();
    const over = {
      channel: "orders",
      broadcast: false,
      dataJson: JSON.stringify("é".repeat(127)),
      trace: undefined,
    };
    expect(Buffer.byteLength(over.dataJson)).toBe(256);
    await publish(principal(undefined), over);
    const tooLarge = { ...over, dataJson: JSON.stringify("é".repeat(128)) };
    expect(tooLarge.dataJson.length).toBeLessThan(256);
    await expect(publish(principal(undefined), tooLarge)).rejects.toMatchObject({
      code: "payload_too_large",
      message: "a publish's data is at most 256 bytes",
    });
    expect(published.length).toBe(1);
    expect(charged()).toBe(1);
  });
});

describe("POST /v1/publish", () => {
  test("a malformed Idempotency-Key is a 400 from the headers alone: the body is never read (nor uploaded)", async () => {
    const module = createPublishModule({
      authenticate: () => principal(undefined),
      admission: { request: () => undefined, events: () => undefined },
      idempotency: { run: () => Promise.reject(new Error("not reached")) },
      bus: {} as FanoutBus,
      maxBytes: 1000,
      ackTimeoutMs: 1000,
      bodies: new RequestBodies(64 * 1024 * 1024, 1000),
    });
    const route = module.routes?.[0];
    let read = false;
    const request: HttpRequest = {
      method: "POST",
      path: "/v1/publish",
      query: new URLSearchParams(),
      header: (name) => ({ "content-type": "application/json", "idempotency-key": "a".repeat(256) })[name],
      headerNames: () => ["content-type", "idempotency-key"],
      remoteAddress: "127.0.0.1",
      body: async () => {
        read = true;
        return new TextEncoder().encode('{"channel":"orders","data":{}}');
      },
    };
    await expect(route?.handler(request, {}) as Promise<unknown>).rejects.toMatchObject({
      code: "bad_request",
    });
    expect(read).toBe(false);
  });

  // Found in the SPEC audit: /v1/events skipped a leading byte order mark, /v1/publish refused it (400).
  test("a body behind a UTF-8 byte order mark is published as ingest reads one; a malformed one is still a 400", async () => {
    const published: FanoutMessage[] = [];
    const module = createPublishModule({
      authenticate: () => principal(undefined),
      admission: { request: () => undefined, events: () => undefined },
      idempotency: { run: () => Promise.reject(new Error("not reached")) },
      bus: {
        publish: async (messages: FanoutMessage[]) => {
          published.push(...messages);
        },
      } as unknown as FanoutBus,
      maxBytes: 1000,
      ackTimeoutMs: 1000,
      bodies: new RequestBodies(64 * 1024 * 1024, 1000),
    });
    const post = (text: string) =>
      module.routes?.[0]?.handler(
        {
          method: "POST",
          path: "/v1/publish",
          query: new URLSearchParams(),
          header: (name) => ({ "content-type": "application/json" })[name],
          headerNames: () => ["content-type"],
          remoteAddress: "127.0.0.1",
          body: async () => new TextEncoder().encode(text),
        },
        {},
      );
    await post('\ufeff{"channel":"orders","data":{"n":1}}');
    expect(published).toMatchObject([{ channel: "orders", dataJson: '{"n":1}' }]);
    await expect(
      post('\ufeff\ufeff{"channel":"orders","data":{}}') as Promise<unknown>,
    ).rejects.toMatchObject({
      code: "malformed_json",
    });
  });
});
