import { expect, test } from "bun:test";
import { parseClientFrame } from "../../../src/features/realtime/protocol.ts";

test("client frames are parsed, and bad ones explained without throwing", () => {
  expect(parseClientFrame('{"type":"subscribe","channel":"orders","since":"e-0-1"}')).toEqual({
    type: "subscribe",
    channel: "orders",
    since: "e-0-1",
    presence: false,
  });
  expect(parseClientFrame('{"type":"auth","token":"t"}')).toEqual({ type: "auth", token: "t" });
  expect(parseClientFrame('{"type":"unsubscribe","channel":"o"}')).toEqual({
    type: "unsubscribe",
    channel: "o",
  });
  expect(parseClientFrame("nope")).toEqual({ error: "frames are JSON text" });
  expect(parseClientFrame("[1]")).toEqual({ error: "a frame is a JSON object" });
  expect(parseClientFrame('{"type":"subscribe"}')).toEqual({ error: "subscribe needs a channel" });
  expect(parseClientFrame('{"type":"subscribe","channel":"o","since":5}')).toEqual({
    error: "since must be an event id",
  });
  // A malformed since is a client bug (bad_frame), not history_gone; a well-formed id of another epoch parses.
  for (const since of ["bogus", "", "1-0-x"]) {
    expect(parseClientFrame(JSON.stringify({ type: "subscribe", channel: "o", since }))).toEqual({
      error: "since must be an event id",
    });
  }
  expect(parseClientFrame('{"type":"subscribe","channel":"o","since":"other-3-1"}')).toMatchObject({
    type: "subscribe",
    since: "other-3-1",
  });
  expect(parseClientFrame('{"type":"dance"}')).toEqual({ error: 'unknown frame type "dance"' });
});

test("a subscribe's optional members sent as null are absent, as a client writing `since: lastId ?? null` means", () => {
  expect(parseClientFrame('{"type":"subscribe","channel":"o","since":null,"presence":null}')).toEqual({
    type: "subscribe",
    channel: "o",
    since: undefined,
    presence: false,
  });
});

test("deeply nested or oversized values are refused before they cost anything", () => {
  const tooDeep = { error: "frames nest at most 8 levels (a publish 64)" };
  expect(parseClientFrame("[".repeat(20_000))).toEqual(tooDeep);
  expect(parseClientFrame(`{"type":${"[".repeat(20_000)}${"]".repeat(20_000)}}`)).toEqual(tooDeep);
  expect(parseClientFrame(`{"type":"subscribe","channel":${"[".repeat(20)}${"]".repeat(20)}}`)).toEqual(
    tooDeep,
  );
  expect(parseClientFrame(`{"type":"publish","channel":"o","data":${"[".repeat(20)}`)).toEqual({
    error: "frames are JSON text",
  });
  // Brackets inside strings are text, not nesting.
  expect(parseClientFrame(`{"type":"auth","token":"${"[{".repeat(100)}"}`)).toEqual({
    type: "auth",
    token: "[{".repeat(100),
  });
  expect(parseClientFrame('{"type":"auth","token":"a\\"[[[[[[[[[[[[["}')).toEqual({
    type: "auth",
    token: 'a"[[[[[[[[[[[[[',
  });
  expect(parseClientFrame('{"type":{"a":1}}')).toEqual({ error: "unknown frame type" });
  expect(parseClientFrame(`{"type":"${"x".repeat(10_000)}"}`)).toEqual({ error: "unknown frame type" });
});

test("a binary frame whose bytes are not UTF-8 (no text: undefined) is refused, not read with U+FFFD in it", () => {
  expect(parseClientFrame(undefined)).toEqual({ error: "frames are UTF-8 JSON text" });
});
