import type { HttpRequest } from "../ports/transport.ts";

/**
 * The client's address: the socket peer, or, behind `trustedHops` proxies,
 * the X-Forwarded-For entry that the outermost trusted proxy saw. Entries a
 * client wrote itself (further left) are never trusted.
 */
export function clientIp(request: HttpRequest, trustedHops: number): string {
  if (trustedHops === 0) return request.remoteAddress;
  const forwarded = request.header("x-forwarded-for");
  if (!forwarded) return request.remoteAddress;
  const hops = forwarded
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  return hops[Math.max(0, hops.length - trustedHops)] ?? request.remoteAddress;
}
