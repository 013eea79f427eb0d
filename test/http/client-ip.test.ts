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

test("one client is one address however its runtime or proxy spells it", () => {
  const peer = (remoteAddress: string): HttpRequest => ({ ...request(undefined), remoteAddress });
  // uWebSockets.js's text of a dual-stack listener's peers, and Bun's.
  expect(clientIp(peer("0000:0000:0000:0000:0000:ffff:7f00:0001"), 0)).toBe("127.0.0.1");
  expect(clientIp(peer("::ffff:127.0.0.1"), 0)).toBe("127.0.0.1");
  expect(clientIp(peer("0000:0000:0000:0000:0000:0000:0000:0001"), 0)).toBe("::/64");
  expect(clientIp(peer("2001:0DB8:0000:0000:0000:0000:0000:0001"), 0)).toBe("2001:db8::/64");
  // A proxy's port changes per connection: it must not open a new budget.
  expect(clientIp(request("6.6.6.6, 1.1.1.1:5678"), 1)).toBe("1.1.1.1");
  expect(clientIp(request("[2001:db8::1]:443"), 1)).toBe("2001:db8::/64");
  expect(clientIp(request("2001:DB8:0::1"), 1)).toBe("2001:db8::/64");
  // Text that is no address is kept as it came.
  expect(clientIp(request("fe80::1%eth0"), 1)).toBe("fe80::1%eth0");
  expect(clientIp(request("unknown"), 1)).toBe("unknown");
});

test("an IPv6 client is counted by its /64 network: any address in it is the same client", () => {
  const peer = (remoteAddress: string): HttpRequest => ({ ...request(undefined), remoteAddress });
  for (const address of [
    "2001:db8:1:2::1",
    "2001:db8:1:2:ffff:ffff:ffff:ffff",
    "2001:0db8:0001:0002:0:0:0:9",
  ])
    expect(clientIp(peer(address), 0)).toBe("2001:db8:1:2::/64");
  expect(clientIp(peer("2001:db8:1:3::1"), 0)).toBe("2001:db8:1:3::/64");
  expect(clientIp(peer("1:2:3:4:5:6:7:8"), 0)).toBe("1:2:3:4::/64");
  expect(clientIp(peer("::2:3:4:5:6:7:8"), 0)).toBe("0:2:3:4::/64");
  expect(clientIp(peer("fe80::1"), 0)).toBe("fe80::/64");
  expect(clientIp(request("[2001:db8:1:2::7]:443"), 1)).toBe("2001:db8:1:2::/64");
});

test("past the memo's bound, every address still gets its own canonical text", () => {
  const peer = (remoteAddress: string): HttpRequest => ({ ...request(undefined), remoteAddress });
  for (let round = 0; round < 2; round++) {
    for (let i = 1; i <= 10_000; i++) {
      const high = i >> 8;
      const low = i & 255;
      expect(clientIp(peer(`::ffff:10.0.${high}.${low}`), 0)).toBe(`10.0.${high}.${low}`);
      expect(clientIp(peer(`2001:0db8:0:${i.toString(16)}::1`), 0)).toBe(`2001:db8:0:${i.toString(16)}::/64`);
    }
  }
});
