import { describe, expect, test } from "bun:test";
import { formatEventId, parseEventId } from "../../src/fanout/event-id.ts";
import { ChannelHistory, type HistoryEvent } from "../../src/fanout/history.ts";

function event(offset: number, epoch = "e1", partition = 0, size = 10): HistoryEvent {
  const position = { epoch, partition, offset: BigInt(offset) };
  return { id: formatEventId(position), position, frame: "x".repeat(size) };
}

describe("event ids", () => {
  test("round-trip and increase as strings within a partition", () => {
    const a = formatEventId({ epoch: "kabc", partition: 2, offset: 9n });
    const b = formatEventId({ epoch: "kabc", partition: 2, offset: 10n });
    expect(a < b).toBe(true);
    expect(parseEventId(b)).toEqual({ epoch: "kabc", partition: 2, offset: 10n });
    expect(parseEventId("nonsense")).toBeUndefined();
  });
});

describe("ChannelHistory", () => {
  const limits = { eventsPerChannel: 3, bytesPerChannel: 1000, channels: 2 };

  test("replays what came after since, and refuses ids older than what is kept", () => {
    const history = new ChannelHistory(limits);
    history.setOrigin("e1", 0, 0n);
    for (const offset of [0, 2, 5, 7, 9]) history.append("t/a/orders", event(offset));
    expect(history.lastId("t/a/orders")).toBe(event(9).id);
    const after = history.after("t/a/orders", event(5).id);
    expect(after.ok && after.events.map((e) => e.position.offset)).toEqual([7n, 9n]);
    // 2 was evicted: a client that saw 2 misses nothing, one that saw 0 or 1 missed 2.
    expect(history.after("t/a/orders", event(2).id).ok).toBe(true);
    expect(history.after("t/a/orders", event(1).id).ok).toBe(false);
    expect(history.after("t/a/orders", event(0).id).ok).toBe(false);
  });

  test("an id from another epoch, or from before this instance's origin, is history_gone", () => {
    const history = new ChannelHistory(limits);
    history.setOrigin("e1", 0, 100n);
    history.append("t/a/x", event(100));
    expect(history.after("t/a/x", event(99, "e1").id).ok).toBe(true);
    expect(history.after("t/a/x", event(50, "e1").id).ok).toBe(false);
    expect(history.after("t/a/x", event(100, "e0").id).ok).toBe(false);
    expect(history.after("t/a/x", "garbage").ok).toBe(false);
  });

  test("bounded in bytes per channel and in channels", () => {
    const history = new ChannelHistory({ eventsPerChannel: 100, bytesPerChannel: 25, channels: 2 });
    history.setOrigin("e1", 0, 0n);
    for (const offset of [0, 1, 2]) history.append("t/a/one", event(offset));
    const kept = history.after("t/a/one", undefined);
    expect(kept.ok && kept.events.length).toBe(2);
    history.append("t/a/two", event(3));
    history.append("t/a/three", event(4));
    expect(history.channelCount).toBe(2);
    expect(history.lastId("t/a/one")).toBeUndefined();
  });
});

describe("ChannelHistory eviction of whole channels", () => {
  const limits = { eventsPerChannel: 10, bytesPerChannel: 1000, channels: 2 };

  test("a since in an evicted channel is history_gone, not an empty replay", () => {
    const history = new ChannelHistory(limits);
    history.setOrigin("e1", 0, 0n);
    history.append("t/a/one", event(0));
    history.append("t/a/one", event(1));
    history.append("t/a/two", event(2));
    history.append("t/a/three", event(3));
    // "one" is gone with offset 1: a client that saw 0 missed 1.
    expect(history.after("t/a/one", event(0).id).ok).toBe(false);
    // A client that saw 1 (or anything newer) missed nothing that was evicted.
    expect(history.after("t/a/one", event(1).id)).toEqual({ ok: true, events: [] });
    // Kept channels are judged by their own log, not by the eviction of another.
    const kept = history.after("t/a/two", event(0).id);
    expect(kept.ok && kept.events.map((e) => e.position.offset)).toEqual([2n]);
  });

  test("a channel written again after its eviction does not hide the evicted events", () => {
    const history = new ChannelHistory(limits);
    history.setOrigin("e1", 0, 0n);
    history.append("t/a/one", event(0));
    history.append("t/a/one", event(1));
    history.append("t/a/two", event(2));
    history.append("t/a/three", event(3));
    history.append("t/a/one", event(4));
    expect(history.after("t/a/one", event(0).id).ok).toBe(false);
    const fresh = history.after("t/a/one", event(3).id);
    expect(fresh.ok && fresh.events.map((e) => e.position.offset)).toEqual([4n]);
  });

  test("evictions are tracked per partition, and a new epoch forgets them", () => {
    const history = new ChannelHistory(limits);
    history.setOrigin("e1", 0, 0n);
    history.setOrigin("e1", 1, 0n);
    history.append("t/a/one", event(5, "e1", 0));
    history.append("t/a/two", event(1, "e1", 1));
    history.append("t/a/three", event(2, "e1", 1));
    expect(history.after("t/a/one", event(4, "e1", 0).id).ok).toBe(false);
    expect(history.after("t/a/other", event(0, "e1", 1).id).ok).toBe(true);
    // An id from another partition than the channel's says nothing about the channel.
    expect(history.after("t/a/three", event(0, "e1", 0).id).ok).toBe(false);
    history.setOrigin("e2", 0, 0n);
    expect(history.after("t/a/one", event(4, "e2", 0).id).ok).toBe(true);
  });
});
