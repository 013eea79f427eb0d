import { readFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";

/**
 * A port free right now, for a gateway that must restart on the same port, or
 * for an address nothing listens on. Not PORT=0 for the gateway: uSockets
 * (Node) sets SO_REUSEADDR only on a port given to it, and without it the
 * connections an ephemeral-port gateway closed first keep the port from being
 * bound again for a minute (TIME_WAIT), as no real deployment does.
 *
 * Taken below the kernel's ephemeral range: a port from it, free a moment ago,
 * can be handed to any other process's listener on port 0 or outgoing
 * connection (a parallel test lane, the services' clients) before the gateway
 * binds it; below the range only another such explicit choice can take it.
 * And from this lane's share of it (see choosablePorts): a port free only for
 * a while (a gateway restarting on it, a service stopped for an outage test)
 * is not chosen by another lane meanwhile.
 */
export async function freePort(): Promise<number> {
  const { low, high } = choosablePorts();
  for (let attempt = 0; attempt < 100 && high > low; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await canListen(port)) return port;
  }
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/**
 * Where freePort() chooses, `low` to `high` (excluded): above the ports
 * scripts/services chooses for Kafka, Redis and S3 (SERVICES_PORTS_END, kept
 * equal to its free_ports), below the kernel's ephemeral range, and within
 * that the slice of this test lane when EDGE_GATEWAY_TEST_PORT_LANE says
 * "k/n" (lane k of n run at once, from 0; scripts/test-all sets it). Empty
 * (high <= low) when the ephemeral range leaves no room.
 */
function choosablePorts(
  lane = process.env.EDGE_GATEWAY_TEST_PORT_LANE,
  ephemeralLow = EPHEMERAL_LOW,
): { low: number; high: number } {
  const [index, lanes] = (/^(\d+)\/(\d+)$/.exec(lane ?? "")?.slice(1) ?? ["0", "1"]).map(Number) as [
    number,
    number,
  ];
  if (!(lanes > 0 && index < lanes))
    throw new Error(`EDGE_GATEWAY_TEST_PORT_LANE is k/n with k < n, not ${lane}`);
  const share = Math.floor((ephemeralLow - SERVICES_PORTS_END) / lanes);
  const low = SERVICES_PORTS_END + index * share;
  return { low, high: low + share };
}

/** The end of the ports scripts/services chooses from (10000 on): freePort() chooses above it. */
const SERVICES_PORTS_END = 15_000;

/** The first port of the kernel's range for ports it hands out itself (Linux's default if unread). */
const EPHEMERAL_LOW = (() => {
  try {
    return Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
  } catch {
    return 32_768;
  }
})();

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}
