import { expect, test } from "bun:test";
import { splitUrl } from "../../src/transport/bun/adapter.ts";

test("path and query come out of any URL Bun hands us, with or without a host", () => {
  expect(splitUrl("http://gw:8080/v1/events?ack=none")).toEqual({ path: "/v1/events", search: "ack=none" });
  expect(splitUrl("http://gw/health")).toEqual({ path: "/health", search: "" });
  expect(splitUrl("http:///health")).toEqual({ path: "/health", search: "" });
  expect(splitUrl("/health?x=1")).toEqual({ path: "/health", search: "x=1" });
  expect(splitUrl("http://gw")).toEqual({ path: "/", search: "" });
});
