import { describe, expect, test } from "bun:test";
import { formatEventId, parseEventId } from "../../../src/domain/event-id.ts";
import { ChannelHistory, type HistoryEvent, storedBytes } from "../../../src/features/realtime/history.ts";

function event(offset: number, epoch = "e1", partition = 0, size = 10): HistoryEvent {
  const position = { epoch, partition, offset: BigInt(offset) };
  return { id: formatEventId(position), position, frame: "x".repeat(size) };
}

/** Instance and tenant budgets that never bind. */
const ROOMY = { maxBytes: 1 << 30, tenantMaxBytes: 1 << 30 };

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
  const limits = { eventsPerChannel: 3, bytesPerChannel: 100_000, channels: 2, ...ROOMY };

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
    const history = new ChannelHistory({
      eventsPerChannel: 100,
      bytesPerChannel: 2 * storedBytes(event(0)) + 1,
      channels: 2,
      ...ROOMY,
    });
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
  const limits = { eventsPerChannel: 10, bytesPerChannel: 100_000, channels: 2, ...ROOMY };

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

describe("ChannelHistory budgets", () => {
  const eventBytes = storedBytes(event(0));

  test("a tenant flooding 12,000 channels never evicts another tenant's events (issue 23)", () => {
    let evictedByChannels = 0;
    const history = new ChannelHistory(
      {
        eventsPerChannel: 1000,
        bytesPerChannel: 1 << 20,
        channels: 10_000,
        maxBytes: 1 << 30,
        tenantMaxBytes: 1 << 30,
      },
      (cause, events) => {
        if (cause === "channels") evictedByChannels += events;
      },
    );
    history.setOrigin("e1", 0, 0n);
    history.append("t/a/orders", event(0));
    history.append("t/a/orders", event(1));
    for (let n = 0; n < 12_000; n++) history.append(`t/b/c${n}`, event(2 + n));
    const resumed = history.after("t/a/orders", event(0).id);
    expect(resumed.ok && resumed.events.map((e) => e.position.offset)).toEqual([1n]);
    expect(history.channelCount).toBe(10_000);
    expect(evictedByChannels).toBe(2001);
    // B's dropped channels are history_gone for B only: A's channels keep their own marks.
    expect(history.after("t/b/c0", event(1).id)).toEqual({ ok: false, reason: "not_kept" });
    expect(history.after("t/a/never-written", event(1).id)).toEqual({ ok: true, events: [] });
  });

  test("a tenant past its share loses its own oldest events, never another tenant's", () => {
    const causes: string[] = [];
    const history = new ChannelHistory(
      {
        eventsPerChannel: 1000,
        bytesPerChannel: 1 << 20,
        channels: 100,
        maxBytes: 1 << 20,
        tenantMaxBytes: 10 * eventBytes + 1000,
      },
      (cause) => causes.push(cause),
    );
    history.setOrigin("e1", 0, 0n);
    history.append("t/a/x", event(0));
    for (let n = 1; n <= 50; n++) history.append(`t/b/c${n % 3}`, event(n));
    expect(history.after("t/a/x", undefined)).toMatchObject({ ok: true, events: [{ id: event(0).id }] });
    const kept = history.after("t/b/c0", undefined);
    expect(kept.ok && kept.events.length).toBeLessThan(5);
    expect(history.bytes).toBeLessThanOrEqual(11 * eventBytes + 2000);
    expect(new Set(causes)).toEqual(new Set(["tenant_budget"]));
    // What B lost is history_gone for B's resume, not a silent gap.
    expect(history.after("t/b/c1", event(1).id)).toEqual({ ok: false, reason: "not_kept" });
  });

  test("past the instance budget, the tenant holding the most pays", () => {
    const history = new ChannelHistory({
      eventsPerChannel: 1000,
      bytesPerChannel: 1 << 20,
      channels: 100,
      maxBytes: 20 * eventBytes,
      tenantMaxBytes: 1 << 20,
    });
    history.setOrigin("e1", 0, 0n);
    for (let n = 0; n < 3; n++) history.append("t/a/x", event(n));
    for (let n = 3; n < 100; n++) history.append("t/b/y", event(n));
    const a = history.after("t/a/x", event(0).id);
    expect(a.ok && a.events.map((e) => e.position.offset)).toEqual([1n, 2n]);
    expect(history.bytes).toBeLessThanOrEqual(20 * eventBytes);
    // A small tenant writing now does not evict itself while B holds more.
    history.append("t/a/x", event(100));
    const again = history.after("t/a/x", event(0).id);
    expect(again.ok && again.events.length).toBe(3);
  });

  test("a dropped channel gives back every byte it held", () => {
    const flooded = new ChannelHistory({ ...limitsFor(2), ...ROOMY });
    const fresh = new ChannelHistory({ ...limitsFor(2), ...ROOMY });
    for (const history of [flooded, fresh]) history.setOrigin("e1", 0, 0n);
    flooded.append("t/a/x", event(0));
    flooded.append("t/a/x", event(1));
    for (const history of [flooded, fresh]) {
      history.append("t/b/y", event(2));
      history.append("t/c/z", event(3));
    }
    expect(flooded.channelCount).toBe(2);
    expect(flooded.bytes).toBe(fresh.bytes);
  });
});

