import type { HttpRequest } from "../ports/transport.ts";

/**
 * The client's address: the socket peer, or, behind `trustedHops` proxies,
 * the X-Forwarded-For entry that the outermost trusted proxy saw. Entries a
 * client wrote itself (further left) are never trusted. It is given as the
 * per-IP budgets count it (ipBudgetKey).
 */
export function clientIp(request: HttpRequest, trustedHops: number): string {
  if (trustedHops === 0) return ipBudgetKey(request.remoteAddress);
  const forwarded = request.header("x-forwarded-for");
  if (!forwarded) return ipBudgetKey(request.remoteAddress);
  const hops = forwarded
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  return ipBudgetKey(hops[Math.max(0, hops.length - trustedHops)] ?? request.remoteAddress);
}

const MAPPED_IPV4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * The client as per-IP budgets count it, in one text whoever wrote it:
 * uWebSockets.js writes a peer in full (`0000:…:0001`, an IPv4 client of a
 * dual-stack listener as `0000:…:ffff:7f00:0001`) where Bun writes `::1` and
 * `::ffff:127.0.0.1`, and proxies may add a port (`1.2.3.4:5678`,
 * `[2001:db8::1]:443`) that changes with every connection. An IPv4 address
 * is kept (an IPv4-mapped IPv6 one becomes its IPv4 address); an IPv6
 * address becomes its /64 network, written as RFC 5952 says
 * (`2001:db8:0:1::/64`): a host or subscriber is given a whole /64 and may
 * use any address in it, so per address it would open a new budget with
 * each. A port is dropped. Text that is no address is kept.
 */
export function ipBudgetKey(address: string): string {
  // IPv4, the usual peer: nothing to do, and nothing allocated.
  if (!address.includes(":")) return address;
  let canonical = budgetKeys.get(address);
  if (canonical === undefined) {
    // A dual-stack listener (HOST=::) sees every IPv4 client in this form; the URL parser costs about 0.6 µs.
    if (budgetKeys.size >= BUDGET_KEYS_BOUND) budgetKeys.clear();
    canonical = parseIp(address);
    budgetKeys.set(address, canonical);
  }
  return canonical;
}

/** Recent addresses' keys; cleared whole when full, which only costs a parse per address again. */
const budgetKeys = new Map<string, string>();
const BUDGET_KEYS_BOUND = 4096;

function parseIp(address: string): string {
  let host = address;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end < 0) return address;
    host = host.slice(1, end);
  } else if (host.indexOf(":") === host.lastIndexOf(":")) {
    // One colon: IPv4 and a port (an IPv6 address has at least two).
    return host.slice(0, host.indexOf(":"));
  }
  const parsed = urlHostOf(host);
  if (parsed === undefined) return address;
  const mapped = MAPPED_IPV4.exec(parsed);
  if (!mapped) return network64Of(parsed);
  const high = Number.parseInt(mapped[1] as string, 16);
  const low = Number.parseInt(mapped[2] as string, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/** An IPv6 address in the URL parser's (RFC 5952) form, or undefined when it is none. */
function urlHostOf(host: string): string | undefined {
  try {
    return new URL(`http://[${host}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/** The /64 network of an IPv6 address in RFC 5952 form: its first four groups, the rest zero. */
function network64Of(address: string): string {
  const [head = "", tail] = address.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(Math.max(0, zeros)).fill("0"), ...tailGroups];
  return `${urlHostOf(`${groups.slice(0, 4).join(":")}::`) ?? address}/64`;
}
