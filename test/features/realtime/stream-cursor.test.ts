import { expect, test } from "bun:test";
import { parseCursor, StreamCursor } from "../../../src/features/realtime/stream-cursor.ts";

test("a cursor holds one position per partition, ordered by partition, and moves with each event sent", () => {
  const cursor = new StreamCursor(["e1-2-0000000000000007", "e1-0--1"]);
  expect(cursor.toString()).toBe("e1-0--1,e1-2-0000000000000007");
  expect(cursor.after("e1-0-0000000000000003")).toBe("e1-0-0000000000000003,e1-2-0000000000000007");
  expect(cursor.after("e1-2-0000000000000009")).toBe("e1-0-0000000000000003,e1-2-0000000000000009");
  expect(cursor.at(2)).toBe("e1-2-0000000000000009");
  expect(cursor.at(1)).toBeUndefined();
});

test("a cursor goes back on a partition only, and only to an older position", () => {
  const cursor = new StreamCursor(["e1-0-0000000000000005", "e1-1-0000000000000009"]);
  cursor.rewind("e1-1-0000000000000004");
  cursor.rewind("e1-0-0000000000000007");
  expect(cursor.toString()).toBe("e1-0-0000000000000005,e1-1-0000000000000004");
});

test("a cursor sent back is one event id, or several on distinct partitions, within the bound", () => {
  expect(parseCursor("e1-0-0000000000000003", 3)).toEqual(["e1-0-0000000000000003"]);
  expect(parseCursor("e1-0--1,e1-2-0000000000000007", 3)).toEqual(["e1-0--1", "e1-2-0000000000000007"]);
  expect(parseCursor("e1-0-1,e1-0-2", 3)).toBeUndefined();
  expect(parseCursor("e1-0-1,e1-1-1,e1-2-1", 2)).toBeUndefined();
  expect(parseCursor("e1-0-1,", 3)).toBeUndefined();
  expect(parseCursor("bogus", 3)).toBeUndefined();
});

test("a cursor capped at a channel's position behind goes no further on there, and itself stays where it is", () => {
  const cursor = new StreamCursor(["e1-0-0000000000000005", "e1-1-0000000000000009"]);
  expect(cursor.cappedAt(["e1-1-0000000000000002", "e1-0-0000000000000008"])).toBe(
    "e1-0-0000000000000005,e1-1-0000000000000002",
  );
  expect(cursor.toString()).toBe("e1-0-0000000000000005,e1-1-0000000000000009");
});
