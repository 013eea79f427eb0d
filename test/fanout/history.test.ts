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
