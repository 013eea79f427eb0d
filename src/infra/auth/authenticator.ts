import { createRemoteJWKSet, decodeProtectedHeader, type JWTPayload, jwtVerify } from "jose";
import { GatewayError } from "../../domain/errors.ts";
import { isChannelPattern, type Principal } from "../../domain/principal.ts";
import { LruCache } from "../../lib/lru.ts";
import type { Authenticator } from "../../ports/auth.ts";

export interface AuthenticatorOptions {
  /** HS256 shared secret. */
  jwtSecret: string | undefined;
  /** JWKS endpoint for asymmetric keys (RS256, ES256, EdDSA, PS256). */
  jwksUrl: string | undefined;
  /** Verified tokens kept (0 disables the cache). */
  cacheSize: number;
  /** Seconds of clock skew allowed on `exp` and `nbf`; default 5. */
  clockToleranceSec?: number;
  /** Clock in epoch ms, for tests. */
  now?: () => number;
}

const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SECRET_ALGORITHMS = ["HS256"];
const JWKS_ALGORITHMS = ["RS256", "ES256", "EdDSA", "PS256"];

/** Reasons are fixed phrases: nothing from the token reaches a response or a log. */
function unauthorized(reason: string): GatewayError {
  return new GatewayError("unauthorized", reason, { "www-authenticate": "Bearer" });
}

function rejectionReason(error: unknown): string {
  switch ((error as { code?: unknown }).code) {
    case "ERR_JWT_EXPIRED":
      return "token expired";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return "token not valid yet or has malformed claims";
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "bad token signature";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "unknown token signing key";
    case "ERR_JOSE_GENERIC":
    case "ERR_JWKS_INVALID":
    case "ERR_JWKS_TIMEOUT":
    case undefined:
      // The JWKS endpoint failed (HTTP status, body, timeout, network): not the token's fault, but no key to trust.
      return "token signing keys unavailable";
    default:
      return "invalid token";
  }
}

/** OAuth style space-separated string, or a list of strings. A missing claim grants nothing. */
function parseScopes(scope: unknown): Set<string> {
  if (scope === undefined) return new Set();
  if (typeof scope === "string") return new Set(scope.split(/\s+/).filter((entry) => entry !== ""));
  if (Array.isArray(scope) && scope.every((entry) => typeof entry === "string")) return new Set(scope);
  throw unauthorized("token scope must be a string or a list of strings");
}

function parseChannels(channels: unknown): string[] | undefined {
  if (channels === undefined) return undefined;
  if (
    Array.isArray(channels) &&
    channels.every((entry) => typeof entry === "string" && isChannelPattern(entry))
  ) {
    return channels;
  }
  throw unauthorized("token channels must be a list of channel patterns");
}

function principalFromClaims(payload: JWTPayload): Principal {
  const { sub, tenant, scope, channels, exp } = payload;
  if (typeof sub !== "string" || sub === "") throw unauthorized("token has no sub");
  if (typeof tenant !== "string" || !TENANT_PATTERN.test(tenant))
    throw unauthorized("token has no valid tenant");
  if (typeof exp !== "number") throw unauthorized("token has no exp");
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
 * ES256, EdDSA and PS256 against the JWKS (jose caches the key set, refetches
 * it on an unknown `kid` at most every 30 s, and re-reads it every 10 min).
 * The token's `alg` picks the key source, so with both configured either kind
 * of token is accepted and an HS256 token can never be checked against a
 * public key. Signature comparison is jose's (constant time).
 *
 * Verified principals are kept in a bounded LRU keyed by the token string
 * and served only while `now < expiresAt`, so a hot client costs a map lookup
 * per request, not a signature check. A cache entry outlives a key removed
 * from the JWKS, never the token's `exp`. Failures are not cached: a forger
 * can vary the token at will, so a negative cache would only hold garbage.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const now = options.now ?? Date.now;
  const clockTolerance = options.clockToleranceSec ?? 5;
  const cache = new LruCache<string, Principal>(options.cacheSize);
  const secret = options.jwtSecret ? new TextEncoder().encode(options.jwtSecret) : undefined;
  const jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : undefined;

  async function verifySignature(token: string): Promise<JWTPayload> {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw unauthorized("malformed token");
    }
    const checks = { clockTolerance, currentDate: new Date(now()) };
    try {
      if (secret && alg !== undefined && SECRET_ALGORITHMS.includes(alg)) {
        return (await jwtVerify(token, secret, { ...checks, algorithms: SECRET_ALGORITHMS })).payload;
      }
      if (jwks && alg !== undefined && JWKS_ALGORITHMS.includes(alg)) {
        return (await jwtVerify(token, jwks, { ...checks, algorithms: JWKS_ALGORITHMS })).payload;
      }
    } catch (error) {
      throw unauthorized(rejectionReason(error));
    }
    throw unauthorized("unsupported token algorithm");
  }

  return {
    async verify(token) {
      const cached = cache.get(token);
      if (cached) {
        if (now() < cached.expiresAt) return cached;
        // Past `exp`: forget it and let jose decide, with the same clock tolerance as for any other token.
        cache.delete(token);
      }
      const principal = principalFromClaims(await verifySignature(token));
      if (now() < principal.expiresAt) cache.set(token, principal);
      return principal;
    },
  };
}
