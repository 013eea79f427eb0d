import { describe, expect, test } from "bun:test";
import pino from "pino";
import { GatewayError } from "../../../src/domain/errors.ts";
import type { Principal } from "../../../src/domain/principal.ts";
import {
  MAX_EVENTS_PER_CHECK,
  MAX_WATCHED_CHANNELS,
  MAX_WATCHED_CHANNELS_PER_TENANT,
  Presence,
} from "../../../src/features/realtime/presence.ts";
import { createLogger } from "../../../src/log/logger.ts";
import type { PresencePage, PresenceStore } from "../../../src/ports/presence.ts";
import type { HttpReply, HttpRequest } from "../../../src/ports/transport.ts";

const log = createLogger("silent", {});

function principal(overrides: Partial<Principal> = {}): Principal {
  return {
    subject: "reader",
    tenant: "acme",
    scopes: new Set(["subscribe"]),
    channels: undefined,
    expiresAt: Date.now() + 60_000,
    ...overrides,
  };
}

async function ask(presence: Presence, channel: string, who = principal()) {
  const request = {} as HttpRequest;
  const checks = { admission: { read: () => undefined }, authenticate: async () => who };
  const reply = (await presence.route(checks).handler(request, { channel })) as HttpReply;
  return { status: reply.status, body: JSON.parse(reply.body as string) };
}

