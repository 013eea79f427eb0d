import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket } from "./harness.ts";

/**
 * TRUST_PROXY decides whose address the per-IP limits count: the socket's
 * (a load balancer's, for every client behind it) or the client's from
 * X-Forwarded-For. Seen from outside through the WebSocket connect limit.
 */
async function connectFrom(gateway: RunningGateway, forwardedFor: string): Promise<string> {
  const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`, {
    headers: { "X-Forwarded-For": forwardedFor },
  });
  const first = await socket.next((frame) => frame.type === "connected" || frame.type === "error");
  socket.close();
  return first.type === "connected" ? "connected" : String(first.code);
}

describe.each(RUNTIMES)("TRUST_PROXY on %s", (runtime) => {
  const folder = mkdtempSync(join(tmpdir(), "trust-proxy-"));
  const gateways: Record<"trusted" | "untrusted", RunningGateway | undefined> = {
    trusted: undefined,
    untrusted: undefined,
  };
  const env = (trustProxy: string) => ({
    KAFKA_BROKERS: "",
    REDIS_URL: "",
    LOCAL_LOG_DIR: join(folder, trustProxy),
    TRUST_PROXY: trustProxy,
    WS_CONNECTS_PER_SEC_PER_IP: "2",
  });
  beforeAll(async () => {
    [gateways.trusted, gateways.untrusted] = await Promise.all([
      startGateway(runtime, env("1")),
      startGateway(runtime, env("0")),
    ]);
  });
  afterAll(async () => {
    await Promise.all(Object.values(gateways).map((gateway) => gateway?.stop("SIGKILL")));
    rmSync(folder, { recursive: true, force: true });
  });

  // Attempts go out together: the limit is per second, and together they all fall in one second.
  const together = (gateway: RunningGateway, addresses: string[]) =>
    Promise.all(addresses.map((address) => connectFrom(gateway, address)));

  test("TRUST_PROXY=1: clients behind the proxy are counted apart, and one client past its limit is refused", async () => {
    const gateway = gateways.trusted as RunningGateway;
    const distinct = await together(gateway, ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]);
    expect(distinct).toEqual(Array(4).fill("connected"));
    const same = await together(gateway, Array(5).fill("198.51.100.7"));
    expect(same.filter((outcome) => outcome === "connected").length).toBeLessThanOrEqual(2);
    expect(same.filter((outcome) => outcome !== "connected")).toContain("rate_limited");
  });

  test("TRUST_PROXY=1: one client is one address, whatever port or IPv6 spelling the proxy writes, and one IPv6 /64", async () => {
    const gateway = gateways.trusted as RunningGateway;
    const ports = await together(gateway, [
      "198.51.100.8:4001",
      "198.51.100.8:4002",
      "198.51.100.8:4003",
      "198.51.100.8:4004",
    ]);
    expect(ports.filter((outcome) => outcome === "connected").length).toBeLessThanOrEqual(2);
    const spellings = await together(gateway, [
      "2001:DB8:0::9",
      "[2001:db8::9]:443",
      "2001:0db8:0000:0000:0000:0000:0000:0009",
      "2001:db8::9",
    ]);
    expect(spellings.filter((outcome) => outcome === "connected").length).toBeLessThanOrEqual(2);
    // Any address of a /64 is the same host or subscriber: rotating through it opens no new budget.
    const network = await together(gateway, [
      "2001:db8:5:6::1",
      "2001:db8:5:6::2",
      "2001:db8:5:6:aaaa::3",
      "2001:db8:5:6:ffff:ffff:ffff:ffff",
    ]);
    expect(network.filter((outcome) => outcome === "connected").length).toBeLessThanOrEqual(2);
  });

  test("TRUST_PROXY=0: X-Forwarded-For is ignored, every attempt counts against the socket's address", async () => {
    const gateway = gateways.untrusted as RunningGateway;
    const outcomes = await together(gateway, ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]);
    expect(outcomes.filter((outcome) => outcome === "connected").length).toBeLessThanOrEqual(2);
    expect(outcomes).toContain("rate_limited");
  });
});
