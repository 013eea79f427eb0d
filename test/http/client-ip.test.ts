import { expect, test } from "bun:test";
import { clientIp } from "../../src/http/client-ip.ts";
import type { HttpRequest } from "../../src/ports/transport.ts";

function request(forwarded: string | undefined): HttpRequest {
  return {
    method: "POST",
    path: "/",
    query: new URLSearchParams(),
    header: (name) => (name === "x-forwarded-for" ? forwarded : undefined),
    headerNames: () => ["x-forwarded-for"],
    remoteAddress: "10.0.0.9",
    body: async () => new Uint8Array(),
  };
}

test("X-Forwarded-For is used only as far as the trusted hops reach", () => {
  expect(clientIp(request("1.1.1.1"), 0)).toBe("10.0.0.9");
  expect(clientIp(request(undefined), 1)).toBe("10.0.0.9");
  expect(clientIp(request("6.6.6.6, 1.1.1.1"), 1)).toBe("1.1.1.1");
  expect(clientIp(request("6.6.6.6, 1.1.1.1, 2.2.2.2"), 2)).toBe("1.1.1.1");
  expect(clientIp(request("1.1.1.1"), 3)).toBe("1.1.1.1");
});
