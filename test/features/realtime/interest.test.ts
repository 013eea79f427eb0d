import { describe, expect, test } from "bun:test";
import { channelTopic, channelTopicHashAt, topicHash } from "../../../src/domain/channel.ts";
import { formatEventId } from "../../../src/domain/event-id.ts";
import { Fanout } from "../../../src/features/realtime/fanout.ts";
import { ChannelHistory, type HistoryEvent } from "../../../src/features/realtime/history.ts";
import { Interest } from "../../../src/features/realtime/interest.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";

function event(offset: number, partition = 0): HistoryEvent {
  const position = { epoch: "e1", partition, offset: BigInt(offset) };
  return { id: formatEventId(position), position, frame: `{"n":${offset}}` };
}

const LIMITS = {
  eventsPerChannel: 100,
  bytesPerChannel: 1 << 20,
  channels: 100,
  maxBytes: 1 << 30,
  tenantMaxBytes: 1 << 30,
};

/** An Interest on a fake clock that logs when channels start and end. */
function interestOnClock(keepIdleMs = 1000, maxRecent = 10) {
  let now = 0;
  const log: string[] = [];
  const interest = new Interest(
    { keepIdleMs, maxRecent },
    (key) => log.push(`start ${key}`),
    (key) => log.push(`end ${key}`),
    () => now,
  );
  return { interest, log, advance: (ms: number) => (now += ms) };
}

describe("Interest: which channels are read here", () => {
  test("a watched channel is wanted; it stays wanted keepIdleMs after its last watcher left", () => {
    const { interest, log, advance } = interestOnClock();
    expect(interest.wants("t/a/x")).toBe(false);
    interest.change("t/a/x", 1);
    interest.change("t/a/x", 1);
    interest.change("t/a/x", -1);
    expect(interest.wants("t/a/x")).toBe(true);
    interest.change("t/a/x", -1);
    advance(999);
    interest.sweep();
    expect(interest.wants("t/a/x")).toBe(true);
    advance(1);
    interest.sweep();
    expect(interest.wants("t/a/x")).toBe(false);
    expect(log).toEqual(["start t/a/x", "end t/a/x"]);
    expect(interest.size).toBe(0);
  });

  test("a watcher coming back within the window does not start the channel again", () => {
    const { interest, log, advance } = interestOnClock();
    interest.change("t/a/x", 1);
    interest.change("t/a/x", -1);
    advance(500);
    interest.change("t/a/x", 1);
    advance(5000);
    interest.sweep();
    expect(interest.wants("t/a/x")).toBe(true);
    expect(log).toEqual(["start t/a/x"]);
  });

  test("a history request keeps a channel for the window; past maxRecent the oldest is dropped", () => {
    const { interest, log } = interestOnClock(1000, 2);
    interest.touch("t/a/1");
    interest.touch("t/a/2");
    interest.touch("t/a/1");
    interest.touch("t/a/3");
    expect(log).toEqual(["start t/a/1", "start t/a/2", "start t/a/3", "end t/a/2"]);
    expect(interest.wants("t/a/1") && interest.wants("t/a/3")).toBe(true);
    expect(interest.wants("t/a/2")).toBe(false);
  });

  test("past maxRecent the tenant keeping the most loses its oldest: one tenant's many history requests push out only its own", () => {
    const { interest, log } = interestOnClock(60_000, 5);
    interest.change("t/quiet/orders", 1);
    interest.change("t/quiet/orders", -1);
    interest.touch("t/quiet/prices");
    for (let n = 0; n < 20; n++) interest.touch(`t/noisy/${n}`);
    expect(interest.wants("t/quiet/orders") && interest.wants("t/quiet/prices")).toBe(true);
    expect(log.filter((line) => line.startsWith("end"))).toEqual(
      Array.from({ length: 17 }, (_, n) => `end t/noisy/${n}`),
    );
    // Where the newcomer keeps fewer than the others, the largest pays, not the newcomer.
    interest.touch("t/third/a");
    expect(log.at(-1)).toBe("end t/noisy/17");
    expect(interest.size).toBe(5);
    // A channel watched again leaves its tenant's kept set: nothing of it is evicted later.
    interest.change("t/quiet/orders", 1);
    for (let n = 100; n < 110; n++) interest.touch(`t/noisy/${n}`);
    expect(
      interest.wants("t/quiet/orders") && interest.wants("t/quiet/prices") && interest.wants("t/third/a"),
    ).toBe(true);
  });

  test("an unmatched leave is ignored", () => {
    const { interest, log } = interestOnClock();
    interest.change("t/a/x", -1);
    expect(interest.size).toBe(0);
    expect(log).toEqual([]);
  });
});

