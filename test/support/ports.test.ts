import { afterEach, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { freePort } from "./ports.ts";

/** The end of the ports scripts/services chooses for Kafka, Redis and S3 (its free_ports). */
const SERVICES_PORTS_END = 15_000;
const EPHEMERAL_LOW = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0]);

const laneBefore = process.env.EDGE_GATEWAY_TEST_PORT_LANE;
afterEach(() => {
  if (laneBefore === undefined) delete process.env.EDGE_GATEWAY_TEST_PORT_LANE;
  else process.env.EDGE_GATEWAY_TEST_PORT_LANE = laneBefore;
});

async function picks(lane: string, count: number): Promise<number[]> {
  process.env.EDGE_GATEWAY_TEST_PORT_LANE = lane;
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  return ports;
}

// Found reviewing the ports' CI flake fixes: every test lane chose from all of 10000 up to the ephemeral
// range, as did scripts/services, so a port free only for a while (a service stopped for an outage test,
// a gateway restarting on its port) could be chosen by the other lane, or by a gateway of the same lane,
// in between.
test("freePort: two lanes choose from apart, above the services' ports and below the ephemeral range", async () => {
  if (EPHEMERAL_LOW <= SERVICES_PORTS_END + 1000) return; // No room: freePort falls back to port 0.
  const [first, second] = [await picks("0/2", 200), await picks("1/2", 200)];
  const middle = SERVICES_PORTS_END + Math.floor((EPHEMERAL_LOW - SERVICES_PORTS_END) / 2);
  for (const port of first) expect(port >= SERVICES_PORTS_END && port < middle).toBe(true);
  for (const port of second) expect(port >= middle && port < EPHEMERAL_LOW).toBe(true);
});

test("freePort: a lane setting that is not k/n with k < n is refused, not taken as the whole range", async () => {
  await expect(picks("2/2", 1)).rejects.toThrow("EDGE_GATEWAY_TEST_PORT_LANE");
});
