import { GatewayError } from "./errors.ts";

/** Who a verified token speaks for. */
export interface Principal {
  /** JWT `sub`. */
  subject: string;
  /** JWT `tenant`: every channel and record of this principal lives in this tenant. */
  tenant: string;
  scopes: ReadonlySet<string>;
  /** Channel patterns the token is limited to ("orders", "orders.*", "*"); undefined = every channel of the tenant. */
  channels: readonly string[] | undefined;
  /** Epoch ms from `exp`. */
  expiresAt: number;
}

/**
 * A 401 for a token that was presented but is not good, with RFC 6750's
 * challenge `error="invalid_token"`: it tells a client (and OAuth libraries,
 * which branch on it) that getting a new token helps, where a request with no
 * token at all gets a bare `Bearer`. `reason` is a fixed phrase, never text
 * from the token, so it fits a quoted-string as it is.
 */
export function invalidToken(reason: string): GatewayError {
  return new GatewayError("unauthorized", reason, {
    "www-authenticate": `Bearer error="invalid_token", error_description="${reason}"`,
  });
}

/**
 * A 403 for a good token that does not allow this: RFC 6750's challenge
 * `error="insufficient_scope"`, with `scope` naming the scope the route needs
 * when one is missing (absent when the token's `channels` claim is what
 * refuses). `message` is a fixed phrase, as in `invalidToken`.
 */
export function insufficientScope(message: string, scope?: string): GatewayError {
  const needed = scope === undefined ? "" : `, scope="${scope}"`;
  return new GatewayError("forbidden", message, {
    "www-authenticate": `Bearer error="insufficient_scope", error_description="${message}"${needed}`,
  });
}

export function requireScope(principal: Principal, scope: string): void {
  if (!principal.scopes.has(scope)) throw insufficientScope(`token lacks scope ${scope}`, scope);
}

/**
 * For a WebSocket or an event stream: a token past its `exp` but inside the
 * verifier's clock-skew tolerance is fine for one request, but a connection
 * opened on it would be closed for its expiry at once (after a `connected`
 * frame, or a 200 stream), so it is refused as the expired token it is.
 */
export function requireUnexpired(principal: Principal, now: number): void {
  if (principal.expiresAt <= now) throw invalidToken("token expired");
}

/**
 * Why `next` may not replace `current` as a live socket's token, if it may
 * not: a refresh keeps who the socket speaks for and only extends its life.
 */
export function refreshRefusal(current: Principal, next: Principal): string | undefined {
  if (next.tenant !== current.tenant || next.subject !== current.subject)
    return "a refreshed token must have the same tenant and subject";
  if (next.expiresAt <= current.expiresAt) return "a refreshed token must expire later";
  return undefined;
}

/**
 * A channel pattern is a channel name, optionally ending in `*` ("orders",
 * "orders.*", "orders*", "*"). A wildcard only at the end keeps matching a
 * prefix test: no pattern from a token can make the RegExp backtrack.
 */
export function isChannelPattern(pattern: string): boolean {
  return /^(?:\*|[^*]+\*?)$/.test(pattern);
}

/** All of a principal's patterns as one anchored RegExp; a `*` other than a trailing one is literal. */
function compileChannelPatterns(patterns: readonly string[]): RegExp {
  const alternatives = patterns.map((pattern) => {
    const escaped = pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return escaped.endsWith("\\*") ? `${escaped.slice(0, -2)}.*` : escaped;
  });
  // With no alternatives the RegExp would match ""; an empty list allows nothing.
  return alternatives.length === 0 ? /(?!)/ : new RegExp(`^(?:${alternatives.join("|")})$`);
}

// Principals live as long as their cached token, so each one's patterns are compiled once.
const compiledPatterns = new WeakMap<Principal, RegExp>();

/**
 * Whether the principal may broadcast: a broadcast reaches every connection of
 * the tenant, whatever it subscribed to, so only a token that may use every
 * channel may send one (no `channels` claim, or one holding the pattern `*`).
 */
export function mayBroadcast(principal: Principal): boolean {
  return principal.channels === undefined || principal.channels.includes("*");
}

/** Whether the principal may use `channel` of its tenant. */
export function channelAllowed(principal: Principal, channel: string): boolean {
  if (principal.channels === undefined) return true;
  let matcher = compiledPatterns.get(principal);
  if (!matcher) {
    matcher = compileChannelPatterns(principal.channels);
    compiledPatterns.set(principal, matcher);
  }
  return matcher.test(channel);
}
