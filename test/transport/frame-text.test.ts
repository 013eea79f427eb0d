import { expect, test } from "bun:test";
import { binaryFrameText } from "../../src/transport/frame-text.ts";

test("a binary frame's UTF-8 bytes are its text, as sent", () => {
  const text = '{"type":"publish","channel":"c","data":{"s":"é😀\\ud800","n":9007199254740993}}';
  expect(binaryFrameText(Buffer.from(text))).toBe(text);
  expect(binaryFrameText(new TextEncoder().encode(text).buffer as ArrayBuffer)).toBe(text);
});

test("bytes that are not UTF-8 have no text: never U+FFFD in their place", () => {
  for (const bad of [[0xff], [0x61, 0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]])
    expect(binaryFrameText(new Uint8Array(bad))).toBeUndefined();
});

test("a leading byte order mark is kept, as a text frame's is", () => {
  expect(binaryFrameText(Buffer.from('\uFEFF{"type":"ping"}'))).toBe('\uFEFF{"type":"ping"}');
});