function limitsFor(channels: number) {
  return { eventsPerChannel: 10, bytesPerChannel: 100_000, channels };
}

describe("ChannelHistory origin", () => {
  test("a retried start announces a later origin, and the later one wins (issue 23)", () => {
    const history = new ChannelHistory({ ...limitsFor(10), ...ROOMY });
    // The first attempt read the latest offsets (100) and failed before consuming; the retry starts at 150.
    history.setOrigin("e1", 0, 100n);
    history.setOrigin("e1", 0, 150n);
    history.append("t/a/x", event(150));
    // 120..149 were never read here: a resume from 120 must not answer ok with them missing.
    expect(history.after("t/a/x", event(120).id)).toEqual({ ok: false, reason: "not_kept" });
    expect(history.after("t/a/x", event(149).id).ok).toBe(true);
  });
});

describe("ChannelHistory on a fan-out topic given more partitions", () => {
  test("a channel whose events move to an added partition is served from there, not refused as another partition's", () => {
    const history = new ChannelHistory({ ...limitsFor(10), ...ROOMY }, () => {}, "watched");
    history.setOrigin("e1", 1, 40n);
    history.watch("t/a/x", 1, 40n);
    history.append("t/a/x", event(40, "e1", 1));
    // The reader found partition 3 added and reads it from its first offset; the channel's key maps there now.
    history.setOrigin("e1", 3, 0n);
    history.append("t/a/x", event(0, "e1", 3));
    history.append("t/a/x", event(1, "e1", 3));
    expect(history.lastId("t/a/x")).toBe(event(1, "e1", 3).id);
    const after = history.after("t/a/x", event(0, "e1", 3).id);
    expect(after.ok && after.events.map((e) => e.id)).toEqual([event(1, "e1", 3).id]);
    // Positions of the old partition do not compare with the new ones: not served from here.
    expect(history.after("t/a/x", event(40, "e1", 1).id)).toEqual({ ok: false, reason: "unknown_position" });
  });
});

describe("ChannelHistory marks of tenants whose state was freed", () => {
  // Found in the outside audit: a freed tenant's marks were merged into one held for every tenant, so
  // another tenant's channel started after it had its resume refused (history_gone) with nothing missed.
  test("hold for their own tenant, also when it comes back, never for another tenant", () => {
    const history = new ChannelHistory({ ...limitsFor(10), ...ROOMY });
    history.setOrigin("e1", 0, 0n);
    for (let offset = 0; offset <= 10; offset++) history.append("t/a/x", event(offset));
    history.forget("t/a/x");
    history.append("t/b/y", event(11));
    const other = history.after("t/b/y", event(5).id);
    expect(other.ok && other.events.map((e) => e.id)).toEqual([event(11).id]);
    // Tenant a's channels dropped up to 10 are still gone for a, back with a new channel.
    history.append("t/a/z", event(12));
    expect(history.after("t/a/z", event(5).id)).toEqual({ ok: false, reason: "not_kept" });
    expect(history.after("t/a/z", event(10).id).ok).toBe(true);
  });

  test("past as many freed tenants as channels kept, the oldest one's marks hold for every tenant", () => {
    const history = new ChannelHistory({ ...limitsFor(2), ...ROOMY });
    history.setOrigin("e1", 0, 0n);
    for (const [offset, tenant] of [
      [3, "a"],
      [4, "b"],
      [5, "c"],
    ] as const) {
      history.append(`t/${tenant}/x`, event(offset));
      history.forget(`t/${tenant}/x`);
    }
    history.append("t/d/y", event(6));
    // a's mark (3) now holds for d too: needless history_gone at worst, never a gap.
    expect(history.after("t/d/y", event(2).id)).toEqual({ ok: false, reason: "not_kept" });
    expect(history.after("t/d/y", event(3).id).ok).toBe(true);
  });
});
