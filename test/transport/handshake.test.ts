import { describe, expect, test } from "bun:test";
import { isWebSocketHandshake } from "../../src/transport/handshake.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

describe("isWebSocketHandshake: the one reading of an opening handshake both engines upgrade", () => {
  test("a GET asking Upgrade: websocket (any case) with one base64 key of 16 bytes", () => {
    for (const upgrade of ["websocket", "WebSocket", "WEBSOCKET"])
      expect(isWebSocketHandshake("GET", upgrade, KEY)).toBe(true);
    expect(isWebSocketHandshake("GET", "websocket", "AAAAAAAAAAAAAAAAAAAA+/==")).toBe(true);
  });

  test("no Upgrade header, or one asking for another protocol, is no handshake", () => {
    for (const upgrade of [undefined, "", "h2c", "websocket, h2c", " websocket"])
      expect(isWebSocketHandshake("GET", upgrade, KEY)).toBe(false);
  });

  test("a missing, repeated (joined with ', '), short, long or non-base64 key is no handshake", () => {
    for (const key of [
      undefined,
      "",
      `${KEY}, ${KEY}`,
      "abc",
      `${KEY}=`,
      "dGhlIHNhbXBsZSBub25jZQ",
      "!!!!!!!!!!!!!!!!!!!!!!!!",
      "dGhlIHNhbXBsZSBub25j ==",
      "dGhlIHNhbXBsZSBub25jZQ-_",
    ])
      expect(isWebSocketHandshake("GET", "websocket", key)).toBe(false);
  });

  test("only a GET", () => {
    for (const method of ["HEAD", "POST", "get"])
      expect(isWebSocketHandshake(method, "websocket", KEY)).toBe(false);
  });
});
