/** What a token callback is told when it is called. */
export interface TokenRequest {
  /**
   * True when a fresh token is needed: the gateway refused the previous one
   * (expired or revoked), or it is about to expire. Return a new one, not a cached one.
   */
  refresh: boolean;
}

/** A bearer token, or a callback that returns one (called before each request or connection). */
export type TokenSource = string | ((request: TokenRequest) => string | Promise<string>);

export async function resolveToken(source: TokenSource, refresh = false): Promise<string> {
  return typeof source === "string" ? source : await source({ refresh });
}

/**
 * The `exp` of a JWT in epoch milliseconds, read without verifying it (the
 * gateway verifies); undefined for a token that is not a JWT or has no `exp`.
 */
export function tokenExpiresAt(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="))) as {
      exp?: unknown;
    };
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
