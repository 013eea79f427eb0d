/**
 * The RateLimit-Policy and RateLimit structured fields of
 * draft-ietf-httpapi-ratelimit-headers (-10), derived from the legacy
 * RateLimit-Limit / -Remaining / -Reset the limiter answers with, which stay:
 *
 *   RateLimit-Policy: "tenant";q=1000;w=1
 *   RateLimit: "tenant";r=998;t=1
 *
 * Each is a Structured Fields List of one Item: the policy name as an sf-string
 * with the parameters q (quota) and w (window, seconds), or r (remaining) and t
 * (seconds until quota comes back). No `qu`: the tenant budget counts events,
 * which the draft's registry has no unit for (its default, "requests", is
 * right for the per-IP policy).
 */

/** The names of the gateway's policies: a tenant's events, a client IP's requests and WebSocket connects. */
export type RateLimitPolicy = "tenant" | "ip" | "ip-connects";

/**
 * The legacy headers and the two fields of an admitted request, made in one
 * object of a fixed shape (the per-request path: no fields added one by one).
 * `limitText` is String(limit), which the caller keeps; `resetSec` ≥ 1.
 */
export function rateLimitHeaders(
  policy: RateLimitPolicy,
  windowSec: number,
  limitText: string,
  remaining: number,
  resetSec: number,
): Record<string, string> {
  const remainingText = String(remaining);
  const resetText = resetSec === 1 ? "1" : String(resetSec);
  return {
    "ratelimit-limit": limitText,
    "ratelimit-remaining": remainingText,
    "ratelimit-reset": resetText,
    "ratelimit-policy": `"${policy}";q=${limitText};w=${windowSec}`,
    ratelimit: `"${policy}";r=${remainingText};t=${resetText}`,
  };
}

/**
 * Adds the two fields to `headers` (in place: the limiter's headers object is
 * fresh per request) when it holds the legacy ones; `windowSec` is the
 * policy's window. Returns `headers`.
 */
export function addRateLimitFields(
  headers: Record<string, string>,
  policy: RateLimitPolicy,
  windowSec: number,
): Record<string, string> {
  const limit = headers["ratelimit-limit"];
  if (limit === undefined) return headers;
  headers["ratelimit-policy"] = `"${policy}";q=${limit};w=${windowSec}`;
  headers.ratelimit = `"${policy}";r=${headers["ratelimit-remaining"] ?? "0"};t=${headers["ratelimit-reset"] ?? "0"}`;
  return headers;
}
