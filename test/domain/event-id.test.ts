import { describe, expect, test } from "bun:test";
import { isAfter } from "../../clients/typescript/src/event-id.ts";
import { BEFORE_FIRST_OFFSET, formatEventId, parseEventId } from "../../src/domain/event-id.ts";

describe("event ids", () => {
  test("an event's id round-trips, its offset zero-padded", () => {
    const id = formatEventId({ epoch: "k1", partition: 2, offset: 42n });
    expect(id).toBe("k1-2-0000000000000042");
    expect(parseEventId(id)).toEqual({ epoch: "k1", partition: 2, offset: 42n });
  });

  test("the position before a partition's first offset round-trips and sorts before every id of it", () => {
    const before = formatEventId({ epoch: "k1", partition: 2, offset: BEFORE_FIRST_OFFSET });
    expect(before).toBe("k1-2--1");
    expect(parseEventId(before)).toEqual({ epoch: "k1", partition: 2, offset: -1n });
    const first = formatEventId({ epoch: "k1", partition: 2, offset: 0n });
    expect(before < first).toBe(true);
    // The client agrees: its first event comes after the position, never the other way round.
    expect(isAfter(first, before, { sameEpochOnly: true })).toBe(true);
    expect(isAfter(before, first, { sameEpochOnly: true })).toBe(false);
    expect(isAfter(before, before, { sameEpochOnly: true })).toBe(false);
  });

  test("other negative offsets are not ids", () => {
    expect(parseEventId("k1-2--2")).toBeUndefined();
    expect(parseEventId("k1-2--0000000000000001")).toBeUndefined();
  });
});
