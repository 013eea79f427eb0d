import { createRemoteJWKSet, decodeProtectedHeader, type JWTPayload, jwtVerify } from "jose";
import { GatewayError } from "../errors/errors.ts";
import { LruCache } from "./lru.ts";
import type { Principal } from "./principal.ts";

export interface AuthenticatorOptions {
  /** HS256 shared secret. */
  jwtSecret: string | undefined;
  /** JWKS endpoint for asymmetric keys; jose caches it and refetches on an unknown `kid`. */
  jwksUrl: string | undefined;
  /** Verified tokens kept (0 disables the cache). */
  cacheSize: number;
  clockToleranceSec?: number;
  now?: () => number;
}

export interface Authenticator {
  /** The principal of a valid token; a 401 GatewayError otherwise. */
  verify(token: string): Promise<Principal>;
}

const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const ASYMMETRIC = ["RS256", "ES256", "EdDSA", "PS256"];

function unauthorized(reason: string): GatewayError {
  return new GatewayError("unauthorized", reason, { "www-authenticate": "Bearer" });
}

function toPrincipal(payload: JWTPayload): Principal {
  const { sub, tenant, scope, channels, exp } = payload as JWTPayload & Record<string, unknown>;
  if (typeof sub !== "string" || sub === "") throw unauthorized("token has no sub");
  if (typeof tenant !== "string" || !TENANT_PATTERN.test(tenant))
    throw unauthorized("token has no valid tenant");
  if (typeof exp !== "number") throw unauthorized("token has no exp");
  const scopes =
    typeof scope === "string"
      ? scope.split(" ").filter((entry) => entry !== "")
      : Array.isArray(scope)
        ? scope.filter((entry): entry is string => typeof entry === "string")
        : [];
  let channelPatterns: string[] | undefined;
  if (channels !== undefined) {
    if (!Array.isArray(channels) || channels.some((entry) => typeof entry !== "string")) {
      throw unauthorized("token channels must be a list of patterns");
    }
    channelPatterns = channels as string[];
  }
  return { subject: sub, tenant, scopes: new Set(scopes), channels: channelPatterns, expiresAt: exp * 1000 };
}

/**
 * Verifies bearer JWTs with jose (HS256 secret and/or a JWKS) and keeps
 * verified principals in a bounded LRU until their `exp`, so a hot client
 * costs a map lookup, not a signature check, per request. Failures are not
 * cached. Signature checks are jose's (constant time).
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const now = options.now ?? Date.now;
  const cache = new LruCache<string, Principal>(options.cacheSize);
  const secret = options.jwtSecret ? new TextEncoder().encode(options.jwtSecret) : undefined;
  const jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : undefined;
  const clockTolerance = options.clockToleranceSec ?? 5;

  async function verifySignature(token: string): Promise<JWTPayload> {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw unauthorized("malformed token");
    }
    const common = { clockTolerance, currentDate: options.now ? new Date(now()) : undefined };
    try {
      if (alg === "HS256" && secret)
        return (await jwtVerify(token, secret, { ...common, algorithms: ["HS256"] })).payload;
      if (alg && ASYMMETRIC.includes(alg) && jwks) {
        return (await jwtVerify(token, jwks, { ...common, algorithms: ASYMMETRIC })).payload;
      }
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw unauthorized(code === "ERR_JWT_EXPIRED" ? "token expired" : "invalid token");
    }
    throw unauthorized(`unsupported token algorithm ${alg ?? "none"}`);
  }

  return {
    async verify(token) {
      const cached = cache.get(token);
      if (cached) {
        if (cached.expiresAt > now()) return cached;
        cache.delete(token);
        throw unauthorized("token expired");
      }
      const principal = toPrincipal(await verifySignature(token));
      cache.set(token, principal);
      return principal;
    },
  };
}