describe("Presence", () => {
  test("GET presence: a client over its IP request budget gets the 429 before its token is looked at", async () => {
    const presence = new Presence(undefined, log);
    const refusal = new GatewayError("rate_limited", "rate limit exceeded", { "retry-after": "1" });
    let verified = 0;
    const route = presence.route({
      admission: { read: () => Promise.reject(refusal) },
      authenticate: async () => {
        verified++;
        return principal();
      },
    });
    await expect(route.handler({} as HttpRequest, { channel: "c" })).rejects.toBe(refusal);
    expect(verified).toBe(0);
  });

  // Found in the tenant-versus-tenant audit: every watched channel costs a comparison each second,
  // and a tenant's 400,000 held the event loop 460–660 ms of every second, for every tenant.
  test("a tenant watches at most its share of channels for join and leave events, the instance at most four shares; giving one back frees its place", () => {
    const presence = new Presence(undefined, log);
    const key = (tenant: string, n: number) => `t/${tenant}/room-${n}`;
    for (let n = 0; n < MAX_WATCHED_CHANNELS_PER_TENANT; n++)
      expect(presence.watch(key("acme", n), 1)).toBe(true);
    // A channel already watched takes another watcher; a new one is refused.
    expect(presence.watch(key("acme", 0), 1)).toBe(true);
    expect(presence.watch(key("acme", -1), 1)).toBe(false);
    expect(presence.watch(key("globex", 0), 1)).toBe(true);
    presence.watch(key("acme", 1), -1);
    expect(presence.watch(key("acme", -1), 1)).toBe(true);
    expect(presence.watch(key("acme", -2), 1)).toBe(false);
    // The instance's bound: four tenants' shares.
    for (const tenant of ["b", "c", "d"])
      for (let n = 0; n < MAX_WATCHED_CHANNELS_PER_TENANT; n++) presence.watch(key(tenant, n), 1);
    expect(presence.watchedCount).toBe(MAX_WATCHED_CHANNELS);
    expect(presence.watch(key("globex", 1), 1)).toBe(false);
    presence.watch(key("b", 0), -1);
    expect(presence.watch(key("globex", 1), 1)).toBe(true);
  });

  test("counts connections per subject, forgets a subject at zero and a channel with no one", async () => {
    const presence = new Presence(undefined, log);
    const members = async (channel: string) => {
      const { body } = (await ask(presence, channel)) as { body: { total: number; members: unknown[] } };
      return { total: body.total, members: body.members };
    };
    presence.change("t/acme/c", "ann", 1);
    presence.change("t/acme/c", "ann", 1);
    presence.change("t/acme/c", "bob", 1);
    expect(await members("c")).toEqual({
      total: 2,
      members: [
        { subject: "ann", connections: 2 },
        { subject: "bob", connections: 1 },
      ],
    });
    presence.change("t/acme/c", "ann", -1);
    presence.change("t/acme/c", "bob", -1);
    expect(await members("c")).toEqual({ total: 1, members: [{ subject: "ann", connections: 1 }] });
    presence.change("t/acme/c", "ann", -1);
    presence.change("t/acme/gone", "x", -1);
    expect(await members("c")).toEqual({ total: 0, members: [] });
    expect(await members("gone")).toEqual({ total: 0, members: [] });
    expect(presence.channelCount).toBe(0);
  });

  test("without a store the answer is this instance's, said so; channels stay within the tenant and the token", async () => {
    const presence = new Presence(undefined, log);
    presence.change("t/acme/c", "ann", 1);
    presence.change("t/globex/c", "eve", 1);
    expect(await ask(presence, "c")).toEqual({
      status: 200,
      body: { channel: "c", scope: "instance", total: 1, members: [{ subject: "ann", connections: 1 }] },
    });
    await expect(ask(presence, "c", principal({ scopes: new Set(["ingest"]) }))).rejects.toMatchObject({
      code: "forbidden",
    });
    await expect(ask(presence, "c", principal({ channels: ["other"] }))).rejects.toMatchObject({
      code: "forbidden",
    });
    await expect(ask(presence, "$bad")).rejects.toMatchObject({ code: "bad_request" });
  });

  test("a channel of 100,000 is answered without sorting them: its first 1,000 in `<` order, as before, and its total", async () => {
    const presence = new Presence(undefined, log);
    const subjects = Array.from({ length: 100_000 }, (_, i) => `user-${(i * 7919) % 100_000}`);
    subjects.push("\uFFFF", "😀", "A");
    for (const subject of subjects) presence.change("t/acme/big", subject, 1);
    presence.change("t/acme/big", "A", 1);
    presence.change("t/acme/big", "user-0", -1);
    subjects.splice(subjects.indexOf("user-0"), 1);
    // The cost of a sort grows with what it sorts: none of more than a page is allowed per answer.
    const sort = Array.prototype.sort;
    let largestSorted = 0;
    Array.prototype.sort = function (this: unknown[], compare) {
      largestSorted = Math.max(largestSorted, this.length);
      return sort.call(this, compare);
    };
    let answer: Awaited<ReturnType<typeof ask>>;
    try {
      answer = await ask(presence, "big");
    } finally {
      Array.prototype.sort = sort;
    }
    expect(largestSorted).toBeLessThanOrEqual(1000);
    const expected = subjects.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).slice(0, 1000);
    expect(answer.body.total).toBe(100_002);
    expect(answer.body.members).toEqual(
      expected.map((subject) => ({ subject, connections: subject === "A" ? 2 : 1 })),
    );
  });

  test("with a store every change is told to it, and the answer is the cluster's; a store failure falls back to this instance", async () => {
    const told: Array<[string, Array<[string, number]>]> = [];
    let failing = false;
    const store: PresenceStore = {
      changed: (key, members) => told.push([key, [...members]]),
      members: async (): Promise<PresencePage> => {
        if (failing) throw new Error("redis down");
        return {
          total: 2,
          members: new Map([
            ["ann", 3],
            ["zed", 1],
          ]),
        };
      },
      close: async () => {},
    };
    const presence = new Presence(store, log);
    presence.change("t/acme/c", "ann", 1);
    presence.change("t/acme/c", "ann", -1);
    expect(told).toEqual([
      ["t/acme/c", [["ann", 1]]],
      ["t/acme/c", []],
    ]);
    expect((await ask(presence, "c")).body).toMatchObject({ scope: "cluster", total: 2 });
    failing = true;
    expect((await ask(presence, "c")).body).toEqual({
      channel: "c",
      scope: "instance",
      total: 0,
      members: [],
    });
  });

  test("a store that cannot answer is warned once per interval, not once per request", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const capture = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const store: PresenceStore = {
      changed: () => {},
      members: () => Promise.reject(new Error("redis down")),
      close: async () => {},
    };
    const presence = new Presence(store, capture);
    for (let i = 0; i < 50; i++) expect((await ask(presence, "c")).body.scope).toBe("instance");
    const warnings = lines.filter(
      (line) => line.msg === "presence store unavailable; answering for this instance",
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ failures: 1, err: { message: "redis down" } });
  });
});

