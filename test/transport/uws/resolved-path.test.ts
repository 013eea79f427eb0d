import { describe, expect, test } from "bun:test";
import { resolvedPath } from "../../../src/transport/uws/resolved-path.ts";

describe("resolvedPath (Node: the path Bun.serve would see)", () => {
  test("dot segments, also percent-encoded, are resolved and a backslash is a slash, as WHATWG URL parsing does", () => {
    expect(resolvedPath("/v1/channels/a/../b/events")).toBe("/v1/channels/b/events");
    expect(resolvedPath("/v1/channels/%2E%2E/events")).toBe("/v1/events");
    expect(resolvedPath("/v1/channels/x/.%2e/y/events")).toBe("/v1/channels/y/events");
    expect(resolvedPath("/v1/channels/x/./events")).toBe("/v1/channels/x/events");
    expect(resolvedPath("/v1\\channels\\x\\events")).toBe("/v1/channels/x/events");
    expect(resolvedPath("/health/..")).toBe("/");
  });

  test("a path that starts with // stays a path; any other path is left as sent", () => {
    expect(resolvedPath("//evil.example/./health")).toBe("//evil.example/health");
    for (const path of [
      "/v1/channels/a.b/events",
      "/.well-known/x",
      "/v1/channels/%E0%A4%A/events",
      "/v1//x",
    ])
      expect(resolvedPath(path)).toBe(path);
  });
});
