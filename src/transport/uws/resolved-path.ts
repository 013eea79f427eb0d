/** A dot segment (`.`, `..`, also as `%2e`) or a backslash: what WHATWG URL parsing rewrites in a path. */
const UNRESOLVED_PATH = /\\|\/(?:\.|%2e)/i;

/**
 * The request path as Bun.serve hands it over: Bun builds `req.url` with the
 * WHATWG URL parser, which resolves dot segments and reads `\` as `/`, while
 * uWebSockets.js gives the target as sent. Without this one request reached
 * another route or channel on each runtime (`/v1/channels/a/../b/events` read
 * channel `b` on Bun and was a 404 on Node; `/v1/channels/%2E%2E/events` a 405
 * and a 400). Browsers, curl and fetch resolve these before sending, so the
 * usual request pays one regex test. The path is put after an origin, never
 * parsed alone: `//host/./x` must stay a path, not become another host's.
 */
export function resolvedPath(raw: string): string {
  return UNRESOLVED_PATH.test(raw) ? new URL(`http://h${raw}`).pathname : raw;
}
