/** Reason phrases for the status line; uWebSockets.js needs the full line. */
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
  410: "Gone",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function statusLine(status: number): string {
  return `${status} ${REASONS[status] ?? "Status"}`;
}