describe("join and leave events (this instance's members)", () => {
  function watched() {
    const presence = new Presence(undefined, log);
    const frames: Array<Record<string, unknown>> = [];
    presence.listen({ presenceEvent: (_key, _kind, frame) => frames.push(JSON.parse(frame)) });
    return { presence, frames };
  }

  test("a subject's first connection is a join and its last one's going a leave; who was there is not", async () => {
    const { presence, frames } = watched();
    presence.change("t/acme/room", "ann", 1);
    presence.watch("t/acme/room", 1);
    presence.change("t/acme/room", "bob", 1);
    presence.change("t/acme/room", "bob", 1);
    await presence.check();
    expect(frames).toEqual([{ type: "join", channel: "room", subject: "bob" }]);
    presence.change("t/acme/room", "bob", -1);
    await presence.check();
    expect(frames).toHaveLength(1);
    presence.change("t/acme/room", "bob", -1);
    await presence.check();
    expect(frames.at(-1)).toEqual({ type: "leave", channel: "room", subject: "bob" });
  });

  test("a subject that comes and goes between two checks sends nothing; unwatched channels nothing", async () => {
    const { presence, frames } = watched();
    presence.watch("t/acme/room", 1);
    for (let i = 0; i < 50; i++) {
      presence.change("t/acme/room", "flappy", 1);
      presence.change("t/acme/room", "flappy", -1);
    }
    presence.change("t/acme/other", "ann", 1);
    await presence.check();
    expect(frames).toEqual([]);
    presence.watch("t/acme/room", -1);
    presence.change("t/acme/room", "late", 1);
    await presence.check();
    expect(frames).toEqual([]);
    expect(presence.watchedCount).toBe(0);
  });

  test("at most MAX_EVENTS_PER_CHECK per channel per check; the rest come at the next checks", async () => {
    const { presence, frames } = watched();
    presence.watch("t/acme/crowd", 1);
    for (let i = 0; i < MAX_EVENTS_PER_CHECK + 10; i++) presence.change("t/acme/crowd", `s${i}`, 1);
    await presence.check();
    expect(frames).toHaveLength(MAX_EVENTS_PER_CHECK);
    await presence.check();
    expect(frames).toHaveLength(MAX_EVENTS_PER_CHECK + 10);
    expect(new Set(frames.map((frame) => frame.subject)).size).toBe(MAX_EVENTS_PER_CHECK + 10);
  });

  test("a store that cannot answer sends nothing rather than every subject leaving", async () => {
    let fail = false;
    const members = new Map([["ann", 1]]);
    const store: PresenceStore = {
      changed: () => {},
      members: async () => {
        if (fail) throw new Error("down");
        return { total: members.size, members };
      },
      close: async () => {},
    };
    const presence = new Presence(store, log);
    const frames: string[] = [];
    presence.listen({ presenceEvent: (_key, kind) => frames.push(kind) });
    presence.watch("t/acme/room", 1);
    await presence.check();
    fail = true;
    await presence.check();
    expect(frames).toEqual([]);
    fail = false;
    members.delete("ann");
    await presence.check();
    expect(frames).toEqual(["leave"]);
  });
});
