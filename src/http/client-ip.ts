import type { HttpRequest } from "../ports/transport.ts";

/**
 * The client's address: the socket peer, or, behind `trustedHops` proxies,
 * the X-Forwarded-For entry that the outermost trusted proxy saw. Entries a
 * client wrote itself (further left) are never trusted. The address is in
 * one spelling (canonicalIp), as it keys the per-IP budgets.
 */
export function clientIp(request: HttpRequest, trustedHops: number): string {
  if (trustedHops === 0) return canonicalIp(request.remoteAddress);
  const forwarded = request.header("x-forwarded-for");
  if (!forwarded) return canonicalIp(request.remoteAddress);
  const hops = forwarded
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  return canonicalIp(hops[Math.max(0, hops.length - trustedHops)] ?? request.remoteAddress);
}

const MAPPED_IPV4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * One text per address, whoever wrote it, so one client has one budget:
 * uWebSockets.js writes a peer in full (`0000:…:0001`, an IPv4 client of a
 * dual-stack listener as `0000:…:ffff:7f00:0001`) where Bun writes `::1` and
 * `::ffff:127.0.0.1`, and proxies may add a port (`1.2.3.4:5678`,
 * `[2001:db8::1]:443`) that changes with every connection. An IPv6 address
 * is written as RFC 5952 says (the URL parser's form), an IPv4-mapped one as
 * its IPv4 address, and a port is dropped. Text that is no address is kept.
 */
export function canonicalIp(address: string): string {
  // IPv4, the usual peer: nothing to do, and nothing allocated.
  if (!address.includes(":")) return address;
  let canonical = canonicalSpellings.get(address);
  if (canonical === undefined) {
    // A dual-stack listener (HOST=::) sees every IPv4 client in this form; the URL parser costs about 0.6 µs.
    if (canonicalSpellings.size >= CANONICAL_SPELLINGS_BOUND) canonicalSpellings.clear();
    canonical = parseIp(address);
    canonicalSpellings.set(address, canonical);
  }
  return canonical;
}

/** Recent addresses' canonical text; cleared whole when full, which only costs a parse per address again. */
const canonicalSpellings = new Map<string, string>();
const CANONICAL_SPELLINGS_BOUND = 4096;

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
  let parsed: string;
  try {
    parsed = new URL(`http://[${host}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
  const mapped = MAPPED_IPV4.exec(parsed);
  if (!mapped) return parsed;
  const high = Number.parseInt(mapped[1] as string, 16);
  const low = Number.parseInt(mapped[2] as string, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}
