import type { Deprecation } from "../ports/route.ts";

/** What may stand between `<` and `>` in a Link header (RFC 3986 characters, no spaces or brackets). */
const URI_REFERENCE = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/;

/**
 * The headers every response of a deprecated route carries: `Deprecation`
 * (RFC 9745, a structured-field date), `Sunset` (RFC 8594, an HTTP-date) and
 * a `Link` to the successor. Throws on a deprecation that could not be sent
 * as such, so a bad one fails the start instead of reaching clients.
 */
export function deprecationHeaders({ since, sunset, successor }: Deprecation): Record<string, string> {
  if (Number.isNaN(since.getTime()) || Number.isNaN(sunset.getTime()))
    throw new Error("a deprecation needs valid since and sunset dates");
  if (sunset.getTime() < since.getTime())
    throw new Error("a route's sunset cannot come before its deprecation");
  if (!URI_REFERENCE.test(successor))
    throw new Error(
      `a deprecated route's successor must be a URI reference, not ${JSON.stringify(successor)}`,
    );
  return {
    deprecation: `@${Math.floor(since.getTime() / 1000)}`,
    sunset: sunset.toUTCString(),
    link: `<${successor}>; rel="successor-version"`,
  };
}