describe("ChannelHistory keeping watched channels only", () => {
  test("a channel never watched answers not_kept for any since, never an empty ok", () => {
    const history = new ChannelHistory(LIMITS, () => {}, "watched");
    history.setOrigin("e1", 0, 0n);
    expect(history.after("t/a/x", event(5).id)).toEqual({ ok: false, reason: "not_kept" });
    // Without since: what is kept (nothing), as before.
    expect(history.after("t/a/x", undefined)).toEqual({ ok: true, events: [] });
  });

  test("a watched channel serves only what came after the watch started", () => {
    const history = new ChannelHistory(LIMITS, () => {}, "watched");
    history.setOrigin("e1", 0, 0n);
    // The reader stood at offset 10: offsets up to 9 may have been this channel's, skipped.
    history.watch("t/a/x", 0, 10n);
    expect(history.after("t/a/x", event(8).id)).toEqual({ ok: false, reason: "not_kept" });
    expect(history.after("t/a/x", event(9).id)).toEqual({ ok: true, events: [] });
    history.append("t/a/x", event(12));
    const after = history.after("t/a/x", event(9).id);
    expect(after.ok && after.events.map((e) => e.position.offset)).toEqual([12n]);
    history.forget("t/a/x");
    expect(history.after("t/a/x", event(12).id)).toEqual({ ok: false, reason: "not_kept" });
    expect(history.channelCount).toBe(0);
    expect(history.bytes).toBe(0);
  });

  test("an empty watched log under the tenant budget goes whole instead of stalling the eviction", () => {
    const history = new ChannelHistory({ ...LIMITS, tenantMaxBytes: 2000 }, () => {}, "watched");
    history.setOrigin("e1", 0, 0n);
    history.watch("t/a/empty", 0, 0n);
    for (let offset = 0; offset < 20; offset++) history.append("t/a/busy", event(offset));
    expect(history.bytes).toBeLessThanOrEqual(2000);
    expect(history.after("t/a/empty", event(3).id)).toEqual({ ok: false, reason: "not_kept" });
  });

  test("keeping every channel (the in-process bus) still serves a channel with no log from its origin", () => {
    const history = new ChannelHistory(LIMITS);
    history.setOrigin("e1", 0, 0n);
    expect(history.after("t/a/x", event(5).id)).toEqual({ ok: true, events: [] });
  });
});

describe("Fanout skips what nobody here wants", () => {
  function message(channel: string | undefined, offset: number, broadcast = false) {
    return {
      tenant: "a",
      channel,
      broadcast,
      dataJson: "{}",
      ts: Date.now(),
      position: { epoch: "e1", partition: 0, offset: BigInt(offset) },
    };
  }

  test("an unwanted channel is neither kept nor published; a wanted one and broadcasts are", () => {
    const history = new ChannelHistory(LIMITS, () => {}, "watched");
    history.setOrigin("e1", 0, 0n);
    const interest = new Interest(
      { keepIdleMs: 1000, maxRecent: 10 },
      (key) => history.watch(key, 0, 0n),
      (key) => history.forget(key),
    );
    const fanout = new Fanout(history, createMetrics("bun", "test"), interest);
    const published: string[] = [];
    fanout.attach({
      publish: (topic) => {
        published.push(topic);
        return 1;
      },
    });
    interest.change("t/a/wanted", 1);
    expect(fanout.wants("a", "wanted")).toBe(true);
    expect(fanout.wants("a", "other")).toBe(false);
    expect(fanout.wants("a", undefined)).toBe(true);
    fanout.deliver(message("other", 1));
    fanout.deliver(message("wanted", 2));
    fanout.deliver(message(undefined, 3, true));
    expect(published).toEqual(["t/a/wanted", "b/a"]);
    expect(history.channelCount).toBe(1);
    const kept = history.after("t/a/wanted", event(0).id);
    expect(kept.ok && kept.events.map((e) => e.position.offset)).toEqual([2n]);
  });

  test("mayWant answers by topic hash for exactly the wanted channels, watched or recent, until they end", () => {
    let now = 0;
    const interest = new Interest(
      { keepIdleMs: 1000, maxRecent: 10 },
      () => {},
      () => {},
      () => now,
    );
    const fanout = new Fanout(new ChannelHistory(LIMITS), createMetrics("bun", "test"), interest);
    const hash = (channel: string) => topicHash(channelTopic("a", channel));
    interest.change("t/a/x", 1);
    interest.change("t/a/x", 1);
    interest.touch("t/a/y");
    expect([fanout.mayWant(hash("x")), fanout.mayWant(hash("y")), fanout.mayWant(hash("z"))]).toEqual([
      true,
      true,
      false,
    ]);
    interest.change("t/a/x", -1);
    interest.change("t/a/x", -1);
    expect(fanout.mayWant(hash("x"))).toBe(true); // kept keepIdleMs after its last watcher
    now = 2000;
    interest.sweep();
    expect([fanout.mayWant(hash("x")), fanout.mayWant(hash("y"))]).toEqual([false, false]);
  });

  test("the hash of a topic's header bytes is the hash of its name, non-ASCII included", () => {
    for (const [tenant, channel] of [
      ["acme", "c1"],
      ["tenänt", "orders:eu-1"],
      ["a", "é"],
    ] as const) {
      const bytes = Buffer.concat([Buffer.from("xx"), Buffer.from(tenant), Buffer.from(channel)]);
      const tenantEnd = 2 + Buffer.byteLength(tenant);
      expect(channelTopicHashAt(bytes, 2, tenantEnd, tenantEnd, bytes.length)).toBe(
        topicHash(channelTopic(tenant, channel)),
      );
    }
  });

  test("without an Interest every channel is wanted", () => {
    const fanout = new Fanout(new ChannelHistory(LIMITS), createMetrics("bun", "test"));
    expect(fanout.wants("a", "anything")).toBe(true);
  });
});
