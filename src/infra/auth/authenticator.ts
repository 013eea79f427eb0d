import { decodeProtectedHeader, type JWTPayload, jwtVerify } from "jose";
import { isGatewayError } from "../../domain/errors.ts";
import { invalidToken, isChannelPattern, type Principal } from "../../domain/principal.ts";
import { LruCache } from "../../lib/lru.ts";
import type { Authenticator } from "../../ports/auth.ts";
import { JWKS_ALGORITHMS, JwksKeys, KEY_NOT_FOR_SIGNING } from "./jwks.ts";

export interface AuthenticatorOptions {
  /** HS256 shared secret. */
  jwtSecret: string | undefined;
  /** JWKS endpoint for asymmetric keys (RS256, ES256, EdDSA, PS256). */
  jwksUrl: string | undefined;
  /** Required `iss`, when set (every key source). */
  issuer?: string | undefined;
  /** Required `aud` (among the token's audiences), when set (every key source). */
  audience?: string | undefined;
  /** Least time between two JWKS fetches; a rotated key is accepted within about this; default 1 s. */
  jwksRefetchIntervalMs?: number;
  /** One JWKS fetch's deadline; default 5 s. */
  jwksTimeoutMs?: number;
  /** A JWKS fetch failed (`reason` is a fixed phrase). */
  onJwksFetchFailure?(reason: string): void;
  /** A fetched JWKS was taken but holds keys that cannot be imported (a few of their kids). */
  onJwksUnusableKeys?(kids: string[]): void;
  /** Verified tokens kept (0 disables the cache). */
  cacheSize: number;
  /** Bytes the kept tokens may take, as `cachedBytes` counts them; default unbounded. */
  cacheBytes?: number;
  /** Seconds of clock skew allowed on `exp` and `nbf`; default 5. */
  clockToleranceSec?: number;
  /** Clock in epoch ms, for tests. */
  now?: () => number;
}

const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SECRET_ALGORITHMS = ["HS256"];

const SIGNATURE_FAILED = "ERR_JWS_SIGNATURE_VERIFICATION_FAILED";
const errorCode = (error: unknown) => (error as { code?: unknown }).code;

function rejectionReason(error: unknown): string {
  const { code, claim } = error as { code?: unknown; claim?: unknown };
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return "token expired";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      if (claim === "iss") return "token issuer not accepted";
      if (claim === "aud") return "token audience not accepted";
      return "token not valid yet or has malformed claims";
    case SIGNATURE_FAILED:
      return "bad token signature";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "unknown token signing key";
    case KEY_NOT_FOR_SIGNING:
      return "token names a key that does not sign tokens";
    default:
      return "invalid token";
  }
}

/** A cache entry's own cost besides its strings: the map entry, the principal, its scope set and channel list. */
const CACHE_ENTRY_OVERHEAD_BYTES = 400;
/** Each claim string's header and its slot in the set or list. */
const CLAIM_STRING_OVERHEAD_BYTES = 32;

/**
 * What a verified token costs in the cache: the token (ASCII, one byte a
 * character, as a header brings it) and its principal's strings, counted as
 * UTF-16 (claims may hold any text), each with its overhead. A token may be as
 * large as the request head allows, so counting entries alone does not bound
 * the memory.
 */
function cachedBytes(token: string, principal: Principal): number {
  let bytes = CACHE_ENTRY_OVERHEAD_BYTES + token.length;
  for (const text of [
    principal.subject,
    principal.tenant,
    ...principal.scopes,
    ...(principal.channels ?? []),
  ])
    bytes += CLAIM_STRING_OVERHEAD_BYTES + 2 * text.length;
  return bytes;
}

/**
 * OAuth style space-separated string, or a list of strings. A missing claim
 * grants nothing. Only the space (U+0020) separates, as RFC 6749 §3.3 writes
 * the claim (`scope-token *( SP scope-token )`): any other whitespace (a tab,
 * a no-break space, U+2028, a BOM) is part of the scope it stands in, which
 * then matches none. An issuer reads "tenant:x\u00a0publish" as one scope
 * (a parameterised scope whose value a client chose, say), so splitting on
 * every whitespace, as `\s` does, would grant `publish` the issuer never did.
 */
function parseScopes(scope: unknown): Set<string> {
  if (scope === undefined) return new Set();
  if (typeof scope === "string") return new Set(scope.split(" ").filter((entry) => entry !== ""));
  if (Array.isArray(scope) && scope.every((entry) => typeof entry === "string")) return new Set(scope);
  throw invalidToken("token scope must be a string or a list of strings");
}

function parseChannels(channels: unknown): string[] | undefined {
  if (channels === undefined) return undefined;
  if (
    Array.isArray(channels) &&
    channels.every((entry) => typeof entry === "string" && isChannelPattern(entry))
  ) {
    return channels;
  }
  throw invalidToken("token channels must be a list of channel patterns");
}

