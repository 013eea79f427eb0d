import { describe, expect, test } from "bun:test";
import { fallbackRefusal, uwsEngine } from "../../../src/transport/uws/engine.ts";

describe("uwsEngine tells the native addon from the package's JS fallback", () => {
  test("native functions print as [native code]", () => {
    // Bun's own built-ins stand in for the addon's functions: both print "[native code]".
    expect(uwsEngine({ App: Math.max })).toBe("uws-native");
  });

  test("the fallback's App is JavaScript, and a module without App is no native build either", () => {
    expect(uwsEngine({ App: () => ({}) })).toBe("uws-js-fallback");
    expect(uwsEngine({})).toBe("uws-js-fallback");
  });
});

test("the refusal names the Node it runs on, the supported versions, Bun, and the setting that overrides it", () => {
  const message = fallbackRefusal("22.23.0", "127");
  expect(message).toContain("Node 22.23.0");
  expect(message).toContain("Node 20 (>= 20.19.4)");
  expect(message).toContain("Bun");
  expect(message).toContain("UWS_ALLOW_FALLBACK=true");
  expect(fallbackRefusal("20.20.2", "115", true)).toStartWith("UWS_USE_FALLBACK made uWebSockets.js load");
});
