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
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100 && EPHEMERAL_LOW > LOWEST_CHOSEN_PORT; attempt++) {
    const port = LOWEST_CHOSEN_PORT + Math.floor(Math.random() * (EPHEMERAL_LOW - LOWEST_CHOSEN_PORT));
    if (await canListen(port)) return port;
  }
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The least port freePort() chooses: the ports below are where fixed services tend to listen. */
const LOWEST_CHOSEN_PORT = 10_000;

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
