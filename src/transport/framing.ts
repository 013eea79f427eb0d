import { GatewayError } from "../domain/errors.ts";
import { errorReply } from "../http/reply.ts";
import type { HttpReply } from "../ports/transport.ts";

/**
 * Why a request's framing is ambiguous, or undefined when it is not.
 * A proxy in front and the engine must agree on where a body ends, or bytes
 * of one request are read as another (request smuggling, RFC 9112 §6.3). So a
 * Content-Length must be one plain number (repeated headers arrive joined
 * with ", "), a Transfer-Encoding exactly `chunked` (names are
 * case-insensitive), and never both. A request with two Host headers is a
 * 400 too (RFC 9112 §3.2): a proxy may route by the other one.
 */
export function framingProblem(
  contentLength: string | undefined,
  transferEncoding: string | undefined,
  host?: string,
): string | undefined {
  if (host?.includes(",")) return "one Host header at most";
  if (contentLength !== undefined && transferEncoding !== undefined)
    return "Content-Length and Transfer-Encoding together";
  if (contentLength !== undefined && !/^\d+$/.test(contentLength))
    return "Content-Length must be a single number";
  if (transferEncoding !== undefined && transferEncoding.toLowerCase() !== "chunked")
    return "Transfer-Encoding must be chunked";
  return undefined;
}

/** The 400 for ambiguous framing; the connection is closed, since where the next request starts is unknown. */
export function framingRefusal(problem: string): HttpReply {
  return { ...errorReply(new GatewayError("bad_request", problem)), closeConnection: true };
}
