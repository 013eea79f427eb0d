/**
 * Reason phrases for the status line; uWebSockets.js needs the full line.
 *
 * They are the phrases Bun.serve writes, for every status the gateway sends:
 * Bun writes its own from a built-in table and ignores a Response's
 * `statusText` (Bun 1.4, oven-sh/bun#13817), so Node's line, which the
 * gateway writes itself, follows Bun's and both runtimes send the same one.
 * Bun's table keeps the older names of 413 and 422 ("Payload Too Large",
 * "Unprocessable Entity"; RFC 9110 renamed them "Content Too Large" and
 * "Unprocessable Content"): a client ignores the phrase (RFC 9112 §4), but a
 * log, a proxy or a test reading it sees one line whichever runtime answered.
 * test/http/status-text.test.ts holds the table to what Bun writes.
 */
const REASONS: Record<number, string> = {
  101: "Switching Protocols",
  200: "OK",
  202: "Accepted",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  410: "Gone",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Entity",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  // Never on the wire (the client is gone); Bun has no phrase for it.
  499: "Client Closed Request",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function statusLine(status: number): string {
  return `${status} ${REASONS[status] ?? "Status"}`;
}