function principalFromClaims(payload: JWTPayload): Principal {
  const { sub, tenant, scope, channels, exp } = payload;
  if (typeof sub !== "string" || sub === "") throw invalidToken("token has no sub");
  if (typeof tenant !== "string" || !TENANT_PATTERN.test(tenant))
    throw invalidToken("token has no valid tenant");
  if (typeof exp !== "number") throw invalidToken("token has no exp");
  return {
    subject: sub,
    tenant,
    scopes: parseScopes(scope),
    channels: parseChannels(channels),
    expiresAt: exp * 1000,
  };
}

/**
 * Verifies bearer JWTs with jose: HS256 against the shared secret, RS256,
 * ES256, EdDSA and PS256 against the JWKS (`JwksKeys`: fetched on a new
 * `kid` or a failed signature at most once a second, re-read every 10 min,
 * kept through an outage of the endpoint). The token's `alg` picks the key source, so with both
 * configured either kind of token is accepted and an HS256 token can never
 * be checked against a public key. `iss` and `aud` are checked when
 * configured. Signature comparison is jose's (constant time). A token that
 * cannot be checked because the JWKS endpoint fails is `unavailable` (503,
 * Retry-After), never `unauthorized`: the client keeps it and retries.
 *
 * Verified principals are kept in an LRU keyed by the token string, bounded
 * in entries and in bytes (`cachedBytes`), and served only while `now < expiresAt`, so a hot client costs a map lookup
 * per request, not a signature check. A cache entry outlives a key removed
 * from the JWKS, never the token's `exp`. Failures are not cached: a forger
 * can vary the token at will, so a negative cache would only hold garbage.
 */
/** An authenticator that also answers for a token it verified before, without a promise. */
export interface CachingAuthenticator extends Authenticator {
  /** The principal of a token verified before and not yet expired; else undefined (call verify). */
  cached(token: string): Principal | undefined;
}

export function createAuthenticator(options: AuthenticatorOptions): CachingAuthenticator {
  const now = options.now ?? Date.now;
  const clockTolerance = options.clockToleranceSec ?? 5;
  const cache = new LruCache<string, Principal>(options.cacheSize, options.cacheBytes);
  const secret = options.jwtSecret ? new TextEncoder().encode(options.jwtSecret) : undefined;
  const jwks = options.jwksUrl
    ? new JwksKeys({
        url: options.jwksUrl,
        minRefetchIntervalMs: options.jwksRefetchIntervalMs ?? 1000,
        maxAgeMs: 10 * 60_000,
        timeoutMs: options.jwksTimeoutMs ?? 5000,
        onFetchFailure: options.onJwksFetchFailure,
        onUnusableKeys: options.onJwksUnusableKeys,
      })
    : undefined;
  const claims = {
    clockTolerance,
    ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
    ...(options.audience === undefined ? {} : { audience: options.audience }),
  };

  async function verifySignature(token: string): Promise<JWTPayload> {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw invalidToken("malformed token");
    }
    const checks = { ...claims, currentDate: new Date(now()) };
    let payload: JWTPayload | undefined;
    try {
      if (secret && alg !== undefined && SECRET_ALGORITHMS.includes(alg)) {
        payload = (await jwtVerify(token, secret, { ...checks, algorithms: SECRET_ALGORITHMS })).payload;
      } else if (jwks && alg !== undefined && JWKS_ALGORITHMS.includes(alg)) {
        const askedAt = Date.now();
        const options = { ...checks, algorithms: JWKS_ALGORITHMS };
        try {
          payload = (await jwtVerify(token, jwks.getKey, options)).payload;
        } catch (error) {
          // A key replaced under the same kid: one more try once a newer set arrived, else the refusal stands.
          if (errorCode(error) !== SIGNATURE_FAILED || !(await jwks.refetchAfterBadSignature(askedAt)))
            throw error;
          payload = (await jwtVerify(token, jwks.getKey, options)).payload;
        }
      }
    } catch (error) {
      // The key lookup's own 503: the endpoint failed, not the token.
      if (isGatewayError(error)) throw error;
      throw invalidToken(rejectionReason(error));
    }
    if (payload === undefined) throw invalidToken("unsupported token algorithm");
    // jose checks `iat` only against a maximum age; one later than now (past the skew) is a clock or issuer fault.
    if (typeof payload.iat === "number" && payload.iat - clockTolerance > now() / 1000)
      throw invalidToken("token issued in the future");
    return payload;
  }

  // A cached token is served as long as jose would accept it: past `exp` within the tolerance too (up to
  // JWT_CLOCK_SKEW_SEC, 300 s), which would otherwise cost a signature check a request. One first seen
  // past its `exp` takes no slot, as before: the tolerance is a grace, not a reason to evict a live token.
  const toleranceMs = clockTolerance * 1000;

  function cached(token: string): Principal | undefined {
    const principal = cache.get(token);
    if (principal === undefined) return undefined;
    if (now() < principal.expiresAt + toleranceMs) return principal;
    cache.delete(token);
    return undefined;
  }

  return {
    cached,
    async verify(token) {
      const known = cached(token);
      if (known) return known;
      const principal = principalFromClaims(await verifySignature(token));
      if (now() < principal.expiresAt) cache.set(token, principal, cachedBytes(token, principal));
      return principal;
    },
  };
}
