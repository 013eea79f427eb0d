/** What a token callback is told when it is called. */
export interface TokenRequest {
  /** True when the gateway refused the previous token (expired or revoked): return a fresh one. */
  refresh: boolean;
}

/** A bearer token, or a callback that returns one (called before each request or connection). */
export type TokenSource = string | ((request: TokenRequest) => string | Promise<string>);

export async function resolveToken(source: TokenSource, refresh = false): Promise<string> {
  return typeof source === "string" ? source : await source({ refresh });
}
